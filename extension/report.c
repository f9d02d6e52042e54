/*-------------------------------------------------------------------------
 *
 * report.c
 *		Reads: balance (now or as of a time), entries, statement (of a period
 *		or of a calendar month), trial_balance (now or at the end of a day),
 *		check_ledger.
 *
 * Every read is one SQL statement, so it sees one snapshot: a transfer is
 * either wholly in it or wholly out of it (no torn reads), even while legs
 * are being folded.  A leg's time is when its transfer posted, whether it is
 * folded yet or not, so a balance as of a past time never changes.
 * Nothing here takes a row lock.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/date.h"

#include "pgbank.h"

static PgbQuery q_balance_now = {
	"SELECT a.currency,"
	" bank.minor_to_amount(p.posted, c.exponent),"
	" bank.minor_to_amount(a.pending_out, c.exponent),"
	" bank.minor_to_amount(coalesce((SELECT sum(t.amount) FROM bank.transfers t"
	"   WHERE t.to_account = a.id AND t.status IN ('pending', 'held_for_review')), 0)::bigint, c.exponent),"
	" bank.minor_to_amount(p.posted - a.pending_out, c.exponent),"
	" now()"
	" FROM bank.accounts a JOIN bank.currencies c ON c.code = a.currency,"
	" LATERAL (SELECT a.balance + coalesce((SELECT sum(l.amount) FROM bank.pending_legs l"
	"          WHERE l.account_id = a.id), 0)::bigint AS posted) p"
	" WHERE a.id = $1",
	1, {INT8OID}, NULL, true
};

/* holds count as pending from creation until resolved */
static PgbQuery q_balance_as_of = {
	"SELECT a.currency,"
	" bank.minor_to_amount(p.posted, c.exponent),"
	" bank.minor_to_amount(h.out_, c.exponent),"
	" bank.minor_to_amount(h.in_, c.exponent),"
	" bank.minor_to_amount(p.posted - h.out_, c.exponent),"
	" $2"
	" FROM bank.accounts a JOIN bank.currencies c ON c.code = a.currency,"
	" LATERAL (SELECT (coalesce((SELECT sum(e.amount) FROM bank.entries e"
	"                   WHERE e.account_id = a.id AND e.posted_at <= $2), 0)"
	"        + coalesce((SELECT sum(l.amount) FROM bank.pending_legs l"
	"                   WHERE l.account_id = a.id AND l.posted_at <= $2), 0))::bigint AS posted) p,"
	" LATERAL (SELECT"
	"   coalesce(sum(t.amount) FILTER (WHERE t.from_account = a.id), 0)::bigint AS out_,"
	"   coalesce(sum(t.amount) FILTER (WHERE t.to_account = a.id), 0)::bigint AS in_"
	"   FROM bank.transfers t"
	"   WHERE (t.from_account = a.id OR t.to_account = a.id) AND t.expires_at IS NOT NULL"
	"   AND t.status <> 'failed' AND t.created_at <= $2"
	"   AND (t.resolved_at IS NULL OR t.resolved_at > $2)) h"
	" WHERE a.id = $1",
	2, {INT8OID, TIMESTAMPTZOID}, NULL, true
};

static PgbQuery q_entries = {
	"SELECT e.id, e.transfer_id, t.kind, bank.minor_to_amount(e.amount, c.exponent),"
	" bank.minor_to_amount(e.balance_after, c.exponent), e.posted_at,"
	" CASE WHEN e.amount < 0 THEN t.to_account ELSE t.from_account END, t.description, e.id"
	" FROM bank.entries e JOIN bank.transfers t ON t.id = e.transfer_id"
	" JOIN bank.currencies c ON c.code = e.currency"
	" WHERE e.account_id = $1 AND e.id > $2 ORDER BY e.id LIMIT $3",
	3, {INT8OID, INT8OID, INT4OID}, NULL, true
};

/* pending legs after the last entry, with provisional running balances */
static PgbQuery q_pending_entries = {
	"SELECT NULL::bigint, x.transfer_id, t.kind, bank.minor_to_amount(x.amount, c.exponent),"
	" bank.minor_to_amount(x.running, c.exponent), x.posted_at,"
	" CASE WHEN x.amount < 0 THEN t.to_account ELSE t.from_account END, t.description, -x.id"
	" FROM (SELECT l.id, l.transfer_id, l.amount, l.posted_at, l.currency,"
	"        (a.balance + sum(l.amount) OVER (ORDER BY l.id))::bigint AS running"
	"       FROM bank.pending_legs l JOIN bank.accounts a ON a.id = l.account_id"
	"       WHERE l.account_id = $1) x"
	" JOIN bank.transfers t ON t.id = x.transfer_id"
	" JOIN bank.currencies c ON c.code = x.currency"
	" WHERE x.id > $3 ORDER BY x.id LIMIT $2",
	3, {INT8OID, INT4OID, INT8OID}, NULL, true
};

static PgbQuery q_account_exists = {
	"SELECT 1 FROM bank.accounts WHERE id = $1",
	1, {INT8OID}, NULL, true
};

static PgbQuery q_statement = {
	"WITH legs AS ("
	"  SELECT e.id AS entry_id, e.transfer_id, e.amount, e.posted_at, 0 AS src, e.id AS ord"
	"    FROM bank.entries e WHERE e.account_id = $1 AND e.posted_at < $3"
	"  UNION ALL"
	"  SELECT NULL, l.transfer_id, l.amount, l.posted_at, 1, l.id"
	"    FROM bank.pending_legs l WHERE l.account_id = $1 AND l.posted_at < $3),"
	" opening AS (SELECT coalesce(sum(amount), 0)::bigint AS bal FROM legs WHERE posted_at < $2),"
	" period AS ("
	"  SELECT legs.*, (SELECT bal FROM opening)"
	"         + sum(amount) OVER (ORDER BY posted_at, src, ord) AS running"
	"    FROM legs WHERE posted_at >= $2),"
	" x AS (SELECT exponent FROM bank.currencies c JOIN bank.accounts a ON a.currency = c.code"
	"       WHERE a.id = $1)"
	" SELECT line, posted_at, entry_id, transfer_id, kind, description, amount, balance FROM ("
	"  SELECT 0 AS k, NULL::timestamptz AS s1, 0 AS s2, 0::bigint AS s3, 'opening'::text AS line,"
	"   $2 AS posted_at, NULL::bigint AS entry_id, NULL::bigint AS transfer_id,"
	"   NULL::bank.transfer_kind AS kind, NULL::text AS description, NULL::numeric AS amount,"
	"   bank.minor_to_amount((SELECT bal FROM opening), x.exponent) AS balance FROM x"
	"  UNION ALL"
	"  SELECT 1, p.posted_at, p.src, p.ord, 'entry', p.posted_at, p.entry_id, p.transfer_id,"
	"   t.kind, t.description, bank.minor_to_amount(p.amount, x.exponent),"
	"   bank.minor_to_amount(p.running::bigint, x.exponent)"
	"   FROM period p JOIN bank.transfers t ON t.id = p.transfer_id, x"
	"  UNION ALL"
	"  SELECT 2, NULL, 0, 0, 'closing', $3, NULL, NULL, NULL, NULL, NULL,"
	"   bank.minor_to_amount(((SELECT bal FROM opening)"
	"     + coalesce((SELECT sum(amount) FROM period), 0))::bigint, x.exponent) FROM x"
	" ) s ORDER BY k, s1, s2, s3",
	3, {INT8OID, TIMESTAMPTZOID, TIMESTAMPTZOID}, NULL, true
};

/*
 * The trial balance over b (currency, type, bal: each account's posted
 * balance), the same now and as of the end of a day.
 */
#define TRIAL_BALANCE_SQL(balances) \
	"WITH b AS (" balances ")" \
	" SELECT b.currency, b.type, count(*)," \
	"  bank.minor_to_amount(sum(CASE WHEN bal < 0 THEN -bal ELSE 0 END)::bigint, c.exponent)," \
	"  bank.minor_to_amount(sum(CASE WHEN bal > 0 THEN bal ELSE 0 END)::bigint, c.exponent)" \
	"  FROM b JOIN bank.currencies c ON c.code = b.currency" \
	" GROUP BY GROUPING SETS ((b.currency, c.exponent, b.type), (b.currency, c.exponent))" \
	" HAVING sum(abs(bal)) <> 0" \
	" ORDER BY b.currency, b.type NULLS LAST"

static PgbQuery q_trial_balance = {
	TRIAL_BALANCE_SQL(
					  "  SELECT a.currency, a.type, (a.balance + coalesce(l.s, 0))::numeric AS bal"
					  "    FROM bank.accounts a"
					  "    LEFT JOIN (SELECT account_id, sum(amount) AS s FROM bank.pending_legs"
					  "               GROUP BY account_id) l ON l.account_id = a.id"),
	0, {}
};

/* $1 a day, $2 the business time zone: the legs posted before the day ended */
static PgbQuery q_trial_balance_at = {
	TRIAL_BALANCE_SQL(
					  "  SELECT a.currency, a.type, (coalesce(e.s, 0) + coalesce(l.s, 0))::numeric AS bal"
					  "    FROM bank.accounts a"
					  "    LEFT JOIN (SELECT account_id, sum(amount) AS s FROM bank.entries"
					  "               WHERE posted_at < (($1 + 1)::timestamp AT TIME ZONE $2)"
					  "               GROUP BY account_id) e ON e.account_id = a.id"
					  "    LEFT JOIN (SELECT account_id, sum(amount) AS s FROM bank.pending_legs"
					  "               WHERE posted_at < (($1 + 1)::timestamp AT TIME ZONE $2)"
					  "               GROUP BY account_id) l ON l.account_id = a.id"),
	2, {DATEOID, TEXTOID}
};

/* $1 a date, $2 the business time zone: its month's first and next month's first instant */
static PgbQuery q_month_bounds = {
	"SELECT date_trunc('month', $1::timestamp) AT TIME ZONE $2,"
	" (date_trunc('month', $1::timestamp) + interval '1 month') AT TIME ZONE $2",
	2, {DATEOID, TEXTOID}
};

/* the interest and fee totals of [from, to), as statement lines */
static PgbQuery q_statement_totals = {
	"WITH legs AS ("
	"  SELECT e.transfer_id, e.amount FROM bank.entries e"
	"   WHERE e.account_id = $1 AND e.posted_at >= $2 AND e.posted_at < $3"
	"  UNION ALL"
	"  SELECT l.transfer_id, l.amount FROM bank.pending_legs l"
	"   WHERE l.account_id = $1 AND l.posted_at >= $2 AND l.posted_at < $3),"
	" x AS (SELECT exponent FROM bank.currencies c JOIN bank.accounts a ON a.currency = c.code"
	"       WHERE a.id = $1)"
	" SELECT k.line, NULL::timestamptz, NULL::bigint, NULL::bigint, k.kind, NULL::text,"
	"  bank.minor_to_amount(coalesce((SELECT sum(legs.amount) FROM legs"
	"   JOIN bank.transfers t ON t.id = legs.transfer_id WHERE t.kind = k.kind), 0)::bigint,"
	"   x.exponent), NULL::numeric"
	" FROM x, (VALUES (1, 'interest', 'interest'::bank.transfer_kind),"
	"                 (2, 'fees', 'fee'::bank.transfer_kind)) k(n, line, kind)"
	" ORDER BY k.n",
	3, {INT8OID, TIMESTAMPTZOID, TIMESTAMPTZOID}, NULL, true
};

/*
 * Every violated invariant.  Each branch is one invariant; all read one
 * snapshot.
 */
static PgbQuery q_check_ledger = {
	"WITH legs AS ("
	"  SELECT account_id, transfer_id, currency, amount FROM bank.entries"
	"  UNION ALL SELECT account_id, transfer_id, currency, amount FROM bank.pending_legs),"
	" posted AS ("
	"  SELECT a.id, a.currency, a.type, a.customer_id, a.status, a.overdraft_limit,"
	"   a.pending_out, a.balance,"
	"   (a.balance + coalesce((SELECT sum(l.amount) FROM bank.pending_legs l"
	"     WHERE l.account_id = a.id), 0))::numeric AS posted"
	"  FROM bank.accounts a)"
	" SELECT 'balance_mismatch', 'account ' || a.id,"
	"  format('folded balance %s, sum of entries %s', a.balance, coalesce(s.sum, 0))"
	"  FROM bank.accounts a LEFT JOIN (SELECT account_id, sum(amount) FROM bank.entries"
	"   GROUP BY account_id) s ON s.account_id = a.id"
	"  WHERE a.balance <> coalesce(s.sum, 0)"
	" UNION ALL"
	" SELECT 'running_balance', 'entry ' || id,"
	"  format('balance_after %s, running sum %s', balance_after, running)"
	"  FROM (SELECT id, balance_after,"
	"   sum(amount) OVER (PARTITION BY account_id ORDER BY id) AS running"
	"   FROM bank.entries) e WHERE balance_after <> running"
	" UNION ALL"
	" SELECT 'transfer_unbalanced', 'transfer ' || transfer_id,"
	"  format('legs sum to %s', sum(amount))"
	"  FROM legs GROUP BY transfer_id HAVING sum(amount) <> 0"
	" UNION ALL"
	" SELECT 'transfer_legs', 'transfer ' || g.id,"
	"  format('status %s, amount %s, legs %s', g.status, g.posted_amount,"
	"   coalesce((SELECT string_agg(l.account_id || ':' || l.amount || ' ' || l.currency, ', '"
	"             ORDER BY l.amount) FROM legs l WHERE l.transfer_id = g.id), 'none'))"
	"  FROM (SELECT t.id, t.status, t.posted_amount, count(l.transfer_id) AS n,"
	"         count(*) FILTER (WHERE l.account_id = t.from_account AND l.amount = -t.posted_amount"
	"                          AND l.currency = t.currency) AS debit,"
	"         count(*) FILTER (WHERE l.account_id = t.to_account AND l.amount = t.posted_amount"
	"                          AND l.currency = t.currency) AS credit"
	"        FROM bank.transfers t LEFT JOIN legs l ON l.transfer_id = t.id"
	"        GROUP BY t.id) g"
	"  WHERE CASE WHEN g.status IN ('posted', 'reversed')"
	"   THEN (g.debit, g.credit, g.n) <> (1, 1, 2) ELSE g.n <> 0 END"
	" UNION ALL"
	" SELECT 'transfer_accounts', 'transfer ' || t.id,"
	"  format('from %s (%s), to %s (%s), transfer in %s', t.from_account,"
	"   coalesce(f.currency, 'missing'), t.to_account, coalesce(o.currency, 'missing'), t.currency)"
	"  FROM bank.transfers t LEFT JOIN bank.accounts f ON f.id = t.from_account"
	"  LEFT JOIN bank.accounts o ON o.id = t.to_account"
	"  WHERE f.currency IS DISTINCT FROM t.currency OR o.currency IS DISTINCT FROM t.currency"
	" UNION ALL"
	" SELECT 'currency_unbalanced', 'currency ' || currency,"
	"  format('balances sum to %s minor units', sum(posted))"
	"  FROM posted GROUP BY currency HAVING sum(posted) <> 0"
	" UNION ALL"
	" SELECT 'pending_mismatch', 'account ' || p.id,"
	"  format('pending_out %s, open holds %s', p.pending_out, coalesce(h.sum, 0))"
	"  FROM posted p LEFT JOIN (SELECT from_account, sum(amount) FROM bank.transfers"
	"   WHERE status IN ('pending', 'held_for_review') GROUP BY from_account) h ON h.from_account = p.id"
	"  WHERE p.pending_out <> coalesce(h.sum, 0)"
	" UNION ALL"
	" SELECT 'overdraft_exceeded', 'account ' || id,"
	"  format('posted %s, reserved %s, overdraft limit %s', posted, pending_out, overdraft_limit)"
	"  FROM posted WHERE customer_id IS NOT NULL"
	"  AND (posted < -overdraft_limit OR posted - pending_out < -overdraft_limit)"
	" UNION ALL"
	" SELECT 'currency_mismatch', 'transfer ' || l.transfer_id,"
	"  format('leg on account %s in %s, account in %s, transfer in %s',"
	"   l.account_id, l.currency, a.currency, t.currency)"
	"  FROM legs l JOIN bank.accounts a ON a.id = l.account_id"
	"  JOIN bank.transfers t ON t.id = l.transfer_id"
	"  WHERE l.currency <> a.currency OR l.currency <> t.currency"
	" UNION ALL"
	" SELECT 'closed_not_empty', 'account ' || id,"
	"  format('closed with posted balance %s and %s reserved', posted, pending_out)"
	"  FROM posted WHERE status = 'closed' AND (posted <> 0 OR pending_out <> 0)"
	" ORDER BY 1, 2",
	0, {}
};

static void
RequireAccount(int64 account)
{
	Datum		arg = Int64GetDatum(account);

	if (PgbExec(&q_account_exists, &arg, NULL, true, 1) != 1)
		AccountNotFound(account);
}

PG_FUNCTION_INFO_V1(pgbank_balance);
Datum
pgbank_balance(PG_FUNCTION_ARGS)
{
	Datum		v[2];
	int64		account;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_PGB_NULL_ARGUMENT), errmsg("account must not be null")));
	account = PG_GETARG_INT64(0);
	v[0] = Int64GetDatum(account);
	AuthCaller("balance", &(Principal) {0});
	SPI_connect();
	if (PG_ARGISNULL(1))
		PgbExec(&q_balance_now, v, NULL, true, 1);
	else
	{
		v[1] = PG_GETARG_DATUM(1);
		PgbExec(&q_balance_as_of, v, NULL, true, 1);
	}
	if (SPI_processed != 1)
		AccountNotFound(account);
	return PgbReturnRow(fcinfo);
}

PG_FUNCTION_INFO_V1(pgbank_entries);
Datum
pgbank_entries(PG_FUNCTION_ARGS)
{
	Datum		v[3];
	char		n[3] = "   ";
	int32		limit = PG_ARGISNULL(2) ? 100 : PG_GETARG_INT32(2);
	int64		after = PG_ARGISNULL(1) ? 0 : PG_GETARG_INT64(1);
	int			got = 0;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_PGB_NULL_ARGUMENT), errmsg("account must not be null")));
	PgbCheckPageSize("limit", limit);
	v[0] = PG_GETARG_DATUM(0);
	AuthCaller("entries", &(Principal) {0});
	SPI_connect();
	RequireAccount(DatumGetInt64(v[0]));
	InitMaterializedSRF(fcinfo, 0);
	/* a cursor >= 0 is an entry id; < 0 is minus a pending leg's id */
	if (after >= 0)
	{
		v[1] = Int64GetDatum(after);
		v[2] = Int32GetDatum(limit);
		got = PgbExec(&q_entries, v, n, true, 0);
		PgbMaterialize(fcinfo);
	}
	if (got < limit)
	{
		v[1] = Int32GetDatum(limit - got);
		v[2] = Int64GetDatum(after < 0 ? -after : 0);
		PgbExec(&q_pending_entries, v, NULL, true, 0);
		PgbMaterialize(fcinfo);
	}
	SPI_finish();
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(pgbank_statement);
Datum
pgbank_statement(PG_FUNCTION_ARGS)
{
	Datum		v[3];

	v[0] = PG_GETARG_DATUM(0);
	v[1] = PG_GETARG_DATUM(1);
	v[2] = PG_GETARG_DATUM(2);
	if (DatumGetTimestampTz(v[1]) >= DatumGetTimestampTz(v[2]))
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_ARGUMENT),
				 errmsg("the statement period must end after it starts")));
	AuthCaller("statement", &(Principal) {0});
	SPI_connect();
	RequireAccount(DatumGetInt64(v[0]));
	PgbExec(&q_statement, v, NULL, true, 0);
	PgbMaterialize(fcinfo);
	SPI_finish();
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(pgbank_trial_balance);
Datum
pgbank_trial_balance(PG_FUNCTION_ARGS)
{
	AuthCaller("trial_balance", &(Principal) {0});
	SPI_connect();
	PgbExec(&q_trial_balance, NULL, NULL, true, 0);
	PgbMaterialize(fcinfo);
	SPI_finish();
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(pgbank_daily_trial_balance);
Datum
pgbank_daily_trial_balance(PG_FUNCTION_ARGS)
{
	Datum		v[2];

	v[0] = PG_GETARG_DATUM(0);
	v[1] = ProductBusinessTimezone();
	AuthCaller("daily_trial_balance", &(Principal) {0});
	SPI_connect();
	PgbExec(&q_trial_balance_at, v, NULL, true, 0);
	PgbMaterialize(fcinfo);
	SPI_finish();
	return (Datum) 0;
}

/*
 * The statement of a calendar month: bank.statement's lines for the month,
 * then the interest and fee totals, all from one snapshot (read-only SPI
 * reuses the caller's).
 */
PG_FUNCTION_INFO_V1(pgbank_monthly_statement);
Datum
pgbank_monthly_statement(PG_FUNCTION_ARGS)
{
	Datum		v[3];
	static const char *const names[] = {"account", "month"};

	PgbRequireArgs(fcinfo, 2, names);
	if (DATE_NOT_FINITE(PG_GETARG_DATEADT(1)))
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_ARGUMENT), errmsg("month must be a finite date")));
	AuthCaller("monthly_statement", &(Principal) {0});
	SPI_connect();
	RequireAccount(PG_GETARG_INT64(0));
	v[0] = PG_GETARG_DATUM(1);
	v[1] = ProductBusinessTimezone();
	PgbExec(&q_month_bounds, v, NULL, true, 1);
	v[0] = PG_GETARG_DATUM(0);
	v[1] = PgbGet(0, 1, &(bool) {false});
	v[2] = PgbGet(0, 2, &(bool) {false});
	PgbExec(&q_statement, v, NULL, true, 0);
	PgbMaterialize(fcinfo);
	PgbExec(&q_statement_totals, v, NULL, true, 0);
	PgbMaterialize(fcinfo);
	SPI_finish();
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(pgbank_check_ledger);
Datum
pgbank_check_ledger(PG_FUNCTION_ARGS)
{
	AuthCaller("check_ledger", &(Principal) {0});
	SPI_connect();
	PgbExec(&q_check_ledger, NULL, NULL, true, 0);
	PgbMaterialize(fcinfo);
	SPI_finish();
	return (Datum) 0;
}
