/*-------------------------------------------------------------------------
 *
 * events.c
 *		GET /v1/events: a customer's account events (extension/events.c) as
 *		Server-Sent Events, pushed as they commit.
 *
 *		GET /v1/events is a row of the route table (routes.c) whose result
 *		kind is PBH_RESULT_EVENTS: api.c checks it like every route (limits,
 *		the customer's access token or browser session, a rate limit of one
 *		read, its one argument, the Last-Event-ID header: the number of the
 *		last event the client has), then hands it here (pbh_events_open).
 *		Without Last-Event-ID the stream starts after the customer's latest
 *		event.  Each event is one SSE message whose id is its number in the
 *		customer's feed, so that a browser's (or any client's) reconnection
 *		resumes exactly there.
 *
 *		Each thread has one LISTEN connection (channel pgbank_events), not
 *		one per client.  A notification's payload is a pseudonym of the
 *		customer (HMAC-SHA256 under the JWT secret, as the extension makes
 *		it); the streams of that customer then fetch what is new.  A fetch
 *		is an ordinary request of the thread's pool, as the customer: role
 *		switch, bank.authenticate(token), then the route's statement
 *		(bank.events_since), so row-level security decides what a stream
 *		sees.  Nothing here filters one customer's events from another's:
 *		the database never returns them.
 *
 * Invariants:
 *	- No loss, no duplicate, in order: a stream's position is the number
 *	  of the last event it sent; a fetch asks for what follows it, and a
 *	  stream has at most one fetch in flight (a notification during a fetch
 *	  makes another follow it).  Numbers have no gaps and are visible in
 *	  order (extension/events.c), so "after n" is exact.
 *	- Each fetch first calls bank.events_watch(3 heartbeats): the database
 *	  NOTIFYs only for followed feeds (a NOTIFY costs a database-wide lock
 *	  through the commit).  The fetch's bank.events_since numbers what has
 *	  committed, then reads it (a write transaction, on the general
 *	  connections).
 *	- A stream fetches once more a second after it starts: a commit that
 *	  read the watch just before the stream's first watch committed does
 *	  not notify (extension/events.c).
 *	- Missed notifications cost at most a heartbeat: every stream fetches
 *	  at each heartbeat (which also renews its watch), and every stream of
 *	  the thread fetches when the LISTEN connection (re)connects.
 *	- Bounded memory: a stream buffers at most --events-buffer bytes that
 *	  the client has not taken; past that the stream ends (the client
 *	  reconnects with Last-Event-ID and loses nothing).  At most
 *	  --events-max-streams streams per thread and --events-per-customer per
 *	  customer (counted across threads by the exact customer id, under a
 *	  mutex taken when a stream opens or ends).  The same write pending at
 *	  two heartbeats (a client that stopped reading) shuts the connection's
 *	  socket down: h2o 2.2.5 has no write timeout of its own; the failed
 *	  write makes it stop the generator, which frees the stream and gives
 *	  its place back.
 *	- The request may be freed by h2o before the response starts (an
 *	  HTTP/2 stream reset while the first fetch is out): a guard in the
 *	  request's memory tells the stream, which then forgets the request.
 *	- A stream ends at the first heartbeat after its token expires, and
 *	  when a fetch's authentication fails (revoked session); on SIGTERM
 *	  every stream ends at once, so shutdown is not held up.
 *	- A client that leaves is noticed when a write fails (heartbeats
 *	  ensure there is one): h2o then calls the generator's stop.  A fetch
 *	  still in flight then finishes on its own and is dropped: it owns
 *	  its memory and never points into the dead request.
 *	- Per-thread state only (this file's __thread variables); the loop
 *	  never blocks.  The LISTEN connection is a dbconn.c connection like
 *	  the pool's: an attempt that is not listening after
 *	  PBH_CONNECT_TIMEOUT_MS is given up, and attempts are spaced by the
 *	  same backoff (and made at once when the pool finds the database
 *	  back).
 *
 *-------------------------------------------------------------------------
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "pgbank_http.h"

#define EVENTS_CHANNEL "pgbank_events"
#define CUSTOMER_SLOTS 65536

typedef struct st_pbh_stream_t pbh_stream_t;

/* one fetch: owns its memory, outlives its stream if need be */
typedef struct st_pbh_fetch_t
{
	pbh_job_t	job;			/* first */
	h2o_mem_pool_t pool;
	pbh_stream_t *stream;		/* NULL once the stream is gone */
	const char *params0[7];
	const char *params1[1];
} pbh_fetch_t;

struct st_pbh_stream_t
{
	h2o_generator_t gen;		/* first */
	h2o_req_t  *req;
	struct st_pbh_stream_t **guard; /* in req's pool: NULLed when req is freed */
	h2o_linklist_t link;		/* in the thread's streams */
	int			stmt;			/* the route's statement: a fetch */
	int64_t		customer;
	int64_t		exp;			/* the token's expiry, seconds */
	char		pseudonym[33];
	int64_t		last;			/* number of the last event sent; -1: not yet known */
	char	   *token,
			   *request_id,
			   *client,
			   *user_agent;		/* malloc'd copies */
	int			started;		/* the response's headers are out */
	int			writing;		/* an h2o_send is in progress */
	int			closing;		/* end once nothing is being written */
	int			gone;			/* h2o stopped the generator or freed req: no req */
	int			stalled;		/* heartbeats that found the same write pending */
	unsigned	writes_done,	/* writes the client took (on_proceed) */
				writes_seen;	/* ... at the last heartbeat */
	int			counted;		/* holds a place in its customer's count */
	char	   *out;			/* taken, not yet handed to h2o */
	size_t		out_len,
				out_cap;
	char	   *sending;		/* handed to h2o until proceed */
	size_t		sending_cap;
	pbh_fetch_t *fetch;			/* in flight, or NULL */
	int			again;			/* fetch again when this one is done */
	h2o_timeout_entry_t heartbeat;
	h2o_timeout_entry_t retry;
};

typedef struct st_pbh_events_thread_t
{
	pbh_thread_t *thread;
	h2o_linklist_t streams;
	int			nstreams;
	h2o_timeout_t heartbeat_timeout;
	h2o_timeout_t retry_timeout;
	pbh_dbconn_t listener;		/* LISTEN pgbank_events; STARTING: LISTEN sent */
	int			shut;
	char		watch_seconds[16];	/* each fetch's watch: three heartbeats */
} pbh_events_thread_t;

static __thread pbh_events_thread_t *et;

/*
 * Streams per customer, all threads: an open-addressing table (linear
 * probing) keyed by the exact customer id, so that a customer's count never
 * limits another's, under a mutex taken only when a stream opens or ends.
 * An entry goes when its count falls to 0 (backward-shift deletion), so
 * the table holds only customers with streams open: at most threads x
 * --events-max-streams of them.
 */
typedef struct
{
	int64_t		customer;		/* 0: empty */
	int			count;
} pbh_customer_slot_t;

static pbh_customer_slot_t customer_slots[CUSTOMER_SLOTS];
static pthread_mutex_t customer_lock = PTHREAD_MUTEX_INITIALIZER;

static size_t
customer_home(int64_t customer)
{
	return (size_t) (((uint64_t) customer * 0x9E3779B97F4A7C15ULL) >> 48) % CUSTOMER_SLOTS;
}

/* the customer's entry, or the empty one where it would go (NULL: full) */
static pbh_customer_slot_t *
customer_find(int64_t customer)
{
	size_t		h = customer_home(customer);

	for (size_t i = 0; i < CUSTOMER_SLOTS; i++)
	{
		pbh_customer_slot_t *c = &customer_slots[(h + i) % CUSTOMER_SLOTS];

		if (c->customer == customer || c->customer == 0)
			return c;
	}
	return NULL;
}

/* one more stream of the customer: 0, or -1 over the limit (or table full) */
static int
customer_take(int64_t customer)
{
	pbh_customer_slot_t *c;
	int			rc = -1;

	pthread_mutex_lock(&customer_lock);
	c = customer_find(customer);
	if (c != NULL && c->count < pbh_config.events_per_customer)
	{
		c->customer = customer;
		c->count++;
		rc = 0;
	}
	pthread_mutex_unlock(&customer_lock);
	return rc;
}

static void
customer_release(int64_t customer)
{
	pbh_customer_slot_t *c;

	pthread_mutex_lock(&customer_lock);
	c = customer_find(customer);
	if (c != NULL && c->customer == customer && --c->count <= 0)
	{
		/* delete: move back each later entry of the run that may use the hole */
		size_t		i = (size_t) (c - customer_slots),
					j = i;

		for (;;)
		{
			size_t		k;

			j = (j + 1) % CUSTOMER_SLOTS;
			if (customer_slots[j].customer == 0)
				break;
			k = customer_home(customer_slots[j].customer);
			/* the entry at j may move to i unless its home lies in (i, j] */
			if (i <= j ? (k <= i || k > j) : (k <= i && k > j))
			{
				customer_slots[i] = customer_slots[j];
				i = j;
			}
		}
		customer_slots[i].customer = 0;
		customer_slots[i].count = 0;
	}
	pthread_mutex_unlock(&customer_lock);
}

static void stream_fetch(pbh_stream_t *s);
static void stream_end(pbh_stream_t *s);
static void listen_start(void);

/* ---------------------------------------------------------------------
 * Output
 * ---------------------------------------------------------------------
 */

/* append to what the client has not taken; 0, or -1 past the cap */
static int
stream_append(pbh_stream_t *s, const char *data, size_t len)
{
	if (s->out_len + len > (size_t) pbh_config.events_buffer)
		return -1;
	if (s->out_len + len > s->out_cap)
	{
		size_t		cap = s->out_cap ? s->out_cap : 4096;

		while (cap < s->out_len + len)
			cap *= 2;
		s->out = realloc(s->out, cap);
		if (s->out == NULL)
			abort();
		s->out_cap = cap;
	}
	memcpy(s->out + s->out_len, data, len);
	s->out_len += len;
	return 0;
}

/* hand what is buffered to h2o, unless a write is in progress */
static void
stream_flush(pbh_stream_t *s)
{
	h2o_iovec_t buf;
	char	   *tmp;
	size_t		tmpcap;

	if (s->gone || !s->started || s->writing)
		return;
	if (s->closing)
	{
		stream_end(s);
		return;
	}
	if (s->out_len == 0)
		return;
	/* swap: what was sent (and taken) becomes the next buffer */
	tmp = s->sending;
	tmpcap = s->sending_cap;
	s->sending = s->out;
	s->sending_cap = s->out_cap;
	buf = h2o_iovec_init(s->sending, s->out_len);
	s->out = tmp;
	s->out_cap = tmpcap;
	s->out_len = 0;
	s->writing = 1;
	h2o_send(s->req, &buf, 1, H2O_SEND_STATE_IN_PROGRESS);
}

/* the client took what was sent */
static void
on_proceed(h2o_generator_t *gen, h2o_req_t *req)
{
	pbh_stream_t *s = (pbh_stream_t *) gen;

	s->writing = 0;
	s->writes_done++;
	stream_flush(s);
}

/*
 * Take a stream out of the thread's list and its timers: it fetches no
 * more.  It keeps its customer's place until it is freed (by on_proceed,
 * on_stop or on_req_dispose, whichever h2o calls).
 */
static void
stream_forget(pbh_stream_t *s)
{
	if (h2o_linklist_is_linked(&s->link))
	{
		h2o_linklist_unlink(&s->link);
		et->nstreams--;
	}
	if (h2o_timeout_is_linked(&s->heartbeat))
		h2o_timeout_unlink(&s->heartbeat);
	if (h2o_timeout_is_linked(&s->retry))
		h2o_timeout_unlink(&s->retry);
}

static void
stream_free(pbh_stream_t *s)
{
	stream_forget(s);
	if (s->counted)
	{
		customer_release(s->customer);
		s->counted = 0;
	}
	if (s->guard != NULL)
		*s->guard = NULL;
	if (s->fetch != NULL)
		s->fetch->stream = NULL;
	free(s->out);
	free(s->sending);
	free(s->token);
	free(s->request_id);
	free(s->client);
	free(s->user_agent);
	free(s);
}

/*
 * End a stream: at once when nothing is being written (the final chunk),
 * else once the client takes what is (on_proceed).  Nothing more is fetched.
 */
static void
stream_end(pbh_stream_t *s)
{
	s->closing = 1;
	if (s->gone)
	{
		stream_free(s);
		return;
	}
	if (!s->started || s->writing)
		return;
	h2o_send(s->req, NULL, 0, H2O_SEND_STATE_FINAL);
	stream_free(s);
}

/* a client that does not take what is written: end its connection */
static void
stream_abort(pbh_stream_t *s)
{
	h2o_socket_t *sock = s->req->conn->callbacks->get_socket != NULL ?
		s->req->conn->callbacks->get_socket(s->req->conn) : NULL;

	stream_forget(s);
	s->closing = 1;
	if (sock != NULL)
		shutdown(h2o_socket_get_fd(sock), SHUT_RDWR);
}

/* h2o ends the response: the client went away, or the connection broke */
static void
on_stop(h2o_generator_t *gen, h2o_req_t *req)
{
	pbh_stream_t *s = (pbh_stream_t *) gen;

	s->gone = 1;
	s->req = NULL;
	stream_free(s);
}

/*
 * h2o frees the request without stopping a generator: the client left
 * before the response started (an HTTP/2 stream reset while the first
 * fetch is in flight, say).  The fetch finishes on its own and is dropped.
 */
static void
on_req_dispose(void *p)
{
	pbh_stream_t *s = *(pbh_stream_t **) p;

	if (s == NULL)
		return;
	s->guard = NULL;
	s->gone = 1;
	s->req = NULL;
	stream_free(s);
}

/* ---------------------------------------------------------------------
 * Fetching
 * ---------------------------------------------------------------------
 */

static void
on_retry(h2o_timeout_entry_t *entry)
{
	pbh_stream_t *s = H2O_STRUCT_FROM_MEMBER(pbh_stream_t, retry, entry);

	stream_fetch(s);
}

static void
start_response(pbh_stream_t *s)
{
	h2o_req_t  *req = s->req;
	char		retry[32];
	int			n;

	req->res.status = 200;
	pbh_count_status(req, 200);
	h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
				   H2O_STRLIT("text/event-stream; charset=utf-8"));
	/* never through the gzip filter, which would hold events back */
	h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_ENCODING, NULL,
				   H2O_STRLIT("identity"));
	h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-accel-buffering"), 0,
						  NULL, H2O_STRLIT("no"));
	s->gen.proceed = on_proceed;
	s->gen.stop = on_stop;
	h2o_start_response(req, &s->gen);
	s->started = 1;
	n = snprintf(retry, sizeof(retry), "retry: %d\n\n", pbh_config.events_retry);
	stream_append(s, retry, n);
	h2o_timeout_link(et->thread->ctx.loop, &et->heartbeat_timeout, &s->heartbeat);
	/*
	 * once more in a second: a commit that read the feed's watch just before
	 * this stream's first watch committed did not notify
	 */
	h2o_timeout_link(et->thread->ctx.loop, &et->retry_timeout, &s->retry);
}

static void
fetch_free(pbh_fetch_t *f)
{
	h2o_mem_clear_pool(&f->pool);
	free(f);
}

static void
on_fetched(pbh_job_t *job)
{
	pbh_fetch_t *f = (pbh_fetch_t *) job;
	pbh_stream_t *s = f->stream;
	long long	customer = 0,
				after = 0,
				last = 0,
				head = 0;
	int			count = 0;

	if (s == NULL)
	{
		fetch_free(f);
		return;
	}
	s->fetch = NULL;
	if (s->closing)
	{
		/* ending: what came is not sent; on_proceed ends it if a write is out */
		fetch_free(f);
		if (!s->writing)
			stream_end(s);
		return;
	}
	if (!s->started)
	{
		/* the request's own database work, as any route's (obs.c) */
		pbh_obs_db(s->req, job);
		if (job->failed)
			pbh_obs_db_error(et->thread, job);
	}
	if (job->failed)
	{
		const pbh_error_t *e = job->conn_lost ? NULL : pbh_error_for_sqlstate(job->sqlstate);

		if (!s->started)
		{
			/* the stream never started: an ordinary error response */
			h2o_req_t  *req = s->req;

			if (e == NULL)
				pbh_problem_unavailable(req);
			else
				pbh_problem_error(req, e, job->message, 0);
			stream_free(s);
		}
		else if (e == NULL || pbh_sqlstate_retryable(job->sqlstate))
		{
			/* the database restarts, a conflict: try again in a second */
			if (!h2o_timeout_is_linked(&s->retry))
				h2o_timeout_link(et->thread->ctx.loop, &et->retry_timeout, &s->retry);
		}
		else
			stream_end(s);		/* e.g. the session was revoked: the client sees the end */
		fetch_free(f);
		return;
	}
	if (job->value[0] == NULL ||
		sscanf(job->value[0], "%lld %lld %lld %d %lld", &customer, &after, &last, &count,
			   &head) != 5 ||
		customer != s->customer || (s->last >= 0 && after != s->last))
	{
		/* cannot happen: the feed is the token's customer's, from where we were */
		fprintf(stderr, "pgbank-http: events: unexpected fetch result\n");
		if (!s->started)
		{
			pbh_problem_send(s->req, 500, "internal", "Internal error", NULL);
			stream_free(s);
		}
		else
			stream_end(s);
		fetch_free(f);
		return;
	}
	if (!s->started && et->shut)
	{
		/* SIGTERM came while the first fetch was out: do not start now */
		pbh_problem_unavailable(s->req);
		fetch_free(f);
		stream_free(s);
		return;
	}
	if (!s->started && after > head)
	{
		pbh_problem_send(s->req, 400, "invalid_argument", "Invalid request",
						 "Last-Event-ID is past this customer's latest event");
		fetch_free(f);
		stream_free(s);
		return;
	}
	if (!s->started)
		start_response(s);
	if (job->value[1] != NULL && stream_append(s, job->value[1], job->value_len[1]) != 0)
	{
		/* the client does not keep up: it reconnects and resumes */
		fetch_free(f);
		stream_end(s);
		return;
	}
	s->last = last;
	fetch_free(f);
	if (count >= PBH_EVENTS_FETCH_MAX || s->again)
		stream_fetch(s);
	stream_flush(s);			/* last: it may end and free the stream */
}

/* fetch what follows the stream's position (one at a time) */
static void
stream_fetch(pbh_stream_t *s)
{
	pbh_fetch_t *f;
	pbh_job_t  *job;

	if (s->closing || s->gone)
		return;
	if (s->fetch != NULL)
	{
		s->again = 1;
		return;
	}
	s->again = 0;
	if (h2o_timeout_is_linked(&s->retry))
		h2o_timeout_unlink(&s->retry);
	f = calloc(1, sizeof(*f));
	if (f == NULL)
		abort();
	h2o_mem_init_pool(&f->pool);
	f->stream = s;
	s->fetch = f;
	f->params0[0] = "bank_customer";
	f->params0[1] = "off";		/* bank.events_watch may write */
	f->params0[2] = h2o_strdup(&f->pool, s->token, SIZE_MAX).base;
	f->params0[3] = s->request_id ? h2o_strdup(&f->pool, s->request_id, SIZE_MAX).base : NULL;
	f->params0[4] = s->client ? h2o_strdup(&f->pool, s->client, SIZE_MAX).base : NULL;
	f->params0[5] = s->user_agent ? h2o_strdup(&f->pool, s->user_agent, SIZE_MAX).base : NULL;
	f->params0[6] = et->watch_seconds;	/* the thread's: outlives every fetch */
	if (s->last >= 0)
	{
		char	   *after = h2o_mem_alloc_pool(&f->pool, 24);

		snprintf(after, 24, "%lld", (long long) s->last);
		f->params1[0] = after;
	}
	else
		f->params1[0] = NULL;
	job = &f->job;
	job->thread = et->thread;
	job->read_only = 0;
	job->pool = &f->pool;
	job->on_done = on_fetched;
	job->nstmts = 2;
	job->stmts[0] = PBH_STMT_EVENTS_AUTH;
	job->nparams[0] = 7;
	job->params[0] = f->params0;
	job->stmts[1] = s->stmt;
	job->nparams[1] = 1;
	job->params[1] = f->params1;
	pbh_pool_submit(job);
}

/* every stream of the thread fetches (missed notifications) */
static void
fetch_all(void)
{
	for (h2o_linklist_t *l = et->streams.next; l != &et->streams;)
	{
		pbh_stream_t *s = H2O_STRUCT_FROM_MEMBER(pbh_stream_t, link, l);

		l = l->next;
		stream_fetch(s);
	}
}

static void
on_heartbeat(h2o_timeout_entry_t *entry)
{
	pbh_stream_t *s = H2O_STRUCT_FROM_MEMBER(pbh_stream_t, heartbeat, entry);

	/*
	 * A client that takes nothing (the same write pending at two
	 * heartbeats) or whose token expired: the stream ends.  A pending write
	 * cannot be cancelled, and h2o 2.2.5 has no write timeout: the
	 * connection's socket is shut down, the write fails, and h2o stops the
	 * generator (on_stop frees the stream and gives its place back).
	 */
	s->stalled = s->writing && s->writes_done == s->writes_seen ? s->stalled + 1 : 0;
	s->writes_seen = s->writes_done;
	if ((int64_t) time(NULL) >= s->exp || s->stalled >= 2)
	{
		if (s->writing)
			stream_abort(s);
		else
			stream_end(s);
		return;
	}
	h2o_timeout_link(et->thread->ctx.loop, &et->heartbeat_timeout, &s->heartbeat);
	/* renews the watch; catches up if a notification was missed */
	stream_fetch(s);
	/* a comment: keeps proxies from timing out, and finds a client gone */
	if (!s->writing && s->out_len == 0 && stream_append(s, ":\n\n", 3) == 0)
		stream_flush(s);
}

/* ---------------------------------------------------------------------
 * The LISTEN connection
 * ---------------------------------------------------------------------
 */

/* a notification: the streams of its customer fetch */
static void
dispatch(const char *payload)
{
	for (h2o_linklist_t *l = et->streams.next; l != &et->streams;)
	{
		pbh_stream_t *s = H2O_STRUCT_FROM_MEMBER(pbh_stream_t, link, l);

		l = l->next;
		if (payload[0] == '\0' || strcmp(payload, s->pseudonym) == 0)
			stream_fetch(s);
	}
}

static void
on_listen_read(h2o_socket_t *sock, const char *err)
{
	PGconn	   *pg = et->listener.pg;
	PGnotify   *n;
	PGresult   *res;

	if (err != NULL || PQconsumeInput(pg) != 1)
	{
		pbh_dbconn_fail(&et->listener, err ? err : PQerrorMessage(pg));
		return;
	}
	while (!PQisBusy(pg) && (res = PQgetResult(pg)) != NULL)
	{
		/* the LISTEN's result (nothing else is ever sent) */
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
		{
			pbh_dbconn_fail(&et->listener, PQresultErrorMessage(res));
			PQclear(res);
			return;
		}
		PQclear(res);
	}
	if (et->listener.state == PBH_DBCONN_STARTING && !PQisBusy(pg))
	{
		pbh_dbconn_ready(&et->listener);
		/* what committed while nobody listened */
		fetch_all();
	}
	while ((n = PQnotifies(pg)) != NULL)
	{
		if (strcmp(n->relname, EVENTS_CHANNEL) == 0)
			dispatch(n->extra);
		PQfreemem(n);
	}
	if (PQstatus(pg) == CONNECTION_BAD)
		pbh_dbconn_fail(&et->listener, PQerrorMessage(pg));
}

/* connected (dbconn.c): LISTEN, whose result makes it ready */
static void
on_listen_connected(pbh_dbconn_t *c)
{
	/* a short command: it fits the socket buffer, so one flush sends it */
	if (PQsendQuery(c->pg, "LISTEN " EVENTS_CHANNEL) != 1 || PQflush(c->pg) != 0)
	{
		pbh_dbconn_fail(c, PQerrorMessage(c->pg));
		return;
	}
	h2o_socket_read_start(c->sock, on_listen_read);
}

/* open the listener unless it is open, opening, or waiting for its next attempt */
static void
listen_start(void)
{
	if (et->listener.state == PBH_DBCONN_DOWN && !h2o_timeout_is_linked(&et->listener.tick) &&
		!et->shut)
		pbh_dbconn_start(&et->listener);
}

/* this thread's state, made on first use */
static pbh_events_thread_t *
events_thread(pbh_thread_t *t)
{
	if (et == NULL)
	{
		et = calloc(1, sizeof(*et));
		if (et == NULL)
			abort();
		et->thread = t;
		h2o_linklist_init_anchor(&et->streams);
		h2o_timeout_init(t->ctx.loop, &et->heartbeat_timeout,
						 (uint64_t) pbh_config.events_heartbeat * 1000);
		h2o_timeout_init(t->ctx.loop, &et->retry_timeout, 1000);
		/* followed for three heartbeats; each heartbeat fetches */
		snprintf(et->watch_seconds, sizeof(et->watch_seconds), "%d",
				 pbh_config.events_heartbeat * 3 < 3600 ? pbh_config.events_heartbeat * 3 : 3600);
		pbh_dbconn_init(&et->listener, t, pbh_config.dsn, "pgbank-http events",
						"events listener", on_listen_connected, NULL);
	}
	return et;
}

/* ---------------------------------------------------------------------
 * Opening a stream
 * ---------------------------------------------------------------------
 */

static void
pseudonym(int64_t customer, char *out)
{
	static const char hex[] = "0123456789abcdef";
	char		msg[64];
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;

	snprintf(msg, sizeof(msg), "pgbank-events:%lld", (long long) customer);
	const pbh_live_t *live = pbh_live();	/* the secret SIGHUP may rotate */
	const char *secret = live != NULL ? live->jwt_secret : pbh_config.jwt_secret;

	HMAC(EVP_sha256(), secret, (int) strlen(secret),
		 (const unsigned char *) msg, strlen(msg), mac, &maclen);
	for (int i = 0; i < 16; i++)
	{
		out[2 * i] = hex[mac[i] >> 4];
		out[2 * i + 1] = hex[mac[i] & 15];
	}
	out[32] = '\0';
}

int
pbh_events_open(h2o_req_t *req, const pbh_route_t *route, const char *token, int64_t customer,
				int64_t exp, const char *const *args)
{
	pbh_thread_t *t = (pbh_thread_t *) req->conn->ctx;
	pbh_stream_t *s;
	char		addr[INET6_ADDRSTRLEN];

	events_thread(t);
	if (et->nstreams >= pbh_config.events_max_streams)
	{
		h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("retry-after"), 0, NULL,
							  H2O_STRLIT("5"));
		pbh_problem_send(req, 503, "too_many_streams", "Too many event streams on this server",
						 NULL);
		return 0;
	}
	if (customer_take(customer) != 0)
	{
		pbh_problem_send(req, 429, "too_many_streams", "Too many event streams",
						 "This customer has as many event streams open as allowed; close one.");
		return 0;
	}

	s = calloc(1, sizeof(*s));
	if (s == NULL)
		abort();
	s->req = req;
	s->counted = 1;				/* customer_take above */
	s->guard = h2o_mem_alloc_shared(&req->pool, sizeof(*s->guard), on_req_dispose);
	*s->guard = s;
	s->stmt = PBH_STMT_FIXED + route->index;
	s->customer = customer;
	s->exp = exp;
	/* Last-Event-ID, checked as the route's argument (digits) */
	s->last = args[0] != NULL ? strtoll(args[0], NULL, 10) : -1;
	pseudonym(customer, s->pseudonym);
	s->token = strdup(token);
	{
		const char *rid = pbh_request_id(req),
				   *client = pbh_client_addr(req, addr, sizeof(addr));
		h2o_iovec_t ua = pbh_user_agent(req);

		s->request_id = rid != NULL ? strdup(rid) : NULL;
		s->client = client != NULL ? strdup(client) : NULL;
		s->user_agent = ua.base != NULL ? strndup(ua.base, ua.len) : NULL;
	}
	s->heartbeat.cb = on_heartbeat;
	s->retry.cb = on_retry;
	h2o_linklist_insert(&et->streams, &s->link);
	et->nstreams++;
	listen_start();
	/* the first fetch authenticates in the database; the response starts after it */
	stream_fetch(s);
	return 0;
}

/* SIGTERM: end every stream of the thread, close the listener */
void
pbh_events_shutdown(pbh_thread_t *t)
{
	if (et == NULL || et->shut)
		return;
	et->shut = 1;
	while (!h2o_linklist_is_empty(&et->streams))
	{
		pbh_stream_t *s = H2O_STRUCT_FROM_MEMBER(pbh_stream_t, link, et->streams.next);

		if (!s->started)
		{
			/* its fetch is in flight: it answers 503 (pool.c refuses while stopping) */
			stream_forget(s);
			continue;
		}
		if (s->writing)
		{
			/* a write in progress: it ends on proceed; forget it here */
			stream_forget(s);
			s->closing = 1;
			continue;
		}
		stream_end(s);			/* frees it */
	}
	pbh_dbconn_stop(&et->listener);
}

/* what the stream's 200 is, for the OpenAPI document (openapi.c) */
const char *
pbh_events_description(void)
{
	return "A text/event-stream of the customer's account events (transfer.debit, "
		"transfer.credit, transfer.held_for_review, transfer.rejected, hold.created, hold.captured, "
		"hold.voided, account.frozen, account.unfrozen, account.closed), pushed as they commit. "
		"Each message's id is the event's number in the customer's feed (1, 2, 3, ... without gaps); "
		"reconnect with Last-Event-ID to resume after it. Without it the stream starts after the "
		"latest event. Comments are heartbeats. The stream ends when the token expires.";
}
