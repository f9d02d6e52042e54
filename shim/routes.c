/*-------------------------------------------------------------------------
 *
 * routes.c
 *		The route table: method and path pattern -> the SQL the request
 *		runs, the roles allowed, read-only or not, and where each argument
 *		comes from.  Every route is one statement, prepared on every
 *		connection, whose $n are the route's arguments in table order; it
 *		returns one JSON value (or, for logins, a status and a jsonb).
 *
 *		Rows become JSON with row_to_json and json_agg, not to_jsonb and
 *		jsonb_agg: the body is printed at once, in the function's column
 *		order, instead of built as jsonb (keys sorted, values converted) and
 *		printed again; on GET /v1/accounts that saved about 7 of the 28
 *		microseconds of the statement.  jsonb stays where a route removes a
 *		key (- 'status'), which json cannot.
 *
 * Invariants:
 *	- A route's SQL calls the extension's functions, which decide
 *	  everything about money and access.
 *	- An API key acts as its own role (bank.api_key_role, see api.c); a
 *	  route lists the roles it allows.
 *	- Arguments not in the route are refused (no mass assignment).
 *	- An amount is a decimal string of the currency's units or an integer
 *	  of minor units: AMOUNT() makes it two parameters, the decimal (NULL
 *	  for an integer) and the minor units (NULL for a decimal), and the SQL
 *	  takes coalesce(decimal, bank.account_amount(account, minor)), which
 *	  scales the integer exactly by the account's currency.
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "pgbank_http.h"

static const char *const account_types[] = {"checking", "savings", "investment", NULL};
static const char *const kyc_statuses[] = {"pending", "in_review", "approved", "rejected", NULL};
static const char *const key_roles[] = {"bank_teller", "bank_auditor", "bank_service", "bank_admin", NULL};

#define R_ANON PBH_ROLE_ANON
#define R_CUST PBH_ROLE_CUSTOMER
#define R_TELL PBH_ROLE_TELLER
#define R_AUDI PBH_ROLE_AUDITOR
#define R_SERV PBH_ROLE_SERVICE
#define R_ADMN PBH_ROLE_ADMIN
#define R_ALL (R_CUST | PBH_ROLES_STAFF)

#define PATH_ID(name) {name, PBH_ARG_PATH, PBH_T_ID, 1, NULL, 0}
#define BODY(name, type, req) {name, PBH_ARG_BODY, type, req, NULL, 0}
#define QUERY(name, type, req) {name, PBH_ARG_QUERY, type, req, NULL, 0}
#define IDEMPOTENCY_KEY {"Idempotency-Key", PBH_ARG_HEADER, PBH_T_TEXT, 1, NULL, 255}
/* two parameters: the decimal string, then the integer of minor units */
#define AMOUNT(name, req) {name, PBH_ARG_BODY, PBH_T_AMOUNT, req, NULL, 0}, \
	{name, PBH_ARG_BODY, PBH_T_MINOR, 0, NULL, 0}
/* PBH_EVENTS_FETCH_MAX as SQL text */
/* the amount of parameters $d (decimal) and $m (minor) in the account of $a */
#define AMOUNT_SQL(d, m, a) "coalesce($" d "::numeric, bank.account_amount(" a ", $" m "::bigint))"

/* the database role of each PBH_ROLE_* bit */
static const struct
{
	unsigned	bit;
	const char *name;
}			role_names[] = {
	{PBH_ROLE_ANON, "bank_anon"},
	{PBH_ROLE_CUSTOMER, "bank_customer"},
	{PBH_ROLE_TELLER, "bank_teller"},
	{PBH_ROLE_AUDITOR, "bank_auditor"},
	{PBH_ROLE_SERVICE, "bank_service"},
	{PBH_ROLE_ADMIN, "bank_admin"},
};

const char *
pbh_role_name(unsigned bit)
{
	for (size_t i = 0; i < sizeof(role_names) / sizeof(role_names[0]); i++)
		if (role_names[i].bit == bit)
			return role_names[i].name;
	return NULL;
}

/* 0 for a name that is no role of the API */
unsigned
pbh_role_bit(const char *name)
{
	for (size_t i = 0; i < sizeof(role_names) / sizeof(role_names[0]); i++)
		if (strcmp(role_names[i].name, name) == 0)
			return role_names[i].bit;
	return 0;
}

pbh_route_t pbh_routes[] = {
	/* customers and sessions */
	{"POST", "/v1/register", R_ANON, 0, PBH_RESULT_JSON, 201, NULL,
		"SELECT jsonb_build_object('customer_id', bank.register($1, $2, $3, $4, $5))",
		{BODY("email", PBH_T_TEXT, 1), BODY("password", PBH_T_TEXT, 1),
			BODY("first_name", PBH_T_TEXT, 1), BODY("last_name", PBH_T_TEXT, 1),
		BODY("phone", PBH_T_TEXT, 0)}},
	{"POST", "/v1/login", R_ANON, 0, PBH_RESULT_AUTH, 200, NULL,
		"SELECT r.status, CASE WHEN r.status = 'ok' THEN to_jsonb(r) - 'status' END"
		" FROM bank.login($1, $2, $3) r",
		{BODY("email", PBH_T_TEXT, 1), BODY("password", PBH_T_TEXT, 1), BODY("totp", PBH_T_TEXT, 0)}},
	{"POST", "/v1/refresh", R_ANON, 0, PBH_RESULT_AUTH, 200, NULL,
		"SELECT r.status, CASE WHEN r.status = 'ok' THEN to_jsonb(r) - 'status' END"
		" FROM bank.refresh($1) r",
		{BODY("refresh_token", PBH_T_TEXT, 1)}},
	{"POST", "/v1/logout", R_CUST, 0, PBH_RESULT_VOID, 204, NULL,
		"SELECT bank.logout()", {{0}}},
	{"POST", "/v1/mfa/enroll", R_CUST, 0, PBH_RESULT_JSON, 200, NULL,
		"SELECT row_to_json(r) FROM bank.mfa_enroll() r", {{0}}},
	{"POST", "/v1/mfa/confirm", R_CUST, 0, PBH_RESULT_VOID, 204, NULL,
		"SELECT bank.mfa_confirm($1)", {BODY("code", PBH_T_TEXT, 1)}},
	{"GET", "/v1/me", R_CUST, 1, PBH_RESULT_JSON, 200, "customer_not_found",
		"SELECT row_to_json(r) FROM bank.get_customer() r", {{0}}},
	{"GET", "/v1/customers/{id}", R_TELL | R_AUDI | R_SERV | R_ADMN, 1, PBH_RESULT_JSON, 200,
		"customer_not_found",
		"SELECT row_to_json(r) FROM bank.get_customer($1) r", {PATH_ID("id")}},
	{"PUT", "/v1/customers/{id}/kyc", R_TELL | R_ADMN, 0, PBH_RESULT_JSON, 200, NULL,
		"SELECT jsonb_build_object('kyc_status', bank.set_kyc_status($1, $2::bank.kyc_status, $3))",
		{PATH_ID("id"), {"status", PBH_ARG_BODY, PBH_T_ENUM, 1, kyc_statuses, 0},
		BODY("reason", PBH_T_TEXT, 1)}},

	/* accounts */
	{"GET", "/v1/accounts", R_ALL, 1, PBH_RESULT_JSON, 200, NULL,
		"SELECT json_build_object('data', coalesce(json_agg(row_to_json(r) ORDER BY r.id), '[]'),"
		" 'next_after', CASE WHEN count(*) = coalesce($4::int, 50) THEN max(r.id) END)"
		" FROM bank.list_accounts($1, $2::bank.account_type, $3, coalesce($4::int, 50)) r",
		{QUERY("customer_id", PBH_T_ID, 0),
			{"type", PBH_ARG_QUERY, PBH_T_ENUM, 0, account_types, 0},
		QUERY("after", PBH_T_ID, 0), QUERY("limit", PBH_T_INT, 0)}},
	{"POST", "/v1/accounts", R_CUST | R_TELL | R_ADMN, 0, PBH_RESULT_JSON, 201, NULL,
		"SELECT row_to_json(r) FROM bank.open_account($1::bank.account_type, $2, $3, $4) r",
		{{"type", PBH_ARG_BODY, PBH_T_ENUM, 1, account_types, 0}, BODY("name", PBH_T_TEXT, 1),
		BODY("currency", PBH_T_TEXT, 1), BODY("customer_id", PBH_T_ID, 0)}},
	{"GET", "/v1/accounts/{id}", R_ALL, 1, PBH_RESULT_JSON, 200, NULL,
		"SELECT row_to_json(r) FROM bank.get_account($1) r", {PATH_ID("id")}},
	{"PATCH", "/v1/accounts/{id}", R_CUST, 0, PBH_RESULT_JSON, 200, NULL,
		"SELECT row_to_json(r) FROM bank.rename_account($1, $2) r",
		{PATH_ID("id"), BODY("name", PBH_T_TEXT, 1)}},
	{"POST", "/v1/accounts/{id}/close", R_CUST, 0, PBH_RESULT_JSON, 200, NULL,
		"SELECT row_to_json(r) FROM bank.close_account($1) r", {PATH_ID("id")}},
	{"POST", "/v1/accounts/{id}/freeze", R_TELL | R_ADMN, 0, PBH_RESULT_JSON, 200, NULL,
		"SELECT row_to_json(r) FROM bank.freeze_account($1, $2) r",
		{PATH_ID("id"), BODY("reason", PBH_T_TEXT, 1)}},
	{"POST", "/v1/accounts/{id}/unfreeze", R_TELL | R_ADMN, 0, PBH_RESULT_JSON, 200, NULL,
		"SELECT row_to_json(r) FROM bank.unfreeze_account($1, $2) r",
		{PATH_ID("id"), BODY("reason", PBH_T_TEXT, 1)}},
	{"GET", "/v1/accounts/{id}/balance", R_ALL, 1, PBH_RESULT_JSON, 200, NULL,
		"SELECT row_to_json(r) FROM bank.balance($1, $2::timestamptz) r",
		{PATH_ID("id"), QUERY("as_of", PBH_T_TIME, 0)}},
	{"GET", "/v1/accounts/{id}/entries", R_ALL, 1, PBH_RESULT_JSON, 200, NULL,
		"SELECT jsonb_build_object('data', coalesce(jsonb_agg(to_jsonb(r) - 'ordinality' ORDER BY r.ordinality), '[]'),"
		" 'next_after', CASE WHEN count(*) = coalesce($3::int, 100)"
		" THEN (array_agg(r.cursor ORDER BY r.ordinality DESC))[1] END)"
		" FROM bank.entries($1, $2, coalesce($3::int, 100)) WITH ORDINALITY r",
		{PATH_ID("id"), QUERY("after", PBH_T_INT, 0), QUERY("limit", PBH_T_INT, 0)}},
	{"GET", "/v1/accounts/{id}/statement", R_ALL, 1, PBH_RESULT_JSON, 200, NULL,
		"SELECT jsonb_build_object('data', coalesce(jsonb_agg(to_jsonb(r) - 'ordinality' ORDER BY r.ordinality), '[]'))"
		" FROM bank.statement($1, $2::timestamptz, $3::timestamptz) WITH ORDINALITY r",
		{PATH_ID("id"), QUERY("from", PBH_T_TIME, 1), QUERY("to", PBH_T_TIME, 1)}},

	/* money movement */
	{"POST", "/v1/transfers", R_CUST, 0, PBH_RESULT_JSON, 201, NULL,
		"SELECT row_to_json(r) FROM bank.transfer($1, $2, " AMOUNT_SQL("3", "4", "$1") ", $5, $6,"
		" coalesce($7::jsonb, '{}')) r",
		{BODY("from_account", PBH_T_ID, 1), BODY("to_account", PBH_T_ID, 1),
			AMOUNT("amount", 1), IDEMPOTENCY_KEY, BODY("description", PBH_T_TEXT, 0),
		BODY("metadata", PBH_T_OBJECT, 0)}},

	/*
	 * A payment rail's batch (service): one result per item, in item order,
	 * 200 whatever the items' outcomes (see bank.transfer_batch).  Before
	 * /v1/transfers/{id}, which would match its path.
	 */
	{"POST", "/v1/transfers/batch", R_SERV, 0, PBH_RESULT_JSON, 200, NULL,
		"SELECT json_build_object('data', json_agg(row_to_json(r) ORDER BY r.item))"
		" FROM bank.transfer_batch($1::jsonb) r",
		{BODY("items", PBH_T_ARRAY, 1)}},
	{"GET", "/v1/transfers/{id}", R_ALL, 1, PBH_RESULT_JSON, 200, "transfer_not_found",
		"SELECT row_to_json(r) FROM bank.get_transfer($1) r", {PATH_ID("id")}},
	{"GET", "/v1/transfers", R_ALL, 1, PBH_RESULT_JSON, 200, NULL,
		"SELECT json_build_object('data', coalesce(json_agg(row_to_json(r) ORDER BY r.id DESC), '[]'),"
		" 'next_after', CASE WHEN count(*) = coalesce($3::int, 50) THEN min(r.id) END)"
		" FROM bank.list_transfers($1, $2, coalesce($3::int, 50)) r",
		{QUERY("account", PBH_T_ID, 1), QUERY("after", PBH_T_ID, 0), QUERY("limit", PBH_T_INT, 0)}},
	{"POST", "/v1/holds", R_CUST, 0, PBH_RESULT_JSON, 201, NULL,
		"SELECT row_to_json(r) FROM bank.hold($1, $2, " AMOUNT_SQL("3", "4", "$1") ", $5, $6::interval,"
		" $7, coalesce($8::jsonb, '{}')) r",
		{BODY("from_account", PBH_T_ID, 1), BODY("to_account", PBH_T_ID, 1),
			AMOUNT("amount", 1), IDEMPOTENCY_KEY, BODY("expires_in", PBH_T_INTERVAL, 0),
		BODY("description", PBH_T_TEXT, 0), BODY("metadata", PBH_T_OBJECT, 0)}},
	/* minor units of a hold's currency: a hold the caller cannot see is PB009 */
	{"POST", "/v1/holds/{id}/capture", R_CUST | R_SERV | R_ADMN, 0, PBH_RESULT_JSON, 200, NULL,
		"SELECT row_to_json(r) FROM bank.capture($1, " AMOUNT_SQL("2", "3",
			"coalesce((SELECT t.from_account FROM bank.transfers t WHERE t.id = $1), 0)") ") r",
		{PATH_ID("id"), AMOUNT("amount", 0)}},
	{"POST", "/v1/holds/{id}/void", R_CUST | R_SERV | R_ADMN, 0, PBH_RESULT_JSON, 200, NULL,
		"SELECT row_to_json(r) FROM bank.void($1) r", {PATH_ID("id")}},
	{"POST", "/v1/deposits", R_SERV | R_ADMN, 0, PBH_RESULT_JSON, 201, NULL,
		"SELECT row_to_json(r) FROM bank.deposit($1, " AMOUNT_SQL("2", "3", "$1") ", $4, $5,"
		" coalesce($6::jsonb, '{}')) r",
		{BODY("account", PBH_T_ID, 1), AMOUNT("amount", 1), IDEMPOTENCY_KEY,
		BODY("description", PBH_T_TEXT, 0), BODY("metadata", PBH_T_OBJECT, 0)}},
	{"POST", "/v1/withdrawals", R_SERV | R_ADMN, 0, PBH_RESULT_JSON, 201, NULL,
		"SELECT row_to_json(r) FROM bank.withdraw($1, " AMOUNT_SQL("2", "3", "$1") ", $4, $5,"
		" coalesce($6::jsonb, '{}')) r",
		{BODY("account", PBH_T_ID, 1), AMOUNT("amount", 1), IDEMPOTENCY_KEY,
		BODY("description", PBH_T_TEXT, 0), BODY("metadata", PBH_T_OBJECT, 0)}},

	/* staff */
	{"POST", "/v1/transfers/{id}/reverse", R_TELL | R_ADMN, 0, PBH_RESULT_JSON, 201, NULL,
		"SELECT row_to_json(r) FROM bank.reverse($1, $2, $3) r",
		{PATH_ID("id"), BODY("reason", PBH_T_TEXT, 1), IDEMPOTENCY_KEY}},

	/*
	 * Fraud screening (staff): the review queue and its decisions, a
	 * customer's outgoing limits, an account's overdraft limit.  The rules
	 * themselves are a table admins edit in SQL.
	 */
	{"GET", "/v1/reviews", R_TELL | R_ADMN, 1, PBH_RESULT_JSON, 200, NULL,
		"SELECT json_build_object('data', coalesce(json_agg(row_to_json(r) ORDER BY r.transfer_id), '[]'),"
		" 'next_after', CASE WHEN count(*) = coalesce($2::int, 50) THEN max(r.transfer_id) END)"
		" FROM bank.review_queue($1, coalesce($2::int, 50)) r",
		{QUERY("after", PBH_T_ID, 0), QUERY("limit", PBH_T_INT, 0)}},
	{"POST", "/v1/reviews/{id}/approve", R_TELL | R_ADMN, 0, PBH_RESULT_JSON, 200, NULL,
		"SELECT row_to_json(r) FROM bank.review_approve($1, $2) r",
		{PATH_ID("id"), BODY("reason", PBH_T_TEXT, 1)}},
	{"POST", "/v1/reviews/{id}/reject", R_TELL | R_ADMN, 0, PBH_RESULT_JSON, 200, NULL,
		"SELECT row_to_json(r) FROM bank.review_reject($1, $2) r",
		{PATH_ID("id"), BODY("reason", PBH_T_TEXT, 1)}},
	{"PUT", "/v1/customers/{id}/limits", R_TELL | R_ADMN, 0, PBH_RESULT_JSON, 200, NULL,
		"SELECT row_to_json(r) FROM bank.set_customer_limits($1, $2, $3::numeric, $4::numeric, $5) r",
		{PATH_ID("id"), BODY("currency", PBH_T_TEXT, 1), BODY("daily_limit", PBH_T_AMOUNT, 0),
		BODY("monthly_limit", PBH_T_AMOUNT, 0), BODY("reason", PBH_T_TEXT, 1)}},
	{"PUT", "/v1/accounts/{id}/overdraft-limit", R_TELL | R_ADMN, 0, PBH_RESULT_JSON, 200, NULL,
		"SELECT row_to_json(r) FROM bank.set_overdraft_limit($1, $2::numeric, $3) r",
		{PATH_ID("id"), BODY("overdraft_limit", PBH_T_AMOUNT, 1), BODY("reason", PBH_T_TEXT, 1)}},

	/*
	 * The audit trail: auditors and admins search all of it, a customer their
	 * own security events (row-level security decides); auditors verify it
	 * and take anchors.  Pages: pass the last row's at and id as before_at
	 * and before_id.
	 */
	{"GET", "/v1/audit/events", R_CUST | R_AUDI | R_ADMN, 1, PBH_RESULT_JSON, 200, NULL,
		"SELECT jsonb_build_object('data', coalesce(jsonb_agg(to_jsonb(e) - 'hash'"
		"  ORDER BY e.at DESC, e.id DESC), '[]'))"
		" FROM bank.audit_search($1, $2, $3, $4, $5::timestamptz, $6::timestamptz,"
		"  $7::timestamptz, $8, $9::int) e",
		{QUERY("actor_customer", PBH_T_ID, 0), QUERY("resource_type", PBH_T_TEXT, 0),
			QUERY("resource_id", PBH_T_TEXT, 0), QUERY("action", PBH_T_TEXT, 0),
			QUERY("since", PBH_T_TIME, 0), QUERY("until", PBH_T_TIME, 0),
			QUERY("before_at", PBH_T_TIME, 0), QUERY("before_id", PBH_T_ID, 0),
		QUERY("limit", PBH_T_INT, 0)}},
	{"GET", "/v1/audit/verify", R_AUDI | R_ADMN, 1, PBH_RESULT_JSON, 200, NULL,
		"SELECT jsonb_build_object('intact', v.problem IS NULL, 'first_broken_link',"
		"  CASE WHEN v.problem IS NOT NULL THEN to_jsonb(v) END)"
		" FROM (SELECT 1) one LEFT JOIN bank.audit_verify($1, decode($2, 'hex'), $3, $4) v ON true",
		{QUERY("anchor_checkpoint", PBH_T_ID, 0), QUERY("anchor_hash", PBH_T_TEXT, 0),
		QUERY("from_id", PBH_T_ID, 0), QUERY("to_id", PBH_T_ID, 0)}},
	{"POST", "/v1/audit/anchors", R_AUDI | R_ADMN, 0, PBH_RESULT_JSON, 201, NULL,
		"SELECT jsonb_build_object('checkpoint', checkpoint, 'hash', encode(hash, 'hex'), 'at', at)"
		" FROM bank.audit_head()",
		{{0}}},

	/* administration */
	{"POST", "/v1/api-keys", R_ADMN, 0, PBH_RESULT_JSON, 201, NULL,
		"SELECT row_to_json(r) FROM bank.create_api_key($1::name,"
		" ARRAY(SELECT jsonb_array_elements_text($2::jsonb)), $3::timestamptz, coalesce($4, 'api key')) r",
		{{"role", PBH_ARG_BODY, PBH_T_ENUM, 1, key_roles, 0}, BODY("scopes", PBH_T_STRINGS, 1),
		BODY("expires_at", PBH_T_TIME, 1), BODY("name", PBH_T_TEXT, 0)}},
	{"GET", "/v1/api-keys", R_ADMN, 1, PBH_RESULT_JSON, 200, NULL,
		"SELECT coalesce(json_agg(row_to_json(r) ORDER BY r.id), '[]') FROM bank.list_api_keys() r",
		{{0}}},
	{"DELETE", "/v1/api-keys/{id}", R_ADMN, 0, PBH_RESULT_VOID, 204, NULL,
		"SELECT bank.revoke_api_key($1)", {PATH_ID("id")}},

	/*
	 * Browser sessions (browser.c): login and refresh as above, but the
	 * tokens go into HttpOnly cookies and the body holds the CSRF token;
	 * the refresh token comes from its cookie; logout ends the session
	 * by that token (its access token may have expired long before) and
	 * clears both cookies in every answer, even a refusal.  Any
	 * customer route then takes the access cookie in place of a bearer
	 * token (with CSRF checks on unsafe methods).
	 */
	{"POST", "/v1/browser/login", R_ANON, 0, PBH_RESULT_SESSION, 200, NULL,
		"SELECT r.status, CASE WHEN r.status = 'ok' THEN to_jsonb(r) - 'status' END"
		" FROM bank.login($1, $2, $3) r",
		{BODY("email", PBH_T_TEXT, 1), BODY("password", PBH_T_TEXT, 1), BODY("totp", PBH_T_TEXT, 0)}},
	{"POST", "/v1/browser/refresh", R_ANON, 0, PBH_RESULT_SESSION, 200, NULL,
		"SELECT r.status, CASE WHEN r.status = 'ok' THEN to_jsonb(r) - 'status' END"
		" FROM bank.refresh($1) r",
		{{PBH_COOKIE_REFRESH, PBH_ARG_COOKIE, PBH_T_TEXT, 1, NULL, 0}}},
	{"POST", "/v1/browser/logout", R_ANON, 0, PBH_RESULT_SESSION_END, 204, NULL,
		"SELECT bank.end_session($1)",
		{{PBH_COOKIE_REFRESH, PBH_ARG_COOKIE, PBH_T_TEXT, 0, NULL, 0}}},

	/*
	 * The caller's account events as Server-Sent Events (events.c): checked
	 * like every route (credential, rate limit as one read, CORS), then the
	 * response stays open and each fetch runs PBH_STMT_EVENTS_AUTH (the
	 * credential, the request context, bank.events_watch) and this
	 * statement, whose $1 is the stream's position (first Last-Event-ID;
	 * NULL: the latest event).  Not read-only: bank.events_since numbers
	 * what has committed, and the watch is renewed.  It returns "customer
	 * after last count head" and the SSE messages.
	 */
	{"GET", "/v1/events", R_CUST, 0, PBH_RESULT_EVENTS, 200, NULL,
		"SELECT bank.current_customer_id()::text || ' ' || a.after || ' ' ||"
		" coalesce(max(e.seq), a.after) || ' ' || count(e.seq) || ' ' || bank.events_head(),"
		" string_agg('id: ' || e.seq || E'\\ndata: ' || jsonb_build_object('id', e.seq,"
		"  'kind', e.kind, 'account_id', e.account_id, 'transfer_id', e.transfer_id,"
		"  'amount', e.amount::text, 'currency', e.currency, 'occurred_at', e.occurred_at)::text"
		"  || E'\\n\\n', '' ORDER BY e.seq)"
		" FROM (SELECT coalesce($1::bigint, bank.events_head()) AS after) a"
		" LEFT JOIN LATERAL bank.events_since(a.after, " H2O_TO_STR(PBH_EVENTS_FETCH_MAX) ") e ON true"
		" GROUP BY a.after",
		{{"Last-Event-ID", PBH_ARG_HEADER, PBH_T_NATURAL, 0, NULL, 0}}},
};

int			pbh_nroutes = sizeof(pbh_routes) / sizeof(pbh_routes[0]);

void
pbh_routes_init(void)
{
	int			i,
				j;

	for (i = 0; i < pbh_nroutes; i++)
	{
		pbh_routes[i].index = i;
		for (j = 0; j < PBH_MAX_ARGS && pbh_routes[i].args[j].name != NULL; j++)
			;
		pbh_routes[i].nargs = j;
	}
}

/*
 * Does path match pattern?  {id} matches any one non-empty segment; the
 * caller checks its shape.
 */
static int
pattern_match(const char *pattern, const char *path, size_t plen, h2o_iovec_t *ids, int *nids)
{
	const char *p = pattern;
	const char *s = path,
			   *end = path + plen;

	*nids = 0;
	while (*p != '\0' && s < end)
	{
		if (strncmp(p, "{id}", 4) == 0)
		{
			const char *seg = s;

			while (s < end && *s != '/')
				s++;
			if (s == seg || *nids == 4)
				return 0;
			ids[(*nids)++] = h2o_iovec_init(seg, s - seg);
			p += 4;
			continue;
		}
		if (*p != *s)
			return 0;
		p++;
		s++;
	}
	/* a trailing slash is not the same resource */
	return *p == '\0' && s == end;
}

const pbh_route_t *
pbh_route_match(const char *method, size_t mlen, const char *path, size_t plen,
				h2o_iovec_t *ids, int *nids, int *status, char *allow, size_t allowlen)
{
	int			i;
	size_t		used = 0;
	int			path_found = 0;

	allow[0] = '\0';
	for (i = 0; i < pbh_nroutes; i++)
	{
		const pbh_route_t *r = &pbh_routes[i];

		if (!pattern_match(r->pattern, path, plen, ids, nids))
			continue;
		if (strlen(r->method) == mlen && memcmp(r->method, method, mlen) == 0)
			return r;
		path_found = 1;
		if (used + strlen(r->method) + 3 < allowlen)
			used += snprintf(allow + used, allowlen - used, "%s%s", used ? ", " : "", r->method);
	}
	if (path_found && used + 10 < allowlen)
		snprintf(allow + used, allowlen - used, ", OPTIONS");
	*status = path_found ? 405 : 404;
	return NULL;
}
