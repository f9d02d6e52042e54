/*-------------------------------------------------------------------------
 *
 * pgbank.c
 *		Module entry point: the GUCs of pgbank, defined in one place.
 *
 * The library is loaded on first use; nothing here needs
 * shared_preload_libraries.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "utils/guc.h"

#include "pgbank.h"

PG_MODULE_MAGIC;

int			pgb_max_open_accounts = 10;
int			pgb_hold_expiry = 7 * 24 * 3600;
int			pgb_fold_every = 128;

void		_PG_init(void);

/*
 * An error caught by a savepoint or an EXCEPTION block rolls back what the
 * engine wrote in it: forget the engine state that went with it.
 */
static void
pgbank_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		EngineReset();
}

/* engine state never outlives a transaction, however it ends */
static void
pgbank_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_PRE_COMMIT)
		EngineFoldQueued();
	else if (event == XACT_EVENT_ABORT || event == XACT_EVENT_COMMIT ||
			 event == XACT_EVENT_PARALLEL_ABORT || event == XACT_EVENT_PARALLEL_COMMIT ||
			 event == XACT_EVENT_PREPARE)
	{
		EngineReset();
		EngineForgetQueued();
	}
}

void
_PG_init(void)
{
	DefineCustomIntVariable("pgbank.max_open_accounts",
							"Most accounts a customer may have open at once.",
							NULL,
							&pgb_max_open_accounts,
							10, 1, 1000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pgbank.hold_expiry",
							"Lifetime of a hold created without expires_in.",
							NULL,
							&pgb_hold_expiry,
							7 * 24 * 3600, 60, 366 * 24 * 3600,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pgbank.fold_every",
							"A lock-free leg whose id is a multiple of this folds its account when the account is not locked (0: never).",
							NULL,
							&pgb_fold_every,
							128, 0, 1000000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
	MarkGUCPrefixReserved("pgbank");
	RegisterXactCallback(pgbank_xact_callback, NULL);
	RegisterSubXactCallback(pgbank_subxact_callback, NULL);
}
