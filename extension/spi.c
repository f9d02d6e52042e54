/*-------------------------------------------------------------------------
 *
 * spi.c
 *		Saved SPI plans and result helpers: the only way pgbank runs SQL.
 *
 * Every statement is a static PgbQuery: fixed SQL text with parameters,
 * prepared on first use with a generic plan and kept for the life of the
 * backend (PostgreSQL replans it when a table it uses changes).  Values are always passed as
 * parameters, never pasted into SQL text.  All SQL is schema-qualified.
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

#include "access/htup_details.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "utils/builtins.h"
#include "utils/tuplestore.h"

#include "pgbank.h"

/*
 * Execute q with the given parameters (nulls as in SPI: ' ' or 'n', NULL for
 * none).  Returns the number of rows processed; results in SPI_tuptable.
 */
int
PgbExec(PgbQuery *q, Datum *values, const char *nulls, bool read_only, long count)
{
	int			rc;
	Oid			save_user;
	int			save_sec;

	/*
	 * The engine's statements run as bank_engine; an error unwinds the switch
	 * with the (sub)transaction, which restores the user it started with.
	 */
	GetUserIdAndSecContext(&save_user, &save_sec);
	if (!q->as_caller)
		SetUserIdAndSecContext(AuthEngineRole(), save_sec | SECURITY_LOCAL_USERID_CHANGE);
	if (q->plan == NULL)
	{
		/*
		 * Generic plans: every statement here is a keyed lookup or write, and
		 * a custom plan per call (chosen when statistics are skewed, e.g. by
		 * the settlement account's pending legs) costs more than it runs.
		 */
		SPIPlanPtr	plan = SPI_prepare_cursor(q->sql, q->nargs, q->argtypes,
											  CURSOR_OPT_GENERIC_PLAN);

		if (plan == NULL)
			elog(ERROR, "pgbank: SPI_prepare failed (%s) for: %s",
				 SPI_result_code_string(SPI_result), q->sql);
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "pgbank: SPI_keepplan failed");
		q->plan = plan;
	}
	rc = SPI_execute_plan(q->plan, values, nulls, read_only, count);
	if (rc < 0)
		elog(ERROR, "pgbank: SPI_execute_plan failed (%s) for: %s",
			 SPI_result_code_string(rc), q->sql);
	SetUserIdAndSecContext(save_user, save_sec);
	return (int) SPI_processed;
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

	GetUserIdAndSecContext(&save_user, &save_sec);
	if (!q->as_caller)
		SetUserIdAndSecContext(AuthEngineRole(), save_sec | SECURITY_LOCAL_USERID_CHANGE);
	if (q->plan == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare_cursor(q->sql, q->nargs, q->argtypes, 0);

		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "pgbank: SPI_prepare failed (%s) for: %s",
				 SPI_result_code_string(SPI_result), q->sql);
		q->plan = plan;
	}
	portal = SPI_cursor_open(NULL, q->plan, values, nulls, true);
	SetUserIdAndSecContext(save_user, save_sec);
	return portal;
}

/* the next count rows of a cursor into SPI_tuptable; returns how many */
int
PgbCursorFetch(Portal portal, long count, bool as_caller)
{
	Oid			save_user;
	int			save_sec;

	GetUserIdAndSecContext(&save_user, &save_sec);
	if (!as_caller)
		SetUserIdAndSecContext(AuthEngineRole(), save_sec | SECURITY_LOCAL_USERID_CHANGE);
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
