/*-------------------------------------------------------------------------
 *
 * risk.c
 *		Fraud screening, outgoing limits and their counters, overdraft limits.
 *
 * Every transfer, withdrawal and hold out of a customer account is screened
 * by EngineMove in its own transaction (reversals, fees and interest, which
 * the bank posts itself, and deposits, which bring money in, are not):
 *
 *	1. RiskLock, before the debited account is locked, counts the move in:
 *	   one UPDATE of the customer's row of bank.risk_counters (one per
 *	   customer and currency, created on first use) adds it to the UTC day's
 *	   and month's totals and to the recent times and amounts, records its
 *	   payee, and returns all of it with the customer's limits and KYC
 *	   status.  The UPDATE's row lock serialises the screenings of one
 *	   customer whichever of their accounts they debit: a second move waits
 *	   for the first to end and then applies to the totals it left, so two
 *	   moves racing past a daily limit cannot both pass (the account lock
 *	   alone would not do it: they may debit two accounts).  It is taken
 *	   after the idempotency key's advisory lock and before any account, and
 *	   every release of screened funds takes it in the same place, so it adds
 *	   no lock cycle; a transaction that debits several accounts of a
 *	   customer takes it once, first.
 *	2. RiskScreen, after the funds check: the customer's limits
 *	   (bank.customer_limits: PB071, PB072), then every enabled rule of
 *	   bank.risk_rules for the currency, in kind order then id.  A declining
 *	   rule declines at once with its kind's SQLSTATE, recorded as a failed
 *	   transfer like any decline (EngineDecline; the error rolls the counting
 *	   back); review rules that fire are collected, and the move is then held
 *	   for review.
 *	3. RiskRecord, after the move is written, for a held move only: its
 *	   amount leaves the usual amounts and its payee the known ones again,
 *	   and it joins the review queue.
 *
 * What the rules measure, precisely:
 *	- totals: the sum of the customer's transfers, withdrawals and holds in
 *	  the currency created in the current UTC day (month) and accepted or
 *	  held for review, this one included, less what voids, rejections,
 *	  expiries and partial captures gave back within the same day (month);
 *	- velocity: the number of such moves created in the last window_minutes,
 *	  this one included;
 *	- new payee: a transfer to an account of another customer that none of
 *	  the customer's transfers accepted without review (or approved) went to
 *	  before;
 *	- usual amount: the median of the amounts of the customer's last history
 *	  moves in the currency accepted without review; the rule fires above
 *	  multiplier times it, and only once there are at least min_history of
 *	  them.
 * The recent times and amounts are kept only as deep as the enabled rules
 * need (the largest max_count + 1 of velocity rules, the largest history + 1
 * of unusual_amount rules; none without such rules), so the counters row
 * stays small: a rule enabled, or deepened, later sees the moves kept since.
 *
 * Cost per screened move: one statement, an UPDATE of the counters row by
 * its primary key joined with the customer and the limits by theirs, and an
 * insert (or conflict check) of the payee; the rules are cached in backend
 * memory until bank.risk_rules changes; no aggregate over transfers or
 * entries.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/int.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "catalog/namespace.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "pgbank.h"

/* the current UTC day and month, as the counters keep them */
#define RISK_PERIODS \
	"(SELECT (now() AT TIME ZONE 'UTC')::date AS day," \
	"  date_trunc('month', now() AT TIME ZONE 'UTC')::date AS month) d"

/*
 * Count the move in, and read what the screening needs, in one statement:
 * the UPDATE locks the customer's counters row in this currency (waiting,
 * in READ COMMITTED, for a concurrent move of the same customer to end,
 * then applying to the row it left) and returns the totals with this move
 * included, the recent times and amounts with this move last (as many as
 * the enabled rules need, $5 and $6, this move included), the customer's
 * limits and KYC status, and whether the payee ($3, an account of another
 * customer; 0 for none) was new (inserted here, only when the row exists:
 * on first use, q_risk_create makes the row and this runs again).  A
 * decline rolls all of it back; a review takes the amount and the payee
 * back out (q_risk_unaccept).  An UPDATE rather than an upsert: ON CONFLICT
 * DO UPDATE locks the row and then updates it, two WAL records for one.
 */
static PgbQuery q_risk_count = {
	"WITH p AS (INSERT INTO bank.payees (customer_id, account_id) SELECT $1, $3"
	"  WHERE $3 <> 0 AND EXISTS (SELECT 1 FROM bank.risk_counters"
	"   WHERE customer_id = $1 AND currency = $2)"
	"  ON CONFLICT DO NOTHING RETURNING 1)"
	" UPDATE bank.risk_counters r SET day = d.day,"
	"  day_total = CASE WHEN r.day = d.day THEN r.day_total ELSE 0 END + $4,"
	"  month = d.month,"
	"  month_total = CASE WHEN r.month = d.month THEN r.month_total ELSE 0 END + $4,"
	"  recent_at = CASE WHEN $5 = 0 THEN '{}'"
	"   ELSE (r.recent_at || now())[greatest(cardinality(r.recent_at) + 2 - $5, 1):] END,"
	"  recent_amounts = CASE WHEN $6 = 0 THEN '{}'"
	"   ELSE (r.recent_amounts || $4)[greatest(cardinality(r.recent_amounts) + 2 - $6, 1):] END"
	" FROM " RISK_PERIODS " CROSS JOIN bank.customers c"
	" LEFT JOIN bank.customer_limits l ON l.customer_id = c.id AND l.currency = $2"
	" WHERE r.customer_id = $1 AND r.currency = $2 AND c.id = $1"
	" RETURNING r.day_total, r.month_total, r.recent_at, r.recent_amounts, l.daily_limit,"
	"  l.monthly_limit, c.kyc_status::text, NOT EXISTS (SELECT 1 FROM p)",
	6, {INT8OID, BPCHAROID, INT8OID, INT8OID, INT4OID, INT4OID}
};

/* a customer's first move in a currency: the row to count in (empty) */
static PgbQuery q_risk_create = {
	"INSERT INTO bank.risk_counters (customer_id, currency, day, month)"
	" SELECT $1, $2, d.day, d.month FROM " RISK_PERIODS
	" ON CONFLICT DO NOTHING",
	2, {INT8OID, BPCHAROID}
};

/*
 * The enabled rules, in kind order then id, amounts in minor units of their
 * currency.  Read once per backend and kept until bank.risk_rules changes:
 * its trigger invalidates the table's relcache entry, which every backend
 * processes (RiskRulesInvalidate) before its next transaction, or its own
 * next command, so a screening never uses rules older than those committed
 * when its transaction began (nor misses its own transaction's changes).
 */
static PgbQuery q_risk_rules = {
	"SELECT id, name, kind::text, action::text, currency, kyc_status::text,"
	" CASE WHEN amount IS NOT NULL THEN bank.amount_to_minor(amount, currency) END,"
	" coalesce(max_count, 0), coalesce(window_minutes, 0), (multiplier * 100)::int8,"
	" coalesce(history, 0), coalesce(min_history, 0)"
	" FROM bank.risk_rules WHERE enabled ORDER BY kind, id",
	0, {}
};

typedef struct RiskRule
{
	int64		id;
	char	   *name;
	char	   *kind;
	bool		decline;
	char		currency[4];	/* "": every currency */
	char	   *kyc_status;		/* NULL: every customer */
	int64		amount;			/* minor units */
	int			max_count;
	int			window_minutes;
	int64		multiplier100;
	int			history;
	int			min_history;
} RiskRule;

static MemoryContext rules_cxt = NULL;
static RiskRule *rules = NULL;
static int	nrules = 0;
static int	keep_at = 0;		/* recent times to keep: most max_count + 1 */
static int	keep_amounts = 0;	/* recent amounts to keep: most history + 1 */
static bool rules_valid = false;
static Oid	rules_relid = InvalidOid;

static void
RiskRulesInvalidate(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == rules_relid)
		rules_valid = false;
}

/* the cached rules, (re)read when invalid; inside SPI */
static void
RiskRulesLoad(void)
{
	int			n,
				i;
	MemoryContext old;
	RiskRule   *loaded;

	if (rules_valid)
		return;
	if (rules_cxt == NULL)
	{
		rules_cxt = AllocSetContextCreate(TopMemoryContext, "pgbank risk rules",
										  ALLOCSET_SMALL_SIZES);
		CacheRegisterRelcacheCallback(RiskRulesInvalidate, (Datum) 0);
	}
	/*
	 * Valid from here: an invalidation arriving while we read resets it.  An
	 * error while reading leaves the cache invalid (never an empty rule set
	 * that would let every move through).
	 */
	rules_valid = true;
	PG_TRY();
	{
		rules_relid = get_relname_relid("risk_rules", get_namespace_oid("bank", false));
		n = PgbExec(&q_risk_rules, NULL, NULL, true, 0);
		MemoryContextReset(rules_cxt);
		rules = NULL;
		nrules = 0;
		keep_at = keep_amounts = 0;
		old = MemoryContextSwitchTo(rules_cxt);
		loaded = palloc0(sizeof(RiskRule) * (n + 1));
		for (i = 0; i < n; i++)
		{
			RiskRule   *r = &loaded[i];
			char	   *currency = PgbGetText(i, 5);

			r->id = PgbGetInt64(i, 1);
			r->name = PgbGetText(i, 2);
			r->kind = PgbGetText(i, 3);
			r->decline = strcmp(PgbGetText(i, 4), "decline") == 0;
			strlcpy(r->currency, currency ? currency : "", sizeof(r->currency));
			r->kyc_status = PgbGetText(i, 6);
			r->amount = PgbGetInt64(i, 7);
			r->max_count = DatumGetInt32(PgbGet(i, 8, &(bool) {false}));
			r->window_minutes = DatumGetInt32(PgbGet(i, 9, &(bool) {false}));
			r->multiplier100 = PgbGetInt64(i, 10);
			r->history = DatumGetInt32(PgbGet(i, 11, &(bool) {false}));
			r->min_history = DatumGetInt32(PgbGet(i, 12, &(bool) {false}));
			if (strcmp(r->kind, "velocity") == 0)
				keep_at = Max(keep_at, r->max_count + 1);
			if (strcmp(r->kind, "unusual_amount") == 0)
				keep_amounts = Max(keep_amounts, r->history + 1);
		}
		MemoryContextSwitchTo(old);
		rules = loaded;
		nrules = n;
	}
	PG_CATCH();
	{
		rules_valid = false;
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/*
 * A move held for review is counted in the totals and velocity, but its
 * amount does not join the usual amounts and its payee ($3: new) does not
 * become known until approved.  The amounts keep one more than the deepest
 * history of the rules, so taking the last back out leaves what was there.
 */
static PgbQuery q_risk_unaccept = {
	"WITH p AS (DELETE FROM bank.payees WHERE $3 AND customer_id = $1 AND account_id = $4)"
	" UPDATE bank.risk_counters"
	"  SET recent_amounts = recent_amounts[1:cardinality(recent_amounts) - 1]"
	" WHERE customer_id = $1 AND currency = $2",
	4, {INT8OID, BPCHAROID, BOOLOID, INT8OID}
};

static PgbQuery q_review_insert = {
	"INSERT INTO bank.fraud_reviews (transfer_id, customer_id, hold, rules)"
	" VALUES ($1, $2, $3, $4::jsonb)",
	4, {INT8OID, INT8OID, BOOLOID, TEXTOID}
};

/* the counters of an account's customer, locked before the account */
static PgbQuery q_risk_lock_account = {
	"SELECT r.customer_id FROM bank.accounts a JOIN bank.risk_counters r"
	"  ON r.customer_id = a.customer_id AND r.currency = a.currency"
	" WHERE a.id = $1 FOR NO KEY UPDATE OF r",
	1, {INT8OID}
};

/* give back what a move created at $4 no longer takes, within its day/month */
static PgbQuery q_risk_release = {
	"UPDATE bank.risk_counters r SET"
	" day_total = CASE WHEN r.day = ($4 AT TIME ZONE 'UTC')::date"
	"  THEN greatest(r.day_total - $3, 0) ELSE r.day_total END,"
	" month_total = CASE WHEN r.month = date_trunc('month', $4 AT TIME ZONE 'UTC')::date"
	"  THEN greatest(r.month_total - $3, 0) ELSE r.month_total END"
	" WHERE r.customer_id = $1 AND r.currency = $2",
	4, {INT8OID, BPCHAROID, INT8OID, TIMESTAMPTZOID}
};

static PgbQuery q_payee = {
	"INSERT INTO bank.payees (customer_id, account_id)"
	" SELECT f.customer_id, $2 FROM bank.accounts f, bank.accounts t"
	"  WHERE f.id = $1 AND t.id = $2 AND t.customer_id <> f.customer_id"
	" ON CONFLICT DO NOTHING",
	2, {INT8OID, INT8OID}
};

/*
 * Count the move of amount in the customer's counters (creating them on
 * first use), which locks them until the transaction ends, and read them
 * with the customer's limits in the currency, KYC status and whether payee
 * (an account of another customer; 0: none) is a known payee.
 */
void
RiskLock(RiskState *rs, int64 customer, const char *currency, int64 payee, int64 amount)
{
	Datum		v[6];
	bool		isnull;
	Datum		d;

	RiskRulesLoad();
	memset(rs, 0, sizeof(*rs));
	rs->customer = customer;
	strlcpy(rs->currency, currency, sizeof(rs->currency));
	rs->payee = payee;
	v[0] = Int64GetDatum(customer);
	v[1] = EngineBpchar(currency);
	v[2] = Int64GetDatum(payee);
	v[3] = Int64GetDatum(amount);
	v[4] = Int32GetDatum(keep_at);
	v[5] = Int32GetDatum(keep_amounts);
	if (EngineExec(&q_risk_count, v, NULL) != 1)
	{
		/* ours until commit once inserted; a concurrent insert is waited for */
		EngineExec(&q_risk_create, v, NULL);
		if (EngineExec(&q_risk_count, v, NULL) != 1)
			elog(ERROR, "pgbank: risk counters of customer %lld vanished", (long long) customer);
	}
	rs->day_total = PgbGetInt64(0, 1);
	rs->month_total = PgbGetInt64(0, 2);
	d = PgbGet(0, 3, &isnull);
	deconstruct_array(DatumGetArrayTypeP(d), TIMESTAMPTZOID, sizeof(TimestampTz), FLOAT8PASSBYVAL,
					  TYPALIGN_DOUBLE, &rs->recent_at, NULL, &rs->nrecent);
	d = PgbGet(0, 4, &isnull);
	deconstruct_array(DatumGetArrayTypeP(d), INT8OID, sizeof(int64), FLOAT8PASSBYVAL,
					  TYPALIGN_DOUBLE, &rs->amounts, NULL, &rs->namounts);
	/* the move itself is the last amount (if kept): the history precedes it */
	rs->namounts = Max(rs->namounts - 1, 0);
	rs->daily_limit = PgbIsNull(0, 5) ? -1 : PgbGetInt64(0, 5);
	rs->monthly_limit = PgbIsNull(0, 6) ? -1 : PgbGetInt64(0, 6);
	rs->kyc_status = PgbGetText(0, 7);
	rs->known_payee = DatumGetBool(PgbGet(0, 8, &isnull));
}

static int
cmp_int64(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return (x > y) - (x < y);
}

/*
 * unusual_amount: amount above multiplier (in hundredths) times the median
 * of the last history accepted amounts, once there are min_history.  Exact:
 * for an even count the median is the mean of the middle two, compared as
 * 2 * 100 * amount > multiplier100 * (a + b).
 */
static bool
UnusualAmount(const RiskState *rs, int64 amount, int64 multiplier100, int history,
			  int min_history)
{
	int			n = Min(history, rs->namounts);
	int64	   *last;
	int64		lhs,
				rhs,
				mid;
	int			i;

	if (n < min_history || n == 0)
		return false;
	last = palloc(sizeof(int64) * n);
	for (i = 0; i < n; i++)
		last[i] = DatumGetInt64(rs->amounts[rs->namounts - n + i]);
	qsort(last, n, sizeof(int64), cmp_int64);
	if (n % 2 == 1)
	{
		lhs = amount * 100;
		mid = last[n / 2];
	}
	else
	{
		lhs = amount * 200;
		mid = last[n / 2 - 1] + last[n / 2];
	}
	/* amounts are below 10^15, so lhs fits; an rhs that overflows is huge */
	if (pg_mul_s64_overflow(multiplier100, mid, &rhs))
		return false;
	return lhs > rhs;
}

/* velocity: this move (the last recent one) is more than max_count in the window */
static bool
TooFast(const RiskState *rs, int max_count, int window_minutes)
{
	TimestampTz since = GetCurrentTransactionStartTimestamp() -
		(int64) window_minutes * 60 * USECS_PER_SEC;
	int			count = 0;
	int			i;

	for (i = 0; i < rs->nrecent; i++)
		if (DatumGetTimestampTz(rs->recent_at[i]) > since)
			count++;
	return count > max_count;
}

/*
 * Screen a move (t as it would be recorded) against the customer's limits
 * and the rules: decline (does not return) or set rs->review with the review
 * rules that fired.
 */
void
RiskScreen(RiskState *rs, MoveRequest *req, TransferRow *t, const IdemKey *idem)
{
	int64		amount = t->amount;
	int64		day_after = rs->day_total;	/* this move included */
	int64		month_after = rs->month_total;
	int			i;
	StringInfoData fired;

	/* the customer's own limits, set by staff */
	if (rs->daily_limit >= 0 && day_after > rs->daily_limit)
		EngineDecline(req, t, idem, ERRCODE_PGB_DAILY_LIMIT,
					  "the daily outgoing limit of the owner of account %lld would be exceeded",
					  (long long) t->from_account);
	if (rs->monthly_limit >= 0 && month_after > rs->monthly_limit)
		EngineDecline(req, t, idem, ERRCODE_PGB_MONTHLY_LIMIT,
					  "the monthly outgoing limit of the owner of account %lld would be exceeded",
					  (long long) t->from_account);

	/* the rules, in kind order then id: the first declining one decides */
	initStringInfo(&fired);
	RiskRulesLoad();
	for (i = 0; i < nrules; i++)
	{
		const RiskRule *r = &rules[i];
		bool		hit;
		int			code;
		const char *why;

		if (r->currency[0] && strcmp(r->currency, rs->currency) != 0)
			continue;
		if (strcmp(r->kind, "max_amount") == 0)
		{
			hit = (r->kyc_status == NULL || strcmp(r->kyc_status, rs->kyc_status) == 0) &&
				amount > r->amount;
			code = ERRCODE_PGB_RISK_MAX_AMOUNT;
			why = "the amount is above the most allowed at once";
		}
		else if (strcmp(r->kind, "daily_total") == 0)
		{
			hit = day_after > r->amount;
			code = ERRCODE_PGB_DAILY_LIMIT;
			why = "the daily outgoing total would be above what is allowed";
		}
		else if (strcmp(r->kind, "monthly_total") == 0)
		{
			hit = month_after > r->amount;
			code = ERRCODE_PGB_MONTHLY_LIMIT;
			why = "the monthly outgoing total would be above what is allowed";
		}
		else if (strcmp(r->kind, "velocity") == 0)
		{
			hit = TooFast(rs, r->max_count, r->window_minutes);
			code = ERRCODE_PGB_RISK_VELOCITY;
			why = "too many transfers in a short time";
		}
		else if (strcmp(r->kind, "new_payee") == 0)
		{
			hit = !rs->known_payee && amount > r->amount;
			code = ERRCODE_PGB_RISK_NEW_PAYEE;
			why = "the amount is above what a first transfer to a new payee may move";
		}
		else if (strcmp(r->kind, "unusual_amount") == 0)
		{
			hit = UnusualAmount(rs, amount, r->multiplier100, r->history, r->min_history);
			code = ERRCODE_PGB_RISK_UNUSUAL_AMOUNT;
			why = "the amount is far above the usual transfers";
		}
		else
			elog(ERROR, "pgbank: unknown risk rule kind %s", r->kind);
		if (!hit)
			continue;
		if (r->decline)
			EngineDecline(req, t, idem, code, "account %lld: %s",
						  (long long) t->from_account, why);
		/* rule names are admin-entered text: escaped by the JSON code */
		appendStringInfo(&fired, "%s{\"id\": %lld, \"name\": %s, \"kind\": \"%s\"}",
						 fired.len == 0 ? "[" : ", ", (long long) r->id,
						 AuditJsonString(r->name), r->kind);
	}
	if (fired.len > 0)
	{
		appendStringInfoChar(&fired, ']');
		rs->review = true;
		rs->rules_json = fired.data;
	}
}

/*
 * After the move t was written: a move held for review takes its amount
 * back out of the usual amounts and its payee out of the known ones, and
 * joins the review queue.
 */
void
RiskRecord(RiskState *rs, MoveRequest *req, const TransferRow *t)
{
	Datum		v[4];

	if (!rs->review)
		return;
	v[0] = Int64GetDatum(rs->customer);
	v[1] = EngineBpchar(rs->currency);
	v[2] = BoolGetDatum(!rs->known_payee);
	v[3] = Int64GetDatum(rs->payee);
	EngineExec(&q_risk_unaccept, v, NULL);
	v[0] = Int64GetDatum(t->id);
	v[1] = Int64GetDatum(rs->customer);
	v[2] = BoolGetDatum(req->hold);
	v[3] = CStringGetTextDatum(rs->rules_json);
	EngineExec(&q_review_insert, v, NULL);
	req->flagged_rules = rs->rules_json;
}

/*
 * Before locking the debited account of a screened hold or review item whose
 * funds may go back: lock its customer's counters.  Returns the customer, or
 * 0 when there are none (nothing was counted).
 */
int64
RiskLockForRelease(int64 account)
{
	Datum		v = Int64GetDatum(account);

	if (PgbExec(&q_risk_lock_account, &v, NULL, false, 1) != 1)
		return 0;
	return PgbGetInt64(0, 1);
}

/* amount of the screened move t no longer leaves: give it back to its period */
void
RiskRelease(int64 customer, const TransferRow *t, int64 amount)
{
	Datum		v[4];

	if (strcmp(t->kind, "transfer") != 0 && strcmp(t->kind, "withdrawal") != 0)
		return;
	v[0] = Int64GetDatum(customer);
	v[1] = EngineBpchar(t->currency);
	v[2] = Int64GetDatum(amount);
	v[3] = TimestampTzGetDatum(t->created_at);
	EngineExec(&q_risk_release, v, NULL);
}

/* an approved transfer's payee is known from now on */
void
RiskPayeeApproved(const TransferRow *t)
{
	Datum		v[2];

	if (strcmp(t->kind, "transfer") != 0)
		return;
	v[0] = Int64GetDatum(t->from_account);
	v[1] = Int64GetDatum(t->to_account);
	EngineExec(&q_payee, v, NULL);
}

/* ---------------------------------------------------------------------
 * Limits set by staff
 * ---------------------------------------------------------------------
 */

/* a limit: NULL for none (-1), else a non-negative amount in minor units */
static int64
LimitArg(FunctionCallInfo fcinfo, int arg, int exponent)
{
	Numeric		n;

	if (PG_ARGISNULL(arg))
		return -1;
	n = PG_GETARG_NUMERIC(arg);
	if (!numeric_is_nan(n) && strcmp(numeric_normalize(n), "0") == 0)
		return 0;
	return MoneyToMinor(n, exponent);
}

static char *
LimitJson(int64 limit)
{
	return limit < 0 ? "null" : psprintf("%lld", (long long) limit);
}

static PgbQuery q_customer_exists = {
	"SELECT 1 FROM bank.customers WHERE id = $1",
	1, {INT8OID}
};

static PgbQuery q_set_limits = {
	"INSERT INTO bank.customer_limits AS l (customer_id, currency, daily_limit, monthly_limit)"
	" VALUES ($1, $2, $3, $4)"
	" ON CONFLICT (customer_id, currency) DO UPDATE"
	"  SET daily_limit = $3, monthly_limit = $4, updated_at = now()"
	" RETURNING l.customer_id, l.currency, bank.minor_to_amount(l.daily_limit, $5),"
	"  bank.minor_to_amount(l.monthly_limit, $5)",
	5, {INT8OID, BPCHAROID, INT8OID, INT8OID, INT4OID}
};

PG_FUNCTION_INFO_V1(pgbank_set_customer_limits);
Datum
pgbank_set_customer_limits(PG_FUNCTION_ARGS)
{
	static const char *const names[] = {"customer_id", "currency"};
	Principal	who;
	int64		customer;
	char	   *currency;
	char	   *reason;
	int			exponent;
	int64		daily,
				monthly;
	Datum		v[5];
	char		n[5] = "     ";

	AuthCaller("set_customer_limits", &who);
	PgbRequireArgs(fcinfo, 2, names);
	customer = PG_GETARG_INT64(0);
	currency = TextDatumGetCString(PG_GETARG_DATUM(1));
	reason = PgbReasonArg(fcinfo, 4);
	EngineRequireReadCommitted();

	SPI_connect();
	exponent = MoneyExponent(currency);
	daily = LimitArg(fcinfo, 2, exponent);
	monthly = LimitArg(fcinfo, 3, exponent);
	v[0] = Int64GetDatum(customer);
	if (PgbExec(&q_customer_exists, v, NULL, false, 1) != 1)
		CustomerNotFound(customer);
	v[1] = EngineBpchar(currency);
	v[2] = Int64GetDatum(daily);
	v[3] = Int64GetDatum(monthly);
	n[2] = daily < 0 ? 'n' : ' ';
	n[3] = monthly < 0 ? 'n' : ' ';
	v[4] = Int32GetDatum(exponent);
	PgbExec(&q_set_limits, v, n, false, 0);
	PgbMaterialize(fcinfo);
	AuditWrite(&who, 0, "customer.limits", "customer", psprintf("%lld", (long long) customer),
			   psprintf("{\"currency\": %s, \"daily_limit\": %s, \"monthly_limit\": %s,"
						" \"reason\": %s}", AuditJsonString(currency), LimitJson(daily),
						LimitJson(monthly), AuditJsonString(reason)));
	SPI_finish();
	return (Datum) 0;
}

static PgbQuery q_customer_account = {
	"SELECT currency, status::text FROM bank.accounts WHERE id = $1 AND customer_id IS NOT NULL",
	1, {INT8OID}
};

/* the new limit, and the folded balance the lock fold requires us to write */
static PgbQuery q_set_overdraft = {
	"UPDATE bank.accounts SET overdraft_limit = $2, balance = $3 WHERE id = $1",
	3, {INT8OID, INT8OID, INT8OID}
};

PG_FUNCTION_INFO_V1(pgbank_set_overdraft_limit);
Datum
pgbank_set_overdraft_limit(PG_FUNCTION_ARGS)
{
	static const char *const names[] = {"account", "overdraft_limit"};
	Principal	who;
	int64		account;
	char	   *reason;
	char	   *currency;
	int64		limit;
	AccountState st;
	Datum		v[3];

	AuthCaller("set_overdraft_limit", &who);
	PgbRequireArgs(fcinfo, 2, names);
	account = PG_GETARG_INT64(0);
	reason = PgbReasonArg(fcinfo, 2);
	EngineRequireReadCommitted();

	SPI_connect();
	v[0] = Int64GetDatum(account);
	if (PgbExec(&q_customer_account, v, NULL, false, 1) != 1)
		AccountNotFound(account);
	currency = PgbGetText(0, 1);
	if (strcmp(PgbGetText(0, 2), "closed") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_ACCOUNT_CLOSED),
				 errmsg("account %lld is closed", (long long) account)));
	limit = LimitArg(fcinfo, 1, MoneyExponent(currency));

	/* under the lock every funds check takes: atomic with them */
	if (!EngineLockFold(account, 0, false, &st))
		AccountNotFound(account);
	if (st.posted < -limit || st.posted - st.pending_out < -limit)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_LIMIT_BELOW_BALANCE),
				 errmsg("account %lld is already below minus the new overdraft limit",
						(long long) account),
				 errhint("Bring the account back above it first.")));
	v[1] = Int64GetDatum(limit);
	v[2] = Int64GetDatum(st.posted);
	EngineExec(&q_set_overdraft, v, NULL);
	EngineMarkSettled(account);
	AuditWrite(&who, 0, "account.overdraft_limit", "account",
			   psprintf("%lld", (long long) account),
			   psprintf("{\"from\": %lld, \"to\": %lld, \"currency\": %s, \"reason\": %s}",
						(long long) st.overdraft, (long long) limit,
						AuditJsonString(currency), AuditJsonString(reason)));
	return AccountInfoDatum(fcinfo, account);
}

/*
 * Trigger on bank.risk_rules: a rule's amount must fit its currency's
 * exponent (PB006, as for any amount), and every change is audited with the
 * rule as JSON (row_to_json: names are admin-entered text).
 */
PG_FUNCTION_INFO_V1(pgbank_risk_rules_audit);
Datum
pgbank_risk_rules_audit(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	HeapTuple	tuple;
	const char *action;
	bool		isnull;
	Datum		json;
	Principal	who;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("bank.risk_rules_audit must be called as a trigger")));
	desc = RelationGetDescr(td->tg_relation);
	if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
	{
		tuple = td->tg_newtuple;
		action = "risk_rule.update";
	}
	else
	{
		tuple = td->tg_trigtuple;
		action = TRIGGER_FIRED_BY_INSERT(td->tg_event) ? "risk_rule.create" : "risk_rule.delete";
	}
	SPI_connect();
	if (!TRIGGER_FIRED_BY_DELETE(td->tg_event))
	{
		Datum		amount = heap_getattr(tuple, SPI_fnumber(desc, "amount"), desc, &isnull);
		char	   *currency = SPI_getvalue(tuple, desc, SPI_fnumber(desc, "currency"));

		if (!isnull && currency != NULL)
			(void) MoneyToMinor(DatumGetNumeric(amount), MoneyExponent(currency));
	}
	AuthCaller("risk_rules", &who);
	/* every backend rereads the rules (RiskRulesLoad) */
	CacheInvalidateRelcache(td->tg_relation);
	json = DirectFunctionCall1(row_to_json, heap_copy_tuple_as_datum(tuple, desc));
	AuditWrite(&who, 0, action, "risk_rule",
			   SPI_getvalue(tuple, desc, SPI_fnumber(desc, "id")),
			   psprintf("{\"rule\": %s}", TextDatumGetCString(json)));
	SPI_finish();
	return PointerGetDatum(NULL);
}
