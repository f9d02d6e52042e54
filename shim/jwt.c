/*-------------------------------------------------------------------------
 *
 * jwt.c
 *		Access tokens checked before any database work, by the rules of the
 *		extension's bank.authenticate() (extension/identity.c), so that a
 *		forged, expired or misdirected token costs no query.
 *
 * Invariants:
 *	- HS256 only, whatever the header says: the HMAC-SHA256 of the bytes
 *	  received (header "." payload) is compared, in constant time, with the
 *	  signature before anything of the token is decoded or parsed.  "alg":
 *	  "none", RS256 or an RSA public key used as an HMAC secret fail as a
 *	  wrong signature.
 *	- Then the header must say HS256, and exp, nbf (with the configured
 *	  clock skew), iss, aud (a string, or an array holding ours), sub and
 *	  sid (ids) and role (bank_customer, the only role pgbank issues tokens
 *	  for) must hold.  The database checks the token again, and that its
 *	  session is live.
 *	- No token text is ever logged or echoed.
 *
 *-------------------------------------------------------------------------
 */
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "pgbank_http.h"

#define MAX_TOKEN_CHARS 4096

/* the value of each byte as a base64url digit, -1 for the others */
static const signed char b64url_digit[256] = {
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 62, -1, -1,
	52, 53, 54, 55, 56, 57, 58, 59, 60, 61, -1, -1, -1, -1, -1, -1,
	-1,  0,  1,  2,  3,  4,  5,  6,  7,  8,  9, 10, 11, 12, 13, 14,
	15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, -1, -1, -1, -1, 63,
	-1, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
	41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
};

static inline int
b64url_value(char c)
{
	return b64url_digit[(unsigned char) c];
}

/* decode unpadded base64url; length or -1 */
static long
b64url_decode(const char *s, size_t len, unsigned char *out)
{
	size_t		i;
	unsigned	acc = 0;
	int			bits = 0;
	long		n = 0;

	if (len % 4 == 1)
		return -1;
	for (i = 0; i < len; i++)
	{
		int			v = b64url_value(s[i]);

		if (v < 0)
			return -1;
		acc = (acc << 6) | (unsigned) v;
		bits += 6;
		if (bits >= 8)
		{
			bits -= 8;
			out[n++] = (unsigned char) (acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	/* the unused low bits of the last character must be zero */
	if (acc != 0)
		return -1;
	return n;
}

/* NumericDate as whole seconds: exp rounded down, nbf up; -1 when invalid */
static int64_t
numeric_date(const pbh_json_member_t *m, int round_up)
{
	const char *p = m->raw,
			   *end = m->raw + m->raw_len;
	int64_t		v = 0;
	int			frac = 0;

	if (m->type != PBH_JSON_NUMBER || *p == '-')
		return -1;
	for (; p < end && *p >= '0' && *p <= '9'; p++)
	{
		v = v * 10 + (*p - '0');
		if (v > INT64_C(100000000000))
			return -1;
	}
	if (p < end && *p == '.')
		for (p++; p < end && *p >= '0' && *p <= '9'; p++)
			if (*p != '0')
				frac = 1;
	if (p != end)
		return -1;				/* exponent notation: we never issue it */
	return v + (round_up && frac ? 1 : 0);
}

static int
is_id(const pbh_json_member_t *m)
{
	const char *s;

	if (m == NULL || m->type != PBH_JSON_STRING || m->str[0] == '\0' || m->str[0] == '0' ||
		strlen(m->str) > 18)
		return 0;
	for (s = m->str; *s; s++)
		if (*s < '0' || *s > '9')
			return 0;
	return 1;
}

static const pbh_json_member_t *
member(const pbh_json_member_t *m, size_t n, const char *name)
{
	size_t		i;

	for (i = 0; i < n; i++)
		if (strcmp(m[i].name, name) == 0)
			return &m[i];
	return NULL;
}

pbh_jwt_result_t
pbh_jwt_verify(h2o_mem_pool_t *pool, const char *token, size_t len, int64_t now,
			   pbh_jwt_claims_t *claims)
{
	const char *dot1,
			   *dot2;
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	unsigned char sig[64];
	unsigned char *buf;
	long		n;
	pbh_json_member_t *h,
			   *c;
	size_t		nh,
				nc;
	const pbh_live_t *live = pbh_live();
	const char *secret;
	const char *err;
	const pbh_json_member_t *sub,
			   *sid;
	const pbh_json_member_t *alg,
			   *exp,
			   *nbf,
			   *iss,
			   *aud,
			   *role;
	int64_t		exp_s,
				nbf_s;

	if (len == 0 || len > MAX_TOKEN_CHARS)
		return PBH_JWT_MALFORMED;
	dot1 = memchr(token, '.', len);
	dot2 = dot1 ? memchr(dot1 + 1, '.', token + len - dot1 - 1) : NULL;
	if (dot1 == NULL || dot2 == NULL || memchr(dot2 + 1, '.', token + len - dot2 - 1) != NULL ||
		dot1 == token || dot2 == dot1 + 1 || dot2 + 1 == token + len)
		return PBH_JWT_MALFORMED;

	/* the signature, over the bytes as received, before anything else */
	secret = live != NULL ? live->jwt_secret : pbh_config.jwt_secret;
	if (HMAC(EVP_sha256(), secret, (int) strlen(secret),
			 (const unsigned char *) token, dot2 - token, mac, &maclen) == NULL)
		return PBH_JWT_BAD_SIGNATURE;
	if ((size_t) (token + len - dot2 - 1) > 86)
		return PBH_JWT_BAD_SIGNATURE;
	n = b64url_decode(dot2 + 1, token + len - dot2 - 1, sig);
	if (n != (long) maclen || CRYPTO_memcmp(mac, sig, maclen) != 0)
		return PBH_JWT_BAD_SIGNATURE;

	/* signed with our secret: decode and check */
	buf = h2o_mem_alloc_pool(pool, len + 1);
	n = b64url_decode(token, dot1 - token, buf);
	if (n < 0 || pbh_json_parse_object(pool, (char *) buf, n, &h, &nh, &err) != 0)
		return PBH_JWT_MALFORMED;
	alg = member(h, nh, "alg");
	if (alg == NULL || alg->type != PBH_JSON_STRING || strcmp(alg->str, "HS256") != 0)
		return PBH_JWT_BAD_ALGORITHM;
	buf = h2o_mem_alloc_pool(pool, len + 1);
	n = b64url_decode(dot1 + 1, dot2 - dot1 - 1, buf);
	if (n < 0 || pbh_json_parse_object(pool, (char *) buf, n, &c, &nc, &err) != 0)
		return PBH_JWT_MALFORMED;

	exp = member(c, nc, "exp");
	nbf = member(c, nc, "nbf");
	if (exp == NULL || nbf == NULL || (exp_s = numeric_date(exp, 0)) < 0 ||
		(nbf_s = numeric_date(nbf, 1)) < 0)
		return PBH_JWT_BAD_CLAIMS;
	if (now >= exp_s + pbh_config.jwt_clock_skew)
		return PBH_JWT_EXPIRED;
	if (now < nbf_s - pbh_config.jwt_clock_skew)
		return PBH_JWT_NOT_YET_VALID;
	iss = member(c, nc, "iss");
	if (iss == NULL || iss->type != PBH_JSON_STRING || strcmp(iss->str, pbh_config.jwt_issuer) != 0)
		return PBH_JWT_BAD_ISSUER;
	aud = member(c, nc, "aud");
	if (aud == NULL ||
		!((aud->type == PBH_JSON_STRING && strcmp(aud->str, pbh_config.jwt_audience) == 0) ||
		  (aud->type == PBH_JSON_ARRAY &&
		   pbh_json_array_has_string(pool, aud->raw, aud->raw_len, pbh_config.jwt_audience))))
		return PBH_JWT_BAD_AUDIENCE;
	role = member(c, nc, "role");
	sub = member(c, nc, "sub");
	sid = member(c, nc, "sid");
	if (!is_id(sub) || !is_id(sid) ||
		role == NULL || role->type != PBH_JSON_STRING || strcmp(role->str, "bank_customer") != 0)
		return PBH_JWT_BAD_CLAIMS;
	if (claims != NULL)
	{
		claims->sub = strtoll(sub->str, NULL, 10);
		claims->exp = exp_s;
		claims->sid = sid->str;
	}
	return PBH_JWT_OK;
}

const char *
pbh_jwt_result_text(pbh_jwt_result_t r)
{
	switch (r)
	{
		case PBH_JWT_OK:
			return "valid";
		case PBH_JWT_MALFORMED:
			return "The token is malformed.";
		case PBH_JWT_BAD_SIGNATURE:
			return "The signature does not verify.";
		case PBH_JWT_BAD_ALGORITHM:
			return "The algorithm is not HS256.";
		case PBH_JWT_EXPIRED:
			return "The token has expired.";
		case PBH_JWT_NOT_YET_VALID:
			return "The token is not valid yet.";
		case PBH_JWT_BAD_ISSUER:
			return "The token was issued by someone else.";
		case PBH_JWT_BAD_AUDIENCE:
			return "The token is meant for another audience.";
		case PBH_JWT_BAD_CLAIMS:
			return "The token's claims are missing or invalid.";
	}
	return "invalid token";
}

/* an API key as bank.create_api_key makes them: pbk_ and 32 base64url */
int
pbh_api_key_shape_ok(const char *key, size_t len)
{
	size_t		i;

	if (len != 36 || memcmp(key, "pbk_", 4) != 0)
		return 0;
	for (i = 4; i < len; i++)
		if (b64url_value(key[i]) < 0)
			return 0;
	return 1;
}

/*
 * The claims of a token pbh_jwt_verify has accepted (its payload is ours,
 * so this only decodes and parses): 0, or -1 when they cannot be read.
 */
static int
jwt_claims(h2o_mem_pool_t *pool, const char *token, size_t len,
			   pbh_json_member_t **claims, size_t *nclaims)
{
	const char *dot1 = memchr(token, '.', len),
			   *dot2;
	unsigned char *buf;
	const char *err;
	long		n;

	if (dot1 == NULL || len > MAX_TOKEN_CHARS ||
		(dot2 = memchr(dot1 + 1, '.', token + len - dot1 - 1)) == NULL)
		return -1;
	buf = h2o_mem_alloc_pool(pool, len + 1);
	n = b64url_decode(dot1 + 1, dot2 - dot1 - 1, buf);
	if (n < 0 || pbh_json_parse_object(pool, (char *) buf, n, claims, nclaims, &err) != 0)
		return -1;
	return 0;
}

/*
 * The sid claim of a token the database just issued (browser.c binds a
 * cookie session's CSRF token to it at login and refresh), or NULL.
 */
const char *
pbh_jwt_sid(h2o_mem_pool_t *pool, const char *token, size_t len)
{
	pbh_json_member_t *c;
	size_t		nc;
	const pbh_json_member_t *sid;

	if (jwt_claims(pool, token, len, &c, &nc) != 0)
		return NULL;
	sid = member(c, nc, "sid");
	return is_id(sid) ? sid->str : NULL;
}
