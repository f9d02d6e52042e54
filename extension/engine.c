/*-------------------------------------------------------------------------
 *
 * engine.c
 *		The posting engine: every write to balances, entries and legs.
 *
 * A transfer has a debit leg and a credit leg of the same amount.  How a leg
 * is written depends on whether it must check funds:
 *
 *	- the debit of a customer account checks funds: the account row is locked
 *	  FOR NO KEY UPDATE, its pending legs are folded, the funds check is made
 *	  on the folded balance, and the debit is written as an entry with its
 *	  balance_after in the same statement that updates accounts.balance;
 *	- every other leg (any credit; either leg of a system account) is written
 *	  lock-free to bank.pending_legs.  A credit to a customer account takes
 *	  only FOR KEY SHARE on it (explicitly, to keep close_account out while
 *	  it is in flight), which other credits, debits and folds do not wait
 *	  for; a leg of a system account takes no lock at all (no foreign key:
 *	  the guard checks accounts without locking).  So a hot account (a merchant receiving most
 *	  transfers, the settlement account behind every deposit) never makes
 *	  transfers queue behind its row lock until commit.
 *
 * Folding moves an account's pending legs into entries, in leg id order, with
 * running balances, under the account's FOR NO KEY UPDATE lock; it happens
 * before every locked debit, at close, on demand (bank.fold_account) and
 * opportunistically: a lock-free leg whose id is a multiple of
 * pgbank.fold_every folds its account if the row is not locked (SKIP LOCKED),
 * which bounds the pending legs of a hot account without ever waiting.
 *
 * Invariants kept here (and checked by guard.c and bank.check_ledger()):
 *	- posted balance = accounts.balance + sum(pending legs); accounts.balance =
 *	  sum(entries) = balance_after of the account's last entry;
 *	- all entries of an account are written under its row lock, so their ids,
 *	  balance_after values and commit order agree;
 *	- a customer account's pending legs are credits only, so its folded
 *	  balance is a lower bound of its posted balance and a funds check on the
 *	  folded balance is safe;
 *	- declines (funds, frozen, closed) are decided before this transaction
 *	  writes anything, and recorded by idempotency.c outside it.
 *
 * Locks, in the order they are taken: the idempotency key's advisory lock;
 * the debited customer account FOR NO KEY UPDATE together with the credited
 * account FOR KEY SHARE (one statement); then transfer rows.  KEY SHARE does
 * not conflict with NO KEY UPDATE, so a transaction waits for at most one
 * account lock (its debit) and transfers in opposite directions cannot
 * deadlock.  close_account takes FOR UPDATE, which waits for in-flight
 * credits so that none lands in a closed account.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/transam.h"
#include "access/xact.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/fmgroids.h"

#include "pgbank.h"

bool		engine_active = false;

#define TRANSFER_COLUMNS \
	"id, kind::text, status::text, from_account, to_account, currency, amount," \
	" posted_amount, description, metadata, reverses, failure_code::text, failure_message," \
	" created_at, posted_at, expires_at, resolved_at"

static PgbQuery q_transfer_by_id = {
	"SELECT " TRANSFER_COLUMNS ", fingerprint FROM bank.transfers WHERE id = $1",
	1, {INT8OID}
};
static PgbQuery q_transfer_by_id_lock = {
	"SELECT " TRANSFER_COLUMNS ", fingerprint FROM bank.transfers WHERE id = $1"
	" FOR NO KEY UPDATE",
	1, {INT8OID}
};

/*
 * The two accounts of a move, unlocked (existence, currency, system or not),
 * each with the transfer already created under the idempotency key, if any.
 * Run after the key's advisory lock is held.
 */
static PgbQuery q_accounts_and_key = {
	"SELECT a.id, a.currency, a.customer_id IS NULL, k.*, a.customer_id"
	" FROM bank.accounts a LEFT JOIN LATERAL ("
	"  SELECT " TRANSFER_COLUMNS ", fingerprint FROM bank.transfers"
	"   WHERE idempotency_scope = $3 AND idempotency_key = $4) k ON true"
	" WHERE a.id IN ($1, $2)",
	4, {INT8OID, INT8OID, TEXTOID, TEXTOID}
};


/*
 * Lock a customer account FOR NO KEY UPDATE (and the account it credits FOR
 * KEY SHARE, reading its latest status), and fold its pending legs into
 * entries, in one statement.  The DELETE starts only once the lock is held
 * (the EXISTS is a one-time filter); a leg that the previous lock holder
 * already folded is skipped by the DELETE itself, and a leg committed after
 * this statement's snapshot stays pending, so the folded sum is exact and
 * consistent with the locked balance.  accounts.balance is NOT updated here:
 * the caller's next write sets it to base + folded (+ its own change);
 * EngineAssertSettled() checks that it did.
 */
#define LOCK_FOLD_SQL(lockclause) \
	"WITH a AS (" \
	"  SELECT id, currency, balance, pending_out, overdraft_limit, status" \
	"    FROM bank.accounts WHERE id = $1 " lockclause ")," \
	" b AS (SELECT status FROM bank.accounts WHERE id = $2 FOR KEY SHARE)," \
	" d AS (" \
	"  DELETE FROM bank.pending_legs WHERE account_id = $1 AND EXISTS (SELECT 1 FROM a)" \
	"  RETURNING id, transfer_id, amount, posted_at)," \
	" e AS (" \
	"  INSERT INTO bank.entries (account_id, transfer_id, currency, amount, balance_after, posted_at)" \
	"  SELECT $1, d.transfer_id, a.currency, d.amount," \
	"         a.balance + sum(d.amount) OVER (ORDER BY d.id), d.posted_at" \
	"    FROM d, a ORDER BY d.id" \
	"  RETURNING amount)" \
	" SELECT a.balance, coalesce((SELECT sum(amount) FROM e), 0)::bigint, a.pending_out," \
	"  a.overdraft_limit, a.status::text, (SELECT status::text FROM b), a.currency," \
	"  (SELECT count(*) FROM e)::int4" \
	" FROM a"

static PgbQuery q_lock_fold = {
	LOCK_FOLD_SQL("FOR NO KEY UPDATE"), 2, {INT8OID, INT8OID}
};
static PgbQuery q_lock_fold_skip = {
	LOCK_FOLD_SQL("FOR NO KEY UPDATE SKIP LOCKED"), 2, {INT8OID, INT8OID}
};

/*
 * Post a transfer whose debit is a locked customer account, or place a hold
 * on it, or hold it for review: the transfer row, the debit entry, the new
 * balance ($12 = folded balance - amount; for a hold or a review the folded
 * balance, and pending_out grows) and the credit leg, lock-free, in one
 * statement.
 */
#define TRANSFER_INSERT \
	"  INSERT INTO bank.transfers (kind, status, from_account, to_account, currency, amount," \
	"   posted_amount, idempotency_scope, idempotency_key, fingerprint, description, metadata," \
	"   reverses, posted_at, expires_at, resolved_at)"

static PgbQuery q_post_debit = {
	"WITH t AS (" TRANSFER_INSERT
	"  VALUES ($1::bank.transfer_kind, $13::bank.transfer_status, $2, $3, $4, $5,"
	"   CASE WHEN $13 = 'posted' THEN $5 END, $6, $7, $8, $9, $10, $11,"
	"   CASE WHEN $13 = 'posted' THEN now() END, now() + $14,"
	"   CASE WHEN $13 = 'posted' THEN now() END)"
	"  RETURNING " TRANSFER_COLUMNS "),"
	" e AS ("
	"  INSERT INTO bank.entries (account_id, transfer_id, currency, amount, balance_after, posted_at)"
	"  SELECT $2, t.id, $4, -$5, $12, t.posted_at FROM t WHERE $13 = 'posted'),"
	" u AS ("
	"  UPDATE bank.accounts SET balance = $12,"
	"   pending_out = pending_out + CASE WHEN $13 <> 'posted' THEN $5 ELSE 0 END"
	"  WHERE id = $2),"
	" c AS ("
	"  INSERT INTO bank.pending_legs (account_id, transfer_id, currency, amount, posted_at)"
	"  SELECT $3, t.id, $4, $5, t.posted_at FROM t WHERE $13 = 'posted' RETURNING id)"
	" SELECT t.*, 0::bigint, (SELECT id FROM c) FROM t",
	14, {TEXTOID, INT8OID, INT8OID, BPCHAROID, INT8OID, TEXTOID, TEXTOID, BYTEAOID,
	TEXTOID, JSONBOID, INT8OID, INT8OID, TEXTOID, INTERVALOID}
};

/*
 * Post a transfer whose debit is a system account: both legs lock-free.  The
 * credited account is locked FOR KEY SHARE and the transfer is written only
 * if it is not closed (no row back: the caller declines).
 */
static PgbQuery q_post_free = {
	"WITH b AS (SELECT status FROM bank.accounts WHERE id = $3 FOR KEY SHARE),"
	" t AS (" TRANSFER_INSERT
	"  SELECT $1::bank.transfer_kind, 'posted', $2, $3, $4, $5, $5, $6, $7, $8, $9, $10, $11,"
	"   now(), NULL, now() FROM b WHERE b.status <> 'closed'"
	"  RETURNING " TRANSFER_COLUMNS "),"
	" c AS ("
	"  INSERT INTO bank.pending_legs (account_id, transfer_id, currency, amount, posted_at)"
	"  SELECT x.account, t.id, $4, x.amount, t.posted_at"
	"    FROM t, (VALUES ($2, -$5), ($3, $5)) x(account, amount)"
	"  RETURNING id, account_id)"
	" SELECT t.*, (SELECT id FROM c WHERE account_id = $2), (SELECT id FROM c WHERE account_id = $3)"
	" FROM t",
	11, {TEXTOID, INT8OID, INT8OID, BPCHAROID, INT8OID, TEXTOID, TEXTOID, BYTEAOID,
	TEXTOID, JSONBOID, INT8OID}
};

/* the credited account's latest status, under FOR KEY SHARE (diagnosis) */
static PgbQuery q_credit_status = {
	"SELECT status::text FROM bank.accounts WHERE id = $1 FOR KEY SHARE",
	1, {INT8OID}
};

static PgbQuery q_mark_reversed = {
	"UPDATE bank.transfers SET status = 'reversed' WHERE id = $1 AND status = 'posted'",
	1, {INT8OID}
};

/* set a locked account's balance (and change pending_out) */
static PgbQuery q_set_balance = {
	"UPDATE bank.accounts SET balance = $2, pending_out = pending_out + $3 WHERE id = $1",
	3, {INT8OID, INT8OID, INT8OID}
};

/* run an engine write: the guard triggers let only these through */
int
EngineExec(PgbQuery *q, Datum *values, const char *nulls)
{
	int			n;

	engine_active = true;
	PG_TRY();
	{
		n = PgbExec(q, values, nulls, false, 0);
	}
	PG_FINALLY();
	{
		engine_active = false;
	}
	PG_END_TRY();
	return n;
}

Datum
EngineBpchar(const char *s)
{
	return DirectFunctionCall3(bpcharin, CStringGetDatum(s),
							   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
}

static TimestampTz
GetTs(int row, int col)
{
	bool		isnull;
	Datum		d = PgbGet(row, col, &isnull);

	return isnull ? 0 : DatumGetTimestampTz(d);
}

/* row 0 of SPI_tuptable (TRANSFER_COLUMNS) into a TransferRow */
static void
TransferFromSpiAt(TransferRow *t, int row, int off)
{
	bool		isnull;
	char	   *s;

	memset(t, 0, sizeof(*t));
	t->id = PgbGetInt64(row, off + 1);
	strlcpy(t->kind, PgbGetText(row, off + 2), sizeof(t->kind));
	strlcpy(t->status, PgbGetText(row, off + 3), sizeof(t->status));
	t->from_account = PgbGetInt64(row, off + 4);
	t->to_account = PgbGetInt64(row, off + 5);
	strlcpy(t->currency, PgbGetText(row, off + 6), sizeof(t->currency));
	t->amount = PgbGetInt64(row, off + 7);
	t->posted_amount = PgbGetInt64(row, off + 8);
	t->description = PgbGetText(row, off + 9);
	t->metadata = PgbGet(row, off + 10, &isnull);
	t->metadata = PointerGetDatum(PG_DETOAST_DATUM_COPY(t->metadata));
	t->reverses = PgbGetInt64(row, off + 11);
	s = PgbGetText(row, off + 12);
	t->failure_code = s;
	t->failure_message = PgbGetText(row, off + 13);
	t->created_at = GetTs(row, off + 14);
	t->posted_at = GetTs(row, off + 15);
	t->expires_at = GetTs(row, off + 16);
	t->resolved_at = GetTs(row, off + 17);
	t->exponent = MoneyExponent(t->currency);
}

static void
TransferFromSpi(TransferRow *t)
{
	TransferFromSpiAt(t, 0, 0);
}

static PgbQuery q_kyc_approved = {
	"SELECT c.kyc_status = 'approved' FROM bank.accounts a"
	" JOIN bank.customers c ON c.id = a.customer_id WHERE a.id = $1",
	1, {INT8OID}
};

/*
 * PB046 when more than pgbank.kyc_transfer_limit (major units of the
 * currency) leaves an account whose owner's KYC is not approved.  Below the
 * limit nothing is read.
 */
void
EngineCheckKyc(int64 account, int64 amount, int exponent, const char *currency)
{
	int64		limit = pgb_kyc_transfer_limit;
	Datum		arg = Int64GetDatum(account);
	int			i;

	for (i = 0; i < exponent; i++)
		limit *= 10;
	if (amount <= limit)
		return;
	if (PgbExec(&q_kyc_approved, &arg, NULL, false, 1) == 1 &&
		DatumGetBool(PgbGet(0, 1, &(bool) {false})))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_PGB_KYC_REQUIRED),
			 errmsg("moving more than %d %s at once needs an approved KYC review",
					pgb_kyc_transfer_limit, currency),
			 errhint("Staff set the KYC status with bank.set_kyc_status().")));
}

/* load a transfer by id, optionally locking it; PB010 when absent */
void
EngineLoadTransfer(int64 id, bool lock, TransferRow *out)
{
	Datum		arg = Int64GetDatum(id);

	/* read-write: the caller may have just changed it */
	if (PgbExec(lock ? &q_transfer_by_id_lock : &q_transfer_by_id, &arg, NULL,
				false, 1) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_TRANSFER_NOT_FOUND),
				 errmsg("transfer %lld does not exist", (long long) id)));
	TransferFromSpi(out);
}

/*
 * Every function that writes checks what it reads against committed state
 * (locks, re-checks after waits, idempotency keys): under REPEATABLE READ or
 * SERIALIZABLE what a transaction snapshot hides would be missed.
 */
void
EngineRequireReadCommitted(void)
{
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_PGB_ISOLATION),
				 errmsg("pgbank changes the ledger only in READ COMMITTED transactions"),
				 errhint("Run the call in its own transaction, or SET TRANSACTION ISOLATION LEVEL READ COMMITTED.")));
}

/* PB005 unless the stored fingerprint equals the request's */
static void
CheckFingerprint(const IdemKey *idem, bytea *fp)
{
	if (fp == NULL || VARSIZE_ANY_EXHDR(fp) != VARSIZE_ANY_EXHDR(idem->fingerprint) ||
		memcmp(VARDATA_ANY(fp), VARDATA_ANY(idem->fingerprint), VARSIZE_ANY_EXHDR(fp)) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_IDEMPOTENCY_CONFLICT),
				 errmsg("idempotency key \"%s\" was already used for another request",
						idem->key),
				 errhint("Use a new key for a new request; retry with the same key only with the same payload.")));
}

/*
 * The canonical payload of a move, for its fingerprint: every field that
 * defines the request, in a fixed order, amounts in minor units, metadata in
 * jsonb's canonical text.
 */
static char *
MovePayload(MoveRequest *req, const char *currency, int64 amount, const char *metadata)
{
	char	   *expires = "";

	if (req->hold && req->expires_in)
		expires = DatumGetCString(DirectFunctionCall1(interval_out,
													  IntervalPGetDatum(req->expires_in)));
	return psprintf("v1|%s|%lld|%lld|%s|%lld|%s|%s|%lld|%d:%s|%s",
					req->kind, (long long) req->debit_account,
					(long long) req->credit_account, currency, (long long) amount,
					req->hold ? "hold" : "post", expires, (long long) req->reverses,
					req->description ? (int) strlen(req->description) : -1,
					req->description ? req->description : "", metadata);
}

/* the metadata of a decline's audit row */
static char *
DeclineAuditMetadata(const TransferRow *t)
{
	return psprintf("{\"kind\": \"%s\", \"status\": \"failed\", \"from\": %lld,"
					" \"to\": %lld, \"amount\": %lld, \"currency\": \"%s\","
					" \"code\": \"%s\"}",
					t->kind, (long long) t->from_account, (long long) t->to_account,
					(long long) t->amount, t->currency, t->failure_code);
}

/*
 * Decline: record the request as a failed transfer outside this transaction,
 * then raise the decline.  Nothing was written by this transaction.  With
 * req->decline_to set, keep it there instead and raise: the caller rolls
 * back its subtransaction and records it with EngineRecordDecline.
 */
void
EngineDecline(MoveRequest *req, TransferRow *t, const IdemKey *idem,
			  int sqlstate, const char *fmt,...)
{
	va_list		ap;
	char		buf[1024];
	char		code[6];
	AuditRecord audit;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	strlcpy(code, unpack_sql_state(sqlstate), sizeof(code));
	t->failure_code = code;
	t->failure_message = buf;
	strlcpy(t->status, "failed", sizeof(t->status));
	if (req->decline_to != NULL)
	{
		/* kept for the caller, who rolls back, then records it (a batch) */
		MoveDecline *d = req->decline_to;
		MemoryContext old = MemoryContextSwitchTo(GetMemoryChunkContext(d));

		d->t = *t;
		d->t.description = t->description ? pstrdup(t->description) : NULL;
		d->t.failure_code = pstrdup(code);
		d->t.failure_message = pstrdup(buf);
		d->t.metadata = (Datum) 0;
		d->idem.scope = pstrdup(idem->scope);
		d->idem.key = pstrdup(idem->key);
		d->idem.fingerprint = DatumGetByteaPCopy(PointerGetDatum(idem->fingerprint));
		d->metadata = DatumGetCString(DirectFunctionCall1(jsonb_out, req->metadata));
		d->declined = true;
		MemoryContextSwitchTo(old);
		ereport(ERROR,
				(errcode(sqlstate),
				 errmsg("%s", buf),
				 errdetail("Declined; recorded with the batch.")));
	}
	if (!req->record_decline)
		ereport(ERROR,
				(errcode(sqlstate),
				 errmsg("%s", buf),
				 errdetail("Declined; not recorded, because this transaction had written before the call.")));
	AuditRecordInit(&audit, &req->who, 0, "transfer.declined", "transfer", NULL,
					DeclineAuditMetadata(t));
	t->id = IdemRecordDecline(t, idem,
							  DatumGetCString(DirectFunctionCall1(jsonb_out, req->metadata)),
							  pgb_audit ? &audit : NULL);
	ereport(ERROR,
			(errcode(sqlstate),
			 errmsg("%s", buf),
			 errdetail("Declined; recorded as failed transfer %lld.", (long long) t->id)));
}

/*
 * Record a decline kept by EngineDecline in this transaction: the failed
 * transfer and its audit row, as a decline recorded outside would have.
 * The key's lock must be held.  Returns the failed transfer's id (that of
 * the key's transfer if one was committed meanwhile).
 */
int64
EngineRecordDecline(const Principal *who, MoveDecline *d)
{
	bool		inserted;

	d->t.id = IdemRecordDeclineHere(&d->t, &d->idem, d->metadata, &inserted);
	if (inserted)
		AuditWrite(who, 0, "transfer.declined", "transfer", psprintf("%lld", (long long) d->t.id),
				   DeclineAuditMetadata(&d->t));
	return d->t.id;
}

/* raise the decline recorded in a failed transfer (an idempotent replay) */
void
EngineRaiseRecorded(const TransferRow *t)
{
	const char *c = t->failure_code;

	ereport(ERROR,
			(errcode(MAKE_SQLSTATE(c[0], c[1], c[2], c[3], c[4])),
			 errmsg("%s", t->failure_message ? t->failure_message : "declined"),
			 errdetail("Declined; recorded as failed transfer %lld.", (long long) t->id)));
}

/*
 * Engine state of this backend: the account locked and folded by
 * EngineLockFold whose balance the next write must set, if any.
 */
static int64 unsettled_account = 0;

/* accounts to fold opportunistically at pre-commit */
#define FOLD_QUEUE_SIZE 16
static int64 fold_queue[FOLD_QUEUE_SIZE];
static int	fold_queue_len = 0;

/*
 * Lock a customer account (and the account it credits, 0 for none, FOR KEY
 * SHARE) and fold its pending legs.  Returns false when the account does not
 * exist, is a system account, or (skip_locked) is locked by another
 * transaction.  The caller must then write the account's balance, base +
 * folded + its change, through q_post_debit or EngineSettle.
 */
bool
EngineLockFold(int64 account, int64 credit_account, bool skip_locked, AccountState *st)
{
	Datum		v[2];

	if (unsettled_account != 0)
		elog(ERROR, "pgbank: account %lld was folded but not settled",
			 (long long) unsettled_account);
	v[0] = Int64GetDatum(account);
	v[1] = Int64GetDatum(credit_account);
	if (EngineExec(skip_locked ? &q_lock_fold_skip : &q_lock_fold, v, NULL) != 1)
		return false;
	st->base = PgbGetInt64(0, 1);
	st->folded = PgbGetInt64(0, 2);
	st->posted = st->base + st->folded;
	st->pending_out = PgbGetInt64(0, 3);
	st->overdraft = PgbGetInt64(0, 4);
	st->status = PgbGetText(0, 5);
	st->credit_status = PgbGetText(0, 6);
	strlcpy(st->currency, PgbGetText(0, 7), sizeof(st->currency));
	st->folded_legs = DatumGetInt32(PgbGet(0, 8, &(bool) {false}));
	if (st->folded_legs != 0)
		unsettled_account = account;
	return true;
}

/*
 * Write a locked account's balance: the folded balance plus delta, and change
 * pending_out by pending_delta.  Skips the write when nothing changes.
 */
void
EngineSettle(int64 account, const AccountState *st, int64 delta, int64 pending_delta)
{
	Datum		v[3];

	if (st->folded_legs != 0 || delta != 0 || pending_delta != 0)
	{
		v[0] = Int64GetDatum(account);
		v[1] = Int64GetDatum(st->posted + delta);
		v[2] = Int64GetDatum(pending_delta);
		EngineExec(&q_set_balance, v, NULL);
	}
	if (unsettled_account == account)
		unsettled_account = 0;
}

/* the caller's own statement wrote the balance of a folded account */
void
EngineMarkSettled(int64 account)
{
	if (unsettled_account == account)
		unsettled_account = 0;
}

/* every SQL-callable function that folds calls this before it returns */
void
EngineAssertSettled(void)
{
	if (unsettled_account != 0)
	{
		int64		a = unsettled_account;

		unsettled_account = 0;
		elog(ERROR, "pgbank: account %lld was folded but not settled", (long long) a);
	}
}

/* forget engine state when a transaction ends (an error may interrupt it) */
void
EngineReset(void)
{
	unsettled_account = 0;
	engine_active = false;
}

/* the transaction ended without committing: nothing to fold */
void
EngineForgetQueued(void)
{
	fold_queue_len = 0;
}

/*
 * Lock and fold an account now; with skip_locked, only if no other
 * transaction holds it.  Returns whether any leg was folded.
 */
bool
EngineFold(int64 account, bool skip_locked)
{
	AccountState st;

	if (!EngineLockFold(account, 0, skip_locked, &st))
	{
		if (skip_locked)
			return false;
		AccountNotFound(account);
	}
	EngineSettle(account, &st, 0, 0);
	return st.folded_legs != 0;
}

/*
 * After writing a lock-free leg with id leg: when the id is a multiple of
 * pgbank.fold_every, queue its account to be folded at pre-commit if nobody
 * holds its lock then; this bounds a hot account's pending legs without ever
 * waiting.
 */
void
EngineMaybeFold(int64 account, int64 leg)
{
	int			i;

	if (leg == 0 || pgb_fold_every <= 0 || leg % pgb_fold_every != 0)
		return;
	for (i = 0; i < fold_queue_len; i++)
		if (fold_queue[i] == account)
			return;
	if (fold_queue_len < FOLD_QUEUE_SIZE)
		fold_queue[fold_queue_len++] = account;
}

/*
 * At pre-commit, fold the queued accounts (SKIP LOCKED: never waiting).  The
 * lock a fold takes then lasts only through the commit itself, so it cannot
 * be part of a deadlock with a later statement of this transaction.  Each
 * fold runs in a subtransaction: a fold that fails is rolled back and the
 * transaction still commits (folding is an optimisation, never required).
 * No function of ours is running at pre-commit, so the fold pins search_path
 * itself: under the caller's path its SQL (sum, count) could resolve to the
 * caller's objects and run them as bank_engine.
 */
void
EngineFoldQueued(void)
{
	int			n = fold_queue_len;
	int64		queued[FOLD_QUEUE_SIZE];
	int			i;

	if (n == 0)
		return;
	memcpy(queued, fold_queue, sizeof(int64) * n);
	fold_queue_len = 0;
	for (i = 0; i < n; i++)
	{
		PgbSubxact	sx;

		PgbSubxactBegin(&sx);
		PG_TRY();
		{
			int			pin = PgbPinSearchPath();

			PushActiveSnapshot(GetTransactionSnapshot());
			SPI_connect();
			(void) EngineFold(queued[i], true);
			SPI_finish();
			PopActiveSnapshot();
			PgbUnpinSearchPath(pin);
			PgbSubxactCommit(&sx);
		}
		PG_CATCH();
		{
			FreeErrorData(PgbSubxactAbort(&sx));
			EngineReset();
		}
		PG_END_TRY();
	}
}

/*
 * Move money: post a transfer, or place a hold.  Idempotent per key.  On
 * return *out is the transfer (new, or the original for a replay).
 */
void
EngineMove(MoveRequest *req, TransferRow *out)
{
	Datum		v[14];
	char		n[15] = "              ";
	bool		debit_system = false,
				credit_system = false;
	char		currency[4] = {0};
	char		other_currency[4] = {0};
	int			exponent;
	int64		amount;
	IdemKey		idem;
	char	   *metadata;
	AccountState st;
	int			i,
				rows;
	bool		replay = false;
	bytea	   *stored_fingerprint = NULL;
	bool		isnull;
	TransferRow t;
	int64		debit_customer = 0;
	int64		credit_customer = 0;
	bool		screened;
	RiskState	risk;
	const char *status;

	/* a same-key transfer committed after a transaction snapshot is hidden */
	EngineRequireReadCommitted();

	/*
	 * A decline is recorded (outside this transaction) only if it rests on
	 * committed state: if this transaction has written or locked rows
	 * before this call, what the decision saw may still roll back.
	 */
	req->record_decline = !TransactionIdIsValid(GetTopTransactionIdIfAny());

	/*
	 * A customer moves money only out of their own accounts: the debited
	 * account must be visible to them under row-level security.
	 */
	if (req->who.kind == PRINCIPAL_CUSTOMER && req->debit_account)
		AccountRequireVisible(req->debit_account);

	/* the key first: same-key requests queue here */
	IdemPrepare(&idem, req->idempotency_key, &req->who);
	IdemLock(&idem);

	/* the accounts (existence, currency, system or not) and the key's transfer */
	v[0] = Int64GetDatum(req->debit_account ? req->debit_account : req->credit_account);
	v[1] = Int64GetDatum(req->credit_account ? req->credit_account : req->debit_account);
	v[2] = CStringGetTextDatum(idem.scope);
	v[3] = CStringGetTextDatum(idem.key);
	rows = PgbExec(&q_accounts_and_key, v, NULL, false, 2);
	for (i = 0; i < rows; i++)
	{
		int64		id = PgbGetInt64(i, 1);
		bool		sys = DatumGetBool(PgbGet(i, 3, &isnull));

		if (id == req->debit_account)
		{
			debit_system = sys;
			strlcpy(currency, PgbGetText(i, 2), sizeof(currency));
			debit_customer = PgbGetInt64(i, 3 + 18 + 1);
		}
		if (id == req->credit_account)
		{
			credit_system = sys;
			strlcpy(other_currency, PgbGetText(i, 2), sizeof(other_currency));
			credit_customer = PgbGetInt64(i, 3 + 18 + 1);
		}
	}
	if (rows > 0 && !PgbIsNull(0, 4))
	{
		/* copy the fingerprint first: TransferFromSpiAt may run a query */
		Datum		fp = PgbGet(0, 3 + 18, &isnull);

		if (!isnull)
			stored_fingerprint = DatumGetByteaPCopy(fp);
		TransferFromSpiAt(out, 0, 3);
		replay = true;
	}
	if (req->debit_account && currency[0] == '\0')
		AccountNotFound(req->debit_account);
	if (req->credit_account && other_currency[0] == '\0')
		AccountNotFound(req->credit_account);

	/*
	 * accounts named by the caller are customer accounts (reversals and the
	 * bank's own postings, interest and fees, excepted)
	 */
	if (strcmp(req->kind, "reversal") != 0 && !req->bank_posting)
	{
		if (req->debit_account && debit_system)
			AccountNotFound(req->debit_account);
		if (req->credit_account && credit_system)
			AccountNotFound(req->credit_account);
	}

	/* deposits and withdrawals: the other side is the settlement account */
	if (req->debit_account == 0)
	{
		strlcpy(currency, other_currency, sizeof(currency));
		req->debit_account = MoneySettlementAccount(currency);
		debit_system = true;
	}
	else if (req->credit_account == 0)
	{
		strlcpy(other_currency, currency, sizeof(other_currency));
		req->credit_account = MoneySettlementAccount(currency);
		credit_system = true;
	}
	if (req->debit_account == req->credit_account)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_SAME_ACCOUNT),
				 errmsg("cannot move money from an account to itself")));
	if (strcmp(currency, other_currency) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_CURRENCY_MISMATCH),
				 errmsg("accounts %lld and %lld hold different currencies (%s, %s)",
						(long long) req->debit_account, (long long) req->credit_account,
						currency, other_currency)));

	exponent = MoneyExponent(currency);
	amount = req->amount ? MoneyToMinor(req->amount, exponent) : req->amount_minor;
	metadata = DatumGetCString(DirectFunctionCall1(jsonb_out, req->metadata));
	IdemFingerprint(&idem, MovePayload(req, currency, amount, metadata));

	if (replay)
	{
		/* the key's transfer was read with the accounts: compare, then replay */
		CheckFingerprint(&idem, stored_fingerprint);
		if (strcmp(out->status, "failed") == 0 && req->decline_to == NULL)
			EngineRaiseRecorded(out);
		req->replayed = true;
		return;
	}

	/* large amounts out of a customer account need KYC approval */
	if (!debit_system && strcmp(req->kind, "reversal") != 0 && !req->bank_posting)
		EngineCheckKyc(req->debit_account, amount, exponent, currency);

	/*
	 * Fraud screening and limits: transfers, withdrawals and holds out of a
	 * customer account (not reversals, fees or interest, which the bank
	 * itself posts).  The customer's counters are locked here, before the
	 * account: one screening per customer at a time.
	 */
	screened = !debit_system && (strcmp(req->kind, "transfer") == 0 ||
								 strcmp(req->kind, "withdrawal") == 0);
	if (screened)
		RiskLock(&risk, debit_customer, currency,
				 strcmp(req->kind, "transfer") == 0 && credit_customer != debit_customer ?
				 req->credit_account : 0, amount);

	/* the transfer as it would be recorded, for a decline */
	memset(&t, 0, sizeof(t));
	strlcpy(t.kind, req->kind, sizeof(t.kind));
	t.from_account = req->debit_account;
	t.to_account = req->credit_account;
	strlcpy(t.currency, currency, sizeof(t.currency));
	t.exponent = exponent;
	t.amount = amount;
	t.description = (char *) req->description;
	t.reverses = req->reverses;

	/* a reversal marks its original reversed, once (transfer rows after accounts) */
	if (req->reverses && !debit_system)
	{
		if (!EngineLockFold(req->debit_account, req->credit_account, false, &st))
			AccountNotFound(req->debit_account);
	}
	if (req->reverses)
	{
		v[0] = Int64GetDatum(req->reverses);
		if (EngineExec(&q_mark_reversed, v, NULL) != 1)
			ereport(ERROR,
					(errcode(ERRCODE_PGB_NOT_REVERSIBLE),
					 errmsg("transfer %lld is not posted or was already reversed",
							(long long) req->reverses)));
	}
	else if (!debit_system &&
			 !EngineLockFold(req->debit_account, req->credit_account, false, &st))
		AccountNotFound(req->debit_account);

	/* the common columns of both post statements */
	v[0] = CStringGetTextDatum(req->kind);
	v[1] = Int64GetDatum(req->debit_account);
	v[2] = Int64GetDatum(req->credit_account);
	v[3] = EngineBpchar(currency);
	v[4] = Int64GetDatum(amount);
	v[5] = CStringGetTextDatum(idem.scope);
	v[6] = CStringGetTextDatum(idem.key);
	v[7] = PointerGetDatum(idem.fingerprint);
	if (req->description)
		v[8] = CStringGetTextDatum(req->description);
	else
		n[8] = 'n';
	v[9] = req->metadata;
	v[10] = Int64GetDatum(req->reverses);
	if (req->reverses == 0)
		n[10] = 'n';

	if (debit_system)
	{
		/* both legs lock-free; only a closed credited account refuses */
		if (EngineExec(&q_post_free, v, n) != 1)
		{
			v[0] = Int64GetDatum(req->credit_account);
			PgbExec(&q_credit_status, v, NULL, false, 1);
			EngineDecline(req, &t, &idem, ERRCODE_PGB_ACCOUNT_CLOSED,
						  "account %lld is %s", (long long) req->credit_account,
						  PgbGetText(0, 1));
		}
		{
			int64		debit_leg = PgbGetInt64(0, 18);
			int64		credit_leg = PgbGetInt64(0, 19);

			TransferFromSpi(out);
			EngineMaybeFold(req->debit_account, debit_leg);
			EngineMaybeFold(req->credit_account, credit_leg);
		}
		return;
	}

	/* a locked customer debit: decide, then post in one statement */
	if (strcmp(st.status, "closed") == 0)
		EngineDecline(req, &t, &idem, ERRCODE_PGB_ACCOUNT_CLOSED,
					  "account %lld is closed", (long long) req->debit_account);
	if (st.credit_status && strcmp(st.credit_status, "closed") == 0)
		EngineDecline(req, &t, &idem, ERRCODE_PGB_ACCOUNT_CLOSED,
					  "account %lld is closed", (long long) req->credit_account);
	if (strcmp(st.status, "frozen") == 0 && !req->allow_frozen_debit)
		EngineDecline(req, &t, &idem, ERRCODE_PGB_ACCOUNT_FROZEN,
					  "account %lld is frozen", (long long) req->debit_account);
	{
		int64		after;

		if (pg_sub_s64_overflow(st.posted, st.pending_out, &after) ||
			pg_sub_s64_overflow(after, amount, &after) ||
			after < -st.overdraft)
			EngineDecline(req, &t, &idem, ERRCODE_PGB_INSUFFICIENT_FUNDS,
						  "insufficient funds in account %lld", (long long) req->debit_account);
	}

	/* the rules may decline (recorded like the declines above) or hold it */
	if (screened)
		RiskScreen(&risk, req, &t, &idem);

	/*
	 * Held for review: reserved like a hold, until staff decide or it
	 * expires (a hold keeps its own expiry; a transfer or withdrawal waits
	 * pgbank.review_expiry).
	 */
	status = screened && risk.review ? "held_for_review" : req->hold ? "pending" : "posted";
	v[11] = Int64GetDatum(strcmp(status, "posted") != 0 ? st.posted : st.posted - amount);
	v[12] = CStringGetTextDatum(status);
	if (strcmp(status, "posted") != 0)
	{
		Interval   *iv = req->hold ? req->expires_in : NULL;

		if (iv == NULL)
		{
			iv = palloc0(sizeof(Interval));
			iv->time = (int64) (req->hold ? pgb_hold_expiry : pgb_review_expiry) * USECS_PER_SEC;
		}
		v[13] = IntervalPGetDatum(iv);
	}
	else
		n[13] = 'n';
	if (EngineExec(&q_post_debit, v, n) != 1)
		elog(ERROR, "pgbank: posting transfer failed");
	EngineMarkSettled(req->debit_account);
	{
		int64		credit_leg = PgbGetInt64(0, 19);

		TransferFromSpi(out);
		if (screened)
			RiskRecord(&risk, req, out);
		EngineMaybeFold(req->credit_account, credit_leg);
	}
}

/* a TransferRow as a bank.transfer_info Datum; disconnects from SPI */
Datum
EngineTransferDatum(FunctionCallInfo fcinfo, TransferRow *t)
{
	TupleDesc	tupdesc;
	Datum		v[17];
	bool		n[17] = {0};
	HeapTuple	tuple;

	EngineAssertSettled();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "pgbank: function must return bank.transfer_info");
	tupdesc = BlessTupleDesc(tupdesc);
	v[0] = Int64GetDatum(t->id);
	v[1] = CStringGetTextDatum(t->kind);
	v[2] = CStringGetTextDatum(t->status);
	/* enums come back as text: convert through the type's input function */
	v[1] = OidFunctionCall3(F_ENUM_IN, CStringGetDatum(t->kind),
							ObjectIdGetDatum(TupleDescAttr(tupdesc, 1)->atttypid),
							Int32GetDatum(-1));
	v[2] = OidFunctionCall3(F_ENUM_IN, CStringGetDatum(t->status),
							ObjectIdGetDatum(TupleDescAttr(tupdesc, 2)->atttypid),
							Int32GetDatum(-1));
	v[3] = Int64GetDatum(t->from_account);
	v[4] = Int64GetDatum(t->to_account);
	v[5] = EngineBpchar(t->currency);
	v[6] = MoneyDatum(t->amount, t->exponent);
	v[7] = MoneyDatum(t->posted_amount, t->exponent);
	n[7] = (t->posted_amount == 0);
	v[8] = t->description ? CStringGetTextDatum(t->description) : (Datum) 0;
	n[8] = (t->description == NULL);
	v[9] = t->metadata;
	v[10] = Int64GetDatum(t->reverses);
	n[10] = (t->reverses == 0);
	v[11] = t->failure_code ? CStringGetTextDatum(t->failure_code) : (Datum) 0;
	n[11] = (t->failure_code == NULL);
	v[12] = t->failure_message ? CStringGetTextDatum(t->failure_message) : (Datum) 0;
	n[12] = (t->failure_message == NULL);
	v[13] = TimestampTzGetDatum(t->created_at);
	v[14] = TimestampTzGetDatum(t->posted_at);
	n[14] = (t->posted_at == 0);
	v[15] = TimestampTzGetDatum(t->expires_at);
	n[15] = (t->expires_at == 0);
	v[16] = TimestampTzGetDatum(t->resolved_at);
	n[16] = (t->resolved_at == 0);
	tuple = heap_form_tuple(tupdesc, v, n);
	return PgbFinishWithTuple(tuple, tupdesc);
}
