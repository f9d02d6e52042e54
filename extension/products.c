/*-------------------------------------------------------------------------
 *
 * products.c
 *		Interest and fees: the rate table and fee schedule (admin-edited),
 *		daily interest accrual and the monthly posting of interest and fees.
 *
 * The calendar is pgbank.business_timezone's: a day ends at midnight there,
 * a month at the first midnight of the next.  A day is accrued and a month
 * posted only once it has ended (PB064).
 *
 * Accrual (bank.accrue_interest): for every customer account whose type and
 * currency have a positive rate on the day and whose posted balance at the
 * end of the day is positive, the day's interest is computed exactly,
 * actual/actual (balance * rate / 365, or / 366 in a leap year), in units of
 * 1/133590 of a minor unit (133590 = 365 * 366, so either divisor divides
 * it); the carry of the account's previous accrual is added, the sum is
 * rounded half-even to a whole minor unit (bank.div_round_half_even, exact),
 * and what is left over is the new carry, |carry| <= 1/2 minor unit.  The
 * constraint interest_accruals_exact proves every row loses nothing.
 *
 * Posting (bank.post_month): per account, the month's accrued interest from
 * the currency's interest_expense account (kind interest), then the monthly
 * maintenance fee and the month's withdrawal fees to fee_income (kind fee),
 * each one transfer through the engine (EngineMove), so the ledger's locks,
 * constraints and audit apply as to any transfer.  Per-withdrawal fees are
 * charged here, once a month, rather than in bank.withdraw: the withdrawal
 * path stays as it is, and a fee follows the schedule in effect on the day
 * the withdrawal posted.  A fee the account cannot pay (insufficient funds,
 * closed) is declined in a subtransaction and recorded as declined; other
 * errors abort the run.
 *
 * Once only, also under concurrency: both runs take one transaction-level
 * advisory lock (field4 'PR') before they read anything, so runs execute one
 * after another, and each statement (READ COMMITTED) sees what the previous
 * run committed: a day's accounts already accrued are skipped, an (account,
 * month, kind) already in bank.month_postings is not posted again.  The
 * primary keys of interest_accruals and month_postings are the backstop: a
 * second row for the same key cannot commit.  A day is not accrued once a
 * later day was (its carry would be out of order) nor once its month was
 * posted (it could never be paid), both PB065.  So neither runs ahead of
 * an accrual job (PB066): a month is not posted, nor a day accrued, while
 * an accrual job for a day of the month, or for an earlier day, is queued
 * (waiting, running or being retried) or dead.  After an outage the
 * worker queues them all together, and a failed accrual is retried later;
 * without the check the posting, or the next day's accrual, would close a
 * day still to be accrued, whose interest would never be paid.  A dead
 * accrual stops both until an admin retries it (bank.retry_job) or gives
 * the day up (bank.cancel_job).  The check runs under the run lock, so an
 * accrual that committed before it is seen.
 *
 * Locks, in order: the run lock; then, per posting, what EngineMove takes (a
 * fee locks the debited account FOR NO KEY UPDATE until the run commits;
 * interest credits are lock-free).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/jsonb.h"
#include "utils/resowner.h"
#include "utils/tuplestore.h"

#include "pgbank.h"

#define PRODUCT_LOCK_SPACE 0x5052	/* 'PR': field4 of the run lock's tag */

static PgbQuery q_set_rate = {
	"WITH closed AS ("
	"  SELECT EXISTS (SELECT 1 FROM bank.interest_accruals i"
	"   JOIN bank.accounts a ON a.id = i.account_id"
	"   WHERE a.type = $1::bank.account_type AND a.currency = $2 AND i.day >= $4) AS c)"
	" INSERT INTO bank.interest_rates (account_type, currency, effective_from, annual_rate, set_by)"
	" SELECT $1::bank.account_type, $2, $4, $3, $5 FROM closed WHERE NOT c"
	" ON CONFLICT (account_type, currency, effective_from) DO UPDATE"
	"  SET annual_rate = EXCLUDED.annual_rate, set_by = EXCLUDED.set_by, set_at = now()",
	5, {TEXTOID, BPCHAROID, NUMERICOID, DATEOID, NAMEOID}
};

static PgbQuery q_set_fee = {
	"WITH closed AS ("
	"  SELECT EXISTS (SELECT 1 FROM bank.month_postings p"
	"   JOIN bank.accounts a ON a.id = p.account_id"
	"   WHERE a.type = $1::bank.account_type AND a.currency = $2 AND p.kind = $3"
	"   AND p.month >= date_trunc('month', $5::timestamp)::date) AS c)"
	" INSERT INTO bank.fee_schedule (account_type, currency, fee, effective_from, amount, set_by)"
	" SELECT $1::bank.account_type, $2, $3, $5, $4, $6 FROM closed WHERE NOT c"
	" ON CONFLICT (account_type, currency, fee, effective_from) DO UPDATE"
	"  SET amount = EXCLUDED.amount, set_by = EXCLUDED.set_by, set_at = now()",
	6, {TEXTOID, BPCHAROID, TEXTOID, INT8OID, DATEOID, NAMEOID}
};

/* the latest day accrued, and whether the day's month was posted */
static PgbQuery q_accrual_state = {
	"SELECT to_char((SELECT max(day) FROM bank.interest_accruals), 'YYYY-MM-DD'),"
	" EXISTS (SELECT 1 FROM bank.month_postings WHERE kind = 'interest'"
	"  AND month = date_trunc('month', $1::timestamp)::date)",
	1, {DATEOID}
};

/*
 * One day's accruals, in one statement.  $1 the day, $2 the business time
 * zone.  The end-of-day balance is every leg (entry or pending leg) posted
 * before the day ended, as bank.balance(account, as_of) counts it.
 */
static PgbQuery q_accrue = {
	"WITH p AS ("
	"  SELECT $1::date AS day, (($1::date + 1)::timestamp AT TIME ZONE $2) AS day_end,"
	"   (make_date(extract(year FROM $1::date)::int, 12, 31)"
	"    - make_date(extract(year FROM $1::date)::int, 1, 1) + 1)::smallint AS diy),"
	" acc AS ("
	"  SELECT a.id, r.annual_rate, p.diy,"
	"   (coalesce((SELECT sum(e.amount) FROM bank.entries e"
	"              WHERE e.account_id = a.id AND e.posted_at < p.day_end), 0)"
	"    + coalesce((SELECT sum(l.amount) FROM bank.pending_legs l"
	"              WHERE l.account_id = a.id AND l.posted_at < p.day_end), 0))::bigint AS balance"
	"  FROM p, bank.accounts a"
	"  CROSS JOIN LATERAL (SELECT x.annual_rate FROM bank.interest_rates x"
	"   WHERE x.account_type = a.type AND x.currency = a.currency AND x.effective_from <= p.day"
	"   ORDER BY x.effective_from DESC LIMIT 1) r"
	"  WHERE a.customer_id IS NOT NULL AND a.opened_at < p.day_end AND r.annual_rate > 0"
	"   AND NOT EXISTS (SELECT 1 FROM bank.interest_accruals i"
	"                    WHERE i.account_id = a.id AND i.day = p.day)),"
	" x AS ("
	"  SELECT acc.*, coalesce((SELECT i.carry FROM bank.interest_accruals i"
	"   WHERE i.account_id = acc.id AND i.day < $1 ORDER BY i.day DESC LIMIT 1), 0) AS carry_in"
	"  FROM acc WHERE acc.balance > 0),"
	" y AS (SELECT x.*, x.balance * x.annual_rate * (133590 / x.diy) + x.carry_in AS exact FROM x),"
	" z AS (SELECT y.*, bank.div_round_half_even(y.exact, 133590) AS amount FROM y)"
	" INSERT INTO bank.interest_accruals (account_id, day, balance, annual_rate, days_in_year,"
	"  carry_in, amount, carry)"
	" SELECT z.id, $1, z.balance, z.annual_rate, z.diy, z.carry_in, z.amount,"
	"  z.exact - z.amount * 133590"
	" FROM z ORDER BY z.id"
	" ON CONFLICT (account_id, day) DO NOTHING",
	2, {DATEOID, TEXTOID}
};

/*
 * What a month owes, not yet posted: per account, the month's accrued
 * interest, the monthly maintenance fee in effect on the month's last day
 * (accounts open at the month's end), and the withdrawal fees (each at the
 * fee in effect on the day the withdrawal posted; reversed withdrawals are
 * not charged).  With the system account of the other side.  Interest
 * first, so that it can pay the fees.
 */
static PgbQuery q_month_due = {
	"WITH b AS ("
	"  SELECT m AS month, (m + interval '1 month')::date AS next,"
	"   (m::timestamp AT TIME ZONE $2) AS m_start,"
	"   ((m + interval '1 month')::timestamp AT TIME ZONE $2) AS m_end"
	"  FROM (SELECT date_trunc('month', $1::timestamp)::date AS m) s),"
	" due AS ("
	"  SELECT i.account_id, 'interest'::text AS kind, sum(i.amount)::bigint AS amount,"
	"   count(*)::int4 AS units"
	"   FROM b, bank.interest_accruals i WHERE i.day >= b.month AND i.day < b.next"
	"   GROUP BY i.account_id"
	"  UNION ALL"
	"  SELECT a.id, 'monthly_maintenance', f.amount, 1"
	"   FROM b, bank.accounts a CROSS JOIN LATERAL (SELECT s.amount FROM bank.fee_schedule s"
	"    WHERE s.account_type = a.type AND s.currency = a.currency"
	"    AND s.fee = 'monthly_maintenance' AND s.effective_from < b.next"
	"    ORDER BY s.effective_from DESC LIMIT 1) f"
	"   WHERE a.customer_id IS NOT NULL AND a.opened_at < b.m_end"
	"   AND (a.closed_at IS NULL OR a.closed_at >= b.m_end)"
	"  UNION ALL"
	"  SELECT a.id, 'withdrawal', sum(f.amount)::bigint, count(*)::int4"
	"   FROM b, bank.transfers t JOIN bank.accounts a ON a.id = t.from_account"
	"   CROSS JOIN LATERAL (SELECT s.amount FROM bank.fee_schedule s"
	"    WHERE s.account_type = a.type AND s.currency = a.currency AND s.fee = 'withdrawal'"
	"    AND s.effective_from <= (t.posted_at AT TIME ZONE $2)::date"
	"    ORDER BY s.effective_from DESC LIMIT 1) f"
	"   WHERE t.kind = 'withdrawal' AND t.status = 'posted'"
	"   AND t.posted_at >= b.m_start AND t.posted_at < b.m_end"
	"   GROUP BY a.id)"
	" SELECT d.account_id, d.kind, a.currency::text, d.amount, d.units, s.id,"
	"  to_char(b.month, 'YYYY-MM-DD')"
	" FROM due d JOIN bank.accounts a ON a.id = d.account_id CROSS JOIN b"
	" JOIN bank.accounts s ON s.customer_id IS NULL AND s.currency = a.currency"
	"  AND s.type = CASE WHEN d.kind = 'interest' THEN 'interest_expense'"
	"               ELSE 'fee_income' END::bank.account_type"
	" WHERE d.amount > 0 AND NOT EXISTS (SELECT 1 FROM bank.month_postings m"
	"  WHERE m.account_id = d.account_id AND m.month = b.month AND m.kind = d.kind)"
	" ORDER BY d.kind <> 'interest', d.account_id, d.kind",
	2, {DATEOID, TEXTOID}
};

static PgbQuery q_posting_insert = {
	"INSERT INTO bank.month_postings (account_id, month, kind, currency, amount, units,"
	" transfer_id, failure_code) VALUES ($1, $2::date, $3, $4, $5, $6, $7, $8)",
	8, {INT8OID, TEXTOID, TEXTOID, BPCHAROID, INT8OID, INT4OID, INT8OID, BPCHAROID}
};

/*
 * The first day in [$1, $2) whose accrual job (of any kind that calls
 * bank.accrue_interest) is queued or dead, with its status and id.  Job
 * arguments of type date are stored as YYYY-MM-DD (jobs.c), which reads back
 * the same under any DateStyle; compared as dates (infinities, BC years).
 * OFFSET 0 keeps the cast out of the scan: other kinds' arguments need not
 * be dates.
 */
static PgbQuery q_accruals_pending = {
	"SELECT a.arg, a.status, a.id FROM ("
	"  SELECT q.args[1] AS arg, q.status, q.id FROM bank.job_queue q"
	"  JOIN bank.job_kinds k ON k.name = q.job"
	"  WHERE k.function = 'bank.accrue_interest(date)'::pg_catalog.regprocedure"
	"   AND q.status IN ('queued', 'dead') OFFSET 0) a"
	" WHERE a.arg::pg_catalog.date >= $1 AND a.arg::pg_catalog.date < $2"
	" ORDER BY a.arg::pg_catalog.date LIMIT 1",
	2, {DATEOID, DATEOID}
};

/*
 * PB066 when an accrual of a day in [from, before) is still to run: queued
 * (waiting, running, being retried) or dead.  SPI connected, under the run
 * lock, so that an accrual that committed first is seen.
 */
static void
ProductRequireAccrued(DateADT from, DateADT before, const char *what)
{
	Datum		v[2];
	bool		dead;

	v[0] = DateADTGetDatum(from);
	v[1] = DateADTGetDatum(before);
	if (PgbExec(&q_accruals_pending, v, NULL, false, 1) != 1)
		return;
	dead = strcmp(PgbGetText(0, 2), "dead") == 0;
	ereport(ERROR,
			(errcode(ERRCODE_PGB_PERIOD_NOT_READY),
			 errmsg("%s cannot run yet: the interest accrual of %s (job %lld) is %s",
					what, PgbGetText(0, 1), (long long) PgbGetInt64(0, 3),
					dead ? "dead" : "still queued"),
			 dead ? errhint("Retry it with bank.retry_job once its cause is fixed, or give that day "
							"up with bank.cancel_job.") :
			 errhint("Wait until it has run; a job waiting for it is retried after its backoff.")));
}

/* pgbank.business_timezone as a text Datum */
Datum
ProductBusinessTimezone(void)
{
	return CStringGetTextDatum(pgb_business_timezone && pgb_business_timezone[0] ?
							   pgb_business_timezone : "UTC");
}

/* a date as YYYY-MM-DD, whatever DateStyle says */
static char *
DayText(DateADT day)
{
	int			y,
				m,
				d;

	j2date(day + POSTGRES_EPOCH_JDATE, &y, &m, &d);
	return psprintf("%04d-%02d-%02d", y, m, d);
}

/* today in the business time zone */
DateADT
ProductBusinessToday(void)
{
	Datum		ts = DirectFunctionCall2(timestamptz_zone, ProductBusinessTimezone(),
										 TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()));

	return DatumGetDateADT(DirectFunctionCall1(timestamp_date, ts));
}

PG_FUNCTION_INFO_V1(pgbank_business_date);
Datum
pgbank_business_date(PG_FUNCTION_ARGS)
{
	Datum		ts = DirectFunctionCall2(timestamptz_zone, ProductBusinessTimezone(),
										 PG_GETARG_DATUM(0));

	return DirectFunctionCall1(timestamp_date, ts);
}

/* runs of accrue_interest and post_month, one at a time, until commit */
static void
ProductRunLock(void)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, 0, 0, PRODUCT_LOCK_SPACE);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}

/* PB019 unless a customer account type (rates and fees apply to those only) */
static char *
CustomerTypeArg(FunctionCallInfo fcinfo, int arg)
{
	char	   *type = DatumGetCString(DirectFunctionCall1(enum_out, PG_GETARG_DATUM(arg)));

	if (strcmp(type, "checking") != 0 && strcmp(type, "savings") != 0 &&
		strcmp(type, "investment") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_ACCOUNT_TYPE),
				 errmsg("rates and fees apply to checking, savings and investment accounts only")));
	return type;
}

static Datum
CallerNameDatum(void)
{
	return DirectFunctionCall1(namein, CStringGetDatum(GetUserNameFromId(GetUserId(), false)));
}

PG_FUNCTION_INFO_V1(pgbank_set_interest_rate);
Datum
pgbank_set_interest_rate(PG_FUNCTION_ARGS)
{
	static const char *const names[] = {"account_type", "currency", "annual_rate",
	"effective_from"};
	Principal	who;
	char	   *type;
	char	   *currency;
	Numeric		rate;
	Datum		v[5];

	PgbRequireArgs(fcinfo, 4, names);
	type = CustomerTypeArg(fcinfo, 0);
	currency = TextDatumGetCString(PG_GETARG_DATUM(1));
	rate = PG_GETARG_NUMERIC(2);
	if (numeric_is_nan(rate) || numeric_is_inf(rate) ||
		DatumGetBool(DirectFunctionCall2(numeric_lt, NumericGetDatum(rate),
										 NumericGetDatum(int64_to_numeric(0)))) ||
		DatumGetBool(DirectFunctionCall2(numeric_gt, NumericGetDatum(rate),
										 NumericGetDatum(int64_to_numeric(1)))) ||
		DatumGetInt32(DirectFunctionCall1(numeric_scale, NumericGetDatum(rate))) > 12)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_ARGUMENT),
				 errmsg("annual_rate must be a fraction from 0 to 1 with at most 12 decimal places"),
				 errhint("0.0365 is 3.65 %% a year.")));
	AuthCaller("set_interest_rate", &who);
	SPI_connect();
	(void) MoneyExponent(currency);
	v[0] = CStringGetTextDatum(type);
	v[1] = EngineBpchar(currency);
	v[2] = NumericGetDatum(rate);
	v[3] = PG_GETARG_DATUM(3);
	v[4] = CallerNameDatum();
	if (PgbExec(&q_set_rate, v, NULL, false, 0) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_PERIOD_CLOSED),
				 errmsg("%s %s accounts accrued interest on or after %s already", type, currency,
						DayText(PG_GETARG_DATEADT(3))),
				 errhint("Set the new rate from a day that has not been accrued.")));
	AuditWrite(&who, 0, "interest_rate.set", "interest_rate",
			   psprintf("%s/%s/%s", type, currency, DayText(PG_GETARG_DATEADT(3))),
			   psprintf("{\"annual_rate\": %s}",
						DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(rate)))));
	SPI_finish();
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(pgbank_set_fee);
Datum
pgbank_set_fee(PG_FUNCTION_ARGS)
{
	static const char *const names[] = {"account_type", "currency", "fee", "amount",
	"effective_from"};
	Principal	who;
	char	   *type;
	char	   *currency;
	char	   *fee;
	Numeric		amount;
	int64		minor = 0;
	Datum		v[6];

	PgbRequireArgs(fcinfo, 5, names);
	type = CustomerTypeArg(fcinfo, 0);
	currency = TextDatumGetCString(PG_GETARG_DATUM(1));
	fee = TextDatumGetCString(PG_GETARG_DATUM(2));
	if (strcmp(fee, "monthly_maintenance") != 0 && strcmp(fee, "withdrawal") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_ARGUMENT),
				 errmsg("fee must be monthly_maintenance or withdrawal")));
	amount = PG_GETARG_NUMERIC(3);
	AuthCaller("set_fee", &who);
	SPI_connect();
	/* zero turns the fee off; anything else is an amount of the currency */
	if (numeric_is_nan(amount) || numeric_is_inf(amount) ||
		!DatumGetBool(DirectFunctionCall2(numeric_eq, NumericGetDatum(amount),
										  NumericGetDatum(int64_to_numeric(0)))))
		minor = MoneyToMinor(amount, MoneyExponent(currency));
	else
		(void) MoneyExponent(currency);
	v[0] = CStringGetTextDatum(type);
	v[1] = EngineBpchar(currency);
	v[2] = CStringGetTextDatum(fee);
	v[3] = Int64GetDatum(minor);
	v[4] = PG_GETARG_DATUM(4);
	v[5] = CallerNameDatum();
	if (PgbExec(&q_set_fee, v, NULL, false, 0) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_PERIOD_CLOSED),
				 errmsg("%s fees of %s %s accounts were charged for the month of %s or later already",
						fee, type, currency, DayText(PG_GETARG_DATEADT(4))),
				 errhint("Set the new fee from a month that has not been posted.")));
	AuditWrite(&who, 0, "fee.set", "fee",
			   psprintf("%s/%s/%s/%s", type, currency, fee, DayText(PG_GETARG_DATEADT(4))),
			   psprintf("{\"amount\": %lld}", (long long) minor));
	SPI_finish();
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(pgbank_accrue_interest);
Datum
pgbank_accrue_interest(PG_FUNCTION_ARGS)
{
	DateADT		day = PG_GETARG_DATEADT(0);
	Principal	who;
	Datum		v[2];
	char	   *latest;
	int			n;

	AuthCaller("accrue_interest", &who);
	EngineRequireReadCommitted();
	if (DATE_NOT_FINITE(day) || day >= ProductBusinessToday())
		ereport(ERROR,
				(errcode(ERRCODE_PGB_PERIOD_NOT_ENDED),
				 errmsg("day %s has not ended in %s",
						DATE_NOT_FINITE(day) ? (DATE_IS_NOBEGIN(day) ? "-infinity" : "infinity") : DayText(day),
						TextDatumGetCString(ProductBusinessTimezone()))));
	SPI_connect();
	ProductRunLock();
	/* days in order: not while an earlier day's accrual is still to run */
	ProductRequireAccrued(DATEVAL_NOBEGIN, day, psprintf("the accrual of %s", DayText(day)));

	v[0] = DateADTGetDatum(day);
	PgbExec(&q_accrual_state, v, NULL, false, 1);
	latest = PgbGetText(0, 1);
	if (latest && strcmp(latest, DayText(day)) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_PERIOD_CLOSED),
				 errmsg("interest was accrued for a later day (%s) already", latest),
				 errhint("Days are accrued in order; carries run from one day to the next.")));
	if (DatumGetBool(PgbGet(0, 2, &(bool) {false})))
		ereport(ERROR,
				(errcode(ERRCODE_PGB_PERIOD_CLOSED),
				 errmsg("interest for the month of %s was posted already", DayText(day))));

	v[1] = ProductBusinessTimezone();
	n = PgbExec(&q_accrue, v, NULL, false, 0);
	AuditWrite(&who, 0, "interest.accrue", "interest_day", DayText(day),
			   psprintf("{\"accounts\": %d}", n));
	SPI_finish();
	PG_RETURN_INT32(n);
}

/*
 * Post one move in a subtransaction.  A decline the account causes
 * (insufficient funds, closed) rolls back the subtransaction only and is
 * returned as its SQLSTATE; any other error aborts the caller.  Returns
 * whether the move posted.
 */
static bool
PostInSubtransaction(MoveRequest *req, TransferRow *t, char *failure_code)
{
	PgbSubxact	sx;
	volatile bool posted = false;

	PgbSubxactBegin(&sx);
	PG_TRY();
	{
		EngineMove(req, t);
		EngineAssertSettled();
		PgbSubxactCommit(&sx);
		posted = true;
	}
	PG_CATCH();
	{
		ErrorData  *edata = PgbSubxactAbort(&sx);

		if (edata->sqlerrcode != ERRCODE_PGB_INSUFFICIENT_FUNDS &&
			edata->sqlerrcode != ERRCODE_PGB_ACCOUNT_CLOSED)
			ReThrowError(edata);
		strlcpy(failure_code, unpack_sql_state(edata->sqlerrcode), 6);
		FreeErrorData(edata);
	}
	PG_END_TRY();
	return posted;
}

PG_FUNCTION_INFO_V1(pgbank_post_month);
Datum
pgbank_post_month(PG_FUNCTION_ARGS)
{
	DateADT		month = PG_GETARG_DATEADT(0);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Principal	who;
	Datum		v[8];
	int			n,
				i,
				year,
				mon,
				mday;
	DateADT		next;
	int64	   *accounts,
			   *amounts,
			   *system;
	char	  **kinds,
			  **currencies;
	int		   *units;
	char	   *month_text = NULL;

	AuthCaller("post_month", &who);
	EngineRequireReadCommitted();
	if (DATE_NOT_FINITE(month))
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_ARGUMENT), errmsg("month must be a finite date")));
	j2date(month + POSTGRES_EPOCH_JDATE, &year, &mon, &mday);
	next = date2j(mon == 12 ? year + 1 : year, mon == 12 ? 1 : mon + 1, 1) - POSTGRES_EPOCH_JDATE;
	if (next > ProductBusinessToday())
		ereport(ERROR,
				(errcode(ERRCODE_PGB_PERIOD_NOT_ENDED),
				 errmsg("the month of %s has not ended in %s", DayText(month),
						TextDatumGetCString(ProductBusinessTimezone()))));
	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	ProductRunLock();
	ProductRequireAccrued(month - mday + 1, next,
						  psprintf("the posting of the month of %s", DayText(month - mday + 1)));

	/*
	 * This transaction writes from here on, so the engine raises a decline
	 * without recording it as a failed transfer of its own; it is recorded
	 * in month_postings instead, the same way for every account.
	 */
	(void) GetTopTransactionId();

	v[0] = DateADTGetDatum(month);
	v[1] = ProductBusinessTimezone();
	n = PgbExec(&q_month_due, v, NULL, false, 0);
	accounts = palloc(sizeof(int64) * (n + 1));
	amounts = palloc(sizeof(int64) * (n + 1));
	system = palloc(sizeof(int64) * (n + 1));
	kinds = palloc(sizeof(char *) * (n + 1));
	currencies = palloc(sizeof(char *) * (n + 1));
	units = palloc(sizeof(int) * (n + 1));
	for (i = 0; i < n; i++)
	{
		accounts[i] = PgbGetInt64(i, 1);
		kinds[i] = PgbGetText(i, 2);
		currencies[i] = PgbGetText(i, 3);
		amounts[i] = PgbGetInt64(i, 4);
		units[i] = DatumGetInt32(PgbGet(i, 5, &(bool) {false}));
		system[i] = PgbGetInt64(i, 6);
		month_text = PgbGetText(i, 7);
	}

	for (i = 0; i < n; i++)
	{
		bool		interest = strcmp(kinds[i], "interest") == 0;
		MoveRequest req = {0};
		TransferRow t;
		char		failure_code[6] = {0};
		char		nulls[8] = "        ";
		Datum		out[7];
		bool		out_nulls[7] = {0};
		char	   *what = interest ? "interest" :
			strcmp(kinds[i], "withdrawal") == 0 ? "withdrawal fees" : "monthly maintenance fee";

		req.kind = interest ? "interest" : "fee";
		req.debit_account = interest ? system[i] : accounts[i];
		req.credit_account = interest ? accounts[i] : system[i];
		req.amount_minor = amounts[i];
		req.idempotency_key = psprintf("%s:%s:%lld", kinds[i], month_text, (long long) accounts[i]);
		req.description = psprintf("%s, %.7s", what, month_text);
		req.metadata = DirectFunctionCall1(jsonb_in,
										   CStringGetDatum(psprintf("{\"month\": \"%s\", \"%s\": %d}",
																	month_text,
																	interest ? "days" : "count",
																	units[i])));
		req.bank_posting = true;
		req.allow_frozen_debit = true;	/* the bank's own fees still apply */
		req.who = who;

		if (PostInSubtransaction(&req, &t, failure_code))
		{
			AuditWrite(&who, 0, interest ? "interest.post" : "fee.post", "transfer",
					   psprintf("%lld", (long long) t.id),
					   psprintf("{\"kind\": \"%s\", \"month\": \"%s\", \"account\": %lld,"
								" \"amount\": %lld, \"currency\": \"%s\"}",
								kinds[i], month_text, (long long) accounts[i],
								(long long) amounts[i], currencies[i]));
			v[6] = Int64GetDatum(t.id);
			nulls[7] = 'n';
		}
		else
		{
			AuditWrite(&who, 0, "fee.declined", "account", psprintf("%lld", (long long) accounts[i]),
					   psprintf("{\"kind\": \"%s\", \"month\": \"%s\", \"amount\": %lld,"
								" \"currency\": \"%s\", \"code\": \"%s\"}",
								kinds[i], month_text, (long long) amounts[i], currencies[i],
								failure_code));
			nulls[6] = 'n';
			v[7] = EngineBpchar(failure_code);
		}
		v[0] = Int64GetDatum(accounts[i]);
		v[1] = CStringGetTextDatum(month_text);
		v[2] = CStringGetTextDatum(kinds[i]);
		v[3] = EngineBpchar(currencies[i]);
		v[4] = Int64GetDatum(amounts[i]);
		v[5] = Int32GetDatum(units[i]);
		PgbExec(&q_posting_insert, v, nulls, false, 0);

		out[0] = Int64GetDatum(accounts[i]);
		out[1] = CStringGetTextDatum(kinds[i]);
		out[2] = EngineBpchar(currencies[i]);
		out[3] = MoneyDatum(amounts[i], MoneyExponent(currencies[i]));
		out[4] = Int32GetDatum(units[i]);
		out[5] = v[6];
		out_nulls[5] = (nulls[6] == 'n');
		out[6] = CStringGetTextDatum(failure_code);
		out_nulls[6] = (failure_code[0] == '\0');
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, out, out_nulls);
	}
	AuditWrite(&who, 0, "interest.post_month", "month", DayText(month - mday + 1),
			   psprintf("{\"postings\": %d}", n));
	EngineAssertSettled();
	SPI_finish();
	return (Datum) 0;
}
