/*-------------------------------------------------------------------------
 *
 * spi.c
 *		Saved SPI plans and result helpers: the only way pgbank runs SQL.
 *
 * Every statement is a static PgbQuery: fixed SQL text with parameters,
 * prepared on first use with a generic plan and kept for the life of the
 * backend (PostgreSQL replans it when a table it uses changes).  Values are
 * always passed as parameters, never pasted into SQL text.  All SQL is
 * schema-qualified.
 *
 * Statements that must commit although the caller's transaction fails (a
 * declined transfer, a refused call) run in a background worker of their
 * own: PgbRunWorker, PgbWorkerBegin, PgbWorkerEnd.  The long-lived jobs
 * worker (worker.c) uses the same steps: PgbWorkerConnect, then
 * PgbWorkerXactBegin and PgbWorkerXactEnd around each transaction.
 *
 * A statement runs as bank_engine (the ledger's own role, which bypasses
 * row-level security) unless it is marked as_caller: then it runs as the
 * caller, under the caller's privileges and row-level security.  Reads on
 * behalf of a customer are as_caller, so PostgreSQL itself keeps them to the
 * customer's own rows.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "utils/guc.h"
#include "utils/resowner.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"
#include "utils/tuplestore.h"

#include "pgbank.h"

/*
 * Execute q with the given parameters (nulls as in SPI: ' ' or 'n', NULL for
 * none).  Returns the number of rows processed; results in SPI_tuptable.
 */
/*
 * Every function that runs SQL pins search_path (sql/pgbank.sql), and so do
 * the workers and the pre-commit folds; SQL run anywhere else would resolve
 * names through the caller's path.  Called before every statement the
 * extension runs: PgbExec and cursors here, and the few that build their
 * SQL text and call SPI directly.
 */
void
PgbRequirePinnedSearchPath(void)
{
	if (strcmp(namespace_search_path, PGB_SEARCH_PATH) != 0)
		elog(ERROR, "pgbank: SQL run with search_path \"%s\", not the pinned one",
			 namespace_search_path);
}

/*
 * Run as bank_engine unless the query is as_caller; returns the user and
 * security context to restore.  An error unwinds the switch with the
 * (sub)transaction, which restores the user it started with.
 */
static void
BecomeEngine(bool as_caller, Oid *save_user, int *save_sec)
{
	PgbRequirePinnedSearchPath();
	GetUserIdAndSecContext(save_user, save_sec);
	if (!as_caller)
		SetUserIdAndSecContext(AuthEngineRole(), *save_sec | SECURITY_LOCAL_USERID_CHANGE);
}

/* the query's saved plan, prepared on first use */
static SPIPlanPtr
PgbPlan(PgbQuery *q, int cursor_options)
{
	if (q->plan == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare_cursor(q->sql, q->nargs, q->argtypes, cursor_options);

		if (plan == NULL)
			elog(ERROR, "pgbank: SPI_prepare failed (%s) for: %s",
				 SPI_result_code_string(SPI_result), q->sql);
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "pgbank: SPI_keepplan failed");
		q->plan = plan;
	}
	return q->plan;
}

int
PgbExec(PgbQuery *q, Datum *values, const char *nulls, bool read_only, long count)
{
	int			rc;
	Oid			save_user;
	int			save_sec;

	BecomeEngine(q->as_caller, &save_user, &save_sec);

	/*
	 * Generic plans: every statement here is a keyed lookup or write, and a
	 * custom plan per call (chosen when statistics are skewed, e.g. by the
	 * settlement account's pending legs) costs more than it runs.
	 */
	rc = SPI_execute_plan(PgbPlan(q, CURSOR_OPT_GENERIC_PLAN), values, nulls, read_only, count);
	if (rc < 0)
		elog(ERROR, "pgbank: SPI_execute_plan failed (%s) for: %s",
			 SPI_result_code_string(rc), q->sql);
	SetUserIdAndSecContext(save_user, save_sec);
	return (int) SPI_processed;
}

/*
 * Read one row of a bank table by its bigint primary key without SQL: one
 * probe of the primary key's index under the active snapshot.  For the
 * lookups on every request's path (bank.authenticate's session check), where
 * an SPI statement's plan check, executor start and end cost about ten times
 * the probe.  It reads as the engine does (no row-level security, no
 * privilege check): only the extension's own code calls it, for rows its
 * SQL would read as bank_engine.  Fills values and nulls of the named
 * columns (by-reference values copied into the current memory context);
 * false when no row has that id.
 */
bool
PgbFetchById(const char *table, int64 id, int ncols, const char *const *cols,
			 Datum *values, bool *nulls)
{
	Oid			relid = get_relname_relid(table, get_namespace_oid("bank", false));
	Relation	rel;
	Oid			pkey;
	AttrNumber	idcol;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	TupleDesc	desc;

	if (!OidIsValid(relid))
		elog(ERROR, "pgbank: no table bank.%s", table);
	rel = table_open(relid, AccessShareLock);
	pkey = RelationGetPrimaryKeyIndex(rel);
	idcol = get_attnum(relid, "id");
	if (!OidIsValid(pkey) || idcol == InvalidAttrNumber ||
		TupleDescAttr(RelationGetDescr(rel), idcol - 1)->atttypid != INT8OID)
		elog(ERROR, "pgbank: bank.%s has no bigint primary key id", table);
	desc = RelationGetDescr(rel);
	/* systable_beginscan maps the heap's attribute number onto the index's */
	ScanKeyInit(&key, idcol, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(id));
	scan = systable_beginscan(rel, pkey, true, GetActiveSnapshot(), 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		for (int i = 0; i < ncols; i++)
		{
			AttrNumber	att = get_attnum(relid, cols[i]);
			Form_pg_attribute form;

			if (att <= 0)
				elog(ERROR, "pgbank: bank.%s has no column %s", table, cols[i]);
			form = TupleDescAttr(desc, att - 1);
			values[i] = heap_getattr(tuple, att, desc, &nulls[i]);
			if (!nulls[i])
				values[i] = datumCopy(values[i], form->attbyval, form->attlen);
		}
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return HeapTupleIsValid(tuple);
}

/*
 * Pin search_path around SQL the extension runs outside its own functions
 * (the folds at pre-commit), as a function's SET clause would: returns the
 * GUC nest level to hand to PgbUnpinSearchPath.  An error unwinds the pin
 * with the (sub)transaction.
 */
int
PgbPinSearchPath(void)
{
	int			level = NewGUCNestLevel();

	(void) set_config_option("search_path", PGB_SEARCH_PATH, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return level;
}

void
PgbUnpinSearchPath(int level)
{
	AtEOXact_GUC(true, level);
}

/*
 * Subtransactions: the one way the extension runs a step that may fail and
 * be rolled back alone (a batch item, a fee or interest posting, a job, a
 * fold at pre-commit).  PgbSubxactBegin starts one and stays in the
 * caller's memory context; PgbSubxactCommit releases it; PgbSubxactAbort,
 * in the PG_CATCH, copies the error into the caller's context, rolls the
 * subtransaction back and returns the error.  Both give the caller back its
 * memory context and resource owner.
 */
void
PgbSubxactBegin(PgbSubxact *sx)
{
	sx->cxt = CurrentMemoryContext;
	sx->owner = CurrentResourceOwner;
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(sx->cxt);
}

void
PgbSubxactCommit(const PgbSubxact *sx)
{
	ReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(sx->cxt);
	CurrentResourceOwner = sx->owner;
}

ErrorData *
PgbSubxactAbort(const PgbSubxact *sx)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(sx->cxt);
	edata = CopyErrorData();
	FlushErrorState();
	RollbackAndReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(sx->cxt);
	CurrentResourceOwner = sx->owner;
	return edata;
}

/*
 * Open a read-only cursor over a saved query, as bank_engine unless the
 * query runs as the caller (for reads too large to hold in memory).  Fetch
 * with PgbCursorFetch; close with SPI_cursor_close.
 */
Portal
PgbCursorOpen(PgbQuery *q, Datum *values, const char *nulls)
{
	Portal		portal;
	Oid			save_user;
	int			save_sec;

	BecomeEngine(q->as_caller, &save_user, &save_sec);
	portal = SPI_cursor_open(NULL, PgbPlan(q, 0), values, nulls, true);
	SetUserIdAndSecContext(save_user, save_sec);
	return portal;
}

/* the next count rows of a cursor into SPI_tuptable; returns how many */
int
PgbCursorFetch(Portal portal, long count, bool as_caller)
{
	Oid			save_user;
	int			save_sec;

	BecomeEngine(as_caller, &save_user, &save_sec);
	SPI_cursor_fetch(portal, true, count);
	SetUserIdAndSecContext(save_user, save_sec);
	return (int) SPI_processed;
}

Datum
PgbGet(int row, int col, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, isnull);
}

bool
PgbIsNull(int row, int col)
{
	bool		isnull;

	(void) PgbGet(row, col, &isnull);
	return isnull;
}

int64
PgbGetInt64(int row, int col)
{
	bool		isnull;
	Datum		d = PgbGet(row, col, &isnull);

	if (isnull)
		return 0;
	return DatumGetInt64(d);
}

/* text, varchar or bpchar column as a palloc'd C string (NULL for NULL) */
char *
PgbGetText(int row, int col)
{
	bool		isnull;
	Datum		d = PgbGet(row, col, &isnull);

	if (isnull)
		return NULL;
	return TextDatumGetCString(d);
}

/*
 * Copy every row of SPI_tuptable into the set-returning function's result.
 * The query's columns must match the function's result type.
 */
void
PgbMaterialize(FunctionCallInfo fcinfo)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		values[32];
	bool		nulls[32];
	uint64		i;

	if (rsinfo->setResult == NULL)
		InitMaterializedSRF(fcinfo, 0);
	Assert(rsinfo->setDesc->natts <= 32);
	if (SPI_tuptable->tupdesc->natts != rsinfo->setDesc->natts)
		elog(ERROR, "pgbank: query returns %d columns, function %d",
			 SPI_tuptable->tupdesc->natts, rsinfo->setDesc->natts);
	for (i = 0; i < SPI_processed; i++)
	{
		heap_deform_tuple(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, values, nulls);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
}

/*
 * Return row 0 of SPI_tuptable as the function's composite result, built in
 * the caller's memory context, then disconnect from SPI.
 */
Datum
PgbReturnRow(FunctionCallInfo fcinfo)
{
	TupleDesc	tupdesc;
	Datum		values[32];
	bool		nulls[32];
	HeapTuple	tuple;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "pgbank: function must return a composite type");
	if (SPI_processed < 1)
		elog(ERROR, "pgbank: no row to return");
	if (SPI_tuptable->tupdesc->natts != tupdesc->natts)
		elog(ERROR, "pgbank: query returns %d columns, function %d",
			 SPI_tuptable->tupdesc->natts, tupdesc->natts);
	heap_deform_tuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, values, nulls);
	tupdesc = BlessTupleDesc(tupdesc);
	tuple = heap_form_tuple(tupdesc, values, nulls);
	return PgbFinishWithTuple(tuple, tupdesc);
}

/*
 * Copy tuple into the caller's memory context as a composite Datum and
 * disconnect from SPI.
 */
Datum
PgbFinishWithTuple(HeapTuple tuple, TupleDesc tupdesc)
{
	Datum		result = PointerGetDatum(SPI_returntuple(tuple, tupdesc));

	SPI_finish();
	return result;
}

/* a text argument of min to max characters (not bytes), else PB023 */
void
PgbCheckLength(const char *what, const char *s, int min, int max)
{
	int			len = pg_mbstrlen(s);

	if (len < min || len > max)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_ARGUMENT),
				 errmsg("%s must be %d to %d characters long", what, min, max)));
}

/* a page size (limit, max, max_rows): 1 to 1000 rows, else PB023 */
void
PgbCheckPageSize(const char *what, int64 n)
{
	if (n < 1 || n > PGB_MAX_PAGE_ROWS)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_ARGUMENT),
				 errmsg("%s must be between 1 and %d", what, PGB_MAX_PAGE_ROWS)));
}

/* the reason argument of a staff action: 1 to 500 characters (PB022, PB023) */
char *
PgbReasonArg(FunctionCallInfo fcinfo, int arg)
{
	char	   *reason;

	if (PG_ARGISNULL(arg))
		ereport(ERROR,
				(errcode(ERRCODE_PGB_NULL_ARGUMENT), errmsg("reason must not be null")));
	reason = TextDatumGetCString(PG_GETARG_DATUM(arg));
	PgbCheckLength("reason", reason, 1, PGB_MAX_TEXT_CHARS);
	return reason;
}

/* NULL for any of the first nargs arguments: a named error (PB022) */
void
PgbRequireArgs(FunctionCallInfo fcinfo, int nargs, const char *const *names)
{
	int			i;

	for (i = 0; i < nargs; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_PGB_NULL_ARGUMENT),
					 errmsg("%s must not be null", names[i])));
}

/* a bytea holding len bytes of data */
bytea *
PgbBytea(const void *data, size_t len)
{
	bytea	   *b = palloc(VARHDRSZ + len);

	SET_VARSIZE(b, VARHDRSZ + len);
	memcpy(VARDATA(b), data, len);
	return b;
}

/* ---------------------------------------------------------------------
 * Statements in a transaction of their own, run by a background worker
 * ---------------------------------------------------------------------
 */

/*
 * Start the worker function (of this library) on seg, in this database, and
 * wait until it has stopped.  False when no worker slot was free or the
 * worker did not stop normally; the caller reads its result from seg.
 */
bool
PgbRunWorker(const char *function, const char *name, dsm_segment *seg)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "pgbank");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(worker.bgw_name, BGW_MAXLEN, "%s", name);
	snprintf(worker.bgw_type, BGW_MAXLEN, "%s", name);
	worker.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(seg));
	memcpy(worker.bgw_extra, &MyDatabaseId, sizeof(Oid));
	worker.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
		return false;
	return WaitForBackgroundWorkerShutdown(handle) == BGWH_STOPPED;
}

/*
 * In a background worker of this library: connect to a database (by oid, or
 * by name when database is InvalidOid) as the bootstrap superuser.  Signals
 * must be set up and unblocked before.
 */
void
PgbWorkerConnect(Oid database, const char *dbname)
{
	if (OidIsValid(database))
		BackgroundWorkerInitializeConnectionByOid(database, BOOTSTRAP_SUPERUSERID, 0);
	else
		BackgroundWorkerInitializeConnection(dbname, NULL, 0);
}

/*
 * In a connected worker: open a transaction with SPI connected, a pinned
 * search_path and short lock and statement timeouts (a lock another
 * transaction holds must not hang the worker, nor a waiting caller).
 */
void
PgbWorkerXactBegin(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
	SPI_execute("SET LOCAL search_path = " PGB_SEARCH_PATH, false, 0);
	SPI_execute("SET LOCAL lock_timeout = '5s'", false, 0);
	SPI_execute("SET LOCAL statement_timeout = '10s'", false, 0);
}

/* commit what PgbWorkerXactBegin opened */
void
PgbWorkerXactEnd(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * In a one-off worker started by PgbRunWorker: attach to the segment,
 * connect to the caller's database and open a transaction
 * (PgbWorkerXactBegin).  Returns the segment's address.
 */
void *
PgbWorkerBegin(Datum main_arg, dsm_segment **seg, const char *activity)
{
	Oid			database;

	BackgroundWorkerUnblockSignals();
	*seg = dsm_attach(DatumGetUInt32(main_arg));
	if (*seg == NULL)
		proc_exit(1);
	memcpy(&database, MyBgworkerEntry->bgw_extra, sizeof(Oid));
	PgbWorkerConnect(database, NULL);
	PgbWorkerXactBegin(activity);
	return dsm_segment_address(*seg);
}

/* commit, report success through *result, detach and exit */
void
PgbWorkerEnd(dsm_segment *seg, volatile int *result)
{
	PgbWorkerXactEnd();
	pg_write_barrier();
	*result = 1;
	dsm_detach(seg);
	proc_exit(0);
}
