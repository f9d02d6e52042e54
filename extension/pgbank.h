/*-------------------------------------------------------------------------
 *
 * pgbank.h
 *		The internal API of the pgbank extension, module by module.
 *
 * Modules:
 *	pgbank.c		module entry point and GUCs
 *	spi.c			saved SPI plans, result helpers, one-off background workers
 *					(the only way we run SQL)
 *	money.c			exact amounts: numeric <-> minor units, currency exponents
 *	idempotency.c	keys, fingerprints, and durable recording of declines
 *	engine.c		the posting engine: locks, legs, folding, transfer rows
 *	account.c		the account API
 *	transfer.c		the money API
 *	report.c		balances, entries, statements, trial balance, ledger check
 *	guard.c			triggers that keep the invariants whoever writes
 *	identity.c		verified identities, principals, tokens, the engine role
 *	credentials.c	registration, logins, TOTP, refresh tokens, API keys, KYC
 *	pii.c			personal data: per-customer keys, masking, erasure, export
 *	audit.c			the one way to write an audit row
 *	batch.c			transfer batches: one subtransaction per item
 *	products.c		interest rates, fee schedule, daily accrual, monthly posting
 *	vault.c			the card vault, and card numbers kept out of the server log
 *	jobs.c			the job queue: queuing, claiming, running, scheduling
 *	worker.c		the background worker that runs the jobs
 *	risk.c			fraud screening, outgoing limits and counters, overdraft limits
 *	review.c		the review queue: list, approve, reject
 *	events.c		the per-customer account event feed (GET /v1/events)
 *
 * Locking rules (kept by engine.c, relied on everywhere):
 *	- An account row is locked FOR NO KEY UPDATE only by a leg that checks
 *	  funds (a debit of a customer account), by folding, and by account
 *	  maintenance; FOR UPDATE only by close_account.  Credits to customer
 *	  accounts take FOR KEY SHARE explicitly, which conflicts with neither;
 *	  legs of system accounts take no row lock.  Opportunistic folds happen
 *	  at pre-commit, so their locks last only through the commit.
 *	- Every function runs with search_path pinned to pg_catalog, and every
 *	  writer requires READ COMMITTED.
 *	- Within a transaction, accounts are locked before transfers, and several
 *	  accounts in ascending id order.
 *	- Same-key requests are serialised by a transaction-level advisory lock on
 *	  the key before anything else is locked.
 *	- A customer's risk counters row (bank.risk_counters) is locked (by the
 *	  UPDATE that counts a screened move in, or FOR NO KEY UPDATE to release
 *	  screened funds: void, reject, expiry, partial capture) after the key's
 *	  lock and before any account, so a customer's moves are screened one at
 *	  a time, from whichever of their accounts.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGBANK_H
#define PGBANK_H

#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "common/cryptohash.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "pgbank_errcodes.h"

#define PGB_MAX_ARGS 20
#define PGB_MAX_KEY_CHARS 255		/* idempotency keys */
#define PGB_MAX_TEXT_CHARS 500		/* descriptions and reasons */
#define PGB_MAX_AMOUNT INT64CONST(1000000000000000)	/* 10^15 minor units */

/* pgbank.c */
extern int	pgb_max_open_accounts;
extern int	pgb_hold_expiry;		/* seconds */
extern int	pgb_review_expiry;	/* seconds */
extern int	pgb_fold_every;
extern bool pgb_preloaded;
extern char *pgb_jwt_secret;
extern char *pgb_jwt_issuer;
extern char *pgb_jwt_audience;
extern int	pgb_jwt_clock_skew;
extern int	pgb_access_token_ttl;
extern int	pgb_refresh_token_ttl;
extern int	pgb_idle_timeout;
extern int	pgb_bcrypt_cost;
extern int	pgb_max_failed_logins;
extern int	pgb_lockout_duration;
extern int	pgb_kyc_transfer_limit;
extern char *pgb_master_key;
extern char *pgb_card_key;
extern char *pgb_business_timezone;
extern char *pgb_worker_database;
extern int	pgb_job_interval;		/* milliseconds */
extern int	pgb_job_timeout;		/* milliseconds */
extern int	pgb_job_retention;		/* seconds */
extern int	pgb_session_retention;	/* seconds */
extern int	pgb_idempotency_retention;	/* seconds */
extern int	pgb_event_retention;	/* seconds */

/* spi.c */

/* the search_path every function that runs SQL pins (sql/pgbank.sql) */
#define PGB_SEARCH_PATH "pg_catalog, pg_temp"

typedef struct PgbQuery
{
	const char *sql;
	int			nargs;
	Oid			argtypes[PGB_MAX_ARGS];
	SPIPlanPtr	plan;
	bool		as_caller;		/* run as the caller, under RLS (else bank_engine) */
} PgbQuery;

typedef struct PgbSubxact
{
	MemoryContext cxt;			/* the caller's */
	ResourceOwner owner;
} PgbSubxact;

extern void PgbSubxactBegin(PgbSubxact *sx);
extern void PgbSubxactCommit(const PgbSubxact *sx);
extern ErrorData *PgbSubxactAbort(const PgbSubxact *sx);
extern void PgbRequirePinnedSearchPath(void);
extern int	PgbPinSearchPath(void);
extern void PgbUnpinSearchPath(int level);
extern bool PgbFetchById(const char *table, int64 id, int ncols, const char *const *cols,
						 Datum *values, bool *nulls);
extern int	PgbExec(PgbQuery *q, Datum *values, const char *nulls, bool read_only,
					long count);
extern bytea *PgbBytea(const void *data, size_t len);
extern bool PgbRunWorker(const char *function, const char *name, struct dsm_segment *seg);
extern void PgbWorkerConnect(Oid database, const char *dbname);
extern void PgbWorkerXactBegin(const char *activity);
extern void PgbWorkerXactEnd(void);
extern void *PgbWorkerBegin(Datum main_arg, struct dsm_segment **seg, const char *activity);
extern void PgbWorkerEnd(struct dsm_segment *seg, volatile int *result) pg_attribute_noreturn();
extern Portal PgbCursorOpen(PgbQuery *q, Datum *values, const char *nulls);
extern int	PgbCursorFetch(Portal portal, long count, bool as_caller);
extern Datum PgbGet(int row, int col, bool *isnull);
extern int64 PgbGetInt64(int row, int col);
extern bool PgbIsNull(int row, int col);
extern char *PgbGetText(int row, int col);
extern void PgbMaterialize(FunctionCallInfo fcinfo);
extern Datum PgbReturnRow(FunctionCallInfo fcinfo);
extern Datum PgbFinishWithTuple(HeapTuple tuple, TupleDesc tupdesc);
extern void PgbRequireArgs(FunctionCallInfo fcinfo, int nargs, const char *const *names);
extern void PgbCheckLength(const char *what, const char *s, int min, int max);
#define PGB_MAX_PAGE_ROWS 1000
extern void PgbCheckPageSize(const char *what, int64 n);
extern char *PgbReasonArg(FunctionCallInfo fcinfo, int arg);

/* identity.c: who the caller is */
typedef enum PrincipalKind
{
	PRINCIPAL_NONE = 0,
	PRINCIPAL_CUSTOMER,			/* a verified customer token */
	PRINCIPAL_API_KEY,			/* a verified API key (its role's authority) */
	PRINCIPAL_STAFF				/* a staff role's own login, or a superuser */
} PrincipalKind;

typedef struct Principal
{
	PrincipalKind kind;
	Oid			role;			/* the current role */
	int64		customer_id;	/* PRINCIPAL_CUSTOMER */
	int64		session_id;		/* PRINCIPAL_CUSTOMER */
	int64		api_key_id;		/* PRINCIPAL_API_KEY */
} Principal;

/* money.c */
extern int	MoneyExponent(const char *currency);
extern int64 MoneySettlementAccount(const char *currency);
extern int64 MoneyToMinor(Numeric amount, int exponent);
extern Numeric MoneyFromMinor(int64 minor, int exponent);
extern Datum MoneyDatum(int64 minor, int exponent);
extern int64 MoneyCheckMinor(int64 minor);

/* idempotency.c */
typedef struct IdemKey
{
	char	   *scope;
	char	   *key;
	bytea	   *fingerprint;
} IdemKey;

extern void IdemPrepare(IdemKey *idem, const char *key, const Principal *who);
extern void IdemFingerprint(IdemKey *idem, const char *payload);
extern void IdemLock(const IdemKey *idem);
struct TransferRow;
struct AuditRecord;
extern int64 IdemRecordDecline(const struct TransferRow *t, const IdemKey *idem,
							   const char *metadata, const struct AuditRecord *audit);
extern int64 IdemRecordDeclineHere(const struct TransferRow *t, const IdemKey *idem,
								   const char *metadata, bool *inserted);

/* engine.c */
typedef struct TransferRow
{
	int64		id;
	char		kind[16];
	char		status[16];
	int64		from_account;
	int64		to_account;
	char		currency[4];
	int			exponent;
	int64		amount;
	int64		posted_amount;	/* 0 when NULL */
	char	   *description;
	Datum		metadata;		/* jsonb, never NULL */
	int64		reverses;		/* 0 when NULL */
	char	   *failure_code;
	char	   *failure_message;
	TimestampTz created_at;
	TimestampTz posted_at;		/* 0 when NULL */
	TimestampTz expires_at;		/* 0 when NULL */
	TimestampTz resolved_at;	/* 0 when NULL */
} TransferRow;

/*
 * A decline kept for the caller to record in its own transaction, after
 * rolling back the subtransaction it happened in (bank.transfer_batch): the
 * failed transfer as it would be recorded, its key and metadata, copied
 * into the memory context the struct was allocated in.
 */
typedef struct MoveDecline
{
	bool		declined;
	TransferRow t;
	IdemKey		idem;
	char	   *metadata;
} MoveDecline;

/* what a transfer request asks for, before any row exists */
typedef struct MoveRequest
{
	const char *kind;			/* transfer_kind */
	int64		debit_account;
	int64		credit_account;
	Numeric		amount;			/* NULL when amount_minor is set */
	int64		amount_minor;
	bool		hold;			/* reserve instead of posting */
	Interval   *expires_in;
	const char *description;
	Datum		metadata;
	int64		reverses;
	bool		allow_frozen_debit; /* staff reversal, bank fees */
	bool		bank_posting;	/* interest or fee: the bank's own system account
								 * is named, and no KYC check applies */
	const char *idempotency_key;
	bool		record_decline; /* set by the engine */
	bool		replayed;		/* set by the engine: the key's transfer returned */
	char	   *flagged_rules;	/* set by the engine: held for review by these
								 * rules (a JSON array), else NULL */
	Principal	who;			/* who asks (AuthCaller) */
	MoveDecline *decline_to;	/* set: a decline is kept here, not recorded, and a
								 * replayed decline is returned, not raised */
} MoveRequest;

/* an account locked FOR NO KEY UPDATE and folded by EngineLockFold */
typedef struct AccountState
{
	int64		base;			/* accounts.balance before folding */
	int64		folded;			/* sum of the legs just folded */
	int			folded_legs;	/* how many legs were folded */
	int64		posted;			/* base + folded: the posted balance */
	int64		pending_out;
	int64		overdraft;
	char	   *status;
	char	   *credit_status;	/* of the account credited, locked FOR KEY SHARE */
	char		currency[4];
} AccountState;

extern bool engine_active;

extern void EngineMove(MoveRequest *req, TransferRow *out);
extern void EngineCheckKyc(int64 account, int64 amount, int exponent,
						   const char *currency);
extern void EngineLoadTransfer(int64 id, bool lock, TransferRow *out);
extern Datum EngineTransferDatum(FunctionCallInfo fcinfo, TransferRow *t);
extern int	EngineExec(PgbQuery *q, Datum *values, const char *nulls);
extern bool EngineLockFold(int64 account, int64 credit_account, bool skip_locked,
						   AccountState *st);
extern void EngineSettle(int64 account, const AccountState *st, int64 delta,
						 int64 pending_delta);
extern void EngineMarkSettled(int64 account);
extern void EngineAssertSettled(void);
extern void EngineReset(void);
extern void EngineRequireReadCommitted(void);
extern bool EngineFold(int64 account, bool skip_locked);
extern void EngineMaybeFold(int64 account, int64 leg);
extern void EngineFoldQueued(void);
extern void EngineForgetQueued(void);
extern void EngineDecline(MoveRequest *req, TransferRow *t, const IdemKey *idem,
						  int sqlstate, const char *fmt,...) pg_attribute_printf(5, 6);
extern void EngineRaiseRecorded(const TransferRow *t);
extern int64 EngineRecordDecline(const Principal *who, MoveDecline *d);
extern Datum EngineBpchar(const char *s);

/* transfer.c */
extern bool TransferResolve(int64 id, bool capture, Numeric amount_arg, bool expiring,
							bool review, TransferRow *t);

/* risk.c: screening of an outgoing move of a customer account */
typedef struct RiskState
{
	int64		customer;
	char		currency[4];
	int64		day_total;		/* the UTC day's outgoing total, this move included */
	int64		month_total;	/* the UTC month's */
	int64		daily_limit;	/* -1: none */
	int64		monthly_limit;	/* -1: none */
	char	   *kyc_status;
	int64		payee;			/* an account of another customer, or 0 */
	bool		known_payee;	/* no payee, or a known one */
	int			nrecent;		/* times of the last moves, oldest first, this one last */
	Datum	   *recent_at;
	int			namounts;		/* amounts of the last accepted moves before this one */
	Datum	   *amounts;
	bool		review;			/* set by RiskScreen */
	char	   *rules_json;		/* set by RiskScreen: the review rules that fired */
} RiskState;

extern void RiskLock(RiskState *rs, int64 customer, const char *currency, int64 payee,
					 int64 amount);
extern void RiskScreen(RiskState *rs, MoveRequest *req, TransferRow *t, const IdemKey *idem);
extern void RiskRecord(RiskState *rs, MoveRequest *req, const TransferRow *t);
extern int64 RiskLockForRelease(int64 account);
extern void RiskRelease(int64 customer, const TransferRow *t, int64 amount);
extern void RiskPayeeApproved(const TransferRow *t);
/* review.c */
extern void ReviewClose(int64 transfer, const char *status, const char *reason);


extern void AuthCaller(const char *action, Principal *p);
extern int64 AuthCustomer(const char *action);
extern bool AuthActingAsStaff(void);
extern Oid	AuthEngineRole(void);
extern const char *AuthRequestField(int field);
extern const char *AuthSecret(const char *name, const char *value, int min_bytes);
extern char *AuthJwtSign(const char *claims_json);
extern char *AuthBase64Url(const uint8 *data, int len);
extern void AuthHmac(pg_cryptohash_type type, const uint8 *key, size_t keylen,
					 const uint8 *data, size_t len, uint8 *out, size_t outlen);
extern void AuthSha256(const uint8 *data, size_t len, uint8 *out);
extern bytea *AuthSha256Bytea(const char *s);
extern bool AuthEqual(const uint8 *a, const uint8 *b, size_t len);
extern void AuthRandom(uint8 *out, size_t len);
extern Datum PgcryptoCall(const char *fname, int nargs, const Oid *argtypes,
						  const Datum *args, bool *isnull);
extern void IdentityAtEOXact(void);
extern void IdentityAtEOSubXactAbort(void);

/* audit.c */
#define AUDIT_STRIPES 64

/* one audit row before it is chained; flat, so it can cross to a worker */
typedef struct AuditRecord
{
	int64		actor_customer; /* 0: none */
	int64		api_key_id;		/* 0: none */
	char		acting_role[NAMEDATALEN];
	char		session_role[NAMEDATALEN];
	char		action[64];
	char		resource_type[32];
	char		resource_id[128];	/* "": none */
	char		request_id[129];	/* "": none (128 bytes at most) */
	char		client_addr[64];	/* "": none */
	char		user_agent[513];	/* "": none (512 bytes at most) */
	const char *metadata;		/* a JSON object; NULL for {} */
} AuditRecord;

extern bool pgb_audit;
extern int	pgb_audit_retention;	/* seconds; 0 keeps everything */

extern void AuditWrite(const Principal *p, int64 customer, const char *action,
					   const char *resource_type, const char *resource_id,
					   const char *metadata);
extern void AuditRecordInit(AuditRecord *r, const Principal *p, int64 customer,
							const char *action, const char *resource_type,
							const char *resource_id, const char *metadata);
extern void AuditInsert(const AuditRecord *r);
extern void AuditWriteAutonomous(const AuditRecord *r);
extern void AuditDenied(const Principal *p, const char *function, const char *code);
extern bool AuditPurging(void);
extern void AuditAtEOXact(void);
extern char *AuditJsonString(const char *s);

/* credentials.c */
extern char *CustomerCheckedEmail(const char *email);

/* pii.c */
extern void PiiStore(int64 customer, const char *phone, const char *national_id,
					 const char *address);
extern Datum PiiWrap(bytea *plain, const char *what, int64 customer);
extern Datum PiiCrypt(const char *fname, Oid datatype, Datum data, Datum password,
					  int errcode_on_failure, const char *what, const char *key_setting);
extern bytea *PiiUnwrap(Datum wrapped, const char *what, int64 customer);

/* products.c */
extern Datum ProductBusinessTimezone(void);
extern int32 ProductBusinessToday(void);	/* a DateADT */

/* vault.c */
extern void VaultInstallLogFilter(void);
/* jobs.c, worker.c */
extern void JobsAtEOXact(bool commit);
extern void WorkerRegister(void);
extern void WorkerWake(void);

/* account.c */
extern void AccountNotFound(int64 id) pg_attribute_noreturn();
extern void CustomerNotFound(int64 id) pg_attribute_noreturn();
extern void AccountRequireVisible(int64 id);
extern int64 CustomerArg(const Principal *who, FunctionCallInfo fcinfo, int arg);
extern Datum AccountInfoDatum(FunctionCallInfo fcinfo, int64 account);

/* transfer.c */
extern void AuditTransfer(const Principal *who, const char *action, const TransferRow *t);
extern Datum TransferMetadata(Jsonb *jb);

/* events.c */
extern void EventsAtPreCommit(bool notify);
extern void EventsAtEOSubXact(bool commit);
extern void EventsAtEOXact(void);

#endif							/* PGBANK_H */
