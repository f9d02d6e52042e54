/*-------------------------------------------------------------------------
 *
 * pii.c
 *		Personal data: per-customer data keys, encryption at rest, masking
 *		for staff, erasure by crypto-shredding, and the customer's export.
 *
 * Invariants:
 *	- customers.phone, national_id and address hold only pgp_sym_encrypt
 *	  ciphertexts, under a password that is the hex of the customer's
 *	  32-byte data key.  The data key is stored only wrapped
 *	  (pgp_sym_encrypt_bytea) under pgbank.master_key, in
 *	  bank.customer_keys.  Neither key, nor any personal value, ever appears
 *	  in a message, an audit row or a log line: errors name the field only.
 *	- Erasure deletes the data key row (crypto-shredding) and keeps the
 *	  ciphertexts, which nobody can read any more; it never touches accounts,
 *	  transfers or entries, so the ledger stays whole.  Once erased_at is set
 *	  a customer's personal data can never be written again (PB049).
 *	- Whether a caller may see a customer is decided by PostgreSQL: an
 *	  as_caller read of bank.customers under row-level security.  A customer
 *	  asking for another customer gets PB021, exactly as for an id that does
 *	  not exist.  Staff see personal data masked, customers in clear.
 *
 * Locks: PiiStore locks the customer row FOR NO KEY UPDATE (so a data key is
 * created once, and never after an erasure); erase_customer locks it FOR
 * UPDATE, so an erasure and a concurrent write of personal data serialise.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/json.h"

#include "pgbank.h"

#define DATA_KEY_BYTES 32
#define PROFILE_COLUMNS 11		/* bank.customer_profile */

/* the fields of bank.customer_profile that hold personal data */
#define COL_PHONE 4
#define COL_NATIONAL_ID 5
#define COL_ADDRESS 6
#define COL_ERASED_AT 10
#define COL_WRAPPED_KEY 11

static const char *const pii_fields[] = {"phone", "national_id", "address"};

/* can the caller see this customer?  Run as the caller, under RLS */
static PgbQuery q_visible = {
	"SELECT 1 FROM bank.customers WHERE id = $1",
	1, {INT8OID}, NULL, true
};

/* the profile's columns in bank.customer_profile order, then the wrapped key */
static PgbQuery q_profile = {
	"SELECT c.id, c.email, c.first_name::text, c.last_name::text, c.phone, c.national_id,"
	" c.address, c.kyc_status, c.mfa_enabled, c.created_at, c.erased_at, k.wrapped_key"
	" FROM bank.customers c LEFT JOIN bank.customer_keys k ON k.customer_id = c.id"
	" WHERE c.id = $1",
	1, {INT8OID}
};

static PgbQuery q_lock_for_store = {
	"SELECT erased_at IS NOT NULL FROM bank.customers WHERE id = $1 FOR NO KEY UPDATE",
	1, {INT8OID}
};

static PgbQuery q_lock_for_erase = {
	"SELECT erased_at IS NOT NULL FROM bank.customers WHERE id = $1 FOR UPDATE",
	1, {INT8OID}
};

static PgbQuery q_get_key = {
	"SELECT wrapped_key FROM bank.customer_keys WHERE customer_id = $1",
	1, {INT8OID}
};

static PgbQuery q_put_key = {
	"INSERT INTO bank.customer_keys (customer_id, wrapped_key) VALUES ($1, $2)",
	2, {INT8OID, BYTEAOID}
};

static PgbQuery q_store = {
	"UPDATE bank.customers SET phone = coalesce($2, phone),"
	" national_id = coalesce($3, national_id), address = coalesce($4, address)"
	" WHERE id = $1",
	4, {INT8OID, BYTEAOID, BYTEAOID, BYTEAOID}
};

static PgbQuery q_shred_key = {
	"DELETE FROM bank.customer_keys WHERE customer_id = $1",
	1, {INT8OID}
};

static PgbQuery q_erase = {
	"UPDATE bank.customers SET erased_at = now(), password_hash = NULL,"
	" password_changed_at = NULL, mfa_enabled = false, mfa_secret = NULL,"
	" mfa_pending_secret = NULL, failed_logins = 0, locked_until = NULL,"
	" email = 'erased-' || id || '@erased.invalid',"
	" first_name = 'erased', last_name = 'erased'"
	" WHERE id = $1",
	1, {INT8OID}
};

static PgbQuery q_end_sessions = {
	"UPDATE bank.sessions SET revoked_at = now(), revoked_reason = 'erased'"
	" WHERE customer_id = $1 AND revoked_at IS NULL",
	1, {INT8OID}
};

/* sessions are readable by no API role: read as bank_engine, filtered here */
static PgbQuery q_export_sessions = {
	"SELECT coalesce(jsonb_agg(jsonb_build_object('id', s.id, 'created_at', s.created_at,"
	"  'last_seen_at', s.last_seen_at, 'expires_at', s.expires_at,"
	"  'revoked_at', s.revoked_at, 'revoked_reason', s.revoked_reason) ORDER BY s.id), '[]')"
	" FROM bank.sessions s WHERE s.customer_id = $1",
	1, {INT8OID}
};

/*
 * Everything else the customer may see, as the customer under row-level
 * security; $2..$4 are their personal data in clear, $5 their sessions.
 */
static PgbQuery q_export = {
	"SELECT jsonb_build_object("
	" 'profile', (SELECT jsonb_build_object('id', c.id, 'email', c.email,"
	"   'first_name', c.first_name, 'last_name', c.last_name, 'phone', $2::text,"
	"   'national_id', $3::text, 'address', $4::text, 'kyc_status', c.kyc_status,"
	"   'mfa_enabled', c.mfa_enabled, 'created_at', c.created_at, 'erased_at', c.erased_at)"
	"   FROM bank.customers c WHERE c.id = $1),"
	" 'accounts', (SELECT coalesce(jsonb_agg(to_jsonb(b) ORDER BY b.id), '[]')"
	"   FROM bank.account_balances b WHERE b.customer_id = $1),"
	" 'transfers', (SELECT coalesce(jsonb_agg(jsonb_build_object('id', t.id, 'kind', t.kind,"
	"   'status', t.status, 'from_account', t.from_account, 'to_account', t.to_account,"
	"   'currency', t.currency, 'amount', bank.minor_to_amount(t.amount, cur.exponent),"
	"   'posted_amount', bank.minor_to_amount(t.posted_amount, cur.exponent),"
	"   'idempotency_key', t.idempotency_key, 'description', t.description,"
	"   'metadata', t.metadata, 'reverses', t.reverses, 'failure_code', t.failure_code,"
	"   'failure_message', t.failure_message, 'created_at', t.created_at,"
	"   'posted_at', t.posted_at, 'expires_at', t.expires_at, 'resolved_at', t.resolved_at)"
	"   ORDER BY t.id), '[]')"
	"   FROM bank.transfers t JOIN bank.currencies cur ON cur.code = t.currency"
	"   WHERE EXISTS (SELECT 1 FROM bank.accounts a WHERE a.customer_id = $1"
	"                  AND a.id IN (t.from_account, t.to_account))),"
	" 'sessions', $5,"
	" 'security_events', (SELECT coalesce(jsonb_agg(jsonb_build_object('id', e.id, 'at', e.at,"
	"   'action', e.action, 'resource_type', e.resource_type, 'resource_id', e.resource_id,"
	"   'metadata', e.metadata, 'request_id', e.request_id, 'client_addr', e.client_addr,"
	"   'user_agent', e.user_agent) ORDER BY e.id), '[]')"
	"   FROM bank.audit_events e WHERE e.actor_customer = $1))",
	5, {INT8OID, TEXTOID, TEXTOID, TEXTOID, JSONBOID}, NULL, true
};

/* ---------------------------------------------------------------------
 * Keys and ciphers
 * ---------------------------------------------------------------------
 */

/*
 * Call a two-argument pgcrypto function (data, password).  pgcrypto's own
 * failure (a wrong key or corrupt data, SQLSTATE 39000) becomes
 * errcode_on_failure with a message that names what was being decrypted
 * ("the phone of customer 7") and nothing else; a wrong key
 * (errcode_on_failure 55000) hints at the setting that holds it.  The card
 * vault uses it too.
 */
Datum
PiiCrypt(const char *fname, Oid datatype, Datum data, Datum password,
		 int errcode_on_failure, const char *what, const char *key_setting)
{
	MemoryContext cxt = CurrentMemoryContext;
	Oid			types[2];
	Datum		args[2];
	bool		isnull = false;
	volatile Datum result = (Datum) 0;

	types[0] = datatype;
	types[1] = TEXTOID;
	args[0] = data;
	args[1] = password;
	PG_TRY();
	{
		result = PgcryptoCall(fname, 2, types, args, &isnull);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		if (edata->sqlerrcode != ERRCODE_EXTERNAL_ROUTINE_INVOCATION_EXCEPTION)
			PG_RE_THROW();
		FlushErrorState();
		if (errcode_on_failure == ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE)
			ereport(ERROR,
					(errcode(errcode_on_failure),
					 errmsg("could not decrypt %s", what),
					 errdetail("pgcrypto: %s.", edata->message),
					 errhint("Is %s the key it was encrypted with?", key_setting)));
		ereport(ERROR,
				(errcode(errcode_on_failure),
				 errmsg("could not decrypt %s", what),
				 errdetail("pgcrypto: %s.", edata->message)));
	}
	PG_END_TRY();
	if (isnull)
		elog(ERROR, "pgbank: %s returned NULL", fname);
	return result;
}

static Datum
crypto_call(const char *fname, Oid datatype, Datum data, Datum password,
			int errcode_on_failure, const char *what, int64 customer)
{
	return PiiCrypt(fname, datatype, data, password, errcode_on_failure,
					psprintf("the %s of customer %lld", what, (long long) customer),
					"pgbank.master_key");
}

static Datum
master_key_datum(void)
{
	return CStringGetTextDatum(AuthSecret("pgbank.master_key", pgb_master_key, 32));
}

/*
 * Encrypt (wrap) or decrypt a customer's secret under the master key: their
 * data key, their TOTP secret.  A wrong master key is a clear 55000.
 */
Datum
PiiWrap(bytea *plain, const char *what, int64 customer)
{
	return crypto_call("pgp_sym_encrypt_bytea", BYTEAOID, PointerGetDatum(plain),
					   master_key_datum(), ERRCODE_INTERNAL_ERROR, what, customer);
}

bytea *
PiiUnwrap(Datum wrapped, const char *what, int64 customer)
{
	return DatumGetByteaPP(crypto_call("pgp_sym_decrypt_bytea", BYTEAOID, wrapped,
									   master_key_datum(),
									   ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, what,
									   customer));
}

/* a raw data key as the text password pgp_sym_encrypt is given: its hex */
static Datum
password_datum(const uint8 *key)
{
	char		hex[DATA_KEY_BYTES * 2 + 1];
	Datum		d;

	hex_encode((const char *) key, DATA_KEY_BYTES, hex);
	hex[DATA_KEY_BYTES * 2] = '\0';
	d = CStringGetTextDatum(hex);
	explicit_bzero(hex, sizeof(hex));
	return d;
}

/* unwrap a customer's data key and return it as a password */
static Datum
unwrap_key(Datum wrapped, int64 customer)
{
	bytea	   *raw = PiiUnwrap(wrapped, "data key", customer);
	Datum		password;

	if (VARSIZE_ANY_EXHDR(raw) != DATA_KEY_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("the data key of customer %lld is not %d bytes long",
						(long long) customer, DATA_KEY_BYTES)));
	password = password_datum((const uint8 *) VARDATA_ANY(raw));
	explicit_bzero(VARDATA_ANY(raw), DATA_KEY_BYTES);
	return password;
}

/*
 * The customer's data key as a password, created when absent: 32 random
 * bytes, stored wrapped under the master key.  The caller holds the
 * customer's row lock, so a key is created once.
 */
static Datum
data_key(int64 customer)
{
	Datum		arg = Int64GetDatum(customer);
	uint8		raw[DATA_KEY_BYTES];
	bytea	   *b;
	Datum		v[2];
	Datum		password;
	bool		isnull;

	if (PgbExec(&q_get_key, &arg, NULL, false, 1) == 1)
		return unwrap_key(PgbGet(0, 1, &isnull), customer);

	AuthRandom(raw, sizeof(raw));
	b = PgbBytea(raw, DATA_KEY_BYTES);
	v[0] = arg;
	v[1] = PiiWrap(b, "data key", customer);
	explicit_bzero(VARDATA(b), DATA_KEY_BYTES);
	PgbExec(&q_put_key, v, NULL, false, 0);
	password = password_datum(raw);
	explicit_bzero(raw, sizeof(raw));
	return password;
}

static Datum
encrypt_field(const char *value, Datum password, const char *what, int64 customer)
{
	return crypto_call("pgp_sym_encrypt", TEXTOID, CStringGetTextDatum(value), password,
					   ERRCODE_INTERNAL_ERROR, what, customer);
}

static char *
decrypt_field(Datum ciphertext, Datum password, const char *what, int64 customer)
{
	return TextDatumGetCString(crypto_call("pgp_sym_decrypt", BYTEAOID, ciphertext, password,
										   ERRCODE_DATA_CORRUPTED, what, customer));
}

/* ---------------------------------------------------------------------
 * Validation and masks
 * ---------------------------------------------------------------------
 */

/* PB023 on a bad value; the message names the field, never the value */
static void
check_fields(const char *phone, const char *national_id, const char *address)
{
	if (phone)
	{
		const char *c;

		PgbCheckLength("phone", phone, 4, 32);
		for (c = phone; *c; c++)
			if (!((*c >= '0' && *c <= '9') || *c == ' ' || *c == '+' || *c == '-' ||
				  *c == '(' || *c == ')'))
				ereport(ERROR,
						(errcode(ERRCODE_PGB_INVALID_ARGUMENT),
						 errmsg("phone may contain only digits, spaces, +, - and parentheses")));
	}
	if (national_id)
		PgbCheckLength("national_id", national_id, 1, 64);
	if (address)
		PgbCheckLength("address", address, 1, PGB_MAX_TEXT_CHARS);
}

/* phone: every digit but the last two as '*'; '+', blanks and separators stay */
static char *
mask_phone(const char *s)
{
	char	   *out = pstrdup(s);
	int			digits = 0;
	int			seen = 0;
	char	   *c;

	for (c = out; *c; c++)
		if (*c >= '0' && *c <= '9')
			digits++;
	for (c = out; *c; c++)
		if (*c >= '0' && *c <= '9' && ++seen <= digits - 2)
			*c = '*';
	return out;
}

/* national id: every character but the last four as '*' (all of a short one) */
static char *
mask_national_id(const char *s)
{
	int			n = pg_mbstrlen(s);
	int			hidden = n > 4 ? n - 4 : n;
	StringInfoData buf;
	const char *c = s;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < hidden; i++)
	{
		appendStringInfoChar(&buf, '*');
		c += pg_mblen(c);
	}
	appendStringInfoString(&buf, c);
	return buf.data;
}

/* address: each blank-separated word as its first character and "***" */
static char *
mask_address(const char *s)
{
	StringInfoData buf;
	const char *c = s;

	initStringInfo(&buf);
	while (*c)
	{
		int			len;

		if (*c == ' ' || *c == '\t' || *c == '\n' || *c == '\r')
		{
			c++;
			continue;
		}
		if (buf.len > 0)
			appendStringInfoChar(&buf, ' ');
		len = pg_mblen(c);
		appendBinaryStringInfo(&buf, c, len);
		appendStringInfoString(&buf, "***");
		c += len;
		while (*c && !(*c == ' ' || *c == '\t' || *c == '\n' || *c == '\r'))
			c++;
	}
	return buf.data;
}

/* ---------------------------------------------------------------------
 * Profiles
 * ---------------------------------------------------------------------
 */

/*
 * The customer (an id the caller may see) as bank.customer_profile into
 * values/nulls: personal data decrypted, masked for staff, NULL once erased.
 * Inside SPI; the values live until SPI_finish.
 */
static void
profile_load(int64 customer, bool masked, bool read_only, Datum *values, bool *nulls)
{
	Datum		arg = Int64GetDatum(customer);
	Datum		row[PROFILE_COLUMNS + 1];
	bool		rownulls[PROFILE_COLUMNS + 1];
	Datum		password = (Datum) 0;
	int			i;

	if (PgbExec(&q_profile, &arg, NULL, read_only, 1) != 1)
		CustomerNotFound(customer);
	heap_deform_tuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, row, rownulls);
	for (i = 0; i < PROFILE_COLUMNS; i++)
	{
		values[i] = row[i];
		nulls[i] = rownulls[i];
	}
	for (i = COL_PHONE; i <= COL_ADDRESS; i++)
	{
		char	   *plain;

		/* erased, or never stored: nothing to show */
		if (nulls[i] || !rownulls[COL_ERASED_AT] || rownulls[COL_WRAPPED_KEY])
		{
			nulls[i] = true;
			continue;
		}
		if (password == (Datum) 0)
			password = unwrap_key(row[COL_WRAPPED_KEY], customer);
		plain = decrypt_field(row[i], password, pii_fields[i - COL_PHONE], customer);
		if (masked)
			plain = i == COL_PHONE ? mask_phone(plain) :
				i == COL_NATIONAL_ID ? mask_national_id(plain) : mask_address(plain);
		values[i] = CStringGetTextDatum(plain);
	}
}

/* the profile as the function's composite result; disconnects from SPI */
static Datum
profile_datum(FunctionCallInfo fcinfo, int64 customer, bool masked, bool read_only)
{
	TupleDesc	tupdesc;
	Datum		values[PROFILE_COLUMNS];
	bool		nulls[PROFILE_COLUMNS];

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE ||
		tupdesc->natts != PROFILE_COLUMNS)
		elog(ERROR, "pgbank: function must return bank.customer_profile");
	profile_load(customer, masked, read_only, values, nulls);
	tupdesc = BlessTupleDesc(tupdesc);
	return PgbFinishWithTuple(heap_form_tuple(tupdesc, values, nulls), tupdesc);
}

/*
 * The customer a call is about: a customer's own (customer_id NULL or their
 * own id), any for staff (customer_id required).  Whether the caller may see
 * it is asked of PostgreSQL, as the caller under row-level security: another
 * customer's id is PB021, like an id that does not exist.  Inside SPI.
 */
static int64
target_customer(FunctionCallInfo fcinfo, int argno, const Principal *p)
{
	int64		id = CustomerArg(p, fcinfo, argno);
	Datum		arg;

	arg = Int64GetDatum(id);
	if (PgbExec(&q_visible, &arg, NULL, true, 1) != 1)
		CustomerNotFound(id);
	return id;
}

/*
 * Validate and store personal data, encrypted under the customer's data key
 * (created when absent); a NULL field is left as it is.  PB021 when the
 * customer does not exist, PB049 once erased, PB023 for a bad value.  Takes
 * the customer's row lock FOR NO KEY UPDATE.  Must be called inside
 * SPI_connect; no authorisation check: callers make their own.
 */
void
PiiStore(int64 customer, const char *phone, const char *national_id, const char *address)
{
	const char *plain[3];
	Datum		v[4];
	char		n[5] = "    ";
	Datum		password;
	bool		isnull;
	int			i;

	check_fields(phone, national_id, address);
	v[0] = Int64GetDatum(customer);
	if (PgbExec(&q_lock_for_store, v, NULL, false, 1) != 1)
		CustomerNotFound(customer);
	if (DatumGetBool(PgbGet(0, 1, &isnull)))
		ereport(ERROR,
				(errcode(ERRCODE_PGB_DATA_ERASED),
				 errmsg("the personal data of customer %lld has been erased",
						(long long) customer)));
	if (phone == NULL && national_id == NULL && address == NULL)
		return;

	password = data_key(customer);
	plain[0] = phone;
	plain[1] = national_id;
	plain[2] = address;
	for (i = 0; i < 3; i++)
	{
		if (plain[i])
			v[i + 1] = encrypt_field(plain[i], password, pii_fields[i], customer);
		else
			n[i + 1] = 'n';
	}
	PgbExec(&q_store, v, n, false, 0);
}

/* ---------------------------------------------------------------------
 * SQL functions
 * ---------------------------------------------------------------------
 */

PG_FUNCTION_INFO_V1(pgbank_get_customer);
Datum
pgbank_get_customer(PG_FUNCTION_ARGS)
{
	Principal	p;
	int64		id;

	AuthCaller("get_customer", &p);
	SPI_connect();
	id = target_customer(fcinfo, 0, &p);
	return profile_datum(fcinfo, id, p.kind != PRINCIPAL_CUSTOMER, true);
}

PG_FUNCTION_INFO_V1(pgbank_update_profile);
Datum
pgbank_update_profile(PG_FUNCTION_ARGS)
{
	Principal	p;
	int64		id;
	char	   *plain[3] = {NULL, NULL, NULL};
	int			i;
	StringInfoData fields;

	AuthCaller("update_profile", &p);
	for (i = 0; i < 3; i++)
		if (!PG_ARGISNULL(i))
			plain[i] = TextDatumGetCString(PG_GETARG_DATUM(i));
	check_fields(plain[0], plain[1], plain[2]);

	SPI_connect();
	id = target_customer(fcinfo, 3, &p);
	PiiStore(id, plain[0], plain[1], plain[2]);

	/* staff changes are audited: which fields, never their values */
	initStringInfo(&fields);
	for (i = 0; i < 3; i++)
		if (plain[i])
			appendStringInfo(&fields, "%s\"%s\"", fields.len ? ", " : "", pii_fields[i]);
	if (p.kind != PRINCIPAL_CUSTOMER && fields.len > 0)
		AuditWrite(&p, 0, "customer.update_profile", "customer",
				   psprintf("%lld", (long long) id),
				   psprintf("{\"fields\": [%s]}", fields.data));
	for (i = 0; i < 3; i++)
		if (plain[i])
			explicit_bzero(plain[i], strlen(plain[i]));
	return profile_datum(fcinfo, id, p.kind != PRINCIPAL_CUSTOMER, false);
}

PG_FUNCTION_INFO_V1(pgbank_erase_customer);
Datum
pgbank_erase_customer(PG_FUNCTION_ARGS)
{
	static const char *const names[] = {"customer_id", "reason"};
	Principal	p;
	int64		id;
	char	   *reason;
	Datum		arg;
	bool		isnull;
	StringInfoData meta;

	PgbRequireArgs(fcinfo, 2, names);
	AuthCaller("erase_customer", &p);
	if (p.kind == PRINCIPAL_CUSTOMER)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("only staff can erase a customer")));
	id = PG_GETARG_INT64(0);
	reason = TextDatumGetCString(PG_GETARG_DATUM(1));
	PgbCheckLength("reason", reason, 1, PGB_MAX_TEXT_CHARS);

	SPI_connect();
	arg = Int64GetDatum(id);
	if (PgbExec(&q_lock_for_erase, &arg, NULL, false, 1) != 1)
		CustomerNotFound(id);
	if (DatumGetBool(PgbGet(0, 1, &isnull)))
	{
		/* already erased: nothing left to do */
		SPI_finish();
		PG_RETURN_VOID();
	}
	PgbExec(&q_shred_key, &arg, NULL, false, 0);
	PgbExec(&q_erase, &arg, NULL, false, 0);
	PgbExec(&q_end_sessions, &arg, NULL, false, 0);

	initStringInfo(&meta);
	appendStringInfoString(&meta, "{\"reason\": ");
	escape_json(&meta, reason);
	appendStringInfoChar(&meta, '}');
	AuditWrite(&p, 0, "customer.erase", "customer", psprintf("%lld", (long long) id),
			   meta.data);
	SPI_finish();
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(pgbank_export_my_data);
Datum
pgbank_export_my_data(PG_FUNCTION_ARGS)
{
	Principal	p;
	Datum		profile[PROFILE_COLUMNS];
	bool		pnulls[PROFILE_COLUMNS];
	Datum		v[5];
	char		n[6] = "     ";
	Datum		result;
	bool		isnull;
	int			i;

	AuthCaller("export_my_data", &p);
	if (p.kind != PRINCIPAL_CUSTOMER)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("only a customer can export their own data")));

	SPI_connect();
	v[0] = Int64GetDatum(p.customer_id);
	profile_load(p.customer_id, false, false, profile, pnulls);
	for (i = COL_PHONE; i <= COL_ADDRESS; i++)
	{
		v[i - COL_PHONE + 1] = profile[i];
		n[i - COL_PHONE + 1] = pnulls[i] ? 'n' : ' ';
	}
	PgbExec(&q_export_sessions, v, NULL, false, 1);
	v[4] = PgbGet(0, 1, &isnull);
	if (PgbExec(&q_export, v, n, false, 1) != 1)
		elog(ERROR, "pgbank: export returned no row");
	result = SPI_datumTransfer(PgbGet(0, 1, &isnull), false, -1);

	AuditWrite(&p, 0, "customer.export", "credential",
			   psprintf("%lld", (long long) p.customer_id), NULL);
	SPI_finish();
	PG_RETURN_DATUM(result);
}
