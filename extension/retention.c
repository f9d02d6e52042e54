/*-------------------------------------------------------------------------
 *
 * retention.c
 *		Purging what is kept only for a while: ended sessions and old
 *		idempotency keys, old account events (the audit trail's own purge
 *		is in audit.c).
 *
 * Invariants:
 *	- A retention of 0 keeps everything: the purge does nothing.
 *	- The cutoff is the transaction's start less the retention; sessions
 *	  and idempotency keys are taken FOR UPDATE SKIP LOCKED, so their purge
 *	  never waits for (nor blocks for long) a transaction using a row: what
 *	  is skipped goes next time.  Account events are deleted outright (see
 *	  bank.purge_account_events).
 *	- Idempotent: a second run finds nothing more and writes nothing; a run
 *	  that removes something writes one audit row with the count and cutoff.
 *	- An idempotency key is released only from a settled transfer (not
 *	  pending, not held for review), all three columns (scope, key,
 *	  fingerprint) at once, through the engine (guard.c lets nothing else
 *	  touch them); the transfer itself stays whole.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"

#include "pgbank.h"

/* sessions ended (revoked, expired, idle) before the cutoff */
static PgbQuery q_purge_sessions = {
	"WITH ended AS ("
	"  SELECT id FROM bank.sessions"
	"  WHERE least(coalesce(revoked_at, 'infinity'), expires_at,"
	"   last_seen_at + $2 * interval '1 second') < $1"
	"  FOR UPDATE SKIP LOCKED),"
	" tokens AS (DELETE FROM bank.refresh_tokens r USING ended e"
	"  WHERE r.session_id = e.id RETURNING 1)"
	" SELECT coalesce(array_agg(id), '{}'), (SELECT count(*) FROM tokens) FROM ended",
	2, {TIMESTAMPTZOID, INT4OID}
};

static PgbQuery q_delete_sessions = {
	"DELETE FROM bank.sessions WHERE id = ANY ($1)",
	1, {INT8ARRAYOID}
};

static PgbQuery q_release_keys = {
	"UPDATE bank.transfers SET idempotency_scope = NULL, idempotency_key = NULL,"
	" fingerprint = NULL"
	" WHERE id IN (SELECT id FROM bank.transfers"
	"  WHERE idempotency_key IS NOT NULL AND created_at < $1"
	"  AND status NOT IN ('pending', 'held_for_review')"
	"  FOR NO KEY UPDATE SKIP LOCKED)",
	1, {TIMESTAMPTZOID}
};

/*
 * Start a purge of what is older than retention (seconds): false when the
 * retention is 0 (keep everything); else the cutoff, SPI connected.
 */
static bool
RetentionBegin(const char *function, int retention, Principal *who, TimestampTz *cutoff)
{
	AuthCaller(function, who);
	if (retention <= 0)
		return false;
	EngineRequireReadCommitted();
	*cutoff = GetCurrentTransactionStartTimestamp() - (TimestampTz) retention * USECS_PER_SEC;
	SPI_connect();
	return true;
}

/* end a purge: one audit row when it removed something */
static int64
RetentionEnd(const Principal *who, const char *action, const char *resource_type,
			 int64 removed, TimestampTz cutoff)
{
	if (removed > 0)
		AuditWrite(who, 0, action, resource_type, NULL,
				   psprintf("{\"removed\": " INT64_FORMAT ", \"cutoff\": \"%s\"}", removed,
							timestamptz_to_str(cutoff)));
	SPI_finish();
	return removed;
}

/*
 * bank.purge_sessions(): remove sessions that ended more than
 * pgbank.session_retention ago, with their refresh tokens.
 */
PG_FUNCTION_INFO_V1(pgbank_purge_sessions);
Datum
pgbank_purge_sessions(PG_FUNCTION_ARGS)
{
	Principal	who;
	Datum		v[2];
	bool		isnull;
	TimestampTz cutoff;

	if (!RetentionBegin("purge_sessions", pgb_session_retention, &who, &cutoff))
		PG_RETURN_INT64(0);
	v[0] = TimestampTzGetDatum(cutoff);
	v[1] = Int32GetDatum(pgb_idle_timeout);
	PgbExec(&q_purge_sessions, v, NULL, false, 0);
	v[0] = PgbGet(0, 1, &isnull);
	PG_RETURN_INT64(RetentionEnd(&who, "session.purge", "session",
								 PgbExec(&q_delete_sessions, v, NULL, false, 0), cutoff));
}

/*
 * bank.purge_idempotency_keys(): release the keys of settled transfers
 * created more than pgbank.idempotency_retention ago.
 */
PG_FUNCTION_INFO_V1(pgbank_purge_idempotency_keys);
Datum
pgbank_purge_idempotency_keys(PG_FUNCTION_ARGS)
{
	Principal	who;
	Datum		v[1];
	TimestampTz cutoff;

	if (!RetentionBegin("purge_idempotency_keys", pgb_idempotency_retention, &who, &cutoff))
		PG_RETURN_INT64(0);
	v[0] = TimestampTzGetDatum(cutoff);
	PG_RETURN_INT64(RetentionEnd(&who, "idempotency.purge", "transfer",
								 EngineExec(&q_release_keys, v, NULL), cutoff));
}

static PgbQuery q_purge_events = {
	"DELETE FROM bank.account_events WHERE occurred_at < $1",
	1, {TIMESTAMPTZOID}
};

/*
 * bank.purge_account_events(): remove account events that occurred more than
 * pgbank.event_retention ago.  The only update an event gets is its number,
 * given by a reader of its feed, so the delete may wait for a reader
 * numbering that feed (briefly: numbering is one statement), never for a
 * writer.  A feed's counter row stays, so the
 * numbers of later events go on from where they were (never reused).
 */
PG_FUNCTION_INFO_V1(pgbank_purge_account_events);
Datum
pgbank_purge_account_events(PG_FUNCTION_ARGS)
{
	Principal	who;
	Datum		v[1];
	TimestampTz cutoff;

	if (!RetentionBegin("purge_account_events", pgb_event_retention, &who, &cutoff))
		PG_RETURN_INT64(0);
	v[0] = TimestampTzGetDatum(cutoff);
	PG_RETURN_INT64(RetentionEnd(&who, "account_event.purge", "account_event",
								 PgbExec(&q_purge_events, v, NULL, false, 0), cutoff));
}
