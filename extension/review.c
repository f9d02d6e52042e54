/*-------------------------------------------------------------------------
 *
 * review.c
 *		The review queue: moves held by the fraud screening (risk.c), listed
 *		for staff, approved or rejected.
 *
 * A move that a review rule flags is written held_for_review: its amount is
 * reserved on the debited account (pending_out) like a hold's, it has no
 * legs, and bank.fraud_reviews holds the rules that fired.  Staff decide:
 *
 *	- approve: a transfer or withdrawal posts from what it reserved
 *	  (TransferResolve as a capture: the debited account, then the transfer,
 *	  are locked; frozen and funds are checked again), and its payee becomes
 *	  known; a hold becomes an ordinary pending hold (its status only, under
 *	  the transfer's row lock), to be captured or voided as usual;
 *	- reject: the move is voided, its reservation released and its amount
 *	  given back to the customer's daily and monthly totals.
 *
 * A decision is taken once: the transfer's status changes under its row
 * lock before the review row is closed, so a second decision (concurrent or
 * later) finds the status changed, or the review row closed, and fails with
 * PB076.  Approving after the review period is PB077; rejecting stays
 * possible until bank.expire_holds() voids the item (a transfer's period is
 * pgbank.review_expiry from its creation, a hold's its own expiry) and marks
 * its review expired.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "pgbank.h"

/* the open queue, as the caller may see it (row-level security) */
static PgbQuery q_review_queue = {
	"SELECT r.transfer_id, r.customer_id, t.kind, r.hold, t.from_account, t.to_account,"
	"  t.currency, bank.minor_to_amount(t.amount, c.exponent), r.rules, r.created_at,"
	"  t.expires_at"
	" FROM bank.fraud_reviews r JOIN bank.transfers t ON t.id = r.transfer_id"
	" JOIN bank.currencies c ON c.code = t.currency"
	" WHERE r.status = 'open' AND r.transfer_id > $1"
	" ORDER BY r.transfer_id LIMIT $2",
	2, {INT8OID, INT4OID}, NULL, true
};

static PgbQuery q_review_get = {
	"SELECT hold, status::text FROM bank.fraud_reviews WHERE transfer_id = $1",
	1, {INT8OID}
};

static PgbQuery q_review_to_pending = {
	"UPDATE bank.transfers SET status = 'pending'"
	" WHERE id = $1 AND status = 'held_for_review'",
	1, {INT8OID}
};

static PgbQuery q_review_close = {
	"UPDATE bank.fraud_reviews SET status = $2::bank.review_status, decided_at = now(),"
	"  decided_by = $3::name, reason = $4"
	" WHERE transfer_id = $1 AND status = 'open'",
	4, {INT8OID, TEXTOID, TEXTOID, TEXTOID}
};

PG_FUNCTION_INFO_V1(pgbank_review_queue);
Datum
pgbank_review_queue(PG_FUNCTION_ARGS)
{
	Principal	who;
	Datum		v[2];
	int			limit = PG_ARGISNULL(1) ? 50 : PG_GETARG_INT32(1);

	AuthCaller("review_queue", &who);
	if (limit < 1 || limit > 1000)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_ARGUMENT),
				 errmsg("limit must be between 1 and 1000")));
	SPI_connect();
	v[0] = Int64GetDatum(PG_ARGISNULL(0) ? 0 : PG_GETARG_INT64(0));
	v[1] = Int32GetDatum(limit);
	PgbExec(&q_review_queue, v, NULL, true, 0);
	PgbMaterialize(fcinfo);
	SPI_finish();
	return (Datum) 0;
}

/*
 * Close transfer's open review (approved, rejected, expired) in the name of
 * the current role.  The caller has changed the transfer's status under its
 * row lock, so no other decision can reach here for it.
 */
void
ReviewClose(int64 transfer, const char *status, const char *reason)
{
	Datum		v[4];
	char		n[4] = "    ";

	v[0] = Int64GetDatum(transfer);
	v[1] = CStringGetTextDatum(status);
	v[2] = CStringGetTextDatum(GetUserNameFromId(GetUserId(), false));
	if (reason)
		v[3] = CStringGetTextDatum(reason);
	else
		n[3] = 'n';
	if (EngineExec(&q_review_close, v, n) != 1)
		elog(ERROR, "pgbank: the review of transfer %lld is not open", (long long) transfer);
}

static Datum
ReviewDecide(FunctionCallInfo fcinfo, bool approve)
{
	static const char *const names[] = {"transfer_id"};
	Principal	who;
	int64		id;
	char	   *reason;
	bool		hold;
	TransferRow t;
	Datum		v;

	AuthCaller(approve ? "review_approve" : "review_reject", &who);
	if (who.kind == PRINCIPAL_CUSTOMER)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("only staff may decide a review")));
	PgbRequireArgs(fcinfo, 1, names);
	id = PG_GETARG_INT64(0);
	reason = PgbReasonArg(fcinfo, 1);
	EngineRequireReadCommitted();

	SPI_connect();
	EngineLoadTransfer(id, false, &t);
	v = Int64GetDatum(id);
	if (PgbExec(&q_review_get, &v, NULL, false, 1) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_REVIEW_DECIDED),
				 errmsg("transfer %lld was not held for review", (long long) id)));
	hold = DatumGetBool(PgbGet(0, 1, &(bool) {false}));
	if (strcmp(PgbGetText(0, 2), "open") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_REVIEW_DECIDED),
				 errmsg("the review of transfer %lld was already closed (%s)", (long long) id,
						PgbGetText(0, 2))));

	if (approve && hold)
	{
		/* an approved hold is an ordinary hold: its reservation stays */
		EngineLoadTransfer(id, true, &t);
		if (strcmp(t.status, "held_for_review") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_PGB_REVIEW_DECIDED),
					 errmsg("transfer %lld is %s, not held for review", (long long) id,
							t.status)));
		if (t.expires_at <= GetCurrentTransactionStartTimestamp())
			ereport(ERROR,
					(errcode(ERRCODE_PGB_REVIEW_EXPIRED),
					 errmsg("the review period of transfer %lld has ended", (long long) id)));
		EngineExec(&q_review_to_pending, &v, NULL);
		EngineLoadTransfer(id, false, &t);
	}
	else
		(void) TransferResolve(id, approve, NULL, false, true, &t);
	if (approve)
		RiskPayeeApproved(&t);
	ReviewClose(id, approve ? "approved" : "rejected", reason);
	AuditWrite(&who, 0, approve ? "review.approve" : "review.reject", "transfer",
			   psprintf("%lld", (long long) id),
			   psprintf("{\"status\": \"%s\", \"hold\": %s, \"reason\": %s}", t.status,
						hold ? "true" : "false", AuditJsonString(reason)));
	return EngineTransferDatum(fcinfo, &t);
}

PG_FUNCTION_INFO_V1(pgbank_review_approve);
Datum
pgbank_review_approve(PG_FUNCTION_ARGS)
{
	return ReviewDecide(fcinfo, true);
}

PG_FUNCTION_INFO_V1(pgbank_review_reject);
Datum
pgbank_review_reject(PG_FUNCTION_ARGS)
{
	return ReviewDecide(fcinfo, false);
}
