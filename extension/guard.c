/*-------------------------------------------------------------------------
 *
 * guard.c
 *		Triggers that keep the ledger's invariants whoever writes.
 *
 *	- bank.refuse_change: entries are append-only, accounts are never deleted,
 *	  currencies never change, and no ledger table can be truncated, even by
 *	  its owner.  A superuser can switch every trigger off (ALTER TABLE ...
 *	  DISABLE TRIGGER, or session_replication_role = replica, which leaves no
 *	  trace in the catalog); bank.check_ledger() is what finds the damage;
 *	- bank.guard_engine_columns: balances, pending_out, entries and pending
 *	  legs change only inside the posting engine (engine.c sets
 *	  engine_active around its own statements, which run with search_path
 *	  pinned to pg_catalog); so does an account's status, and closed is
 *	  final; a new account starts empty and
 *	  is never deleted, and its id, number, owner, type and currency never
 *	  change; a new transfer's accounts exist and hold its currency (in place
 *	  of foreign keys, which would share-lock hot account rows); a transfer's
 *	  defining columns never change (except that the idempotency key of a
 *	  settled transfer may be released: retention.c) and its status moves
 *	  only along the allowed transitions;
 *	- bank.check_transfer_legs (deferred to commit): a posted or reversed
 *	  transfer has exactly its two legs; any other transfer has none.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "pgbank.h"

static void
RequireTrigger(FunctionCallInfo fcinfo, const char *name)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s must be called as a trigger", name)));
}

PG_FUNCTION_INFO_V1(pgbank_refuse_change);
Datum
pgbank_refuse_change(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;

	RequireTrigger(fcinfo, "bank.refuse_change");
	/* bank.purge_expired removes expired audit rows, and only those */
	if (AuditPurging() && TRIGGER_FIRED_BY_DELETE(td->tg_event) &&
		TRIGGER_FIRED_FOR_ROW(td->tg_event) &&
		strcmp(RelationGetRelationName(td->tg_relation), "audit_events") == 0)
		return PointerGetDatum(td->tg_trigtuple);
	ereport(ERROR,
			(errcode(ERRCODE_PGB_IMMUTABLE),
			 errmsg("%s on %s is not allowed",
					TRIGGER_FIRED_BY_TRUNCATE(td->tg_event) ? "TRUNCATE" :
					TRIGGER_FIRED_BY_DELETE(td->tg_event) ? "DELETE" : "UPDATE",
					RelationGetRelationName(td->tg_relation)),
			 errdetail("The ledger is append-only; corrections are new transfers (bank.reverse).")));
	PG_RETURN_NULL();
}

static int64
GetInt64(HeapTuple tuple, TupleDesc desc, const char *col, bool *isnull)
{
	Datum		d = heap_getattr(tuple, SPI_fnumber(desc, col), desc, isnull);

	return *isnull ? 0 : DatumGetInt64(d);
}

static bool
ColumnChanged(HeapTuple a, HeapTuple b, TupleDesc desc, int attnum)
{
	Form_pg_attribute att = TupleDescAttr(desc, attnum - 1);
	bool		na,
				nb;
	Datum		da = heap_getattr(a, attnum, desc, &na);
	Datum		db = heap_getattr(b, attnum, desc, &nb);

	if (na || nb)
		return na != nb;
	return !datumIsEqual(da, db, att->attbyval, att->attlen);
}

static bool
TransitionAllowed(const char *from, const char *to)
{
	static const char *const allowed[][2] = {
		{"pending", "posted"}, {"pending", "voided"},
		{"posted", "reversed"},
		{"held_for_review", "pending"}, {"held_for_review", "posted"},
		{"held_for_review", "voided"}, {"held_for_review", "failed"},
	};
	int			i;

	for (i = 0; i < lengthof(allowed); i++)
		if (strcmp(allowed[i][0], from) == 0 && strcmp(allowed[i][1], to) == 0)
			return true;
	return false;
}

static void
GuardTransferUpdate(TriggerData *td)
{
	TupleDesc	desc = td->tg_relation->rd_att;
	HeapTuple	oldt = td->tg_trigtuple;
	HeapTuple	newt = td->tg_newtuple;
	int			i;
	char	   *from = SPI_getvalue(oldt, desc, SPI_fnumber(desc, "status"));
	char	   *to = SPI_getvalue(newt, desc, SPI_fnumber(desc, "status"));
	bool		key_released = false;

	for (i = 1; i <= desc->natts; i++)
	{
		const char *name = NameStr(TupleDescAttr(desc, i - 1)->attname);

		if (TupleDescAttr(desc, i - 1)->attisdropped)
			continue;
		if (strcmp(name, "status") == 0 || strcmp(name, "posted_amount") == 0 ||
			strcmp(name, "posted_at") == 0 || strcmp(name, "resolved_at") == 0)
			continue;
		if (!ColumnChanged(oldt, newt, desc, i))
			continue;

		/*
		 * An old settled transfer's idempotency key may be released (the
		 * table's check makes scope, key and fingerprint go together), never
		 * set or changed.
		 */
		if ((strcmp(name, "idempotency_scope") == 0 || strcmp(name, "idempotency_key") == 0 ||
			 strcmp(name, "fingerprint") == 0) &&
			strcmp(from, to) == 0 && strcmp(from, "pending") != 0 &&
			strcmp(from, "held_for_review") != 0)
		{
			bool		isnull;

			(void) heap_getattr(newt, i, desc, &isnull);
			if (isnull)
			{
				key_released = true;
				continue;
			}
		}
		ereport(ERROR,
				(errcode(ERRCODE_PGB_IMMUTABLE),
				 errmsg("column %s of a transfer cannot change", name)));
	}
	if (!(key_released && strcmp(from, to) == 0) && !TransitionAllowed(from, to))
		ereport(ERROR,
				(errcode(ERRCODE_PGB_INVALID_TRANSITION),
				 errmsg("a transfer cannot go from %s to %s", from, to)));
}

/*
 * A new transfer's accounts exist and hold its currency.  Read through
 * accounts' primary key with the active snapshot and no row lock: accounts
 * are never deleted and their id and currency never change, so what is true
 * now stays true.
 */
static void
CheckTransferAccounts(Relation transfers, HeapTuple tuple)
{
	TupleDesc	desc = RelationGetDescr(transfers);
	Oid			nsp = RelationGetNamespace(transfers);
	Oid			relid = get_relname_relid("accounts", nsp);
	Oid			indexid = get_relname_relid("accounts_pkey", nsp);
	char	   *currency = SPI_getvalue(tuple, desc, SPI_fnumber(desc, "currency"));
	const char *const cols[] = {"from_account", "to_account"};
	Relation	rel;
	TupleDesc	adesc;
	AttrNumber	id_att,
				currency_att;
	int			i;

	if (!OidIsValid(relid) || !OidIsValid(indexid))
		elog(ERROR, "pgbank: accounts or accounts_pkey is missing");
	rel = table_open(relid, AccessShareLock);
	adesc = RelationGetDescr(rel);
	id_att = SPI_fnumber(adesc, "id");
	currency_att = SPI_fnumber(adesc, "currency");
	for (i = 0; i < lengthof(cols); i++)
	{
		bool		isnull;
		int64		account = GetInt64(tuple, desc, cols[i], &isnull);
		ScanKeyData key;
		SysScanDesc scan;
		HeapTuple	acc;

		ScanKeyInit(&key, id_att, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(account));
		scan = systable_beginscan(rel, indexid, true, GetActiveSnapshot(), 1, &key);
		acc = systable_getnext(scan);
		if (!HeapTupleIsValid(acc))
			AccountNotFound(account);
		{
			BpChar	   *cur = DatumGetBpCharPP(heap_getattr(acc, currency_att, adesc, &isnull));

			if (VARSIZE_ANY_EXHDR(cur) != 3 || memcmp(VARDATA_ANY(cur), currency, 3) != 0)
				ereport(ERROR,
						(errcode(ERRCODE_PGB_CURRENCY_MISMATCH),
						 errmsg("account %lld does not hold %s", (long long) account, currency)));
		}
		systable_endscan(scan);
	}
	table_close(rel, AccessShareLock);
}

PG_FUNCTION_INFO_V1(pgbank_guard_engine_columns);
Datum
pgbank_guard_engine_columns(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	const char *rel;
	TupleDesc	desc;
	bool		isnull;

	RequireTrigger(fcinfo, "bank.guard_engine_columns");
	rel = RelationGetRelationName(td->tg_relation);
	desc = td->tg_relation->rd_att;

	if (strcmp(rel, "accounts") == 0)
	{
		static const char *const fixed[] = {"id", "number", "customer_id", "type", "currency"};
		int			i;

		if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
		{
			if (GetInt64(td->tg_trigtuple, desc, "balance", &isnull) != 0 ||
				GetInt64(td->tg_trigtuple, desc, "pending_out", &isnull) != 0)
				ereport(ERROR,
						(errcode(ERRCODE_PGB_IMMUTABLE),
						 errmsg("a new account must start with a zero balance")));
			return PointerGetDatum(td->tg_trigtuple);
		}
		for (i = 0; i < lengthof(fixed); i++)
			if (ColumnChanged(td->tg_trigtuple, td->tg_newtuple, desc,
							  SPI_fnumber(desc, fixed[i])))
				ereport(ERROR,
						(errcode(ERRCODE_PGB_IMMUTABLE),
						 errmsg("the %s of an account cannot change", fixed[i])));
		if (!engine_active &&
			(ColumnChanged(td->tg_trigtuple, td->tg_newtuple, desc, SPI_fnumber(desc, "balance")) ||
			 ColumnChanged(td->tg_trigtuple, td->tg_newtuple, desc, SPI_fnumber(desc, "pending_out"))))
			ereport(ERROR,
					(errcode(ERRCODE_PGB_IMMUTABLE),
					 errmsg("account balances change only through transfers")));
		if (!engine_active &&
			(ColumnChanged(td->tg_trigtuple, td->tg_newtuple, desc, SPI_fnumber(desc, "status")) ||
			 ColumnChanged(td->tg_trigtuple, td->tg_newtuple, desc, SPI_fnumber(desc, "closed_at"))))
			ereport(ERROR,
					(errcode(ERRCODE_PGB_IMMUTABLE),
					 errmsg("account status changes only through the account functions")));
		if (strcmp(SPI_getvalue(td->tg_trigtuple, desc, SPI_fnumber(desc, "status")), "closed") == 0 &&
			strcmp(SPI_getvalue(td->tg_newtuple, desc, SPI_fnumber(desc, "status")), "closed") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_PGB_IMMUTABLE),
					 errmsg("a closed account cannot be reopened")));
		return PointerGetDatum(td->tg_newtuple);
	}
	if (strcmp(rel, "transfers") == 0)
	{
		if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
		{
			if (!engine_active)
				ereport(ERROR,
						(errcode(ERRCODE_PGB_IMMUTABLE),
						 errmsg("transfers are created only through the ledger functions")));
			CheckTransferAccounts(td->tg_relation, td->tg_trigtuple);
			return PointerGetDatum(td->tg_trigtuple);
		}
		if (!TRIGGER_FIRED_BY_UPDATE(td->tg_event))
			ereport(ERROR,
					(errcode(ERRCODE_PGB_IMMUTABLE),
					 errmsg("DELETE on transfers is not allowed"),
					 errdetail("The ledger is append-only; corrections are new transfers (bank.reverse).")));
		if (!engine_active)
			ereport(ERROR,
					(errcode(ERRCODE_PGB_IMMUTABLE),
					 errmsg("transfers change only through the ledger functions")));
		GuardTransferUpdate(td);
		return PointerGetDatum(td->tg_newtuple);
	}
	/* entries and pending_legs: only the engine writes them */
	if (!engine_active || TRIGGER_FIRED_BY_UPDATE(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_PGB_IMMUTABLE),
				 errmsg("%s on %s is allowed only to the ledger engine",
						TRIGGER_FIRED_BY_INSERT(td->tg_event) ? "INSERT" :
						TRIGGER_FIRED_BY_DELETE(td->tg_event) ? "DELETE" : "UPDATE", rel)));
	return PointerGetDatum(TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : td->tg_trigtuple);
}

/*
 * The legs of a transfer in one of the leg tables, read through its
 * transfer_id index with the active snapshot: how many there are, and how
 * many are the expected debit and credit.
 */
typedef struct LegCount
{
	int64		transfer;
	int64		from_account;
	int64		to_account;
	int64		posted_amount;
	const char *currency;
	int			legs;
	int			debit;
	int			credit;
} LegCount;

static void
CountLegs(Oid nsp, const char *relname, const char *indexname, LegCount *c)
{
	Oid			relid = get_relname_relid(relname, nsp);
	Oid			indexid = get_relname_relid(indexname, nsp);
	Relation	rel;
	TupleDesc	desc;
	AttrNumber	transfer_att,
				account_att,
				currency_att,
				amount_att;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	leg;

	if (!OidIsValid(relid) || !OidIsValid(indexid))
		elog(ERROR, "pgbank: %s or %s is missing", relname, indexname);
	rel = table_open(relid, AccessShareLock);
	desc = RelationGetDescr(rel);
	transfer_att = SPI_fnumber(desc, "transfer_id");
	account_att = SPI_fnumber(desc, "account_id");
	currency_att = SPI_fnumber(desc, "currency");
	amount_att = SPI_fnumber(desc, "amount");
	ScanKeyInit(&key, transfer_att, BTEqualStrategyNumber, F_INT8EQ,
				Int64GetDatum(c->transfer));
	scan = systable_beginscan(rel, indexid, true, GetActiveSnapshot(), 1, &key);
	while (HeapTupleIsValid(leg = systable_getnext(scan)))
	{
		bool		isnull;
		int64		account = DatumGetInt64(heap_getattr(leg, account_att, desc, &isnull));
		int64		amount = DatumGetInt64(heap_getattr(leg, amount_att, desc, &isnull));
		BpChar	   *cur = DatumGetBpCharPP(heap_getattr(leg, currency_att, desc, &isnull));
		bool		same_currency = (VARSIZE_ANY_EXHDR(cur) == 3 &&
									 memcmp(VARDATA_ANY(cur), c->currency, 3) == 0);

		c->legs++;
		if (same_currency && account == c->from_account && amount == -c->posted_amount)
			c->debit++;
		if (same_currency && account == c->to_account && amount == c->posted_amount)
			c->credit++;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
}

/* this row version was replaced by a later update of this transaction */
static bool
UpdatedLaterByUs(HeapTuple tuple)
{
	HeapTupleHeader h = tuple->t_data;

	if (h->t_infomask & HEAP_XMAX_INVALID)
		return false;
	if (HeapTupleHeaderIsOnlyLocked(h))
		return false;
	return TransactionIdIsCurrentTransactionId(HeapTupleHeaderGetUpdateXid(h));
}

PG_FUNCTION_INFO_V1(pgbank_check_transfer_legs);
Datum
pgbank_check_transfer_legs(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	HeapTuple	tuple;
	TupleDesc	desc;
	LegCount	c = {0};
	char	   *status;
	bool		isnull;
	bool		moved;
	Oid			nsp;

	RequireTrigger(fcinfo, "bank.check_transfer_legs");
	desc = td->tg_relation->rd_att;
	tuple = TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : td->tg_trigtuple;

	/* a later version has an event of its own, which checks it */
	if (UpdatedLaterByUs(tuple))
		return PointerGetDatum(NULL);

	status = SPI_getvalue(tuple, desc, SPI_fnumber(desc, "status"));
	c.transfer = GetInt64(tuple, desc, "id", &isnull);
	c.from_account = GetInt64(tuple, desc, "from_account", &isnull);
	c.to_account = GetInt64(tuple, desc, "to_account", &isnull);
	c.posted_amount = GetInt64(tuple, desc, "posted_amount", &isnull);
	c.currency = SPI_getvalue(tuple, desc, SPI_fnumber(desc, "currency"));

	nsp = RelationGetNamespace(td->tg_relation);
	CountLegs(nsp, "entries", "entries_transfer_idx", &c);
	CountLegs(nsp, "pending_legs", "pending_legs_transfer_idx", &c);

	moved = (strcmp(status, "posted") == 0 || strcmp(status, "reversed") == 0);
	if (moved ? (c.debit != 1 || c.credit != 1 || c.legs != 2) : c.legs != 0)
		ereport(ERROR,
				(errcode(ERRCODE_PGB_UNBALANCED_TRANSFER),
				 errmsg("transfer %lld is %s but its legs do not match",
						(long long) c.transfer, status),
				 errdetail("It has %d legs: %d matching debit, %d matching credit.",
						   c.legs, c.debit, c.credit)));
	return PointerGetDatum(NULL);
}
