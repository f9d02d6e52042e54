/*-------------------------------------------------------------------------
 *
 * pgbank.c
 *		Module entry point: the GUCs of pgbank, defined in one place.
 *
 * The library is loaded on first use.  Secrets (pgbank.jwt_secret,
 * pgbank.master_key, pgbank.card_key) need it in shared_preload_libraries:
 * only then are the settings defined, superuser-only, before any session can
 * read them, and only then does every backend remove card numbers from its
 * server log lines (vault.c) from its first statement on.  So does the
 * background worker of jobs (worker.c), registered here.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgtime.h"
#include "utils/guc.h"

#include "pgbank.h"

PG_MODULE_MAGIC;

int			pgb_max_open_accounts = 10;
int			pgb_hold_expiry = 7 * 24 * 3600;
int			pgb_review_expiry = 3 * 24 * 3600;
int			pgb_fold_every = 128;
bool		pgb_preloaded = false;
char	   *pgb_jwt_secret = NULL;
char	   *pgb_jwt_issuer = NULL;
char	   *pgb_jwt_audience = NULL;
int			pgb_jwt_clock_skew = 30;
int			pgb_access_token_ttl = 300;
int			pgb_refresh_token_ttl = 30 * 24 * 3600;
int			pgb_idle_timeout = 900;
int			pgb_bcrypt_cost = 12;
int			pgb_max_failed_logins = 10;
int			pgb_lockout_duration = 1800;
int			pgb_kyc_transfer_limit = 1000;
char	   *pgb_master_key = NULL;
char	   *pgb_card_key = NULL;
char	   *pgb_business_timezone = NULL;
char	   *pgb_worker_database = NULL;
int			pgb_job_interval = 60000;
int			pgb_job_timeout = 300000;
int			pgb_job_retention = 7 * 24 * 3600;
int			pgb_session_retention = 30 * 24 * 3600;
int			pgb_idempotency_retention = 0;
int			pgb_event_retention = 30 * 24 * 3600;

void		_PG_init(void);

/* pgbank.business_timezone must name a time zone PostgreSQL knows */
static bool
check_business_timezone(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || pg_tzset(*newval) == NULL)
	{
		GUC_check_errdetail("\"%s\" is not a time zone name.", *newval ? *newval : "");
		return false;
	}
	return true;
}

/*
 * An error caught by a savepoint or an EXCEPTION block rolls back what the
 * engine wrote in it: forget the engine state that went with it.
 */
static void
pgbank_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		EngineReset();
		IdentityAtEOSubXactAbort();
	}
	if (event == SUBXACT_EVENT_ABORT_SUB || event == SUBXACT_EVENT_COMMIT_SUB)
		EventsAtEOSubXact(event == SUBXACT_EVENT_COMMIT_SUB);
}

/* engine state never outlives a transaction, however it ends */
static void
pgbank_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_PRE_COMMIT)
	{
		EngineFoldQueued();
		EventsAtPreCommit(true);
	}
	if (event == XACT_EVENT_PRE_PREPARE)
		EventsAtPreCommit(false);
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT)
		JobsAtEOXact(event == XACT_EVENT_COMMIT);
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_COMMIT ||
			 event == XACT_EVENT_PARALLEL_ABORT || event == XACT_EVENT_PARALLEL_COMMIT ||
			 event == XACT_EVENT_PREPARE)
	{
		EngineReset();
		EngineForgetQueued();
		IdentityAtEOXact();
		AuditAtEOXact();
		EventsAtEOXact();
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
	DefineCustomIntVariable("pgbank.review_expiry",
							"How long a transfer or withdrawal held for review waits for a decision before bank.expire_holds() voids it.",
							NULL,
							&pgb_review_expiry,
							3 * 24 * 3600, 60, 366 * 24 * 3600,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pgbank.fold_every",
							"A lock-free leg whose id is a multiple of this folds its account when the account is not locked (0: never).",
							NULL,
							&pgb_fold_every,
							128, 0, 1000000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
	pgb_preloaded = process_shared_preload_libraries_in_progress;
	DefineCustomStringVariable("pgbank.jwt_secret",
							   "HMAC-SHA256 key of access tokens (at least 32 bytes); superuser-only.",
							   NULL,
							   &pgb_jwt_secret,
							   "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("pgbank.master_key",
							   "Key that wraps the per-customer data keys (at least 32 bytes); superuser-only.",
							   NULL,
							   &pgb_master_key,
							   "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("pgbank.card_key",
							   "Key that encrypts the card numbers of the card vault (at least 32 bytes); superuser-only.",
							   NULL,
							   &pgb_card_key,
							   "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("pgbank.business_timezone",
							   "Time zone of the bank's calendar: interest days, fee months, statements, daily trial balances.",
							   NULL,
							   &pgb_business_timezone,
							   "UTC",
							   PGC_SUSET, 0,
							   check_business_timezone, NULL, NULL);
	DefineCustomStringVariable("pgbank.jwt_issuer",
							   "The iss claim of access tokens issued and accepted.",
							   NULL,
							   &pgb_jwt_issuer,
							   "pgbank",
							   PGC_SUSET, 0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("pgbank.jwt_audience",
							   "The aud claim of access tokens issued and accepted.",
							   NULL,
							   &pgb_jwt_audience,
							   "pgbank-api",
							   PGC_SUSET, 0,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("pgbank.jwt_clock_skew",
							"Tolerance when checking the exp and nbf claims.",
							NULL,
							&pgb_jwt_clock_skew,
							30, 0, 300,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pgbank.access_token_ttl",
							"Lifetime of an access token.",
							NULL,
							&pgb_access_token_ttl,
							300, 30, 3600,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pgbank.refresh_token_ttl",
							"Longest life of a session, however active.",
							NULL,
							&pgb_refresh_token_ttl,
							30 * 24 * 3600, 300, 365 * 24 * 3600,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pgbank.idle_timeout",
							"A session not refreshed for this long ends.",
							NULL,
							&pgb_idle_timeout,
							900, 60, 7 * 24 * 3600,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pgbank.bcrypt_cost",
							"bcrypt cost (log2 rounds) of new password hashes.",
							NULL,
							&pgb_bcrypt_cost,
							12, 4, 15,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pgbank.max_failed_logins",
							"Failed logins in a row that lock a customer out.",
							NULL,
							&pgb_max_failed_logins,
							10, 1, 1000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pgbank.lockout_duration",
							"How long a lockout lasts.",
							NULL,
							&pgb_lockout_duration,
							1800, 1, 7 * 24 * 3600,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pgbank.kyc_transfer_limit",
							"Largest outgoing amount (in major units of its currency) a customer without KYC approval may move at once.",
							NULL,
							&pgb_kyc_transfer_limit,
							1000, 0, 1000000000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
	DefineCustomBoolVariable("pgbank.audit",
							 "Writes audit rows. Off only to measure what auditing costs (make bench).",
							 NULL,
							 &pgb_audit,
							 true,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("pgbank.audit_retention",
							"How long audit rows are kept before bank.purge_expired() may remove them; 0 keeps them for ever.",
							NULL,
							&pgb_audit_retention,
							0, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pgbank.job_interval",
							"Longest time the worker sleeps between looks at the job queue and schedule, and the period of housekeeping jobs without their own.",
							NULL,
							&pgb_job_interval,
							60000, 100, 24 * 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pgbank.job_timeout",
							"Longest run of one background job in the worker; 0: no limit.",
							NULL,
							&pgb_job_timeout,
							300000, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pgbank.job_retention",
							"How long finished background jobs stay in bank.job_queue; 0 keeps them for ever.",
							NULL,
							&pgb_job_retention,
							7 * 24 * 3600, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pgbank.session_retention",
							"How long ended sessions are kept before bank.purge_sessions() removes them; 0 keeps them for ever.",
							NULL,
							&pgb_session_retention,
							30 * 24 * 3600, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pgbank.idempotency_retention",
							"How long idempotency keys are kept before bank.purge_idempotency_keys() releases them; 0 keeps them for ever.",
							NULL,
							&pgb_idempotency_retention,
							0, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pgbank.event_retention",
							"How long account events are kept before bank.purge_account_events() removes them; 0 keeps them for ever.",
							NULL,
							&pgb_event_retention,
							30 * 24 * 3600, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	/* a postmaster setting can only be defined at postmaster start */
	if (process_shared_preload_libraries_in_progress)
	{
		DefineCustomStringVariable("pgbank.worker_database",
								   "Database whose background jobs the pgbank worker runs; empty: no worker.",
								   "Needs shared_preload_libraries.",
								   &pgb_worker_database,
								   "postgres",
								   PGC_POSTMASTER, 0,
								   NULL, NULL, NULL);
		WorkerRegister();
	}
	MarkGUCPrefixReserved("pgbank");
	VaultInstallLogFilter();
	RegisterXactCallback(pgbank_xact_callback, NULL);
	RegisterSubXactCallback(pgbank_subxact_callback, NULL);
}
