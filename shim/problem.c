/*-------------------------------------------------------------------------
 *
 * problem.c
 *		Errors as application/problem+json (RFC 9457), and the one table
 *		that maps a SQLSTATE to an HTTP status and a stable code: the
 *		README's table of project SQLSTATEs, plus the standard classes a
 *		request can meet.
 *
 * Invariants:
 *	- A client sees a status, a stable code, a title and, for pgbank's own
 *	  errors (class PB, whose messages never carry secrets or SQL), the
 *	  extension's message.  Any other error shows only the table's title:
 *	  no SQL text, no constraint, type, table or function name, no stack.
 *	- A SQLSTATE the table does not know is a 500 "internal".
 *	- A request the database cannot take is a 503 decided here, once for
 *	  every caller (pbh_problem_unavailable): shutting_down once SIGTERM
 *	  came, else database_unavailable.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <string.h>

#include "pgbank_http.h"

static const pbh_error_t errors[] = {
	{"PB001", 422, "insufficient_funds", "Insufficient available funds", 1},
	{"PB002", 422, "account_frozen", "The account is frozen", 1},
	{"PB003", 422, "account_closed", "The account is closed", 1},
	{"PB004", 422, "currency_mismatch", "The accounts hold different currencies", 1},
	{"PB005", 409, "idempotency_conflict", "The idempotency key was used for another request", 1},
	{"PB006", 400, "invalid_amount", "Invalid amount", 1},
	{"PB007", 400, "amount_out_of_range", "Amount out of range", 1},
	{"PB008", 400, "unknown_currency", "Unknown currency", 1},
	{"PB009", 404, "account_not_found", "Account not found", 1},
	{"PB010", 404, "transfer_not_found", "Transfer not found", 1},
	{"PB011", 409, "too_many_accounts", "The customer has the most open accounts allowed", 1},
	{"PB012", 409, "account_not_empty", "The account balance is not zero", 1},
	{"PB013", 409, "open_holds", "The account has open holds", 1},
	{"PB014", 409, "hold_not_pending", "The hold is not pending", 1},
	{"PB015", 409, "hold_expired", "The hold has expired", 1},
	{"PB016", 422, "capture_exceeds_hold", "The capture exceeds the hold", 1},
	{"PB017", 409, "not_reversible", "The transfer cannot be reversed", 1},
	{"PB018", 400, "same_account", "From and to account are the same", 1},
	{"PB019", 400, "invalid_account_type", "Account type not allowed here", 1},
	{"PB020", 400, "invalid_idempotency_key", "Invalid idempotency key", 1},
	{"PB021", 404, "customer_not_found", "Customer not found", 1},
	{"PB022", 400, "missing_argument", "A required argument is missing", 1},
	{"PB023", 400, "invalid_argument", "Invalid argument", 1},
	{"PB024", 409, "email_taken", "The e-mail is already registered", 1},
	{"PB025", 409, "isolation_level", "Money moves only in READ COMMITTED transactions", 1},
	{"PB026", 400, "invalid_batch", "Invalid batch", 1},
	{"PB027", 413, "batch_too_large", "The batch has too many items", 1},
	{"PB030", 403, "immutable", "Write refused", 1},
	{"PB031", 409, "invalid_transition", "Transfer status transition not allowed", 1},
	{"PB032", 500, "internal", "Internal error", 0},
	{"PB040", 401, "invalid_token", "Invalid access token", 1},
	{"PB041", 401, "not_authenticated", "Not authenticated", 1},
	{"PB042", 403, "wrong_role", "The credential is not for this role", 1},
	{"PB043", 401, "invalid_api_key", "Invalid API key", 1},
	{"PB044", 409, "already_authenticated", "The transaction already has an identity", 1},
	{"PB045", 422, "weak_password", "The password does not meet the policy", 1},
	{"PB046", 403, "kyc_required", "KYC approval required", 1},
	{"PB047", 422, "invalid_mfa_code", "Invalid or already used code", 1},
	{"PB048", 409, "mfa_state", "MFA is not in the state this needs", 1},
	{"PB049", 410, "data_erased", "The customer's personal data was erased", 1},
	{"PB050", 404, "api_key_not_found", "API key not found", 1},
	{"PB052", 409, "audit_broken", "The audit trail does not verify; nothing was purged", 1},
	{"PB060", 422, "invalid_card_number", "Invalid card number", 1},
	{"PB061", 422, "invalid_card_expiry", "Invalid card expiry", 1},
	{"PB062", 422, "card_expired", "The card has expired", 1},
	{"PB063", 404, "card_not_found", "Card token not found", 1},
	{"PB064", 409, "period_not_ended", "The day or month has not ended", 1},
	{"PB065", 409, "period_closed", "The day or month was already run", 1},
	{"PB066", 409, "period_not_ready", "An interest accrual this waits for has not run yet", 1},
	{"PB070", 422, "risk_max_amount", "The amount is above the most allowed at once", 1},
	{"PB071", 422, "daily_limit", "The daily outgoing limit would be exceeded", 1},
	{"PB072", 422, "monthly_limit", "The monthly outgoing limit would be exceeded", 1},
	{"PB073", 422, "risk_velocity", "Too many transfers in a short time", 1},
	{"PB074", 422, "risk_new_payee", "The amount is above what a first transfer to a new payee may move", 1},
	{"PB075", 422, "risk_unusual_amount", "The amount is far above the customer's usual transfers", 1},
	{"PB076", 409, "review_decided", "The transfer is not awaiting review", 1},
	{"PB077", 409, "review_expired", "The review period has ended", 1},
	{"PB078", 409, "limit_below_balance", "The account is already beyond that limit", 1},
	{"PB090", 503, "decline_not_recorded", "The decline could not be recorded; retry with the same key", 1},
	/* standard SQLSTATEs: exact codes first, then classes (two characters) */
	{"40001", 503, "serialization_failure", "Too much contention; retry", 0},
	{"40P01", 503, "serialization_failure", "Too much contention; retry", 0},
	{"42501", 403, "forbidden", "Not allowed", 0},
	{"42883", 501, "not_implemented", "This route is not available on this database", 0},
	{"28P01", 403, "invalid_password", "Invalid password", 0},
	{"23505", 409, "conflict", "Conflict", 0},
	{"23514", 422, "constraint_violation", "The request breaks a rule of the ledger", 0},
	{"55P03", 503, "lock_timeout", "A lock was not available in time; retry", 0},
	{"57014", 503, "statement_timeout", "The request took too long; retry", 0},
	{"25006", 500, "internal", "Internal error", 0},
	{"22", 400, "invalid_input", "Invalid input value", 0},
	{"23", 409, "conflict", "Conflict", 0},
	{"53", 503, "unavailable", "The database is out of resources; retry", 0},
	{"57", 503, "unavailable", "The database is unavailable; retry", 0},
	{"08", 503, "unavailable", "The database is unavailable; retry", 0},
	{NULL, 500, "internal", "Internal error", 0},
};

const pbh_error_t *
pbh_error_for_sqlstate(const char *sqlstate)
{
	const pbh_error_t *e;

	if (sqlstate == NULL || strlen(sqlstate) != 5)
		return &errors[sizeof(errors) / sizeof(errors[0]) - 1];
	for (e = errors; e->sqlstate != NULL; e++)
		if (strlen(e->sqlstate) == 5 && strcmp(e->sqlstate, sqlstate) == 0)
			return e;
	for (e = errors; e->sqlstate != NULL; e++)
		if (strlen(e->sqlstate) == 2 && strncmp(e->sqlstate, sqlstate, 2) == 0)
			return e;
	return e;
}

/*
 * Answer a request that cannot be given to the database (a new one after
 * SIGTERM, one whose job the pool refused or lost, a stream whose first
 * fetch failed so).  Shutting down: Retry-After, and the connection ends
 * with the answer (HTTP/1.1: Connection: close), so the client's retry
 * goes to a server that is running.
 */
void
pbh_problem_unavailable(h2o_req_t *req)
{
	if (!pbh_stopping)
	{
		/* no connection of its class ready, or its connection broke under it */
		pbh_problem_send(req, 503, "database_unavailable", "The database is unavailable; retry", NULL);
		return;
	}
	/* SIGTERM came: requests in flight are answered, new ones are not started */
	req->http1_is_persistent = 0;
	h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("1"));
	pbh_problem_send(req, 503, "shutting_down", "The server is shutting down; retry on a new connection",
					 NULL);
}

int
pbh_sqlstate_retryable(const char *sqlstate)
{
	return strcmp(sqlstate, "40001") == 0 || strcmp(sqlstate, "40P01") == 0;
}

/* a problem+json body in pool (detail may be NULL); its length */
size_t
pbh_problem_body(h2o_mem_pool_t *pool, int status, const char *code, const char *title,
				 const char *detail, char **out)
{
	size_t		dlen = detail ? strlen(detail) : 0;
	size_t		cap = 256 + PBH_JSON_ESCAPED_MAX(strlen(code)) +
		PBH_JSON_ESCAPED_MAX(strlen(title)) + PBH_JSON_ESCAPED_MAX(dlen);
	char	   *body = h2o_mem_alloc_pool(pool, cap);
	size_t		n = 0;

	n += snprintf(body + n, cap - n, "{\"type\":\"urn:pgbank:problem:%s\",\"title\":", code);
	n += pbh_json_escape(body + n, title, strlen(title));
	n += snprintf(body + n, cap - n, ",\"status\":%d,\"code\":", status);
	n += pbh_json_escape(body + n, code, strlen(code));
	if (detail != NULL)
	{
		n += snprintf(body + n, cap - n, ",\"detail\":");
		n += pbh_json_escape(body + n, detail, dlen);
	}
	body[n++] = '}';
	*out = body;
	return n;
}

void
pbh_problem_send(h2o_req_t *req, int status, const char *code, const char *title,
				 const char *detail)
{
	char	   *body;
	size_t		n = pbh_problem_body(&req->pool, status, code, title, detail, &body);

	req->res.status = status;
	req->res.reason = "";
	h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
				   H2O_STRLIT("application/problem+json"));
	pbh_count_status(req, status);
	req->res.content_length = n;
	h2o_send_inline(req, body, n);
}

void
pbh_problem_error(h2o_req_t *req, const pbh_error_t *e, const char *message, int api_key)
{
	if (e->status == 401)
		h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL,
					   api_key ? "ApiKey realm=\"pgbank\"" :
					   "Bearer realm=\"pgbank\", error=\"invalid_token\"",
					   api_key ? 20 : 45);
	pbh_problem_send(req, e->status, e->code, e->title, e->show_message ? message : NULL);
}
