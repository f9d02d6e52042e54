/*-------------------------------------------------------------------------
 *
 * ops.c
 *		The operator's routes: /livez (the process answers), /readyz (this
 *		thread has a database connection ready) and /metrics (Prometheus
 *		text: requests, pipelines sent to the database, retries, responses
 *		by class, summed over the threads), and /v1/openapi.json (the API's
 *		OpenAPI 3.1 document, openapi.c).  No credential, no query.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <string.h>

#include "pgbank_http.h"

static int
is_get(h2o_req_t *req)
{
	return h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET"));
}

/* 1 when path is an operator's route (and the response is sent) */
int
pbh_ops_on_req(h2o_req_t *req, const char *path, size_t plen)
{
	pbh_thread_t *t = (pbh_thread_t *) req->conn->ctx;

	if (h2o_memis(path, plen, H2O_STRLIT("/livez")))
	{
		if (!is_get(req))
			goto not_get;
		pbh_send_json(req, 200, H2O_STRLIT("{\"status\":\"ok\"}"));
		return 1;
	}
	if (h2o_memis(path, plen, H2O_STRLIT("/readyz")))
	{
		if (!is_get(req))
			goto not_get;
		if (pbh_stopping)
			pbh_send_json(req, 503, H2O_STRLIT("{\"status\":\"stopping\"}"));
		else if (pbh_pool_ready(t))
			pbh_send_json(req, 200, H2O_STRLIT("{\"status\":\"ready\"}"));
		else
			pbh_send_json(req, 503, H2O_STRLIT("{\"status\":\"no database connection\"}"));
		return 1;
	}
	if (h2o_memis(path, plen, H2O_STRLIT("/v1/openapi.json")))
	{
		size_t		len;
		const char *doc = pbh_openapi_document(&len);

		if (!is_get(req))
			goto not_get;
		pbh_send_json(req, 200, doc, len);
		return 1;
	}
	if (h2o_memis(path, plen, H2O_STRLIT("/metrics")))
	{
		uint64_t	requests = 0,
					db = 0,
					retries = 0,
					limited = 0,
					refused = 0,
					status[6] = {0};
		char	   *body = h2o_mem_alloc_pool(&req->pool, 2048);
		size_t		n = 0;

		if (!is_get(req))
			goto not_get;
		for (int i = 0; i < pbh_config.threads; i++)
		{
			pbh_thread_t *o = &pbh_threads[i];

			requests += __atomic_load_n(&o->n_requests, __ATOMIC_RELAXED);
			db += __atomic_load_n(&o->n_db_requests, __ATOMIC_RELAXED);
			retries += __atomic_load_n(&o->n_retries, __ATOMIC_RELAXED);
			limited += __atomic_load_n(&o->n_rate_limited, __ATOMIC_RELAXED);
			refused += __atomic_load_n(&o->n_conn_refused, __ATOMIC_RELAXED);
			for (int k = 1; k < 6; k++)
				status[k] += __atomic_load_n(&o->n_status[k], __ATOMIC_RELAXED);
		}
		n += snprintf(body + n, 2048 - n,
					  "# TYPE pgbank_http_requests_total counter\n"
					  "pgbank_http_requests_total %llu\n"
					  "# TYPE pgbank_http_db_pipelines_total counter\n"
					  "pgbank_http_db_pipelines_total %llu\n"
					  "# TYPE pgbank_http_retries_total counter\n"
					  "pgbank_http_retries_total %llu\n"
					  "# TYPE pgbank_http_responses_total counter\n",
					  (unsigned long long) requests, (unsigned long long) db,
					  (unsigned long long) retries);
		for (int k = 1; k < 6; k++)
			n += snprintf(body + n, 2048 - n, "pgbank_http_responses_total{class=\"%dxx\"} %llu\n",
						  k, (unsigned long long) status[k]);
		n += pbh_replica_metrics(body + n, 2048 - n);
		if (n < 2048)
		{
			int			k = snprintf(body + n, 2048 - n,
									 "# TYPE pgbank_http_rate_limited_total counter\n"
									 "pgbank_http_rate_limited_total %llu\n"
									 "# TYPE pgbank_http_connections_refused_total counter\n"
									 "pgbank_http_connections_refused_total %llu\n"
									 "# TYPE pgbank_http_connections_open gauge\n"
									 "pgbank_http_connections_open %d\n",
									 (unsigned long long) limited, (unsigned long long) refused,
									 __atomic_load_n(&pbh_open_connections, __ATOMIC_RELAXED));

			/* clamped to the buffer, like the replica's lines */
			n += k < 0 ? 0 : (size_t) k < 2048 - n ? (size_t) k : 2048 - n - 1;
		}
		req->res.status = 200;
		pbh_count_status(req, 200);
		h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
					   H2O_STRLIT("text/plain; version=0.0.4"));
		req->res.content_length = n;
		h2o_send_inline(req, body, n);
		return 1;
	}
	return 0;

not_get:
	h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("GET"));
	pbh_problem_send(req, 405, "method_not_allowed", "Method not allowed", NULL);
	return 1;
}
