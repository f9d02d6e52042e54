/*-------------------------------------------------------------------------
 *
 * dbconn.c
 *		One libpq connection of a thread, opened and reopened without
 *		blocking the loop: the pool's connections (pool.c) and the events
 *		listener (events.c) are its owners.  The owner sets the connection
 *		up once it is connected (prepares, LISTEN), says when it is ready,
 *		and hears when it is lost.
 *
 * Invariants:
 *	- Nothing blocks: PQconnectStartParams, then PQconnectPoll each time
 *	  the loop finds the socket ready.  libpq's connect_timeout does
 *	  nothing for a connection made this way, so the attempt is timed
 *	  here: one that is not ready PBH_CONNECT_TIMEOUT_MS after it started
 *	  (handshake, authentication and the owner's setup), e.g. against a
 *	  database that accepts and never answers, is given up like one that
 *	  failed.
 *	- The loop watches a dup() of libpq's socket: closing the h2o socket
 *	  never closes libpq's descriptor, and PQfinish never pulls a
 *	  descriptor from under the loop.
 *	- A connection that fails or is lost is reopened after a delay that
 *	  starts at PBH_RECONNECT_MIN_MS and doubles at each failed attempt up
 *	  to PBH_RECONNECT_MAX_MS, a random point in its upper half (jitter),
 *	  so that a restarting database is not hammered in step by every
 *	  thread; the log line of the failure says how long.  The first
 *	  connection that gets ready resets it, and tells every other one
 *	  waiting for its next attempt, in any thread, to try at once
 *	  (db_back, the only state the threads share here: read on the tick,
 *	  never per request).
 *	- While not ready a connection is on its thread's tick
 *	  (PBH_RECONNECT_TICK_MS), which starts the next attempt when its time
 *	  has come and gives up one that takes too long.  After SIGTERM
 *	  nothing is reopened.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pgbank_http.h"

/* bumped when a connection gets ready after a failure: the database is back */
static uint64_t db_back;

/* per-thread seed of the reconnection jitter */
static __thread unsigned int jitter_seed;

static void connect_step(pbh_dbconn_t *c, PostgresPollingStatusType st);
static void on_tick(h2o_timeout_entry_t *entry);

void
pbh_dbconn_init(pbh_dbconn_t *c, pbh_thread_t *t, const char *dsn, const char *appname,
				const char *name, void (*on_connected) (pbh_dbconn_t *c),
				void (*on_down) (pbh_dbconn_t *c))
{
	memset(c, 0, sizeof(*c));
	c->thread = t;
	c->dsn = dsn;
	c->appname = appname;
	snprintf(c->name, sizeof(c->name), "%s", name);
	c->state = PBH_DBCONN_DOWN;
	c->tick.cb = on_tick;
	c->backoff = PBH_RECONNECT_MIN_MS;
	c->on_connected = on_connected;
	c->on_down = on_down;
	if (jitter_seed == 0)
		jitter_seed = ((unsigned int) time(NULL) ^ ((unsigned int) t->index * 2654435761u)) | 1;
}

void
pbh_dbconn_log(pbh_dbconn_t *c, const char *what, const char *detail)
{
	fprintf(stderr, "pgbank-http: thread %d %s: %s%s%s\n", c->thread->index, c->name, what,
			detail ? ": " : "", detail ? detail : "");
}

/* watch libpq's current socket (a fresh h2o socket on a dup()); 0 or -1 */
static int
dbconn_watch(pbh_dbconn_t *c)
{
	int			fd;

	if (c->sock != NULL)
	{
		h2o_socket_close(c->sock);
		c->sock = NULL;
	}
	c->write_wait = 0;
	if (PQsocket(c->pg) < 0 || (fd = dup(PQsocket(c->pg))) < 0)
		return -1;
	c->sock = h2o_evloop_socket_create(c->thread->ctx.loop, fd, H2O_SOCKET_FLAG_DONT_READ);
	c->sock->data = c;
	return 0;
}

void
pbh_dbconn_fail(pbh_dbconn_t *c, const char *why)
{
	pbh_thread_t *t = c->thread;
	char		msg[320];
	int			delay = -1;

	/*
	 * why may be libpq's message: copied before PQfinish, on one line (libpq
	 * puts a hint on a line of its own)
	 */
	if (why != NULL)
	{
		size_t		n = 0;

		for (const char *p = why; *p != '\0' && n < sizeof(msg) - 40; p++)
		{
			char		ch = (*p == '\n' || *p == '\t' || *p == '\r') ? ' ' : *p;

			if (ch != ' ' || (n > 0 && msg[n - 1] != ' '))
				msg[n++] = ch;
		}
		while (n > 0 && msg[n - 1] == ' ')
			n--;
		msg[n] = '\0';
	}
	if (c->sock != NULL)
	{
		h2o_socket_close(c->sock);
		c->sock = NULL;
	}
	if (c->pg != NULL)
	{
		PQfinish(c->pg);
		c->pg = NULL;
	}
	c->state = PBH_DBCONN_DOWN;
	c->write_wait = 0;
	if (!pbh_stopping)
	{
		/* the next attempt: a random point in the upper half of the backoff */
		int			b = c->backoff > 0 ? c->backoff : PBH_RECONNECT_MIN_MS;

		delay = b / 2 + (int) (rand_r(&jitter_seed) % (unsigned) (b / 2 + 1));
		c->next_try = h2o_now(t->ctx.loop) + delay;
		c->db_back_seen = __atomic_load_n(&db_back, __ATOMIC_RELAXED);
		c->backoff = b * 2 < PBH_RECONNECT_MAX_MS ? b * 2 : PBH_RECONNECT_MAX_MS;
		if (!h2o_timeout_is_linked(&c->tick))
			h2o_timeout_link(t->ctx.loop, &t->retry_timeout, &c->tick);
	}
	if (why != NULL)
	{
		if (delay >= 0)
		{
			size_t		n = strlen(msg);

			snprintf(msg + n, sizeof(msg) - n, " (next attempt in %d ms)", delay);
			pbh_dbconn_log(c, "down", msg);
		}
		PBH_COUNT(t->n_db_conn_failures);
	}
	if (c->on_down != NULL)
		c->on_down(c);
}

static void
on_connect_io(h2o_socket_t *sock, const char *err)
{
	pbh_dbconn_t *c = sock->data;

	c->write_wait = 0;
	if (err != NULL)
	{
		pbh_dbconn_fail(c, err);
		return;
	}
	h2o_socket_read_stop(sock);
	connect_step(c, PQconnectPoll(c->pg));
}

static void
connect_step(pbh_dbconn_t *c, PostgresPollingStatusType st)
{
	switch (st)
	{
		case PGRES_POLLING_READING:
		case PGRES_POLLING_WRITING:
			if (dbconn_watch(c) != 0)
			{
				pbh_dbconn_fail(c, "no socket");
				return;
			}
			if (st == PGRES_POLLING_READING)
				h2o_socket_read_start(c->sock, on_connect_io);
			else
			{
				c->write_wait = 1;
				h2o_socket_notify_write(c->sock, on_connect_io);
			}
			return;
		case PGRES_POLLING_OK:
			break;
		default:
			pbh_dbconn_fail(c, PQerrorMessage(c->pg));
			return;
	}
	/* connected: non-blocking from now on; the owner sets it up */
	if (PQsetnonblocking(c->pg, 1) != 0 || dbconn_watch(c) != 0)
	{
		pbh_dbconn_fail(c, PQerrorMessage(c->pg));
		return;
	}
	c->state = PBH_DBCONN_STARTING;
	c->on_connected(c);
}

void
pbh_dbconn_start(pbh_dbconn_t *c)
{
	const char *keys[] = {"dbname", "fallback_application_name", NULL};
	const char *values[] = {c->dsn, c->appname, NULL};

	if (c->state != PBH_DBCONN_DOWN || pbh_stopping)
		return;
	c->pg = PQconnectStartParams(keys, values, 1);
	if (c->pg == NULL || PQstatus(c->pg) == CONNECTION_BAD)
	{
		pbh_dbconn_fail(c, c->pg ? PQerrorMessage(c->pg) : "out of memory");
		return;
	}
	c->state = PBH_DBCONN_CONNECTING;
	c->deadline = h2o_now(c->thread->ctx.loop) + PBH_CONNECT_TIMEOUT_MS;
	if (!h2o_timeout_is_linked(&c->tick))
		h2o_timeout_link(c->thread->ctx.loop, &c->thread->retry_timeout, &c->tick);
	connect_step(c, PGRES_POLLING_WRITING);
}

void
pbh_dbconn_ready(pbh_dbconn_t *c)
{
	c->state = PBH_DBCONN_READY;
	if (c->backoff > PBH_RECONNECT_MIN_MS)
		__atomic_fetch_add(&db_back, 1, __ATOMIC_RELAXED);
	c->backoff = PBH_RECONNECT_MIN_MS;
	if (h2o_timeout_is_linked(&c->tick))
		h2o_timeout_unlink(&c->tick);
	if (!pbh_stopping)
		pbh_dbconn_log(c, "ready", NULL);
}

/*
 * The tick of a connection that is not ready: start the next attempt when
 * its time has come (or the database is back), give up an attempt that
 * takes too long.
 */
static void
on_tick(h2o_timeout_entry_t *entry)
{
	pbh_dbconn_t *c = H2O_STRUCT_FROM_MEMBER(pbh_dbconn_t, tick, entry);
	uint64_t	now = h2o_now(c->thread->ctx.loop);

	if (pbh_stopping || c->state == PBH_DBCONN_READY)
		return;
	if (c->state == PBH_DBCONN_DOWN)
	{
		if (now >= c->next_try ||
			__atomic_load_n(&db_back, __ATOMIC_RELAXED) != c->db_back_seen)
			pbh_dbconn_start(c);
		else
			h2o_timeout_link(c->thread->ctx.loop, &c->thread->retry_timeout, &c->tick);
		return;
	}
	if (now >= c->deadline)
	{
		pbh_dbconn_fail(c, "timeout connecting or preparing");
		return;
	}
	h2o_timeout_link(c->thread->ctx.loop, &c->thread->retry_timeout, &c->tick);
}

void
pbh_dbconn_stop(pbh_dbconn_t *c)
{
	if (c->state != PBH_DBCONN_DOWN || c->pg != NULL)
		pbh_dbconn_fail(c, NULL);
	if (h2o_timeout_is_linked(&c->tick))
		h2o_timeout_unlink(&c->tick);
}
