/*-------------------------------------------------------------------------
 *
 * pgbank_http.h
 *		The internal API of pgbank-http, the HTTP face of pgbank: every
 *		module of shim/ declares what it offers here.
 *
 * Invariants:
 *	- One thread owns one h2o event loop, one h2o context, one listener
 *	  (SO_REUSEPORT) and one pool of libpq connections; nothing of a thread
 *	  is touched by another, except its counters and gauges, which /metrics
 *	  and /readyz read with relaxed atomic loads.  The configuration is
 *	  read-only once the threads start; what SIGHUP may change is a
 *	  separate immutable snapshot, swapped whole (pbh_live).
 *	- Nothing inside a loop blocks: libpq runs non-blocking in pipeline
 *	  mode, its sockets registered in the loop.
 *	- A request costs no query until its credential has been verified here
 *	  (token signature and claims, or API key shape); then it is one
 *	  pipeline, one Sync, one transaction.
 *	- Per-request data lives in the request's h2o memory pool.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGBANK_HTTP_H
#define PGBANK_HTTP_H

#define H2O_USE_LIBUV 0

#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <time.h>
#include <libpq-fe.h>
#include "h2o.h"

#define PBH_VERSION "0.1.0"

/* ---------------------------------------------------------------------
 * config.c: flags and environment variables
 * ---------------------------------------------------------------------
 */
typedef struct st_pbh_config_t
{
	char	   *listen_addr;	/* numeric IPv4 or IPv6 address */
	int			port;
	char	   *dsn;
	int			threads;
	int			connections;	/* per thread, for any route */
	int			read_connections;	/* per thread, for read-only routes only */
	int			pipeline_depth; /* requests in flight per connection */
	int			queue_limit;	/* requests waiting per thread */
	char	   *jwt_secret;
	char	   *jwt_issuer;
	char	   *jwt_audience;
	int			jwt_clock_skew; /* seconds */
	int			statement_timeout;	/* milliseconds */
	int			lock_timeout;	/* milliseconds */
	size_t		max_body;		/* bytes */
	int			request_timeout;	/* milliseconds, HTTP/1 idle and request */
	int			retries;		/* serialization failures and deadlocks */
	char	  **cors_origins;	/* NULL-terminated */
	int			access_log;
	int			api_key_cache;	/* seconds a key's role is cached; 0: never */
	char	   *tls_cert;		/* PEM certificate (chain) file; NULL: no TLS */
	char	   *tls_key;		/* PEM private key file */
	int			http2;			/* 1: offer HTTP/2 by ALPN (TLS only) */
	int			hsts_max_age;	/* seconds, Strict-Transport-Security */
	char	   *replica_dsn;	/* NULL: no replica (replica.c) */
	int			replica_connections;	/* per thread, on the replica */
	int			replica_max_lag;	/* milliseconds */
	int			replica_poll;	/* milliseconds between replay position polls */
	int			replica_ryw;	/* read-your-writes per subject (1) */
	char	   *config_file;	/* settings read before the environment */
	/* guard.c and limits.c: request, connection and rate limits */
	int			max_headers;	/* header fields of a request */
	int			max_header_size;	/* bytes of request line and header fields */
	int			max_connections;	/* open client connections, whole server */
	int			rate_limit;		/* 0: no rate limits at all */
	int			rate_auth;		/* per second per address, auth routes */
	int			burst_auth;
	int			rate_read;		/* per second per subject, GET routes */
	int			burst_read;
	int			rate_write;		/* per second per subject, other routes */
	int			burst_write;
	int			rate_address;	/* per second per address, read and write routes */
	int			burst_address;
	int			rate_limit_entries; /* buckets of the server, shared by its threads */
	int			events_max_streams; /* per thread */
	int			events_per_customer;	/* across threads */
	int			events_heartbeat;	/* seconds */
	int			events_buffer;	/* bytes a stream holds for a slow client */
	int			events_retry;	/* milliseconds, the SSE retry: field */
} pbh_config_t;

extern pbh_config_t pbh_config;

/* fill pbh_config from the environment, then argv; 0, or -1 with a message */
int			pbh_config_load(int argc, char **argv, char *err, size_t errlen);
void		pbh_config_usage(FILE *out);

/* ---------------------------------------------------------------------
 * json.c: the request body parser and string escaping
 * ---------------------------------------------------------------------
 */
typedef enum
{
	PBH_JSON_NULL,
	PBH_JSON_BOOL,
	PBH_JSON_NUMBER,
	PBH_JSON_STRING,
	PBH_JSON_ARRAY,
	PBH_JSON_OBJECT
} pbh_json_type_t;

typedef struct st_pbh_json_member_t
{
	const char *name;			/* decoded, NUL-terminated */
	pbh_json_type_t type;
	const char *raw;			/* the value as received */
	size_t		raw_len;
	const char *str;			/* STRING: decoded, NUL-terminated */
	int			is_integer;		/* NUMBER: no fraction, no exponent */
	int			all_strings;	/* ARRAY: every element a string */
	int			exponent;		/* a number in it has an exponent (1e3) */
	int			boolean;		/* BOOL */
	int			used;			/* set by the caller */
} pbh_json_member_t;

/* parse a JSON object; 0, or -1 with *err set to a static message */
int			pbh_json_parse_object(h2o_mem_pool_t *pool, const char *s, size_t len,
								  pbh_json_member_t **members, size_t *count,
								  const char **err);
int			pbh_json_array_has_string(h2o_mem_pool_t *pool, const char *raw, size_t len,
									  const char *want);
/* the database's JSON with every money member's number as a string */
char	   *pbh_json_quote_amounts(h2o_mem_pool_t *pool, const char *s, size_t len,
								   size_t *outlen);
/* append s as a JSON string (quotes included) to buf; returns bytes written */
size_t		pbh_json_escape(char *buf, const char *s, size_t len);
#define PBH_JSON_ESCAPED_MAX(len) ((len) * 6 + 2)

/* ---------------------------------------------------------------------
 * jwt.c: HS256 access tokens, verified before any database work
 * ---------------------------------------------------------------------
 */
typedef enum
{
	PBH_JWT_OK = 0,
	PBH_JWT_MALFORMED,
	PBH_JWT_BAD_SIGNATURE,
	PBH_JWT_BAD_ALGORITHM,
	PBH_JWT_EXPIRED,
	PBH_JWT_NOT_YET_VALID,
	PBH_JWT_BAD_ISSUER,
	PBH_JWT_BAD_AUDIENCE,
	PBH_JWT_BAD_CLAIMS
} pbh_jwt_result_t;

/* the claims a verified token carries that the server needs later */
typedef struct st_pbh_jwt_claims_t
{
	int64_t		sub;			/* the customer id */
	int64_t		exp;			/* seconds */
	const char *sid;			/* the session id, as text */
} pbh_jwt_claims_t;

/* PBH_JWT_OK fills *claims (when not NULL), in pool's memory */
pbh_jwt_result_t pbh_jwt_verify(h2o_mem_pool_t *pool, const char *token, size_t len,
								int64_t now, pbh_jwt_claims_t *claims);
const char *pbh_jwt_result_text(pbh_jwt_result_t r);
int			pbh_api_key_shape_ok(const char *key, size_t len);

/* ---------------------------------------------------------------------
 * routes.c: the route table
 * ---------------------------------------------------------------------
 */
enum
{
	PBH_ROLE_ANON = 1 << 0,
	PBH_ROLE_CUSTOMER = 1 << 1,
	PBH_ROLE_TELLER = 1 << 2,
	PBH_ROLE_AUDITOR = 1 << 3,
	PBH_ROLE_SERVICE = 1 << 4,
	PBH_ROLE_ADMIN = 1 << 5
};
#define PBH_ROLES_STAFF (PBH_ROLE_TELLER | PBH_ROLE_AUDITOR | PBH_ROLE_SERVICE | PBH_ROLE_ADMIN)
#define PBH_ROLES_SIGNED_IN (PBH_ROLE_CUSTOMER | PBH_ROLES_STAFF)

typedef enum
{
	PBH_ARG_PATH,				/* the n-th {id} of the path */
	PBH_ARG_QUERY,
	PBH_ARG_BODY,
	PBH_ARG_HEADER,				/* Idempotency-Key */
	PBH_ARG_COOKIE				/* a cookie of a browser session */
} pbh_arg_source_t;

typedef enum
{
	PBH_T_ID,					/* a positive bigint */
	PBH_T_INT,					/* an integer */
	PBH_T_TEXT,
	PBH_T_AMOUNT,				/* a decimal string ("10.50"); NULL for an integer */
	PBH_T_MINOR,				/* the same member as an integer of minor units;
								 * NULL for a string */
	PBH_T_TIME,					/* a timestamp string, checked by the database */
	PBH_T_INTERVAL,				/* an interval string, checked by the database */
	PBH_T_OBJECT,				/* a JSON object, passed as its text */
	PBH_T_STRINGS,				/* a JSON array of strings, passed as its text */
	PBH_T_ARRAY,				/* a JSON array, passed as its text */
	PBH_T_ENUM,					/* one of the route argument's choices */
	PBH_T_NATURAL				/* a non-negative bigint (0 included) */
} pbh_arg_type_t;

typedef struct st_pbh_arg_t
{
	const char *name;
	pbh_arg_source_t source;
	pbh_arg_type_t type;
	int			required;
	const char *const *choices; /* PBH_T_ENUM: NULL-terminated */
	size_t		max_len;		/* 0: the default limit */
} pbh_arg_t;

#define PBH_MAX_ARGS 12

typedef enum
{
	PBH_RESULT_JSON,			/* one json or jsonb value; NULL is "not found" */
	PBH_RESULT_VOID,			/* 204 */
	PBH_RESULT_AUTH,			/* (status, jsonb): status 'ok' or a 401 */
	PBH_RESULT_SESSION,			/* as AUTH, the tokens sent as cookies (browser.c) */
	PBH_RESULT_SESSION_END,		/* 204, and the session's cookies cleared */
	PBH_RESULT_EVENTS			/* a stream of Server-Sent Events: once the
								 * checks of every route pass, events.c keeps
								 * the response open and runs the statement
								 * for each fetch */
} pbh_result_kind_t;

typedef struct st_pbh_route_t
{
	const char *method;
	const char *pattern;		/* "/v1/accounts/{id}/balance" */
	unsigned	roles;			/* PBH_ROLE_* allowed */
	int			read_only;
	pbh_result_kind_t result;
	int			status;			/* on success */
	const char *not_found_code; /* problem code when the result is NULL */
	const char *sql;			/* $1.. in the order of args */
	pbh_arg_t	args[PBH_MAX_ARGS];
	/* set at startup */
	int			nargs;
	int			index;
} pbh_route_t;

extern pbh_route_t pbh_routes[];
extern int	pbh_nroutes;

void		pbh_routes_init(void);
const char *pbh_role_name(unsigned bit);	/* "bank_customer" for PBH_ROLE_CUSTOMER */
unsigned	pbh_role_bit(const char *name);

/*
 * Find the route of a method and path: the route, or NULL with *status 404
 * (no pattern matches) or 405 (*allow lists the methods that do).  ids
 * receives the path's {id} segments.
 */
const pbh_route_t *pbh_route_match(const char *method, size_t mlen, const char *path,
								   size_t plen, h2o_iovec_t *ids, int *nids,
								   int *status, char *allow, size_t allowlen);

/* ---------------------------------------------------------------------
 * args.c: request text to route arguments
 * ---------------------------------------------------------------------
 */
#define PBH_MAX_QUERY_PARAMS 16

typedef struct st_pbh_qparam_t
{
	char	   *name;			/* decoded, NUL-terminated */
	char	   *value;
	int			used;
} pbh_qparam_t;

typedef struct st_pbh_arg_error_t
{
	const char *code;			/* the problem's code; NULL: no error */
	const char *format;			/* its detail, %s for the argument's name */
} pbh_arg_error_t;

int			pbh_parse_query(h2o_mem_pool_t *pool, const char *q, size_t len,
							pbh_qparam_t *out, int *n, const char **bad);
int			pbh_digits_ok(const char *s, int allow_minus, int positive);
int			pbh_amount_ok(const char *s);
const char *pbh_arg_value(h2o_mem_pool_t *pool, const pbh_arg_t *a, const char *text,
						  const pbh_json_member_t *m, pbh_arg_error_t *err);

/* ---------------------------------------------------------------------
 * pool.c: per-thread libpq connections in pipeline mode
 * ---------------------------------------------------------------------
 */
#define PBH_MAX_STMTS 2

typedef struct st_pbh_thread_t pbh_thread_t;
typedef struct st_pbh_conn_t pbh_conn_t;
typedef struct st_pbh_job_t pbh_job_t;

/* statements prepared on every connection: fixed ones, then one per route */
enum
{
	PBH_STMT_AUTH_TOKEN,		/* role, read-only, bank.authenticate, request context */
	PBH_STMT_AUTH_KEY,			/* the same with bank.authenticate_api_key */
	PBH_STMT_CONTEXT,			/* role, read-only, request context (anonymous) */
	PBH_STMT_KEY_ROLE,			/* bank.api_key_role, as the gateway itself */
	PBH_STMT_WRITE_LSN,			/* pg_current_wal_insert_lsn(), as a number */
	PBH_STMT_REPLAY_LSN,		/* pg_last_wal_replay_lsn(), as a number */
	PBH_STMT_EVENTS_AUTH,		/* PBH_STMT_AUTH_TOKEN and bank.events_watch
								 * (events.c; then the route's statement) */
	PBH_STMT_FIXED
};

/* connection classes of a thread's pool */
#define PBH_POOL_WRITE 0		/* any route */
#define PBH_POOL_READ 1			/* read-only routes only */
#define PBH_POOL_REPLICA 2		/* read-only routes, on --replica-dsn */
#define PBH_POOL_CLASSES 3

/* where a job may go (pbh_job_t.target) */
#define PBH_TARGET_ANY 0		/* a read may go to the replica (replica.c) */
#define PBH_TARGET_PRIMARY 1
#define PBH_TARGET_REPLICA 2	/* the replica or nowhere */

struct st_pbh_job_t
{
	h2o_linklist_t link;
	pbh_thread_t *thread;
	int			read_only;		/* may go to a read-only connection */
	int			nstmts;
	int			stmts[PBH_MAX_STMTS];
	int			nparams[PBH_MAX_STMTS];
	const char *const *params[PBH_MAX_STMTS];
	int			tries;
	/* results, copied into pool */
	h2o_mem_pool_t *pool;
	int			nresults;
	int			failed;			/* an error, or the connection broke */
	int			failed_stmt;	/* index of the statement that failed */
	int			conn_lost;
	char		sqlstate[6];
	char	   *message;
	int			ntuples;		/* of the last statement */
	char	   *value[2];		/* first row of the last statement */
	size_t		value_len[2];
	void		(*on_done) (pbh_job_t *job);
	/* the replica (replica.c) */
	uint64_t	subject;		/* whose reads must see this job's writes; 0: none */
	int			target;			/* PBH_TARGET_* */
	int			lsn_after;		/* ask the WAL insert position after the Sync */
	int			lsn_phase;		/* the first Sync came: now that position */
	int			sent;			/* went out on a connection */
	int			on_replica;		/* given to the replica's class */
	uint64_t	lsn;			/* the position asked for; 0: unknown */
	uint64_t	sent_ns;		/* pbh_clock_ns() when last sent; 0: never */
	uint64_t	db_ns;			/* sent to Sync, summed over round trips */
};

struct st_pbh_thread_t
{
	h2o_context_t ctx;			/* first: h2o hands it to handlers */
	int			index;
	pthread_t	tid;
	h2o_accept_ctx_t accept_ctx;
	h2o_socket_t *listener;
	pbh_conn_t *conns;
	h2o_linklist_t waiting[PBH_POOL_CLASSES];	/* pbh_job_t not yet sent */
	int			nwaiting[PBH_POOL_CLASSES];
	int			inflight;		/* jobs submitted and not done */
	h2o_timeout_t retry_timeout;
	uint64_t	request_seq;
	/* counters for /metrics */
	uint64_t	n_requests;
	uint64_t	n_db_requests;
	uint64_t	n_retries;
	uint64_t	n_status[6];	/* 1xx..5xx by first digit */
	struct st_pbh_replica_t *replica;	/* replica.c's, NULL without one */
	uint64_t	n_rate_limited; /* 429s of limits.c */
	uint64_t	n_conn_refused; /* connections over --max-connections */
	/* observability (obs.c, pool.c): written by the owner, read by any */
	struct st_pbh_metrics_t *metrics;
	uint64_t	n_db_conn_failures;
	int			g_conn_ready[PBH_POOL_CLASSES];
	int			g_conn_down[PBH_POOL_CLASSES];
	int			g_waiting[PBH_POOL_CLASSES];
	int			g_inflight;
	uint64_t	loop_rounds;	/* for freeing an old live config */
};

/*
 * A counter of the thread's, read by /metrics in any thread: one relaxed
 * atomic store by its only writer (a plain add on x86, no lock prefix)
 */
#define PBH_COUNT(x) __atomic_store_n(&(x), (x) + 1, __ATOMIC_RELAXED)

/* reconnection: exponential backoff with jitter, checked on a tick */
#define PBH_RECONNECT_MIN_MS 100
#define PBH_RECONNECT_MAX_MS 5000
#define PBH_RECONNECT_TICK_MS 25
#define PBH_CONNECT_TIMEOUT_MS 10000
#define PBH_ANSWER_MARGIN_MS 3000	/* past statement_timeout: a hung database */

void		pbh_pool_init(pbh_thread_t *thread);
void		pbh_pool_submit(pbh_job_t *job);
int			pbh_pool_ready(pbh_thread_t *thread);
void		pbh_pool_publish(pbh_thread_t *thread);
void		pbh_pool_close(pbh_thread_t *thread);
const char *pbh_stmt_sql(int stmt);
int			pbh_nstmts(void);

/* ---------------------------------------------------------------------
 * dbconn.c: a libpq connection opened and reopened without blocking, with
 * a deadline and backoff (the pool's connections, the events listener)
 * ---------------------------------------------------------------------
 */
typedef enum
{
	PBH_DBCONN_DOWN,			/* waiting for its next attempt */
	PBH_DBCONN_CONNECTING,		/* PQconnectPoll under way */
	PBH_DBCONN_STARTING,		/* connected; the owner's setup runs */
	PBH_DBCONN_READY
} pbh_dbconn_state_t;

typedef struct st_pbh_dbconn_t pbh_dbconn_t;

struct st_pbh_dbconn_t
{
	pbh_thread_t *thread;
	const char *dsn;
	const char *appname;		/* fallback_application_name */
	char		name[32];		/* in the log: "connection 3", "events listener" */
	pbh_dbconn_state_t state;
	PGconn	   *pg;
	h2o_socket_t *sock;			/* on a dup() of libpq's socket; data: this */
	int			write_wait;		/* waiting for writability */
	h2o_timeout_entry_t tick;	/* on the thread's retry_timeout while not ready */
	uint64_t	next_try;		/* DOWN: loop time (ms) of the next attempt */
	uint64_t	deadline;		/* CONNECTING, STARTING: given up then */
	int			backoff;		/* ms: the next delay's upper bound */
	uint64_t	db_back_seen;	/* db_back when it went down */
	/* connected (non-blocking, sock watching it): the owner's setup starts */
	void		(*on_connected) (pbh_dbconn_t *c);
	/* lost, or an attempt failed: pg and sock are closed (may be NULL) */
	void		(*on_down) (pbh_dbconn_t *c);
};

void		pbh_dbconn_init(pbh_dbconn_t *c, pbh_thread_t *t, const char *dsn,
							const char *appname, const char *name,
							void (*on_connected) (pbh_dbconn_t *c),
							void (*on_down) (pbh_dbconn_t *c));
/* an attempt now (when down) */
void		pbh_dbconn_start(pbh_dbconn_t *c);
/* the owner's setup is done: ready, the backoff starts again */
void		pbh_dbconn_ready(pbh_dbconn_t *c);
/* close, tell the owner, reopen after the backoff; why NULL: quietly */
void		pbh_dbconn_fail(pbh_dbconn_t *c, const char *why);
/* a line of the server log: "thread N <name>: what[: detail]" */
void		pbh_dbconn_log(pbh_dbconn_t *c, const char *what, const char *detail);
/* at stop: close, never reopen */
void		pbh_dbconn_stop(pbh_dbconn_t *c);

/* ---------------------------------------------------------------------
 * replica.c: read-only routes on a streaming replica, read-your-writes
 * ---------------------------------------------------------------------
 */
void		pbh_replica_init(pbh_thread_t *thread);
void		pbh_replica_close(pbh_thread_t *thread);
void		pbh_replica_lost(pbh_thread_t *thread);	/* a replica connection broke */
/* 1: this read may go to the replica now */
int			pbh_replica_eligible(pbh_thread_t *thread, const pbh_job_t *job);
/* a job ended: 1 when it was sent on again (to the primary), else count it */
int			pbh_replica_job_end(pbh_job_t *job);
/* the subject of an API key (its hash); a customer's is its id */
uint64_t	pbh_replica_key_subject(const unsigned char *sha256);
/* Prometheus lines for /metrics; bytes written */
size_t		pbh_replica_metrics(char *buf, size_t len);

/* ---------------------------------------------------------------------
 * problem.c: errors as application/problem+json
 * ---------------------------------------------------------------------
 */
typedef struct st_pbh_error_t
{
	const char *sqlstate;		/* NULL for the server's own */
	int			status;
	const char *code;			/* stable, for clients */
	const char *title;
	int			show_message;	/* pgbank's own message is safe to show */
} pbh_error_t;

const pbh_error_t *pbh_error_for_sqlstate(const char *sqlstate);
int			pbh_sqlstate_retryable(const char *sqlstate);
size_t		pbh_problem_body(h2o_mem_pool_t *pool, int status, const char *code,
							 const char *title, const char *detail, char **out);
void		pbh_problem_send(h2o_req_t *req, int status, const char *code, const char *title,
							 const char *detail);
/* 503 for a request the database cannot take: shutting_down or database_unavailable */
void		pbh_problem_unavailable(h2o_req_t *req);
/* a database error as its table entry says (WWW-Authenticate on a 401) */
void		pbh_problem_error(h2o_req_t *req, const pbh_error_t *e, const char *message,
							  int api_key);

/* ---------------------------------------------------------------------
 * api.c: the request handler; ops.c: /livez, /readyz, /metrics
 * ---------------------------------------------------------------------
 */
int			pbh_api_on_req(h2o_handler_t *self, h2o_req_t *req);

/* openapi.c: the OpenAPI 3.1 document, built from the route table */
void		pbh_openapi_init(void);
const char *pbh_openapi_document(size_t *len);
int			pbh_ops_on_req(h2o_req_t *req, const char *path, size_t plen);
void		pbh_send_json(h2o_req_t *req, int status, const char *body, size_t len);
void		pbh_add_common_headers(h2o_req_t *req);
void		pbh_count_status(h2o_req_t *req, int status);
/* what the request context reads of a request (api.c) */
const char *pbh_client_addr(h2o_req_t *req, char *buf, size_t len);
h2o_iovec_t pbh_user_agent(h2o_req_t *req);
const char *pbh_request_id(h2o_req_t *req);

/* ---------------------------------------------------------------------
 * guard.c: request and connection limits, h2o's own errors as problems
 * ---------------------------------------------------------------------
 */
/* 1 when the request breaks a header or body limit (and its 431 or 413 is sent) */
int			pbh_guard_request(h2o_req_t *req);
/* rewrite the errors h2o sends itself (413, 400, 417) as problem+json */
void		pbh_guard_register(h2o_hostconf_t *hostconf);
/* 0: serve the accepted connection; -1: over the limit, closed */
int			pbh_guard_accept(pbh_thread_t *t, h2o_socket_t *sock);
extern volatile int pbh_open_connections;

/* ---------------------------------------------------------------------
 * limits.c: token-bucket rate limits, one table shared by the threads
 * ---------------------------------------------------------------------
 */
typedef enum
{
	PBH_LIMIT_AUTH,				/* register, login, refresh, MFA: per address */
	PBH_LIMIT_READ,				/* GET: per subject (and per address) */
	PBH_LIMIT_WRITE				/* the rest: per subject (and per address) */
} pbh_limit_class_t;

int			pbh_limits_init(void);
pbh_limit_class_t pbh_limits_class(const pbh_route_t *route);
/* 1 when the client's address is over its limit (and the 429 is sent) */
int			pbh_limits_address(h2o_req_t *req, pbh_limit_class_t cls);
/* the same for a verified subject: a token's sub, or an API key's hash */
int			pbh_limits_subject(h2o_req_t *req, pbh_limit_class_t cls, const void *id, size_t len);

/* ---------------------------------------------------------------------
 * events.c: GET /v1/events, account events as Server-Sent Events
 * ---------------------------------------------------------------------
 */
/* events a fetch reads at most (the route's statement, routes.c) */
#define PBH_EVENTS_FETCH_MAX 500

/*
 * Open the stream of a PBH_RESULT_EVENTS route whose checks passed (api.c):
 * a customer's verified token, its subject and expiry, the route's
 * arguments (args[0]: Last-Event-ID, or NULL).  Answers the request.
 */
int			pbh_events_open(h2o_req_t *req, const pbh_route_t *route, const char *token,
							int64_t customer, int64_t exp, const char *const *args);
void		pbh_events_shutdown(pbh_thread_t *t);
/* the 200 response's description, for the OpenAPI document */
const char *pbh_events_description(void);

extern pbh_thread_t *pbh_threads;
extern _Atomic int pbh_stopping;	/* set by a signal, read by every thread */

/* ---------------------------------------------------------------------
 * obs.c: per-route metrics, Server-Timing, the access log
 *
 * Every request gets a pbh_obs_t in its pool (pbh_obs_begin, from
 * pbh_add_common_headers); the handlers name its route (pbh_obs_route) and
 * its database time (pbh_obs_db); pbh_count_status, which every response
 * passes through before it is sent, ends it (pbh_obs_end): the thread's
 * own counters, the Server-Timing header, the access log line.  Counters
 * are per thread, written only by their thread (relaxed atomic stores),
 * summed by /metrics with relaxed atomic loads.
 * ---------------------------------------------------------------------
 */
/* metric slots past the routes' */
enum
{
	PBH_SLOT_LIVEZ,
	PBH_SLOT_READYZ,
	PBH_SLOT_METRICS,
	PBH_SLOT_OPENAPI,
	PBH_SLOT_UNMATCHED,
	PBH_SLOT_EXTRA
};

static inline uint64_t
pbh_clock_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

void		pbh_obs_init(void);	/* after pbh_threads is allocated */
void		pbh_obs_begin(h2o_req_t *req, const char *rid);
void		pbh_obs_route(h2o_req_t *req, int slot);	/* a route's index or
														 * pbh_nroutes + PBH_SLOT_* */
void		pbh_obs_db(h2o_req_t *req, const pbh_job_t *job);
void		pbh_obs_db_error(pbh_thread_t *t, const pbh_job_t *job);
void		pbh_obs_end(h2o_req_t *req, int status);
size_t		pbh_obs_metrics(h2o_mem_pool_t *pool, char **out);

/* ---------------------------------------------------------------------
 * config.c: what SIGHUP reloads
 *
 * The settings a reload may change live in an immutable snapshot,
 * published by an atomic pointer swap (release; readers acquire).  A
 * reader uses the snapshot only within one callback of its loop; the
 * replaced one is freed once every thread has finished a round of its
 * loop since the swap (main.c).
 * ---------------------------------------------------------------------
 */
typedef struct st_pbh_live_t
{
	char	   *jwt_secret;
	unsigned char csrf_key[32];	/* derived from jwt_secret (config.c), for browser.c */
	char	  **cors_origins;	/* NULL-terminated */
	int			access_log;
} pbh_live_t;

extern pbh_live_t *pbh_live_ptr;

/* the current snapshot (NULL before pbh_config_load: pbh_config holds it) */
static inline const pbh_live_t *
pbh_live(void)
{
	return __atomic_load_n(&pbh_live_ptr, __ATOMIC_ACQUIRE);
}

/* re-read the settings; publish the new snapshot, *old the replaced one */
int			pbh_config_reload(pbh_live_t **old, char *err, size_t errlen);
void		pbh_live_free(pbh_live_t *live);

/* ---------------------------------------------------------------------
 * tls.c: optional TLS from --tls-cert and --tls-key, ALPN, HSTS
 * ---------------------------------------------------------------------
 */
extern SSL_CTX *pbh_tls_ctx;	/* NULL: plain HTTP; shared by every thread */

/* check the files and build the context (0), or -1 with a message */
int			pbh_tls_init(char *err, size_t errlen);
/* Strict-Transport-Security, when TLS is on */
void		pbh_tls_add_headers(h2o_req_t *req);

/* ---------------------------------------------------------------------
 * browser.c: CORS, cookie sessions with CSRF protection, form bodies
 * ---------------------------------------------------------------------
 */
#define PBH_COOKIE_ACCESS "__Secure-pgbank-access"
#define PBH_COOKIE_REFRESH "__Secure-pgbank-refresh"
#define PBH_REFRESH_COOKIE_PATH "/v1/browser"	/* login, refresh, logout */
#define PBH_CSRF_HEADER "x-csrf-token"

int			pbh_cors_origin_allowed(h2o_iovec_t origin);
/* answer an OPTIONS preflight for a path whose methods are allow */
int			pbh_cors_preflight(h2o_req_t *req, const char *allow);
/* a cookie's value (NUL-terminated, in the request's pool), or NULL */
const char *pbh_cookie_value(h2o_req_t *req, const char *name);
/*
 * CSRF protection of a request authenticated by the access cookie: 0, or
 * -1 with the 403 sent.  Unsafe methods need a trusted Origin (or Referer)
 * and the session's X-CSRF-Token.
 */
int			pbh_csrf_check(h2o_req_t *req, const char *sid);
/* 1 when the Origin (or Referer) is in the allow-list or our own origin */
int			pbh_origin_trusted(h2o_req_t *req);
/* a login or refresh result (the route's jsonb) as cookies and a body */
void		pbh_session_send(h2o_req_t *req, int status, const char *json, size_t len);
void		pbh_session_clear(h2o_req_t *req);
/* jwt.c: the sid claim of a token the database just issued (browser login), or NULL */
const char *pbh_jwt_sid(h2o_mem_pool_t *pool, const char *token, size_t len);

/* application/x-www-form-urlencoded bodies, parsed by pbh_parse_query */
int			pbh_is_form(h2o_req_t *req);
/*
 * A body argument's text from a form: NULL when absent; an error for what
 * a form cannot express (objects, arrays).  Minor units are JSON only: a
 * form's amount is a decimal string.
 */
const char *pbh_form_arg_text(const pbh_arg_t *a, pbh_qparam_t *fp, int nf,
							  pbh_arg_error_t *err);

#endif							/* PGBANK_HTTP_H */
