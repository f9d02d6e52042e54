/*-------------------------------------------------------------------------
 *
 * audit.c
 *		The one way to write an audit row.
 *
 * AuditWrite() appends a row to bank.audit_events in the caller's
 * transaction, so a rolled-back action leaves none and a committed one
 * exactly one.  It records who acted (the verified customer or API key of
 * the transaction, the current role and the session user), what they did to
 * which resource, and the request context set by bank.set_request_context().
 * Metadata never holds a secret or personal data: callers pass ids, codes
 * and reasons only.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "pgbank.h"

static PgbQuery q_audit = {
	"INSERT INTO bank.audit_events (actor_customer, api_key_id, acting_role, session_role,"
	" action, resource_type, resource_id, metadata, request_id, client_addr, user_agent)"
	" VALUES ($1, $2, $3, $4, $5, $6, $7, coalesce($8::jsonb, '{}'), $9, $10::inet, $11)",
	11, {INT8OID, INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	TEXTOID, TEXTOID, TEXTOID}
};

/*
 * Append an audit row.  p is the principal that acted (NULL: whoever the
 * caller is, without requiring a credential, e.g. a failed login by the
 * anonymous role); customer overrides the actor customer when non-zero
 * (a login, before any token exists).  metadata is a JSON object or NULL.
 * Must be called inside SPI_connect.
 */
void
AuditWrite(const Principal *p, int64 customer, const char *action,
		   const char *resource_type, const char *resource_id, const char *metadata)
{
	Datum		v[11];
	char		n[12] = "           ";
	int			i;
	const char *ctx;

	if (customer == 0 && p != NULL && p->kind == PRINCIPAL_CUSTOMER)
		customer = p->customer_id;
	v[0] = Int64GetDatum(customer);
	n[0] = customer ? ' ' : 'n';
	v[1] = Int64GetDatum(p ? p->api_key_id : 0);
	n[1] = (p && p->api_key_id) ? ' ' : 'n';
	v[2] = CStringGetTextDatum(GetUserNameFromId(GetUserId(), false));
	v[3] = CStringGetTextDatum(GetUserNameFromId(GetSessionUserId(), false));
	v[4] = CStringGetTextDatum(action);
	v[5] = CStringGetTextDatum(resource_type);
	if (resource_id)
		v[6] = CStringGetTextDatum(resource_id);
	else
		n[6] = 'n';
	if (metadata)
		v[7] = CStringGetTextDatum(metadata);
	else
		n[7] = 'n';
	for (i = 0; i < 3; i++)
	{
		ctx = AuthRequestField(i);
		if (ctx)
			v[8 + i] = CStringGetTextDatum(ctx);
		else
			n[8 + i] = 'n';
	}
	PgbExec(&q_audit, v, n, false, 0);
}
