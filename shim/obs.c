/*-------------------------------------------------------------------------
 *
 * obs.c
 *		What an operator sees of each request: counters by route and status,
 *		a latency histogram by route, database errors by SQLSTATE class
 *		(the Prometheus text of /metrics is built here), the Server-Timing
 *		header and the JSON access log line.
 *
 * Invariants:
 *	- The label sets are bounded: a route is its method and pattern from
 *	  the route table ("GET /v1/accounts/{id}"), or an operator's path
 *	  ("/livez", "/readyz", "/metrics", "/v1/openapi.json") or "unmatched",
 *	  never the raw path; a status is a number from 100 to 599; a database
 *	  error is its SQLSTATE's class (two characters of [0-9A-Z]).
 *	- Each thread writes only its own counters (pbh_thread_t.metrics), with
 *	  relaxed atomic stores, no lock and O(1) work per request; /metrics
 *	  sums every thread's with relaxed atomic loads, so a scrape may see one
 *	  counter of a request moved and not yet another (never a torn value).
 *	- A request is counted once, when its response starts (pbh_obs_end
 *	  from pbh_count_status), with its latency so far: from the first byte
 *	  of the request to the response headers.
 *	- Server-Timing is sent only on responses to requests that reached the
 *	  database: "db;dur=" is the time from sending the pipeline to its
 *	  Sync (summed over round trips: an API key's role lookup, retries),
 *	  "total;dur=" the request's time so far, both in milliseconds.
 *	- The access log line is valid JSON (one object, one line) whatever
 *	  bytes the path and method hold: every byte outside printable ASCII is
 *	  written as \u00XX.
 *
 *-------------------------------------------------------------------------
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <netinet/in.h>

#include "pgbank_http.h"

#define NSTATUS 500				/* 100..599 */
#define NCLASSES (36 * 36)

/* upper bounds of the latency buckets, seconds (then +Inf) */
static const double buckets[] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10
};

#define NBUCKETS (sizeof(buckets) / sizeof(buckets[0]))

static const char *const slot_names[PBH_SLOT_EXTRA] = {
	"/livez", "/readyz", "/metrics", "/v1/openapi.json", "unmatched"
};

typedef struct st_pbh_metrics_t
{
	uint64_t   *status;			/* [slot][NSTATUS] */
	uint64_t   *bucket;			/* [slot][NBUCKETS + 1], not cumulative */
	uint64_t   *sum_us;			/* [slot] */
	uint64_t	db_errors[NCLASSES];
	uint64_t	db_unavailable; /* jobs failed for want of a connection */
} pbh_metrics_t;

typedef struct st_pbh_obs_t
{
	const char *rid;
	int			slot;
	int			db;				/* the request reached the database */
	int			ended;
	uint64_t	db_ns;
} pbh_obs_t;

#define ADD(x, n) __atomic_store_n(&(x), (x) + (n), __ATOMIC_RELAXED)
#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

static int
nslots(void)
{
	return pbh_nroutes + PBH_SLOT_EXTRA;
}

void
pbh_obs_init(void)
{
	for (int i = 0; i < pbh_config.threads; i++)
	{
		pbh_metrics_t *m = calloc(1, sizeof(pbh_metrics_t));

		m->status = calloc((size_t) nslots() * NSTATUS, sizeof(uint64_t));
		m->bucket = calloc((size_t) nslots() * (NBUCKETS + 1), sizeof(uint64_t));
		m->sum_us = calloc(nslots(), sizeof(uint64_t));
		pbh_threads[i].metrics = m;
	}
}

static pbh_obs_t *
obs_of(h2o_req_t *req)
{
	for (size_t i = 0; i + 1 < req->env.size; i += 2)
		if (h2o_memis(req->env.entries[i].base, req->env.entries[i].len, H2O_STRLIT("pbh.obs")))
			return (pbh_obs_t *) req->env.entries[i + 1].base;
	return NULL;
}

/* after the request id is known: the request's pbh_obs_t, in req->env */
void
pbh_obs_begin(h2o_req_t *req, const char *rid)
{
	pbh_obs_t  *o = h2o_mem_alloc_pool(&req->pool, sizeof(*o));

	memset(o, 0, sizeof(*o));
	o->rid = rid;
	o->slot = pbh_nroutes + PBH_SLOT_UNMATCHED;
	h2o_vector_reserve(&req->pool, &req->env, req->env.size + 2);
	req->env.entries[req->env.size++] = h2o_iovec_init(H2O_STRLIT("pbh.obs"));
	req->env.entries[req->env.size++] = h2o_iovec_init((char *) o, sizeof(*o));
}

void
pbh_obs_route(h2o_req_t *req, int slot)
{
	pbh_obs_t  *o = obs_of(req);

	if (o != NULL && slot >= 0 && slot < nslots())
		o->slot = slot;
}

void
pbh_obs_db(h2o_req_t *req, const pbh_job_t *job)
{
	pbh_obs_t  *o = obs_of(req);

	if (o != NULL && job->sent_ns != 0)
	{
		o->db = 1;
		o->db_ns = job->db_ns;
	}
}

static int
class_char(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'Z')
		return 10 + c - 'A';
	return -1;
}

/* a failed job: its SQLSTATE's class, or no connection */
void
pbh_obs_db_error(pbh_thread_t *t, const pbh_job_t *job)
{
	pbh_metrics_t *m = t->metrics;
	int			a,
				b;

	if (job->conn_lost)
	{
		PBH_COUNT(m->db_unavailable);
		return;
	}
	a = class_char(job->sqlstate[0]);
	b = class_char(job->sqlstate[1]);
	if (a >= 0 && b >= 0)
		PBH_COUNT(m->db_errors[a * 36 + b]);
}

/* s as a JSON string, every byte outside printable ASCII as \u00XX */
static size_t
log_escape(char *buf, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	char	   *w = buf;

	*w++ = '"';
	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c == '"' || c == '\\')
		{
			*w++ = '\\';
			*w++ = (char) c;
		}
		else if (c < 0x20 || c >= 0x7F)
		{
			memcpy(w, "\\u00", 4);
			w += 4;
			*w++ = hex[c >> 4];
			*w++ = hex[c & 15];
		}
		else
			*w++ = (char) c;
	}
	*w++ = '"';
	return w - buf;
}

static const char *
slot_label(int slot, char *buf, size_t len)
{
	if (slot < pbh_nroutes)
	{
		snprintf(buf, len, "%s %s", pbh_routes[slot].method, pbh_routes[slot].pattern);
		return buf;
	}
	return slot_names[slot - pbh_nroutes];
}

#define LOG_PATH_MAX 256
#define LOG_LINE_MAX (1024 + PBH_JSON_ESCAPED_MAX(LOG_PATH_MAX) + PBH_JSON_ESCAPED_MAX(64) + \
					  PBH_JSON_ESCAPED_MAX(16))

/* now: when the response started (pbh_obs_end's one clock reading) */
static void
access_log(h2o_req_t *req, pbh_obs_t *o, int status, const struct timeval *now, uint64_t us)
{
	char		line[LOG_LINE_MAX];
	char		label[256];
	char		peer[INET6_ADDRSTRLEN];
	size_t		n = 0;
	size_t		plen = req->path_normalized.len < LOG_PATH_MAX ? req->path_normalized.len : LOG_PATH_MAX;
	size_t		mlen = req->method.len < 16 ? req->method.len : 16;

	if (pbh_client_addr(req, peer, sizeof(peer)) == NULL)
		peer[0] = '\0';
	n += snprintf(line + n, sizeof(line) - n, "{\"time\":%ld.%03ld,\"request_id\":",
				  (long) now->tv_sec, (long) now->tv_usec / 1000);
	n += log_escape(line + n, o->rid, strlen(o->rid) < 64 ? strlen(o->rid) : 64);
	n += snprintf(line + n, sizeof(line) - n, ",\"method\":");
	n += log_escape(line + n, req->method.base, mlen);
	n += snprintf(line + n, sizeof(line) - n, ",\"path\":");
	n += log_escape(line + n, req->path_normalized.base, plen);
	n += snprintf(line + n, sizeof(line) - n, ",\"route\":\"%s\",\"status\":%d,\"ms\":%.3f",
				  slot_label(o->slot, label, sizeof(label)), status, us / 1000.0);
	if (o->db)
		n += snprintf(line + n, sizeof(line) - n, ",\"db_ms\":%.3f", o->db_ns / 1e6);
	n += snprintf(line + n, sizeof(line) - n, ",\"client\":\"%s\"}\n", peer);
	fwrite(line, 1, n, stdout);
}

void
pbh_obs_end(h2o_req_t *req, int status)
{
	pbh_thread_t *t = (pbh_thread_t *) req->conn->ctx;
	pbh_metrics_t *m = t->metrics;
	pbh_obs_t  *o = obs_of(req);
	const pbh_live_t *live = pbh_live();
	struct timeval now;
	uint64_t	us;
	size_t		b;

	if (o == NULL || o->ended || m == NULL)
		return;
	o->ended = 1;
	gettimeofday(&now, NULL);
	us = (uint64_t) ((now.tv_sec - req->timestamps.request_begin_at.tv_sec) * 1000000 +
					 (now.tv_usec - req->timestamps.request_begin_at.tv_usec));
	if (status >= 100 && status < 600)
		PBH_COUNT(m->status[(size_t) o->slot * NSTATUS + status - 100]);
	for (b = 0; b < NBUCKETS && us > buckets[b] * 1e6; b++)
		;
	PBH_COUNT(m->bucket[(size_t) o->slot * (NBUCKETS + 1) + b]);
	ADD(m->sum_us[o->slot], us);
	if (o->db)
	{
		char	   *v = h2o_mem_alloc_pool(&req->pool, 64);
		uint64_t	db_us = o->db_ns / 1000;

		/* milliseconds with three decimals, in integers (no floating-point printf per request) */
		int			len = snprintf(v, 64, "db;dur=%llu.%03u, total;dur=%llu.%03u",
								   (unsigned long long) (db_us / 1000), (unsigned) (db_us % 1000),
								   (unsigned long long) (us / 1000), (unsigned) (us % 1000));

		h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("server-timing"), 0, NULL,
							  v, len);
	}
	if (live != NULL ? live->access_log : pbh_config.access_log)
		access_log(req, o, status, &now, us);
}

/* ---------------------------------------------------------------------
 * /metrics
 * ---------------------------------------------------------------------
 */
typedef struct st_pbh_out_t
{
	char	   *buf;
	size_t		len;
	size_t		cap;
} pbh_out_t;

static void
out(pbh_out_t *o, const char *fmt,...) __attribute__((format(printf, 2, 3)));

static void
out(pbh_out_t *o, const char *fmt,...)
{
	va_list		ap;
	int			n;

	va_start(ap, fmt);
	n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		o->len += (size_t) n < o->cap - o->len ? (size_t) n : o->cap - o->len - 1;
}

/*
 * The body of /metrics, in pool: the counters of pbh_thread_t, then the
 * per-route ones, database errors and the pool's gauges.
 */
size_t
pbh_obs_metrics(h2o_mem_pool_t *pool, char **result)
{
	static const char *const cls_name[PBH_POOL_CLASSES] = {"general", "read", "replica"};
	size_t		nst = (size_t) nslots() * NSTATUS,
				nbk = (size_t) nslots() * (NBUCKETS + 1);
	uint64_t   *status = h2o_mem_alloc_pool(pool, nst * sizeof(uint64_t));
	uint64_t   *bucket = h2o_mem_alloc_pool(pool, nbk * sizeof(uint64_t));
	uint64_t   *sum_us = h2o_mem_alloc_pool(pool, nslots() * sizeof(uint64_t));
	uint64_t	classes[NCLASSES] = {0};
	uint64_t	requests = 0,
				db = 0,
				retries = 0,
				limited = 0,
				refused = 0,
				unavailable = 0,
				conn_failures = 0,
				class_total[6] = {0};
	long		ready[PBH_POOL_CLASSES] = {0},
				down[PBH_POOL_CLASSES] = {0},
				waiting[PBH_POOL_CLASSES] = {0},
				inflight = 0;
	size_t		lines = 64;
	pbh_out_t	o;
	char		label[256];

	memset(status, 0, nst * sizeof(uint64_t));
	memset(bucket, 0, nbk * sizeof(uint64_t));
	memset(sum_us, 0, nslots() * sizeof(uint64_t));
	for (int i = 0; i < pbh_config.threads; i++)
	{
		pbh_thread_t *t = &pbh_threads[i];
		pbh_metrics_t *m = t->metrics;

		requests += LOAD(t->n_requests);
		db += LOAD(t->n_db_requests);
		retries += LOAD(t->n_retries);
		limited += LOAD(t->n_rate_limited);
		refused += LOAD(t->n_conn_refused);
		conn_failures += LOAD(t->n_db_conn_failures);
		for (int k = 1; k < 6; k++)
			class_total[k] += LOAD(t->n_status[k]);
		for (size_t k = 0; k < nst; k++)
			status[k] += LOAD(m->status[k]);
		for (size_t k = 0; k < nbk; k++)
			bucket[k] += LOAD(m->bucket[k]);
		for (int k = 0; k < nslots(); k++)
			sum_us[k] += LOAD(m->sum_us[k]);
		for (int k = 0; k < NCLASSES; k++)
			classes[k] += LOAD(m->db_errors[k]);
		unavailable += LOAD(m->db_unavailable);
		for (int c = 0; c < PBH_POOL_CLASSES; c++)
		{
			ready[c] += LOAD(t->g_conn_ready[c]);
			down[c] += LOAD(t->g_conn_down[c]);
			waiting[c] += LOAD(t->g_waiting[c]);
		}
		inflight += LOAD(t->g_inflight);
	}
	/* an upper bound of the lines to come, each under 200 bytes */
	for (size_t k = 0; k < nst; k++)
		lines += status[k] != 0;
	lines += (size_t) nslots() * (NBUCKETS + 4);
	for (int k = 0; k < NCLASSES; k++)
		lines += classes[k] != 0;
	o.cap = lines * 200;
	o.buf = h2o_mem_alloc_pool(pool, o.cap);
	o.len = 0;

	out(&o, "# HELP pgbank_http_requests_total Requests received.\n"
		"# TYPE pgbank_http_requests_total counter\n"
		"pgbank_http_requests_total %llu\n"
		"# HELP pgbank_http_db_pipelines_total Pipelines sent to the database.\n"
		"# TYPE pgbank_http_db_pipelines_total counter\n"
		"pgbank_http_db_pipelines_total %llu\n"
		"# HELP pgbank_http_retries_total Requests retried after a serialization failure or deadlock.\n"
		"# TYPE pgbank_http_retries_total counter\n"
		"pgbank_http_retries_total %llu\n"
		"# HELP pgbank_http_rate_limited_total Requests refused by a rate limit.\n"
		"# TYPE pgbank_http_rate_limited_total counter\n"
		"pgbank_http_rate_limited_total %llu\n"
		"# HELP pgbank_http_responses_total Responses by status class.\n"
		"# TYPE pgbank_http_responses_total counter\n",
		(unsigned long long) requests, (unsigned long long) db,
		(unsigned long long) retries, (unsigned long long) limited);
	for (int k = 1; k < 6; k++)
		out(&o, "pgbank_http_responses_total{class=\"%dxx\"} %llu\n", k,
			(unsigned long long) class_total[k]);
	out(&o, "# HELP pgbank_http_connections_refused_total Client connections closed at once over --max-connections.\n"
		"# TYPE pgbank_http_connections_refused_total counter\n"
		"pgbank_http_connections_refused_total %llu\n"
		"# HELP pgbank_http_connections_open Open client connections.\n"
		"# TYPE pgbank_http_connections_open gauge\n"
		"pgbank_http_connections_open %d\n",
		(unsigned long long) refused, __atomic_load_n(&pbh_open_connections, __ATOMIC_RELAXED));

	out(&o, "# HELP pgbank_http_route_responses_total Responses by route (method and pattern) and status.\n"
		"# TYPE pgbank_http_route_responses_total counter\n");
	for (int s = 0; s < nslots(); s++)
		for (int k = 0; k < NSTATUS; k++)
			if (status[(size_t) s * NSTATUS + k] != 0)
				out(&o, "pgbank_http_route_responses_total{route=\"%s\",status=\"%d\"} %llu\n",
					slot_label(s, label, sizeof(label)), k + 100,
					(unsigned long long) status[(size_t) s * NSTATUS + k]);

	out(&o, "# HELP pgbank_http_request_duration_seconds Time from a request's first byte to its response, by route.\n"
		"# TYPE pgbank_http_request_duration_seconds histogram\n");
	for (int s = 0; s < nslots(); s++)
	{
		uint64_t	cum = 0;
		const uint64_t *bk = &bucket[(size_t) s * (NBUCKETS + 1)];

		for (size_t b = 0; b <= NBUCKETS; b++)
			cum += bk[b];
		if (cum == 0)
			continue;
		slot_label(s, label, sizeof(label));
		cum = 0;
		for (size_t b = 0; b < NBUCKETS; b++)
		{
			cum += bk[b];
			out(&o, "pgbank_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
				label, buckets[b], (unsigned long long) cum);
		}
		cum += bk[NBUCKETS];
		out(&o, "pgbank_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n"
			"pgbank_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n"
			"pgbank_http_request_duration_seconds_count{route=\"%s\"} %llu\n",
			label, (unsigned long long) cum, label, sum_us[s] / 1e6, label,
			(unsigned long long) cum);
	}

	out(&o, "# HELP pgbank_http_db_errors_total Database errors of requests, by SQLSTATE class.\n"
		"# TYPE pgbank_http_db_errors_total counter\n");
	for (int k = 0; k < NCLASSES; k++)
		if (classes[k] != 0)
			out(&o, "pgbank_http_db_errors_total{sqlstate_class=\"%c%c\"} %llu\n",
				"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[k / 36],
				"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[k % 36], (unsigned long long) classes[k]);
	out(&o, "# HELP pgbank_http_db_unavailable_total Requests refused (503) for want of a database connection.\n"
		"# TYPE pgbank_http_db_unavailable_total counter\n"
		"pgbank_http_db_unavailable_total %llu\n"
		"# HELP pgbank_http_db_connection_failures_total Database connections lost or not opened.\n"
		"# TYPE pgbank_http_db_connection_failures_total counter\n"
		"pgbank_http_db_connection_failures_total %llu\n"
		"# HELP pgbank_http_pool_connections Database connections by class and state.\n"
		"# TYPE pgbank_http_pool_connections gauge\n",
		(unsigned long long) unavailable, (unsigned long long) conn_failures);
	for (int c = 0; c < PBH_POOL_CLASSES; c++)
		out(&o, "pgbank_http_pool_connections{class=\"%s\",state=\"ready\"} %ld\n"
			"pgbank_http_pool_connections{class=\"%s\",state=\"not_ready\"} %ld\n",
			cls_name[c], ready[c], cls_name[c], down[c]);
	out(&o, "# HELP pgbank_http_pool_jobs_waiting Requests waiting for a database connection, by class.\n"
		"# TYPE pgbank_http_pool_jobs_waiting gauge\n");
	for (int c = 0; c < PBH_POOL_CLASSES; c++)
		out(&o, "pgbank_http_pool_jobs_waiting{class=\"%s\"} %ld\n", cls_name[c], waiting[c]);
	out(&o, "# HELP pgbank_http_pool_jobs_in_flight Requests submitted to the pool and not done (waiting included).\n"
		"# TYPE pgbank_http_pool_jobs_in_flight gauge\n"
		"pgbank_http_pool_jobs_in_flight %ld\n", inflight);
	*result = o.buf;
	return o.len;
}
