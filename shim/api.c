/*-------------------------------------------------------------------------
 *
 * api.c
 *		The handler of every /v1 route: find the route, check the caller's
 *		credential, turn path, query and body into the route's arguments,
 *		and send the request to the database as one pipeline:
 *
 *		  1. role switch, read-only or not, bank.authenticate(token) or
 *		     bank.authenticate_api_key(key), and bank.set_request_context(
 *		     request id, client, user agent), in one statement
 *		  2. the route's statement
 *		  Sync
 *
 *		(statement_timeout and lock_timeout are the connection's, set when
 *		it opens: see pool.c)
 *
 *		one implicit transaction: an error anywhere rolls back all of it.
 *
 * Invariants:
 *	- No query before the credential is verified as far as the server can:
 *	  a token's signature and claims, an API key's shape.  401 (with
 *	  WWW-Authenticate) or 403 otherwise.
 *	- Header and body limits (guard.c) come first, then rate limits
 *	  (limits.c): the client address's once the route is known, the
 *	  subject's once its credential is verified; a limited request costs
 *	  no query.
 *	- After SIGTERM a request that reaches a route starts no work: 503
 *	  shutting_down (problem.c decides it, as for a job the pool refused).
 *	- A route that streams (PBH_RESULT_EVENTS, GET /v1/events) passes the
 *	  same checks (limits, credential, CORS, CSRF, its arguments) and is
 *	  then handed to events.c, whose fetches are its own jobs.
 *	- Every argument is a bind parameter; the server never builds SQL.
 *	- A body member, query parameter or header the route does not know is a
 *	  400 naming it; so is a missing or mistyped one.
 *	- Serialization failures and deadlocks are retried (the whole pipeline,
 *	  which rolled back) at most pbh_config.retries times, then 503.
 *	- An API key acts as its own role.  The role comes from a per-thread
 *	  cache (key's SHA-256 -> role, for --api-key-cache seconds), so the
 *	  common request is still one round trip; on a miss, one statement
 *	  first asks bank.api_key_role (as the gateway, before any role
 *	  switch), then the request's pipeline follows: two round trips.  The
 *	  cache decides only which role to switch to: every request's own
 *	  transaction still runs bank.authenticate_api_key, so a revoked or
 *	  expired key is refused at once (401), and its entry is dropped.
 *	- A request may go away before its database work ends (an HTTP/2
 *	  stream reset or connection close disposes the h2o request and its
 *	  pool).  So what the database job uses (the pbh_request_t, its
 *	  parameters and results) lives outside req->pool, in a block of its
 *	  own, and a dispose hook in req->pool tells it the request is gone: the
 *	  job then ends without an answer and without a retry, like an
 *	  HTTP/1.1 client that hung up, and the block is freed.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/time.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/sha.h>

#include "pgbank_http.h"



typedef struct st_pbh_request_t
{
	pbh_job_t	job;			/* first */
	h2o_req_t  *req;
	const pbh_route_t *route;
	int			api_key;
	int			key_lookup;		/* the job is bank.api_key_role, not the request */
	unsigned char key_hash[SHA256_DIGEST_LENGTH];
	int			begin_stmt;		/* PBH_STMT_AUTH_TOKEN, _AUTH_KEY or _CONTEXT */
	const char **begin_params;	/* role, read-only, the credential if any, ... */
	int			nbegin_params;
	const char **args;
	/* the request outliving its h2o request (see the header comment) */
	h2o_mem_pool_t own;			/* parameters and results */
	struct st_pbh_request_t **guard;	/* in req->pool; NULL: answered */
	int			pending;		/* a statement was (re)submitted */
	int			depth;			/* on_done calls under way (a resubmit may
								 * finish at once, inside one) */
} pbh_request_t;

/* ---------------------------------------------------------------------
 * API keys: their roles, cached per thread
 * ---------------------------------------------------------------------
 */
#define KEY_CACHE_SIZE 256

typedef struct st_pbh_key_cache_entry_t
{
	unsigned char hash[SHA256_DIGEST_LENGTH];
	unsigned	role;			/* PBH_ROLE_*; 0: empty */
	time_t		expires;
} pbh_key_cache_entry_t;

/* direct-mapped on the hash's first bytes; a thread's own, no locking */
static __thread pbh_key_cache_entry_t key_cache[KEY_CACHE_SIZE];

static pbh_key_cache_entry_t *
key_cache_slot(const unsigned char *hash)
{
	return &key_cache[(hash[0] | (hash[1] << 8)) % KEY_CACHE_SIZE];
}

/* the cached role of a key's hash, 0 when unknown or stale */
static unsigned
key_cache_get(const unsigned char *hash)
{
	pbh_key_cache_entry_t *e = key_cache_slot(hash);

	if (e->role != 0 && e->expires > time(NULL) &&
		memcmp(e->hash, hash, SHA256_DIGEST_LENGTH) == 0)
		return e->role;
	return 0;
}

static void
key_cache_put(const unsigned char *hash, unsigned role)
{
	pbh_key_cache_entry_t *e = key_cache_slot(hash);

	if (pbh_config.api_key_cache <= 0)
		return;
	memcpy(e->hash, hash, SHA256_DIGEST_LENGTH);
	e->role = role;
	e->expires = time(NULL) + pbh_config.api_key_cache;
}

static void
key_cache_drop(const unsigned char *hash)
{
	pbh_key_cache_entry_t *e = key_cache_slot(hash);

	if (memcmp(e->hash, hash, SHA256_DIGEST_LENGTH) == 0)
		e->role = 0;
}

/* ---------------------------------------------------------------------
 * Responses
 * ---------------------------------------------------------------------
 */

static const char *
reason(int status)
{
	switch (status)
	{
		case 304:
			return "Not Modified";
		case 200:
			return "OK";
		case 201:
			return "Created";
		case 204:
			return "No Content";
		case 400:
			return "Bad Request";
		case 401:
			return "Unauthorized";
		case 403:
			return "Forbidden";
		case 404:
			return "Not Found";
		case 405:
			return "Method Not Allowed";
		case 409:
			return "Conflict";
		case 410:
			return "Gone";
		case 413:
			return "Content Too Large";
		case 415:
			return "Unsupported Media Type";
		case 417:
			return "Expectation Failed";
		case 429:
			return "Too Many Requests";
		case 431:
			return "Request Header Fields Too Large";
		case 422:
			return "Unprocessable Content";
		case 500:
			return "Internal Server Error";
		case 501:
			return "Not Implemented";
		case 503:
			return "Service Unavailable";
	}
	return "";
}

void
pbh_count_status(h2o_req_t *req, int status)
{
	pbh_thread_t *t = (pbh_thread_t *) req->conn->ctx;

	req->res.reason = reason(status);
	if (status >= 100 && status < 600)
		PBH_COUNT(t->n_status[status / 100]);
	pbh_obs_end(req, status);
}

/*
 * The ETag of a GET's body (its SHA-256, 128 bits), added to the response;
 * 1 when the request's If-None-Match names it, weakly compared (or is "*"):
 * the client has the body already.
 */
static int
etag_matches(h2o_req_t *req, const char *body, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[SHA256_DIGEST_LENGTH];
	char	   *etag = h2o_mem_alloc_pool(&req->pool, 34);
	ssize_t		i;
	h2o_iovec_t v;

	SHA256((const unsigned char *) body, len, md);
	etag[0] = '"';
	for (int k = 0; k < 16; k++)
	{
		etag[1 + 2 * k] = hex[md[k] >> 4];
		etag[2 + 2 * k] = hex[md[k] & 15];
	}
	etag[33] = '"';
	/* weak: the same tag names the gzip'd representation too */
	h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ETAG, NULL,
				   h2o_concat(&req->pool, h2o_iovec_init(H2O_STRLIT("W/")),
							  h2o_iovec_init(etag, 34)).base, 36);
	i = h2o_find_header(&req->headers, H2O_TOKEN_IF_NONE_MATCH, -1);
	if (i == -1)
		return 0;
	v = req->headers.entries[i].value;
	if (h2o_memis(v.base, v.len, H2O_STRLIT("*")))
		return 1;
	/* a list of entity tags, weak ones (W/"...") compared weakly */
	for (size_t k = 0; k + 34 <= v.len; k++)
		if (memcmp(v.base + k, etag, 34) == 0)
			return 1;
	return 0;
}

void
pbh_send_json(h2o_req_t *req, int status, const char *body, size_t len)
{
	if (status == 200 && h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) &&
		etag_matches(req, body, len))
	{
		req->res.status = 304;
		pbh_count_status(req, 304);
		h2o_send_inline(req, "", 0);
		return;
	}
	req->res.status = status;
	pbh_count_status(req, status);
	if (status == 204)
	{
		req->res.content_length = 0;
		h2o_send_inline(req, "", 0);
		return;
	}
	h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
				   H2O_STRLIT("application/json"));
	req->res.content_length = len;
	h2o_send_inline(req, body, len);
}

/* request id, security headers and CORS: on every response */
void
pbh_add_common_headers(h2o_req_t *req)
{
	pbh_thread_t *t = (pbh_thread_t *) req->conn->ctx;
	ssize_t		i;
	char	   *rid = NULL;

	i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-request-id"), -1);
	if (i != -1)
	{
		h2o_iovec_t v = req->headers.entries[i].value;
		size_t		k;

		for (k = 0; k < v.len && v.len <= 64; k++)
		{
			char		c = v.base[k];

			if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
				  c == '-' || c == '_' || c == '.' || c == ':'))
				break;
		}
		if (v.len > 0 && k == v.len)
			rid = h2o_strdup(&req->pool, v.base, v.len).base;
	}
	if (rid == NULL)
	{
		rid = h2o_mem_alloc_pool(&req->pool, 48);
		snprintf(rid, 48, "%lx-%d-%llu", (long) req->timestamps.request_begin_at.tv_sec,
				 t->index, (unsigned long long) ++t->request_seq);
	}
	h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL,
						  rid, strlen(rid));
	h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-content-type-options"), 0,
						  NULL, H2O_STRLIT("nosniff"));
	h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL,
				   H2O_STRLIT("no-store"));
	/* an API, never a page: not framed, no referrer, nothing to load */
	h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-frame-options"), 0,
						  NULL, H2O_STRLIT("DENY"));
	h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("referrer-policy"), 0,
						  NULL, H2O_STRLIT("no-referrer"));
	h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("content-security-policy"), 0,
						  NULL, H2O_STRLIT("default-src 'none'; frame-ancestors 'none'"));
	i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("origin"), -1);
	if (i != -1 && pbh_cors_origin_allowed(req->headers.entries[i].value))
	{
		h2o_iovec_t o = req->headers.entries[i].value;

		h2o_add_header_by_str(&req->pool, &req->res.headers,
							  H2O_STRLIT("access-control-allow-origin"), 0, NULL, o.base, o.len);
		h2o_add_header_by_str(&req->pool, &req->res.headers,
							  H2O_STRLIT("access-control-expose-headers"), 0, NULL,
							  H2O_STRLIT("X-Request-Id, WWW-Authenticate, Server-Timing"));
		/* cookie sessions from an allowed origin (never with a wildcard) */
		h2o_add_header_by_str(&req->pool, &req->res.headers,
							  H2O_STRLIT("access-control-allow-credentials"), 0, NULL,
							  H2O_STRLIT("true"));
		/* the browser's PerformanceServerTiming shows Server-Timing to it */
		h2o_add_header_by_str(&req->pool, &req->res.headers,
							  H2O_STRLIT("timing-allow-origin"), 0, NULL, o.base, o.len);
	}
	if (i != -1)
		h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_VARY, NULL, H2O_STRLIT("Origin"));
	pbh_tls_add_headers(req);
	req->env.size = 0;
	h2o_vector_reserve(&req->pool, &req->env, 2);
	req->env.entries[0] = h2o_iovec_init(H2O_STRLIT("request_id"));
	req->env.entries[1] = h2o_iovec_init(rid, strlen(rid));
	req->env.size = 2;
	pbh_obs_begin(req, rid);
}

static int
bad_request(h2o_req_t *req, const char *code, const char *fmt, const char *name)
{
	char	   *detail = h2o_mem_alloc_pool(&req->pool, 512);

	snprintf(detail, 512, fmt, name);
	pbh_problem_send(req, 400, code, "Invalid request", detail);
	return 0;
}

static int
unauthorized(h2o_req_t *req, const char *scheme, const char *error, const char *detail)
{
	char	   *v = h2o_mem_alloc_pool(&req->pool, 128);

	if (error != NULL)
		snprintf(v, 128, "%s realm=\"pgbank\", error=\"%s\"", scheme, error);
	else
		snprintf(v, 128, "%s realm=\"pgbank\"", scheme);
	h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, v, strlen(v));
	pbh_problem_send(req, 401, error ? error : "not_authenticated",
					 error ? (strcmp(scheme, "Bearer") == 0 ? "Invalid access token" : "Invalid API key")
					 : "Not authenticated", detail);
	return 0;
}

static int
forbidden(h2o_req_t *req, const char *detail)
{
	pbh_problem_send(req, 403, "forbidden", "Not allowed", detail);
	return 0;
}

/* ---------------------------------------------------------------------
 * Arguments
 * ---------------------------------------------------------------------
 */


/* ---------------------------------------------------------------------
 * The database round trip
 * ---------------------------------------------------------------------
 */

/* the request's pipeline: role switch, credential and context, the route */
static void
submit_request(pbh_request_t *r)
{
	pbh_job_t  *job = &r->job;

	r->key_lookup = 0;
	r->pending = 1;
	job->tries = 0;
	job->stmts[0] = r->begin_stmt;
	job->nparams[0] = r->nbegin_params;
	job->params[0] = r->begin_params;
	job->stmts[1] = PBH_STMT_FIXED + r->route->index;
	job->nparams[1] = r->route->nargs;
	job->params[1] = r->args;
	job->nstmts = 2;
	/* a write: its WAL position after the commit, for read-your-writes (replica.c) */
	job->lsn_after = pbh_config.replica_dsn != NULL && !r->route->read_only && job->subject != 0;
	pbh_pool_submit(job);
}

/* an API key not in the cache: ask the database for its role first */
static void
submit_key_lookup(pbh_request_t *r)
{
	pbh_job_t  *job = &r->job;

	r->key_lookup = 1;
	r->pending = 1;
	job->stmts[0] = PBH_STMT_KEY_ROLE;
	job->nparams[0] = 1;
	job->params[0] = &r->begin_params[2];	/* the key */
	job->nstmts = 1;
	job->lsn_after = 0;
	pbh_pool_submit(job);
}

static void
on_done_req(pbh_job_t *job)
{
	pbh_request_t *r = (pbh_request_t *) job;
	h2o_req_t  *req = r->req;
	const pbh_route_t *route = r->route;
	const pbh_error_t *e;

	pbh_obs_db(req, job);
	if (job->failed)
		pbh_obs_db_error(job->thread, job);
	if (r->key_lookup && !job->failed)
	{
		unsigned	bit = job->value[0] ? pbh_role_bit(job->value[0]) : 0;

		if (bit == 0)
		{
			pbh_problem_send(req, 500, "internal", "Internal error", NULL);
			return;
		}
		key_cache_put(r->key_hash, bit);
		if (!(route->roles & bit))
		{
			forbidden(req, "This API key's role may not use this route.");
			return;
		}
		r->begin_params[0] = pbh_role_name(bit);
		submit_request(r);
		return;
	}
	if (job->failed)
	{
		if (job->conn_lost)
		{
			pbh_problem_unavailable(req);
			return;
		}
		if (pbh_sqlstate_retryable(job->sqlstate) && job->tries < pbh_config.retries)
		{
			job->tries++;
			PBH_COUNT(job->thread->n_retries);
			r->pending = 1;
			pbh_pool_submit(job);
			return;
		}
		/* a key the database refused (revoked, expired) is forgotten */
		if (r->api_key && (strcmp(job->sqlstate, "PB043") == 0 ||
						   strcmp(job->sqlstate, "PB042") == 0))
			key_cache_drop(r->key_hash);
		e = pbh_error_for_sqlstate(job->sqlstate);
		if (e->status >= 500 && strcmp(e->code, "internal") == 0)
			fprintf(stderr, "pgbank-http: %.*s %.*s: SQLSTATE %s\n",
					(int) req->method.len, req->method.base,
					(int) req->path_normalized.len, req->path_normalized.base, job->sqlstate);
		pbh_problem_error(req, e, job->message, r->api_key);
		return;
	}
	switch (route->result)
	{
		case PBH_RESULT_VOID:
		case PBH_RESULT_SESSION_END:
			pbh_send_json(req, 204, NULL, 0);
			return;
		case PBH_RESULT_AUTH:
		case PBH_RESULT_SESSION:
			if (route->result == PBH_RESULT_SESSION && job->value[0] != NULL &&
				strcmp(job->value[0], "ok") == 0 && job->value[1] != NULL)
			{
				pbh_session_send(req, route->status, job->value[1], job->value_len[1]);
				return;
			}
			if (route->result == PBH_RESULT_SESSION)
				pbh_session_clear(req);
			if (job->value[0] != NULL && strcmp(job->value[0], "ok") == 0 && job->value[1] != NULL)
			{
				size_t		len;
				char	   *body = pbh_json_quote_amounts(&req->pool, job->value[1],
														  job->value_len[1], &len);

				/*
				 * never compressed: a body with credentials is kept out of
				 * the gzip filter (BREACH-style guessing by length)
				 */
				h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_ENCODING, NULL,
							   H2O_STRLIT("identity"));
				pbh_send_json(req, route->status, body, len);
				return;
			}
			if (job->value[0] != NULL && strcmp(job->value[0], "mfa_required") == 0)
				pbh_problem_send(req, 401, "mfa_required", "A TOTP code is required", NULL);
			else
				pbh_problem_send(req, 401, "denied", "Denied", NULL);
			return;
		case PBH_RESULT_JSON:
			if (job->value[0] == NULL)
			{
				pbh_problem_send(req, 404, route->not_found_code ? route->not_found_code : "not_found",
								 "Not found", NULL);
				return;
			}
			{
				size_t		len;
				char	   *body = pbh_json_quote_amounts(&req->pool, job->value[0],
														  job->value_len[0], &len);

				pbh_send_json(req, route->status, body, len);
			}
			return;
		case PBH_RESULT_EVENTS:
			/* never a job of this file: handed to events.c (pbh_api_on_req) */
			pbh_problem_send(req, 500, "internal", "Internal error", NULL);
			return;
	}
}

/* the h2o request is being disposed: its job must not answer it */
static void
on_req_dispose(void *p)
{
	pbh_request_t *r = *(pbh_request_t **) p;

	if (r != NULL)
		r->req = NULL;
}

static void
request_free(pbh_request_t *r)
{
	if (r->guard != NULL && r->req != NULL)
		*r->guard = NULL;
	h2o_mem_clear_pool(&r->own);
	free(r);
}

/* a job's end: answer the request if it is still there, then free */
static void
on_done(pbh_job_t *job)
{
	pbh_request_t *r = (pbh_request_t *) job;

	r->pending = 0;
	if (r->req != NULL)
	{
		r->depth++;
		on_done_req(job);
		r->depth--;
	}
	/* the outermost call frees, once nothing is pending */
	if (r->depth == 0 && !r->pending)
		request_free(r);
}

static const char *
own_strdup(h2o_mem_pool_t *pool, const char *s)
{
	return s == NULL ? NULL : h2o_strdup(pool, s, strlen(s)).base;
}

/*
 * The client's address as text (the TCP peer's), written into buf (at least
 * INET6_ADDRSTRLEN bytes); NULL when it has none that is IPv4 or IPv6.  The
 * request context, event streams and the access log read it here.
 */
const char *
pbh_client_addr(h2o_req_t *req, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t	sl = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *) &ss);

	if (sl == 0)
		return NULL;
	if (ss.ss_family == AF_INET)
		return inet_ntop(AF_INET, &((struct sockaddr_in *) &ss)->sin_addr, buf, len);
	if (ss.ss_family == AF_INET6)
		return inet_ntop(AF_INET6, &((struct sockaddr_in6 *) &ss)->sin6_addr, buf, len);
	return NULL;
}

/*
 * The User-Agent, cut to what bank.set_request_context takes (511 bytes) on
 * a character boundary, not copied; base NULL without one
 */
h2o_iovec_t
pbh_user_agent(h2o_req_t *req)
{
	ssize_t		i = h2o_find_header(&req->headers, H2O_TOKEN_USER_AGENT, -1);
	h2o_iovec_t v;

	if (i == -1)
		return h2o_iovec_init(NULL, 0);
	v = req->headers.entries[i].value;
	if (v.len > 511)
	{
		v.len = 511;
		while (v.len > 0 && ((unsigned char) v.base[v.len] & 0xC0) == 0x80)
			v.len--;
	}
	return v;
}

/* the request id (pbh_add_common_headers put it in env[1]), or NULL */
const char *
pbh_request_id(h2o_req_t *req)
{
	return req->env.size >= 2 ? req->env.entries[1].base : NULL;
}

static const char *
header_text(h2o_req_t *req, const char *name)
{
	char		lower[64];
	size_t		len = strlen(name);
	ssize_t		i;

	/* h2o keeps header names in lower case */
	for (size_t k = 0; k < len && k < sizeof(lower); k++)
		lower[k] = h2o_tolower(name[k]);
	i = h2o_find_header_by_str(&req->headers, lower, len < sizeof(lower) ? len : sizeof(lower), -1);
	if (i == -1)
		return NULL;
	return h2o_strdup(&req->pool, req->headers.entries[i].value.base,
					  req->headers.entries[i].value.len).base;
}

int
pbh_api_on_req(h2o_handler_t *self, h2o_req_t *req)
{
	pbh_thread_t *t = (pbh_thread_t *) req->conn->ctx;
	const pbh_route_t *route;
	h2o_iovec_t ids[4];
	int			nids = 0,
				status = 0;
	char		allow[128];
	pbh_request_t *r;
	pbh_job_t  *job;
	const char *credential = NULL;
	pbh_jwt_claims_t claims = {0};	/* a verified token's (sub 0: none) */
	const char *role = NULL;
	int			api_key = 0;
	unsigned char key_hash[SHA256_DIGEST_LENGTH];
	pbh_qparam_t qp[PBH_MAX_QUERY_PARAMS];
	int			nq = 0;
	pbh_json_member_t *members = NULL;
	size_t		nmembers = 0;
	const char **args;
	int			path_i = 0;
	const char *bad = NULL;
	int			rc;
	const char *cookie = NULL;
	pbh_qparam_t fp[PBH_MAX_QUERY_PARAMS];
	int			nf = 0,
				form = 0;
	pbh_limit_class_t limit_class;

	PBH_COUNT(t->n_requests);
	pbh_add_common_headers(req);
	if (req->version >= 0x200 && !pbh_config.http2)
	{
		pbh_problem_send(req, 505, "http_version", "Only HTTP/1.1 is served", NULL);
		return 0;
	}
	if (pbh_guard_request(req))
		return 0;
	if (pbh_ops_on_req(req, req->path_normalized.base, req->path_normalized.len))
		return 0;

	route = pbh_route_match(req->method.base, req->method.len, req->path_normalized.base,
							req->path_normalized.len, ids, &nids, &status, allow, sizeof(allow));
	if (route == NULL)
	{
		if (status == 405 && h2o_memis(req->method.base, req->method.len, H2O_STRLIT("OPTIONS")))
		{
			if (h2o_find_header_by_str(&req->headers, H2O_STRLIT("access-control-request-method"), -1) != -1)
				return pbh_cors_preflight(req, allow);
			h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, allow, strlen(allow));
			pbh_send_json(req, 204, NULL, 0);
			return 0;
		}
		if (status == 405)
		{
			h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, allow, strlen(allow));
			pbh_problem_send(req, 405, "method_not_allowed", "Method not allowed", NULL);
		}
		else
			pbh_problem_send(req, 404, "not_found", "No such route", NULL);
		return 0;
	}
	pbh_obs_route(req, route->index);

	/* after SIGTERM a new request (on a connection kept alive) starts no work */
	if (pbh_stopping)
	{
		pbh_problem_unavailable(req);
		return 0;
	}

	/* rate limits (limits.c): the address now, the subject once verified */
	limit_class = pbh_limits_class(route);
	if (pbh_limits_address(req, limit_class))
		return 0;

	/* the credential, checked here before any database work */
	if (route->roles & PBH_ROLE_ANON)
		role = "bank_anon";
	else
	{
		ssize_t		ai = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
		ssize_t		ki = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-api-key"), -1);

		if (ai != -1 && ki != -1)
			return bad_request(req, "invalid_request", "send one credential: %s", "Authorization or X-API-Key");
		if (ai != -1)
		{
			h2o_iovec_t v = req->headers.entries[ai].value;
			pbh_jwt_result_t jr;

			if (v.len < 8 || !h2o_lcstris(v.base, 7, H2O_STRLIT("bearer ")))
				return unauthorized(req, "Bearer", "invalid_token", "The Authorization header must be Bearer <token>.");
			jr = pbh_jwt_verify(&req->pool, v.base + 7, v.len - 7, (int64_t) time(NULL), &claims);
			if (jr != PBH_JWT_OK)
				return unauthorized(req, "Bearer", "invalid_token", pbh_jwt_result_text(jr));
			if (!(route->roles & PBH_ROLE_CUSTOMER))
			{
				h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL,
							   H2O_STRLIT("Bearer realm=\"pgbank\", error=\"insufficient_scope\""));
				return forbidden(req, "Customers may not use this route.");
			}
			credential = h2o_strdup(&req->pool, v.base + 7, v.len - 7).base;
			role = "bank_customer";
			if (pbh_limits_subject(req, limit_class, &claims.sub, sizeof(claims.sub)))
				return 0;
		}
		else if (ki != -1)
		{
			h2o_iovec_t v = req->headers.entries[ki].value;
			unsigned	bit;

			if (!pbh_api_key_shape_ok(v.base, v.len))
				return unauthorized(req, "ApiKey", "invalid_api_key", "The API key is malformed.");
			if (!(route->roles & PBH_ROLES_STAFF))
				return forbidden(req, "API keys may not use this route.");
			SHA256((const unsigned char *) v.base, v.len, key_hash);
			if (pbh_limits_subject(req, limit_class, key_hash, sizeof(key_hash)))
				return 0;
			/* a cached role: checked here; unknown: asked below (role NULL) */
			bit = key_cache_get(key_hash);
			if (bit != 0 && !(route->roles & bit))
				return forbidden(req, "This API key's role may not use this route.");
			role = bit ? pbh_role_name(bit) : NULL;
			credential = h2o_strdup(&req->pool, v.base, v.len).base;
			api_key = 1;
		}
		else if ((cookie = pbh_cookie_value(req, PBH_COOKIE_ACCESS)) != NULL)
		{
			/* a browser session: only without either header (see browser.c) */
			pbh_jwt_result_t jr = pbh_jwt_verify(&req->pool, cookie, strlen(cookie),
												 (int64_t) time(NULL), &claims);

			if (jr != PBH_JWT_OK)
				return unauthorized(req, "Bearer", "invalid_token", pbh_jwt_result_text(jr));
			if (!(route->roles & PBH_ROLE_CUSTOMER))
				return forbidden(req, "Customers may not use this route.");
			if (pbh_limits_subject(req, limit_class, &claims.sub, sizeof(claims.sub)))
				return 0;
			if (pbh_csrf_check(req, claims.sid) != 0)
				return 0;
			credential = cookie;
			role = "bank_customer";
		}
		else
			return unauthorized(req, "Bearer", NULL, "This route needs an access token or an API key.");
	}
	/* a browser login, refresh or logout: only from a trusted origin */
	if ((route->result == PBH_RESULT_SESSION || route->result == PBH_RESULT_SESSION_END) &&
		!pbh_origin_trusted(req))
	{
		pbh_problem_send(req, 403, "csrf_origin", "Cross-site request refused",
						 "A browser session must be opened from an allowed origin.");
		return 0;
	}
	/*
	 * Logging out from a trusted origin clears both cookies in every answer
	 * from here on (not before the origin check: a cross-site form would
	 * otherwise clear them, as browsers apply cookies set in answers to
	 * top-level cross-site navigations).
	 */
	if (route->result == PBH_RESULT_SESSION_END)
		pbh_session_clear(req);

	/* the arguments: query, body, path, headers */
	rc = req->query_at == SIZE_MAX ? 0 :
		pbh_parse_query(&req->pool, req->path.base + req->query_at + 1,
						req->path.len - req->query_at - 1, qp, &nq, &bad);
	if (rc == -2)
		return bad_request(req, "invalid_argument", "query parameter %s is given twice", bad);
	if (rc != 0)
		return bad_request(req, "invalid_argument", "%s", bad);
	if (req->entity.base != NULL && req->entity.len > 0)
	{
		ssize_t		ct = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
		const char *err;

		if (pbh_is_form(req))
		{
			/* a form: the query string's parser, then the same checks */
			form = 1;
			rc = pbh_parse_query(&req->pool, req->entity.base, req->entity.len, fp, &nf, &bad);
			if (rc == -2)
				return bad_request(req, "invalid_argument", "form field %s is given twice", bad);
			if (rc != 0)
				return bad_request(req, "invalid_form", "the form body is malformed: %s", bad);
		}
		else if (ct == -1 || req->headers.entries[ct].value.len < 16 ||
				 !h2o_lcstris(req->headers.entries[ct].value.base, 16, H2O_STRLIT("application/json")))
		{
			pbh_problem_send(req, 415, "unsupported_media_type",
							 "The body must be application/json or application/x-www-form-urlencoded", NULL);
			return 0;
		}
		else if (pbh_json_parse_object(&req->pool, req->entity.base, req->entity.len, &members,
									   &nmembers, &err) != 0)
			return bad_request(req, "invalid_json", "the body is not valid JSON: %s", err);
	}
	args = h2o_mem_alloc_pool(&req->pool, sizeof(char *) * (route->nargs + 1));
	for (int i = 0; i < route->nargs; i++)
	{
		const pbh_arg_t *a = &route->args[i];
		const char *text = NULL;
		const pbh_json_member_t *m = NULL;
		pbh_arg_error_t aerr;

		switch (a->source)
		{
			case PBH_ARG_PATH:
				text = h2o_strdup(&req->pool, ids[path_i].base, ids[path_i].len).base;
				path_i++;
				break;
			case PBH_ARG_QUERY:
				for (int k = 0; k < nq; k++)
					if (strcmp(qp[k].name, a->name) == 0)
					{
						qp[k].used = 1;
						text = qp[k].value;
					}
				break;
			case PBH_ARG_BODY:
				if (form)
				{
					text = pbh_form_arg_text(a, fp, nf, &aerr);
					if (aerr.code != NULL)
						return bad_request(req, aerr.code, aerr.format, a->name);
					break;
				}
				for (size_t k = 0; k < nmembers; k++)
					if (strcmp(members[k].name, a->name) == 0)
					{
						members[k].used = 1;
						m = &members[k];
					}
				break;
			case PBH_ARG_HEADER:
				text = header_text(req, a->name);
				break;
			case PBH_ARG_COOKIE:
				text = pbh_cookie_value(req, a->name);
				break;
		}
		args[i] = pbh_arg_value(&req->pool, a, text, m, &aerr);
		if (aerr.code != NULL)
			return bad_request(req, aerr.code, aerr.format, a->name);
	}
	for (int k = 0; k < nq; k++)
		if (!qp[k].used)
			return bad_request(req, "unknown_parameter", "unknown query parameter %s", qp[k].name);
	for (size_t k = 0; k < nmembers; k++)
		if (!members[k].used)
			return bad_request(req, "unknown_field", "unknown field %s", members[k].name);
	for (int k = 0; k < nf; k++)
		if (!fp[k].used)
			return bad_request(req, "unknown_field", "unknown field %s", fp[k].name);

	/* a stream: events.c answers, and runs its own fetches */
	if (route->result == PBH_RESULT_EVENTS)
		return pbh_events_open(req, route, credential, claims.sub, claims.exp, args);

	/* the pipeline, in memory of its own */
	r = h2o_mem_alloc(sizeof(*r));
	memset(r, 0, sizeof(*r));
	h2o_mem_init_pool(&r->own);
	r->guard = h2o_mem_alloc_shared(&req->pool, sizeof(*r->guard), on_req_dispose);
	*r->guard = r;
	r->req = req;
	r->route = route;
	r->api_key = api_key;
	if (api_key)
		memcpy(r->key_hash, key_hash, sizeof(key_hash));
	job = &r->job;
	job->thread = t;
	job->read_only = route->read_only;
	job->pool = &r->own;
	job->on_done = on_done;
	if (pbh_config.replica_dsn != NULL && credential != NULL)
		job->subject = api_key ? pbh_replica_key_subject(key_hash) : (uint64_t) claims.sub;

	/* role, read-only, the credential if any, request id, client, user agent */
	r->begin_params = h2o_mem_alloc_pool(&r->own, sizeof(char *) * 6);
	{
		int			n = 0;
		char		addr[INET6_ADDRSTRLEN];
		h2o_iovec_t ua = pbh_user_agent(req);

		r->begin_params[n++] = role;
		r->begin_params[n++] = route->read_only ? "on" : "off";
		if (credential != NULL)
			r->begin_params[n++] = own_strdup(&r->own, credential);
		r->begin_params[n++] = own_strdup(&r->own, pbh_request_id(req));
		r->begin_params[n++] = own_strdup(&r->own, pbh_client_addr(req, addr, sizeof(addr)));
		r->begin_params[n++] = ua.base != NULL ? h2o_strdup(&r->own, ua.base, ua.len).base : NULL;
		r->begin_stmt = credential == NULL ? PBH_STMT_CONTEXT :
			api_key ? PBH_STMT_AUTH_KEY : PBH_STMT_AUTH_TOKEN;
		r->nbegin_params = n;
	}
	r->args = h2o_mem_alloc_pool(&r->own, sizeof(char *) * (route->nargs + 1));
	for (int i = 0; i < route->nargs; i++)
		r->args[i] = own_strdup(&r->own, args[i]);
	if (role == NULL)
		submit_key_lookup(r);
	else
		submit_request(r);
	return 0;
}
