/*-------------------------------------------------------------------------
 *
 * identity.c
 *		Who the caller is: verified credentials held in backend memory for
 *		one transaction, the principal every function acts for, and the
 *		security context the ledger engine writes under.
 *
 * Invariants:
 *	- An identity is established only by verifying a credential:
 *	  bank.authenticate() (an HS256 access token, algorithm pinned, checked
 *	  against pgbank.jwt_secret and the session it names) or
 *	  bank.authenticate_api_key() (a key whose SHA-256 is on file).  It lives
 *	  in this file's static memory, never in a GUC, and is cleared when its
 *	  transaction (or the subtransaction it was set in) ends, however it ends.
 *	- An identity is bound to the role that was current when it was verified.
 *	  If the current role differs later (SET ROLE, RESET ROLE), the identity
 *	  does not apply: customer-facing functions fail with PB041/PB042 and the
 *	  row-level security functions see no customer and no staff authority.
 *	- Without an identity, staff authority comes from role membership of the
 *	  session user's own login (a teller with psql), never from a session
 *	  that logged in as a member of bank_gateway: the HTTP gateway must
 *	  present each request's credential.
 *	- The ledger engine's statements run as bank_engine (BYPASSRLS, NOLOGIN,
 *	  nobody's member), switched in by spi.c with SECURITY_LOCAL_USERID_CHANGE;
 *	  reads a caller may only make for their own rows run as the caller,
 *	  under row-level security.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/genam.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "utils/fmgroids.h"
#include "catalog/pg_authid.h"
#include "commands/extension.h"
#include "parser/parse_func.h"
#include "utils/lsyscache.h"
#include "catalog/pg_type.h"
#include "common/base64.h"
#include "common/cryptohash.h"
#include "common/hmac.h"
#include "common/sha2.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/pg_bswap.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/inval.h"
#include "utils/syscache.h"

#include "pgbank.h"

#define MAX_TOKEN_CHARS 4096
#define MAX_SCOPES_CHARS 1024

/* the identity of the current transaction; kind NONE when there is none */
static struct
{
	PrincipalKind kind;
	Oid			role;			/* current_user when it was verified */
	int			nest_level;		/* transaction nesting level it was set at */
	int64		customer_id;
	int64		session_id;
	int64		api_key_id;
	char		scopes[MAX_SCOPES_CHARS];	/* ",name,name," or ",*," */
} identity;

/* request context for the audit trail (bank.set_request_context) */
static struct
{
	bool		set;
	int			nest_level;
	char		request_id[129];
	char		client_addr[64];
	char		user_agent[513];
} request_ctx;


static PgbQuery q_api_key = {
	"SELECT id, role::text, array_to_string(scopes, ',') FROM bank.api_keys"
	" WHERE secret_hash = $1 AND revoked_at IS NULL AND expires_at > now()",
	1, {BYTEAOID}
};

/*
 * Forget the identity and request context when the transaction ends, and
 * when the subtransaction they were set in is rolled back.
 */
void
IdentityAtEOXact(void)
{
	memset(&identity, 0, sizeof(identity));
	memset(&request_ctx, 0, sizeof(request_ctx));
}

void
IdentityAtEOSubXactAbort(void)
{
	int			level = GetCurrentTransactionNestLevel();

	if (identity.kind != PRINCIPAL_NONE && identity.nest_level >= level)
		memset(&identity, 0, sizeof(identity));
	if (request_ctx.set && request_ctx.nest_level >= level)
		memset(&request_ctx, 0, sizeof(request_ctx));
}

/*
 * The oids of our roles, looked up once and forgotten whenever pg_authid
 * changes (a syscache callback): every statement the engine runs needs
 * bank_engine's, and row-level security asks for the staff roles per row.
 */
enum
{
	ROLE_ENGINE, ROLE_GATEWAY, ROLE_CUSTOMER,
	ROLE_TELLER, ROLE_AUDITOR, ROLE_SERVICE, ROLE_ADMIN,	/* staff, in this order */
	ROLE_COUNT
};
static const char *const role_names[ROLE_COUNT] = {
	"bank_engine", "bank_gateway", "bank_customer",
	"bank_teller", "bank_auditor", "bank_service", "bank_admin"
};
static Oid	role_oids[ROLE_COUNT];
static bool role_oids_valid = false;

static void
role_oids_reset(Datum arg, int cacheid, uint32 hashvalue)
{
	role_oids_valid = false;
}

/* one of our roles' oid, or InvalidOid when it does not exist */
static Oid
role_oid(int role)
{
	static bool registered = false;
	int			i;

	if (!role_oids_valid)
	{
		if (!registered)
		{
			CacheRegisterSyscacheCallback(AUTHOID, role_oids_reset, (Datum) 0);
			registered = true;
		}
		for (i = 0; i < ROLE_COUNT; i++)
			role_oids[i] = get_role_oid(role_names[i], true);
		role_oids_valid = true;
	}
	return role_oids[role];
}

Oid
AuthEngineRole(void)
{
	Oid			oid = role_oid(ROLE_ENGINE);

	if (!OidIsValid(oid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role bank_engine does not exist"),
				 errhint("Reinstall the extension: it creates its roles.")));
	return oid;
}

/* does the session's login role belong to bank_gateway? */
static bool
gateway_session(void)
{
	Oid			gw = role_oid(ROLE_GATEWAY);

	return OidIsValid(gw) && is_member_of_role_nosuper(GetSessionUserId(), gw);
}

/* does role have the privileges of any staff role (or is it a superuser)? */
static bool
role_is_staff(Oid role)
{
	int			i;

	if (superuser_arg(role))
		return true;
	for (i = ROLE_TELLER; i <= ROLE_ADMIN; i++)
	{
		Oid			r = role_oid(i);

		if (OidIsValid(r) && has_privs_of_role(role, r))
			return true;
	}
	return false;
}

/* does role act as a customer (bank_customer's privileges, no staff role)? */
static bool
role_is_customer(Oid role)
{
	Oid			c = role_oid(ROLE_CUSTOMER);

	return OidIsValid(c) && has_privs_of_role(role, c) && !role_is_staff(role);
}

static bool
identity_applies(void)
{
	return identity.kind != PRINCIPAL_NONE && identity.role == GetUserId();
}

static bool
scope_allows(const char *action)
{
	char		needle[NAMEDATALEN + 2];

	if (strstr(identity.scopes, ",*,") != NULL)
		return true;
	snprintf(needle, sizeof(needle), ",%s,", action);
	return strstr(identity.scopes, needle) != NULL;
}

/*
 * The principal the current call acts for, or an error: PB041 when the
 * caller must present a credential and has not, PB042 when the credential of
 * this transaction was verified for another role, 42501 when an API key
 * lacks the scope of action (the SQL function's name).
 */
void
AuthCaller(const char *action, Principal *p)
{
	Oid			user = GetUserId();

	memset(p, 0, sizeof(*p));
	p->role = user;
	if (identity.kind != PRINCIPAL_NONE)
	{
		p->kind = identity.kind;
		p->customer_id = identity.customer_id;
		p->session_id = identity.session_id;
		p->api_key_id = identity.api_key_id;
		if (identity.role != user)
		{
			AuditDenied(p, action, "PB042");
			ereport(ERROR,
					(errcode(ERRCODE_PGB_WRONG_ROLE),
					 errmsg("the credential of this transaction was verified for another role"),
					 errhint("Switch back to the role that called bank.authenticate.")));
		}
		if (identity.kind == PRINCIPAL_API_KEY && !scope_allows(action))
		{
			AuditDenied(p, action, "42501");
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("the API key does not have the scope %s", action)));
		}
		return;
	}
	if (superuser_arg(user) || (!gateway_session() && role_is_staff(user)))
	{
		p->kind = PRINCIPAL_STAFF;
		return;
	}
	AuditDenied(p, action, "PB041");
	ereport(ERROR,
			(errcode(ERRCODE_PGB_NOT_AUTHENTICATED),
			 errmsg("not authenticated"),
			 errhint("Call bank.authenticate() or bank.authenticate_api_key() in this transaction first.")));
}

/* the customer id the caller acts for, or 0 for staff */
int64
AuthCustomer(const char *action)
{
	Principal	p;

	AuthCaller(action, &p);
	return p.kind == PRINCIPAL_CUSTOMER ? p.customer_id : 0;
}

/* ---------------------------------------------------------------------
 * Encoding and HMAC helpers
 * ---------------------------------------------------------------------
 */

/* base64url without padding; returns the palloc'd text */
char *
AuthBase64Url(const uint8 *data, int len)
{
	int			enclen = pg_b64_enc_len(len);
	char	   *out = palloc(enclen + 1);
	int			n = pg_b64_encode((const char *) data, len, out, enclen);
	int			i;

	if (n < 0)
		elog(ERROR, "pgbank: base64 encoding failed");
	while (n > 0 && out[n - 1] == '=')
		n--;
	out[n] = '\0';
	for (i = 0; i < n; i++)
	{
		if (out[i] == '+')
			out[i] = '-';
		else if (out[i] == '/')
			out[i] = '_';
	}
	return out;
}

/* decode base64url (no padding); -1 when it is not valid base64url */
static int
base64url_decode(const char *s, int len, uint8 *out, int outlen)
{
	char	   *tmp;
	int			i,
				padded = len + (4 - len % 4) % 4;

	if (len % 4 == 1)
		return -1;
	tmp = palloc(padded + 1);
	for (i = 0; i < len; i++)
	{
		char		c = s[i];

		if (c == '-')
			c = '+';
		else if (c == '_')
			c = '/';
		else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
			return -1;
		tmp[i] = c;
	}
	for (; i < padded; i++)
		tmp[i] = '=';
	if (pg_b64_dec_len(padded) > outlen)
		return -1;
	return pg_b64_decode(tmp, padded, (char *) out, outlen);
}

void
AuthHmac(pg_cryptohash_type type, const uint8 *key, size_t keylen,
		 const uint8 *data, size_t len, uint8 *out, size_t outlen)
{
	pg_hmac_ctx *ctx = pg_hmac_create(type);

	if (ctx == NULL || pg_hmac_init(ctx, key, keylen) < 0 ||
		pg_hmac_update(ctx, data, len) < 0 || pg_hmac_final(ctx, out, outlen) < 0)
		elog(ERROR, "pgbank: HMAC failed");
	pg_hmac_free(ctx);
}

void
AuthSha256(const uint8 *data, size_t len, uint8 *out)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);

	if (ctx == NULL || pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, data, len) < 0 ||
		pg_cryptohash_final(ctx, out, PG_SHA256_DIGEST_LENGTH) < 0)
		elog(ERROR, "pgbank: SHA-256 failed");
	pg_cryptohash_free(ctx);
}

bytea *
AuthSha256Bytea(const char *s)
{
	bytea	   *b = palloc(VARHDRSZ + PG_SHA256_DIGEST_LENGTH);

	SET_VARSIZE(b, VARHDRSZ + PG_SHA256_DIGEST_LENGTH);
	AuthSha256((const uint8 *) s, strlen(s), (uint8 *) VARDATA(b));
	return b;
}

/* constant-time comparison */
bool
AuthEqual(const uint8 *a, const uint8 *b, size_t len)
{
	uint8		diff = 0;
	size_t		i;

	for (i = 0; i < len; i++)
		diff |= a[i] ^ b[i];
	return diff == 0;
}

/* random bytes from the operating system's CSPRNG, or an error */
void
AuthRandom(uint8 *out, size_t len)
{
	if (!pg_strong_random(out, len))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random bytes")));
}

/*
 * A secret GUC, checked: only with the library preloaded are pgbank's GUCs
 * defined (and superuser-only) before any session can read them, so a
 * secret set while not preloaded may have been read as a placeholder.
 */
const char *
AuthSecret(const char *name, const char *value, int min_bytes)
{
	if (!pgb_preloaded)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pgbank must be in shared_preload_libraries to use %s", name),
				 errdetail("Without it, a session that has not loaded pgbank can read the setting.")));
	if (value == NULL || strlen(value) < min_bytes)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s is not set or shorter than %d bytes", name, min_bytes)));
	return value;
}

/* ---------------------------------------------------------------------
 * JSON Web Tokens (HS256 only)
 * ---------------------------------------------------------------------
 */

#define JWT_HEADER "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

/* sign a claims object (JSON text): header.payload.signature */
char *
AuthJwtSign(const char *claims_json)
{
	const char *key = AuthSecret("pgbank.jwt_secret", pgb_jwt_secret, 32);
	char	   *h = AuthBase64Url((const uint8 *) JWT_HEADER, strlen(JWT_HEADER));
	char	   *p = AuthBase64Url((const uint8 *) claims_json, strlen(claims_json));
	char	   *signing = psprintf("%s.%s", h, p);
	uint8		mac[PG_SHA256_DIGEST_LENGTH];

	AuthHmac(PG_SHA256, (const uint8 *) key, strlen(key),
			 (const uint8 *) signing, strlen(signing), mac, sizeof(mac));
	return psprintf("%s.%s", signing, AuthBase64Url(mac, sizeof(mac)));
}

static void
invalid_token(const char *why)
{
	/* why names the check, never the token */
	ereport(ERROR,
			(errcode(ERRCODE_PGB_INVALID_TOKEN),
			 errmsg("invalid access token"),
			 errdetail("%s", why)));
}

static JsonbValue *
claim(Jsonb *j, const char *name)
{
	return getKeyJsonValueFromContainer(&j->root, name, strlen(name), NULL);
}

/*
 * A NumericDate claim as whole seconds since the epoch, rounded the strict
 * way (exp down, nbf up), exactly: no floating point.  Outside 0 .. 10^11
 * (year 5138) the token is invalid.
 */
static int64
claim_seconds(Jsonb *j, const char *name, bool round_up)
{
	JsonbValue *v = claim(j, name);
	Datum		n;

	if (v == NULL || v->type != jbvNumeric)
		invalid_token(psprintf("The %s claim is missing or not a number.", name));
	n = DirectFunctionCall1(round_up ? numeric_ceil : numeric_floor,
							NumericGetDatum(v->val.numeric));
	if (DatumGetInt32(DirectFunctionCall2(numeric_cmp, n,
										  NumericGetDatum(int64_to_numeric(0)))) < 0 ||
		DatumGetInt32(DirectFunctionCall2(numeric_cmp, n,
										  NumericGetDatum(int64_to_numeric(INT64CONST(100000000000))))) > 0)
		invalid_token(psprintf("The %s claim is out of range.", name));
	return DatumGetInt64(DirectFunctionCall1(numeric_int8, n));
}

static char *
claim_string(Jsonb *j, const char *name)
{
	JsonbValue *v = claim(j, name);

	if (v == NULL || v->type != jbvString)
		invalid_token(psprintf("The %s claim is missing or not a string.", name));
	return pnstrdup(v->val.string.val, v->val.string.len);
}

static int64
claim_id(Jsonb *j, const char *name)
{
	char	   *s = claim_string(j, name);
	char	   *end;
	long long	v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *s == '\0' || *end != '\0' || v <= 0)
		invalid_token(psprintf("The %s claim is not an id.", name));
	return (int64) v;
}

/* aud: a string equal to ours, or an array holding it */
static bool
audience_matches(Jsonb *j)
{
	JsonbValue *v = claim(j, "aud");
	const char *want = pgb_jwt_audience;

	if (v == NULL)
		return false;
	if (v->type == jbvString)
		return v->val.string.len == strlen(want) &&
			memcmp(v->val.string.val, want, v->val.string.len) == 0;
	if (v->type == jbvBinary)
	{
		JsonbValue	elem;

		elem.type = jbvString;
		elem.val.string.val = (char *) want;
		elem.val.string.len = strlen(want);
		return JsonContainerIsArray(v->val.binary.data) &&
			findJsonbValueFromContainer(v->val.binary.data, JB_FARRAY, &elem) != NULL;
	}
	return false;
}

/*
 * Verify a token and return its claims.  The signature is checked first,
 * over the bytes as received, with HS256 whatever the header says: nothing
 * of an unsigned token is parsed, and "alg": "none" or a public key used as
 * an HMAC secret fail like any other wrong signature.  Then the header must
 * name HS256, and exp, nbf, iss and aud must hold (with
 * pgbank.jwt_clock_skew of tolerance).
 */
static Jsonb *
jwt_verify(const char *token)
{
	const char *key = AuthSecret("pgbank.jwt_secret", pgb_jwt_secret, 32);
	size_t		len = strlen(token);
	const char *dot1,
			   *dot2;
	uint8		mac[PG_SHA256_DIGEST_LENGTH];
	uint8		sig[64];
	uint8	   *buf;
	int			n;
	Jsonb	   *header,
			   *claims;
	JsonbValue *alg;
	int64		now,
				skew = pgb_jwt_clock_skew;
	char	   *iss;

	if (len == 0 || len > MAX_TOKEN_CHARS)
		invalid_token("The token is empty or too long.");
	dot1 = strchr(token, '.');
	dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
	if (dot1 == NULL || dot2 == NULL || strchr(dot2 + 1, '.') != NULL ||
		dot1 == token || dot2 == dot1 + 1 || dot2[1] == '\0')
		invalid_token("The token is not three base64url parts.");

	AuthHmac(PG_SHA256, (const uint8 *) key, strlen(key),
			 (const uint8 *) token, dot2 - token, mac, sizeof(mac));
	n = base64url_decode(dot2 + 1, strlen(dot2 + 1), sig, sizeof(sig));
	if (n != sizeof(mac) || !AuthEqual(mac, sig, sizeof(mac)))
		invalid_token("The signature does not verify.");

	/* signed by us: parse */
	buf = palloc(len + 4);
	n = base64url_decode(token, dot1 - token, buf, len);
	if (n < 0)
		invalid_token("The header is not base64url.");
	buf[n] = '\0';
	header = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum((char *) buf)));
	alg = JB_ROOT_IS_OBJECT(header) ? claim(header, "alg") : NULL;
	if (alg == NULL || alg->type != jbvString || alg->val.string.len != 5 ||
		memcmp(alg->val.string.val, "HS256", 5) != 0)
		invalid_token("The algorithm is not HS256.");
	n = base64url_decode(dot1 + 1, dot2 - dot1 - 1, buf, len);
	if (n < 0)
		invalid_token("The payload is not base64url.");
	buf[n] = '\0';
	claims = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum((char *) buf)));
	if (!JB_ROOT_IS_OBJECT(claims))
		invalid_token("The payload is not a JSON object.");

	now = (GetCurrentTimestamp() - SetEpochTimestamp()) / USECS_PER_SEC;
	if (now >= claim_seconds(claims, "exp", false) + skew)
		invalid_token("The token has expired.");
	if (now < claim_seconds(claims, "nbf", true) - skew)
		invalid_token("The token is not valid yet.");
	iss = claim_string(claims, "iss");
	if (strcmp(iss, pgb_jwt_issuer) != 0)
		invalid_token("The token was issued by someone else.");
	if (!audience_matches(claims))
		invalid_token("The token is meant for another audience.");
	return claims;
}

/* ---------------------------------------------------------------------
 * SQL: authenticate, authenticate_api_key, whoami, and the RLS functions
 * ---------------------------------------------------------------------
 */

static void
require_no_identity(void)
{
	if (identity.kind != PRINCIPAL_NONE)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_ALREADY_AUTHENTICATED),
				 errmsg("this transaction already has a verified identity"),
				 errhint("Authenticate once per transaction.")));
}

PG_FUNCTION_INFO_V1(pgbank_authenticate);
Datum
pgbank_authenticate(PG_FUNCTION_ARGS)
{
	char	   *token;
	Jsonb	   *claims;
	int64		customer,
				session;
	char	   *role;

	if (PG_ARGISNULL(0))
		invalid_token("No token was given.");
	require_no_identity();
	token = TextDatumGetCString(PG_GETARG_DATUM(0));
	claims = jwt_verify(token);
	customer = claim_id(claims, "sub");
	session = claim_id(claims, "sid");
	role = claim_string(claims, "role");

	/* a customer token is for a customer role, never a staff one */
	if (strcmp(role, "bank_customer") != 0 || !role_is_customer(GetUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_PGB_WRONG_ROLE),
				 errmsg("a customer token can only be used by a customer role"),
				 errhint("SET ROLE bank_customer before bank.authenticate().")));

	/*
	 * The session must still be live (logout, refresh token reuse, a
	 * password change and erasure revoke it), and its customer not erased:
	 * two primary-key probes, no SQL (the same check as a join of
	 * bank.sessions and bank.customers, at a tenth of the cost per request).
	 */
	{
		static const char *const session_cols[] = {"customer_id", "expires_at", "revoked_at"};
		static const char *const customer_cols[] = {"erased_at"};
		Datum		v[3];
		bool		n[3];

		if (!PgbFetchById("sessions", session, 3, session_cols, v, n) ||
			n[0] || DatumGetInt64(v[0]) != customer || !n[2] ||
			DatumGetTimestampTz(v[1]) <= GetCurrentTransactionStartTimestamp() ||
			!PgbFetchById("customers", customer, 1, customer_cols, v, n) || !n[0])
			invalid_token("The session has ended.");
	}

	identity.kind = PRINCIPAL_CUSTOMER;
	identity.role = GetUserId();
	identity.nest_level = GetCurrentTransactionNestLevel();
	identity.customer_id = customer;
	identity.session_id = session;
	PG_RETURN_INT64(customer);
}

/*
 * Find the valid API key of argument 0 (known, not revoked, not expired):
 * its id, role and scopes in SPI_tuptable row 0, else PB043.  SPI must be
 * connected.
 */
static void
ApiKeyLookup(FunctionCallInfo fcinfo)
{
	char	   *key;
	Datum		arg;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_API_KEY), errmsg("invalid API key")));
	key = TextDatumGetCString(PG_GETARG_DATUM(0));
	if (strlen(key) > 200)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_API_KEY), errmsg("invalid API key")));
	arg = PointerGetDatum(AuthSha256Bytea(key));
	if (PgbExec(&q_api_key, &arg, NULL, true, 1) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_API_KEY),
				 errmsg("invalid API key"),
				 errdetail("The key is unknown, revoked or expired.")));
}

PG_FUNCTION_INFO_V1(pgbank_authenticate_api_key);
Datum
pgbank_authenticate_api_key(PG_FUNCTION_ARGS)
{
	int64		id;
	char	   *role;
	char	   *scopes;

	require_no_identity();
	SPI_connect();
	ApiKeyLookup(fcinfo);
	id = PgbGetInt64(0, 1);
	role = PgbGetText(0, 2);
	scopes = PgbGetText(0, 3);
	if (get_role_oid(role, true) != GetUserId())
		ereport(ERROR,
				(errcode(ERRCODE_PGB_WRONG_ROLE),
				 errmsg("the API key is bound to another role"),
				 errhint("SET ROLE to the key's role before bank.authenticate_api_key().")));
	if (strlen(scopes) + 3 > MAX_SCOPES_CHARS)
		elog(ERROR, "pgbank: API key %lld has too many scopes", (long long) id);
	identity.kind = PRINCIPAL_API_KEY;
	identity.role = GetUserId();
	identity.nest_level = GetCurrentTransactionNestLevel();
	identity.api_key_id = id;
	snprintf(identity.scopes, sizeof(identity.scopes), ",%s,", scopes);
	SPI_finish();
	PG_RETURN_INT64(id);
}

/*
 * bank.api_key_role(key): the key's id and role, for the HTTP gateway to
 * choose the role to switch to.  It verifies like authenticate_api_key but
 * sets no identity: the request's own transaction must still call
 * bank.authenticate_api_key, which sees a revocation at once.
 */
PG_FUNCTION_INFO_V1(pgbank_api_key_role);
Datum
pgbank_api_key_role(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "pgbank: api_key_role must return a composite type");
	SPI_connect();
	ApiKeyLookup(fcinfo);
	values[0] = Int64GetDatum(PgbGetInt64(0, 1));
	values[1] = DirectFunctionCall1(namein, CStringGetDatum(PgbGetText(0, 2)));
	tupdesc = BlessTupleDesc(tupdesc);
	return PgbFinishWithTuple(heap_form_tuple(tupdesc, values, nulls), tupdesc);
}

/* the customer for row-level security: NULL unless a customer token applies */
PG_FUNCTION_INFO_V1(pgbank_current_customer_id);
Datum
pgbank_current_customer_id(PG_FUNCTION_ARGS)
{
	if (identity_applies() && identity.kind == PRINCIPAL_CUSTOMER)
		PG_RETURN_INT64(identity.customer_id);
	PG_RETURN_NULL();
}

/* staff authority for row-level security (see the file header) */
bool
AuthActingAsStaff(void)
{
	Oid			user = GetUserId();

	if (identity.kind != PRINCIPAL_NONE)
		return identity_applies() && identity.kind == PRINCIPAL_API_KEY && role_is_staff(user);
	return superuser_arg(user) || (!gateway_session() && role_is_staff(user));
}

PG_FUNCTION_INFO_V1(pgbank_acting_as_staff);
Datum
pgbank_acting_as_staff(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(AuthActingAsStaff());
}

PG_FUNCTION_INFO_V1(pgbank_whoami);
Datum
pgbank_whoami(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[7];
	bool		nulls[7] = {false};
	const char *kind = "none";
	bool		applies = identity_applies();

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "pgbank: whoami must return a composite type");
	if (applies && identity.kind == PRINCIPAL_CUSTOMER)
		kind = "customer";
	else if (applies && identity.kind == PRINCIPAL_API_KEY)
		kind = "api_key";
	else if (identity.kind == PRINCIPAL_NONE && AuthActingAsStaff())
		kind = "staff";
	values[0] = CStringGetTextDatum(kind);
	values[1] = Int64GetDatum(identity.customer_id);
	nulls[1] = !(applies && identity.kind == PRINCIPAL_CUSTOMER);
	values[2] = Int64GetDatum(identity.session_id);
	nulls[2] = nulls[1];
	values[3] = Int64GetDatum(identity.api_key_id);
	nulls[3] = !(applies && identity.kind == PRINCIPAL_API_KEY);
	values[4] = DirectFunctionCall1(namein, CStringGetDatum(GetUserNameFromId(GetUserId(), false)));
	values[5] = DirectFunctionCall1(namein,
									CStringGetDatum(GetUserNameFromId(GetSessionUserId(), false)));
	values[6] = BoolGetDatum(identity.kind != PRINCIPAL_NONE && !applies);
	tupdesc = BlessTupleDesc(tupdesc);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* ---------------------------------------------------------------------
 * Request context, for the audit trail
 * ---------------------------------------------------------------------
 */

PG_FUNCTION_INFO_V1(pgbank_set_request_context);
Datum
pgbank_set_request_context(PG_FUNCTION_ARGS)
{
	const char *names[] = {"request_id", "client_addr", "user_agent"};
	char	   *dest[] = {request_ctx.request_id, request_ctx.client_addr, request_ctx.user_agent};
	size_t		size[] = {sizeof(request_ctx.request_id), sizeof(request_ctx.client_addr),
	sizeof(request_ctx.user_agent)};
	int			i;

	memset(&request_ctx, 0, sizeof(request_ctx));
	for (i = 0; i < 3; i++)
	{
		char	   *s;

		if (PG_ARGISNULL(i))
			continue;
		s = TextDatumGetCString(PG_GETARG_DATUM(i));
		if (strlen(s) >= size[i])
			ereport(ERROR,
					(errcode(ERRCODE_PGB_INVALID_ARGUMENT),
					 errmsg("%s must be shorter than %d bytes", names[i], (int) size[i])));
		if (i == 1 && s[0] != '\0')
			(void) DirectFunctionCall1(inet_in, CStringGetDatum(s));
		strlcpy(dest[i], s, size[i]);
	}
	request_ctx.set = true;
	request_ctx.nest_level = GetCurrentTransactionNestLevel();
	PG_RETURN_VOID();
}

/* the request context's fields, NULL when unset */
const char *
AuthRequestField(int field)
{
	const char *v = field == 0 ? request_ctx.request_id :
		field == 1 ? request_ctx.client_addr : request_ctx.user_agent;

	return request_ctx.set && v[0] != '\0' ? v : NULL;
}

/* ---------------------------------------------------------------------
 * pgcrypto, called through the function manager
 * ---------------------------------------------------------------------
 */

/* the schema pgcrypto lives in (get_extension_schema is static in 15) */
static Oid
pgcrypto_schema(Oid ext)
{
	Relation	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			nsp = InvalidOid;

	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(ext));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		nsp = ((Form_pg_extension) GETSTRUCT(tup))->extnamespace;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return nsp;
}

/*
 * Call a pgcrypto function by name and argument types, wherever the
 * extension lives: no SQL text, so no search_path and no relocation
 * trouble.  Strict functions with NULL arguments return NULL.
 */
Datum
PgcryptoCall(const char *fname, int nargs, const Oid *argtypes, const Datum *args,
			 bool *isnull)
{
	Oid			ext = get_extension_oid("pgcrypto", true);
	Oid			nsp;
	Oid			fn;
	FmgrInfo	flinfo;
	LOCAL_FCINFO(fcinfo, 4);
	Datum		result;
	int			i;

	if (!OidIsValid(ext))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension pgcrypto is not installed")));
	Assert(nargs <= 4);
	nsp = pgcrypto_schema(ext);
	fn = LookupFuncName(list_make2(makeString(get_namespace_name(nsp)), makeString((char *) fname)),
						nargs, argtypes, false);
	fmgr_info(fn, &flinfo);
	InitFunctionCallInfoData(*fcinfo, &flinfo, nargs, InvalidOid, NULL, NULL);
	for (i = 0; i < nargs; i++)
	{
		fcinfo->args[i].value = args[i];
		fcinfo->args[i].isnull = false;
	}
	result = FunctionCallInvoke(fcinfo);
	*isnull = fcinfo->isnull;
	return result;
}
