/*-------------------------------------------------------------------------
 *
 * money.c
 *		Exact amounts: numeric at the interface, bigint minor units inside.
 *
 * Invariants: no floating point anywhere; an amount converts to minor units
 * only if it is finite, positive, has no more fraction digits than the
 * currency's exponent allows (trailing zeros are not digits: 10.500 is 10.50)
 * and fits in a bigint.  Anything else is an error naming what is wrong.
 * Conversion works on the digits of the normalised decimal text, so it is
 * exact for any numeric.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/int.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "pgbank.h"

typedef struct CurrencyEntry
{
	char		code[4];		/* hash key */
	int			exponent;
	int64		settlement;		/* the currency's settlement account */
} CurrencyEntry;

static HTAB *currency_cache = NULL;

static PgbQuery q_currency = {
	"SELECT c.exponent::int4, s.id FROM bank.currencies c"
	" LEFT JOIN bank.accounts s ON s.currency = c.code AND s.type = 'settlement'"
	"  AND s.customer_id IS NULL"
	" WHERE c.code = $1",
	1, {BPCHAROID}
};

/*
 * What pgbank needs to know of an ISO 4217 currency (PB008 when unknown),
 * cached for the backend's life: a currency's exponent never changes once
 * money exists in it, and system accounts are never replaced.  Must be called
 * inside an SPI connection.
 */
static CurrencyEntry *
CurrencyLookup(const char *currency)
{
	CurrencyEntry *entry;
	char		code[4] = {0};
	bool		found;
	Datum		arg;

	if (currency == NULL || strlen(currency) != 3)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_UNKNOWN_CURRENCY),
				 errmsg("unknown currency \"%s\"", currency ? currency : ""),
				 errhint("Use an ISO 4217 code such as USD, EUR or JPY.")));
	memcpy(code, currency, 3);

	if (currency_cache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = 4;
		ctl.entrysize = sizeof(CurrencyEntry);
		ctl.hcxt = TopMemoryContext;
		currency_cache = hash_create("pgbank currencies", 256, &ctl,
									 HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	entry = hash_search(currency_cache, code, HASH_FIND, NULL);
	if (entry)
		return entry;

	arg = DirectFunctionCall3(bpcharin, CStringGetDatum(code),
							  ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
	if (PgbExec(&q_currency, &arg, NULL, true, 1) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_UNKNOWN_CURRENCY),
				 errmsg("unknown currency \"%s\"", code),
				 errhint("Use an ISO 4217 code such as USD, EUR or JPY.")));
	entry = hash_search(currency_cache, code, HASH_ENTER, &found);
	entry->exponent = DatumGetInt32(PgbGet(0, 1, &found));
	entry->settlement = PgbGetInt64(0, 2);
	return entry;
}

/* the exponent of a currency's minor unit (JPY 0, USD 2, BHD 3) */
int
MoneyExponent(const char *currency)
{
	return CurrencyLookup(currency)->exponent;
}

/* the settlement account of a currency: the outside world's side of money */
int64
MoneySettlementAccount(const char *currency)
{
	int64		id = CurrencyLookup(currency)->settlement;

	if (id == 0)
		elog(ERROR, "pgbank: no settlement account for currency %.3s", currency);
	return id;
}

/* a positive amount in minor units of a currency with the given exponent */
int64
MoneyToMinor(Numeric amount, int exponent)
{
	char	   *text;
	const char *p;
	int64		result = 0;
	int			frac_digits = 0;
	bool		in_frac = false;

	if (numeric_is_nan(amount) || numeric_is_inf(amount))
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_AMOUNT),
				 errmsg("amount must be a finite number")));

	text = numeric_normalize(amount);
	if (text[0] == '-' || strcmp(text, "0") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_AMOUNT),
				 errmsg("amount must be positive"),
				 errdetail("The amount was %s.", text)));

	for (p = text; *p; p++)
	{
		if (*p == '.')
		{
			in_frac = true;
			continue;
		}
		if (*p < '0' || *p > '9')
			elog(ERROR, "pgbank: unexpected character in normalised numeric \"%s\"", text);
		if (in_frac && ++frac_digits > exponent)
			ereport(ERROR,
					(errcode(ERRCODE_PGB_INVALID_AMOUNT),
					 errmsg("amount has more fraction digits than the currency allows"),
					 errdetail("The amount was %s; the currency has %d fraction digits.",
							   text, exponent)));
		if (pg_mul_s64_overflow(result, 10, &result) ||
			pg_add_s64_overflow(result, *p - '0', &result))
			goto overflow;
	}
	for (; frac_digits < exponent; frac_digits++)
		if (pg_mul_s64_overflow(result, 10, &result))
			goto overflow;
	if (result > PGB_MAX_AMOUNT)
		goto overflow;
	pfree(text);
	return result;

overflow:
	ereport(ERROR,
			(errcode(ERRCODE_PGB_AMOUNT_OUT_OF_RANGE),
			 errmsg("amount is out of range"),
			 errdetail("An amount must be at most 10^15 minor units of its currency.")));
	pg_unreachable();
}

/* minor units as an exact numeric whose scale is the exponent */
Numeric
MoneyFromMinor(int64 minor, int exponent)
{
	return int64_div_fast_to_numeric(minor, exponent);
}

Datum
MoneyDatum(int64 minor, int exponent)
{
	return NumericGetDatum(MoneyFromMinor(minor, exponent));
}

PG_FUNCTION_INFO_V1(pgbank_minor_to_amount);
Datum
pgbank_minor_to_amount(PG_FUNCTION_ARGS)
{
	int32		exponent = PG_GETARG_INT32(1);

	if (exponent < 0 || exponent > 4)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_ARGUMENT),
				 errmsg("exponent must be between 0 and 4")));
	PG_RETURN_NUMERIC(MoneyFromMinor(PG_GETARG_INT64(0), exponent));
}

PG_FUNCTION_INFO_V1(pgbank_amount_to_minor);
Datum
pgbank_amount_to_minor(PG_FUNCTION_ARGS)
{
	Numeric		amount = PG_GETARG_NUMERIC(0);
	char	   *currency = TextDatumGetCString(PG_GETARG_DATUM(1));
	int			exponent;

	SPI_connect();
	exponent = MoneyExponent(currency);
	SPI_finish();
	PG_RETURN_INT64(MoneyToMinor(amount, exponent));
}

/*
 * An amount given as an integer of minor units (JSON input): positive
 * (PB006) and at most 10^15 (PB007), like a decimal amount.
 */
int64
MoneyCheckMinor(int64 minor)
{
	if (minor <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_AMOUNT),
				 errmsg("amount must be positive"),
				 errdetail("The amount was %lld minor units.", (long long) minor)));
	if (minor > PGB_MAX_AMOUNT)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_AMOUNT_OUT_OF_RANGE),
				 errmsg("amount is out of range"),
				 errdetail("An amount must be at most 10^15 minor units of its currency.")));
	return minor;
}

/* the account's currency, read as the caller: under row-level security */
static PgbQuery q_account_currency = {
	"SELECT currency FROM bank.accounts WHERE id = $1",
	1, {INT8OID}, NULL, true
};

/*
 * bank.account_amount(account, minor): an integer of minor units of the
 * account's currency as its exact amount (1050 in a USD account is 10.50),
 * for JSON clients that send minor units to functions taking numeric.  NULL
 * minor units give NULL.  The account is read as the caller, so an account
 * they may not see is PB009, exactly like one that does not exist; it takes
 * no lock and records nothing (the function the amount is for does).
 */
PG_FUNCTION_INFO_V1(pgbank_account_amount);
Datum
pgbank_account_amount(PG_FUNCTION_ARGS)
{
	int64		minor;
	Datum		arg;
	int			exponent;

	if (PG_ARGISNULL(1))
		PG_RETURN_NULL();
	minor = MoneyCheckMinor(PG_GETARG_INT64(1));
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_PGB_ACCOUNT_NOT_FOUND),
				 errmsg("the account of the amount does not exist")));
	arg = PG_GETARG_DATUM(0);
	SPI_connect();
	if (PgbExec(&q_account_currency, &arg, NULL, true, 1) != 1)
		AccountNotFound(PG_GETARG_INT64(0));
	exponent = MoneyExponent(PgbGetText(0, 1));
	SPI_finish();
	PG_RETURN_NUMERIC(MoneyFromMinor(minor, exponent));
}
