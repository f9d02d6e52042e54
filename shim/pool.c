/*-------------------------------------------------------------------------
 *
 * pool.c
 *		Each thread's pool of libpq connections: non-blocking, in pipeline
 *		mode, their sockets registered in the thread's h2o loop, every
 *		statement prepared once per connection.
 *
 * Invariants:
 *	- A job (one HTTP request's database work) is its statements and one
 *	  Sync: one implicit transaction, one round trip.  Several jobs may be
 *	  in flight on a connection (pipeline depth); their results come back
 *	  in order, each job's ending with its PGRES_PIPELINE_SYNC.  An error
 *	  aborts only the rest of its own job: the server skips to the Sync.
 *	- Nothing here blocks: connecting is PQconnectStartParams/PQconnectPoll
 *	  driven by the loop, sending is PQsendQueryPrepared + PQpipelineSync +
 *	  PQflush (waiting for writability when the kernel's buffer is full),
 *	  reading is PQconsumeInput + PQgetResult while not busy.
 *	- The loop watches a dup() of libpq's socket: closing the h2o socket
 *	  never closes libpq's descriptor, and PQfinish never pulls a
 *	  descriptor from under the loop.
 *	- A connection that breaks fails its jobs in flight (never resent: a
 *	  write may have committed) and is reopened after a second.
 *	- Two classes of connections: read-only routes go to their own
 *	  (--read-connections), so a read never waits in a pipeline behind a
 *	  write that waits for a lock or a commit; writes never go there.  With
 *	  none, or none up, reads share the general connections.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pgbank_http.h"

typedef enum
{
	CONN_DOWN,
	CONN_CONNECTING,
	CONN_PREPARING,
	CONN_READY
} conn_state_t;

struct st_pbh_conn_t
{
	pbh_thread_t *thread;
	int			index;
	int			cls;			/* PBH_POOL_WRITE or PBH_POOL_READ */
	conn_state_t state;
	PGconn	   *pg;
	h2o_socket_t *sock;
	h2o_linklist_t inflight;	/* pbh_job_t, in the order sent */
	int			ninflight;
	int			prepares_left;
	int			write_wait;
	unsigned char *prepared;	/* per statement: prepared here */
	h2o_timeout_entry_t reopen;
};

/*
 * The fixed statements; the routes' follow (see pbh_stmt_sql).  Each request
 * starts with one of them: the role switch, read-only or not, the credential
 * and the request context in one statement.  Its select list is evaluated
 * left to right, so the role is switched before bank.authenticate runs and
 * binds the identity to it (were it not, every token would be refused with
 * PB042 and the HTTP tests would fail).  The gateway may execute these
 * functions itself, since EXECUTE is checked when the statement starts, still
 * as bank_gateway; they give it nothing (sql/pgbank.sql).
 */
static const char *const fixed_sql[PBH_STMT_FIXED] = {
	"SELECT set_config('role', $1, true), set_config('transaction_read_only', $2, true),"
	" bank.authenticate($3), bank.set_request_context($4, $5, $6)",
	"SELECT set_config('role', $1, true), set_config('transaction_read_only', $2, true),"
	" bank.authenticate_api_key($3), bank.set_request_context($4, $5, $6)",
	"SELECT set_config('role', $1, true), set_config('transaction_read_only', $2, true),"
	" bank.set_request_context($3, $4, $5)",
	"SELECT r.role::text, r.id FROM bank.api_key_role($1) r",
	/* GET /v1/events (events.c): the AUTH_TOKEN statement, then the watch */
	"SELECT set_config('role', $1, true), set_config('transaction_read_only', $2, true),"
	" bank.authenticate($3), bank.set_request_context($4, $5, $6), bank.events_watch($7::int)",
	/* GET /v1/events (events.c): customer, after, last, count, head; the messages */
	"SELECT bank.current_customer_id()::text || ' ' || a.after || ' ' ||"
	" coalesce(max(e.seq), a.after) || ' ' || count(e.seq) || ' ' || bank.events_head(),"
	" string_agg('id: ' || e.seq || E'\\ndata: ' || jsonb_build_object('id', e.seq,"
	"  'kind', e.kind, 'account_id', e.account_id, 'transfer_id', e.transfer_id,"
	"  'amount', e.amount::text, 'currency', e.currency, 'occurred_at', e.occurred_at)::text"
	"  || E'\\n\\n', '' ORDER BY e.seq)"
	" FROM (SELECT coalesce($1::bigint, bank.events_head()) AS after) a"
	" LEFT JOIN LATERAL bank.events_since(a.after, $2::int) e ON true GROUP BY a.after",
};

/*
 * Run once per connection, before the statements are prepared: the timeouts
 * of every statement of every request (session settings: a role switch does
 * not change them, and no route sets them).
 */
#define SESSION_SQL \
	"SELECT set_config('statement_timeout', $1, false), set_config('lock_timeout', $2, false)"

int
pbh_nstmts(void)
{
	return PBH_STMT_FIXED + pbh_nroutes;
}

const char *
pbh_stmt_sql(int stmt)
{
	return stmt < PBH_STMT_FIXED ? fixed_sql[stmt] : pbh_routes[stmt - PBH_STMT_FIXED].sql;
}

/* connections per thread: the general ones, then the read-only ones */
static int
pool_size(void)
{
	return pbh_config.connections + pbh_config.read_connections;
}

static void stmt_name(int stmt, char *buf, size_t len)
{
	snprintf(buf, len, "pbh%d", stmt);
}

static void conn_start(pbh_conn_t *conn);
static void conn_fail(pbh_conn_t *conn, const char *why);
static void conn_process(pbh_conn_t *conn);
static void conn_dispatch(pbh_conn_t *conn);
static void on_read(h2o_socket_t *sock, const char *err);

static void
log_conn(pbh_conn_t *conn, const char *what, const char *detail)
{
	fprintf(stderr, "pgbank-http: thread %d connection %d: %s%s%s\n",
			conn->thread->index, conn->index, what, detail ? ": " : "", detail ? detail : "");
}

/* watch libpq's current socket: a fresh h2o socket on a dup() of it */
static int
conn_watch(pbh_conn_t *conn)
{
	int			fd;

	if (conn->sock != NULL)
	{
		h2o_socket_close(conn->sock);
		conn->sock = NULL;
	}
	conn->write_wait = 0;
	if (PQsocket(conn->pg) < 0 || (fd = dup(PQsocket(conn->pg))) < 0)
		return -1;
	conn->sock = h2o_evloop_socket_create(conn->thread->ctx.loop, fd, H2O_SOCKET_FLAG_DONT_READ);
	conn->sock->data = conn;
	return 0;
}

static void on_connect_io(h2o_socket_t *sock, const char *err);

static void
connect_step(pbh_conn_t *conn, PostgresPollingStatusType st)
{
	switch (st)
	{
		case PGRES_POLLING_READING:
		case PGRES_POLLING_WRITING:
			if (conn_watch(conn) != 0)
			{
				conn_fail(conn, "no socket");
				return;
			}
			if (st == PGRES_POLLING_READING)
				h2o_socket_read_start(conn->sock, on_connect_io);
			else
			{
				conn->write_wait = 1;
				h2o_socket_notify_write(conn->sock, on_connect_io);
			}
			return;
		case PGRES_POLLING_OK:
			break;
		default:
			conn_fail(conn, PQerrorMessage(conn->pg));
			return;
	}

	/* connected: pipeline mode, then prepare every statement, each with its Sync */
	if (PQsetnonblocking(conn->pg, 1) != 0 || PQenterPipelineMode(conn->pg) != 1 ||
		conn_watch(conn) != 0)
	{
		conn_fail(conn, PQerrorMessage(conn->pg));
		return;
	}
	conn->state = CONN_PREPARING;
	conn->prepares_left = pbh_nstmts() + 1;
	{
		char		timeouts[2][16];
		const char *values[2] = {timeouts[0], timeouts[1]};

		snprintf(timeouts[0], sizeof(timeouts[0]), "%d", pbh_config.statement_timeout);
		snprintf(timeouts[1], sizeof(timeouts[1]), "%d", pbh_config.lock_timeout);
		if (PQsendQueryParams(conn->pg, SESSION_SQL, 2, NULL, values, NULL, NULL, 0) != 1 ||
			PQpipelineSync(conn->pg) != 1)
		{
			conn_fail(conn, PQerrorMessage(conn->pg));
			return;
		}
	}
	for (int i = 0; i < pbh_nstmts(); i++)
	{
		char		name[16];

		stmt_name(i, name, sizeof(name));
		if (PQsendPrepare(conn->pg, name, pbh_stmt_sql(i), 0, NULL) != 1 ||
			PQpipelineSync(conn->pg) != 1)
		{
			conn_fail(conn, PQerrorMessage(conn->pg));
			return;
		}
	}
	h2o_socket_read_start(conn->sock, on_read);
	conn_process(conn);			/* flushes */
}

static void
on_connect_io(h2o_socket_t *sock, const char *err)
{
	pbh_conn_t *conn = sock->data;

	conn->write_wait = 0;
	if (err != NULL)
	{
		conn_fail(conn, err);
		return;
	}
	h2o_socket_read_stop(sock);
	connect_step(conn, PQconnectPoll(conn->pg));
}

static void
conn_start(pbh_conn_t *conn)
{
	/* pg_stat_activity tells the classes apart (unless the DSN names one) */
	const char *keys[] = {"dbname", "fallback_application_name", NULL};
	const char *values[] = {pbh_config.dsn,
	conn->cls == PBH_POOL_READ ? "pgbank-http read" : "pgbank-http", NULL};

	conn->pg = PQconnectStartParams(keys, values, 1);
	if (conn->pg == NULL || PQstatus(conn->pg) == CONNECTION_BAD)
	{
		conn_fail(conn, conn->pg ? PQerrorMessage(conn->pg) : "out of memory");
		return;
	}
	conn->state = CONN_CONNECTING;
	connect_step(conn, PGRES_POLLING_WRITING);
}

static void
on_reopen(h2o_timeout_entry_t *entry)
{
	pbh_conn_t *conn = H2O_STRUCT_FROM_MEMBER(pbh_conn_t, reopen, entry);

	if (conn->state == CONN_DOWN && !pbh_stopping)
		conn_start(conn);
}

static void
job_finish(pbh_job_t *job)
{
	job->thread->inflight--;
	job->on_done(job);
}

/* the thread has no connection of a class that is or may soon be usable */
static int
pool_hopeless(pbh_thread_t *t, int cls)
{
	for (int i = 0; i < pool_size(); i++)
		if (t->conns[i].cls == cls && t->conns[i].state != CONN_DOWN)
			return 0;
	return 1;
}

/*
 * The class a job goes to: read-only jobs to the read connections while
 * there are any that are or may soon be up; everything else, and reads when
 * none is, to the others.
 */
static int
job_class(pbh_thread_t *t, const pbh_job_t *job)
{
	return job->read_only && pbh_config.read_connections > 0 &&
		!pool_hopeless(t, PBH_POOL_READ) ? PBH_POOL_READ : PBH_POOL_WRITE;
}

static void
conn_fail(pbh_conn_t *conn, const char *why)
{
	pbh_thread_t *t = conn->thread;
	h2o_linklist_t failed;

	if (why != NULL && !pbh_stopping)
	{
		char		msg[256];
		size_t		n;

		snprintf(msg, sizeof(msg), "%s", why);
		n = strlen(msg);
		while (n > 0 && msg[n - 1] == '\n')
			msg[--n] = '\0';
		log_conn(conn, "down", msg);
	}
	if (conn->sock != NULL)
	{
		h2o_socket_close(conn->sock);
		conn->sock = NULL;
	}
	if (conn->pg != NULL)
	{
		PQfinish(conn->pg);
		conn->pg = NULL;
	}
	conn->state = CONN_DOWN;
	conn->write_wait = 0;
	memset(conn->prepared, 0, pbh_nstmts());

	/* jobs in flight fail (a write may have committed: never resend) */
	h2o_linklist_init_anchor(&failed);
	h2o_linklist_insert_list(&failed, &conn->inflight);
	conn->ninflight = 0;
	while (!h2o_linklist_is_empty(&failed))
	{
		pbh_job_t  *job = H2O_STRUCT_FROM_MEMBER(pbh_job_t, link, failed.next);

		h2o_linklist_unlink(&job->link);
		job->failed = 1;
		job->conn_lost = 1;
		job_finish(job);
	}
	/*
	 * and so do those waiting, when no connection of their class is left to
	 * serve them (reads go back to the other class if it can)
	 */
	if (pool_hopeless(t, conn->cls))
	{
		h2o_linklist_t *waiting = &t->waiting[conn->cls];

		while (!h2o_linklist_is_empty(waiting))
		{
			pbh_job_t  *job = H2O_STRUCT_FROM_MEMBER(pbh_job_t, link, waiting->next);

			h2o_linklist_unlink(&job->link);
			t->nwaiting[conn->cls]--;
			if (conn->cls == PBH_POOL_READ && !pool_hopeless(t, PBH_POOL_WRITE))
			{
				t->inflight--;
				pbh_pool_submit(job);
				continue;
			}
			job->failed = 1;
			job->conn_lost = 1;
			job_finish(job);
		}
	}
	if (!pbh_stopping && !h2o_timeout_is_linked(&conn->reopen))
		h2o_timeout_link(t->ctx.loop, &t->retry_timeout, &conn->reopen);
}

static void on_write(h2o_socket_t *sock, const char *err);

static int
conn_flush(pbh_conn_t *conn)
{
	int			r = PQflush(conn->pg);

	if (r < 0)
	{
		conn_fail(conn, PQerrorMessage(conn->pg));
		return -1;
	}
	if (r == 1 && !conn->write_wait)
	{
		conn->write_wait = 1;
		h2o_socket_notify_write(conn->sock, on_write);
	}
	return 0;
}

static void
on_write(h2o_socket_t *sock, const char *err)
{
	pbh_conn_t *conn = sock->data;

	conn->write_wait = 0;
	if (err != NULL)
	{
		conn_fail(conn, err);
		return;
	}
	/* flushing may have read input too */
	conn_process(conn);
}

static char *
pool_strdup(h2o_mem_pool_t *pool, const char *s, size_t len)
{
	char	   *d = h2o_mem_alloc_pool(pool, len + 1);

	memcpy(d, s, len);
	d[len] = '\0';
	return d;
}

/* one result of the job at the head of the connection */
static void
job_result(pbh_job_t *job, PGresult *res)
{
	ExecStatusType st = PQresultStatus(res);

	if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
	{
		job->nresults++;
		if (job->nresults == job->nstmts)
		{
			int			nf = PQnfields(res);

			job->ntuples = PQntuples(res);
			for (int i = 0; i < 2; i++)
			{
				job->value[i] = NULL;
				if (job->ntuples > 0 && i < nf && !PQgetisnull(res, 0, i))
				{
					job->value_len[i] = PQgetlength(res, 0, i);
					job->value[i] = pool_strdup(job->pool, PQgetvalue(res, 0, i), job->value_len[i]);
				}
			}
		}
		return;
	}
	job->nresults++;
	if (st == PGRES_PIPELINE_ABORTED || job->failed)
		return;
	job->failed = 1;
	job->failed_stmt = job->nresults - 1;
	{
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

		snprintf(job->sqlstate, sizeof(job->sqlstate), "%s", state ? state : "XX000");
		job->message = msg ? pool_strdup(job->pool, msg, strlen(msg)) : NULL;
	}
}

/* read what has come: results, end of jobs, end of preparation */
static void
conn_process(pbh_conn_t *conn)
{
	int			nulls = 0;

	if (conn_flush(conn) != 0)
		return;
	for (;;)
	{
		PGresult   *res;

		if (conn->state == CONN_PREPARING ? conn->prepares_left == 0 :
			h2o_linklist_is_empty(&conn->inflight))
			break;
		if (PQisBusy(conn->pg))
			break;
		res = PQgetResult(conn->pg);
		if (res == NULL)
		{
			/* the end of one statement's results; twice in a row: nothing more */
			if (++nulls > 1)
				break;
			continue;
		}
		nulls = 0;
		if (conn->state == CONN_PREPARING)
		{
			/* the session settings (-1), then each statement */
			int			stmt = pbh_nstmts() - conn->prepares_left;

			if (PQresultStatus(res) == PGRES_PIPELINE_SYNC)
			{
				if (--conn->prepares_left == 0)
				{
					conn->state = CONN_READY;
					if (!pbh_stopping)
						log_conn(conn, "ready", NULL);
				}
			}
			else if (stmt >= 0 && PQresultStatus(res) == PGRES_COMMAND_OK)
				conn->prepared[stmt] = 1;
			else if (stmt < 0 && PQresultStatus(res) == PGRES_TUPLES_OK)
				;
			else if (stmt < 0)
			{
				/* no timeouts: not a connection to serve requests on */
				conn_fail(conn, PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
				PQclear(res);
				return;
			}
			else if (!pbh_stopping)
			{
				char		name[64];

				snprintf(name, sizeof(name), "statement %d not prepared", stmt);
				log_conn(conn, name, PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
			}
			PQclear(res);
			continue;
		}
		else
		{
			pbh_job_t  *job = H2O_STRUCT_FROM_MEMBER(pbh_job_t, link, conn->inflight.next);

			if (PQresultStatus(res) == PGRES_PIPELINE_SYNC)
			{
				PQclear(res);
				h2o_linklist_unlink(&job->link);
				conn->ninflight--;
				job_finish(job);
				continue;
			}
			job_result(job, res);
			PQclear(res);
		}
	}
	if (conn->pg != NULL && PQstatus(conn->pg) == CONNECTION_BAD)
	{
		conn_fail(conn, PQerrorMessage(conn->pg));
		return;
	}
	if (conn->state == CONN_READY)
		conn_dispatch(conn);
}

static void
on_read(h2o_socket_t *sock, const char *err)
{
	pbh_conn_t *conn = sock->data;

	if (err != NULL)
	{
		conn_fail(conn, err);
		return;
	}
	if (PQconsumeInput(conn->pg) != 1)
	{
		conn_fail(conn, PQerrorMessage(conn->pg));
		return;
	}
	conn_process(conn);
}

/* send a job's statements and its Sync; 0, or -1 when the connection broke */
static int
conn_send(pbh_conn_t *conn, pbh_job_t *job)
{
	char		name[16];

	job->nresults = 0;
	job->failed = 0;
	job->ntuples = 0;
	for (int i = 0; i < job->nstmts; i++)
	{
		if (!conn->prepared[job->stmts[i]])
		{
			/* a route whose function this database lacks */
			job->failed = 1;
			strcpy(job->sqlstate, "42883");
			job->message = NULL;
			job_finish(job);
			return 0;
		}
	}
	for (int i = 0; i < job->nstmts; i++)
	{
		stmt_name(job->stmts[i], name, sizeof(name));
		if (PQsendQueryPrepared(conn->pg, name, job->nparams[i], job->params[i],
								NULL, NULL, 0) != 1)
			goto broken;
	}
	if (PQpipelineSync(conn->pg) != 1)
		goto broken;
	h2o_linklist_insert(&conn->inflight, &job->link);
	conn->ninflight++;
	conn->thread->n_db_requests++;
	return conn_flush(conn);

broken:
	/* the job is not in flight yet: fail it with the connection */
	h2o_linklist_insert(&conn->inflight, &job->link);
	conn->ninflight++;
	conn_fail(conn, PQerrorMessage(conn->pg));
	return -1;
}

/* hand waiting jobs of its class to a connection with room */
static void
conn_dispatch(pbh_conn_t *conn)
{
	pbh_thread_t *t = conn->thread;
	h2o_linklist_t *waiting = &t->waiting[conn->cls];

	while (conn->state == CONN_READY && conn->ninflight < pbh_config.pipeline_depth &&
		   !h2o_linklist_is_empty(waiting))
	{
		pbh_job_t  *job = H2O_STRUCT_FROM_MEMBER(pbh_job_t, link, waiting->next);

		h2o_linklist_unlink(&job->link);
		t->nwaiting[conn->cls]--;
		if (conn_send(conn, job) != 0)
			return;
	}
}

void
pbh_pool_submit(pbh_job_t *job)
{
	pbh_thread_t *t = job->thread;
	pbh_conn_t *best = NULL;
	int			cls = job_class(t, job);

	t->inflight++;
	for (int i = 0; i < pool_size(); i++)
	{
		pbh_conn_t *c = &t->conns[i];

		if (c->cls == cls && c->state == CONN_READY && c->ninflight < pbh_config.pipeline_depth &&
			(best == NULL || c->ninflight < best->ninflight))
			best = c;
	}
	if (best == NULL &&
		(t->nwaiting[cls] >= pbh_config.queue_limit || pool_hopeless(t, cls) || pbh_stopping))
	{
		job->failed = 1;
		job->conn_lost = 1;
		job_finish(job);
		return;
	}
	h2o_linklist_insert(&t->waiting[cls], &job->link);
	t->nwaiting[cls]++;
	if (best != NULL)
		conn_dispatch(best);
}

int
pbh_pool_ready(pbh_thread_t *t)
{
	for (int i = 0; i < pool_size(); i++)
		if (t->conns[i].state == CONN_READY)
			return 1;
	return 0;
}

void
pbh_pool_init(pbh_thread_t *t)
{
	for (int cls = 0; cls < PBH_POOL_CLASSES; cls++)
		h2o_linklist_init_anchor(&t->waiting[cls]);
	h2o_timeout_init(t->ctx.loop, &t->retry_timeout, 1000);
	t->conns = calloc(pool_size(), sizeof(pbh_conn_t));
	for (int i = 0; i < pool_size(); i++)
	{
		pbh_conn_t *c = &t->conns[i];

		c->thread = t;
		c->index = i;
		c->cls = i < pbh_config.connections ? PBH_POOL_WRITE : PBH_POOL_READ;
		c->state = CONN_DOWN;
		c->prepared = calloc(pbh_nstmts(), 1);
		h2o_linklist_init_anchor(&c->inflight);
		c->reopen.cb = on_reopen;
		conn_start(c);
	}
}

void
pbh_pool_close(pbh_thread_t *t)
{
	for (int i = 0; i < pool_size(); i++)
	{
		pbh_conn_t *c = &t->conns[i];

		if (h2o_timeout_is_linked(&c->reopen))
			h2o_timeout_unlink(&c->reopen);
		if (c->state != CONN_DOWN)
			conn_fail(c, NULL);
		if (h2o_timeout_is_linked(&c->reopen))
			h2o_timeout_unlink(&c->reopen);
	}
}
