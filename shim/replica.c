/*-------------------------------------------------------------------------
 *
 * replica.c
 *		Read-only routes on a streaming replica (--replica-dsn), with
 *		read-your-writes per subject: a customer (the token's sub) or an API
 *		key never reads data older than their own last write.
 *
 *		Writes.  A write request with a subject sends, after its Sync, one
 *		more statement in an implicit transaction of its own, in the same
 *		pipeline (no extra round trip):
 *
 *		  SELECT pg_current_wal_insert_lsn()
 *
 *		The backend runs it only after the write's commit returned, and a
 *		commit returns only once its commit record is inserted in the WAL;
 *		so the insert position is at or past the end of the commit record,
 *		whatever synchronous_commit says.  (pg_current_wal_lsn(), the write
 *		position, could be before it under synchronous_commit = off; either
 *		function inside the write's own transaction is before its commit
 *		record.)  That position goes into a shared table, subject -> LSN.
 *
 *		Reads.  Each thread asks the replica pg_last_wal_replay_lsn() every
 *		--replica-poll ms.  A read goes to the replica only when the answer
 *		is at or past its subject's LSN: replay advances only, so an answer
 *		is a lower bound for as long as the connection that gave it lives
 *		(the position is forgotten when a replica connection breaks).  A
 *		read with no subject (anonymous), and every read of a subject with
 *		no recorded write, may go there too.
 *
 *		Lag.  Each thread samples the primary's insert position (spaced by
 *		--replica-max-lag / 8).  The replica is usable while it has replayed
 *		the newest sample taken at least --replica-max-lag ago (or, before
 *		one is that old, the oldest), and its last poll answered within
 *		--replica-max-lag.  Otherwise reads go to the primary.
 *
 *		Failures.  A read the replica fails (any error, a lost connection,
 *		a conflict with recovery, a session or key it has not replayed yet)
 *		is sent again to the primary, which gives the answer: reads are
 *		safe to resend, and refusals the primary audits in a transaction of
 *		its own (auth.denied, which a hot standby cannot write) are audited.
 *		So the replica never causes a 5xx.
 *
 * Invariants:
 *	- The subject table is a fixed array of LSNs indexed by a hash of the
 *	  subject, shared by the threads: a write raises its slot with an
 *	  atomic max, a read loads it.  Two subjects sharing a slot only send
 *	  each other's reads to the primary sooner; no entry ever needs to be
 *	  removed, since an LSN the replica has replayed no longer matters.
 *	  No lock.
 *	- A write whose connection broke after it was sent may have committed
 *	  with no known position: until a primary sample sent after the loss
 *	  answers, and its position is put in the subject's slot, every thread
 *	  sends every read to the primary (a global counter).  Should a
 *	  thread's list of such writes be full, the slot is pinned (the
 *	  subject always reads from the primary; never wrong, only slower).
 *	- Everything else is the thread's own: its poll jobs, positions and
 *	  counters (read by /metrics with relaxed atomic loads).
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgbank_http.h"

#define SLOTS (1 << 18)			/* 2 MB, shared */
#define PINNED UINT64_MAX		/* the slot's subjects read from the primary */
#define SAMPLES 32				/* primary positions kept per thread */
#define DOUBTS 256				/* lost writes waiting for a position */

static uint64_t slots[SLOTS];

/* lost writes of every thread waiting for a primary position */
static int	in_doubt;

typedef struct st_pbh_poll_t
{
	pbh_job_t	job;
	h2o_mem_pool_t pool;
	int			busy;
	uint64_t	sent_at;		/* ms */
	uint64_t	seq;			/* the thread's primary polls sent before it */
} pbh_poll_t;

typedef struct st_pbh_sample_t
{
	uint64_t	at;				/* ms, when its poll was sent */
	uint64_t	lsn;
} pbh_sample_t;

typedef struct st_pbh_doubt_t
{
	uint32_t	slot;
	uint64_t	seq;			/* resolved by a primary poll sent after it */
} pbh_doubt_t;

typedef struct st_pbh_replica_t
{
	pbh_thread_t *thread;
	h2o_timeout_t tick_timeout;
	h2o_timeout_entry_t tick;
	pbh_poll_t	replay;			/* on the replica */
	pbh_poll_t	insert;			/* on the primary */
	uint64_t	primary_seq;	/* primary polls sent */
	/* the replica */
	uint64_t	replay_lsn;		/* 0: unknown */
	uint64_t	replay_at;		/* ms, when the poll that told it was sent */
	int			not_standby;	/* it answered NULL: not in recovery */
	int			usable;
	/* the primary */
	pbh_sample_t samples[SAMPLES];	/* a ring, oldest at first */
	int			first,
				nsamples;
	pbh_doubt_t doubts[DOUBTS];
	int			ndoubts;
	/* counters */
	uint64_t	n_replica;		/* reads answered by the replica */
	uint64_t	n_primary;		/* reads answered by the primary */
	uint64_t	n_resent;		/* reads the replica failed, sent to the primary */
} pbh_replica_t;

static uint32_t
slot_of(uint64_t subject)
{
	/* splitmix64's finaliser */
	subject ^= subject >> 30;
	subject *= 0xbf58476d1ce4e5b9ULL;
	subject ^= subject >> 27;
	subject *= 0x94d049bb133111ebULL;
	subject ^= subject >> 31;
	return (uint32_t) (subject & (SLOTS - 1));
}

static void
slot_raise(uint32_t slot, uint64_t lsn)
{
	uint64_t	old = __atomic_load_n(&slots[slot], __ATOMIC_RELAXED);

	while (old < lsn &&
		   !__atomic_compare_exchange_n(&slots[slot], &old, lsn, 1, __ATOMIC_RELEASE,
										__ATOMIC_RELAXED))
		;
}

/* ---------------------------------------------------------------------
 * Subjects
 * ---------------------------------------------------------------------
 */

/*
 * A customer's subject is its id (a verified token's sub, read once per
 * request in api.c: below 2^63, top bit clear); an API key's is the first
 * 8 bytes of its SHA-256 with the top bit set.
 */
uint64_t
pbh_replica_key_subject(const unsigned char *sha256)
{
	uint64_t	v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | sha256[i];
	return v | (UINT64_C(1) << 63);
}

/* ---------------------------------------------------------------------
 * Where a read goes
 * ---------------------------------------------------------------------
 */

/* the replica is usable: caught up to within --replica-max-lag, answering */
static void
replica_assess(pbh_replica_t *rs, uint64_t now)
{
	uint64_t	ref = 0;
	int			found = 0;
	uint64_t	lag = (uint64_t) pbh_config.replica_max_lag;

	/* the newest sample at least max-lag old, else the oldest */
	for (int i = rs->nsamples - 1; i >= 0; i--)
	{
		pbh_sample_t *s = &rs->samples[(rs->first + i) % SAMPLES];

		if (s->at + lag <= now)
		{
			ref = s->lsn;
			found = 1;
			break;
		}
	}
	if (!found && rs->nsamples > 0)
	{
		ref = rs->samples[rs->first].lsn;
		found = 1;
	}
	rs->usable = found && rs->replay_lsn != 0 && !rs->not_standby &&
		rs->replay_at + lag > now && rs->replay_lsn >= ref;
}

int
pbh_replica_eligible(pbh_thread_t *t, const pbh_job_t *job)
{
	pbh_replica_t *rs = t->replica;

	if (rs == NULL || !job->read_only || job->target != PBH_TARGET_ANY || !rs->usable ||
		__atomic_load_n(&in_doubt, __ATOMIC_ACQUIRE) > 0)
		return 0;
	if (job->subject != 0 && pbh_config.replica_ryw &&
		__atomic_load_n(&slots[slot_of(job->subject)], __ATOMIC_ACQUIRE) > rs->replay_lsn)
		return 0;
	return 1;
}

static void on_replay_done(pbh_job_t *job);
static void on_insert_done(pbh_job_t *job);

int
pbh_replica_job_end(pbh_job_t *job)
{
	pbh_replica_t *rs = job->thread->replica;

	if (rs == NULL || job->on_done == on_replay_done || job->on_done == on_insert_done)
		return 0;
	if (job->on_replica)
	{
		if (job->failed)
		{
			/* the primary answers instead (a read: safe to send again) */
			PBH_COUNT(rs->n_resent);
			job->target = PBH_TARGET_PRIMARY;
			job->failed = 0;
			job->conn_lost = 0;
			pbh_pool_submit(job);
			return 1;
		}
		if (job->nstmts > 1)	/* a request, not an API key's lookup */
			PBH_COUNT(rs->n_replica);
		return 0;
	}
	if (job->read_only)
	{
		if (job->nstmts > 1)
			PBH_COUNT(rs->n_primary);
		return 0;
	}
	if (job->lsn_after && job->subject != 0)
	{
		if (job->lsn != 0)
			slot_raise(slot_of(job->subject), job->lsn);
		else if (job->sent)
		{
			/* it may have committed: a position from a later primary poll */
			uint32_t	slot = slot_of(job->subject);

			if (rs->ndoubts < DOUBTS)
			{
				rs->doubts[rs->ndoubts].slot = slot;
				rs->doubts[rs->ndoubts].seq = rs->primary_seq;
				rs->ndoubts++;
				__atomic_add_fetch(&in_doubt, 1, __ATOMIC_RELEASE);
			}
			else
				slot_raise(slot, PINNED);
		}
	}
	return 0;
}

/* ---------------------------------------------------------------------
 * Polls
 * ---------------------------------------------------------------------
 */

static uint64_t
poll_lsn(pbh_poll_t *p, int *isnull)
{
	*isnull = p->job.value[0] == NULL;
	return *isnull ? 0 : strtoull(p->job.value[0], NULL, 10);
}

static void
on_replay_done(pbh_job_t *job)
{
	pbh_poll_t *p = (pbh_poll_t *) job;
	pbh_replica_t *rs = job->thread->replica;
	int			isnull;

	p->busy = 0;
	if (job->failed)
		rs->replay_lsn = 0;
	else
	{
		uint64_t	lsn = poll_lsn(p, &isnull);

		if (isnull && !rs->not_standby)
			fprintf(stderr, "pgbank-http: thread %d: the replica is not in recovery; "
					"reads stay on the primary\n", rs->thread->index);
		rs->not_standby = isnull;
		rs->replay_lsn = lsn;
		rs->replay_at = p->sent_at;
	}
	h2o_mem_clear_pool(&p->pool);
	replica_assess(rs, h2o_now(rs->thread->ctx.loop));
}

static void
on_insert_done(pbh_job_t *job)
{
	pbh_poll_t *p = (pbh_poll_t *) job;
	pbh_replica_t *rs = job->thread->replica;
	int			isnull,
				kept = 0;
	uint64_t	lsn;

	p->busy = 0;
	if (job->failed || (lsn = poll_lsn(p, &isnull)) == 0)
	{
		h2o_mem_clear_pool(&p->pool);
		return;
	}
	h2o_mem_clear_pool(&p->pool);
	/* lost writes before this poll was sent: now at or before lsn */
	for (int i = 0; i < rs->ndoubts; i++)
	{
		if (rs->doubts[i].seq < p->seq)
		{
			slot_raise(rs->doubts[i].slot, lsn);
			__atomic_sub_fetch(&in_doubt, 1, __ATOMIC_RELEASE);
		}
		else
			rs->doubts[kept++] = rs->doubts[i];
	}
	rs->ndoubts = kept;
	if (rs->nsamples == 0 ||
		rs->samples[(rs->first + rs->nsamples - 1) % SAMPLES].at +
		(uint64_t) pbh_config.replica_max_lag / 8 <= p->sent_at)
	{
		if (rs->nsamples == SAMPLES)
		{
			rs->first = (rs->first + 1) % SAMPLES;
			rs->nsamples--;
		}
		rs->samples[(rs->first + rs->nsamples) % SAMPLES].at = p->sent_at;
		rs->samples[(rs->first + rs->nsamples) % SAMPLES].lsn = lsn;
		rs->nsamples++;
	}
	replica_assess(rs, h2o_now(rs->thread->ctx.loop));
}

static void
poll_send(pbh_replica_t *rs, pbh_poll_t *p, int stmt, int target, uint64_t now)
{
	pbh_job_t  *job = &p->job;

	memset(job, 0, sizeof(*job));
	job->thread = rs->thread;
	job->read_only = 1;
	job->target = target;
	job->nstmts = 1;
	job->stmts[0] = stmt;
	job->pool = &p->pool;
	job->on_done = target == PBH_TARGET_REPLICA ? on_replay_done : on_insert_done;
	p->busy = 1;
	p->sent_at = now;
	if (target == PBH_TARGET_PRIMARY)
		p->seq = ++rs->primary_seq;
	pbh_pool_submit(job);
}

static void
on_tick(h2o_timeout_entry_t *entry)
{
	pbh_replica_t *rs = H2O_STRUCT_FROM_MEMBER(pbh_replica_t, tick, entry);
	uint64_t	now = h2o_now(rs->thread->ctx.loop);

	if (pbh_stopping)
		return;
	if (!rs->replay.busy)
		poll_send(rs, &rs->replay, PBH_STMT_REPLAY_LSN, PBH_TARGET_REPLICA, now);
	if (!rs->insert.busy &&
		(rs->ndoubts > 0 || rs->nsamples == 0 ||
		 rs->insert.sent_at + (uint64_t) pbh_config.replica_max_lag / 8 <= now))
		poll_send(rs, &rs->insert, PBH_STMT_WRITE_LSN, PBH_TARGET_PRIMARY, now);
	replica_assess(rs, now);
	h2o_timeout_link(rs->thread->ctx.loop, &rs->tick_timeout, &rs->tick);
}

void
pbh_replica_init(pbh_thread_t *t)
{
	pbh_replica_t *rs;

	if (pbh_config.replica_dsn == NULL)
		return;
	rs = calloc(1, sizeof(*rs));
	rs->thread = t;
	h2o_mem_init_pool(&rs->replay.pool);
	h2o_mem_init_pool(&rs->insert.pool);
	h2o_timeout_init(t->ctx.loop, &rs->tick_timeout, pbh_config.replica_poll);
	rs->tick.cb = on_tick;
	t->replica = rs;
	h2o_timeout_link(t->ctx.loop, &rs->tick_timeout, &rs->tick);
}

/*
 * A replica connection broke: the server may have restarted, and replay
 * starts again from a restartpoint; forget the position until a poll on a
 * new connection tells it.
 */
void
pbh_replica_lost(pbh_thread_t *t)
{
	if (t->replica != NULL)
	{
		t->replica->replay_lsn = 0;
		t->replica->usable = 0;
	}
}

void
pbh_replica_close(pbh_thread_t *t)
{
	pbh_replica_t *rs = t->replica;

	if (rs != NULL && h2o_timeout_is_linked(&rs->tick))
		h2o_timeout_unlink(&rs->tick);
}

size_t
pbh_replica_metrics(char *buf, size_t len)
{
	uint64_t	r = 0,
				p = 0,
				s = 0;
	int			n;

	if (pbh_config.replica_dsn == NULL || len == 0)
		return 0;
	for (int i = 0; i < pbh_config.threads; i++)
	{
		pbh_replica_t *rs = __atomic_load_n(&pbh_threads[i].replica, __ATOMIC_ACQUIRE);

		if (rs == NULL)
			continue;
		r += __atomic_load_n(&rs->n_replica, __ATOMIC_RELAXED);
		p += __atomic_load_n(&rs->n_primary, __ATOMIC_RELAXED);
		s += __atomic_load_n(&rs->n_resent, __ATOMIC_RELAXED);
	}
	n = snprintf(buf, len,
				 "# TYPE pgbank_http_reads_total counter\n"
				 "pgbank_http_reads_total{served_by=\"replica\"} %llu\n"
				 "pgbank_http_reads_total{served_by=\"primary\"} %llu\n"
				 "# TYPE pgbank_http_replica_resent_total counter\n"
				 "pgbank_http_replica_resent_total %llu\n",
				 (unsigned long long) r, (unsigned long long) p,
				 (unsigned long long) s);
	return n < 0 ? 0 : (size_t) n < len ? (size_t) n : len - 1;
}
