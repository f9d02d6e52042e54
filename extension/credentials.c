/*-------------------------------------------------------------------------
 *
 * credentials.c
 *		Registration, logins, sessions and refresh tokens, TOTP second
 *		factor, KYC status and API keys.
 *
 * Invariants:
 *	- Passwords are stored as bcrypt (pgcrypto crypt() with gen_salt('bf',
 *	  pgbank.bcrypt_cost)) of a pre-hash: base64 of the SHA-256 of the
 *	  password (44 characters).  bcrypt ignores everything after 72 bytes, so
 *	  without the pre-hash two long passwords sharing their first 72 bytes
 *	  would be the same password; the pre-hash also keeps NUL-free input.
 *	- bank.login() does the same work whether or not the email is known:
 *	  exactly one bcrypt, against the customer's hash or a dummy hash of the
 *	  current cost (made once per backend, remade when the cost changes).
 *	  It never raises for bad credentials, so that failures commit: the
 *	  counter, the lockout and the audit row.  Only malformed input raises.
 *	- The customer row is locked FOR NO KEY UPDATE while a login, a password
 *	  change or an MFA change decides, so concurrent attempts are counted one
 *	  by one and a TOTP time step is accepted at most once (mfa_last_step):
 *	  a concurrent login with the same code waits, then sees the step used.
 *	- Tokens are never stored: a refresh token (32 random bytes, base64url)
 *	  is kept as its SHA-256, an API key ("pbk_" and 24 random bytes) as its
 *	  SHA-256 and its first 12 characters.  Each refresh token is used once;
 *	  presenting a used one revokes its whole session.  The refresh token row
 *	  and its session are locked while a refresh decides.
 *	- TOTP secrets (RFC 6238: HMAC-SHA-1, 30 s, 6 digits, steps now-1 to
 *	  now+1) are stored encrypted with pgp_sym_encrypt_bytea under
 *	  pgbank.master_key.
 *	- No error message, detail or audit metadata holds a password, token,
 *	  code, key, email or phone number.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "common/base64.h"
#include "common/sha2.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/json.h"
#include "utils/lsyscache.h"

#include "pgbank.h"

#define MIN_PASSWORD_CHARS 12
#define MAX_PASSWORD_CHARS 1000
#define MAX_EMAIL_CHARS 254
#define MAX_CODE_CHARS 16
#define MAX_REFRESH_TOKEN_CHARS 256
#define TOTP_PERIOD 30
#define TOTP_DIGITS 6
#define TOTP_SECRET_BYTES 20
#define SHA1_DIGEST_BYTES 20
#define REFRESH_TOKEN_BYTES 32
#define API_KEY_BYTES 24
#define API_KEY_PREFIX_CHARS 12
#define MAX_SCOPES 64

static const char *const api_key_roles[] = {
	"bank_teller", "bank_auditor", "bank_service", "bank_admin"
};

/* the dummy hash unknown emails are checked against, and its cost */
static char dummy_hash[128];
static int	dummy_cost = 0;

/* ---------------------------------------------------------------------
 * Queries
 * ---------------------------------------------------------------------
 */

static PgbQuery q_register = {
	"INSERT INTO bank.customers (email, first_name, last_name, password_hash, password_changed_at)"
	" VALUES (lower($1), $2, $3, $4, now())"
	" ON CONFLICT (email) DO NOTHING RETURNING id",
	4, {TEXTOID, TEXTOID, TEXTOID, TEXTOID}
};

static PgbQuery q_login_lookup = {
	"SELECT id, password_hash, coalesce(locked_until > now(), false), mfa_enabled,"
	" mfa_secret, mfa_last_step, erased_at IS NOT NULL"
	" FROM bank.customers WHERE email = lower($1) FOR NO KEY UPDATE",
	1, {TEXTOID}
};

/* a failure: count it; the one that reaches the limit locks and resets */
static PgbQuery q_login_failed = {
	"UPDATE bank.customers SET"
	" failed_logins = CASE WHEN failed_logins + 1 >= $2 THEN 0 ELSE failed_logins + 1 END,"
	" locked_until = CASE WHEN failed_logins + 1 >= $2 THEN now() + $3 * interval '1 second'"
	"                ELSE locked_until END"
	" WHERE id = $1 RETURNING failed_logins = 0",
	3, {INT8OID, INT4OID, INT4OID}
};

static PgbQuery q_login_ok = {
	"UPDATE bank.customers SET failed_logins = 0, locked_until = NULL,"
	" mfa_last_step = greatest(mfa_last_step, $2) WHERE id = $1",
	2, {INT8OID, INT8OID}
};

static PgbQuery q_new_session = {
	"INSERT INTO bank.sessions (customer_id, expires_at)"
	" VALUES ($1, now() + $2 * interval '1 second') RETURNING id, expires_at",
	2, {INT8OID, INT4OID}
};

static PgbQuery q_new_refresh = {
	"INSERT INTO bank.refresh_tokens (token_hash, session_id) VALUES ($1, $2)",
	2, {BYTEAOID, INT8OID}
};

static PgbQuery q_refresh_lookup = {
	"SELECT r.session_id, r.used_at IS NOT NULL, s.customer_id, s.revoked_at IS NOT NULL,"
	" s.expires_at <= now(), s.last_seen_at < now() - $2 * interval '1 second',"
	" c.erased_at IS NOT NULL, s.expires_at"
	" FROM bank.refresh_tokens r JOIN bank.sessions s ON s.id = r.session_id"
	" JOIN bank.customers c ON c.id = s.customer_id"
	" WHERE r.token_hash = $1 FOR UPDATE OF r FOR NO KEY UPDATE OF s",
	2, {BYTEAOID, INT4OID}
};

static PgbQuery q_refresh_use = {
	"UPDATE bank.refresh_tokens SET used_at = now() WHERE token_hash = $1",
	1, {BYTEAOID}
};

static PgbQuery q_session_seen = {
	"UPDATE bank.sessions SET last_seen_at = now() WHERE id = $1",
	1, {INT8OID}
};

static PgbQuery q_session_revoke = {
	"UPDATE bank.sessions SET revoked_at = now(), revoked_reason = $2"
	" WHERE id = $1 AND revoked_at IS NULL",
	2, {INT8OID, TEXTOID}
};

static PgbQuery q_sessions_revoke_others = {
	"UPDATE bank.sessions SET revoked_at = now(), revoked_reason = 'password_changed'"
	" WHERE customer_id = $1 AND id <> $2 AND revoked_at IS NULL",
	2, {INT8OID, INT8OID}
};

static PgbQuery q_customer_lock = {
	"SELECT email, password_hash, mfa_enabled, mfa_secret, mfa_pending_secret, mfa_last_step"
	" FROM bank.customers WHERE id = $1 AND erased_at IS NULL FOR NO KEY UPDATE",
	1, {INT8OID}
};

static PgbQuery q_set_password = {
	"UPDATE bank.customers SET password_hash = $2, password_changed_at = now() WHERE id = $1",
	2, {INT8OID, TEXTOID}
};

static PgbQuery q_mfa_pending = {
	"UPDATE bank.customers SET mfa_pending_secret = $2 WHERE id = $1",
	2, {INT8OID, BYTEAOID}
};

static PgbQuery q_mfa_enable = {
	"UPDATE bank.customers SET mfa_secret = mfa_pending_secret, mfa_pending_secret = NULL,"
	" mfa_enabled = true, mfa_last_step = $2 WHERE id = $1",
	2, {INT8OID, INT8OID}
};

static PgbQuery q_mfa_disable = {
	"UPDATE bank.customers SET mfa_secret = NULL, mfa_pending_secret = NULL,"
	" mfa_enabled = false, mfa_last_step = $2 WHERE id = $1",
	2, {INT8OID, INT8OID}
};

static PgbQuery q_kyc_lock = {
	"SELECT kyc_status::text FROM bank.customers WHERE id = $1 FOR NO KEY UPDATE",
	1, {INT8OID}
};

static PgbQuery q_kyc_set = {
	"UPDATE bank.customers SET kyc_status = $2::bank.kyc_status, kyc_updated_at = now()"
	" WHERE id = $1",
	2, {INT8OID, TEXTOID}
};

static PgbQuery q_scope_ok = {
	"SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_proc p"
	" WHERE p.pronamespace = 'bank'::pg_catalog.regnamespace AND p.proname = $2"
	" AND pg_catalog.has_function_privilege($1, p.oid, 'EXECUTE'))",
	2, {NAMEOID, NAMEOID}
};

static PgbQuery q_new_api_key = {
	"INSERT INTO bank.api_keys (name, role, scopes, prefix, secret_hash, created_by, expires_at)"
	" VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
	7, {TEXTOID, NAMEOID, TEXTARRAYOID, TEXTOID, BYTEAOID, NAMEOID, TIMESTAMPTZOID}
};

static PgbQuery q_api_key_lock = {
	"SELECT revoked_at IS NOT NULL FROM bank.api_keys WHERE id = $1 FOR UPDATE",
	1, {INT8OID}
};

static PgbQuery q_api_key_revoke = {
	"UPDATE bank.api_keys SET revoked_at = now() WHERE id = $1",
	1, {INT8OID}
};

static PgbQuery q_list_api_keys = {
	"SELECT id, name::text, role, scopes, prefix, created_by, created_at, expires_at, revoked_at"
	" FROM bank.api_keys ORDER BY id",
	0, {InvalidOid}
};

/* ---------------------------------------------------------------------
 * Helpers: callers, emails, passwords
 * ---------------------------------------------------------------------
 */

static void
require_customer(const char *action, Principal *p)
{
	AuthCaller(action, p);
	if (p->kind != PRINCIPAL_CUSTOMER)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_NOT_AUTHENTICATED),
				 errmsg("not authenticated"),
				 errhint("Call bank.authenticate() with the customer's access token in this transaction first.")));
}

static void
require_staff(const char *action, Principal *p)
{
	AuthCaller(action, p);
	if (p->kind != PRINCIPAL_STAFF && p->kind != PRINCIPAL_API_KEY)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("only staff may call %s", action)));
}

static char *
id_text(int64 id)
{
	return psprintf(INT64_FORMAT, id);
}

/* blanks (spaces, tabs) trimmed from both ends, as a palloc'd copy */
static char *
trim_blanks(const char *s)
{
	const char *end;

	while (*s == ' ' || *s == '\t')
		s++;
	for (end = s + strlen(s); end > s && (end[-1] == ' ' || end[-1] == '\t'); end--)
		;
	return pnstrdup(s, end - s);
}

/*
 * The email trimmed and checked exactly as bank.create_customer does (see
 * account.c); lower-casing is left to SQL's lower().  PB023 otherwise, the
 * address never in the message.
 */
char *
CustomerCheckedEmail(const char *email)
{
	char	   *norm = trim_blanks(email);
	const char *at = strchr(norm, '@');
	const char *p;

	for (p = norm; *p; p++)
		if ((unsigned char) *p < 0x21 || *p == 0x7f)
			break;
	if (at == NULL || at == norm || at[1] == '\0' || strchr(at + 1, '@') != NULL ||
		pg_mbstrlen(norm) > MAX_EMAIL_CHARS || *p != '\0')
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_ARGUMENT),
				 errmsg("email is not a valid address")));
	return norm;
}

/* the password policy: 12 to 1000 characters and not the email (PB045) */
static void
check_password_policy(const char *password, const char *email)
{
	int			len = pg_mbstrlen(password);
	char	   *pw_lower,
			   *email_lower;

	if (len < MIN_PASSWORD_CHARS || len > MAX_PASSWORD_CHARS)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_WEAK_PASSWORD),
				 errmsg("password must be %d to %d characters long",
						MIN_PASSWORD_CHARS, MAX_PASSWORD_CHARS)));
	pw_lower = str_tolower(password, strlen(password), DEFAULT_COLLATION_OID);
	email_lower = str_tolower(email, strlen(email), DEFAULT_COLLATION_OID);
	if (strcmp(pw_lower, email_lower) == 0 || strcmp(trim_blanks(pw_lower), email_lower) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_WEAK_PASSWORD),
				 errmsg("password must not be the email address")));
}

/* base64 of SHA-256 of the password: what bcrypt sees (see file header) */
static char *
password_prehash(const char *password)
{
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	int			enclen = pg_b64_enc_len(sizeof(digest));
	char	   *out = palloc(enclen + 1);
	int			n;

	AuthSha256((const uint8 *) password, strlen(password), digest);
	n = pg_b64_encode((const char *) digest, sizeof(digest), out, enclen);
	if (n < 0)
		elog(ERROR, "pgbank: base64 encoding failed");
	out[n] = '\0';
	explicit_bzero(digest, sizeof(digest));
	return out;
}

static char *
crypt_call(const char *prehash, const char *salt)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		args[2];
	bool		isnull;
	Datum		d;

	args[0] = CStringGetTextDatum(prehash);
	args[1] = CStringGetTextDatum(salt);
	d = PgcryptoCall("crypt", 2, types, args, &isnull);
	if (isnull)
		elog(ERROR, "pgbank: crypt() returned NULL");
	return TextDatumGetCString(d);
}

/* a new bcrypt hash of password at the current cost */
static char *
password_hash(const char *password)
{
	Oid			types[2] = {TEXTOID, INT4OID};
	Datum		args[2];
	bool		isnull;
	Datum		salt;

	args[0] = CStringGetTextDatum("bf");
	args[1] = Int32GetDatum(pgb_bcrypt_cost);
	salt = PgcryptoCall("gen_salt", 2, types, args, &isnull);
	if (isnull)
		elog(ERROR, "pgbank: gen_salt() returned NULL");
	return crypt_call(password_prehash(password), TextDatumGetCString(salt));
}

/* one bcrypt: does password match hash? */
static bool
password_matches(const char *password, const char *hash)
{
	char	   *computed = crypt_call(password_prehash(password), hash);
	size_t		len = strlen(hash);

	return strlen(computed) == len &&
		AuthEqual((const uint8 *) computed, (const uint8 *) hash, len);
}

/* the dummy hash of the current cost (see file header) */
static const char *
dummy_password_hash(void)
{
	if (dummy_cost != pgb_bcrypt_cost || dummy_hash[0] == '\0')
	{
		uint8		rnd[16];
		char	   *h;

		AuthRandom(rnd, sizeof(rnd));
		h = password_hash(AuthBase64Url(rnd, sizeof(rnd)));
		strlcpy(dummy_hash, h, sizeof(dummy_hash));
		dummy_cost = pgb_bcrypt_cost;
	}
	return dummy_hash;
}

static char *
reason_json(const char *reason)
{
	return psprintf("{\"reason\": %s}", AuditJsonString(reason));
}

/* ---------------------------------------------------------------------
 * TOTP (RFC 6238 over RFC 4226) and base32 (RFC 4648)
 * ---------------------------------------------------------------------
 */

static const char b32_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

static char *
base32_encode(const uint8 *data, int len)
{
	StringInfoData buf;
	uint32		acc = 0;
	int			bits = 0;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < len; i++)
	{
		acc = (acc << 8) | data[i];
		bits += 8;
		while (bits >= 5)
		{
			appendStringInfoChar(&buf, b32_alphabet[(acc >> (bits - 5)) & 31]);
			bits -= 5;
		}
	}
	if (bits > 0)
		appendStringInfoChar(&buf, b32_alphabet[(acc << (5 - bits)) & 31]);
	return buf.data;
}

/* decode base32 (either case, trailing '=' allowed); -1 when invalid */
static int
base32_decode(const char *s, uint8 *out, int outlen)
{
	uint32		acc = 0;
	int			bits = 0;
	int			n = 0;
	const char *p;

	for (p = s; *p && *p != '='; p++)
	{
		const char *hit = strchr(b32_alphabet, pg_toupper((unsigned char) *p));

		if (hit == NULL || *hit == '\0')
			return -1;
		acc = (acc << 5) | (uint32) (hit - b32_alphabet);
		bits += 5;
		if (bits >= 8)
		{
			if (n >= outlen)
				return -1;
			out[n++] = (uint8) (acc >> (bits - 8));
			bits -= 8;
		}
	}
	for (; *p; p++)
		if (*p != '=')
			return -1;
	return n;
}

/* the HOTP value of key at counter, digits long, into out (9 bytes) */
static void
hotp(const uint8 *key, int keylen, uint64 counter, int digits, char *out)
{
	uint8		msg[8];
	uint8		mac[SHA1_DIGEST_BYTES];
	uint32		bin;
	uint32		mod = 1;
	int			off,
				i;

	for (i = 7; i >= 0; i--)
	{
		msg[i] = (uint8) (counter & 0xff);
		counter >>= 8;
	}
	AuthHmac(PG_SHA1, key, keylen, msg, sizeof(msg), mac, sizeof(mac));
	off = mac[sizeof(mac) - 1] & 0x0f;
	bin = ((uint32) (mac[off] & 0x7f) << 24) | ((uint32) mac[off + 1] << 16) |
		((uint32) mac[off + 2] << 8) | (uint32) mac[off + 3];
	for (i = 0; i < digits; i++)
		mod *= 10;
	snprintf(out, 9, "%0*u", digits, bin % mod);
}

/* the RFC 6238 time step of a timestamp */
static int64
totp_step(TimestampTz t)
{
	pg_time_t	secs = timestamptz_to_time_t(t);

	return (int64) (secs / TOTP_PERIOD);
}

/*
 * Does code match key at a step from now-1 to now+1 that is after
 * last_step?  On success *step is the step it matched.
 */
static bool
totp_verify(const uint8 *key, int keylen, const char *code, int64 last_step, int64 *step)
{
	int64		now = totp_step(GetCurrentTimestamp());
	bool		ok = false;
	int64		s;
	const char *p;

	if (strlen(code) != TOTP_DIGITS)
		return false;
	for (p = code; *p; p++)
		if (*p < '0' || *p > '9')
			return false;
	for (s = now - 1; s <= now + 1; s++)
	{
		char		want[9];

		hotp(key, keylen, (uint64) s, TOTP_DIGITS, want);
		if (AuthEqual((const uint8 *) want, (const uint8 *) code, TOTP_DIGITS) &&
			s > last_step && !ok)
		{
			ok = true;
			*step = s;
		}
	}
	return ok;
}

/* verify a code against an encrypted secret (a column Datum) */
static bool
totp_verify_stored(Datum secret, int64 customer, const char *code, int64 last_step,
				   int64 *step)
{
	bytea	   *key = PiiUnwrap(secret, "two-factor secret", customer);

	return totp_verify((const uint8 *) VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key),
					   code, last_step, step);
}

/* a code argument: NULL is PB022, over 16 characters PB023 */
static char *
code_arg(FunctionCallInfo fcinfo, int argno)
{
	char	   *code;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_PGB_NULL_ARGUMENT), errmsg("code must not be null")));
	code = TextDatumGetCString(PG_GETARG_DATUM(argno));
	if (strlen(code) > MAX_CODE_CHARS)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_ARGUMENT),
				 errmsg("code must be at most %d characters long", MAX_CODE_CHARS)));
	return code;
}

/* ---------------------------------------------------------------------
 * Tokens and bank.auth_result
 * ---------------------------------------------------------------------
 */

typedef struct Issued
{
	char	   *access_token;
	char	   *refresh_token;
	TimestampTz access_expires;
	TimestampTz refresh_expires;
} Issued;

/*
 * Issue a refresh token (stored as its SHA-256) and an access token for a
 * session.  Inside SPI_connect.
 */
static void
issue_tokens(int64 customer, int64 session, TimestampTz session_expires, Issued *out)
{
	uint8		rnd[REFRESH_TOKEN_BYTES];
	uint8		jti[16];
	Datum		v[2];
	pg_time_t	now = timestamptz_to_time_t(GetCurrentTimestamp());
	pg_time_t	exp = now + pgb_access_token_ttl;
	char	   *claims;

	AuthRandom(rnd, sizeof(rnd));
	out->refresh_token = AuthBase64Url(rnd, sizeof(rnd));
	explicit_bzero(rnd, sizeof(rnd));
	v[0] = PointerGetDatum(AuthSha256Bytea(out->refresh_token));
	v[1] = Int64GetDatum(session);
	PgbExec(&q_new_refresh, v, NULL, false, 0);
	out->refresh_expires = session_expires;

	AuthRandom(jti, sizeof(jti));
	claims = psprintf("{\"iss\":%s,\"aud\":%s,\"sub\":\"" INT64_FORMAT "\","
					  "\"sid\":\"" INT64_FORMAT "\",\"role\":\"bank_customer\","
					  "\"iat\":%lld,\"nbf\":%lld,\"exp\":%lld,\"jti\":\"%s\"}",
					  AuditJsonString(pgb_jwt_issuer), AuditJsonString(pgb_jwt_audience),
					  customer, session, (long long) now, (long long) now,
					  (long long) exp, AuthBase64Url(jti, sizeof(jti)));
	out->access_token = AuthJwtSign(claims);
	out->access_expires = time_t_to_timestamptz(exp);
}

/* the bank.auth_result of a call; disconnects from SPI */
static Datum
auth_result(FunctionCallInfo fcinfo, const char *status, int64 customer, const Issued *t)
{
	TupleDesc	tupdesc;
	Datum		values[6];
	bool		nulls[6] = {false, true, true, true, true, true};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "pgbank: function must return a composite type");
	values[0] = CStringGetTextDatum(status);
	if (t != NULL)
	{
		values[1] = Int64GetDatum(customer);
		values[2] = CStringGetTextDatum(t->access_token);
		values[3] = CStringGetTextDatum(t->refresh_token);
		values[4] = TimestampTzGetDatum(t->access_expires);
		values[5] = TimestampTzGetDatum(t->refresh_expires);
		memset(nulls, 0, sizeof(nulls));
	}
	tupdesc = BlessTupleDesc(tupdesc);
	return PgbFinishWithTuple(heap_form_tuple(tupdesc, values, nulls), tupdesc);
}

/* ---------------------------------------------------------------------
 * Registration and logins
 * ---------------------------------------------------------------------
 */

PG_FUNCTION_INFO_V1(pgbank_register);
Datum
pgbank_register(PG_FUNCTION_ARGS)
{
	static const char *const names[] = {"email", "password", "first_name", "last_name"};
	char	   *email;
	char	   *password;
	char	   *first;
	char	   *last;
	char	   *phone = NULL;
	char	   *hash;
	Datum		v[4];
	int64		id;

	PgbRequireArgs(fcinfo, 4, names);
	email = CustomerCheckedEmail(TextDatumGetCString(PG_GETARG_DATUM(0)));
	password = TextDatumGetCString(PG_GETARG_DATUM(1));
	first = TextDatumGetCString(PG_GETARG_DATUM(2));
	last = TextDatumGetCString(PG_GETARG_DATUM(3));
	if (!PG_ARGISNULL(4))
		phone = TextDatumGetCString(PG_GETARG_DATUM(4));
	PgbCheckLength("first_name", first, 1, 100);
	PgbCheckLength("last_name", last, 1, 100);
	check_password_policy(password, email);
	EngineRequireReadCommitted();

	hash = password_hash(password);
	SPI_connect();
	v[0] = CStringGetTextDatum(email);
	v[1] = CStringGetTextDatum(first);
	v[2] = CStringGetTextDatum(last);
	v[3] = CStringGetTextDatum(hash);
	if (PgbExec(&q_register, v, NULL, false, 0) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_EMAIL_TAKEN),
				 errmsg("a customer with this email already exists")));
	id = PgbGetInt64(0, 1);
	if (phone != NULL)
		PiiStore(id, phone, NULL, NULL);
	AuditWrite(NULL, id, "customer.register", "customer", id_text(id), NULL);
	SPI_finish();
	PG_RETURN_INT64(id);
}

/* a failed login by a known customer: count, maybe lock out, audit */
static void
login_failed(int64 customer, const char *reason)
{
	Datum		v[3];
	bool		lockout;

	v[0] = Int64GetDatum(customer);
	v[1] = Int32GetDatum(pgb_max_failed_logins);
	v[2] = Int32GetDatum(pgb_lockout_duration);
	lockout = PgbExec(&q_login_failed, v, NULL, false, 0) == 1 &&
		DatumGetBool(PgbGet(0, 1, &(bool) {false}));
	AuditWrite(NULL, customer, "auth.login_failed", "credential", NULL, reason_json(reason));
	if (lockout)
		AuditWrite(NULL, customer, "auth.lockout", "credential", NULL,
				   psprintf("{\"failed_logins\": %d, \"seconds\": %d}",
							pgb_max_failed_logins, pgb_lockout_duration));
}

PG_FUNCTION_INFO_V1(pgbank_login);
Datum
pgbank_login(PG_FUNCTION_ARGS)
{
	static const char *const names[] = {"email", "password"};
	char	   *email;
	char	   *password;
	char	   *totp = NULL;
	Datum		v[2];
	bool		found;
	int64		customer = 0;
	char	   *hash = NULL;
	bool		locked = false;
	bool		mfa = false;
	bool		erased = false;
	bool		password_ok;
	int64		last_step = 0;
	int64		step = 0;
	Datum		secret = (Datum) 0;
	bool		secret_null = true;
	Issued		t;

	PgbRequireArgs(fcinfo, 2, names);
	email = trim_blanks(TextDatumGetCString(PG_GETARG_DATUM(0)));
	password = TextDatumGetCString(PG_GETARG_DATUM(1));
	if (pg_mbstrlen(email) > MAX_EMAIL_CHARS)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_ARGUMENT),
				 errmsg("email must be at most %d characters long", MAX_EMAIL_CHARS)));
	if (pg_mbstrlen(password) > MAX_PASSWORD_CHARS)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_ARGUMENT),
				 errmsg("password must be at most %d characters long", MAX_PASSWORD_CHARS)));
	if (!PG_ARGISNULL(2))
		totp = code_arg(fcinfo, 2);
	EngineRequireReadCommitted();

	SPI_connect();
	v[0] = CStringGetTextDatum(email);
	found = PgbExec(&q_login_lookup, v, NULL, false, 1) == 1;
	if (found)
	{
		customer = PgbGetInt64(0, 1);
		hash = PgbGetText(0, 2);
		locked = DatumGetBool(PgbGet(0, 3, &(bool) {false}));
		mfa = DatumGetBool(PgbGet(0, 4, &(bool) {false}));
		secret = PgbGet(0, 5, &secret_null);
		last_step = PgbGetInt64(0, 6);
		erased = DatumGetBool(PgbGet(0, 7, &(bool) {false}));
	}

	/* exactly one bcrypt, whatever was found */
	if (hash == NULL || erased)
	{
		(void) password_matches(password, dummy_password_hash());
		password_ok = false;
	}
	else
		password_ok = password_matches(password, hash);

	if (!found)
	{
		AuditWrite(NULL, 0, "auth.login_failed", "credential", NULL, reason_json("unknown_email"));
		return auth_result(fcinfo, "denied", 0, NULL);
	}
	if (locked)
	{
		AuditWrite(NULL, customer, "auth.login_failed", "credential", NULL, reason_json("locked"));
		return auth_result(fcinfo, "denied", 0, NULL);
	}
	if (!password_ok)
	{
		login_failed(customer, hash == NULL || erased ? "no_password" : "password");
		return auth_result(fcinfo, "denied", 0, NULL);
	}
	if (mfa)
	{
		if (totp == NULL)
			return auth_result(fcinfo, "mfa_required", 0, NULL);
		if (secret_null || !totp_verify_stored(secret, customer, totp, last_step, &step))
		{
			login_failed(customer, "totp");
			return auth_result(fcinfo, "denied", 0, NULL);
		}
	}

	/* success: a session, its first refresh token and an access token */
	v[0] = Int64GetDatum(customer);
	v[1] = Int64GetDatum(step);
	PgbExec(&q_login_ok, v, NULL, false, 0);
	v[1] = Int32GetDatum(pgb_refresh_token_ttl);
	PgbExec(&q_new_session, v, NULL, false, 0);
	{
		int64		session = PgbGetInt64(0, 1);
		TimestampTz expires = DatumGetTimestampTz(PgbGet(0, 2, &(bool) {false}));

		issue_tokens(customer, session, expires, &t);
		AuditWrite(NULL, customer, "auth.login", "session", id_text(session),
				   mfa ? "{\"mfa\": true}" : "{\"mfa\": false}");
	}
	return auth_result(fcinfo, "ok", customer, &t);
}

PG_FUNCTION_INFO_V1(pgbank_refresh);
Datum
pgbank_refresh(PG_FUNCTION_ARGS)
{
	char	   *token;
	Datum		v[2];
	Datum		hash;
	int64		session;
	int64		customer;
	bool		used,
				revoked,
				expired,
				idle,
				erased;
	TimestampTz expires;
	Issued		t;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_PGB_NULL_ARGUMENT), errmsg("refresh_token must not be null")));
	token = TextDatumGetCString(PG_GETARG_DATUM(0));
	if (strlen(token) > MAX_REFRESH_TOKEN_CHARS)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_ARGUMENT),
				 errmsg("refresh_token must be at most %d characters long",
						MAX_REFRESH_TOKEN_CHARS)));
	EngineRequireReadCommitted();

	SPI_connect();
	hash = PointerGetDatum(AuthSha256Bytea(token));
	v[0] = hash;
	v[1] = Int32GetDatum(pgb_idle_timeout);
	if (PgbExec(&q_refresh_lookup, v, NULL, false, 1) != 1)
		return auth_result(fcinfo, "denied", 0, NULL);
	session = PgbGetInt64(0, 1);
	used = DatumGetBool(PgbGet(0, 2, &(bool) {false}));
	customer = PgbGetInt64(0, 3);
	revoked = DatumGetBool(PgbGet(0, 4, &(bool) {false}));
	expired = DatumGetBool(PgbGet(0, 5, &(bool) {false}));
	idle = DatumGetBool(PgbGet(0, 6, &(bool) {false}));
	erased = DatumGetBool(PgbGet(0, 7, &(bool) {false}));
	expires = DatumGetTimestampTz(PgbGet(0, 8, &(bool) {false}));

	v[0] = Int64GetDatum(session);
	if (used)
	{
		/* reuse: someone holds a copy of an old token; end the family */
		v[1] = CStringGetTextDatum("refresh_reuse");
		PgbExec(&q_session_revoke, v, NULL, false, 0);
		AuditWrite(NULL, customer, "auth.refresh_reuse", "session", id_text(session), NULL);
		return auth_result(fcinfo, "denied", 0, NULL);
	}
	if (revoked || expired || erased)
		return auth_result(fcinfo, "denied", 0, NULL);
	if (idle)
	{
		v[1] = CStringGetTextDatum("idle");
		PgbExec(&q_session_revoke, v, NULL, false, 0);
		return auth_result(fcinfo, "denied", 0, NULL);
	}

	PgbExec(&q_refresh_use, &hash, NULL, false, 0);
	PgbExec(&q_session_seen, v, NULL, false, 0);
	issue_tokens(customer, session, expires, &t);
	AuditWrite(NULL, customer, "auth.refresh", "session", id_text(session), NULL);
	return auth_result(fcinfo, "ok", customer, &t);
}

/*
 * bank.end_session(refresh_token): the session a refresh token belongs to
 * ends, whether the token is current, already used or its access token
 * expired (an already used token is a copy someone kept: the session ends
 * as a reuse, audited auth.refresh_reuse): a browser logging out holds its
 * refresh token (in a cookie)
 * longer than its short-lived access token, and logging out must not fail
 * because the latter expired.  Holding the token is the credential, as for
 * bank.refresh.  Nothing for NULL or a token that matches no session: a
 * logout is idempotent, and says nothing about which tokens exist.
 */
PG_FUNCTION_INFO_V1(pgbank_end_session);
Datum
pgbank_end_session(PG_FUNCTION_ARGS)
{
	char	   *token;
	Datum		v[2];
	int64		session;

	if (PG_ARGISNULL(0))
		PG_RETURN_VOID();
	token = TextDatumGetCString(PG_GETARG_DATUM(0));
	if (strlen(token) > MAX_REFRESH_TOKEN_CHARS)
		PG_RETURN_VOID();
	EngineRequireReadCommitted();
	SPI_connect();
	v[0] = PointerGetDatum(AuthSha256Bytea(token));
	v[1] = Int32GetDatum(pgb_idle_timeout);
	if (PgbExec(&q_refresh_lookup, v, NULL, false, 1) == 1)
	{
		int64		customer = PgbGetInt64(0, 3);
		bool		used = DatumGetBool(PgbGet(0, 2, &(bool) {false}));

		/*
		 * A browser holds its latest refresh token: an older one is a copy
		 * someone kept, as for bank.refresh (reuse ends the session, and
		 * says so).
		 */
		session = PgbGetInt64(0, 1);
		v[0] = Int64GetDatum(session);
		v[1] = CStringGetTextDatum(used ? "refresh_reuse" : "logout");
		if (PgbExec(&q_session_revoke, v, NULL, false, 0) == 1)
			AuditWrite(NULL, customer, used ? "auth.refresh_reuse" : "auth.logout", "session",
					   id_text(session), NULL);
	}
	SPI_finish();
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(pgbank_logout);
Datum
pgbank_logout(PG_FUNCTION_ARGS)
{
	Principal	p;
	Datum		v[2];

	require_customer("logout", &p);
	EngineRequireReadCommitted();
	SPI_connect();
	v[0] = Int64GetDatum(p.session_id);
	v[1] = CStringGetTextDatum("logout");
	PgbExec(&q_session_revoke, v, NULL, false, 0);
	AuditWrite(&p, 0, "auth.logout", "session", id_text(p.session_id), NULL);
	SPI_finish();
	PG_RETURN_VOID();
}

/* lock the calling customer's row (q_customer_lock); PB021 when gone */
static void
lock_customer(int64 customer)
{
	Datum		v = Int64GetDatum(customer);

	if (PgbExec(&q_customer_lock, &v, NULL, false, 1) != 1)
		CustomerNotFound(customer);
}

PG_FUNCTION_INFO_V1(pgbank_change_password);
Datum
pgbank_change_password(PG_FUNCTION_ARGS)
{
	static const char *const names[] = {"old_password", "new_password"};
	Principal	p;
	char	   *old_pw;
	char	   *new_pw;
	char	   *email;
	char	   *hash;
	char	   *new_hash;
	Datum		v[2];

	require_customer("change_password", &p);
	PgbRequireArgs(fcinfo, 2, names);
	old_pw = TextDatumGetCString(PG_GETARG_DATUM(0));
	new_pw = TextDatumGetCString(PG_GETARG_DATUM(1));
	if (pg_mbstrlen(old_pw) > MAX_PASSWORD_CHARS)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_ARGUMENT),
				 errmsg("old_password must be at most %d characters long", MAX_PASSWORD_CHARS)));
	EngineRequireReadCommitted();

	SPI_connect();
	lock_customer(p.customer_id);
	email = PgbGetText(0, 1);
	hash = PgbGetText(0, 2);
	if (hash == NULL)
	{
		(void) password_matches(old_pw, dummy_password_hash());
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PASSWORD),
				 errmsg("the current password is not correct")));
	}
	if (!password_matches(old_pw, hash))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PASSWORD),
				 errmsg("the current password is not correct")));
	check_password_policy(new_pw, email);
	new_hash = password_hash(new_pw);

	v[0] = Int64GetDatum(p.customer_id);
	v[1] = CStringGetTextDatum(new_hash);
	PgbExec(&q_set_password, v, NULL, false, 0);
	v[1] = Int64GetDatum(p.session_id);
	PgbExec(&q_sessions_revoke_others, v, NULL, false, 0);
	AuditWrite(&p, 0, "auth.password_changed", "credential", id_text(p.customer_id),
			   psprintf("{\"sessions_revoked\": " UINT64_FORMAT "}", SPI_processed));
	SPI_finish();
	PG_RETURN_VOID();
}

/* ---------------------------------------------------------------------
 * Second factor
 * ---------------------------------------------------------------------
 */

/* percent-encode everything but RFC 3986 unreserved characters and '@' */
static char *
uri_escape(const char *s)
{
	StringInfoData buf;
	const unsigned char *p;

	initStringInfo(&buf);
	for (p = (const unsigned char *) s; *p; p++)
	{
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
			*p == '-' || *p == '.' || *p == '_' || *p == '~' || *p == '@')
			appendStringInfoChar(&buf, (char) *p);
		else
			appendStringInfo(&buf, "%%%02X", *p);
	}
	return buf.data;
}

PG_FUNCTION_INFO_V1(pgbank_mfa_enroll);
Datum
pgbank_mfa_enroll(PG_FUNCTION_ARGS)
{
	Principal	p;
	char	   *email;
	uint8		raw[TOTP_SECRET_BYTES];
	bytea	   *plain;
	char	   *b32;
	Datum		v[2];
	TupleDesc	tupdesc;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	require_customer("mfa_enroll", &p);
	EngineRequireReadCommitted();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "pgbank: function must return a composite type");

	SPI_connect();
	lock_customer(p.customer_id);
	email = PgbGetText(0, 1);
	if (DatumGetBool(PgbGet(0, 3, &(bool) {false})))
		ereport(ERROR,
				(errcode(ERRCODE_PGB_MFA_STATE),
				 errmsg("two-factor authentication is already enabled"),
				 errhint("Disable it with bank.mfa_disable() first.")));
	AuthRandom(raw, sizeof(raw));
	plain = PgbBytea(raw, sizeof(raw));
	b32 = base32_encode(raw, sizeof(raw));
	explicit_bzero(raw, sizeof(raw));

	v[0] = Int64GetDatum(p.customer_id);
	v[1] = PiiWrap(plain, "two-factor secret", p.customer_id);
	PgbExec(&q_mfa_pending, v, NULL, false, 0);
	AuditWrite(&p, 0, "auth.mfa_enroll", "credential", id_text(p.customer_id), NULL);

	values[0] = CStringGetTextDatum(b32);
	values[1] = CStringGetTextDatum(psprintf("otpauth://totp/pgbank:%s?secret=%s&issuer=pgbank"
											 "&algorithm=SHA1&digits=%d&period=%d",
											 uri_escape(email), b32, TOTP_DIGITS, TOTP_PERIOD));
	tupdesc = BlessTupleDesc(tupdesc);
	return PgbFinishWithTuple(heap_form_tuple(tupdesc, values, nulls), tupdesc);
}

/*
 * Turn TOTP on (with a code of the secret being enrolled) or off (with a
 * code of the current secret).  The code's step is recorded either way, so
 * it cannot be used again.
 */
static Datum
mfa_change(FunctionCallInfo fcinfo, bool enable)
{
	Principal	p;
	char	   *code;
	bool		isnull;
	Datum		secret;
	int64		step = 0;
	Datum		v[2];

	require_customer(enable ? "mfa_confirm" : "mfa_disable", &p);
	code = code_arg(fcinfo, 0);
	EngineRequireReadCommitted();

	SPI_connect();
	lock_customer(p.customer_id);
	if (enable)
	{
		secret = PgbGet(0, 5, &isnull);
		if (isnull)
			ereport(ERROR,
					(errcode(ERRCODE_PGB_MFA_STATE),
					 errmsg("no two-factor enrolment is in progress"),
					 errhint("Start one with bank.mfa_enroll().")));
	}
	else
	{
		secret = PgbGet(0, 4, &isnull);
		if (!DatumGetBool(PgbGet(0, 3, &(bool) {false})) || isnull)
			ereport(ERROR,
					(errcode(ERRCODE_PGB_MFA_STATE),
					 errmsg("two-factor authentication is not enabled")));
	}
	if (!totp_verify_stored(secret, p.customer_id, code, PgbGetInt64(0, 6), &step))
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_MFA_CODE),
				 errmsg("invalid two-factor code")));
	v[0] = Int64GetDatum(p.customer_id);
	v[1] = Int64GetDatum(step);
	PgbExec(enable ? &q_mfa_enable : &q_mfa_disable, v, NULL, false, 0);
	AuditWrite(&p, 0, enable ? "auth.mfa_enabled" : "auth.mfa_disabled", "credential",
			   id_text(p.customer_id), NULL);
	SPI_finish();
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(pgbank_mfa_confirm);
Datum
pgbank_mfa_confirm(PG_FUNCTION_ARGS)
{
	return mfa_change(fcinfo, true);
}

PG_FUNCTION_INFO_V1(pgbank_mfa_disable);
Datum
pgbank_mfa_disable(PG_FUNCTION_ARGS)
{
	return mfa_change(fcinfo, false);
}

/* bank.totp_code(secret base32, at, digits): for operators and tests */
PG_FUNCTION_INFO_V1(pgbank_totp_code);
Datum
pgbank_totp_code(PG_FUNCTION_ARGS)
{
	char	   *secret = TextDatumGetCString(PG_GETARG_DATUM(0));
	TimestampTz at = PG_GETARG_TIMESTAMPTZ(1);
	int32		digits = PG_GETARG_INT32(2);
	uint8		key[128];
	int			keylen;
	char		out[9];

	if (digits < 6 || digits > 8)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_ARGUMENT),
				 errmsg("digits must be between 6 and 8")));
	if (TIMESTAMP_NOT_FINITE(at) || timestamptz_to_time_t(at) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_ARGUMENT),
				 errmsg("at must be a finite time after 1970-01-01 00:00:00 UTC")));
	keylen = base32_decode(secret, key, sizeof(key));
	if (keylen <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_ARGUMENT),
				 errmsg("secret is not valid base32 of at most %d bytes", (int) sizeof(key))));
	hotp(key, keylen, (uint64) totp_step(at), digits, out);
	explicit_bzero(key, sizeof(key));
	PG_RETURN_TEXT_P(cstring_to_text(out));
}

/* ---------------------------------------------------------------------
 * KYC
 * ---------------------------------------------------------------------
 */

PG_FUNCTION_INFO_V1(pgbank_set_kyc_status);
Datum
pgbank_set_kyc_status(PG_FUNCTION_ARGS)
{
	static const char *const names[] = {"customer_id", "status", "reason"};
	Principal	p;
	int64		customer;
	char	   *status;
	char	   *reason;
	char	   *from;
	Datum		v[2];

	require_staff("set_kyc_status", &p);
	PgbRequireArgs(fcinfo, 3, names);
	customer = PG_GETARG_INT64(0);
	status = DatumGetCString(DirectFunctionCall1(enum_out, PG_GETARG_DATUM(1)));
	reason = TextDatumGetCString(PG_GETARG_DATUM(2));
	PgbCheckLength("reason", reason, 1, PGB_MAX_TEXT_CHARS);
	EngineRequireReadCommitted();

	SPI_connect();
	v[0] = Int64GetDatum(customer);
	if (PgbExec(&q_kyc_lock, v, NULL, false, 1) != 1)
		CustomerNotFound(customer);
	from = PgbGetText(0, 1);
	v[1] = CStringGetTextDatum(status);
	PgbExec(&q_kyc_set, v, NULL, false, 0);
	AuditWrite(&p, 0, "customer.kyc_status", "customer", id_text(customer),
			   psprintf("{\"from\": %s, \"to\": %s, \"reason\": %s}",
						AuditJsonString(from), AuditJsonString(status), AuditJsonString(reason)));
	SPI_finish();
	PG_RETURN_DATUM(PG_GETARG_DATUM(1));
}

/* ---------------------------------------------------------------------
 * API keys
 * ---------------------------------------------------------------------
 */

PG_FUNCTION_INFO_V1(pgbank_create_api_key);
Datum
pgbank_create_api_key(PG_FUNCTION_ARGS)
{
	static const char *const names[] = {"role", "scopes", "expires_at", "name"};
	Principal	p;
	char	   *role;
	ArrayType  *scopes;
	TimestampTz expires;
	char	   *name;
	Datum	   *elems;
	bool	   *elem_nulls;
	int			nelems;
	int			i;
	bool		role_ok = false;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	Interval	year = {0, 0, 12};
	TimestampTz limit;
	StringInfoData meta;
	int			scope_chars = 0;
	uint8		rnd[API_KEY_BYTES];
	char	   *key;
	Datum		v[7];
	int64		id;
	TupleDesc	tupdesc;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	require_staff("create_api_key", &p);
	PgbRequireArgs(fcinfo, 4, names);
	role = pstrdup(NameStr(*PG_GETARG_NAME(0)));
	scopes = PG_GETARG_ARRAYTYPE_P(1);
	expires = PG_GETARG_TIMESTAMPTZ(2);
	name = TextDatumGetCString(PG_GETARG_DATUM(3));
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "pgbank: function must return a composite type");

	for (i = 0; i < lengthof(api_key_roles); i++)
		if (strcmp(role, api_key_roles[i]) == 0)
			role_ok = true;
	if (!role_ok)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_ARGUMENT),
				 errmsg("role must be bank_teller, bank_auditor, bank_service or bank_admin")));
	PgbCheckLength("name", name, 1, 100);
	limit = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
													TimestampTzGetDatum(now),
													PointerGetDatum(&year)));
	if (TIMESTAMP_NOT_FINITE(expires) || expires <= now || expires > limit)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_ARGUMENT),
				 errmsg("expires_at must be in the future and at most one year ahead")));
	if (ARR_NDIM(scopes) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_ARGUMENT),
				 errmsg("scopes must be a one-dimensional array")));
	deconstruct_array(scopes, TEXTOID, -1, false, TYPALIGN_INT, &elems, &elem_nulls, &nelems);
	if (nelems < 1 || nelems > MAX_SCOPES)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_ARGUMENT),
				 errmsg("scopes must hold 1 to %d names", MAX_SCOPES)));
	EngineRequireReadCommitted();

	SPI_connect();
	initStringInfo(&meta);
	appendStringInfo(&meta, "{\"role\": %s, \"scopes\": [", AuditJsonString(role));
	for (i = 0; i < nelems; i++)
	{
		char	   *s;

		if (elem_nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_PGB_NULL_ARGUMENT),
					 errmsg("scopes must not hold nulls")));
		s = TextDatumGetCString(elems[i]);
		scope_chars += strlen(s) + 1;
		if (strcmp(s, "*") != 0)
		{
			Datum		sv[2];

			if (strlen(s) == 0 || strlen(s) >= NAMEDATALEN)
				ereport(ERROR,
						(errcode(ERRCODE_PGB_INVALID_ARGUMENT),
						 errmsg("scope %d is not the name of a bank function", i + 1)));
			sv[0] = DirectFunctionCall1(namein, CStringGetDatum(role));
			sv[1] = DirectFunctionCall1(namein, CStringGetDatum(s));
			PgbExec(&q_scope_ok, sv, NULL, true, 1);
			if (!DatumGetBool(PgbGet(0, 1, &(bool) {false})))
				ereport(ERROR,
						(errcode(ERRCODE_PGB_INVALID_ARGUMENT),
						 errmsg("scope %s is not a bank function that %s may execute", s, role)));
		}
		appendStringInfo(&meta, "%s%s", i > 0 ? ", " : "", AuditJsonString(s));
	}
	appendStringInfoString(&meta, "]}");
	if (scope_chars > 1000)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_ARGUMENT),
				 errmsg("scopes must total at most 1000 characters")));

	AuthRandom(rnd, sizeof(rnd));
	key = psprintf("pbk_%s", AuthBase64Url(rnd, sizeof(rnd)));
	explicit_bzero(rnd, sizeof(rnd));
	v[0] = CStringGetTextDatum(name);
	v[1] = DirectFunctionCall1(namein, CStringGetDatum(role));
	v[2] = PointerGetDatum(scopes);
	v[3] = CStringGetTextDatum(pnstrdup(key, API_KEY_PREFIX_CHARS));
	v[4] = PointerGetDatum(AuthSha256Bytea(key));
	v[5] = DirectFunctionCall1(namein,
							   CStringGetDatum(GetUserNameFromId(GetSessionUserId(), false)));
	v[6] = TimestampTzGetDatum(expires);
	PgbExec(&q_new_api_key, v, NULL, false, 0);
	id = PgbGetInt64(0, 1);
	AuditWrite(&p, 0, "api_key.create", "api_key", id_text(id), meta.data);

	values[0] = Int64GetDatum(id);
	values[1] = CStringGetTextDatum(key);
	tupdesc = BlessTupleDesc(tupdesc);
	return PgbFinishWithTuple(heap_form_tuple(tupdesc, values, nulls), tupdesc);
}

PG_FUNCTION_INFO_V1(pgbank_revoke_api_key);
Datum
pgbank_revoke_api_key(PG_FUNCTION_ARGS)
{
	Principal	p;
	int64		id = PG_GETARG_INT64(0);
	Datum		v = Int64GetDatum(id);

	require_staff("revoke_api_key", &p);
	EngineRequireReadCommitted();
	SPI_connect();
	if (PgbExec(&q_api_key_lock, &v, NULL, false, 1) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_API_KEY_NOT_FOUND),
				 errmsg("API key " INT64_FORMAT " does not exist", id)));
	if (!DatumGetBool(PgbGet(0, 1, &(bool) {false})))
	{
		PgbExec(&q_api_key_revoke, &v, NULL, false, 0);
		AuditWrite(&p, 0, "api_key.revoke", "api_key", id_text(id), NULL);
	}
	SPI_finish();
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(pgbank_list_api_keys);
Datum
pgbank_list_api_keys(PG_FUNCTION_ARGS)
{
	Principal	p;

	require_staff("list_api_keys", &p);
	SPI_connect();
	PgbExec(&q_list_api_keys, NULL, NULL, true, 0);
	PgbMaterialize(fcinfo);
	SPI_finish();
	return (Datum) 0;
}
