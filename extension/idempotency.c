/*-------------------------------------------------------------------------
 *
 * idempotency.c
 *		Idempotency keys, request fingerprints, and durable declines.
 *
 * A money-moving call carries a key, unique per scope: the verified customer,
 * the verified API key, or else the staff role that calls.  The request's canonical payload is hashed (SHA-256) into a
 * fingerprint stored with the transfer.  A retry with the same key and the
 * same fingerprint gets the original result; another fingerprint is PB005.
 *
 * Race freedom: before anything else, a call takes a transaction-level
 * advisory lock on (scope, key) in a lock space of its own (field4 = 'PB'),
 * so same-key calls run one after another and each sees what the previous one
 * committed (the functions are VOLATILE, so each SPI query takes a fresh
 * snapshot in READ COMMITTED).  The unique index on (scope, key) is the
 * backstop.
 *
 * Declines must be raised as errors (nothing written by the caller's
 * transaction) yet remembered, so that a retry returns the original failure.
 * So a decline is recorded by a dynamic background worker, in a transaction of
 * its own that commits (and is flushed) before the caller raises the error.
 * The caller still holds the key's advisory lock meanwhile, so no same-key
 * request can slip in between.  The worker only inserts a transfer row with
 * status failed: the transfers guard checks its accounts without locking
 * them, so it waits for none of the caller's row locks; it does so only when
 * the caller's transaction had written nothing before the call (so it holds
 * no other row locks), and it gives up after lock_timeout rather than hang
 * on a table lock the caller may hold.  If no worker can be started, or it
 * fails, the call fails with PB090 (retryable) and records nothing.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "common/hashfn.h"
#include "common/sha2.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/dsm.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"

#include "pgbank.h"

#define PGB_ADVISORY_SPACE 0x5042	/* 'PB' */
#define DECLINE_TEXT 1024

StaticAssertDecl(PGB_MAX_KEY_CHARS * 4 < 1024 && PGB_MAX_TEXT_CHARS * 4 < 2048,
			  "decline buffers too small");

/* the decline handed to the worker, in a DSM segment */
typedef struct DeclineShared
{
	int64		from_account;
	int64		to_account;
	int64		amount;
	int64		reverses;
	TimestampTz created_at;
	char		kind[16];
	char		currency[4];
	char		failure_code[6];
	char		scope[NAMEDATALEN + 16];
	char		key[1024];		/* 255 characters of up to 4 bytes */
	uint8		fingerprint[PG_SHA256_DIGEST_LENGTH];
	char		failure_message[DECLINE_TEXT];
	char		description[2048];	/* 500 characters of up to 4 bytes */
	bool		audit;			/* write audit_record with the transfer */
	AuditRecord audit_record;	/* its metadata is audit_metadata */
	char		audit_metadata[512];
	/* metadata as jsonb text follows the struct, NUL-terminated */
	/* filled by the worker */
	volatile int result;		/* 0 not done, 1 recorded, -1 failed */
	volatile int64 transfer_id;
} DeclineShared;

PGDLLEXPORT void pgbank_decline_worker(Datum main_arg);

/* validate the key and determine its scope */
void
IdemPrepare(IdemKey *idem, const char *key, const Principal *who)
{
	int			len = pg_mbstrlen(key);
	const unsigned char *p;

	if (len == 0 || len > PGB_MAX_KEY_CHARS)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_IDEMPOTENCY_KEY),
				 errmsg("idempotency key must be 1 to 255 characters long")));
	for (p = (const unsigned char *) key; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			ereport(ERROR,
					(errcode(ERRCODE_PGB_INVALID_IDEMPOTENCY_KEY),
					 errmsg("idempotency key must not contain control characters")));

	idem->key = pstrdup(key);
	/* keys belong to a customer, an API key, or a staff role */
	if (who->kind == PRINCIPAL_CUSTOMER)
		idem->scope = psprintf("customer:%lld", (long long) who->customer_id);
	else if (who->kind == PRINCIPAL_API_KEY)
		idem->scope = psprintf("api_key:%lld", (long long) who->api_key_id);
	else
		idem->scope = psprintf("role:%s", GetUserNameFromId(who->role, false));
	idem->fingerprint = NULL;
}

/* the SHA-256 fingerprint of the request's canonical payload */
void
IdemFingerprint(IdemKey *idem, const char *payload)
{
	idem->fingerprint = AuthSha256Bytea(payload);
}

/* serialise same-key calls until the end of the transaction */
void
IdemLock(const IdemKey *idem)
{
	LOCKTAG		tag;
	uint64		h;
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "%s%c%s", idem->scope, '\0', idem->key);
	h = hash_bytes_extended((const unsigned char *) buf.data, buf.len, 0);
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (h >> 32), (uint32) h,
						 PGB_ADVISORY_SPACE);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
	pfree(buf.data);
}

static void
copy_text(char *dst, size_t size, const char *src)
{
	if (src == NULL)
		dst[0] = '\0';
	else
		strlcpy(dst, src, size);
}

/*
 * The failed transfer row of a decline, inserted unless its key exists:
 * then the existing row wins.  Returns (id, inserted).
 */
#define DECLINE_INSERT_SQL \
	"WITH ins AS (" \
	" INSERT INTO bank.transfers (kind, status, from_account, to_account, currency," \
	"  amount, idempotency_scope, idempotency_key, fingerprint, description," \
	"  metadata, reverses, failure_code, failure_message, created_at, resolved_at)" \
	" VALUES ($1::bank.transfer_kind, 'failed', $2, $3, $4, $5, $6, $7, $8, $9," \
	"  $10::jsonb, $11, $12, $13, $14, $14)" \
	" ON CONFLICT (idempotency_scope, idempotency_key) DO NOTHING" \
	" RETURNING id)" \
	" SELECT id, true FROM ins UNION ALL" \
	" SELECT id, false FROM bank.transfers WHERE idempotency_scope = $6" \
	"  AND idempotency_key = $7"
#define DECLINE_NARGS 14
#define DECLINE_TYPES {TEXTOID, INT8OID, INT8OID, BPCHAROID, INT8OID, TEXTOID, \
		TEXTOID, BYTEAOID, TEXTOID, TEXTOID, INT8OID, BPCHAROID, TEXTOID, TIMESTAMPTZOID}

static PgbQuery q_record_decline = {DECLINE_INSERT_SQL, DECLINE_NARGS, DECLINE_TYPES};

/* a decline as it crosses to the worker (metadata follows d, mlen bytes) */
static void
DeclineFill(DeclineShared *d, const TransferRow *t, const IdemKey *idem,
			const char *metadata, size_t mlen)
{
	memset(d, 0, sizeof(DeclineShared));
	d->from_account = t->from_account;
	d->to_account = t->to_account;
	d->amount = t->amount;
	d->reverses = t->reverses;
	d->created_at = GetCurrentTransactionStartTimestamp();
	copy_text(d->kind, sizeof(d->kind), t->kind);
	copy_text(d->currency, sizeof(d->currency), t->currency);
	copy_text(d->failure_code, sizeof(d->failure_code), t->failure_code);
	copy_text(d->scope, sizeof(d->scope), idem->scope);
	copy_text(d->key, sizeof(d->key), idem->key);
	memcpy(d->fingerprint, VARDATA(idem->fingerprint), PG_SHA256_DIGEST_LENGTH);
	copy_text(d->failure_message, sizeof(d->failure_message), t->failure_message);
	copy_text(d->description, sizeof(d->description), t->description);
	memcpy((char *) (d + 1), metadata, mlen);
}

/* the parameters of DECLINE_INSERT_SQL */
static void
DeclineParams(const DeclineShared *d, Datum *values, char *nulls)
{
	memset(nulls, ' ', DECLINE_NARGS);
	values[0] = CStringGetTextDatum(d->kind);
	values[1] = Int64GetDatum(d->from_account);
	values[2] = Int64GetDatum(d->to_account);
	values[3] = DirectFunctionCall3(bpcharin, CStringGetDatum(d->currency),
									ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
	values[4] = Int64GetDatum(d->amount);
	values[5] = CStringGetTextDatum(d->scope);
	values[6] = CStringGetTextDatum(d->key);
	values[7] = PointerGetDatum(PgbBytea(d->fingerprint, PG_SHA256_DIGEST_LENGTH));
	values[8] = CStringGetTextDatum(d->description);
	if (d->description[0] == '\0')
		nulls[8] = 'n';
	values[9] = CStringGetTextDatum((char *) (d + 1));
	values[10] = Int64GetDatum(d->reverses);
	if (d->reverses == 0)
		nulls[10] = 'n';
	values[11] = DirectFunctionCall3(bpcharin, CStringGetDatum(d->failure_code),
									 ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
	values[12] = CStringGetTextDatum(d->failure_message);
	values[13] = TimestampTzGetDatum(d->created_at);
}

/*
 * Record a declined request as a failed transfer, durably and outside the
 * caller's transaction.  Returns the failed transfer's id.  Errors with
 * PB090 when no worker could record it.
 */
int64
IdemRecordDecline(const TransferRow *t, const IdemKey *idem, const char *metadata,
				  const AuditRecord *audit)
{
	dsm_segment *seg;
	DeclineShared *d;
	size_t		mlen = strlen(metadata) + 1;
	int64		id;

	seg = dsm_create(sizeof(DeclineShared) + mlen, 0);
	d = dsm_segment_address(seg);
	DeclineFill(d, t, idem, metadata, mlen);
	if (audit)
	{
		d->audit = true;
		memcpy(&d->audit_record, audit, sizeof(AuditRecord));
		d->audit_record.metadata = NULL;
		copy_text(d->audit_metadata, sizeof(d->audit_metadata), audit->metadata);
	}

	if (!PgbRunWorker("pgbank_decline_worker", "pgbank decline recorder", seg) ||
		d->result != 1)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_DECLINE_NOT_RECORDED),
				 errmsg("could not record the declined request"),
				 errdetail("No background worker could record it (max_worker_processes)."),
				 errhint("Retry the request with the same idempotency key.")));
	id = d->transfer_id;
	dsm_detach(seg);
	return id;
}

/*
 * Record a declined request as a failed transfer in the caller's own
 * transaction (a batch item, whose decline rests on the batch's writes and
 * so must commit or roll back with them).  Returns the failed transfer's
 * id; *inserted is false when the key had a transfer already (it wins).
 * SPI must be connected.
 */
int64
IdemRecordDeclineHere(const TransferRow *t, const IdemKey *idem, const char *metadata,
					  bool *inserted)
{
	size_t		mlen = strlen(metadata) + 1;
	DeclineShared *d = palloc(sizeof(DeclineShared) + mlen);
	Datum		values[DECLINE_NARGS];
	char		nulls[DECLINE_NARGS];

	DeclineFill(d, t, idem, metadata, mlen);
	DeclineParams(d, values, nulls);
	if (EngineExec(&q_record_decline, values, nulls) != 1)
		elog(ERROR, "pgbank: could not record a declined request");
	*inserted = DatumGetBool(PgbGet(0, 2, &(bool) {false}));
	return PgbGetInt64(0, 1);
}

/*
 * The worker: insert the failed transfer in its own transaction and commit.
 * ON CONFLICT DO NOTHING: if the key exists after all, the existing row wins
 * and its id is reported.
 */
void
pgbank_decline_worker(Datum main_arg)
{
	dsm_segment *seg;
	DeclineShared *d;
	Datum		values[DECLINE_NARGS];
	char		nulls[DECLINE_NARGS];
	Oid			types[DECLINE_NARGS] = DECLINE_TYPES;
	int			rc;

	d = PgbWorkerBegin(main_arg, &seg, "pgbank: recording a declined request");
	DeclineParams(d, values, nulls);
	engine_active = true;
	PgbRequirePinnedSearchPath();
	rc = SPI_execute_with_args(DECLINE_INSERT_SQL, DECLINE_NARGS, types, values, nulls,
							   false, 1);
	engine_active = false;
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "pgbank: could not record a declined request");
	d->transfer_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
												 SPI_tuptable->tupdesc, 1, &(bool) {false}));
	/* the decline's audit row, in the transaction that records it */
	if (d->audit && DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 2, &(bool) {false})))
	{
		snprintf(d->audit_record.resource_id, sizeof(d->audit_record.resource_id), "%lld",
				 (long long) d->transfer_id);
		d->audit_record.metadata = d->audit_metadata;
		AuditInsert(&d->audit_record);
	}
	PgbWorkerEnd(seg, &d->result);
}
