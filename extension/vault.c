/*-------------------------------------------------------------------------
 *
 * vault.c
 *		The card vault (PCI DSS): tokenize and detokenize card numbers, and a
 *		filter that keeps card numbers out of the server log.
 *
 * Invariants:
 *	- A card number (PAN) is stored only as a pgp_sym_encrypt ciphertext
 *	  under pgbank.card_key (a superuser-only secret of its own, not the
 *	  master key of personal data), in bank.cards.pan, which no API role may
 *	  read.  The token is 24 random bytes (base64url), unrelated to the
 *	  number.  The masked number keeps the last four digits, and the first
 *	  six only for numbers of 16 digits or more.
 *	- No message of ours holds the number, nor any digit of it: errors
 *	  name the rule broken and nothing else.  Audit rows name the token and
 *	  the last four digits only.
 *	- The number is handed to pgcrypto as a Datum (PgcryptoCall), never in
 *	  SQL text, and the plain digits are wiped from our memory after use.
 *	- Every server log line a backend with pgbank loaded emits is filtered
 *	  (emit_log_hook, which sees what goes to the server log; the client
 *	  gets the filtered message too): any run of 13 to 19 digits (single blanks or dashes
 *	  between them allowed) that passes the Luhn check is overwritten with
 *	  '*' in the message, detail, hint, context and internal query, and a
 *	  failing statement whose text holds one is not logged (hide_stmt).
 *	  This covers the statement text of log_statement and
 *	  log_min_error_statement and the bind parameters of log_parameter_*.
 *	  With pgbank in shared_preload_libraries every backend has the filter
 *	  from its first statement on.
 *
 * Locks: none beyond the row inserted or read.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/elog.h"

#include "pgbank.h"

#define PAN_MIN_DIGITS 13
#define PAN_MAX_DIGITS 19
#define TOKEN_BYTES 24

static emit_log_hook_type prev_emit_log_hook = NULL;

static PgbQuery q_card_insert = {
	"INSERT INTO bank.cards (token, pan, masked, expiry_month, expiry_year, created_by)"
	" VALUES ($1, $2, $3, $4, $5, $6)",
	6, {TEXTOID, BYTEAOID, TEXTOID, INT2OID, INT2OID, NAMEOID}
};

static PgbQuery q_card_get = {
	"SELECT pan, expiry_month::int4, expiry_year::int4 FROM bank.cards WHERE token = $1",
	1, {TEXTOID}
};

/* the Luhn check over n digits (values 0-9), the last being the check digit */
static bool
LuhnValid(const uint8 *digits, int n)
{
	int			sum = 0;
	int			i;

	for (i = 0; i < n; i++)
	{
		int			d = digits[n - 1 - i];

		if (i % 2 == 1)
		{
			d *= 2;
			if (d > 9)
				d -= 9;
		}
		sum += d;
	}
	return sum % 10 == 0;
}

/* ---------------------------------------------------------------------
 * The log filter
 * ---------------------------------------------------------------------
 */

/*
 * Overwrite, in place, every card number in s with '*'; returns whether it
 * found one.  A candidate is a maximal run of digits in which single blanks
 * or dashes may separate groups; it is a card number when it has 13 to 19
 * digits and passes the Luhn check.  No allocation: this runs while an
 * error is being reported.
 */
static bool
MaskCardNumbers(char *s, bool overwrite)
{
	bool		found = false;
	char	   *p = s;

	if (s == NULL)
		return false;
	while (*p)
	{
		char	   *end;
		uint8		digits[PAN_MAX_DIGITS];
		int			n = 0;

		if (!isdigit((unsigned char) *p))
		{
			p++;
			continue;
		}
		for (end = p; *end; end++)
		{
			if (isdigit((unsigned char) *end))
			{
				if (n < PAN_MAX_DIGITS)
					digits[n] = *end - '0';
				n++;
			}
			else if (!((*end == ' ' || *end == '-') && isdigit((unsigned char) end[1])))
				break;
		}
		if (n >= PAN_MIN_DIGITS && n <= PAN_MAX_DIGITS && LuhnValid(digits, n))
		{
			found = true;
			if (overwrite)
			{
				char	   *q;

				for (q = p; q < end; q++)
					if (isdigit((unsigned char) *q))
						*q = '*';
			}
		}
		p = end;
	}
	return found;
}

static void
VaultLogFilter(ErrorData *edata)
{
	if (edata->output_to_server || edata->output_to_client)
	{
		MaskCardNumbers(edata->message, true);
		MaskCardNumbers(edata->detail, true);
		MaskCardNumbers(edata->detail_log, true);
		MaskCardNumbers(edata->hint, true);
		MaskCardNumbers(edata->context, true);
		MaskCardNumbers(edata->internalquery, true);
		/* the statement text is not ours to change: leave it out instead */
		if (!edata->hide_stmt && debug_query_string != NULL &&
			MaskCardNumbers((char *) debug_query_string, false))
			edata->hide_stmt = true;
	}
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

void
VaultInstallLogFilter(void)
{
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = VaultLogFilter;
}

/* ---------------------------------------------------------------------
 * Tokens
 * ---------------------------------------------------------------------
 */

/*
 * The card number's digits into out (NUL-terminated), or PB060.  The
 * messages hold no digit at all, so none of the number can leak.
 */
static int
CheckCardNumber(const char *pan, char *out)
{
	uint8		digits[PAN_MAX_DIGITS];
	int			n = 0;
	const char *p;

	for (p = pan; *p; p++)
	{
		if (!isdigit((unsigned char) *p))
			ereport(ERROR,
					(errcode(ERRCODE_PGB_INVALID_CARD_NUMBER),
					 errmsg("card number must hold digits only")));
		if (n == PAN_MAX_DIGITS)
			ereport(ERROR,
					(errcode(ERRCODE_PGB_INVALID_CARD_NUMBER),
					 errmsg("card number must be thirteen to nineteen digits long")));
		digits[n] = *p - '0';
		out[n++] = *p;
	}
	out[n] = '\0';
	if (n < PAN_MIN_DIGITS)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_CARD_NUMBER),
				 errmsg("card number must be thirteen to nineteen digits long")));
	if (!LuhnValid(digits, n))
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_CARD_NUMBER),
				 errmsg("card number fails its check digit")));
	explicit_bzero(digits, sizeof(digits));
	return n;
}

/*
 * MM/YY or MM/YYYY into month and year, else PB061; PB062 when the card
 * expired (it is valid through the last day of its month, in the business
 * time zone); PB061 too when more than 20 years ahead.
 */
static void
CheckExpiry(const char *expiry, int *month, int *year)
{
	int			len = strlen(expiry);
	int			i;
	int			today_y,
				today_m,
				today_d;

	if (!((len == 5 || len == 7) && expiry[2] == '/'))
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_CARD_EXPIRY),
				 errmsg("card expiry must be MM/YY or MM/YYYY")));
	for (i = 0; i < len; i++)
		if (i != 2 && !isdigit((unsigned char) expiry[i]))
			ereport(ERROR,
					(errcode(ERRCODE_PGB_INVALID_CARD_EXPIRY),
					 errmsg("card expiry must be MM/YY or MM/YYYY")));
	*month = (expiry[0] - '0') * 10 + (expiry[1] - '0');
	*year = atoi(expiry + 3);
	if (len == 5)
		*year += 2000;
	if (*month < 1 || *month > 12)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_CARD_EXPIRY),
				 errmsg("card expiry month must be from one to twelve")));
	j2date(ProductBusinessToday() + POSTGRES_EPOCH_JDATE, &today_y, &today_m, &today_d);
	if (*year * 12 + *month < today_y * 12 + today_m)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_CARD_EXPIRED),
				 errmsg("the card has expired")));
	if (*year > today_y + 20)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_CARD_EXPIRY),
				 errmsg("card expiry is more than twenty years ahead")));
}

static Datum
CardKey(void)
{
	return CStringGetTextDatum(AuthSecret("pgbank.card_key", pgb_card_key, 32));
}

PG_FUNCTION_INFO_V1(pgbank_tokenize_card);
Datum
pgbank_tokenize_card(PG_FUNCTION_ARGS)
{
	static const char *const names[] = {"pan", "expiry"};
	char		digits[PAN_MAX_DIGITS + 1];
	char		masked[PAN_MAX_DIGITS + 1];
	uint8		raw[TOKEN_BYTES];
	char	   *token;
	char	   *pan;
	int			n,
				i,
				keep_first,
				month,
				year;
	Principal	who;
	Datum		v[6];
	Datum		out[2];
	bool		out_nulls[2] = {false, false};
	TupleDesc	tupdesc;
	Datum		key;

	PgbRequireArgs(fcinfo, 2, names);
	AuthCaller("tokenize_card", &who);
	key = CardKey();
	pan = TextDatumGetCString(PG_GETARG_DATUM(0));
	n = CheckCardNumber(pan, digits);
	explicit_bzero(pan, strlen(pan));
	CheckExpiry(TextDatumGetCString(PG_GETARG_DATUM(1)), &month, &year);

	keep_first = n >= 16 ? 6 : 0;
	for (i = 0; i < n; i++)
		masked[i] = (i < keep_first || i >= n - 4) ? digits[i] : '*';
	masked[n] = '\0';
	AuthRandom(raw, sizeof(raw));
	token = psprintf("tok_%s", AuthBase64Url(raw, sizeof(raw)));

	SPI_connect();
	v[0] = CStringGetTextDatum(token);
	v[1] = PiiCrypt("pgp_sym_encrypt", TEXTOID, CStringGetTextDatum(digits), key,
					ERRCODE_INTERNAL_ERROR, "a card number", "pgbank.card_key");
	explicit_bzero(digits, sizeof(digits));
	v[2] = CStringGetTextDatum(masked);
	v[3] = Int16GetDatum(month);
	v[4] = Int16GetDatum(year);
	v[5] = DirectFunctionCall1(namein, CStringGetDatum(GetUserNameFromId(GetUserId(), false)));
	PgbExec(&q_card_insert, v, NULL, false, 0);
	AuditWrite(&who, 0, "card.tokenize", "card", token,
			   psprintf("{\"last4\": \"%s\"}", masked + n - 4));

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "pgbank: function must return a composite type");
	tupdesc = BlessTupleDesc(tupdesc);
	out[0] = CStringGetTextDatum(token);
	out[1] = CStringGetTextDatum(masked);
	return PgbFinishWithTuple(heap_form_tuple(tupdesc, out, out_nulls), tupdesc);
}

PG_FUNCTION_INFO_V1(pgbank_detokenize_card);
Datum
pgbank_detokenize_card(PG_FUNCTION_ARGS)
{
	char	   *token = TextDatumGetCString(PG_GETARG_DATUM(0));
	Principal	who;
	Datum		v[1];
	Datum		out[2];
	bool		out_nulls[2] = {false, false};
	Datum		ciphertext;
	int			month,
				year;
	TupleDesc	tupdesc;

	AuthCaller("detokenize_card", &who);
	SPI_connect();
	v[0] = CStringGetTextDatum(token);
	if (PgbExec(&q_card_get, v, NULL, false, 1) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_CARD_NOT_FOUND),
				 errmsg("card token not found")));
	ciphertext = PointerGetDatum(DatumGetByteaPCopy(PgbGet(0, 1, &(bool) {false})));
	month = DatumGetInt32(PgbGet(0, 2, &(bool) {false}));
	year = DatumGetInt32(PgbGet(0, 3, &(bool) {false}));
	out[0] = PiiCrypt("pgp_sym_decrypt", BYTEAOID, ciphertext, CardKey(),
					  ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, "a card number",
					  "pgbank.card_key");
	out[1] = CStringGetTextDatum(psprintf("%02d/%04d", month, year));
	AuditWrite(&who, 0, "card.detokenize", "card", token, NULL);

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "pgbank: function must return a composite type");
	tupdesc = BlessTupleDesc(tupdesc);
	return PgbFinishWithTuple(heap_form_tuple(tupdesc, out, out_nulls), tupdesc);
}
