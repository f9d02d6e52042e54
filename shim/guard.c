/*-------------------------------------------------------------------------
 *
 * guard.c
 *		Limits on what one request and one client may hand the server, and
 *		h2o's own error answers turned into problems:
 *
 *		- header fields: at most --max-headers of them and --max-header-size
 *		  bytes of request line and fields, else 431 (checked before
 *		  anything else of the request is looked at);
 *		- the body: --max-body (h2o's max_request_entity_size, one more)
 *		  refuses a larger Content-Length at once and a chunked body as soon
 *		  as it grows past the limit; h2o answers these itself (413), as it does a
 *		  broken chunked encoding, an unknown Transfer-Encoding or a broken
 *		  Content-Length (400) and an unknown Expect (417).  A filter on the
 *		  host's fallback path (the only path such early errors are bound
 *		  to: they come before routing) rewrites those answers into
 *		  application/problem+json with a stable code, security headers and
 *		  a request id;
 *		- connections: at most --max-connections open at once over the
 *		  whole server; one accepted beyond that is closed at once (the
 *		  client sees the connection end, it is never left hanging).
 *
 *		What h2o 2.2.5 decides alone, before any of this can run (read in
 *		its lib/http1.c, handle_incoming_request, and seen on the wire): a
 *		request head with more than H2O_MAX_HEADERS (100) fields, or one
 *		that is still incomplete at H2O_MAX_REQLEN (8192 + 4096 * 100 =
 *		417,792) bytes, or unparsable (a NUL in the request line, say), gets
 *		a fixed "400 Bad Request" text/plain answer written straight to the
 *		socket, and the connection is closed; a request head not finished
 *		within --request-timeout is closed without an answer.  Our limits
 *		sit below h2o's, so a client within h2o's bounds always gets our 431.
 *
 * Invariants:
 *	- Nothing here takes a lock: the open-connection count is one atomic
 *	  counter touched once when a connection opens and once when it closes,
 *	  never per request.
 *	- A rewritten answer keeps h2o's status and its text (a fixed string
 *	  of h2o's, never the client's bytes) as the problem's detail.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <string.h>

#include "pgbank_http.h"

volatile int pbh_open_connections = 0;

/* ---------------------------------------------------------------------
 * Header limits
 * ---------------------------------------------------------------------
 */
int
pbh_guard_request(h2o_req_t *req)
{
	size_t		bytes = req->method.len + req->path.len + req->authority.len + 16;
	char		detail[128];

	/*
	 * h2o refuses a chunked body once it reaches its limit (>=), a
	 * Content-Length only above it (>): its limit is one byte more than ours
	 * and this check makes both "more than --max-body".
	 */
	if (req->entity.base != NULL && req->entity.len > pbh_config.max_body)
	{
		snprintf(detail, sizeof(detail), "The request body may be at most %zu bytes.",
				 pbh_config.max_body);
		req->http1_is_persistent = 0;
		pbh_problem_send(req, 413, "body_too_large", "The request body is too large", detail);
		return 1;
	}

	if (req->headers.size > (size_t) pbh_config.max_headers)
	{
		snprintf(detail, sizeof(detail), "A request may have at most %d header fields.",
				 pbh_config.max_headers);
		pbh_problem_send(req, 431, "too_many_headers", "Too many header fields", detail);
		return 1;
	}
	for (size_t i = 0; i < req->headers.size; i++)
		bytes += req->headers.entries[i].name->len + req->headers.entries[i].value.len + 4;
	if (bytes > (size_t) pbh_config.max_header_size)
	{
		snprintf(detail, sizeof(detail), "The request line and header fields may be at most %d bytes.",
				 pbh_config.max_header_size);
		pbh_problem_send(req, 431, "headers_too_large", "Header fields too large", detail);
		return 1;
	}
	return 0;
}

/* ---------------------------------------------------------------------
 * h2o's own errors as problems
 * ---------------------------------------------------------------------
 */
typedef struct st_pbh_guard_ostream_t
{
	h2o_ostream_t super;
	int			done;
} pbh_guard_ostream_t;

static void
problem_of(int status, const char **code, const char **title)
{
	switch (status)
	{
		case 413:
			*code = "body_too_large";
			*title = "The request body is too large";
			return;
		case 417:
			*code = "expectation_failed";
			*title = "Unsupported Expect header";
			return;
		case 400:
			*code = "bad_request";
			*title = "Malformed HTTP request";
			return;
		default:
			*code = "http_error";
			*title = "The request was refused";
			return;
	}
}

/*
 * The response's headers go out with the first output, after this: the
 * status stays, the content type, length and body become a problem's.
 */
static void
on_send(h2o_ostream_t *self, h2o_req_t *req, h2o_iovec_t *bufs, size_t bufcnt,
		h2o_send_state_t state)
{
	pbh_guard_ostream_t *o = (pbh_guard_ostream_t *) self;
	const char *code,
			   *title;
	char		text[128],
				detail[160];
	size_t		tlen = 0,
				n;
	char	   *body;
	ssize_t		ct;
	h2o_iovec_t out;

	if (o->done)
	{
		h2o_ostream_send_next(self, req, NULL, 0, state);
		return;
	}
	o->done = 1;
	/* h2o's text: a fixed ASCII string of its own */
	for (size_t i = 0; i < bufcnt && tlen < sizeof(text) - 1; i++)
	{
		size_t		k = bufs[i].len < sizeof(text) - 1 - tlen ? bufs[i].len : sizeof(text) - 1 - tlen;

		memcpy(text + tlen, bufs[i].base, k);
		tlen += k;
	}
	text[tlen] = '\0';
	for (size_t i = 0; i < tlen; i++)
		if ((unsigned char) text[i] < 0x20 || (unsigned char) text[i] >= 0x7F)
			text[i] = ' ';
	problem_of(req->res.status, &code, &title);
	if (req->res.status == 413)
		snprintf(detail, sizeof(detail), "The request body may be at most %zu bytes.",
				 pbh_config.max_body);
	else
		snprintf(detail, sizeof(detail), "%s.", tlen ? text : title);

	n = pbh_problem_body(&req->pool, req->res.status, code, title, detail, &body);

	ct = h2o_find_header(&req->res.headers, H2O_TOKEN_CONTENT_TYPE, -1);
	if (ct != -1)
		req->res.headers.entries[ct].value = h2o_iovec_init(H2O_STRLIT("application/problem+json"));
	else
		h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
					   H2O_STRLIT("application/problem+json"));
	pbh_add_common_headers(req);
	{
		/*
		 * pbh_count_status sets our reason phrase; h2o's stays when we have
		 * none
		 */
		const char *h2o_reason = req->res.reason;

		pbh_count_status(req, req->res.status);
		if (req->res.reason == NULL || req->res.reason[0] == '\0')
			req->res.reason = h2o_reason;
	}
	req->res.content_length = n;
	out = h2o_iovec_init(body, n);
	/* a HEAD gets the headers only, as h2o would have done */
	h2o_ostream_send_next(self, req, bufcnt ? &out : NULL, bufcnt ? 1 : 0, state);
}

static void
on_setup_ostream(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
	if (req->res.status >= 400)
	{
		pbh_guard_ostream_t *o = (pbh_guard_ostream_t *) h2o_add_ostream(req, sizeof(*o), slot);

		o->super.do_send = on_send;
		o->done = 0;
		slot = &o->super.next;
	}
	h2o_setup_next_ostream(req, slot);
}

void
pbh_guard_register(h2o_hostconf_t *hostconf)
{
	h2o_filter_t *f = h2o_create_filter(&hostconf->fallback_path, sizeof(*f));

	f->on_setup_ostream = on_setup_ostream;
}

/* ---------------------------------------------------------------------
 * Connection limit
 * ---------------------------------------------------------------------
 */
static void
on_connection_close(void *data)
{
	__atomic_sub_fetch(&pbh_open_connections, 1, __ATOMIC_RELAXED);
}

int
pbh_guard_accept(pbh_thread_t *t, h2o_socket_t *sock)
{
	if (__atomic_add_fetch(&pbh_open_connections, 1, __ATOMIC_RELAXED) > pbh_config.max_connections)
	{
		__atomic_sub_fetch(&pbh_open_connections, 1, __ATOMIC_RELAXED);
		__atomic_add_fetch(&t->n_conn_refused, 1, __ATOMIC_RELAXED);
		h2o_socket_close(sock);
		return -1;
	}
	sock->on_close.cb = on_connection_close;
	sock->on_close.data = NULL;
	return 0;
}
