/*-------------------------------------------------------------------------
 *
 * worker.c
 *		The background worker that runs pgbank's jobs.
 *
 * Registered at postmaster start when pgbank is in shared_preload_libraries
 * and pgbank.worker_database is not empty: one worker, for that database.
 * (A bank lives in one database: its roles are cluster-wide, and a launcher
 * finding every database with pgbank would have to connect to each of them
 * and hold a worker slot per database.  pg_cron makes the same choice.)
 *
 * The worker only schedules: it calls bank.schedule_jobs() and then
 * bank.run_next_job() until nothing is due, each call in a transaction of
 * its own (PgbWorkerXactBegin/End), so one job's failure or lock wait holds
 * up no other job's commit.  Then it sleeps on its latch until the next
 * due time (at most pgbank.job_interval), a job is queued (WorkerWake, at
 * the commit of bank.enqueue_job), SIGHUP (reload the configuration) or
 * SIGTERM (exit).  An error outside a job (a job's own error is caught and
 * recorded by bank.run_next_job) aborts the transaction, is logged, and the
 * worker sleeps a job interval before trying again.  Until the extension
 * is created in the database the worker just waits.  The postmaster
 * restarts it 10 seconds after it dies, and after a crash.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "pgbank.h"

#define WORKER_RESTART_SECONDS 10
#define WORKER_MAX_JOBS_PER_ROUND 1000

PGDLLEXPORT void pgbank_jobs_worker(Datum main_arg);

/* where sessions find the worker to wake it */
typedef struct WorkerShared
{
	pg_atomic_uint32 pid;		/* 0: no worker running */
	Oid			database;
} WorkerShared;

static WorkerShared *worker_shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
WorkerShmemRequest(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(WorkerShared)));
}

static void
WorkerShmemStartup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	worker_shared = ShmemInitStruct("pgbank worker", sizeof(WorkerShared), &found);
	if (!found)
	{
		pg_atomic_init_u32(&worker_shared->pid, 0);
		worker_shared->database = InvalidOid;
	}
	LWLockRelease(AddinShmemInitLock);
}

/* from _PG_init, at postmaster start */
void
WorkerRegister(void)
{
	BackgroundWorker worker;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = WorkerShmemRequest;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = WorkerShmemStartup;

	if (pgb_worker_database == NULL || pgb_worker_database[0] == '\0')
		return;
	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = WORKER_RESTART_SECONDS;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "pgbank");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "pgbank_jobs_worker");
	snprintf(worker.bgw_name, BGW_MAXLEN, "pgbank jobs worker");
	snprintf(worker.bgw_type, BGW_MAXLEN, "pgbank jobs worker");
	RegisterBackgroundWorker(&worker);
}

/*
 * Wake the worker of this database, if there is one (after the commit of a
 * transaction that queued a job).
 */
void
WorkerWake(void)
{
	pid_t		pid;
	PGPROC	   *proc;

	if (worker_shared == NULL || worker_shared->database != MyDatabaseId)
		return;
	pid = (pid_t) pg_atomic_read_u32(&worker_shared->pid);
	if (pid == 0)
		return;
	proc = BackendPidGetProc(pid);
	if (proc != NULL)
		SetLatch(&proc->procLatch);
}

static void
WorkerDetach(int code, Datum arg)
{
	pg_atomic_write_u32(&worker_shared->pid, 0);
}

/* SELECT <sql> in a transaction of its own; its first value as int8 (0 if NULL) */
static int64
WorkerCall(const char *sql, const char *activity, bool *isnull)
{
	int64		value = 0;

	PgbWorkerXactBegin(activity);
	PgbRequirePinnedSearchPath();
	if (SPI_execute(sql, false, 0) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "pgbank: the worker's %s failed", sql);
	value = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, isnull));
	PgbWorkerXactEnd();
	return *isnull ? 0 : value;
}

static bool
WorkerExtensionInstalled(void)
{
	bool		installed;

	StartTransactionCommand();
	installed = OidIsValid(get_extension_oid("pgbank", true));
	CommitTransactionCommand();
	return installed;
}

/*
 * One round: queue what is due, run jobs until none is due; returns how long
 * to sleep (ms): until the earliest queued job or schedule row is due, at
 * most a job interval.
 */
static long
WorkerRound(void)
{
	bool		isnull;
	int			i;
	int64		wait_ms;

	if (!WorkerExtensionInstalled())
		return pgb_job_interval;
	(void) WorkerCall("SELECT bank.schedule_jobs()::int8", "pgbank: scheduling jobs", &isnull);
	for (i = 0; i < WORKER_MAX_JOBS_PER_ROUND; i++)
	{
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		(void) WorkerCall("SELECT bank.run_next_job()", "pgbank: running a job", &isnull);
		if (isnull)
			break;
	}
	if (i == WORKER_MAX_JOBS_PER_ROUND)
		return 0;
	wait_ms = WorkerCall("SELECT (extract(epoch FROM least("
						 " (SELECT min(next_run_at) FROM bank.job_queue WHERE status = 'queued'),"
						 " (SELECT min(next_run_at) FROM bank.job_schedule WHERE enabled))"
						 " - clock_timestamp()) * 1000)::int8",
						 "pgbank: next due job", &isnull);
	if (isnull || wait_ms > pgb_job_interval)
		return pgb_job_interval;
	return wait_ms < 0 ? 0 : (long) wait_ms;
}

void
pgbank_jobs_worker(Datum main_arg)
{
	MemoryContext round_cxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	PgbWorkerConnect(InvalidOid, pgb_worker_database);
	pgstat_report_appname("pgbank jobs worker");

	worker_shared->database = MyDatabaseId;
	pg_atomic_write_u32(&worker_shared->pid, (uint32) MyProcPid);
	before_shmem_exit(WorkerDetach, (Datum) 0);

	round_cxt = AllocSetContextCreate(TopMemoryContext, "pgbank worker round",
									  ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		volatile long sleep_ms;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		MemoryContextSwitchTo(round_cxt);
		PG_TRY();
		{
			sleep_ms = WorkerRound();
		}
		PG_CATCH();
		{
			/* log it, clean up, and try again after a job interval */
			HOLD_INTERRUPTS();
			EmitErrorReport();
			AbortOutOfAnyTransaction();
			FlushErrorState();
			RESUME_INTERRUPTS();
			sleep_ms = pgb_job_interval;
		}
		PG_END_TRY();
		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(round_cxt);
		pgstat_report_activity(STATE_IDLE, NULL);

		if (sleep_ms > 0)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 sleep_ms, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
	}
}
