/*-------------------------------------------------------------------------
 *
 * jobs.c
 *		The job queue: queuing, claiming, running and scheduling background
 *		jobs.  Plain SQL-callable functions: the worker (worker.c) only calls
 *		them, so everything works without it, called by an admin or cron.
 *
 * Invariants:
 *	- A job is claimed FOR UPDATE SKIP LOCKED and its row stays locked while
 *	  it runs: two runners never take the same job, and neither waits for the
 *	  other (specs/job_claim.spec).
 *	- The job's function runs in a subtransaction of the claiming
 *	  transaction, as the caller, with the job's outcome written after it in
 *	  the same transaction: its work and "done" commit together.  An error
 *	  rolls back the subtransaction only; the error's SQLSTATE and primary
 *	  message (never detail, hint, context or statement, which may carry
 *	  values) are recorded and the job is retried after its kind's backoff,
 *	  doubled for each earlier attempt, at most a day, until max_attempts;
 *	  then it is dead.  A crash before the commit leaves it queued: at least
 *	  once, so every job kind is idempotent.
 *	- Only job kinds in bank.job_kinds run (a superuser writes them), and
 *	  only the roles a kind names may queue it.
 *	- Scheduling locks schedule rows FOR UPDATE SKIP LOCKED and keys calendar
 *	  runs by their period, so repeated or concurrent calls queue each run
 *	  once.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/timeout.h"

#include "pgbank.h"

#define JOB_RESULT_CHARS 200
#define JOB_ERROR_CHARS 500

/* a job was queued in this transaction: wake the worker at commit */
static bool job_queued = false;

void
JobsAtEOXact(bool commit)
{
	if (commit && job_queued)
		WorkerWake();
	job_queued = false;
}

/* ---------------------------------------------------------------------
 * Queuing
 * ---------------------------------------------------------------------
 */

/* the kind's function and attempts, and whether role $2 may queue it */
static PgbQuery q_kind = {
	"SELECT k.function::oid, k.max_attempts,"
	" EXISTS (SELECT FROM pg_roles r WHERE r.rolname = ANY (k.enqueue_roles)"
	"  AND pg_has_role($2, r.oid, 'MEMBER'))"
	" FROM bank.job_kinds k WHERE k.name = $1",
	2, {TEXTOID, OIDOID}
};

static PgbQuery q_enqueue = {
	"INSERT INTO bank.job_queue (job, args, key, max_attempts, next_run_at, enqueued_by)"
	" VALUES ($1, $2, $3, $4, coalesce($5, now()), $6)"
	" ON CONFLICT (job, key) DO NOTHING RETURNING id",
	6, {TEXTOID, TEXTARRAYOID, TEXTOID, INT4OID, TIMESTAMPTZOID, NAMEOID}
};

static PgbQuery q_keyed_job = {
	"SELECT id, args = $3 FROM bank.job_queue WHERE job = $1 AND key = $2",
	3, {TEXTOID, TEXTOID, TEXTARRAYOID}
};

/*
 * The arguments of a job: as many as the function takes (fewer when it has
 * defaults), none NULL, each accepted by its type's input function.  Returns
 * the function's pg_proc row (released by the caller).  With canonical, also
 * the arguments as they are stored: a date as YYYY-MM-DD, whatever DateStyle
 * the caller's session has (so that keys and arguments compare as text, and
 * read back the same under any DateStyle); others as given.
 */
static HeapTuple
JobCheckArgs(Oid function, const char *job, ArrayType *args, ArrayType **canonical)
{
	HeapTuple	proc = SearchSysCache1(PROCOID, ObjectIdGetDatum(function));
	Form_pg_proc form;
	Datum	   *elems;
	bool	   *nulls;
	int			n,
				i;

	if (!HeapTupleIsValid(proc))
		ereport(ERROR,
				(errcode(ERRCODE_PGB_UNKNOWN_JOB),
				 errmsg("the function of job %s does not exist", job)));
	form = (Form_pg_proc) GETSTRUCT(proc);
	deconstruct_array(args, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	if (ARR_NDIM(args) > 1 || n > form->pronargs || n < form->pronargs - form->pronargdefaults)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_JOB_ARGUMENTS),
				 errmsg("job %s takes %d arguments, not %d", job, form->pronargs, n)));
	for (i = 0; i < n; i++)
	{
		Oid			typinput,
					typioparam;
		Datum		value;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_PGB_INVALID_JOB_ARGUMENTS),
					 errmsg("argument %d of job %s is null", i + 1, job)));
		getTypeInputInfo(form->proargtypes.values[i], &typinput, &typioparam);
		value = OidInputFunctionCall(typinput, TextDatumGetCString(elems[i]), typioparam, -1);
		if (form->proargtypes.values[i] == DATEOID)
		{
			DateADT		day = DatumGetDateADT(value);
			char		buf[MAXDATELEN + 1];
			struct pg_tm tm;

			if (DATE_NOT_FINITE(day))
				EncodeSpecialDate(day, buf);
			else
			{
				j2date(day + POSTGRES_EPOCH_JDATE, &tm.tm_year, &tm.tm_mon, &tm.tm_mday);
				EncodeDateOnly(&tm, USE_ISO_DATES, buf);
			}
			elems[i] = CStringGetTextDatum(buf);
		}
	}
	if (canonical != NULL)
		*canonical = n == 0 ? construct_empty_array(TEXTOID) :
			construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT);
	return proc;
}

/*
 * bank.enqueue_job(job, args, key, run_at): queue a job of a known kind
 * that the caller's role may queue; with a key, idempotently.
 */
PG_FUNCTION_INFO_V1(pgbank_enqueue_job);
Datum
pgbank_enqueue_job(PG_FUNCTION_ARGS)
{
	static const char *const names[] = {"job"};
	Principal	who;
	Datum		v[6];
	char		n[6] = "      ";
	char	   *job;
	ArrayType  *args;
	Oid			function;
	int			max_attempts;
	bool		isnull;
	int64		id;
	char		idtext[32];

	AuthCaller("enqueue_job", &who);
	PgbRequireArgs(fcinfo, 1, names);
	job = text_to_cstring(PG_GETARG_TEXT_PP(0));
	args = PG_ARGISNULL(1) ? construct_empty_array(TEXTOID) : PG_GETARG_ARRAYTYPE_P(1);
	if (!PG_ARGISNULL(2))
		PgbCheckLength("key", text_to_cstring(PG_GETARG_TEXT_PP(2)), 1, 255);

	SPI_connect();
	v[0] = PG_GETARG_DATUM(0);
	v[1] = ObjectIdGetDatum(GetUserId());
	if (PgbExec(&q_kind, v, NULL, true, 1) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_UNKNOWN_JOB),
				 errmsg("there is no job %s", job)));
	function = DatumGetObjectId(PgbGet(0, 1, &isnull));
	max_attempts = DatumGetInt32(PgbGet(0, 2, &isnull));
	if (!superuser() && !DatumGetBool(PgbGet(0, 3, &isnull)))
	{
		AuditDenied(&who, "enqueue_job", "42501");
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role %s may not queue job %s", GetUserNameFromId(GetUserId(), false), job)));
	}
	ReleaseSysCache(JobCheckArgs(function, job, args, &args));

	v[1] = PointerGetDatum(args);
	v[2] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	n[2] = PG_ARGISNULL(2) ? 'n' : ' ';
	v[3] = Int32GetDatum(max_attempts);
	v[4] = PG_ARGISNULL(3) ? (Datum) 0 : PG_GETARG_DATUM(3);
	n[4] = PG_ARGISNULL(3) ? 'n' : ' ';
	v[5] = DirectFunctionCall1(namein, CStringGetDatum(GetUserNameFromId(GetUserId(), false)));
	if (PgbExec(&q_enqueue, v, n, false, 1) == 1)
	{
		id = PgbGetInt64(0, 1);
		snprintf(idtext, sizeof(idtext), INT64_FORMAT, id);
		AuditWrite(&who, 0, "job.enqueue", "job", idtext,
				   psprintf("{\"job\": \"%s\"}", job));
		job_queued = true;
	}
	else
	{
		/* the key's job: the same one again, or a conflict */
		Datum		k[3] = {v[0], v[2], v[1]};

		if (PgbExec(&q_keyed_job, k, NULL, true, 1) != 1)
			elog(ERROR, "pgbank: the job with key of job %s vanished", job);
		if (!DatumGetBool(PgbGet(0, 2, &isnull)))
			ereport(ERROR,
					(errcode(ERRCODE_PGB_JOB_KEY_REUSED),
					 errmsg("job %s with this key was queued with other arguments", job)));
		id = PgbGetInt64(0, 1);
	}
	SPI_finish();
	PG_RETURN_INT64(id);
}

/* ---------------------------------------------------------------------
 * Running
 * ---------------------------------------------------------------------
 */

static PgbQuery q_claim = {
	"SELECT q.id, q.job, q.args, k.function::oid FROM bank.job_queue q"
	" JOIN bank.job_kinds k ON k.name = q.job"
	" WHERE q.status = 'queued' AND q.next_run_at <= $1"
	" ORDER BY q.next_run_at, q.id LIMIT 1 FOR UPDATE OF q SKIP LOCKED",
	1, {TIMESTAMPTZOID}
};

static PgbQuery q_done = {
	"UPDATE bank.job_queue SET status = 'done', attempts = attempts + 1, started_at = $2,"
	" finished_at = $3, result = $4, error_code = NULL, error_message = NULL"
	" WHERE id = $1",
	4, {INT8OID, TIMESTAMPTZOID, TIMESTAMPTZOID, TEXTOID}
};

static PgbQuery q_failed = {
	"UPDATE bank.job_queue q SET attempts = q.attempts + 1,"
	" status = CASE WHEN q.attempts + 1 >= q.max_attempts THEN 'dead' ELSE 'queued' END,"
	" next_run_at = CASE WHEN q.attempts + 1 >= q.max_attempts THEN q.next_run_at"
	"  ELSE $3 + least(k.backoff * power(2, least(q.attempts, 30)), interval '1 day') END,"
	" started_at = $2, finished_at = $3, result = NULL, error_code = $4, error_message = $5"
	" FROM bank.job_kinds k WHERE k.name = q.job AND q.id = $1"
	" RETURNING q.status",
	5, {INT8OID, TIMESTAMPTZOID, TIMESTAMPTZOID, BPCHAROID, TEXTOID}
};

/* s cut to at most max characters (not bytes) */
static char *
Truncated(const char *s, int max)
{
	return pnstrdup(s, pg_mbcharcliplen(s, strlen(s), max));
}

/*
 * SELECT * FROM <function>(CAST($1[1] AS <type>), ...): the function and
 * types by their qualified names from the catalog, the values parameters.
 */
static char *
JobCallSql(HeapTuple proc, int nargs)
{
	Form_pg_proc form = (Form_pg_proc) GETSTRUCT(proc);
	StringInfoData sql;
	int			i;

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT * FROM %s(",
					 quote_qualified_identifier(get_namespace_name(form->pronamespace),
												NameStr(form->proname)));
	for (i = 0; i < nargs; i++)
		appendStringInfo(&sql, "%sCAST($1[%d] AS %s)", i > 0 ? ", " : "", i + 1,
						 format_type_be_qualified(form->proargtypes.values[i]));
	appendStringInfoChar(&sql, ')');
	return sql.data;
}

/*
 * Run one job's function in a subtransaction, as the caller.  Returns true
 * when it succeeded (*result: its first value, or NULL); false with the
 * error's SQLSTATE and primary message when it failed, its work rolled back.
 */
static bool
JobRun(Oid function, const char *job, ArrayType *args, char **result,
	   char *code, char **message)
{
	PgbSubxact	sx;
	volatile bool ok = true;

	*result = NULL;
	PgbSubxactBegin(&sx);
	PG_TRY();
	{
		HeapTuple	proc = JobCheckArgs(function, job, args, NULL);
		char	   *sql = JobCallSql(proc, ArrayGetNItems(ARR_NDIM(args), ARR_DIMS(args)));
		Oid			argtype = TEXTARRAYOID;
		Datum		arg = PointerGetDatum(args);
		int			rc;

		ReleaseSysCache(proc);
		if (IsBackgroundWorker && pgb_job_timeout > 0)
			enable_timeout_after(STATEMENT_TIMEOUT, pgb_job_timeout);
		PgbRequirePinnedSearchPath();
		rc = SPI_execute_with_args(sql, 1, &argtype, &arg, NULL, false, 0);
		if (rc < 0)
			elog(ERROR, "pgbank: job %s failed to run (%s)", job, SPI_result_code_string(rc));
		if (IsBackgroundWorker)
			disable_timeout(STATEMENT_TIMEOUT, false);
		if (SPI_processed > 0 && SPI_tuptable != NULL)
		{
			char	   *value = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

			if (value != NULL)
			{
				MemoryContext old = MemoryContextSwitchTo(sx.cxt);

				*result = Truncated(value, JOB_RESULT_CHARS);
				MemoryContextSwitchTo(old);
			}
		}
		PgbSubxactCommit(&sx);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		if (IsBackgroundWorker)
			disable_timeout(STATEMENT_TIMEOUT, false);
		edata = PgbSubxactAbort(&sx);

		strlcpy(code, unpack_sql_state(edata->sqlerrcode), 6);
		*message = Truncated(edata->message ? edata->message : "", JOB_ERROR_CHARS);
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/*
 * bank.run_next_job(): claim the job due first, run it, record the outcome;
 * the job's id, or NULL when none is due.
 */
PG_FUNCTION_INFO_V1(pgbank_run_next_job);
Datum
pgbank_run_next_job(PG_FUNCTION_ARGS)
{
	Principal	who;
	Datum		v[5];
	char		n[5] = "     ";
	int64		id;
	char	   *job;
	ArrayType  *args;
	Oid			function;
	bool		isnull;
	TimestampTz started;
	char	   *result;
	char		code[6];
	char	   *message;

	AuthCaller("run_next_job", &who);
	EngineRequireReadCommitted();
	SPI_connect();
	v[0] = TimestampTzGetDatum(GetCurrentTimestamp());
	if (PgbExec(&q_claim, v, NULL, false, 1) != 1)
	{
		SPI_finish();
		PG_RETURN_NULL();
	}
	id = PgbGetInt64(0, 1);
	job = PgbGetText(0, 2);
	args = DatumGetArrayTypePCopy(PgbGet(0, 3, &isnull));
	function = DatumGetObjectId(PgbGet(0, 4, &isnull));

	started = GetCurrentTimestamp();
	v[0] = Int64GetDatum(id);
	v[1] = TimestampTzGetDatum(started);
	if (JobRun(function, job, args, &result, code, &message))
	{
		v[2] = TimestampTzGetDatum(GetCurrentTimestamp());
		v[3] = result ? CStringGetTextDatum(result) : (Datum) 0;
		n[3] = result ? ' ' : 'n';
		PgbExec(&q_done, v, n, false, 0);
	}
	else
	{
		char		idtext[32];

		v[2] = TimestampTzGetDatum(GetCurrentTimestamp());
		v[3] = DirectFunctionCall3(bpcharin, CStringGetDatum(code),
								   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
		v[4] = CStringGetTextDatum(message);
		/* the server log gets the SQLSTATE; the message is in bank.job_runs */
		ereport(LOG,
				(errmsg("pgbank: job " INT64_FORMAT " (%s) failed with SQLSTATE %s",
						id, job, code)));
		if (PgbExec(&q_failed, v, NULL, false, 0) == 1 &&
			strcmp(PgbGetText(0, 1), "dead") == 0)
		{
			snprintf(idtext, sizeof(idtext), INT64_FORMAT, id);
			AuditWrite(&who, 0, "job.dead", "job", idtext,
					   psprintf("{\"job\": \"%s\", \"code\": \"%s\"}", job, code));
		}
	}
	SPI_finish();
	PG_RETURN_INT64(id);
}

static PgbQuery q_retry = {
	"UPDATE bank.job_queue q SET status = 'queued', next_run_at = now(),"
	" max_attempts = q.attempts + k.max_attempts"
	" FROM bank.job_kinds k WHERE k.name = q.job AND q.id = $1 AND q.status = 'dead'"
	" RETURNING q.job",
	1, {INT8OID}
};

static PgbQuery q_job_exists = {
	"SELECT 1 FROM bank.job_queue WHERE id = $1",
	1, {INT8OID}
};

/*
 * Run q, which changes job id only while it is dead and returns its kind
 * (SPI connected): PB083 when there is no such job, PB084 when it is not
 * dead; idtext gets the id as text.
 */
static void
JobChangeDead(PgbQuery *q, int64 id, const char *done, char *idtext)
{
	Datum		v = Int64GetDatum(id);

	snprintf(idtext, 32, INT64_FORMAT, id);
	if (PgbExec(q, &v, NULL, false, 0) == 1)
		return;
	if (PgbExec(&q_job_exists, &v, NULL, true, 1) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_JOB_NOT_FOUND),
				 errmsg("job %s does not exist", idtext)));
	ereport(ERROR,
			(errcode(ERRCODE_PGB_JOB_NOT_DEAD),
			 errmsg("job %s is not dead", idtext),
			 errhint("Only a dead job can be %s.", done)));
}

/*
 * bank.retry_job(id): queue a dead job again, now, for as many attempts more
 * as its kind allows; its attempts so far and last error stay.
 */
PG_FUNCTION_INFO_V1(pgbank_retry_job);
Datum
pgbank_retry_job(PG_FUNCTION_ARGS)
{
	static const char *const names[] = {"id"};
	Principal	who;
	char		idtext[32];

	AuthCaller("retry_job", &who);
	PgbRequireArgs(fcinfo, 1, names);
	SPI_connect();
	JobChangeDead(&q_retry, PG_GETARG_INT64(0), "retried", idtext);
	AuditWrite(&who, 0, "job.retry", "job", idtext,
			   psprintf("{\"job\": \"%s\"}", PgbGetText(0, 1)));
	job_queued = true;
	SPI_finish();
	PG_RETURN_VOID();
}

static PgbQuery q_cancel = {
	"UPDATE bank.job_queue SET status = 'cancelled', finished_at = now()"
	" WHERE id = $1 AND status = 'dead' RETURNING job",
	1, {INT8OID}
};

/*
 * bank.cancel_job(id, reason): give a dead job up for good (it will not run
 * again; the purge removes it later like a done one).  Dead jobs are never
 * purged otherwise: what they were meant to do is not done, and something
 * may wait for it (bank.post_month for the month's accruals).
 */
PG_FUNCTION_INFO_V1(pgbank_cancel_job);
Datum
pgbank_cancel_job(PG_FUNCTION_ARGS)
{
	static const char *const names[] = {"id", "reason"};
	Principal	who;
	char		idtext[32];
	char	   *reason;

	AuthCaller("cancel_job", &who);
	PgbRequireArgs(fcinfo, 2, names);
	reason = PgbReasonArg(fcinfo, 1);
	SPI_connect();
	JobChangeDead(&q_cancel, PG_GETARG_INT64(0), "cancelled", idtext);
	AuditWrite(&who, 0, "job.cancel", "job", idtext,
			   psprintf("{\"job\": \"%s\", \"reason\": %s}", PgbGetText(0, 1),
						AuditJsonString(reason)));
	SPI_finish();
	PG_RETURN_VOID();
}

/* ---------------------------------------------------------------------
 * Scheduling
 * ---------------------------------------------------------------------
 */

/*
 * Done and cancelled jobs go, and dead ones without a key; a dead job with
 * a key (every calendar run: a day's accrual, a month's posting) waits for
 * an admin to retry or cancel it, as later runs may wait for it.
 */
static PgbQuery q_forget_finished = {
	"DELETE FROM bank.job_queue WHERE finished_at < $1"
	" AND (status IN ('done', 'cancelled') OR (status = 'dead' AND key IS NULL))",
	1, {TIMESTAMPTZOID}
};

/*
 * Housekeeping: one run per due schedule row, unless one is still queued;
 * the next one an interval after now.
 */
static PgbQuery q_schedule_every = {
	"WITH due AS ("
	"  SELECT s.job, coalesce(s.every, $2 * interval '1 millisecond') AS every"
	"  FROM bank.job_schedule s"
	"  WHERE s.enabled AND s.period IS NULL AND s.next_run_at <= $1"
	"  FOR UPDATE SKIP LOCKED),"
	" ins AS ("
	"  INSERT INTO bank.job_queue (job, max_attempts, enqueued_by, scheduled)"
	"  SELECT d.job, k.max_attempts, 'schedule', true"
	"  FROM due d JOIN bank.job_kinds k ON k.name = d.job"
	"  WHERE NOT EXISTS (SELECT FROM bank.job_queue q WHERE q.job = d.job AND q.status = 'queued')"
	"  RETURNING 1),"
	" upd AS ("
	"  UPDATE bank.job_schedule s SET next_run_at = $1 + d.every FROM due d"
	"  WHERE s.job = d.job RETURNING 1)"
	" SELECT (SELECT count(*) FROM ins)::integer, (SELECT count(*) FROM upd)",
	2, {TIMESTAMPTZOID, INT4OID}
};

/*
 * Calendar: every period from next_period up to the last one that ended at
 * least delay ago, keyed by its first day; next_period moves past them.
 * Days and months are pgbank.business_timezone's ($2), the calendar that
 * bank.accrue_interest and bank.post_month check (PB064), whatever the
 * session's TimeZone: a period is due delay after midnight there.
 */
static PgbQuery q_schedule_calendar = {
	"WITH s AS ("
	"  SELECT job, period, delay,"
	"   coalesce(next_period, date_trunc(period, $1 AT TIME ZONE $2)::date) AS first,"
	"   CASE period WHEN 'day' THEN interval '1 day' ELSE interval '1 month' END AS step"
	"  FROM bank.job_schedule"
	"  WHERE enabled AND period IS NOT NULL AND next_run_at <= $1"
	"  FOR UPDATE SKIP LOCKED),"
	" due AS ("
	"  SELECT s.*, (date_trunc(s.period, ($1 - s.delay) AT TIME ZONE $2) - s.step)::date AS last"
	"  FROM s),"
	" ins AS ("
	"  INSERT INTO bank.job_queue (job, args, key, max_attempts, enqueued_by, scheduled)"
	"  SELECT d.job, ARRAY[to_char(g, 'YYYY-MM-DD')], to_char(g, 'YYYY-MM-DD'), k.max_attempts,"
	"   'schedule', true"
	"  FROM due d JOIN bank.job_kinds k ON k.name = d.job,"
	"   generate_series(d.first::timestamp, d.last::timestamp, d.step) g"
	"  ON CONFLICT (job, key) DO NOTHING RETURNING 1),"
	" upd AS ("
	"  UPDATE bank.job_schedule j SET next_period = n.np,"
	"   next_run_at = ((n.np + d.step)::timestamp AT TIME ZONE $2) + d.delay"
	"  FROM due d CROSS JOIN LATERAL"
	"   (SELECT greatest(d.first, (d.last + d.step)::date) AS np) n"
	"  WHERE j.job = d.job RETURNING 1)"
	" SELECT (SELECT count(*) FROM ins)::integer, (SELECT count(*) FROM upd)",
	2, {TIMESTAMPTZOID, TEXTOID}
};

/* bank.schedule_jobs(): queue what is due; returns how many were queued */
PG_FUNCTION_INFO_V1(pgbank_schedule_jobs);
Datum
pgbank_schedule_jobs(PG_FUNCTION_ARGS)
{
	Principal	who;
	Datum		v[2];
	bool		isnull;
	int			queued = 0;
	TimestampTz now = GetCurrentTimestamp();

	AuthCaller("schedule_jobs", &who);
	EngineRequireReadCommitted();
	SPI_connect();
	if (pgb_job_retention > 0)
	{
		v[0] = TimestampTzGetDatum(now - (TimestampTz) pgb_job_retention * USECS_PER_SEC);
		PgbExec(&q_forget_finished, v, NULL, false, 0);
	}
	v[0] = TimestampTzGetDatum(now);
	v[1] = Int32GetDatum(pgb_job_interval);
	PgbExec(&q_schedule_every, v, NULL, false, 0);
	queued += DatumGetInt32(PgbGet(0, 1, &isnull));
	v[1] = ProductBusinessTimezone();
	PgbExec(&q_schedule_calendar, v, NULL, false, 0);
	queued += DatumGetInt32(PgbGet(0, 1, &isnull));
	SPI_finish();
	if (queued > 0)
		job_queued = true;
	PG_RETURN_INT32(queued);
}
