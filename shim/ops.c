/*-------------------------------------------------------------------------
 *
 * ops.c
 *		The operator's routes: /livez (the process answers), /readyz (every
 *		thread has a general database connection ready, as its loop last
 *		published: see pbh_pool_publish) and /metrics (Prometheus text,
 *		summed over the threads: see obs.c), and /v1/openapi.json (the
 *		API's OpenAPI 3.1 document, openapi.c).  No credential, no query.
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
		pbh_obs_route(req, pbh_nroutes + PBH_SLOT_LIVEZ);
		if (!is_get(req))
			goto not_get;
		pbh_send_json(req, 200, H2O_STRLIT("{\"status\":\"ok\"}"));
		return 1;
	}
	if (h2o_memis(path, plen, H2O_STRLIT("/readyz")))
	{
		int			ready = 1;

		pbh_obs_route(req, pbh_nroutes + PBH_SLOT_READYZ);
		if (!is_get(req))
			goto not_get;
		for (int i = 0; i < pbh_config.threads; i++)
			if (__atomic_load_n(&pbh_threads[i].g_conn_ready[PBH_POOL_WRITE], __ATOMIC_RELAXED) == 0)
				ready = 0;
		if (pbh_stopping)
			pbh_send_json(req, 503, H2O_STRLIT("{\"status\":\"stopping\"}"));
		else if (ready && pbh_pool_ready(t))
			pbh_send_json(req, 200, H2O_STRLIT("{\"status\":\"ready\"}"));
		else
			pbh_send_json(req, 503, H2O_STRLIT("{\"status\":\"no database connection\"}"));
		return 1;
	}
	if (h2o_memis(path, plen, H2O_STRLIT("/v1/openapi.json")))
	{
		size_t		len;
		const char *doc = pbh_openapi_document(&len);

		pbh_obs_route(req, pbh_nroutes + PBH_SLOT_OPENAPI);
		if (!is_get(req))
			goto not_get;
		pbh_send_json(req, 200, doc, len);
		return 1;
	}
	if (h2o_memis(path, plen, H2O_STRLIT("/metrics")))
	{
		char	   *body;
		size_t		n;

		pbh_obs_route(req, pbh_nroutes + PBH_SLOT_METRICS);
		if (!is_get(req))
			goto not_get;
		n = pbh_obs_metrics(&req->pool, &body);
		if (pbh_config.replica_dsn != NULL)
		{
			/* the replica's lines after the others (replica.c) */
			char	   *more = h2o_mem_alloc_pool(&req->pool, n + 512);

			memcpy(more, body, n);
			n += pbh_replica_metrics(more + n, 512);
			body = more;
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
