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

#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "pgbank.h"

static PgbQuery q_lock_account = {
	"SELECT a.balance + coalesce((SELECT sum(l.amount) FROM bank.pending_legs l"
	"                              WHERE l.account_id = a.id), 0)::bigint,"
	" a.balance, a.pending_out, a.overdraft_limit, a.status::text"
	" FROM bank.accounts a WHERE a.id = $1 FOR NO KEY UPDATE",
	1, {INT8OID}
};

static PgbQuery q_resolve_hold = {
	"UPDATE bank.transfers SET status = $2::bank.transfer_status,"
	" posted_amount = $3, posted_at = CASE WHEN $2 = 'posted' THEN now() END,"
	" resolved_at = now()"
	" WHERE id = $1 AND status = 'pending'",
	3, {INT8OID, TEXTOID, INT8OID}
};

static PgbQuery q_expired_holds = {
	"SELECT id FROM bank.transfers WHERE status = 'pending' AND expires_at <= now()"
	" ORDER BY from_account, id",
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
		if (strlen(req->description) > 500)
			ereport(ERROR,
					(errcode(ERRCODE_PGB_INVALID_ARGUMENT),
					 errmsg("description must be at most 500 characters")));
	}
	if (!PG_ARGISNULL(metadata_arg))
	{
		Jsonb	   *jb = PG_GETARG_JSONB_P(metadata_arg);

		if (!JB_ROOT_IS_OBJECT(jb) || JB_ROOT_IS_SCALAR(jb))
			ereport(ERROR,
					(errcode(ERRCODE_PGB_INVALID_ARGUMENT),
					 errmsg("metadata must be a JSON object")));
		if (VARSIZE(jb) > 8192)
			ereport(ERROR,
					(errcode(ERRCODE_PGB_INVALID_ARGUMENT),
					 errmsg("metadata must be at most 8 kB")));
		req->metadata = JsonbPGetDatum(jb);
	}
	else
		req->metadata = DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"));
}

static int64
AccountArg(FunctionCallInfo fcinfo, int arg, const char *name)
{
	if (PG_ARGISNULL(arg))
		ereport(ERROR,
				(errcode(ERRCODE_PGB_NULL_ARGUMENT), errmsg("%s must not be null", name)));
	return PG_GETARG_INT64(arg);
}

static Datum
RunMove(FunctionCallInfo fcinfo, MoveRequest *req)
{
	TransferRow t;

	SPI_connect();
	EngineMove(req, &t);
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
	return RunMove(fcinfo, &req);
}

PG_FUNCTION_INFO_V1(pgbank_deposit);
Datum
pgbank_deposit(PG_FUNCTION_ARGS)
{
	MoveRequest req = {0};

	req.kind = "deposit";
	req.credit_account = AccountArg(fcinfo, 0, "account");
	MoveFromArgs(fcinfo, &req, 1, 2, 3, 4);
	return RunMove(fcinfo, &req);
}

PG_FUNCTION_INFO_V1(pgbank_withdraw);
Datum
pgbank_withdraw(PG_FUNCTION_ARGS)
{
	MoveRequest req = {0};

	req.kind = "withdrawal";
	req.debit_account = AccountArg(fcinfo, 0, "account");
	MoveFromArgs(fcinfo, &req, 1, 2, 3, 4);
	return RunMove(fcinfo, &req);
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
	return RunMove(fcinfo, &req);
}

/*
 * Resolve a hold: post (capture, amount > 0) or void (amount == 0).
 * Lock order: the debited account, then the hold.
 */
static void
ResolveHold(int64 hold_id, bool capture, Numeric amount_arg, bool expiring,
			TransferRow *t)
{
	int64		posted,
				base,
				pending_out,
				overdraft,
				amount = 0;
	char	   *status;
	Datum		v[3];
	char		n[3] = "   ";

	EngineLoadTransfer(hold_id, false, t);
	if (t->expires_at == 0)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_HOLD_NOT_PENDING),
				 errmsg("transfer %lld is not a hold", (long long) hold_id)));

	v[0] = Int64GetDatum(t->from_account);
	if (PgbExec(&q_lock_account, v, NULL, false, 1) != 1)
		elog(ERROR, "pgbank: account %lld of hold %lld vanished",
			 (long long) t->from_account, (long long) hold_id);
	posted = PgbGetInt64(0, 1);
	base = PgbGetInt64(0, 2);
	pending_out = PgbGetInt64(0, 3);
	overdraft = PgbGetInt64(0, 4);
	status = PgbGetText(0, 5);
	EngineLoadTransfer(hold_id, true, t);

	if (capture && amount_arg)
		amount = MoneyToMinor(amount_arg, t->exponent);
	else if (capture)
		amount = t->amount;

	if (strcmp(t->status, "pending") != 0 && expiring)
		return;					/* resolved since it was listed */
	if (strcmp(t->status, "pending") != 0)
	{
		/* already resolved: the same request again returns it */
		if (capture && strcmp(t->status, "posted") == 0 &&
			(amount_arg == NULL || amount == t->posted_amount))
			return;
		if (!capture && strcmp(t->status, "voided") == 0)
			return;
		ereport(ERROR,
				(errcode(ERRCODE_PGB_HOLD_NOT_PENDING),
				 errmsg("hold %lld is %s", (long long) hold_id, t->status)));
	}
	if (capture)
	{
		if (t->expires_at <= GetCurrentTransactionStartTimestamp())
			ereport(ERROR,
					(errcode(ERRCODE_PGB_HOLD_EXPIRED),
					 errmsg("hold %lld has expired", (long long) hold_id)));
		if (amount > t->amount)
			ereport(ERROR,
					(errcode(ERRCODE_PGB_CAPTURE_EXCEEDS_HOLD),
					 errmsg("capture amount exceeds the hold"),
					 errdetail("The hold is for %s.",
							   DatumGetCString(DirectFunctionCall1(numeric_out,
																   MoneyDatum(t->amount, t->exponent))))));
		if (strcmp(status, "frozen") == 0)
			ereport(ERROR,
					(errcode(ERRCODE_PGB_ACCOUNT_FROZEN),
					 errmsg("account %lld is frozen", (long long) t->from_account)));
		if (posted - (pending_out - t->amount) - amount < -overdraft)
			ereport(ERROR,
					(errcode(ERRCODE_PGB_INSUFFICIENT_FUNDS),
					 errmsg("insufficient funds in account %lld", (long long) t->from_account)));
	}

	v[0] = Int64GetDatum(hold_id);
	v[1] = CStringGetTextDatum(capture ? "posted" : "voided");
	v[2] = Int64GetDatum(amount);
	if (!capture)
		n[2] = 'n';
	if (PgbExec(&q_resolve_hold, v, n, false, 0) != 1)
		elog(ERROR, "pgbank: hold %lld changed under its account lock", (long long) hold_id);
	EngineLoadTransfer(hold_id, false, t);
	if (capture)
	{
		EngineDebitWrite(t->from_account, t->currency, base, t->id, -amount,
						 t->posted_at, -t->amount);
		EngineCreditLeg(t->to_account, t->currency, t->id, amount, t->posted_at);
	}
	else
		EngineDebitWrite(t->from_account, t->currency, base, 0, 0, 0, -t->amount);
}

PG_FUNCTION_INFO_V1(pgbank_capture);
Datum
pgbank_capture(PG_FUNCTION_ARGS)
{
	TransferRow t;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_PGB_NULL_ARGUMENT), errmsg("hold_id must not be null")));
	SPI_connect();
	ResolveHold(PG_GETARG_INT64(0), true, PG_ARGISNULL(1) ? NULL : PG_GETARG_NUMERIC(1),
				false, &t);
	return EngineTransferDatum(fcinfo, &t);
}

PG_FUNCTION_INFO_V1(pgbank_void);
Datum
pgbank_void(PG_FUNCTION_ARGS)
{
	TransferRow t;

	SPI_connect();
	ResolveHold(PG_GETARG_INT64(0), false, NULL, false, &t);
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
	if (strlen(req.description) == 0 || strlen(req.description) > 500)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_ARGUMENT),
				 errmsg("reason must be 1 to 500 characters")));
	req.idempotency_key = TextDatumGetCString(PG_GETARG_DATUM(2));

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
	TransferRow t;

	SPI_connect();
	n = PgbExec(&q_expired_holds, NULL, NULL, false, 0);
	ids = palloc(sizeof(int64) * (n + 1));
	for (i = 0; i < n; i++)
		ids[i] = PgbGetInt64(i, 1);
	for (i = 0; i < n; i++)
	{
		TransferRow before;

		EngineLoadTransfer(ids[i], false, &before);
		ResolveHold(ids[i], false, NULL, true, &t);
		if (strcmp(before.status, "pending") == 0 && strcmp(t.status, "voided") == 0)
			voided++;
	}
	SPI_finish();
	PG_RETURN_INT32(voided);
}

PG_FUNCTION_INFO_V1(pgbank_fold_account);
Datum
pgbank_fold_account(PG_FUNCTION_ARGS)
{
	int			n;

	SPI_connect();
	n = EngineFold(PG_GETARG_INT64(0), false);
	SPI_finish();
	PG_RETURN_INT32(n);
}
