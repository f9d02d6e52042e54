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
 *	  lock-free to bank.pending_legs.  It takes only FOR KEY SHARE on the
 *	  account (through the foreign key), which other credits, debits and
 *	  folds do not wait for, so a hot account (a merchant receiving most
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
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/fmgroids.h"
#include "utils/memutils.h"

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
static PgbQuery q_transfer_by_key = {
	"SELECT " TRANSFER_COLUMNS ", fingerprint FROM bank.transfers"
	" WHERE idempotency_scope = $1 AND idempotency_key = $2",
	2, {TEXTOID, TEXTOID}
};

/* the two accounts of a move, unlocked: existence, currency, system or not */
static PgbQuery q_accounts = {
	"SELECT id, currency, customer_id IS NULL FROM bank.accounts WHERE id IN ($1, $2)",
	2, {INT8OID, INT8OID}
};

/* the settlement account of a currency */
static PgbQuery q_settlement = {
	"SELECT id FROM bank.accounts WHERE type = 'settlement' AND customer_id IS NULL"
	" AND currency = $1",
	1, {BPCHAROID}
};

/*
 * Lock the debited customer account and the credited account.  Returns the
 * posted balance (folded + pending legs), the folded balance, pending_out,
 * overdraft limit and both statuses.
 */
static PgbQuery q_lock_debit = {
	"SELECT a.balance + coalesce((SELECT sum(l.amount) FROM bank.pending_legs l"
	"                              WHERE l.account_id = a.id), 0)::bigint,"
	" a.balance, a.pending_out, a.overdraft_limit, a.status::text, b.status::text"
	" FROM bank.accounts a, bank.accounts b WHERE a.id = $1 AND b.id = $2"
	" FOR NO KEY UPDATE OF a FOR KEY SHARE OF b",
	2, {INT8OID, INT8OID}
};

/* only the credited account, when the debit is a system account */
static PgbQuery q_lock_credit = {
	"SELECT status::text FROM bank.accounts WHERE id = $1 FOR KEY SHARE",
	1, {INT8OID}
};

static PgbQuery q_insert_transfer = {
	"INSERT INTO bank.transfers (kind, status, from_account, to_account, currency, amount,"
	" posted_amount, idempotency_scope, idempotency_key, fingerprint, description, metadata,"
	" reverses, posted_at, expires_at, resolved_at)"
	" VALUES ($1::bank.transfer_kind, $2::bank.transfer_status, $3, $4, $5, $6,"
	" CASE WHEN $2 = 'posted' THEN $6 END, $7, $8, $9, $10, $11, $12,"
	" CASE WHEN $2 = 'posted' THEN now() END, now() + $13,"
	" CASE WHEN $2 = 'posted' THEN now() END)"
	" RETURNING " TRANSFER_COLUMNS,
	13, {TEXTOID, TEXTOID, INT8OID, INT8OID, BPCHAROID, INT8OID, TEXTOID, TEXTOID,
	BYTEAOID, TEXTOID, JSONBOID, INT8OID, INTERVALOID}
};

static PgbQuery q_mark_reversed = {
	"UPDATE bank.transfers SET status = 'reversed' WHERE id = $1 AND status = 'posted'",
	1, {INT8OID}
};

/*
 * Fold an account's pending legs and optionally write a debit, in one
 * statement: one INSERT writes the folded legs (leg id order) then the debit,
 * so entry ids follow that order; balance_after is the running sum from the
 * folded balance $6 read under the lock.  $7 changes pending_out.
 */
static PgbQuery q_debit_write = {
	"WITH d AS ("
	"  DELETE FROM bank.pending_legs WHERE account_id = $1"
	"  RETURNING id, transfer_id, amount, posted_at),"
	" legs AS ("
	"  SELECT 0 AS grp, id AS ord, transfer_id, amount, posted_at FROM d"
	"  UNION ALL"
	"  SELECT 1, 0, $3, $4, $5 WHERE $4 <> 0),"
	" ins AS ("
	"  INSERT INTO bank.entries (account_id, transfer_id, currency, amount, balance_after, posted_at)"
	"  SELECT $1, transfer_id, $2, amount, $6 + sum(amount) OVER (ORDER BY grp, ord), posted_at"
	"    FROM legs ORDER BY grp, ord"
	"  RETURNING amount)"
	" UPDATE bank.accounts"
	"    SET balance = $6 + (SELECT coalesce(sum(amount), 0) FROM ins)::bigint,"
	"        pending_out = pending_out + $7"
	"  WHERE id = $1"
	" RETURNING balance, (SELECT count(*) FROM ins)::int4",
	7, {INT8OID, BPCHAROID, INT8OID, INT8OID, TIMESTAMPTZOID, INT8OID, INT8OID}
};

static PgbQuery q_insert_leg = {
	"INSERT INTO bank.pending_legs (account_id, transfer_id, currency, amount, posted_at)"
	" VALUES ($1, $2, $3, $4, $5) RETURNING id",
	5, {INT8OID, INT8OID, BPCHAROID, INT8OID, TIMESTAMPTZOID}
};

static PgbQuery q_lock_fold = {
	"SELECT balance, currency FROM bank.accounts WHERE id = $1 FOR NO KEY UPDATE",
	1, {INT8OID}
};
static PgbQuery q_lock_fold_skip = {
	"SELECT balance, currency FROM bank.accounts WHERE id = $1 FOR NO KEY UPDATE SKIP LOCKED",
	1, {INT8OID}
};

/* run an engine write: the guard triggers let only these through */
static int
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

static Datum
BpcharDatum(const char *s)
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
TransferFromSpi(TransferRow *t)
{
	bool		isnull;
	char	   *s;

	memset(t, 0, sizeof(*t));
	t->id = PgbGetInt64(0, 1);
	strlcpy(t->kind, PgbGetText(0, 2), sizeof(t->kind));
	strlcpy(t->status, PgbGetText(0, 3), sizeof(t->status));
	t->from_account = PgbGetInt64(0, 4);
	t->to_account = PgbGetInt64(0, 5);
	strlcpy(t->currency, PgbGetText(0, 6), sizeof(t->currency));
	t->amount = PgbGetInt64(0, 7);
	t->posted_amount = PgbGetInt64(0, 8);
	t->description = PgbGetText(0, 9);
	t->metadata = PgbGet(0, 10, &isnull);
	t->metadata = PointerGetDatum(PG_DETOAST_DATUM_COPY(t->metadata));
	t->reverses = PgbGetInt64(0, 11);
	s = PgbGetText(0, 12);
	t->failure_code = s;
	t->failure_message = PgbGetText(0, 13);
	t->created_at = GetTs(0, 14);
	t->posted_at = GetTs(0, 15);
	t->expires_at = GetTs(0, 16);
	t->resolved_at = GetTs(0, 17);
	t->exponent = MoneyExponent(t->currency);
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
 * Find the transfer created under this key.  Returns false when there is
 * none; PB005 when it exists with another fingerprint.
 */
bool
EngineLoadTransferByKey(const IdemKey *idem, TransferRow *out)
{
	Datum		args[2];
	bool		isnull;
	bytea	   *fp;

	args[0] = CStringGetTextDatum(idem->scope);
	args[1] = CStringGetTextDatum(idem->key);
	if (PgbExec(&q_transfer_by_key, args, NULL, false, 1) == 0)
		return false;
	fp = DatumGetByteaPP(PgbGet(0, 18, &isnull));
	if (isnull || VARSIZE_ANY_EXHDR(fp) != VARSIZE_ANY_EXHDR(idem->fingerprint) ||
		memcmp(VARDATA_ANY(fp), VARDATA_ANY(idem->fingerprint), VARSIZE_ANY_EXHDR(fp)) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_IDEMPOTENCY_CONFLICT),
				 errmsg("idempotency key \"%s\" was already used for another request",
						idem->key),
				 errhint("Use a new key for a new request; retry with the same key only with the same payload.")));
	TransferFromSpi(out);
	return true;
}

/* the settlement account of a currency (cached: system accounts never move) */
static int64
SettlementAccount(const char *currency)
{
	static HTAB *cache = NULL;
	typedef struct
	{
		char		code[4];
		int64		id;
	}			Entry;
	Entry	   *e;
	char		code[4] = {0};
	Datum		arg;

	memcpy(code, currency, 3);
	if (cache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = 4;
		ctl.entrysize = sizeof(Entry);
		ctl.hcxt = TopMemoryContext;
		cache = hash_create("pgbank settlement accounts", 64, &ctl,
							HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	e = hash_search(cache, code, HASH_FIND, NULL);
	if (e)
		return e->id;
	arg = BpcharDatum(code);
	if (PgbExec(&q_settlement, &arg, NULL, true, 1) != 1)
		elog(ERROR, "pgbank: no settlement account for currency %s", code);
	e = hash_search(cache, code, HASH_ENTER, NULL);
	e->id = PgbGetInt64(0, 1);
	return e->id;
}

static void
AccountMissing(int64 id)
{
	ereport(ERROR,
			(errcode(ERRCODE_PGB_ACCOUNT_NOT_FOUND),
			 errmsg("account %lld does not exist", (long long) id)));
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

/*
 * Decline: record the request as a failed transfer outside this transaction,
 * then raise the decline.  Nothing was written by this transaction.
 */
void
EngineDecline(MoveRequest *req, TransferRow *t, const IdemKey *idem,
			  int sqlstate, const char *fmt,...)
{
	va_list		ap;
	char		buf[1024];
	char		code[6];

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	strlcpy(code, unpack_sql_state(sqlstate), sizeof(code));
	t->failure_code = code;
	t->failure_message = buf;
	strlcpy(t->status, "failed", sizeof(t->status));
	t->id = IdemRecordDecline(t, idem,
							  DatumGetCString(DirectFunctionCall1(jsonb_out, req->metadata)));
	ereport(ERROR,
			(errcode(sqlstate),
			 errmsg("%s", buf),
			 errdetail("Declined; recorded as failed transfer %lld.", (long long) t->id)));
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
 * Fold an account's pending legs into entries and/or write a debit of a
 * customer account.  The caller holds the account's row lock and read base
 * (accounts.balance) under it.
 */
void
EngineDebitWrite(int64 account, const char *currency, int64 base, int64 transfer_id,
				 int64 debit, TimestampTz posted_at, int64 pending_delta)
{
	Datum		v[7];
	char		n[7] = "       ";

	v[0] = Int64GetDatum(account);
	v[1] = BpcharDatum(currency);
	v[2] = Int64GetDatum(transfer_id);
	v[3] = Int64GetDatum(debit);
	v[4] = TimestampTzGetDatum(posted_at);
	v[5] = Int64GetDatum(base);
	v[6] = Int64GetDatum(pending_delta);
	if (debit == 0)
		n[2] = n[4] = 'n';
	if (EngineExec(&q_debit_write, v, n) != 1)
		elog(ERROR, "pgbank: account %lld vanished under its lock", (long long) account);
}

/*
 * Lock an account and fold its pending legs.  With skip_locked, do nothing if
 * another transaction holds the row.  Returns the number of legs folded.
 */
int
EngineFold(int64 account, bool skip_locked)
{
	Datum		arg = Int64GetDatum(account);
	char	   *currency;
	int64		base;
	bool		isnull;

	if (PgbExec(skip_locked ? &q_lock_fold_skip : &q_lock_fold, &arg, NULL, false, 1) != 1)
	{
		if (skip_locked)
			return 0;
		AccountMissing(account);
	}
	base = PgbGetInt64(0, 1);
	currency = PgbGetText(0, 2);
	EngineDebitWrite(account, currency, base, 0, 0, 0, 0);
	return DatumGetInt32(PgbGet(0, 2, &isnull));
}

/* a lock-free leg; may fold its account opportunistically */
void
EngineCreditLeg(int64 account, const char *currency, int64 transfer_id, int64 amount,
				TimestampTz posted_at)
{
	Datum		v[5];
	int64		leg;

	v[0] = Int64GetDatum(account);
	v[1] = Int64GetDatum(transfer_id);
	v[2] = BpcharDatum(currency);
	v[3] = Int64GetDatum(amount);
	v[4] = TimestampTzGetDatum(posted_at);
	EngineExec(&q_insert_leg, v, NULL);
	leg = PgbGetInt64(0, 1);
	if (pgb_fold_every > 0 && leg % pgb_fold_every == 0)
		(void) EngineFold(account, true);
}

/*
 * Move money: post a transfer, or place a hold.  Idempotent per key.  On
 * return *out is the transfer (new, or the original for a replay).
 */
void
EngineMove(MoveRequest *req, TransferRow *out)
{
	Datum		v[13];
	char		n[14] = "             ";
	bool		debit_system = false,
				credit_system = false;
	char		currency[4] = {0};
	char		other_currency[4] = {0};
	int			exponent;
	int64		amount;
	IdemKey		idem;
	char	   *metadata;
	int64		posted = 0,
				base = 0,
				pending_out = 0,
				overdraft = 0;
	char	   *debit_status = "active",
			   *credit_status = "active";
	int			i,
				rows;
	TransferRow t;

	/* the accounts, unlocked: existence, currency, system or customer */
	v[0] = Int64GetDatum(req->debit_account ? req->debit_account : req->credit_account);
	v[1] = Int64GetDatum(req->credit_account ? req->credit_account : req->debit_account);
	rows = PgbExec(&q_accounts, v, NULL, false, 2);
	for (i = 0; i < rows; i++)
	{
		int64		id = PgbGetInt64(i, 1);
		bool		isnull;
		bool		sys = DatumGetBool(PgbGet(i, 3, &isnull));

		if (id == req->debit_account)
		{
			debit_system = sys;
			strlcpy(currency, PgbGetText(i, 2), sizeof(currency));
		}
		if (id == req->credit_account)
		{
			credit_system = sys;
			strlcpy(other_currency, PgbGetText(i, 2), sizeof(other_currency));
		}
	}
	if (req->debit_account && currency[0] == '\0')
		AccountMissing(req->debit_account);
	if (req->credit_account && other_currency[0] == '\0')
		AccountMissing(req->credit_account);

	/* accounts named by the caller are customer accounts (reversals excepted) */
	if (strcmp(req->kind, "reversal") != 0)
	{
		if (req->debit_account && debit_system)
			AccountMissing(req->debit_account);
		if (req->credit_account && credit_system)
			AccountMissing(req->credit_account);
	}

	/* deposits and withdrawals: the other side is the settlement account */
	if (req->debit_account == 0)
	{
		strlcpy(currency, other_currency, sizeof(currency));
		req->debit_account = SettlementAccount(currency);
		debit_system = true;
	}
	else if (req->credit_account == 0)
	{
		strlcpy(other_currency, currency, sizeof(other_currency));
		req->credit_account = SettlementAccount(currency);
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

	/* idempotency: serialise on the key, then replay or go on */
	IdemPrepare(&idem, req->idempotency_key,
				MovePayload(req, currency, amount, metadata));
	IdemLock(&idem);
	if (EngineLoadTransferByKey(&idem, out))
	{
		if (strcmp(out->status, "failed") == 0)
			EngineRaiseRecorded(out);
		return;
	}

	/* lock: the debited customer account and the credited account */
	if (!debit_system)
	{
		v[0] = Int64GetDatum(req->debit_account);
		v[1] = Int64GetDatum(req->credit_account);
		if (PgbExec(&q_lock_debit, v, NULL, false, 1) != 1)
			AccountMissing(req->debit_account);
		posted = PgbGetInt64(0, 1);
		base = PgbGetInt64(0, 2);
		pending_out = PgbGetInt64(0, 3);
		overdraft = PgbGetInt64(0, 4);
		debit_status = PgbGetText(0, 5);
		credit_status = PgbGetText(0, 6);
	}
	else if (!credit_system)
	{
		v[0] = Int64GetDatum(req->credit_account);
		if (PgbExec(&q_lock_credit, v, NULL, false, 1) != 1)
			AccountMissing(req->credit_account);
		credit_status = PgbGetText(0, 1);
	}

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

	/* a reversal marks its original reversed, once */
	if (req->reverses)
	{
		v[0] = Int64GetDatum(req->reverses);
		if (EngineExec(&q_mark_reversed, v, NULL) != 1)
			ereport(ERROR,
					(errcode(ERRCODE_PGB_NOT_REVERSIBLE),
					 errmsg("transfer %lld is not posted or was already reversed",
							(long long) req->reverses)));
	}

	if (strcmp(debit_status, "closed") == 0)
		EngineDecline(req, &t, &idem, ERRCODE_PGB_ACCOUNT_CLOSED,
					  "account %lld is closed", (long long) req->debit_account);
	if (strcmp(credit_status, "closed") == 0)
		EngineDecline(req, &t, &idem, ERRCODE_PGB_ACCOUNT_CLOSED,
					  "account %lld is closed", (long long) req->credit_account);
	if (strcmp(debit_status, "frozen") == 0 && !req->allow_frozen_debit)
		EngineDecline(req, &t, &idem, ERRCODE_PGB_ACCOUNT_FROZEN,
					  "account %lld is frozen", (long long) req->debit_account);
	if (!debit_system)
	{
		int64		after;

		if (pg_sub_s64_overflow(posted, pending_out, &after) ||
			pg_sub_s64_overflow(after, amount, &after) ||
			after < -overdraft)
			EngineDecline(req, &t, &idem, ERRCODE_PGB_INSUFFICIENT_FUNDS,
						  "insufficient funds in account %lld", (long long) req->debit_account);
	}

	/* the transfer row */
	v[0] = CStringGetTextDatum(req->kind);
	v[1] = CStringGetTextDatum(req->hold ? "pending" : "posted");
	v[2] = Int64GetDatum(req->debit_account);
	v[3] = Int64GetDatum(req->credit_account);
	v[4] = BpcharDatum(currency);
	v[5] = Int64GetDatum(amount);
	v[6] = CStringGetTextDatum(idem.scope);
	v[7] = CStringGetTextDatum(idem.key);
	v[8] = PointerGetDatum(idem.fingerprint);
	if (req->description)
		v[9] = CStringGetTextDatum(req->description);
	else
		n[9] = 'n';
	v[10] = req->metadata;
	v[11] = Int64GetDatum(req->reverses);
	if (req->reverses == 0)
		n[11] = 'n';
	if (req->hold)
	{
		Interval   *iv = req->expires_in;

		if (iv == NULL)
		{
			iv = palloc0(sizeof(Interval));
			iv->time = (int64) pgb_hold_expiry * USECS_PER_SEC;
		}
		v[12] = IntervalPGetDatum(iv);
	}
	else
		n[12] = 'n';
	EngineExec(&q_insert_transfer, v, n);
	TransferFromSpi(out);

	/* the legs */
	if (req->hold)
		EngineDebitWrite(req->debit_account, currency, base, 0, 0, 0, amount);
	else
	{
		if (debit_system)
			EngineCreditLeg(req->debit_account, currency, out->id, -amount, out->posted_at);
		else
			EngineDebitWrite(req->debit_account, currency, base, out->id, -amount,
							 out->posted_at, 0);
		EngineCreditLeg(req->credit_account, currency, out->id, amount, out->posted_at);
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
	v[5] = BpcharDatum(t->currency);
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
