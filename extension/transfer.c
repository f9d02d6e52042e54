/*-------------------------------------------------------------------------
 *
 * transfer.c
 *		The money API: transfer, deposit, withdraw, hold, capture, void,
 *		reverse, expire_holds, fold_account.
 *
 * Each function validates its arguments, then hands the move to the engine
 * (engine.c), which takes the locks in the documented order.  Capture and
 * void lock the debited account before the hold's row, like every other
 * writer, and are idempotent by nature: capturing a captured hold with the
 * same amount, or voiding a voided one, returns it unchanged.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "pgbank.h"

/*
 * post a hold (or a transfer held for review, $4): status, the debit entry,
 * balance and pending_out, the credit leg
 */
static PgbQuery q_capture = {
	"WITH t AS ("
	"  UPDATE bank.transfers SET status = 'posted', posted_amount = $2, posted_at = now(),"
	"   resolved_at = now() WHERE id = $1 AND status = $4::bank.transfer_status"
	"  RETURNING id, from_account, to_account, currency, amount, posted_at),"
	" e AS ("
	"  INSERT INTO bank.entries (account_id, transfer_id, currency, amount, balance_after, posted_at)"
	"  SELECT t.from_account, t.id, t.currency, -$2, $3, t.posted_at FROM t),"
	" u AS ("
	"  UPDATE bank.accounts a SET balance = $3, pending_out = a.pending_out - t.amount"
	"  FROM t WHERE a.id = t.from_account),"
	" c AS ("
	"  INSERT INTO bank.pending_legs (account_id, transfer_id, currency, amount, posted_at)"
	"  SELECT t.to_account, t.id, t.currency, $2, t.posted_at FROM t RETURNING id)"
	" SELECT (SELECT id FROM c) FROM t",
	4, {INT8OID, INT8OID, INT8OID, TEXTOID}
};

/*
 * release a hold (or a transfer held for review, $3): status, balance (the
 * folded one) and pending_out
 */
static PgbQuery q_void = {
	"WITH t AS ("
	"  UPDATE bank.transfers SET status = 'voided', resolved_at = now()"
	"  WHERE id = $1 AND status = $3::bank.transfer_status RETURNING from_account, amount)"
	" UPDATE bank.accounts a SET balance = $2, pending_out = a.pending_out - t.amount"
	" FROM t WHERE a.id = t.from_account",
	3, {INT8OID, INT8OID, TEXTOID}
};

/* expired holds and review items, by customer then account (lock order) */
static PgbQuery q_expired_holds = {
	"SELECT t.id, t.status = 'held_for_review' FROM bank.transfers t"
	" JOIN bank.accounts a ON a.id = t.from_account"
	" WHERE t.status IN ('pending', 'held_for_review') AND t.expires_at <= now()"
	" ORDER BY a.customer_id, t.from_account, t.id",
	0, {}
};

static void
MoveFromArgs(FunctionCallInfo fcinfo, MoveRequest *req, int amount_arg, int key_arg,
			 int description_arg, int metadata_arg)
{
	if (PG_ARGISNULL(amount_arg))
		ereport(ERROR,
				(errcode(ERRCODE_PGB_NULL_ARGUMENT), errmsg("amount must not be null")));
	if (PG_ARGISNULL(key_arg))
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_IDEMPOTENCY_KEY),
				 errmsg("idempotency key is required")));
	req->amount = PG_GETARG_NUMERIC(amount_arg);
	req->idempotency_key = TextDatumGetCString(PG_GETARG_DATUM(key_arg));
	if (!PG_ARGISNULL(description_arg))
	{
		req->description = TextDatumGetCString(PG_GETARG_DATUM(description_arg));
		PgbCheckLength("description", req->description, 0, PGB_MAX_TEXT_CHARS);
	}
	req->metadata = TransferMetadata(PG_ARGISNULL(metadata_arg) ? NULL :
									 PG_GETARG_JSONB_P(metadata_arg));
}

/* a transfer's metadata: a JSON object of at most 8 kB (PB023); NULL is {} */
Datum
TransferMetadata(Jsonb *jb)
{
	if (jb == NULL)
		return DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"));
	if (!JB_ROOT_IS_OBJECT(jb) || JB_ROOT_IS_SCALAR(jb))
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_ARGUMENT),
				 errmsg("metadata must be a JSON object")));
	if (VARSIZE(jb) > 8192)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_ARGUMENT),
				 errmsg("metadata must be at most 8 kB")));
	return JsonbPGetDatum(jb);
}

static int64
AccountArg(FunctionCallInfo fcinfo, int arg, const char *name)
{
	if (PG_ARGISNULL(arg))
		ereport(ERROR,
				(errcode(ERRCODE_PGB_NULL_ARGUMENT), errmsg("%s must not be null", name)));
	return PG_GETARG_INT64(arg);
}

/*
 * The audit row of a money movement: the transfer as it now stands (kind,
 * status, accounts, amount in minor units, currency).
 */
void
AuditTransfer(const Principal *who, const char *action, const TransferRow *t)
{
	AuditWrite(who, 0, action, "transfer", psprintf("%lld", (long long) t->id),
			   psprintf("{\"kind\": \"%s\", \"status\": \"%s\", \"from\": %lld, \"to\": %lld,"
						" \"amount\": %lld, \"currency\": \"%s\"}",
						t->kind, t->status, (long long) t->from_account,
						(long long) t->to_account,
						(long long) (t->posted_amount ? t->posted_amount : t->amount),
						t->currency));
}

static Datum
RunMove(FunctionCallInfo fcinfo, MoveRequest *req, const char *action)
{
	TransferRow t;

	AuthCaller(action, &req->who);
	SPI_connect();
	EngineMove(req, &t);
	if (!req->replayed)
		AuditTransfer(&req->who, req->hold ? "hold.create" : psprintf("%s.create", req->kind), &t);
	if (req->flagged_rules)
		AuditWrite(&req->who, 0, "transfer.fraud_flagged", "transfer",
				   psprintf("%lld", (long long) t.id),
				   psprintf("{\"rules\": %s, \"hold\": %s, \"amount\": %lld, \"currency\": \"%s\"}",
							req->flagged_rules, req->hold ? "true" : "false",
							(long long) t.amount, t.currency));
	return EngineTransferDatum(fcinfo, &t);
}

PG_FUNCTION_INFO_V1(pgbank_transfer);
Datum
pgbank_transfer(PG_FUNCTION_ARGS)
{
	MoveRequest req = {0};

	req.kind = "transfer";
	req.debit_account = AccountArg(fcinfo, 0, "from_account");
	req.credit_account = AccountArg(fcinfo, 1, "to_account");
	MoveFromArgs(fcinfo, &req, 2, 3, 4, 5);
	return RunMove(fcinfo, &req, "transfer");
}

PG_FUNCTION_INFO_V1(pgbank_deposit);
Datum
pgbank_deposit(PG_FUNCTION_ARGS)
{
	MoveRequest req = {0};

	req.kind = "deposit";
	req.credit_account = AccountArg(fcinfo, 0, "account");
	MoveFromArgs(fcinfo, &req, 1, 2, 3, 4);
	return RunMove(fcinfo, &req, "deposit");
}

PG_FUNCTION_INFO_V1(pgbank_withdraw);
Datum
pgbank_withdraw(PG_FUNCTION_ARGS)
{
	MoveRequest req = {0};

	req.kind = "withdrawal";
	req.debit_account = AccountArg(fcinfo, 0, "account");
	MoveFromArgs(fcinfo, &req, 1, 2, 3, 4);
	return RunMove(fcinfo, &req, "withdraw");
}

PG_FUNCTION_INFO_V1(pgbank_hold);
Datum
pgbank_hold(PG_FUNCTION_ARGS)
{
	MoveRequest req = {0};

	req.kind = "transfer";
	req.hold = true;
	req.debit_account = AccountArg(fcinfo, 0, "from_account");
	req.credit_account = AccountArg(fcinfo, 1, "to_account");
	MoveFromArgs(fcinfo, &req, 2, 3, 5, 6);
	if (!PG_ARGISNULL(4))
	{
		Interval   *iv = PG_GETARG_INTERVAL_P(4);
		Interval	lo = {60 * USECS_PER_SEC, 0, 0};
		Interval	hi = {0, 366, 0};

		if (DatumGetBool(DirectFunctionCall2(interval_lt, IntervalPGetDatum(iv),
											 IntervalPGetDatum(&lo))) ||
			DatumGetBool(DirectFunctionCall2(interval_gt, IntervalPGetDatum(iv),
											 IntervalPGetDatum(&hi))))
			ereport(ERROR,
					(errcode(ERRCODE_PGB_INVALID_ARGUMENT),
					 errmsg("expires_in must be between 1 minute and 366 days")));
		req.expires_in = iv;
	}
	return RunMove(fcinfo, &req, "hold");
}

/*
 * Resolve a hold, or (review) a transfer held for review: post it (capture;
 * amount_arg NULL for the full amount) or release it (void).  Lock order:
 * the customer's risk counters when screened amounts go back to them (a
 * void, a partial capture), then the debited account (locked and folded),
 * then the transfer.  With expiring, a transfer resolved meanwhile is left
 * alone.  A review decision is never idempotent: a transfer no longer held
 * for review is PB076.
 */
bool
TransferResolve(int64 hold_id, bool capture, Numeric amount_arg, bool expiring,
				bool review, TransferRow *t)
{
	int64		amount = 0;
	Datum		v[4];
	AccountState st;
	int64		release_customer = 0;
	const char *expected = review ? "held_for_review" : "pending";

	EngineRequireReadCommitted();
	EngineLoadTransfer(hold_id, false, t);
	if (t->expires_at == 0)
		ereport(ERROR,
				(errcode(review ? ERRCODE_PGB_REVIEW_DECIDED : ERRCODE_PGB_HOLD_NOT_PENDING),
				 errmsg(review ? "transfer %lld is not held for review" : "transfer %lld is not a hold",
						(long long) hold_id)));
	if (!capture || amount_arg)
		release_customer = RiskLockForRelease(t->from_account);
	if (!EngineLockFold(t->from_account, 0, false, &st))
		elog(ERROR, "pgbank: account %lld of hold %lld vanished",
			 (long long) t->from_account, (long long) hold_id);
	EngineLoadTransfer(hold_id, true, t);

	if (capture && amount_arg)
		amount = MoneyToMinor(amount_arg, t->exponent);
	else if (capture)
		amount = t->amount;

	if (strcmp(t->status, expected) != 0)
	{
		EngineSettle(t->from_account, &st, 0, 0);
		if (expiring)
			return false;		/* resolved since it was listed */
		if (review)
			ereport(ERROR,
					(errcode(ERRCODE_PGB_REVIEW_DECIDED),
					 errmsg("transfer %lld is %s, not held for review", (long long) hold_id,
							t->status)));
		/* already resolved: the same request again returns it */
		if (capture && strcmp(t->status, "posted") == 0 && amount == t->posted_amount)
			return false;
		if (!capture && strcmp(t->status, "voided") == 0)
			return false;
		ereport(ERROR,
				(errcode(ERRCODE_PGB_HOLD_NOT_PENDING),
				 errmsg("hold %lld is %s", (long long) hold_id, t->status)));
	}
	if (capture)
	{
		if (t->expires_at <= GetCurrentTransactionStartTimestamp())
			ereport(ERROR,
					(errcode(review ? ERRCODE_PGB_REVIEW_EXPIRED : ERRCODE_PGB_HOLD_EXPIRED),
					 errmsg(review ? "the review period of transfer %lld has ended" :
							"hold %lld has expired", (long long) hold_id)));
		if (amount > t->amount)
			ereport(ERROR,
					(errcode(ERRCODE_PGB_CAPTURE_EXCEEDS_HOLD),
					 errmsg("capture amount exceeds the hold"),
					 errdetail("The hold is for %s.",
							   DatumGetCString(DirectFunctionCall1(numeric_out,
																   MoneyDatum(t->amount, t->exponent))))));
		if (strcmp(st.status, "frozen") == 0)
			ereport(ERROR,
					(errcode(ERRCODE_PGB_ACCOUNT_FROZEN),
					 errmsg("account %lld is frozen", (long long) t->from_account)));
		if (st.posted - (st.pending_out - t->amount) - amount < -st.overdraft)
			ereport(ERROR,
					(errcode(ERRCODE_PGB_INSUFFICIENT_FUNDS),
					 errmsg("insufficient funds in account %lld", (long long) t->from_account)));
		v[0] = Int64GetDatum(hold_id);
		v[1] = Int64GetDatum(amount);
		v[2] = Int64GetDatum(st.posted - amount);
		v[3] = CStringGetTextDatum(expected);
		if (EngineExec(&q_capture, v, NULL) != 1)
			elog(ERROR, "pgbank: hold %lld changed under its account lock", (long long) hold_id);
		EngineMarkSettled(t->from_account);
		EngineMaybeFold(t->to_account, PgbGetInt64(0, 1));
		if (release_customer && amount < t->amount)
			RiskRelease(release_customer, t, t->amount - amount);
	}
	else
	{
		v[0] = Int64GetDatum(hold_id);
		v[1] = Int64GetDatum(st.posted);
		v[2] = CStringGetTextDatum(expected);
		if (EngineExec(&q_void, v, NULL) != 1)
			elog(ERROR, "pgbank: hold %lld changed under its account lock", (long long) hold_id);
		EngineMarkSettled(t->from_account);
		if (release_customer)
			RiskRelease(release_customer, t, t->amount);
	}
	EngineLoadTransfer(hold_id, false, t);
	return true;
}

static PgbQuery q_transfer_visible = {
	"SELECT 1 FROM bank.transfers WHERE id = $1",
	1, {INT8OID}, NULL, true
};

/*
 * For a customer, PB010 unless the transfer touches one of their accounts:
 * checked as the caller, under row-level security, so another customer's
 * transfer is "not found" exactly like one that does not exist.
 */
static void
TransferRequireVisible(const Principal *who, int64 id)
{
	Datum		arg = Int64GetDatum(id);

	if (who->kind != PRINCIPAL_CUSTOMER)
		return;
	if (PgbExec(&q_transfer_visible, &arg, NULL, true, 1) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_TRANSFER_NOT_FOUND),
				 errmsg("transfer %lld does not exist", (long long) id)));
}

PG_FUNCTION_INFO_V1(pgbank_capture);
Datum
pgbank_capture(PG_FUNCTION_ARGS)
{
	TransferRow t;
	Principal	who;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_PGB_NULL_ARGUMENT), errmsg("hold_id must not be null")));
	AuthCaller("capture", &who);
	SPI_connect();
	TransferRequireVisible(&who, PG_GETARG_INT64(0));
	if (TransferResolve(PG_GETARG_INT64(0), true, PG_ARGISNULL(1) ? NULL : PG_GETARG_NUMERIC(1),
						false, false, &t))
		AuditTransfer(&who, "hold.capture", &t);
	return EngineTransferDatum(fcinfo, &t);
}

PG_FUNCTION_INFO_V1(pgbank_void);
Datum
pgbank_void(PG_FUNCTION_ARGS)
{
	TransferRow t;
	Principal	who;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_PGB_NULL_ARGUMENT), errmsg("hold_id must not be null")));
	AuthCaller("void", &who);
	SPI_connect();
	TransferRequireVisible(&who, PG_GETARG_INT64(0));
	if (TransferResolve(PG_GETARG_INT64(0), false, NULL, false, false, &t))
		AuditTransfer(&who, "hold.void", &t);
	return EngineTransferDatum(fcinfo, &t);
}

PG_FUNCTION_INFO_V1(pgbank_reverse);
Datum
pgbank_reverse(PG_FUNCTION_ARGS)
{
	MoveRequest req = {0};
	TransferRow orig;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_PGB_NULL_ARGUMENT), errmsg("transfer_id must not be null")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_PGB_NULL_ARGUMENT), errmsg("reason must not be null")));
	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_IDEMPOTENCY_KEY),
				 errmsg("idempotency key is required")));
	req.description = TextDatumGetCString(PG_GETARG_DATUM(1));
	PgbCheckLength("reason", req.description, 1, PGB_MAX_TEXT_CHARS);
	req.idempotency_key = TextDatumGetCString(PG_GETARG_DATUM(2));
	AuthCaller("reverse", &req.who);

	SPI_connect();
	EngineLoadTransfer(PG_GETARG_INT64(0), false, &orig);
	if (strcmp(orig.kind, "reversal") == 0 ||
		(strcmp(orig.status, "posted") != 0 && strcmp(orig.status, "reversed") != 0))
		ereport(ERROR,
				(errcode(ERRCODE_PGB_NOT_REVERSIBLE),
				 errmsg("transfer %lld is %s and cannot be reversed",
						(long long) orig.id,
						strcmp(orig.kind, "reversal") == 0 ? "a reversal" : orig.status)));
	req.kind = "reversal";
	req.debit_account = orig.to_account;
	req.credit_account = orig.from_account;
	req.amount_minor = orig.posted_amount;
	req.reverses = orig.id;
	req.allow_frozen_debit = true;
	req.metadata = DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"));
	EngineMove(&req, &orig);
	if (!req.replayed)
		AuditWrite(&req.who, 0, "transfer.reverse", "transfer",
				   psprintf("%lld", (long long) req.reverses),
				   psprintf("{\"reversal\": %lld, \"status\": \"%s\"}", (long long) orig.id,
							orig.status));
	return EngineTransferDatum(fcinfo, &orig);
}

PG_FUNCTION_INFO_V1(pgbank_expire_holds);
Datum
pgbank_expire_holds(PG_FUNCTION_ARGS)
{
	int			n,
				i,
				voided = 0;
	int64	   *ids;
	bool	   *review;
	TransferRow t;
	Principal	who;

	AuthCaller("expire_holds", &who);
	SPI_connect();
	n = PgbExec(&q_expired_holds, NULL, NULL, false, 0);
	ids = palloc(sizeof(int64) * (n + 1));
	review = palloc(sizeof(bool) * (n + 1));
	for (i = 0; i < n; i++)
	{
		ids[i] = PgbGetInt64(i, 1);
		review[i] = DatumGetBool(PgbGet(i, 2, &(bool) {false}));
	}
	for (i = 0; i < n; i++)
	{
		/* a review nobody decided in time is voided: its funds go back */
		if (TransferResolve(ids[i], false, NULL, true, review[i], &t))
		{
			AuditTransfer(&who, review[i] ? "review.expire" : "hold.expire", &t);
			if (review[i])
				ReviewClose(ids[i], "expired", NULL);
			voided++;
		}
	}
	EngineAssertSettled();
	SPI_finish();
	PG_RETURN_INT32(voided);
}

PG_FUNCTION_INFO_V1(pgbank_fold_account);
Datum
pgbank_fold_account(PG_FUNCTION_ARGS)
{
	bool		folded;
	Principal	who;

	AuthCaller("fold_account", &who);
	SPI_connect();
	folded = EngineFold(PG_GETARG_INT64(0), false);
	EngineAssertSettled();
	SPI_finish();
	PG_RETURN_BOOL(folded);
}

/* ---------------------------------------------------------------------
 * Reads: a transfer, an account's transfers (as the caller, under RLS)
 * ---------------------------------------------------------------------
 */

/* a transfer as bank.transfer_info, from the table as the caller sees it */
#define TRANSFER_INFO_SELECT \
	"SELECT t.id, t.kind, t.status, t.from_account, t.to_account, t.currency," \
	" bank.minor_to_amount(t.amount, c.exponent), bank.minor_to_amount(t.posted_amount, c.exponent)," \
	" t.description::text, t.metadata::jsonb, t.reverses, t.failure_code::text, t.failure_message," \
	" t.created_at, t.posted_at, t.expires_at, t.resolved_at" \
	" FROM bank.transfers t JOIN bank.currencies c ON c.code = t.currency"

static PgbQuery q_get_transfer = {
	TRANSFER_INFO_SELECT " WHERE t.id = $1",
	1, {INT8OID}, NULL, true
};

/*
 * The transfers that touch an account, newest first, below a keyset bound:
 * posted ones through their legs (entries and pending legs, both indexed by
 * account), holds through their own indexes, and declines (failed, no legs)
 * through the partial indexes on failed transfers, for the account that
 * attempted them and the one they were for.
 */
static PgbQuery q_list_transfers = {
	TRANSFER_INFO_SELECT
	" WHERE t.id IN ("
	"  SELECT e.transfer_id FROM bank.entries e WHERE e.account_id = $1 AND e.transfer_id < $2"
	"  UNION SELECT l.transfer_id FROM bank.pending_legs l WHERE l.account_id = $1 AND l.transfer_id < $2"
	"  UNION SELECT h.id FROM bank.transfers h"
	"   WHERE h.from_account = $1 AND h.expires_at IS NOT NULL AND h.id < $2"
	"  UNION SELECT h.id FROM bank.transfers h"
	"   WHERE h.to_account = $1 AND h.expires_at IS NOT NULL AND h.id < $2"
	"  UNION SELECT f.id FROM bank.transfers f"
	"   WHERE f.from_account = $1 AND f.status = 'failed' AND f.id < $2"
	"  UNION SELECT f.id FROM bank.transfers f"
	"   WHERE f.to_account = $1 AND f.status = 'failed' AND f.id < $2)"
	" ORDER BY t.id DESC LIMIT $3",
	3, {INT8OID, INT8OID, INT4OID}, NULL, true
};

/*
 * bank.get_transfer(id): read as the caller, so a customer sees a transfer
 * only when it touches one of their accounts, and another customer's is
 * PB010 exactly like one that does not exist.
 */
PG_FUNCTION_INFO_V1(pgbank_get_transfer);
Datum
pgbank_get_transfer(PG_FUNCTION_ARGS)
{
	Datum		arg = PG_GETARG_DATUM(0);
	Principal	who;

	AuthCaller("get_transfer", &who);
	SPI_connect();
	if (PgbExec(&q_get_transfer, &arg, NULL, true, 1) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_TRANSFER_NOT_FOUND),
				 errmsg("transfer %lld does not exist", (long long) PG_GETARG_INT64(0))));
	return PgbReturnRow(fcinfo);
}

/*
 * bank.list_transfers(account, before_id, limit): the account's transfers
 * with id below before_id (all when NULL), newest first, at most limit
 * (1 to 1000).  The account must be visible to the caller (PB009); the
 * transfers are read as the caller too.
 */
PG_FUNCTION_INFO_V1(pgbank_list_transfers);
Datum
pgbank_list_transfers(PG_FUNCTION_ARGS)
{
	static const char *const names[] = {"account"};
	int32		limit = PG_ARGISNULL(2) ? 50 : PG_GETARG_INT32(2);
	Datum		v[3];
	Principal	who;

	PgbRequireArgs(fcinfo, 1, names);
	AuthCaller("list_transfers", &who);
	PgbCheckPageSize("limit", limit);
	v[0] = PG_GETARG_DATUM(0);
	v[1] = Int64GetDatum(PG_ARGISNULL(1) ? PG_INT64_MAX : PG_GETARG_INT64(1));
	v[2] = Int32GetDatum(limit);
	SPI_connect();
	AccountRequireVisible(PG_GETARG_INT64(0));
	PgbExec(&q_list_transfers, v, NULL, true, 0);
	PgbMaterialize(fcinfo);
	SPI_finish();
	return (Datum) 0;
}
