/*-------------------------------------------------------------------------
 *
 * audit.c
 *		The audit trail: the one way to write an audit row, the hash chains
 *		that make it tamper-evident, anchors, verification, retention and
 *		search.
 *
 * AuditWrite() appends a row to bank.audit_events in the caller's
 * transaction, so a rolled-back action leaves none and a committed one
 * exactly one.  It records who acted (the verified customer or API key of
 * the transaction, the current role and the session user), what they did to
 * which resource, and the request context set by bank.set_request_context().
 * Metadata never holds a secret or personal data: callers pass ids, codes
 * and reasons only.
 *
 * Chains without a single head.  Rows belong to one of AUDIT_STRIPES hash
 * chains.  Appending locks one stripe until the transaction ends, so a
 * stripe's rows are in commit order; a transaction prefers the stripe of its
 * backend and passes over one that is busy (a conditional lock), so
 * concurrent transactions do not wait for each other.  Holding the stripe,
 * it reads the stripe's last row (under the latest snapshot) and inserts the
 * next one, whose hash the INSERT computes:
 *
 *	 hash = sha256(prev || int4 stripe || int8 seq || int8 id || payload)
 *
 * where payload (AuditPayload) is a canonical, length-prefixed encoding of
 * the row's other columns.  bank.audit_verify() recomputes every link.
 *
 * Anchors: bank.audit_head() stores the last committed row of every stripe
 * as a checkpoint (chained to the previous one) and returns its number and
 * hash, to be kept outside the database.  Every row a checkpoint names must
 * stay (or be sealed by a purge): verification checks the latest
 * checkpoint, or the anchor given, so a truncated tail is found.
 *
 * Retention: bank.purge_expired() removes rows older than
 * pgbank.audit_retention, a prefix of each stripe, and keeps the removed
 * prefix's last position and hash as the stripe's seal, from which
 * verification of the rest starts.  The seals are repeated in the purge's
 * own audit row, so a forged seal does not verify.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/event_trigger.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/backendid.h"
#include "storage/dsm.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/inet.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "pgbank.h"

bool		pgb_audit = true;
int			pgb_audit_retention = 0;

#define AUDIT_LOCK_SPACE 0x5041	/* 'PA': field4 of our advisory lock tags */

/* the stripe this transaction appended to (-1: none yet) */
static int	xact_stripe = -1;

/* the link before a stripe's first row */
static const uint8 zero_hash[PG_SHA256_DIGEST_LENGTH];

/* bank.purge_expired is deleting rows (see AuditPurging) */
static bool purging = false;

/*
 * The last row of a stripe (the transaction holds the stripe, so nobody else
 * appends to it meanwhile), or its seal when purged away.  Read under the
 * latest snapshot: under REPEATABLE READ the transaction's own snapshot may
 * predate the stripe's last commit.
 */
static PgbQuery q_stripe_last = {
	"SELECT seq, hash FROM bank.audit_events WHERE stripe = $1 ORDER BY seq DESC LIMIT 1",
	1, {INT4OID}
};

static PgbQuery q_stripe_seal = {
	"SELECT seq, hash FROM bank.audit_seals WHERE stripe = $1",
	1, {INT4OID}
};

/* append: $1 stripe, $2 its previous hash, $3 the new seq, $4 the payload */
static PgbQuery q_append = {
	"INSERT INTO bank.audit_events (id, at, xid, actor_customer, api_key_id, acting_role,"
	"  session_role, action, resource_type, resource_id, metadata, request_id, client_addr,"
	"  user_agent, stripe, seq, hash)"
	" SELECT v.id, $5, $6, $7, $8, $9::name, $10::name, $11, $12, $13, $14, $15, $16, $17,"
	"  $1, $3, sha256($2 || int4send($1) || int8send($3) || int8send(v.id) || $4)"
	" FROM (SELECT nextval('bank.audit_events_id_seq') AS id) v",
	17, {INT4OID, BYTEAOID, INT8OID, BYTEAOID, TIMESTAMPTZOID, XID8OID, INT8OID, INT8OID,
	TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID, TEXTOID, INETOID, TEXTOID}
};

/* ---------------------------------------------------------------------
 * The canonical encoding
 * ---------------------------------------------------------------------
 */

static void
put_be(StringInfo buf, uint64 v, int bytes)
{
	int			i;

	for (i = bytes - 1; i >= 0; i--)
		appendStringInfoChar(buf, (char) ((v >> (8 * i)) & 0xff));
}

/* a field: 0x00 for NULL, else 0x01, its length (int4) and its bytes */
static void
put_field(StringInfo buf, const char *data, int len)
{
	if (data == NULL)
	{
		appendStringInfoChar(buf, 0);
		return;
	}
	appendStringInfoChar(buf, 1);
	put_be(buf, (uint32) len, 4);
	appendBinaryStringInfo(buf, data, len);
}

static void
put_text(StringInfo buf, const char *s)
{
	put_field(buf, s, s ? strlen(s) : 0);
}

static void
put_int8(StringInfo buf, const int64 *v)
{
	char		b[8];
	int			i;

	if (v == NULL)
	{
		put_field(buf, NULL, 0);
		return;
	}
	for (i = 0; i < 8; i++)
		b[i] = (char) (((uint64) *v >> (8 * (7 - i))) & 0xff);
	put_field(buf, b, 8);
}

/*
 * The payload of a row: a version byte (1), then at (microseconds since
 * 2000-01-01 UTC) and xid as int8, then actor_customer, api_key_id,
 * acting_role, session_role, action, resource_type, resource_id, metadata
 * (jsonb's text output), request_id, client_addr (inet's text output) and
 * user_agent, each as a field (see put_field).  Integers are big-endian.
 */
typedef struct AuditFields
{
	TimestampTz at;
	uint64		xid;
	const int64 *actor_customer;
	const int64 *api_key_id;
	const char *acting_role;
	const char *session_role;
	const char *action;
	const char *resource_type;
	const char *resource_id;
	const char *metadata;
	const char *request_id;
	const char *client_addr;
	const char *user_agent;
} AuditFields;

static bytea *
AuditPayload(const AuditFields *f)
{
	StringInfoData buf;
	int64		at = f->at,
				xid = (int64) f->xid;
	bytea	   *out;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, 1);
	put_int8(&buf, &at);
	put_int8(&buf, &xid);
	put_int8(&buf, f->actor_customer);
	put_int8(&buf, f->api_key_id);
	put_text(&buf, f->acting_role);
	put_text(&buf, f->session_role);
	put_text(&buf, f->action);
	put_text(&buf, f->resource_type);
	put_text(&buf, f->resource_id);
	put_text(&buf, f->metadata);
	put_text(&buf, f->request_id);
	put_text(&buf, f->client_addr);
	put_text(&buf, f->user_agent);
	out = PgbBytea(buf.data, buf.len);
	pfree(buf.data);
	return out;
}

/* sha256(prev || int4 stripe || int8 seq || int8 id || payload) */
static void
AuditLink(const uint8 *prev, int stripe, int64 seq, int64 id, const bytea *payload,
		  uint8 *out)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, (const char *) prev, PG_SHA256_DIGEST_LENGTH);
	put_be(&buf, (uint32) stripe, 4);
	put_be(&buf, (uint64) seq, 8);
	put_be(&buf, (uint64) id, 8);
	appendBinaryStringInfo(&buf, VARDATA_ANY(payload), VARSIZE_ANY_EXHDR(payload));
	AuthSha256((const uint8 *) buf.data, buf.len, out);
	pfree(buf.data);
}

/* ---------------------------------------------------------------------
 * Writing
 * ---------------------------------------------------------------------
 */

static void
copy_field(char *dst, size_t size, const char *src, const char *what)
{
	if (src == NULL)
	{
		dst[0] = '\0';
		return;
	}
	if (strlen(src) >= size)
		elog(ERROR, "pgbank: audit %s too long", what);
	strcpy(dst, src);
}

/*
 * Fill an audit record.  p is the principal that acted (NULL: whoever the
 * caller is, without requiring a credential, e.g. a failed login by the
 * anonymous role); customer overrides the actor customer when non-zero (a
 * login, before any token exists).  metadata is a JSON object or NULL.
 */
void
AuditRecordInit(AuditRecord *r, const Principal *p, int64 customer, const char *action,
				const char *resource_type, const char *resource_id, const char *metadata)
{
	int			i;
	char	   *ctx[3] = {r->request_id, r->client_addr, r->user_agent};
	size_t		ctx_size[3] = {sizeof(r->request_id), sizeof(r->client_addr),
	sizeof(r->user_agent)};

	memset(r, 0, sizeof(*r));
	if (customer == 0 && p != NULL && p->kind == PRINCIPAL_CUSTOMER)
		customer = p->customer_id;
	r->actor_customer = customer;
	r->api_key_id = p ? p->api_key_id : 0;
	strlcpy(r->acting_role, GetUserNameFromId(GetUserId(), false), NAMEDATALEN);
	strlcpy(r->session_role, GetUserNameFromId(GetSessionUserId(), false), NAMEDATALEN);
	copy_field(r->action, sizeof(r->action), action, "action");
	copy_field(r->resource_type, sizeof(r->resource_type), resource_type, "resource type");
	copy_field(r->resource_id, sizeof(r->resource_id), resource_id, "resource id");
	r->metadata = metadata;
	for (i = 0; i < 3; i++)
		copy_field(ctx[i], ctx_size[i], AuthRequestField(i), "request context");
}

static const char *
or_null(const char *s)
{
	return s[0] ? s : NULL;
}

/*
 * The stripe this transaction appends to, locked until it ends (an
 * advisory-space lock of our own, so user advisory locks never collide):
 * the one it used before, else its backend's, else the next free one; only
 * when all are busy does it wait, for its own.  A lock taken in a
 * subtransaction that rolls back is released with the rows it covered.
 */
static bool
StripeLock(int stripe, bool wait)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, 0, (uint32) stripe, AUDIT_LOCK_SPACE);
	return LockAcquire(&tag, ExclusiveLock, false, !wait) != LOCKACQUIRE_NOT_AVAIL;
}

static int
StripeChoose(void)
{
	int			preferred = xact_stripe >= 0 ? xact_stripe :
		(MyBackendId > 0 ? (MyBackendId - 1) % AUDIT_STRIPES : 0);
	int			i;

	for (i = 0; i < AUDIT_STRIPES; i++)
	{
		int			s = (preferred + i) % AUDIT_STRIPES;

		if (StripeLock(s, false))
			return xact_stripe = s;
	}
	(void) StripeLock(preferred, true);
	return xact_stripe = preferred;
}

/*
 * Append a record to a stripe, chained.  Must be called inside SPI_connect,
 * in the transaction the row belongs to.
 */
void
AuditInsert(const AuditRecord *r)
{
	Datum		v[17];
	char		n[18] = "                 ";
	AuditFields f;
	Datum		jb;
	char	   *metadata;
	char	   *client_addr = NULL;
	int			stripe = StripeChoose();
	int64		seq = 0;
	bytea	   *prev = NULL;
	Datum		k = Int32GetDatum(stripe);
	bool		isnull;

	/* the canonical forms of jsonb and inet are their text output */
	jb = DirectFunctionCall1(jsonb_in, CStringGetDatum(r->metadata ? r->metadata : "{}"));
	metadata = DatumGetCString(DirectFunctionCall1(jsonb_out, jb));
	if (r->client_addr[0])
	{
		v[15] = DirectFunctionCall1(inet_in, CStringGetDatum(r->client_addr));
		client_addr = DatumGetCString(DirectFunctionCall1(inet_out, v[15]));
	}
	else
		n[15] = 'n';

	memset(&f, 0, sizeof(f));
	f.at = GetCurrentTimestamp();
	f.xid = U64FromFullTransactionId(GetTopFullTransactionId());
	f.actor_customer = r->actor_customer ? &r->actor_customer : NULL;
	f.api_key_id = r->api_key_id ? &r->api_key_id : NULL;
	f.acting_role = r->acting_role;
	f.session_role = r->session_role;
	f.action = r->action;
	f.resource_type = r->resource_type;
	f.resource_id = or_null(r->resource_id);
	f.metadata = metadata;
	f.request_id = or_null(r->request_id);
	f.client_addr = client_addr;
	f.user_agent = or_null(r->user_agent);

	/* the link: the stripe's last row, else its seal, else the start */
	PushActiveSnapshot(GetLatestSnapshot());
	if (PgbExec(&q_stripe_last, &k, NULL, true, 1) == 1 ||
		PgbExec(&q_stripe_seal, &k, NULL, true, 1) == 1)
	{
		seq = PgbGetInt64(0, 1);
		prev = DatumGetByteaPCopy(PgbGet(0, 2, &isnull));
	}
	PopActiveSnapshot();
	if (prev == NULL)
		prev = PgbBytea(zero_hash, PG_SHA256_DIGEST_LENGTH);

	v[0] = k;
	v[1] = PointerGetDatum(prev);
	v[2] = Int64GetDatum(seq + 1);
	v[3] = PointerGetDatum(AuditPayload(&f));
	v[4] = TimestampTzGetDatum(f.at);
	v[5] = FullTransactionIdGetDatum(FullTransactionIdFromU64(f.xid));
	v[6] = Int64GetDatum(r->actor_customer);
	n[6] = f.actor_customer ? ' ' : 'n';
	v[7] = Int64GetDatum(r->api_key_id);
	n[7] = f.api_key_id ? ' ' : 'n';
	v[8] = CStringGetTextDatum(r->acting_role);
	v[9] = CStringGetTextDatum(r->session_role);
	v[10] = CStringGetTextDatum(r->action);
	v[11] = CStringGetTextDatum(r->resource_type);
	v[12] = CStringGetTextDatum(r->resource_id);
	n[12] = f.resource_id ? ' ' : 'n';
	v[13] = jb;
	v[14] = CStringGetTextDatum(r->request_id);
	n[14] = f.request_id ? ' ' : 'n';
	v[16] = CStringGetTextDatum(r->user_agent);
	n[16] = f.user_agent ? ' ' : 'n';

	if (PgbExec(&q_append, v, n, false, 0) != 1)
		elog(ERROR, "pgbank: could not append to audit stripe %d", stripe);
}

/*
 * Append an audit row in the caller's transaction.  Must be called inside
 * SPI_connect.  pgbank.audit = off (superuser, for benchmarks) skips it.
 */
void
AuditWrite(const Principal *p, int64 customer, const char *action,
		   const char *resource_type, const char *resource_id, const char *metadata)
{
	AuditRecord r;

	if (!pgb_audit)
		return;
	AuditRecordInit(&r, p, customer, action, resource_type, resource_id, metadata);
	AuditInsert(&r);
}

/*
 * A JSON string literal of s, escaped by PostgreSQL's own JSON code: for
 * text that callers or admins chose (reasons, rule names) in metadata.
 */
char *
AuditJsonString(const char *s)
{
	StringInfoData buf;

	initStringInfo(&buf);
	escape_json(&buf, s);
	return buf.data;
}

void
AuditAtEOXact(void)
{
	xact_stripe = -1;
	purging = false;
}

/* ---------------------------------------------------------------------
 * Rows written outside the caller's transaction
 * ---------------------------------------------------------------------
 */

typedef struct AuditShared
{
	volatile int result;		/* 0 not done, 1 recorded */
	AuditRecord record;			/* its metadata pointer is not used */
	/* the metadata follows, NUL-terminated */
} AuditShared;

PGDLLEXPORT void pgbank_audit_worker(Datum main_arg);

/*
 * Record r in a transaction of its own, by a background worker, and wait
 * for it: for events whose own transaction is about to fail (a refused
 * call).  A record that cannot be written is a WARNING, not an error: the
 * caller is about to raise its own.
 */
void
AuditWriteAutonomous(const AuditRecord *r)
{
	dsm_segment *seg;
	AuditShared *d;
	const char *metadata = r->metadata ? r->metadata : "{}";
	size_t		mlen = strlen(metadata) + 1;

	if (!pgb_audit || RecoveryInProgress())
		return;
	seg = dsm_create(sizeof(AuditShared) + mlen, 0);
	d = dsm_segment_address(seg);
	d->result = 0;
	memcpy(&d->record, r, sizeof(AuditRecord));
	d->record.metadata = NULL;
	memcpy((char *) (d + 1), metadata, mlen);
	if (!PgbRunWorker("pgbank_audit_worker", "pgbank audit recorder", seg) || d->result != 1)
		ereport(WARNING,
				(errmsg("pgbank: could not record audit event %s", r->action),
				 errdetail("No background worker could record it (max_worker_processes).")));
	dsm_detach(seg);
}

void
pgbank_audit_worker(Datum main_arg)
{
	dsm_segment *seg;
	AuditShared *d = PgbWorkerBegin(main_arg, &seg, "pgbank: recording an audit event");

	d->record.metadata = (char *) (d + 1);
	AuditInsert(&d->record);
	PgbWorkerEnd(seg, &d->result);
}

/*
 * A refused call (not authenticated, identity for another role, API key
 * scope), recorded before the error is raised.
 */
void
AuditDenied(const Principal *p, const char *function, const char *code)
{
	AuditRecord r;

	if (!pgb_audit)
		return;
	AuditRecordInit(&r, p, 0, "auth.denied", "function", function,
					psprintf("{\"code\": \"%s\"}", code));
	AuditWriteAutonomous(&r);
}

/* ---------------------------------------------------------------------
 * Verification
 * ---------------------------------------------------------------------
 */

typedef struct StripeState
{
	int64		seq;			/* last position checked (or sealed) */
	uint8		hash[PG_SHA256_DIGEST_LENGTH];
	bool		started;
	bool		broken;
} StripeState;

typedef struct Problem
{
	bool		found;
	int64		position;		/* 0: none */
	int			stripe;			/* -1: none */
	int64		seq;
	const char *what;
} Problem;

static void
problem(Problem *pr, int64 position, int stripe, int64 seq, const char *what)
{
	/* the first broken link: lowest id; problems without one come last */
	uint64		key = position ? (uint64) position : PG_UINT64_MAX;
	uint64		cur = pr->position ? (uint64) pr->position : PG_UINT64_MAX;

	if (pr->found && (key > cur || (key == cur && stripe >= pr->stripe)))
		return;
	pr->found = true;
	pr->position = position;
	pr->stripe = stripe;
	pr->seq = seq;
	pr->what = what;
}

static void
copy_hash(uint8 *dst, Datum d)
{
	bytea	   *b = DatumGetByteaPP(d);

	if (VARSIZE_ANY_EXHDR(b) != PG_SHA256_DIGEST_LENGTH)
		memset(dst, 0xff, PG_SHA256_DIGEST_LENGTH);	/* matches nothing */
	else
		memcpy(dst, VARDATA_ANY(b), PG_SHA256_DIGEST_LENGTH);
}

static bool
hash_equals(const uint8 *h, Datum d)
{
	uint8		b[PG_SHA256_DIGEST_LENGTH];

	copy_hash(b, d);
	return memcmp(h, b, PG_SHA256_DIGEST_LENGTH) == 0;
}

static PgbQuery q_seals = {
	"SELECT stripe, seq, hash FROM bank.audit_seals ORDER BY stripe", 0, {}
};

/* the seals as a JSON array: what an audit.purge row records, and checks */
#define SEALS_JSON \
	"coalesce((SELECT jsonb_agg(jsonb_build_object('stripe', stripe, 'seq', seq," \
	"  'hash', encode(hash, 'hex')) ORDER BY stripe) FROM bank.audit_seals), '[]')"

/* the seals must be those the latest purge recorded (or none, without one) */
static PgbQuery q_seals_match = {
	"SELECT coalesce((SELECT metadata->'seals' FROM bank.audit_events"
	"   WHERE action = 'audit.purge' ORDER BY at DESC, id DESC LIMIT 1), '[]')"
	"  = " SEALS_JSON ","
	" (SELECT id FROM bank.audit_events WHERE action = 'audit.purge'"
	"   ORDER BY at DESC, id DESC LIMIT 1)",
	0, {}
};

static PgbQuery q_rows = {
	"SELECT stripe, seq, id, hash, at, xid, actor_customer, api_key_id, acting_role,"
	" session_role, action, resource_type, resource_id, metadata, request_id,"
	" client_addr, user_agent"
	" FROM bank.audit_events WHERE id BETWEEN $1 AND $2 ORDER BY stripe, seq",
	2, {INT8OID, INT8OID}
};

static PgbQuery q_row_hash = {
	"SELECT hash, id FROM bank.audit_events WHERE stripe = $1 AND seq = $2",
	2, {INT4OID, INT8OID}
};

static PgbQuery q_latest_checkpoint = {
	"SELECT max(checkpoint) FROM bank.audit_checkpoints", 0, {}
};

static PgbQuery q_checkpoint = {
	"SELECT c.stripes, c.seqs, c.hashes, c.hash, p.hash, c.at FROM bank.audit_checkpoints c"
	" LEFT JOIN bank.audit_checkpoints p ON p.checkpoint = c.checkpoint - 1"
	" WHERE c.checkpoint = $1",
	1, {INT8OID}
};

static char *
col_text(HeapTuple tup, TupleDesc desc, int col)
{
	return SPI_getvalue(tup, desc, col);
}

static int64
col_int8(HeapTuple tup, TupleDesc desc, int col, bool *isnull)
{
	Datum		d = SPI_getbinval(tup, desc, col, isnull);

	return *isnull ? 0 : DatumGetInt64(d);
}

/*
 * Recompute one row's link; true when its stored hash matches.  Text forms
 * come from the types' output functions (SPI_getvalue), as when written.
 */
static bool
row_links(HeapTuple tup, TupleDesc desc, const uint8 *prev)
{
	AuditFields f;
	bool		isnull;
	int64		actor,
				api_key;
	uint8		h[PG_SHA256_DIGEST_LENGTH];
	int			stripe = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
	int64		seq = col_int8(tup, desc, 2, &isnull);
	int64		id = col_int8(tup, desc, 3, &isnull);

	memset(&f, 0, sizeof(f));
	f.at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 5, &isnull));
	f.xid = U64FromFullTransactionId(DatumGetFullTransactionId(SPI_getbinval(tup, desc, 6,
																			  &isnull)));
	actor = col_int8(tup, desc, 7, &isnull);
	f.actor_customer = isnull ? NULL : &actor;
	api_key = col_int8(tup, desc, 8, &isnull);
	f.api_key_id = isnull ? NULL : &api_key;
	f.acting_role = col_text(tup, desc, 9);
	f.session_role = col_text(tup, desc, 10);
	f.action = col_text(tup, desc, 11);
	f.resource_type = col_text(tup, desc, 12);
	f.resource_id = col_text(tup, desc, 13);
	f.metadata = col_text(tup, desc, 14);
	f.request_id = col_text(tup, desc, 15);
	f.client_addr = col_text(tup, desc, 16);
	f.user_agent = col_text(tup, desc, 17);
	AuditLink(prev, stripe, seq, id, AuditPayload(&f), h);
	return hash_equals(h, SPI_getbinval(tup, desc, 4, &isnull));
}

/* the hash of a checkpoint: see bank.audit_checkpoints */
static void
checkpoint_hash(const uint8 *prev, int64 position, int n, const int *stripes,
				const int64 *seqs, uint8 (*hashes)[PG_SHA256_DIGEST_LENGTH], uint8 *out)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, (const char *) prev, PG_SHA256_DIGEST_LENGTH);
	put_be(&buf, (uint64) position, 8);
	for (i = 0; i < n; i++)
	{
		put_be(&buf, (uint32) stripes[i], 4);
		put_be(&buf, (uint64) seqs[i], 8);
		appendBinaryStringInfo(&buf, (const char *) hashes[i], PG_SHA256_DIGEST_LENGTH);
	}
	AuthSha256((const uint8 *) buf.data, buf.len, out);
	pfree(buf.data);
}

/* a checkpoint's arrays, read from the current SPI row */
typedef struct Checkpoint
{
	int			n;
	int		   *stripes;
	int64	   *seqs;
	uint8		(*hashes)[PG_SHA256_DIGEST_LENGTH];
	uint8		hash[PG_SHA256_DIGEST_LENGTH];
	uint8		prev[PG_SHA256_DIGEST_LENGTH];
	bool		has_prev;
} Checkpoint;

static void
read_checkpoint(Checkpoint *c)
{
	Datum	   *d[3];
	bool	   *nulls;
	int			n[3];
	int			i;
	bool		isnull;
	Oid			types[3] = {INT4OID, INT8OID, BYTEAOID};
	int16		len[3] = {4, 8, -1};
	bool		byval[3] = {true, FLOAT8PASSBYVAL, false};
	char		align[3] = {'i', 'd', 'i'};

	for (i = 0; i < 3; i++)
		deconstruct_array(DatumGetArrayTypeP(PgbGet(0, i + 1, &isnull)), types[i], len[i],
						  byval[i], align[i], &d[i], &nulls, &n[i]);
	if (n[0] != n[1] || n[0] != n[2])
		n[0] = Min(n[0], Min(n[1], n[2]));
	c->n = n[0];
	c->stripes = palloc(sizeof(int) * (c->n + 1));
	c->seqs = palloc(sizeof(int64) * (c->n + 1));
	c->hashes = palloc(PG_SHA256_DIGEST_LENGTH * (c->n + 1));
	for (i = 0; i < c->n; i++)
	{
		c->stripes[i] = DatumGetInt32(d[0][i]);
		c->seqs[i] = DatumGetInt64(d[1][i]);
		copy_hash(c->hashes[i], d[2][i]);
	}
	copy_hash(c->hash, PgbGet(0, 4, &isnull));
	{
		Datum		p = PgbGet(0, 5, &isnull);

		c->has_prev = !isnull;
		if (!isnull)
			copy_hash(c->prev, p);
		else
			memset(c->prev, 0, PG_SHA256_DIGEST_LENGTH);
	}
}

/*
 * Verify the chains (rows with id in [from_id, to_id]) from their seals,
 * the seals themselves, and an anchor: the one given (anchor_position > 0,
 * its hash checked), else the latest checkpoint.  Every row an anchor names
 * must still be there, so a truncated tail is found.  Runs in one snapshot
 * (read-only SPI), so rows committing meanwhile are not half-seen.
 */
static void
AuditVerify(int64 from_id, int64 to_id, bool ranged_end, int64 anchor_position,
			const uint8 *anchor_hash, Problem *pr)
{
	StripeState st[AUDIT_STRIPES];
	int64		seal_seq[AUDIT_STRIPES];
	uint8		seal_hash[AUDIT_STRIPES][PG_SHA256_DIGEST_LENGTH];
	bool		ranged = from_id > 1 || ranged_end;
	int			i,
				n;
	bool		isnull;
	Datum		v[2];
	Portal		portal;

	memset(pr, 0, sizeof(*pr));
	pr->stripe = -1;
	memset(st, 0, sizeof(st));
	memset(seal_seq, 0, sizeof(seal_seq));
	memset(seal_hash, 0, sizeof(seal_hash));

	n = PgbExec(&q_seals, NULL, NULL, true, 0);
	for (i = 0; i < n; i++)
	{
		int			s = DatumGetInt32(PgbGet(i, 1, &isnull));

		if (s < 0 || s >= AUDIT_STRIPES)
			continue;
		seal_seq[s] = PgbGetInt64(i, 2);
		copy_hash(seal_hash[s], PgbGet(i, 3, &isnull));
	}
	PgbExec(&q_seals_match, NULL, NULL, true, 0);
	if (!DatumGetBool(PgbGet(0, 1, &isnull)))
		problem(pr, PgbGetInt64(0, 2), -1, 0, "the seals do not match the last audit.purge event");

	for (i = 0; i < AUDIT_STRIPES; i++)
	{
		st[i].seq = seal_seq[i];
		memcpy(st[i].hash, seal_seq[i] ? seal_hash[i] : zero_hash, PG_SHA256_DIGEST_LENGTH);
	}

	v[0] = Int64GetDatum(from_id);
	v[1] = Int64GetDatum(to_id);
	portal = PgbCursorOpen(&q_rows, v, NULL);
	while (PgbCursorFetch(portal, 1000, false) > 0)
	{
		SPITupleTable *tt = SPI_tuptable;
		uint64		count = SPI_processed;
		uint64		r;

		for (r = 0; r < count; r++)
		{
			HeapTuple	tup = tt->vals[r];
			TupleDesc	desc = tt->tupdesc;
			int			s = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
			int64		seq = col_int8(tup, desc, 2, &isnull);
			int64		id = col_int8(tup, desc, 3, &isnull);
			StripeState *ss;

			if (s < 0 || s >= AUDIT_STRIPES)
			{
				problem(pr, id, s, seq, "row outside the stripes");
				continue;
			}
			ss = &st[s];
			if (ss->broken)
				continue;
			if (!ss->started && ranged && seq - 1 > seal_seq[s])
			{
				/* the range starts mid-stripe: link to the row before it */
				Datum		k[2] = {Int32GetDatum(s), Int64GetDatum(seq - 1)};

				if (PgbExec(&q_row_hash, k, NULL, true, 1) == 1)
				{
					copy_hash(ss->hash, PgbGet(0, 1, &isnull));
					ss->seq = seq - 1;
				}
			}
			ss->started = true;
			if (seq > ss->seq + 1)
			{
				problem(pr, id, s, ss->seq + 1, "row missing");
				ss->broken = true;
			}
			else if (seq <= ss->seq)
			{
				problem(pr, id, s, seq, "row out of order");
				ss->broken = true;
			}
			else if (!row_links(tup, desc, ss->hash))
			{
				problem(pr, id, s, seq, "row altered");
				ss->broken = true;
			}
			else
			{
				ss->seq = seq;
				copy_hash(ss->hash, SPI_getbinval(tup, desc, 4, &isnull));
			}
		}
		SPI_freetuptable(tt);
	}
	SPI_cursor_close(portal);

	/* the anchor (or the latest checkpoint): itself, then every row it names */
	if (anchor_position == 0 && PgbExec(&q_latest_checkpoint, NULL, NULL, true, 1) == 1)
	{
		anchor_position = PgbGetInt64(0, 1);
		anchor_hash = NULL;		/* only its own chain is checked */
	}
	if (anchor_position > 0)
	{
		Checkpoint c;
		uint8		h[PG_SHA256_DIGEST_LENGTH];

		v[0] = Int64GetDatum(anchor_position);
		if (PgbExec(&q_checkpoint, v, NULL, true, 1) != 1)
		{
			problem(pr, 0, -1, 0, "anchor checkpoint missing");
			return;
		}
		read_checkpoint(&c);
		checkpoint_hash(c.prev, anchor_position, c.n, c.stripes, c.seqs, c.hashes, h);
		if ((anchor_position > 1 && !c.has_prev) ||
			memcmp(h, c.hash, PG_SHA256_DIGEST_LENGTH) != 0 ||
			(anchor_hash && memcmp(h, anchor_hash, PG_SHA256_DIGEST_LENGTH) != 0))
		{
			problem(pr, 0, -1, 0, "anchor does not match its checkpoint");
			return;
		}
		for (i = 0; i < c.n; i++)
		{
			int			s = c.stripes[i];
			Datum		k[2];

			if (s < 0 || s >= AUDIT_STRIPES)
				continue;
			if (seal_seq[s] >= c.seqs[i])
			{
				if (seal_seq[s] == c.seqs[i] &&
					memcmp(seal_hash[s], c.hashes[i], PG_SHA256_DIGEST_LENGTH) != 0)
					problem(pr, 0, s, c.seqs[i], "anchored row altered");
				continue;		/* purged */
			}
			k[0] = Int32GetDatum(s);
			k[1] = Int64GetDatum(c.seqs[i]);
			if (PgbExec(&q_row_hash, k, NULL, true, 1) != 1)
				problem(pr, 0, s, c.seqs[i], "anchored row missing (truncated)");
			else if (!hash_equals(c.hashes[i], PgbGet(0, 1, &isnull)))
				problem(pr, PgbGetInt64(0, 2), s, c.seqs[i], "anchored row altered");
		}
	}
}

PG_FUNCTION_INFO_V1(pgbank_audit_verify);
Datum
pgbank_audit_verify(PG_FUNCTION_ARGS)
{
	Principal	who;
	Problem		pr;
	int64		anchor_position = 0;
	uint8		anchor_hash[PG_SHA256_DIGEST_LENGTH] = {0};
	int64		from_id = PG_ARGISNULL(2) ? 1 : PG_GETARG_INT64(2);
	int64		to_id = PG_ARGISNULL(3) ? PG_INT64_MAX : PG_GETARG_INT64(3);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	AuthCaller("audit_verify", &who);
	if (PG_ARGISNULL(0) != PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_PGB_NULL_ARGUMENT),
				 errmsg("an anchor needs both its position and its hash")));
	if (!PG_ARGISNULL(0))
	{
		bytea	   *h = PG_GETARG_BYTEA_PP(1);

		anchor_position = PG_GETARG_INT64(0);
		if (anchor_position < 1 || VARSIZE_ANY_EXHDR(h) != PG_SHA256_DIGEST_LENGTH)
			ereport(ERROR,
					(errcode(ERRCODE_PGB_INVALID_ARGUMENT),
					 errmsg("an anchor is a position of at least 1 and a 32-byte hash")));
		memcpy(anchor_hash, VARDATA_ANY(h), PG_SHA256_DIGEST_LENGTH);
	}
	if (from_id < 1)
		from_id = 1;
	if (to_id < from_id)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_ARGUMENT),
				 errmsg("to_id must not be below from_id")));

	SPI_connect();
	AuditVerify(from_id, to_id, !PG_ARGISNULL(3), anchor_position, anchor_hash, &pr);
	InitMaterializedSRF(fcinfo, 0);
	if (pr.found)
	{
		Datum		values[4];
		bool		nulls[4] = {pr.position == 0, pr.stripe < 0, pr.stripe < 0, false};

		values[0] = Int64GetDatum(pr.position);
		values[1] = Int32GetDatum(pr.stripe);
		values[2] = Int64GetDatum(pr.seq);
		values[3] = CStringGetTextDatum(pr.what);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	SPI_finish();
	return (Datum) 0;
}

/* ---------------------------------------------------------------------
 * Anchors
 * ---------------------------------------------------------------------
 */

static PgbQuery q_lock_checkpoints = {
	"LOCK TABLE bank.audit_checkpoints IN SHARE ROW EXCLUSIVE MODE", 0, {}
};

static PgbQuery q_last_checkpoint = {
	"SELECT checkpoint, hash FROM bank.audit_checkpoints ORDER BY checkpoint DESC LIMIT 1",
	0, {}
};

/* the last committed row of every stripe (or its seal) */
static PgbQuery q_committed_heads = {
	"SELECT s, coalesce(l.seq, x.seq), coalesce(l.hash, x.hash)"
	" FROM generate_series(0, 63) s"
	" LEFT JOIN LATERAL (SELECT seq, hash FROM bank.audit_events e WHERE e.stripe = s"
	"   ORDER BY seq DESC LIMIT 1) l ON true"
	" LEFT JOIN bank.audit_seals x ON x.stripe = s"
	" WHERE coalesce(l.seq, x.seq) IS NOT NULL ORDER BY s",
	0, {}
};

static PgbQuery q_insert_checkpoint = {
	"INSERT INTO bank.audit_checkpoints (checkpoint, at, stripes, seqs, hashes, hash)"
	" VALUES ($1, clock_timestamp(), $2, $3, $4, $5) RETURNING checkpoint, hash, at",
	5, {INT8OID, INT4ARRAYOID, INT8ARRAYOID, BYTEAARRAYOID, BYTEAOID}
};

PG_FUNCTION_INFO_V1(pgbank_audit_head);
Datum
pgbank_audit_head(PG_FUNCTION_ARGS)
{
	Principal	who;
	int64		position = 1;
	uint8		prev[PG_SHA256_DIGEST_LENGTH] = {0};
	uint8		h[PG_SHA256_DIGEST_LENGTH];
	int			n,
				i;
	int		   *stripes;
	int64	   *seqs;
	uint8		(*hashes)[PG_SHA256_DIGEST_LENGTH];
	Datum	   *ds,
			   *dq,
			   *dh;
	Datum		v[5];
	bool		isnull;

	AuthCaller("audit_head", &who);
	SPI_connect();
	PgbExec(&q_lock_checkpoints, NULL, NULL, false, 0);
	if (PgbExec(&q_last_checkpoint, NULL, NULL, false, 1) == 1)
	{
		position = PgbGetInt64(0, 1) + 1;
		copy_hash(prev, PgbGet(0, 2, &isnull));
	}
	/* a fresh snapshot: heads as committed now */
	n = PgbExec(&q_committed_heads, NULL, NULL, false, 0);
	stripes = palloc(sizeof(int) * (n + 1));
	seqs = palloc(sizeof(int64) * (n + 1));
	hashes = palloc(PG_SHA256_DIGEST_LENGTH * (n + 1));
	ds = palloc(sizeof(Datum) * (n + 1));
	dq = palloc(sizeof(Datum) * (n + 1));
	dh = palloc(sizeof(Datum) * (n + 1));
	for (i = 0; i < n; i++)
	{
		stripes[i] = DatumGetInt32(PgbGet(i, 1, &isnull));
		seqs[i] = PgbGetInt64(i, 2);
		copy_hash(hashes[i], PgbGet(i, 3, &isnull));
		ds[i] = Int32GetDatum(stripes[i]);
		dq[i] = Int64GetDatum(seqs[i]);
		dh[i] = PointerGetDatum(PgbBytea(hashes[i], PG_SHA256_DIGEST_LENGTH));
	}
	checkpoint_hash(prev, position, n, stripes, seqs, hashes, h);
	v[0] = Int64GetDatum(position);
	v[1] = PointerGetDatum(construct_array(ds, n, INT4OID, 4, true, 'i'));
	v[2] = PointerGetDatum(construct_array(dq, n, INT8OID, 8, FLOAT8PASSBYVAL, 'd'));
	v[3] = PointerGetDatum(construct_array(dh, n, BYTEAOID, -1, false, 'i'));
	v[4] = PointerGetDatum(PgbBytea(h, PG_SHA256_DIGEST_LENGTH));
	PgbExec(&q_insert_checkpoint, v, NULL, false, 1);
	return PgbReturnRow(fcinfo);
}

/* ---------------------------------------------------------------------
 * Retention
 * ---------------------------------------------------------------------
 */

/* the trigger on bank.audit_events lets bank.purge_expired delete */
bool
AuditPurging(void)
{
	return purging;
}

static PgbQuery q_lock_seals = {
	"LOCK TABLE bank.audit_seals IN SHARE ROW EXCLUSIVE MODE", 0, {}
};

static PgbQuery q_expired = {
	"SELECT stripe, max(seq), count(*) FROM bank.audit_events WHERE at < $1"
	" GROUP BY stripe ORDER BY stripe",
	1, {TIMESTAMPTZOID}
};

static PgbQuery q_purge_stripe = {
	"WITH d AS (DELETE FROM bank.audit_events WHERE stripe = $1 AND seq <= $2"
	"  RETURNING seq, hash),"
	" l AS (SELECT seq, hash FROM d ORDER BY seq DESC LIMIT 1)"
	" INSERT INTO bank.audit_seals (stripe, seq, hash, at)"
	" SELECT $1, l.seq, l.hash, clock_timestamp() FROM l"
	" ON CONFLICT (stripe) DO UPDATE SET seq = excluded.seq, hash = excluded.hash,"
	"  at = excluded.at"
	" RETURNING (SELECT count(*) FROM d)",
	2, {INT4OID, INT8OID}
};

static PgbQuery q_purge_metadata = {
	"SELECT jsonb_build_object('removed', $1::bigint, 'cutoff', $2::timestamptz,"
	" 'seals', " SEALS_JSON ")::text",
	2, {INT8OID, TIMESTAMPTZOID}
};

PG_FUNCTION_INFO_V1(pgbank_purge_expired);
Datum
pgbank_purge_expired(PG_FUNCTION_ARGS)
{
	Principal	who;
	Problem		pr;
	TimestampTz cutoff;
	int			n,
				i;
	int		   *stripes;
	int64	   *upto;
	volatile int64 removed = 0;
	Datum		v[2];
	bool		isnull;

	AuthCaller("purge_expired", &who);
	if (pgb_audit_retention <= 0)
		PG_RETURN_INT64(0);
	EngineRequireReadCommitted();
	SPI_connect();
	PgbExec(&q_lock_seals, NULL, NULL, false, 0);

	/*
	 * Never seal over a broken chain: the evidence would go with it.  The
	 * check reads in a snapshot taken after the lock.
	 */
	PushActiveSnapshot(GetTransactionSnapshot());
	AuditVerify(1, PG_INT64_MAX, false, 0, NULL, &pr);
	PopActiveSnapshot();
	if (pr.found)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_AUDIT_BROKEN),
				 errmsg("the audit trail does not verify; nothing was purged"),
				 errdetail("%s at stripe %d, position %lld.", pr.what, pr.stripe,
						   (long long) pr.seq)));

	cutoff = GetCurrentTransactionStartTimestamp() -
		(TimestampTz) pgb_audit_retention * USECS_PER_SEC;
	v[0] = TimestampTzGetDatum(cutoff);
	n = PgbExec(&q_expired, v, NULL, false, 0);
	stripes = palloc(sizeof(int) * (n + 1));
	upto = palloc(sizeof(int64) * (n + 1));
	for (i = 0; i < n; i++)
	{
		stripes[i] = DatumGetInt32(PgbGet(i, 1, &isnull));
		upto[i] = PgbGetInt64(i, 2);
	}
	PG_TRY();
	{
		purging = true;
		for (i = 0; i < n; i++)
		{
			v[0] = Int32GetDatum(stripes[i]);
			v[1] = Int64GetDatum(upto[i]);
			if (PgbExec(&q_purge_stripe, v, NULL, false, 0) == 1)
				removed += PgbGetInt64(0, 1);
		}
	}
	PG_FINALLY();
	{
		purging = false;
	}
	PG_END_TRY();

	if (removed > 0)
	{
		v[0] = Int64GetDatum(removed);
		v[1] = TimestampTzGetDatum(cutoff);
		PgbExec(&q_purge_metadata, v, NULL, false, 1);
		AuditWrite(&who, 0, "audit.purge", "audit", NULL, PgbGetText(0, 1));
	}
	SPI_finish();
	PG_RETURN_INT64(removed);
}

/* ---------------------------------------------------------------------
 * Reading
 * ---------------------------------------------------------------------
 */

/*
 * bank.audit_search: rows matching the filters given, newest first, as the
 * caller sees them (row-level security: auditors and admins see all, a
 * customer their own security events), after the keyset cursor
 * (before_at, before_id) when given.
 */
PG_FUNCTION_INFO_V1(pgbank_audit_search);
Datum
pgbank_audit_search(PG_FUNCTION_ARGS)
{
	static const char *const conds[] = {
		"actor_customer = $1", "resource_type = $2", "resource_id = $3", "action = $4",
		"at >= $5", "at < $6"
	};
	Oid			types[9] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID,
		TIMESTAMPTZOID, TIMESTAMPTZOID, INT8OID, INT4OID};
	Datum		v[9];
	char		n[10] = "         ";
	StringInfoData sql;
	Principal	who;
	int			limit = PG_ARGISNULL(8) ? 100 : PG_GETARG_INT32(8);
	int			i;

	AuthCaller("audit_search", &who);
	PgbCheckPageSize("max_rows", limit);
	if (PG_ARGISNULL(6) != PG_ARGISNULL(7))
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_ARGUMENT),
				 errmsg("the cursor is before_at and before_id together")));
	if (!PG_ARGISNULL(2) && PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_ARGUMENT),
				 errmsg("resource_id needs resource_type")));

	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT * FROM bank.audit_events WHERE true");
	for (i = 0; i < 9; i++)
	{
		if (PG_ARGISNULL(i))
		{
			v[i] = (Datum) 0;
			n[i] = 'n';
			continue;
		}
		v[i] = PG_GETARG_DATUM(i);
		if (i < 6)
			appendStringInfo(&sql, " AND %s", conds[i]);
	}
	if (!PG_ARGISNULL(6))
		appendStringInfoString(&sql, " AND (at, id) < ($7, $8)");
	v[8] = Int32GetDatum(limit);
	n[8] = ' ';
	appendStringInfoString(&sql, " ORDER BY at DESC, id DESC LIMIT $9");

	SPI_connect();
	/* as the caller, under row-level security (no engine role here) */
	PgbRequirePinnedSearchPath();
	if (SPI_execute_with_args(sql.data, 9, types, v, n, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "pgbank: audit search failed");
	PgbMaterialize(fcinfo);
	SPI_finish();
	return (Datum) 0;
}

/* ---------------------------------------------------------------------
 * DBA operations
 * ---------------------------------------------------------------------
 */

/* the bank schema's objects a command touched, as JSON, and how many */
#define DDL_OBJECTS(source, where) \
	"SELECT coalesce(jsonb_agg(jsonb_build_object('type', object_type," \
	"  'identity', object_identity) ORDER BY object_identity), '[]')::text, count(*)" \
	" FROM " source " WHERE " where

static PgbQuery q_ddl_objects = {
	DDL_OBJECTS("pg_event_trigger_ddl_commands()",
				"schema_name = 'bank' OR object_identity LIKE 'bank.%'"
	/* privileges: PostgreSQL does not say on what, so every change counts */
				"  OR command_tag IN ('GRANT', 'REVOKE', 'ALTER DEFAULT PRIVILEGES')"),
	0, {}, NULL, true
};

static PgbQuery q_dropped_objects = {
	DDL_OBJECTS("pg_event_trigger_dropped_objects()", "schema_name = 'bank' AND original"),
	0, {}, NULL, true
};

/*
 * Event trigger (ddl_command_end and sql_drop): DDL that touches the bank
 * schema, by whoever runs it, is an audit row (action dba.ddl, resource the
 * command tag, metadata the objects).  The extension's own scripts are not.
 */
PG_FUNCTION_INFO_V1(pgbank_audit_ddl);
Datum
pgbank_audit_ddl(PG_FUNCTION_ARGS)
{
	EventTriggerData *trigdata;
	bool		drop;
	bool		isnull;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_ARGUMENT),
				 errmsg("bank.audit_ddl() is an event trigger")));
	trigdata = (EventTriggerData *) fcinfo->context;
	if (creating_extension || !pgb_audit)
		PG_RETURN_NULL();
	drop = strcmp(trigdata->event, "sql_drop") == 0;
	SPI_connect();
	PgbExec(drop ? &q_dropped_objects : &q_ddl_objects, NULL, NULL, true, 1);
	if (DatumGetInt64(PgbGet(0, 2, &isnull)) > 0)
	{
		char	   *objects = PgbGetText(0, 1);

		AuditWrite(NULL, 0, "dba.ddl", "ddl", GetCommandTagName(trigdata->tag),
				   psprintf("{\"objects\": %s}", objects));
	}
	SPI_finish();
	PG_RETURN_NULL();
}
