/*-------------------------------------------------------------------------
 *
 * events.c
 *		The account event feed: per customer, an ordered, durable list of
 *		what happened to their accounts (money in and out, holds, reviews,
 *		freezes), for clients that follow it (pgbank-http's
 *		GET /v1/events) and resume where they left off.
 *
 * How an event is written:
 *	- Row triggers on bank.transfers (a new row, a change of status) and on
 *	  bank.accounts (a change of status) note the event in backend memory;
 *	  they run no SQL.  A note belongs to the subtransaction that made the
 *	  change: when it aborts, its notes are dropped (a rolled-back batch
 *	  item has no events); when it commits, its parent inherits them.
 *	- At pre-commit, after the engine's opportunistic folds, one statement
 *	  resolves each noted account's customer (system accounts have none, and
 *	  get no events) and inserts the events, unnumbered, taking no lock.
 *	- Then one NOTIFY on channel pgbank_events per customer whose feed is
 *	  followed (bank.event_feeds.watched_until is in the future; set by
 *	  bank.events_watch, which pgbank-http calls for its streams), its
 *	  payload a pseudonym (hex HMAC-SHA256 under pgbank.jwt_secret of
 *	  "pgbank-events:" || customer id, 128 bits): any role that can LISTEN
 *	  learns that some customer had activity, not who, nor what, nor how
 *	  much.  pgbank-http computes the same pseudonym for the customers it
 *	  streams to.  Without a secret the payload is empty (a plain wake-up).
 *
 * How an event is numbered: by its reader (bank.events_since,
 * bank.events_head), under the lock of the customer's bank.event_feeds
 * row: the events committed and not yet numbered, in insertion order, get
 * last_seq + 1, + 2, ...; then the reader reads.
 *
 * Invariants:
 *	- Events commit with the change, or not at all: same transaction.
 *	- A customer's numbers have no gap and never change, and a reader that
 *	  has seen number n has seen every number below it: only committed rows
 *	  are numbered (a number is never held by a transaction that might
 *	  commit after a higher one, as ids from a sequence would be), and the
 *	  numbering statement runs, in READ COMMITTED, after the feed row's
 *	  lock is granted, so it sees what every earlier numberer numbered.
 *	  Reading "after n" is therefore exact.
 *	- Writers never wait for the feed: no lock, so a customer credited by
 *	  every transfer (a merchant) does not make transfers commit one at a
 *	  time.  Readers of one customer wait for each other only.
 *	- NOTIFY only for followed feeds: PostgreSQL serialises every committing
 *	  transaction that has notifications on one database-wide lock held
 *	  through its commit, which would make all transfers commit one per
 *	  flush.  The watch is read without a lock: a commit that read it just
 *	  before a new follower's watch committed does not notify, and the
 *	  follower sees that event at its next fetch (pgbank-http fetches once
 *	  more a second after a stream starts, and at every heartbeat).
 *	- A read-only or non-READ COMMITTED transaction reads only what is
 *	  numbered already.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "commands/trigger.h"
#include "common/cryptohash.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "pgbank.h"

#define EVENTS_CHANNEL "pgbank_events"

typedef struct NotedEvent
{
	int64		account;
	int64		transfer;		/* 0: none */
	int64		amount;			/* signed minor units */
	bool		has_amount;
	char		currency[4];
	const char *kind;			/* a string constant */
	int			level;			/* transaction nest level that noted it */
} NotedEvent;

/* in TopTransactionContext; forgotten at the end of every transaction */
static NotedEvent *noted = NULL;
static int	nnoted = 0;
static int	maxnoted = 0;

/* insert a transaction's events, returning their followed customers */
static PgbQuery q_write_events = {
	"WITH x AS ("
	"  SELECT x.ord, x.account_id, x.kind, x.transfer_id, x.amount, x.currency, a.customer_id"
	"    FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::text[])"
	"         WITH ORDINALITY AS x(account_id, kind, transfer_id, amount, currency, ord)"
	"    JOIN bank.accounts a ON a.id = x.account_id"
	"   WHERE a.customer_id IS NOT NULL),"
	" e AS ("
	"  INSERT INTO bank.account_events (customer_id, kind, account_id, transfer_id,"
	"   amount, currency, occurred_at)"
	"  SELECT customer_id, kind, account_id, transfer_id, amount, currency, now()"
	"    FROM x ORDER BY ord)"
	" SELECT f.customer_id FROM bank.event_feeds f"
	"  WHERE f.customer_id IN (SELECT customer_id FROM x) AND f.watched_until > now()",
	5, {INT8ARRAYOID, TEXTARRAYOID, INT8ARRAYOID, INT8ARRAYOID, TEXTARRAYOID}
};

/* the caller's watch: read first, written only when half spent */
static PgbQuery q_watch_fresh = {
	"SELECT 1 FROM bank.event_feeds WHERE customer_id = $1"
	" AND watched_until >= now() + $2 * interval '0.5 second'",
	2, {INT8OID, INT4OID}
};

static PgbQuery q_watch = {
	"INSERT INTO bank.event_feeds AS f (customer_id, last_seq, watched_until)"
	" VALUES ($1, 0, now() + $2 * interval '1 second')"
	" ON CONFLICT (customer_id) DO UPDATE SET watched_until = excluded.watched_until",
	2, {INT8OID, INT4OID}
};

/* the caller's events after a position, oldest first (under RLS) */
static PgbQuery q_events_since = {
	"SELECT e.seq, e.kind, e.account_id, e.transfer_id,"
	" bank.minor_to_amount(e.amount, c.exponent), e.currency, e.occurred_at"
	" FROM bank.account_events e JOIN bank.currencies c ON c.code = e.currency"
	" WHERE e.customer_id = $1 AND e.seq > $2 ORDER BY e.seq LIMIT $3",
	3, {INT8OID, INT8OID, INT4OID}, NULL, true
};

/* numbering: anything to number, the feed row locked, the numbers given */
static PgbQuery q_unnumbered = {
	"SELECT 1 FROM bank.account_events WHERE customer_id = $1 AND seq IS NULL LIMIT 1",
	1, {INT8OID}
};

static PgbQuery q_feed_lock = {
	"INSERT INTO bank.event_feeds AS f (customer_id, last_seq) VALUES ($1, 0)"
	" ON CONFLICT (customer_id) DO UPDATE SET last_seq = f.last_seq RETURNING last_seq",
	1, {INT8OID}
};

static PgbQuery q_number = {
	"WITH n AS ("
	"  SELECT id, row_number() OVER (ORDER BY id) AS r FROM bank.account_events"
	"   WHERE customer_id = $1 AND seq IS NULL ORDER BY id LIMIT 10000),"
	" u AS (UPDATE bank.account_events e SET seq = $2 + n.r FROM n WHERE e.id = n.id"
	"  RETURNING 1),"
	" f AS (UPDATE bank.event_feeds SET last_seq = $2 + (SELECT count(*) FROM u)"
	"  WHERE customer_id = $1)"
	" SELECT count(*) FROM u",
	2, {INT8OID, INT8OID}
};

static PgbQuery q_events_head = {
	"SELECT coalesce((SELECT last_seq FROM bank.event_feeds WHERE customer_id = $1), 0)",
	1, {INT8OID}, NULL, true
};

static void
Note(int64 account, const char *kind, int64 transfer, int64 amount, bool has_amount,
	 const char *currency)
{
	NotedEvent *e;

	if (nnoted == maxnoted)
	{
		int			n = maxnoted == 0 ? 16 : maxnoted * 2;

		noted = noted == NULL ?
			MemoryContextAlloc(TopTransactionContext, sizeof(NotedEvent) * n) :
			repalloc(noted, sizeof(NotedEvent) * n);
		maxnoted = n;
	}
	e = &noted[nnoted++];
	e->account = account;
	e->kind = kind;
	e->transfer = transfer;
	e->amount = amount;
	e->has_amount = has_amount;
	strlcpy(e->currency, currency, sizeof(e->currency));
	e->level = GetCurrentTransactionNestLevel();
}

/* the attribute number of a column of the trigger's table */
static int
ColumnNumber(TriggerData *td, const char *name)
{
	int			att = SPI_fnumber(td->tg_relation->rd_att, name);

	if (att <= 0)
		elog(ERROR, "pgbank: column %s of %s not found", name,
			 RelationGetRelationName(td->tg_relation));
	return att;
}

static Datum
Column(TriggerData *td, HeapTuple tuple, const char *name, bool *isnull)
{
	return heap_getattr(tuple, ColumnNumber(td, name), td->tg_relation->rd_att, isnull);
}

static char *
ColumnText(TriggerData *td, HeapTuple tuple, const char *name)
{
	TupleDesc	desc = td->tg_relation->rd_att;
	int			att = ColumnNumber(td, name);
	bool		isnull;
	Datum		d = heap_getattr(tuple, att, desc, &isnull);
	Oid			typoutput;
	bool		varlena;

	if (isnull)
		return NULL;
	getTypeOutputInfo(TupleDescAttr(desc, att - 1)->atttypid, &typoutput, &varlena);
	return OidOutputFunctionCall(typoutput, d);
}

static int64
ColumnInt64(TriggerData *td, HeapTuple tuple, const char *name)
{
	bool		isnull;
	Datum		d = Column(td, tuple, name, &isnull);

	return isnull ? 0 : DatumGetInt64(d);
}

/* both sides of a transfer: the debited account's amount is negative */
static void
NoteBothSides(TriggerData *td, HeapTuple row, const char *debit_kind, const char *credit_kind,
			  const char *amount_column)
{
	char	   *currency = ColumnText(td, row, "currency");
	int64		id = ColumnInt64(td, row, "id");
	int64		amount = ColumnInt64(td, row, amount_column);

	Note(ColumnInt64(td, row, "from_account"), debit_kind, id, -amount, true, currency);
	Note(ColumnInt64(td, row, "to_account"), credit_kind, id, amount, true, currency);
}

/*
 * The event of a transfer row that is new (old_status NULL) or changed
 * status.  Declines (failed) are no events: no money moved and nothing is
 * reserved; they are in bank.list_transfers and the audit trail.  A reversal
 * posts a transfer of its own (transfer.debit and .credit); the status change
 * of the reversed one adds nothing.
 */
static void
NoteTransfer(TriggerData *td, HeapTuple row, const char *old_status, const char *status)
{
	if (old_status == NULL)
	{
		if (strcmp(status, "posted") == 0)
			NoteBothSides(td, row, "transfer.debit", "transfer.credit", "amount");
		else if (strcmp(status, "pending") == 0)
			NoteBothSides(td, row, "hold.created", "hold.created", "amount");
		else if (strcmp(status, "held_for_review") == 0)
			NoteBothSides(td, row, "transfer.held_for_review", "transfer.held_for_review",
						  "amount");
		return;
	}
	if (strcmp(old_status, "pending") == 0 && strcmp(status, "posted") == 0)
		NoteBothSides(td, row, "hold.captured", "hold.captured", "posted_amount");
	else if (strcmp(old_status, "pending") == 0 && strcmp(status, "voided") == 0)
		NoteBothSides(td, row, "hold.voided", "hold.voided", "amount");
	else if (strcmp(old_status, "held_for_review") == 0 && strcmp(status, "posted") == 0)
		NoteBothSides(td, row, "transfer.debit", "transfer.credit", "posted_amount");
	else if (strcmp(old_status, "held_for_review") == 0 && strcmp(status, "voided") == 0)
		NoteBothSides(td, row, "transfer.rejected", "transfer.rejected", "amount");
	else if (strcmp(old_status, "held_for_review") == 0 && strcmp(status, "pending") == 0)
		NoteBothSides(td, row, "hold.created", "hold.created", "amount");	/* an approved hold */
}

static void
NoteAccount(TriggerData *td, HeapTuple row, const char *old_status, const char *status)
{
	const char *kind;

	if (strcmp(status, "frozen") == 0)
		kind = "account.frozen";
	else if (strcmp(status, "closed") == 0)
		kind = "account.closed";
	else if (strcmp(status, "active") == 0 && strcmp(old_status, "frozen") == 0)
		kind = "account.unfrozen";
	else
		return;
	Note(ColumnInt64(td, row, "id"), kind, 0, 0, false, ColumnText(td, row, "currency"));
}

/*
 * bank.account_event(): AFTER INSERT OR UPDATE row trigger of bank.transfers
 * and bank.accounts (the UPDATE ones only when status changes).  Runs no
 * SQL: it notes the event for the pre-commit step.
 */
PG_FUNCTION_INFO_V1(pgbank_account_event);
Datum
pgbank_account_event(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	HeapTuple	row;
	char	   *old_status = NULL;
	char	   *status;
	const char *rel;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event))
		elog(ERROR, "pgbank: bank.account_event() must be an AFTER row trigger");
	rel = RelationGetRelationName(td->tg_relation);
	if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
	{
		row = td->tg_newtuple;
		old_status = ColumnText(td, td->tg_trigtuple, "status");
	}
	else if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
		row = td->tg_trigtuple;
	else
		return PointerGetDatum(NULL);
	status = ColumnText(td, row, "status");
	if (old_status != NULL && strcmp(old_status, status) == 0)
		return PointerGetDatum(NULL);
	if (strcmp(rel, "transfers") == 0)
		NoteTransfer(td, row, old_status, status);
	else if (strcmp(rel, "accounts") == 0 && old_status != NULL)
		NoteAccount(td, row, old_status, status);
	return PointerGetDatum(NULL);
}

/* the NOTIFY payload of a customer: see the file header */
static void
Pseudonym(int64 customer, char *out)
{
	char		msg[64];
	uint8		mac[32];

	out[0] = '\0';
	if (pgb_jwt_secret == NULL || pgb_jwt_secret[0] == '\0')
		return;
	snprintf(msg, sizeof(msg), "pgbank-events:" INT64_FORMAT, customer);
	AuthHmac(PG_SHA256, (const uint8 *) pgb_jwt_secret, strlen(pgb_jwt_secret),
			 (const uint8 *) msg, strlen(msg), mac, sizeof(mac));
	hex_encode((const char *) mac, 16, out);
	out[32] = '\0';
}

static ArrayType *
Int8Array(Datum *d, int n)
{
	return construct_array(d, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
}

static ArrayType *
TextArray(Datum *d, int n)
{
	return construct_array(d, n, TEXTOID, -1, false, TYPALIGN_INT);
}

/*
 * At pre-commit (and pre-prepare, without NOTIFY, which PREPARE refuses):
 * write the transaction's noted events, then wake the listeners.
 * An error here aborts the transaction: the change and its events commit
 * together or not at all.
 */
void
EventsAtPreCommit(bool notify)
{
	int			n = nnoted;
	Datum	   *accounts,
			   *kinds,
			   *transfers,
			   *amounts,
			   *currencies;
	bool	   *nulls;
	Datum		v[5];
	char		argnulls[5] = "     ";
	int			pin,
				i,
				ncustomers;
	int64	   *customers;
	int			dims[1];
	int			lbs[1] = {1};

	if (n == 0)
		return;
	accounts = palloc(sizeof(Datum) * n);
	kinds = palloc(sizeof(Datum) * n);
	transfers = palloc(sizeof(Datum) * n);
	amounts = palloc(sizeof(Datum) * n);
	currencies = palloc(sizeof(Datum) * n);
	nulls = palloc(sizeof(bool) * n * 2);
	for (i = 0; i < n; i++)
	{
		accounts[i] = Int64GetDatum(noted[i].account);
		kinds[i] = CStringGetTextDatum(noted[i].kind);
		transfers[i] = Int64GetDatum(noted[i].transfer);
		nulls[i] = noted[i].transfer == 0;
		amounts[i] = Int64GetDatum(noted[i].amount);
		nulls[n + i] = !noted[i].has_amount;
		currencies[i] = CStringGetTextDatum(noted[i].currency);
	}
	nnoted = 0;
	dims[0] = n;
	v[0] = PointerGetDatum(Int8Array(accounts, n));
	v[1] = PointerGetDatum(TextArray(kinds, n));
	v[2] = PointerGetDatum(construct_md_array(transfers, nulls, 1, dims, lbs, INT8OID, 8,
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	v[3] = PointerGetDatum(construct_md_array(amounts, nulls + n, 1, dims, lbs, INT8OID, 8,
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	v[4] = PointerGetDatum(TextArray(currencies, n));

	pin = PgbPinSearchPath();
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();
	ncustomers = PgbExec(&q_write_events, v, argnulls, false, 0);	/* the followed */
	customers = palloc(sizeof(int64) * (ncustomers + 1));
	for (i = 0; i < ncustomers; i++)
		customers[i] = PgbGetInt64(i, 1);
	SPI_finish();
	PopActiveSnapshot();
	PgbUnpinSearchPath(pin);

	if (!notify)
		return;
	for (i = 0; i < ncustomers; i++)
	{
		char		payload[33];

		Pseudonym(customers[i], payload);
		Async_Notify(EVENTS_CHANNEL, payload);
	}
}

/* a subtransaction ended: its notes go (abort) or pass to its parent */
void
EventsAtEOSubXact(bool commit)
{
	int			level = GetCurrentTransactionNestLevel();
	int			i;

	if (commit)
	{
		for (i = 0; i < nnoted; i++)
			if (noted[i].level >= level)
				noted[i].level = level - 1;
		return;
	}
	while (nnoted > 0 && noted[nnoted - 1].level >= level)
		nnoted--;
}

/* the transaction ended: its memory is gone */
void
EventsAtEOXact(void)
{
	noted = NULL;
	nnoted = 0;
	maxnoted = 0;
}

/*
 * Number the customer's committed, unnumbered events (SPI connected): see
 * the file header.  Not in a read-only transaction, nor outside READ
 * COMMITTED (whose snapshot would not see the previous numberer's work).
 */
static void
EventsNumber(int64 customer)
{
	Datum		v[2];

	if (XactReadOnly || XactIsoLevel != XACT_READ_COMMITTED)
		return;
	v[0] = Int64GetDatum(customer);
	if (PgbExec(&q_unnumbered, v, NULL, false, 1) == 0)
		return;
	PgbExec(&q_feed_lock, v, NULL, false, 1);
	v[1] = Int64GetDatum(PgbGetInt64(0, 1));
	/* a new statement, so a new snapshot: after the lock was granted */
	PgbExec(&q_number, v, NULL, false, 1);
}

static int64
EventsCustomer(const char *function)
{
	Principal	who;

	AuthCaller(function, &who);
	if (who.kind != PRINCIPAL_CUSTOMER)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_NOT_AUTHENTICATED),
				 errmsg("bank.%s is for customers", function),
				 errhint("Call bank.authenticate() with the customer's access token first.")));
	return who.customer_id;
}

/*
 * bank.events_since(after_id, max): the caller's events numbered above
 * after_id, oldest first, at most max (1 to 1000, default 100).  Read as the
 * caller, under row-level security.
 */
PG_FUNCTION_INFO_V1(pgbank_events_since);
Datum
pgbank_events_since(PG_FUNCTION_ARGS)
{
	static const char *const names[] = {"after_id"};
	int32		limit = PG_ARGISNULL(1) ? 100 : PG_GETARG_INT32(1);
	Datum		v[3];

	PgbRequireArgs(fcinfo, 1, names);
	v[0] = Int64GetDatum(EventsCustomer("events_since"));
	if (PG_GETARG_INT64(0) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_ARGUMENT), errmsg("after_id must not be negative")));
	PgbCheckPageSize("max", limit);
	v[1] = PG_GETARG_DATUM(0);
	v[2] = Int32GetDatum(limit);
	SPI_connect();
	EventsNumber(DatumGetInt64(v[0]));
	PgbExec(&q_events_since, v, NULL, false, 0);
	PgbMaterialize(fcinfo);
	SPI_finish();
	return (Datum) 0;
}

/* bank.events_head(): the number of the caller's latest event, 0 for none */
PG_FUNCTION_INFO_V1(pgbank_events_head);
Datum
pgbank_events_head(PG_FUNCTION_ARGS)
{
	Datum		v[1];
	int64		head;

	v[0] = Int64GetDatum(EventsCustomer("events_head"));
	SPI_connect();
	EventsNumber(DatumGetInt64(v[0]));
	PgbExec(&q_events_head, v, NULL, false, 1);
	head = PgbGetInt64(0, 1);
	SPI_finish();
	PG_RETURN_INT64(head);
}

/*
 * bank.events_watch(seconds): the caller's feed is followed for the next
 * seconds (1 to 3600): commits that write its events NOTIFY.  Writes (and
 * so locks the feed row, and commits with a flush) only when less than
 * half of that time is left, so a follower that calls it at every fetch
 * costs one write per half period.
 */
PG_FUNCTION_INFO_V1(pgbank_events_watch);
Datum
pgbank_events_watch(PG_FUNCTION_ARGS)
{
	Datum		v[2];
	int32		seconds = PG_GETARG_INT32(0);

	v[0] = Int64GetDatum(EventsCustomer("events_watch"));
	if (seconds < 1 || seconds > 3600)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_ARGUMENT),
				 errmsg("seconds must be between 1 and 3600")));
	v[1] = Int32GetDatum(seconds);
	EngineRequireReadCommitted();
	SPI_connect();
	if (PgbExec(&q_watch_fresh, v, NULL, true, 1) == 0)
		PgbExec(&q_watch, v, NULL, false, 0);
	SPI_finish();
	PG_RETURN_VOID();
}
