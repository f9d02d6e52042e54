/*-------------------------------------------------------------------------
 *
 * browser.c
 *		What browsers need beyond the API's own clients: CORS preflights
 *		(checked as the Fetch standard has them), sessions held in cookies
 *		with CSRF protection, and form-encoded bodies.
 *
 *		A browser logs in with POST /v1/browser/login: the access token
 *		goes into the cookie __Secure-pgbank-access (Path=/v1), the refresh
 *		token into __Secure-pgbank-refresh (Path=/v1/browser, so that only
 *		login, refresh and logout carry it: logout ends the session by it,
 *		as the access token may have expired), both HttpOnly, Secure and
 *		SameSite=Strict, without Max-Age (they end with the browser
 *		session; the tokens' own lifetimes hold within it).  The body holds
 *		the CSRF token instead of the tokens.
 *
 * Invariants:
 *	- A request with an Authorization or X-API-Key header is judged by that
 *	  header alone: the cookie is ignored (api.c looks at it last).
 *	- A request authenticated by the access cookie with an unsafe method
 *	  (anything but GET, HEAD, OPTIONS) passes two checks before any
 *	  database work, else 403: its Origin (or, without one, its Referer's
 *	  origin) is in --cors-origins or is the server's own origin
 *	  (scheme://Host), code csrf_origin; and its X-CSRF-Token equals
 *	  base64url(HMAC-SHA256(K, sid)), compared in constant time, code
 *	  csrf_token.  K is derived from the token secret
 *	  (HMAC-SHA256(secret, "pgbank-http csrf v1")), so the server keeps
 *	  no state, and nobody without the secret can make the token of a
 *	  session; it changes with the session, not with each refresh, and
 *	  with the secret: a secret replaced at SIGHUP (a leaked one, say)
 *	  invalidates every CSRF token made with it.
 *	- Login, refresh and logout by cookie (PBH_RESULT_SESSION and
 *	  PBH_RESULT_SESSION_END routes) need a trusted Origin too (login
 *	  CSRF); they need no X-CSRF-Token (there is none before login, refresh
 *	  is how a reloaded page gets it back, and logout goes by the refresh
 *	  cookie).  Logout clears both cookies only once the Origin passed.
 *	- Responses that set session cookies are never compressed and, like
 *	  every response, not stored (Cache-Control: no-store).
 *	- A cookie given twice (one set by a sibling domain, say) is no cookie.
 *	- CORS: only exact origins of the allow-list get CORS headers; a
 *	  preflight whose origin, method or any requested header is not
 *	  accepted is a 403 without them.
 *	- Form bodies are split by the query-string parser (pbh_parse_query)
 *	  and checked as the route's text arguments: the same checks as JSON.
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>
#include <strings.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "pgbank_http.h"

/* the request headers a preflight may ask for (lower case) */
static const char *const cors_headers[] = {
	"authorization", "content-type", "idempotency-key", "x-api-key", "x-request-id",
	PBH_CSRF_HEADER, "if-none-match", "accept", "accept-language", "content-language",
	"last-event-id", NULL
};

/* ---------------------------------------------------------------------
 * CORS
 * ---------------------------------------------------------------------
 */

int
pbh_cors_origin_allowed(h2o_iovec_t origin)
{
	const pbh_live_t *live = pbh_live();	/* SIGHUP may change the list */

	for (char **o = live != NULL ? live->cors_origins : pbh_config.cors_origins; *o != NULL; o++)
		if (strlen(*o) == origin.len && memcmp(*o, origin.base, origin.len) == 0)
			return 1;
	return 0;
}

/* drop the access-control-* headers pbh_add_common_headers put on */
static void
strip_cors_headers(h2o_req_t *req)
{
	h2o_headers_t *h = &req->res.headers;
	size_t		w = 0;

	for (size_t i = 0; i < h->size; i++)
		if (!(h->entries[i].name->len > 15 &&
			  h2o_lcstris(h->entries[i].name->base, 15, H2O_STRLIT("access-control-"))))
			h->entries[w++] = h->entries[i];
	h->size = w;
}

static int
preflight_refused(h2o_req_t *req, const char *code, const char *detail)
{
	strip_cors_headers(req);
	pbh_problem_send(req, 403, code, "CORS preflight refused", detail);
	return 0;
}

/* is tok (a method) one of the comma-separated list? */
static int
in_list(const char *list, const char *tok, size_t len)
{
	const char *p = list;

	while (*p)
	{
		size_t		n = strcspn(p, ",");

		if (n == len && memcmp(p, tok, len) == 0)
			return 1;
		p += n;
		while (*p == ',' || *p == ' ')
			p++;
	}
	return 0;
}

int
pbh_cors_preflight(h2o_req_t *req, const char *allow)
{
	ssize_t		o = h2o_find_header_by_str(&req->headers, H2O_STRLIT("origin"), -1);
	ssize_t		m = h2o_find_header_by_str(&req->headers, H2O_STRLIT("access-control-request-method"), -1);
	ssize_t		hh = h2o_find_header_by_str(&req->headers, H2O_STRLIT("access-control-request-headers"), -1);
	h2o_iovec_t method;

	if (o == -1 || !pbh_cors_origin_allowed(req->headers.entries[o].value))
		return preflight_refused(req, "cors_origin", "This origin is not allowed.");
	method = req->headers.entries[m].value;
	if (method.len == 0 || method.len > 16 || !in_list(allow, method.base, method.len) ||
		h2o_memis(method.base, method.len, H2O_STRLIT("OPTIONS")))
		return preflight_refused(req, "cors_method", "This method is not allowed on this path.");
	if (hh != -1)
	{
		/* every header asked for must be one we accept */
		h2o_iovec_t v = req->headers.entries[hh].value;
		size_t		i = 0;

		while (i < v.len)
		{
			size_t		s,
						e;
			int			ok = 0;

			while (i < v.len && (v.base[i] == ' ' || v.base[i] == '\t' || v.base[i] == ','))
				i++;
			s = i;
			while (i < v.len && v.base[i] != ',')
				i++;
			e = i;
			while (e > s && (v.base[e - 1] == ' ' || v.base[e - 1] == '\t'))
				e--;
			if (e == s)
				continue;
			for (const char *const *c = cors_headers; *c != NULL; c++)
				if (h2o_lcstris(v.base + s, e - s, *c, strlen(*c)))
					ok = 1;
			if (!ok)
				return preflight_refused(req, "cors_header",
										 "A requested header is not allowed.");
		}
		h2o_add_header_by_str(&req->pool, &req->res.headers,
							  H2O_STRLIT("access-control-allow-headers"), 0, NULL, v.base, v.len);
	}
	h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-allow-methods"),
						  0, NULL, method.base, method.len);
	h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-max-age"),
						  0, NULL, H2O_STRLIT("600"));
	pbh_send_json(req, 204, NULL, 0);
	return 0;
}

/* ---------------------------------------------------------------------
 * Cookies and CSRF
 * ---------------------------------------------------------------------
 */

const char *
pbh_cookie_value(h2o_req_t *req, const char *name)
{
	size_t		nlen = strlen(name);
	const char *found = NULL;
	size_t		flen = 0;
	ssize_t		i = -1;

	while ((i = h2o_find_header(&req->headers, H2O_TOKEN_COOKIE, i)) != -1)
	{
		h2o_iovec_t v = req->headers.entries[i].value;
		size_t		k = 0;

		while (k < v.len)
		{
			size_t		s,
						e;

			while (k < v.len && (v.base[k] == ' ' || v.base[k] == ';'))
				k++;
			s = k;
			while (k < v.len && v.base[k] != ';')
				k++;
			e = k;
			if (e - s > nlen && v.base[s + nlen] == '=' && memcmp(v.base + s, name, nlen) == 0)
			{
				if (found != NULL)
					return NULL;	/* twice: ambiguous */
				found = v.base + s + nlen + 1;
				flen = e - s - nlen - 1;
			}
		}
	}
	if (found == NULL || flen == 0)
		return NULL;
	return h2o_strdup(&req->pool, found, flen).base;
}

/* base64url of HMAC-SHA256(the live CSRF key, sid): 43 characters and a NUL */
static void
csrf_token_of(const char *sid, char *out)
{
	static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	unsigned char mac[32];
	unsigned int len = sizeof(mac);
	unsigned	acc = 0;
	int			bits = 0,
				n = 0;

	HMAC(EVP_sha256(), pbh_live()->csrf_key, 32, (const unsigned char *) sid, strlen(sid),
		 mac, &len);
	for (int i = 0; i < 32; i++)
	{
		acc = (acc << 8) | mac[i];
		bits += 8;
		while (bits >= 6)
		{
			bits -= 6;
			out[n++] = b64[(acc >> bits) & 63];
		}
	}
	if (bits > 0)
		out[n++] = b64[(acc << (6 - bits)) & 63];
	out[n] = '\0';
}

int
pbh_origin_trusted(h2o_req_t *req)
{
	ssize_t		i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("origin"), -1);
	h2o_iovec_t o;
	const char *scheme = pbh_tls_ctx ? "https://" : "http://";
	size_t		slen = strlen(scheme);

	if (i != -1)
		o = req->headers.entries[i].value;
	else
	{
		/* a Referer's origin: scheme://host[:port] */
		const char *p;

		i = h2o_find_header(&req->headers, H2O_TOKEN_REFERER, -1);
		if (i == -1)
			return 0;
		o = req->headers.entries[i].value;
		p = o.len > 8 ? memchr(o.base, ':', o.len) : NULL;
		if (p == NULL || p + 3 > o.base + o.len || p[1] != '/' || p[2] != '/')
			return 0;
		for (p += 3; p < o.base + o.len && *p != '/' && *p != '?' && *p != '#'; p++)
			;
		o.len = p - o.base;
	}
	if (o.len == 0 || h2o_memis(o.base, o.len, H2O_STRLIT("null")))
		return 0;
	if (pbh_cors_origin_allowed(o))
		return 1;
	/* our own origin: the scheme we serve and the Host the browser used */
	return req->authority.len > 0 && o.len == slen + req->authority.len &&
		memcmp(o.base, scheme, slen) == 0 &&
		h2o_lcstris(o.base + slen, req->authority.len, req->authority.base, req->authority.len);
}

int
pbh_csrf_check(h2o_req_t *req, const char *sid)
{
	ssize_t		i;
	char		want[48];
	h2o_iovec_t got;

	if (h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) ||
		h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD")) ||
		h2o_memis(req->method.base, req->method.len, H2O_STRLIT("OPTIONS")))
		return 0;
	if (!pbh_origin_trusted(req))
	{
		pbh_problem_send(req, 403, "csrf_origin", "Cross-site request refused",
						 "A request authenticated by cookie must come from an allowed origin.");
		return -1;
	}
	i = h2o_find_header_by_str(&req->headers, H2O_STRLIT(PBH_CSRF_HEADER), -1);
	if (sid != NULL)
		csrf_token_of(sid, want);
	if (i == -1 || sid == NULL ||
		(got = req->headers.entries[i].value).len != strlen(want) ||
		CRYPTO_memcmp(got.base, want, got.len) != 0)
	{
		pbh_problem_send(req, 403, "csrf_token", "Cross-site request refused",
						 "A request authenticated by cookie needs the session's X-CSRF-Token header.");
		return -1;
	}
	return 0;
}

/* RFC 6265 cookie-octets only, so a token cannot break the header */
static int
cookie_safe(const char *s)
{
	for (; *s; s++)
		if (*s <= 0x20 || *s >= 0x7f || *s == '"' || *s == ',' || *s == ';' || *s == '\\')
			return 0;
	return 1;
}

static void
set_cookie(h2o_req_t *req, const char *name, const char *value, const char *path, int clear)
{
	h2o_iovec_t v = h2o_concat(&req->pool, h2o_iovec_init(name, strlen(name)),
							   h2o_iovec_init(H2O_STRLIT("=")),
							   h2o_iovec_init(value, strlen(value)),
							   h2o_iovec_init(H2O_STRLIT("; Path=")),
							   h2o_iovec_init(path, strlen(path)),
							   clear ? h2o_iovec_init(H2O_STRLIT("; Max-Age=0")) : h2o_iovec_init("", 0),
							   h2o_iovec_init(H2O_STRLIT("; Secure; HttpOnly; SameSite=Strict")));

	h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_SET_COOKIE, NULL, v.base, v.len);
}

void
pbh_session_clear(h2o_req_t *req)
{
	set_cookie(req, PBH_COOKIE_ACCESS, "", "/v1", 1);
	set_cookie(req, PBH_COOKIE_REFRESH, "", PBH_REFRESH_COOKIE_PATH, 1);
}

static const pbh_json_member_t *
find(const pbh_json_member_t *m, size_t n, const char *name, pbh_json_type_t type)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(m[i].name, name) == 0 && m[i].type == type)
			return &m[i];
	return NULL;
}

void
pbh_session_send(h2o_req_t *req, int status, const char *json, size_t len)
{
	pbh_json_member_t *m;
	size_t		n;
	const char *err;
	const pbh_json_member_t *access,
			   *refresh,
			   *customer,
			   *exp,
			   *rexp;
	const char *sid;
	char		csrf[48];
	char	   *body;
	size_t		blen;

	if (pbh_json_parse_object(&req->pool, json, len, &m, &n, &err) != 0 ||
		(access = find(m, n, "access_token", PBH_JSON_STRING)) == NULL ||
		(refresh = find(m, n, "refresh_token", PBH_JSON_STRING)) == NULL ||
		(customer = find(m, n, "customer_id", PBH_JSON_NUMBER)) == NULL ||
		(exp = find(m, n, "expires_at", PBH_JSON_STRING)) == NULL ||
		(rexp = find(m, n, "refresh_expires_at", PBH_JSON_STRING)) == NULL ||
		!cookie_safe(access->str) || !cookie_safe(refresh->str) ||
		(sid = pbh_jwt_sid(&req->pool, access->str, strlen(access->str))) == NULL)
	{
		pbh_problem_send(req, 500, "internal", "Internal error", NULL);
		return;
	}
	csrf_token_of(sid, csrf);
	set_cookie(req, PBH_COOKIE_ACCESS, access->str, "/v1", 0);
	set_cookie(req, PBH_COOKIE_REFRESH, refresh->str, PBH_REFRESH_COOKIE_PATH, 0);
	blen = customer->raw_len + exp->raw_len + rexp->raw_len + strlen(csrf) + 128;
	body = h2o_mem_alloc_pool(&req->pool, blen);
	blen = (size_t) snprintf(body, blen,
							 "{\"customer_id\":%.*s,\"expires_at\":%.*s,\"refresh_expires_at\":%.*s,"
							 "\"csrf_token\":\"%s\"}",
							 (int) customer->raw_len, customer->raw, (int) exp->raw_len, exp->raw,
							 (int) rexp->raw_len, rexp->raw, csrf);
	/* cookies and the CSRF token: kept out of the gzip filter (BREACH) */
	h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_ENCODING, NULL,
				   H2O_STRLIT("identity"));
	pbh_send_json(req, status, body, blen);
}

/* ---------------------------------------------------------------------
 * Form bodies
 * ---------------------------------------------------------------------
 */

int
pbh_is_form(h2o_req_t *req)
{
	static const char type[] = "application/x-www-form-urlencoded";
	ssize_t		ct = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
	h2o_iovec_t v;

	if (ct == -1)
		return 0;
	v = req->headers.entries[ct].value;
	return v.len >= sizeof(type) - 1 && h2o_lcstris(v.base, sizeof(type) - 1, H2O_STRLIT(type)) &&
		(v.len == sizeof(type) - 1 || v.base[sizeof(type) - 1] == ';' ||
		 v.base[sizeof(type) - 1] == ' ');
}

const char *
pbh_form_arg_text(const pbh_arg_t *a, pbh_qparam_t *fp, int nf, pbh_arg_error_t *err)
{
	const char *text = NULL;

	err->code = NULL;
	for (int k = 0; k < nf; k++)
		if (strcmp(fp[k].name, a->name) == 0)
		{
			fp[k].used = 1;
			text = fp[k].value;
		}
	switch (a->type)
	{
		case PBH_T_MINOR:
			/* the same field is the PBH_T_AMOUNT argument's decimal */
			return NULL;
		case PBH_T_OBJECT:
		case PBH_T_STRINGS:
		case PBH_T_ARRAY:
			if (text != NULL || a->required)
			{
				err->code = "form_unsupported";
				err->format = "%s cannot be given in a form body: send application/json";
			}
			return NULL;
		default:
			return text;
	}
}
