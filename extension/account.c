/*-------------------------------------------------------------------------
 *
 * account.c
 *		The account API: customers, and opening, reading, renaming, freezing
 *		and closing accounts.
 *
 * Locks: open_account locks the customer row FOR NO KEY UPDATE to count the
 * open accounts (so concurrent opens cannot exceed the limit); freeze and
 * unfreeze lock the account FOR NO KEY UPDATE (they wait for an in-flight
 * debit); close_account locks it FOR UPDATE, which also waits for in-flight
 * lock-free credits (they hold FOR KEY SHARE), then folds and checks that
 * nothing is left.  Status changes never touch balances.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "pgbank.h"

/*
 * An account as the functions read it, with the amounts in minor units:
 * AccountInfoValues turns a row into bank.account_info.  The functions read
 * the table rather than the view bank.account_balances (the same figures, for
 * DBAs): an index scan of the account and one of its pending legs, and the
 * currency's exponent from the backend's cache instead of a join.
 */
#define ACCOUNT_ROW_SELECT \
	"SELECT a.id, a.number, a.customer_id, a.type, a.name, a.currency, a.status," \
	" a.balance + coalesce((SELECT sum(l.amount) FROM bank.pending_legs l" \
	"  WHERE l.account_id = a.id), 0)::bigint," \
	" a.pending_out, a.overdraft_limit, a.opened_at, a.closed_at FROM bank.accounts a"
#define ACCOUNT_ROW_COLUMNS 12
#define ACCOUNT_INFO_COLUMNS 13

static PgbQuery q_get_account = {
	ACCOUNT_ROW_SELECT " WHERE a.id = $1",
	1, {INT8OID}, NULL, true
};

/* is the account visible to the caller (row-level security)? */
static PgbQuery q_account_visible = {
	"SELECT 1 FROM bank.accounts WHERE id = $1",
	1, {INT8OID}, NULL, true
};

static PgbQuery q_kyc_status = {
	"SELECT kyc_status::text FROM bank.customers WHERE id = $1",
	1, {INT8OID}
};

static PgbQuery q_list_accounts = {
	ACCOUNT_ROW_SELECT
	" WHERE a.customer_id = $1 AND ($2::text IS NULL OR a.type::text = $2)"
	" AND a.id > coalesce($3, 0) ORDER BY a.id LIMIT $4",
	4, {INT8OID, TEXTOID, INT8OID, INT4OID}, NULL, true
};

static PgbQuery q_create_customer = {
	"INSERT INTO bank.customers (email, first_name, last_name) VALUES (lower($1), $2, $3)"
	" ON CONFLICT (email) DO NOTHING RETURNING id",
	3, {TEXTOID, TEXTOID, TEXTOID}
};

/*
 * Lock the customer, then count the open accounts in a statement of its own:
 * counted in the locking statement, the count would come from the snapshot
 * taken before waiting for the lock and miss an account opened meanwhile.
 */
static PgbQuery q_lock_customer = {
	"SELECT 1 FROM bank.customers WHERE id = $1 FOR NO KEY UPDATE",
	1, {INT8OID}
};
static PgbQuery q_open_accounts = {
	"SELECT count(*)::int4 FROM bank.accounts WHERE customer_id = $1 AND status <> 'closed'",
	1, {INT8OID}
};

static PgbQuery q_open_account = {
	"WITH n AS (SELECT nextval('bank.accounts_id_seq'::regclass) AS id)"
	" INSERT INTO bank.accounts (id, number, customer_id, type, name, currency)"
	" OVERRIDING SYSTEM VALUE"
	" SELECT n.id, lpad(n.id::text, 10, '0') || lpad((98 - (n.id * 100) % 97)::text, 2, '0'),"
	"  $1, $2::bank.account_type, $3, $4 FROM n"
	" RETURNING id",
	4, {INT8OID, TEXTOID, TEXTOID, BPCHAROID}
};

/*
 * close_account reads the posted balance (folded + pending legs) and whether
 * holds into the account are open in ONE statement, i.e. one snapshot: a
 * capture committing meanwhile is then seen either as an open hold or as its
 * credit leg, never as neither (a capture does not lock the credited account).
 */
static PgbQuery q_lock_account = {
	"SELECT status::text, balance + coalesce((SELECT sum(l.amount) FROM bank.pending_legs l"
	"                                         WHERE l.account_id = a.id), 0)::bigint,"
	" pending_out,"
	" EXISTS (SELECT 1 FROM bank.transfers t WHERE t.to_account = a.id AND t.status IN ('pending', 'held_for_review'))"
	" FROM bank.accounts a WHERE id = $1 AND customer_id IS NOT NULL FOR NO KEY UPDATE",
	1, {INT8OID}
};

static PgbQuery q_lock_account_for_close = {
	"SELECT status::text FROM bank.accounts WHERE id = $1 AND customer_id IS NOT NULL"
	" FOR UPDATE",
	1, {INT8OID}
};

static PgbQuery q_set_status = {
	"UPDATE bank.accounts SET status = $2::bank.account_status, status_reason = $3,"
	" closed_at = CASE WHEN $2 = 'closed' THEN now() END WHERE id = $1",
	3, {INT8OID, TEXTOID, TEXTOID}
};

static PgbQuery q_rename = {
	"UPDATE bank.accounts SET name = $2 WHERE id = $1 AND customer_id IS NOT NULL",
	2, {INT8OID, TEXTOID}
};

/* PB021: the one "customer does not exist" error of the extension */
void
CustomerNotFound(int64 id)
{
	ereport(ERROR,
			(errcode(ERRCODE_PGB_CUSTOMER_NOT_FOUND),
			 errmsg("customer %lld does not exist", (long long) id)));
}

/* PB009: the one "account does not exist" error of the extension */
void
AccountNotFound(int64 id)
{
	ereport(ERROR,
			(errcode(ERRCODE_PGB_ACCOUNT_NOT_FOUND),
			 errmsg("account %lld does not exist", (long long) id)));
}

/*
 * PB009 unless the caller may see the account.  Run as the caller, under
 * row-level security: a customer sees their own accounts only, so another
 * customer's account is "not found", exactly like one that does not exist.
 */
void
AccountRequireVisible(int64 id)
{
	Datum		arg = Int64GetDatum(id);

	if (PgbExec(&q_account_visible, &arg, NULL, true, 1) != 1)
		AccountNotFound(id);
}

/*
 * The customer a call is about: a customer acts for themselves only (another
 * id is "not found", PB021); staff must name one (PB022).
 */
int64
CustomerArg(const Principal *who, FunctionCallInfo fcinfo, int arg)
{
	if (who->kind == PRINCIPAL_CUSTOMER)
	{
		if (!PG_ARGISNULL(arg) && PG_GETARG_INT64(arg) != who->customer_id)
		{
			AuditDenied(who, get_func_name(fcinfo->flinfo->fn_oid), "PB021");
			CustomerNotFound(PG_GETARG_INT64(arg));
		}
		return who->customer_id;
	}
	if (PG_ARGISNULL(arg))
		ereport(ERROR,
				(errcode(ERRCODE_PGB_NULL_ARGUMENT), errmsg("customer_id must not be null")));
	return PG_GETARG_INT64(arg);
}

/*
 * Row `row` of rows (read with ACCOUNT_ROW_SELECT) as the values of a
 * bank.account_info: posted balance, reserved, available and overdraft limit
 * as exact numerics.  May run SPI (a currency the cache has not seen), so
 * rows must be the caller's own copy of the tuple table, not SPI_tuptable.
 */
static void
AccountInfoValues(SPITupleTable *rows, int row, Datum *values, bool *nulls)
{
	Datum		r[ACCOUNT_ROW_COLUMNS];
	bool		rn[ACCOUNT_ROW_COLUMNS];
	int			exponent;
	int64		posted;
	int64		pending_out;

	Assert(rows->tupdesc->natts == ACCOUNT_ROW_COLUMNS);
	heap_deform_tuple(rows->vals[row], rows->tupdesc, r, rn);
	exponent = MoneyExponent(TextDatumGetCString(r[5]));
	posted = DatumGetInt64(r[7]);
	pending_out = DatumGetInt64(r[8]);
	memcpy(values, r, 7 * sizeof(Datum));
	memcpy(nulls, rn, 7 * sizeof(bool));
	values[7] = MoneyDatum(posted, exponent);
	values[8] = MoneyDatum(pending_out, exponent);
	values[9] = MoneyDatum(posted - pending_out, exponent);
	values[10] = MoneyDatum(DatumGetInt64(r[9]), exponent);
	values[11] = r[10];
	values[12] = r[11];
	memset(nulls + 7, false, 4 * sizeof(bool));
	nulls[11] = rn[10];
	nulls[12] = rn[11];
}

/* an account as bank.account_info; disconnects from SPI */
Datum
AccountInfoDatum(FunctionCallInfo fcinfo, int64 account)
{
	Datum		arg = Int64GetDatum(account);
	Datum		values[ACCOUNT_INFO_COLUMNS];
	bool		nulls[ACCOUNT_INFO_COLUMNS];
	TupleDesc	tupdesc;

	if (PgbExec(&q_get_account, &arg, NULL, false, 1) != 1)
		AccountNotFound(account);
	AccountInfoValues(SPI_tuptable, 0, values, nulls);
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE ||
		tupdesc->natts != ACCOUNT_INFO_COLUMNS)
		elog(ERROR, "pgbank: function must return bank.account_info");
	tupdesc = BlessTupleDesc(tupdesc);
	return PgbFinishWithTuple(heap_form_tuple(tupdesc, values, nulls), tupdesc);
}

PG_FUNCTION_INFO_V1(pgbank_create_customer);
Datum
pgbank_create_customer(PG_FUNCTION_ARGS)
{
	char	   *email = TextDatumGetCString(PG_GETARG_DATUM(0));
	char	   *first = TextDatumGetCString(PG_GETARG_DATUM(1));
	char	   *last = TextDatumGetCString(PG_GETARG_DATUM(2));
	char	   *norm;
	Datum		v[3];
	int64		id;
	Principal	who;

	AuthCaller("create_customer", &who);

	/* trimmed and checked here; lower-cased in SQL (lower(), any script) */
	norm = CustomerCheckedEmail(email);
	PgbCheckLength("first_name", first, 1, 100);
	PgbCheckLength("last_name", last, 1, 100);

	SPI_connect();
	v[0] = CStringGetTextDatum(norm);
	v[1] = CStringGetTextDatum(first);
	v[2] = CStringGetTextDatum(last);
	if (PgbExec(&q_create_customer, v, NULL, false, 0) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_EMAIL_TAKEN),
				 errmsg("a customer with this email already exists")));
	id = PgbGetInt64(0, 1);
	AuditWrite(&who, 0, "customer.create", "customer", psprintf("%lld", (long long) id), NULL);
	SPI_finish();
	PG_RETURN_INT64(id);
}

PG_FUNCTION_INFO_V1(pgbank_open_account);
Datum
pgbank_open_account(PG_FUNCTION_ARGS)
{
	static const char *const names[] = {"type", "name", "currency"};
	char	   *type;
	char	   *name;
	char	   *currency;
	int64		customer;
	Datum		v[4];
	int64		id;
	Principal	who;

	PgbRequireArgs(fcinfo, 3, names);
	AuthCaller("open_account", &who);
	type = DatumGetCString(DirectFunctionCall1(enum_out, PG_GETARG_DATUM(0)));
	name = TextDatumGetCString(PG_GETARG_DATUM(1));
	currency = TextDatumGetCString(PG_GETARG_DATUM(2));
	customer = CustomerArg(&who, fcinfo, 3);
	if (strcmp(type, "checking") != 0 && strcmp(type, "savings") != 0 &&
		strcmp(type, "investment") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_ACCOUNT_TYPE),
				 errmsg("customers can open checking, savings or investment accounts, not %s", type)));
	PgbCheckLength("name", name, 1, 100);
	EngineRequireReadCommitted();

	SPI_connect();
	(void) MoneyExponent(currency);
	v[0] = Int64GetDatum(customer);
	if (PgbExec(&q_lock_customer, v, NULL, false, 1) != 1)
		CustomerNotFound(customer);
	PgbExec(&q_open_accounts, v, NULL, false, 1);
	if (DatumGetInt32(PgbGet(0, 1, &(bool) {false})) >= pgb_max_open_accounts)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_TOO_MANY_ACCOUNTS),
				 errmsg("customer %lld already has %d open accounts", (long long) customer,
						pgb_max_open_accounts),
				 errhint("Close an account first, or raise pgbank.max_open_accounts.")));
	if (strcmp(type, "investment") == 0)
	{
		PgbExec(&q_kyc_status, v, NULL, false, 1);
		if (strcmp(PgbGetText(0, 1), "approved") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_PGB_KYC_REQUIRED),
					 errmsg("an investment account needs an approved KYC review"),
					 errhint("Staff set the KYC status with bank.set_kyc_status().")));
	}
	v[1] = CStringGetTextDatum(type);
	v[2] = CStringGetTextDatum(name);
	v[3] = PG_GETARG_DATUM(2);
	PgbExec(&q_open_account, v, NULL, false, 0);
	id = PgbGetInt64(0, 1);
	AuditWrite(&who, 0, "account.open", "account", psprintf("%lld", (long long) id),
			   psprintf("{\"customer\": %lld, \"type\": \"%s\", \"currency\": \"%s\"}",
						(long long) customer, type, currency));
	return AccountInfoDatum(fcinfo, id);
}

PG_FUNCTION_INFO_V1(pgbank_get_account);
Datum
pgbank_get_account(PG_FUNCTION_ARGS)
{
	Principal	who;

	AuthCaller("get_account", &who);
	SPI_connect();
	return AccountInfoDatum(fcinfo, PG_GETARG_INT64(0));
}

PG_FUNCTION_INFO_V1(pgbank_list_accounts);
Datum
pgbank_list_accounts(PG_FUNCTION_ARGS)
{
	Datum		v[4];
	char		n[4] = "    ";
	int32		limit = PG_ARGISNULL(3) ? 50 : PG_GETARG_INT32(3);
	Principal	who;
	SPITupleTable *rows;
	ReturnSetInfo *rsinfo;
	uint64		i;

	AuthCaller("list_accounts", &who);
	v[0] = Int64GetDatum(CustomerArg(&who, fcinfo, 0));
	PgbCheckPageSize("limit", limit);
	if (PG_ARGISNULL(1))
		n[1] = 'n';
	else
		v[1] = CStringGetTextDatum(DatumGetCString(DirectFunctionCall1(enum_out,
																	   PG_GETARG_DATUM(1))));
	if (PG_ARGISNULL(2))
		n[2] = 'n';
	else
		v[2] = PG_GETARG_DATUM(2);
	v[3] = Int32GetDatum(limit);
	SPI_connect();
	PgbExec(&q_list_accounts, v, n, true, 0);
	rows = SPI_tuptable;
	InitMaterializedSRF(fcinfo, 0);
	rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	if (rsinfo->setDesc->natts != ACCOUNT_INFO_COLUMNS)
		elog(ERROR, "pgbank: function must return bank.account_info");
	for (i = 0; i < rows->numvals; i++)
	{
		Datum		values[ACCOUNT_INFO_COLUMNS];
		bool		nulls[ACCOUNT_INFO_COLUMNS];

		AccountInfoValues(rows, i, values, nulls);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	SPI_finish();
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(pgbank_rename_account);
Datum
pgbank_rename_account(PG_FUNCTION_ARGS)
{
	int64		id = PG_GETARG_INT64(0);
	char	   *name = TextDatumGetCString(PG_GETARG_DATUM(1));
	Datum		v[2];
	Principal	who;

	PgbCheckLength("name", name, 1, 100);
	AuthCaller("rename_account", &who);
	EngineRequireReadCommitted();
	SPI_connect();
	if (who.kind == PRINCIPAL_CUSTOMER)
		AccountRequireVisible(id);
	v[0] = Int64GetDatum(id);
	if (PgbExec(&q_lock_account, v, NULL, false, 1) != 1)
		AccountNotFound(id);
	if (strcmp(PgbGetText(0, 1), "closed") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_ACCOUNT_CLOSED),
				 errmsg("account %lld is closed", (long long) id)));
	v[1] = CStringGetTextDatum(name);
	PgbExec(&q_rename, v, NULL, false, 0);
	AuditWrite(&who, 0, "account.rename", "account", psprintf("%lld", (long long) id), NULL);
	return AccountInfoDatum(fcinfo, id);
}

/* freeze (to = "frozen") or unfreeze (to = "active") */
static Datum
SetFrozen(FunctionCallInfo fcinfo, const char *to)
{
	int64		id = PG_GETARG_INT64(0);
	char	   *reason = TextDatumGetCString(PG_GETARG_DATUM(1));
	char	   *status;
	Datum		v[3];
	Principal	who;

	PgbCheckLength("reason", reason, 1, PGB_MAX_TEXT_CHARS);
	AuthCaller(strcmp(to, "frozen") == 0 ? "freeze_account" : "unfreeze_account", &who);
	EngineRequireReadCommitted();
	SPI_connect();
	v[0] = Int64GetDatum(id);
	if (PgbExec(&q_lock_account, v, NULL, false, 1) != 1)
		AccountNotFound(id);
	status = PgbGetText(0, 1);
	if (strcmp(status, "closed") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_ACCOUNT_CLOSED),
				 errmsg("account %lld is closed", (long long) id)));
	if (strcmp(status, to) != 0)
	{
		v[1] = CStringGetTextDatum(to);
		v[2] = CStringGetTextDatum(reason);
		EngineExec(&q_set_status, v, NULL);
		AuditWrite(&who, 0, strcmp(to, "frozen") == 0 ? "account.freeze" : "account.unfreeze",
				   "account", psprintf("%lld", (long long) id), NULL);
	}
	return AccountInfoDatum(fcinfo, id);
}

PG_FUNCTION_INFO_V1(pgbank_freeze_account);
Datum
pgbank_freeze_account(PG_FUNCTION_ARGS)
{
	return SetFrozen(fcinfo, "frozen");
}

PG_FUNCTION_INFO_V1(pgbank_unfreeze_account);
Datum
pgbank_unfreeze_account(PG_FUNCTION_ARGS)
{
	return SetFrozen(fcinfo, "active");
}

PG_FUNCTION_INFO_V1(pgbank_close_account);
Datum
pgbank_close_account(PG_FUNCTION_ARGS)
{
	int64		id = PG_GETARG_INT64(0);
	Datum		v[3];
	char		n[3] = "  n";
	Principal	who;

	AuthCaller("close_account", &who);
	EngineRequireReadCommitted();
	SPI_connect();
	if (who.kind == PRINCIPAL_CUSTOMER)
		AccountRequireVisible(id);
	v[0] = Int64GetDatum(id);
	/* FOR UPDATE: wait for in-flight credits, which hold FOR KEY SHARE */
	if (PgbExec(&q_lock_account_for_close, v, NULL, false, 1) != 1)
		AccountNotFound(id);
	if (strcmp(PgbGetText(0, 1), "closed") == 0)
		return AccountInfoDatum(fcinfo, id);
	(void) EngineFold(id, false);
	PgbExec(&q_lock_account, v, NULL, false, 1);
	if (PgbGetInt64(0, 2) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_ACCOUNT_NOT_EMPTY),
				 errmsg("account %lld has a non-zero balance", (long long) id),
				 errhint("Move the balance out before closing the account.")));
	if (PgbGetInt64(0, 3) != 0 || DatumGetBool(PgbGet(0, 4, &(bool) {false})))
		ereport(ERROR,
				(errcode(ERRCODE_PGB_OPEN_HOLDS),
				 errmsg("account %lld has open holds", (long long) id),
				 errhint("Capture or void them before closing the account.")));
	v[1] = CStringGetTextDatum("closed");
	EngineExec(&q_set_status, v, n);
	AuditWrite(&who, 0, "account.close", "account", psprintf("%lld", (long long) id), NULL);
	return AccountInfoDatum(fcinfo, id);
}

/* 12 digits, the last two the ISO 7064 MOD 97-10 check digits of the rest */
PG_FUNCTION_INFO_V1(pgbank_account_number_valid);
Datum
pgbank_account_number_valid(PG_FUNCTION_ARGS)
{
	char	   *s = TextDatumGetCString(PG_GETARG_DATUM(0));
	int			i,
				rem = 0;

	if (strlen(s) != 12)
		PG_RETURN_BOOL(false);
	for (i = 0; i < 12; i++)
	{
		if (s[i] < '0' || s[i] > '9')
			PG_RETURN_BOOL(false);
		rem = (rem * 10 + (s[i] - '0')) % 97;
	}
	PG_RETURN_BOOL(rem == 1);
}
