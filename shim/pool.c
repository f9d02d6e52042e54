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
 *	- Nothing here blocks: connecting is dbconn.c's (PQconnectStartParams
 *	  and PQconnectPoll driven by the loop, a deadline, backoff), sending is
 *	  PQsendQueryPrepared + PQpipelineSync + PQflush (waiting for
 *	  writability when the kernel's buffer is full), reading is
 *	  PQconsumeInput + PQgetResult while not busy.
 *	- A connection that breaks fails its jobs in flight (never resent: a
 *	  write may have committed) and is reopened as dbconn.c does it: after
 *	  a backoff with jitter, at once when another connection finds the
 *	  database back; an attempt (connecting and preparing) that is neither
 *	  ready nor failed after PBH_CONNECT_TIMEOUT_MS is abandoned.
 *	- A connection with jobs in flight that gets no result at all for
 *	  statement_timeout + PBH_ANSWER_MARGIN_MS (every statement is bounded
 *	  by statement_timeout, so a live database answers sooner) is taken for
 *	  hung, e.g. cut off by the network or stopped, and failed like a broken
 *	  one: its requests get 503 instead of waiting for TCP to give up.
 *	- A job is queued only while a connection of its class is ready (or it
 *	  is sent at once); with none ready it fails at once (503
 *	  database_unavailable), never waiting for a reconnection that may take
 *	  seconds; when the last ready connection of a class breaks, the jobs
 *	  waiting for that class fail the same way (reads move to the general
 *	  class if it has one ready).
 *	- Two classes of connections: read-only routes go to their own
 *	  (--read-connections), so a read never waits in a pipeline behind a
 *	  write that waits for a lock or a commit; writes never go there.  With
 *	  none, or none up, reads share the general connections.
 *	- A third class, on --replica-dsn, serves the reads replica.c allows
 *	  there; a write with a subject asks, after its Sync, the WAL insert
 *	  position in an implicit transaction of its own (same round trip).
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgbank_http.h"

/* db.state STARTING: the session settings and the statements being prepared */
struct st_pbh_conn_t
{
	pbh_dbconn_t db;			/* connecting, reconnecting (dbconn.c); its thread, name */
	int			cls;			/* PBH_POOL_WRITE, _READ or _REPLICA */
	h2o_linklist_t inflight;	/* pbh_job_t, in the order sent */
	int			ninflight;
	int			prepares_left;
	unsigned char *prepared;	/* per statement: prepared here */
	h2o_timeout_entry_t watchdog;	/* while jobs are in flight */
};

#define CONN_OF(c) H2O_STRUCT_FROM_MEMBER(pbh_conn_t, db, (c))
#define CONN_READY(conn) ((conn)->db.state == PBH_DBCONN_READY)

/* statement_timeout + PBH_ANSWER_MARGIN_MS, on the thread's loop */
static __thread h2o_timeout_t answer_timeout;

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
#define AUTH_TOKEN_SQL \
	"SELECT set_config('role', $1, true), set_config('transaction_read_only', $2, true)," \
	" bank.authenticate($3), bank.set_request_context($4, $5, $6)"

static const char *const fixed_sql[PBH_STMT_FIXED] = {
	AUTH_TOKEN_SQL,
	"SELECT set_config('role', $1, true), set_config('transaction_read_only', $2, true),"
	" bank.authenticate_api_key($3), bank.set_request_context($4, $5, $6)",
	"SELECT set_config('role', $1, true), set_config('transaction_read_only', $2, true),"
	" bank.set_request_context($3, $4, $5)",
	"SELECT r.role::text, r.id FROM bank.api_key_role($1) r",
	"SELECT (pg_current_wal_insert_lsn() - '0/0')::text",
	"SELECT (pg_last_wal_replay_lsn() - '0/0')::text",
	/* GET /v1/events (events.c): the AUTH_TOKEN statement, then the watch */
	AUTH_TOKEN_SQL ", bank.events_watch($7::int)",
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

/* connections per thread: the general ones, the read-only ones, the replica's */
static int
pool_size(void)
{
	return pbh_config.connections + pbh_config.read_connections +
		(pbh_config.replica_dsn != NULL ? pbh_config.replica_connections : 0);
}

static void stmt_name(int stmt, char *buf, size_t len)
{
	snprintf(buf, len, "pbh%d", stmt);
}

static void conn_fail(pbh_conn_t *conn, const char *why);
static void conn_process(pbh_conn_t *conn);
static void conn_dispatch(pbh_conn_t *conn);
static void on_read(h2o_socket_t *sock, const char *err);


/* connected (dbconn.c): pipeline mode, then prepare every statement, each with its Sync */
static void
on_connected(pbh_dbconn_t *c)
{
	pbh_conn_t *conn = CONN_OF(c);

	if (PQenterPipelineMode(conn->db.pg) != 1)
	{
		conn_fail(conn, PQerrorMessage(conn->db.pg));
		return;
	}
	conn->prepares_left = pbh_nstmts() + 1;
	{
		char		timeouts[2][16];
		const char *values[2] = {timeouts[0], timeouts[1]};

		snprintf(timeouts[0], sizeof(timeouts[0]), "%d", pbh_config.statement_timeout);
		snprintf(timeouts[1], sizeof(timeouts[1]), "%d", pbh_config.lock_timeout);
		if (PQsendQueryParams(conn->db.pg, SESSION_SQL, 2, NULL, values, NULL, NULL, 0) != 1 ||
			PQpipelineSync(conn->db.pg) != 1)
		{
			conn_fail(conn, PQerrorMessage(conn->db.pg));
			return;
		}
	}
	for (int i = 0; i < pbh_nstmts(); i++)
	{
		char		name[16];

		stmt_name(i, name, sizeof(name));
		if (PQsendPrepare(conn->db.pg, name, pbh_stmt_sql(i), 0, NULL) != 1 ||
			PQpipelineSync(conn->db.pg) != 1)
		{
			conn_fail(conn, PQerrorMessage(conn->db.pg));
			return;
		}
	}
	h2o_socket_read_start(conn->db.sock, on_read);
	conn_process(conn);			/* flushes */
}

static void
job_finish(pbh_job_t *job)
{
	job->thread->inflight--;
	if (pbh_replica_job_end(job))
		return;					/* a failed replica read, sent to the primary */
	job->on_done(job);
}

/* the thread has no connection of a class ready to take a job */
static int
pool_hopeless(pbh_thread_t *t, int cls)
{
	for (int i = 0; i < pool_size(); i++)
		if (t->conns[i].cls == cls && CONN_READY(&t->conns[i]))
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
	if (job->target == PBH_TARGET_REPLICA ||
		(pbh_replica_eligible(t, job) && !pool_hopeless(t, PBH_POOL_REPLICA)))
		return PBH_POOL_REPLICA;
	return job->read_only && pbh_config.read_connections > 0 &&
		!pool_hopeless(t, PBH_POOL_READ) ? PBH_POOL_READ : PBH_POOL_WRITE;
}

/* the connection broke, or an attempt failed: close it, reopen it later */
static void
conn_fail(pbh_conn_t *conn, const char *why)
{
	pbh_dbconn_fail(&conn->db, why);
}

/* closed (dbconn.c): its jobs, and those no connection of its class can serve, fail */
static void
on_down(pbh_dbconn_t *c)
{
	pbh_conn_t *conn = CONN_OF(c);
	pbh_thread_t *t = conn->db.thread;
	h2o_linklist_t failed;

	memset(conn->prepared, 0, pbh_nstmts());
	if (conn->cls == PBH_POOL_REPLICA)
		pbh_replica_lost(t);
	if (h2o_timeout_is_linked(&conn->watchdog))
		h2o_timeout_unlink(&conn->watchdog);

	/* jobs in flight fail (a write may have committed: never resend) */
	h2o_linklist_init_anchor(&failed);
	h2o_linklist_insert_list(&failed, &conn->inflight);
	conn->ninflight = 0;
	while (!h2o_linklist_is_empty(&failed))
	{
		pbh_job_t  *job = H2O_STRUCT_FROM_MEMBER(pbh_job_t, link, failed.next);

		h2o_linklist_unlink(&job->link);
		if (!job->lsn_phase)
		{
			/* (past its Sync, a job has its answer: only the position is lost) */
			job->failed = 1;
			job->conn_lost = 1;
		}
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
			if ((conn->cls == PBH_POOL_READ || conn->cls == PBH_POOL_REPLICA) &&
				job->target != PBH_TARGET_REPLICA && !pool_hopeless(t, PBH_POOL_WRITE))
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
}

static void on_write(h2o_socket_t *sock, const char *err);

static int
conn_flush(pbh_conn_t *conn)
{
	int			r = PQflush(conn->db.pg);

	if (r < 0)
	{
		conn_fail(conn, PQerrorMessage(conn->db.pg));
		return -1;
	}
	if (r == 1 && !conn->db.write_wait)
	{
		conn->db.write_wait = 1;
		h2o_socket_notify_write(conn->db.sock, on_write);
	}
	return 0;
}

static void
on_write(h2o_socket_t *sock, const char *err)
{
	pbh_conn_t *conn = CONN_OF((pbh_dbconn_t *) sock->data);

	conn->db.write_wait = 0;
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
	int			progress = 0;

	if (conn_flush(conn) != 0)
		return;
	for (;;)
	{
		PGresult   *res;

		if (conn->db.state == PBH_DBCONN_STARTING ? conn->prepares_left == 0 :
			h2o_linklist_is_empty(&conn->inflight))
			break;
		if (PQisBusy(conn->db.pg))
			break;
		res = PQgetResult(conn->db.pg);
		if (res == NULL)
		{
			/* the end of one statement's results; twice in a row: nothing more */
			if (++nulls > 1)
				break;
			continue;
		}
		nulls = 0;
		progress = 1;
		if (conn->db.state == PBH_DBCONN_STARTING)
		{
			/* the session settings (-1), then each statement */
			int			stmt = pbh_nstmts() - conn->prepares_left;

			if (PQresultStatus(res) == PGRES_PIPELINE_SYNC)
			{
				if (--conn->prepares_left == 0)
					pbh_dbconn_ready(&conn->db);
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
				pbh_dbconn_log(&conn->db, name, PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
			}
			PQclear(res);
			continue;
		}
		else
		{
			pbh_job_t  *job = H2O_STRUCT_FROM_MEMBER(pbh_job_t, link, conn->inflight.next);

			if (PQresultStatus(res) == PGRES_PIPELINE_SYNC && job->lsn_after && !job->lsn_phase)
			{
				/* the job's transaction ended: its WAL position follows */
				PQclear(res);
				job->lsn_phase = 1;
				continue;
			}
			if (job->lsn_phase && PQresultStatus(res) == PGRES_TUPLES_OK)
			{
				if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
					job->lsn = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
				PQclear(res);
				continue;
			}
			if (job->lsn_phase && PQresultStatus(res) != PGRES_PIPELINE_SYNC)
			{
				PQclear(res);	/* no position: job->lsn stays 0 */
				continue;
			}
			if (PQresultStatus(res) == PGRES_PIPELINE_SYNC)
			{
				PQclear(res);
				job->db_ns += pbh_clock_ns() - job->sent_ns;
				h2o_linklist_unlink(&job->link);
				conn->ninflight--;
				job_finish(job);
				continue;
			}
			job_result(job, res);
			PQclear(res);
		}
	}
	if (conn->db.pg != NULL && PQstatus(conn->db.pg) == CONNECTION_BAD)
	{
		conn_fail(conn, PQerrorMessage(conn->db.pg));
		return;
	}
	/* an answer: the watchdog starts again, for what is still in flight */
	if (progress && h2o_timeout_is_linked(&conn->watchdog))
	{
		h2o_timeout_unlink(&conn->watchdog);
		if (conn->ninflight > 0)
			h2o_timeout_link(conn->db.thread->ctx.loop, &answer_timeout, &conn->watchdog);
	}
	if (CONN_READY(conn))
		conn_dispatch(conn);
}

/* jobs in flight and no answer for too long: the database is not there */
static void
on_watchdog(h2o_timeout_entry_t *entry)
{
	pbh_conn_t *conn = H2O_STRUCT_FROM_MEMBER(pbh_conn_t, watchdog, entry);
	char		why[64];

	if (!CONN_READY(conn) || conn->ninflight == 0)
		return;
	snprintf(why, sizeof(why), "no answer in %d ms", (int) answer_timeout.timeout);
	conn_fail(conn, why);
}

static void
on_read(h2o_socket_t *sock, const char *err)
{
	pbh_conn_t *conn = CONN_OF((pbh_dbconn_t *) sock->data);

	if (err != NULL)
	{
		conn_fail(conn, err);
		return;
	}
	if (PQconsumeInput(conn->db.pg) != 1)
	{
		conn_fail(conn, PQerrorMessage(conn->db.pg));
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
	job->lsn_phase = 0;
	job->lsn = 0;
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
		if (PQsendQueryPrepared(conn->db.pg, name, job->nparams[i], job->params[i],
								NULL, NULL, 0) != 1)
			goto broken;
	}
	if (PQpipelineSync(conn->db.pg) != 1)
		goto broken;
	job->sent = 1;
	if (job->lsn_after)
	{
		stmt_name(PBH_STMT_WRITE_LSN, name, sizeof(name));
		if (!conn->prepared[PBH_STMT_WRITE_LSN] ||
			PQsendQueryPrepared(conn->db.pg, name, 0, NULL, NULL, NULL, 0) != 1 ||
			PQpipelineSync(conn->db.pg) != 1)
			goto broken;
	}
	h2o_linklist_insert(&conn->inflight, &job->link);
	conn->ninflight++;
	PBH_COUNT(conn->db.thread->n_db_requests);
	job->sent_ns = pbh_clock_ns();
	if (!h2o_timeout_is_linked(&conn->watchdog))
		h2o_timeout_link(conn->db.thread->ctx.loop, &answer_timeout, &conn->watchdog);
	return conn_flush(conn);

broken:
	/* the job is not in flight yet: fail it with the connection */
	h2o_linklist_insert(&conn->inflight, &job->link);
	conn->ninflight++;
	conn_fail(conn, PQerrorMessage(conn->db.pg));
	return -1;
}

/* hand waiting jobs of its class to a connection with room */
static void
conn_dispatch(pbh_conn_t *conn)
{
	pbh_thread_t *t = conn->db.thread;
	h2o_linklist_t *waiting = &t->waiting[conn->cls];

	while (CONN_READY(conn) && conn->ninflight < pbh_config.pipeline_depth &&
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
	job->sent = 0;
	/* (a replica read that fails, even here for a full queue, goes to the primary) */
	job->on_replica = cls == PBH_POOL_REPLICA;
	for (int i = 0; i < pool_size(); i++)
	{
		pbh_conn_t *c = &t->conns[i];

		if (c->cls == cls && CONN_READY(c) && c->ninflight < pbh_config.pipeline_depth &&
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
		if (CONN_READY(&t->conns[i]) && t->conns[i].cls != PBH_POOL_REPLICA)
			return 1;
	return 0;
}

/*
 * Publish the thread's pool gauges for /metrics and /readyz, read by any
 * thread: called by the owner between two rounds of its loop.
 */
void
pbh_pool_publish(pbh_thread_t *t)
{
	int			ready[PBH_POOL_CLASSES] = {0},
				down[PBH_POOL_CLASSES] = {0};

	for (int i = 0; i < pool_size(); i++)
	{
		if (CONN_READY(&t->conns[i]))
			ready[t->conns[i].cls]++;
		else
			down[t->conns[i].cls]++;
	}
	for (int cls = 0; cls < PBH_POOL_CLASSES; cls++)
	{
		__atomic_store_n(&t->g_conn_ready[cls], ready[cls], __ATOMIC_RELAXED);
		__atomic_store_n(&t->g_conn_down[cls], down[cls], __ATOMIC_RELAXED);
		__atomic_store_n(&t->g_waiting[cls], t->nwaiting[cls], __ATOMIC_RELAXED);
	}
	__atomic_store_n(&t->g_inflight, t->inflight, __ATOMIC_RELAXED);
}

void
pbh_pool_init(pbh_thread_t *t)
{
	for (int cls = 0; cls < PBH_POOL_CLASSES; cls++)
		h2o_linklist_init_anchor(&t->waiting[cls]);
	h2o_timeout_init(t->ctx.loop, &t->retry_timeout, PBH_RECONNECT_TICK_MS);
	h2o_timeout_init(t->ctx.loop, &answer_timeout,
					 (uint64_t) pbh_config.statement_timeout + PBH_ANSWER_MARGIN_MS);
	t->conns = calloc(pool_size(), sizeof(pbh_conn_t));
	for (int i = 0; i < pool_size(); i++)
	{
		pbh_conn_t *c = &t->conns[i];
		char		name[32];

		c->cls = i < pbh_config.connections ? PBH_POOL_WRITE :
			i < pbh_config.connections + pbh_config.read_connections ? PBH_POOL_READ :
			PBH_POOL_REPLICA;
		snprintf(name, sizeof(name), "connection %d", i);
		/* pg_stat_activity tells the classes apart (unless the DSN names one) */
		pbh_dbconn_init(&c->db, t,
						c->cls == PBH_POOL_REPLICA ? pbh_config.replica_dsn : pbh_config.dsn,
						c->cls == PBH_POOL_REPLICA ? "pgbank-http replica" :
						c->cls == PBH_POOL_READ ? "pgbank-http read" : "pgbank-http",
						name, on_connected, on_down);
		c->prepared = calloc(pbh_nstmts(), 1);
		h2o_linklist_init_anchor(&c->inflight);
		c->watchdog.cb = on_watchdog;
		pbh_dbconn_start(&c->db);
	}
	pbh_replica_init(t);
}

void
pbh_pool_close(pbh_thread_t *t)
{
	pbh_replica_close(t);
	for (int i = 0; i < pool_size(); i++)
	{
		pbh_conn_t *c = &t->conns[i];

		if (h2o_timeout_is_linked(&c->watchdog))
			h2o_timeout_unlink(&c->watchdog);
		pbh_dbconn_stop(&c->db);
	}
}
