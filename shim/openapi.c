/*-------------------------------------------------------------------------
 *
 * openapi.c
 *		The OpenAPI 3.1 document of the API, served at /v1/openapi.json,
 *		generated once at startup from the route table, so that it cannot
 *		drift from what the server does: every route with its method, path
 *		parameters, query parameters, headers and JSON body members (types,
 *		enums, limits, which are required, no other member allowed), the
 *		roles allowed (as x-pgbank-roles and the security schemes), its
 *		success status, and problem+json for errors.
 *
 *-------------------------------------------------------------------------
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgbank_http.h"

static char *document;
static size_t document_len;

typedef struct
{
	char	   *buf;
	size_t		len,
				cap;
} out_t;

static void
put(out_t *o, const char *fmt,...)
{
	va_list		ap;
	int			n;

	for (;;)
	{
		va_start(ap, fmt);
		n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
		va_end(ap);
		if (n >= 0 && (size_t) n < o->cap - o->len)
			break;
		o->cap = o->cap * 2 + (n > 0 ? (size_t) n : 0);
		o->buf = realloc(o->buf, o->cap);
		if (o->buf == NULL)
			abort();
	}
	o->len += n;
}

/* a JSON string (quotes included) */
static void
put_str(out_t *o, const char *s)
{
	char	   *e = malloc(PBH_JSON_ESCAPED_MAX(strlen(s)) + 1);
	size_t		n = pbh_json_escape(e, s, strlen(s));

	e[n] = '\0';
	put(o, "%s", e);
	free(e);
}

/* the JSON Schema of an argument's value */
static void
put_schema(out_t *o, const pbh_arg_t *a, int has_minor)
{
	switch (a->type)
	{
		case PBH_T_ID:
			put(o, "{\"type\":\"integer\",\"minimum\":1,\"maximum\":999999999999999999}");
			break;
		case PBH_T_INT:
			put(o, "{\"type\":\"integer\"}");
			break;
		case PBH_T_NATURAL:
			put(o, "{\"type\":\"integer\",\"minimum\":0,\"maximum\":999999999999999999}");
			break;
		case PBH_T_AMOUNT:
			put(o, "{\"description\":\"A decimal string of the currency's units (\\\"10.50\\\")%s\","
				"\"oneOf\":[{\"type\":\"string\",\"pattern\":\"^[0-9]{1,20}(\\\\.[0-9]{1,20})?$\"}%s]}",
				has_minor ? ", or an integer of its minor units (1050)" : "",
				has_minor ? ",{\"type\":\"integer\",\"minimum\":1,\"maximum\":1000000000000000}" : "");
			break;
		case PBH_T_MINOR:
			put(o, "{\"type\":\"integer\",\"minimum\":1,\"maximum\":1000000000000000}");
			break;
		case PBH_T_TIME:
			put(o, "{\"type\":\"string\",\"description\":\"a timestamp, e.g. 2026-11-24T10:00:00Z\",\"maxLength\":64}");
			break;
		case PBH_T_INTERVAL:
			put(o, "{\"type\":\"string\",\"description\":\"an interval, e.g. 2 days\",\"maxLength\":64}");
			break;
		case PBH_T_OBJECT:
			put(o, "{\"type\":\"object\"}");
			break;
		case PBH_T_STRINGS:
			put(o, "{\"type\":\"array\",\"items\":{\"type\":\"string\"}}");
			break;
		case PBH_T_ARRAY:
			put(o, "{\"type\":\"array\"}");
			break;
		case PBH_T_ENUM:
			put(o, "{\"type\":\"string\",\"enum\":[");
			for (const char *const *c = a->choices; *c != NULL; c++)
			{
				put(o, c == a->choices ? "" : ",");
				put_str(o, *c);
			}
			put(o, "]}");
			break;
		default:
			put(o, "{\"type\":\"string\",\"maxLength\":%zu}", a->max_len ? a->max_len : (size_t) 4096);
			break;
	}
}

/* "get_v1_accounts_id_balance" */
static void
put_operation_id(out_t *o, const pbh_route_t *r)
{
	char		id[256];
	size_t		n = 0;

	for (const char *p = r->method; *p && n < sizeof(id) - 1; p++)
		id[n++] = (char) (*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
	for (const char *p = r->pattern; *p && n < sizeof(id) - 1; p++)
	{
		if ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9'))
			id[n++] = *p;
		else if ((*p == '/' || *p == '-') && id[n - 1] != '_')
			id[n++] = '_';
	}
	id[n] = '\0';
	put_str(o, id);
}

/*
 * The same body as application/x-www-form-urlencoded (browser.c), unless
 * a required member is an object or an array, which a form cannot hold:
 * every value is text, an amount only a decimal string.
 */
static void
put_form_body(out_t *o, const pbh_route_t *r)
{
	int			first = 1;

	for (int i = 0; i < r->nargs; i++)
		if (r->args[i].source == PBH_ARG_BODY && r->args[i].required &&
			(r->args[i].type == PBH_T_OBJECT || r->args[i].type == PBH_T_ARRAY ||
			 r->args[i].type == PBH_T_STRINGS))
			return;
	put(o, ",\"application/x-www-form-urlencoded\":{\"schema\":"
		"{\"type\":\"object\",\"additionalProperties\":false,\"properties\":{");
	for (int i = 0; i < r->nargs; i++)
	{
		const pbh_arg_t *a = &r->args[i];

		if (a->source != PBH_ARG_BODY || a->type == PBH_T_MINOR || a->type == PBH_T_OBJECT ||
			a->type == PBH_T_ARRAY || a->type == PBH_T_STRINGS)
			continue;
		put(o, first ? "" : ",");
		put_str(o, a->name);
		put(o, ":");
		put_schema(o, a, 0);
		first = 0;
	}
	put(o, "},\"required\":[");
	first = 1;
	for (int i = 0; i < r->nargs; i++)
		if (r->args[i].source == PBH_ARG_BODY && r->args[i].required &&
			r->args[i].type != PBH_T_MINOR)
		{
			put(o, first ? "" : ",");
			put_str(o, r->args[i].name);
			first = 0;
		}
	put(o, "]}}");
}

static void
put_operation(out_t *o, const pbh_route_t *r)
{
	int			nbody = 0,
				nbody_required = 0,
				first;

	put(o, "\"operationId\":");
	put_operation_id(o, r);
	put(o, ",\"x-pgbank-roles\":[");
	first = 1;
	for (unsigned bit = 1; bit <= PBH_ROLE_ADMIN; bit <<= 1)
		if (r->roles & bit)
		{
			put(o, first ? "" : ",");
			put_str(o, pbh_role_name(bit));
			first = 0;
		}
	put(o, "],\"x-pgbank-read-only\":%s", r->read_only ? "true" : "false");

	/* who may call: an access token for customers, an API key for staff */
	put(o, ",\"security\":[");
	first = 1;
	if (r->roles & PBH_ROLE_ANON)
	{
		put(o, "{}");
		first = 0;
	}
	if (r->roles & PBH_ROLE_CUSTOMER)
	{
		put(o, "%s{\"bearer\":[]},{\"cookie\":[]}", first ? "" : ",");
		first = 0;
	}
	if (r->roles & PBH_ROLES_STAFF)
		put(o, "%s{\"apiKey\":[]}", first ? "" : ",");
	put(o, "]");

	/* path, query and header parameters */
	put(o, ",\"parameters\":[");
	first = 1;
	for (int i = 0; i < r->nargs; i++)
	{
		const pbh_arg_t *a = &r->args[i];
		const char *in = a->source == PBH_ARG_PATH ? "path" :
			a->source == PBH_ARG_QUERY ? "query" :
			a->source == PBH_ARG_HEADER ? "header" :
			a->source == PBH_ARG_COOKIE ? "cookie" : NULL;

		if (in == NULL)
		{
			if (a->type != PBH_T_MINOR)
			{
				nbody++;
				nbody_required += a->required;
			}
			continue;
		}
		put(o, "%s{\"name\":", first ? "" : ",");
		put_str(o, a->name);
		put(o, ",\"in\":\"%s\",\"required\":%s,\"schema\":", in,
			a->required || a->source == PBH_ARG_PATH ? "true" : "false");
		put_schema(o, a, 0);
		put(o, "}");
		first = 0;
	}
	put(o, "]");

	/* the JSON body: its members, and no other */
	if (nbody > 0)
	{
		put(o, ",\"requestBody\":{\"required\":%s,\"content\":{\"application/json\":{\"schema\":"
			"{\"type\":\"object\",\"additionalProperties\":false,\"properties\":{",
			nbody_required ? "true" : "false");
		first = 1;
		for (int i = 0; i < r->nargs; i++)
		{
			const pbh_arg_t *a = &r->args[i];
			int			has_minor = 0;

			if (a->source != PBH_ARG_BODY || a->type == PBH_T_MINOR)
				continue;
			for (int k = 0; k < r->nargs; k++)
				if (r->args[k].type == PBH_T_MINOR && strcmp(r->args[k].name, a->name) == 0)
					has_minor = 1;
			put(o, first ? "" : ",");
			put_str(o, a->name);
			put(o, ":");
			put_schema(o, a, has_minor);
			first = 0;
		}
		put(o, "},\"required\":[");
		first = 1;
		for (int i = 0; i < r->nargs; i++)
			if (r->args[i].source == PBH_ARG_BODY && r->args[i].required &&
				r->args[i].type != PBH_T_MINOR)
			{
				put(o, first ? "" : ",");
				put_str(o, r->args[i].name);
				first = 0;
			}
		put(o, "]}}");
		put_form_body(o, r);
		put(o, "}}");
	}

	/* what it answers */
	put(o, ",\"responses\":{\"%d\":", r->status);
	if (r->result == PBH_RESULT_VOID)
		put(o, "{\"description\":\"Done\"}");
	else if (r->result == PBH_RESULT_EVENTS)
	{
		/* a stream that stays open: text/event-stream, never JSON */
		put(o, "{\"description\":");
		put_str(o, pbh_events_description());
		put(o, ",\"content\":{\"text/event-stream\":{\"schema\":{\"type\":\"string\"}}}}");
	}
	else
		put(o, "{\"description\":\"The result\",\"content\":{\"application/json\":{\"schema\":{}}}}");
	put(o, ",\"429\":{\"$ref\":\"#/components/responses/RateLimited\"}");
	put(o, ",\"4XX\":{\"$ref\":\"#/components/responses/Problem\"}"
		",\"5XX\":{\"$ref\":\"#/components/responses/Problem\"}}");
}

/* build the document from the route table (after pbh_routes_init) */
void
pbh_openapi_init(void)
{
	out_t		o = {malloc(65536), 0, 65536};

	put(&o, "{\"openapi\":\"3.1.0\","
		"\"info\":{\"title\":\"pgbank\",\"version\":\"" PBH_VERSION "\","
		"\"description\":\"The HTTP API of pgbank, generated from pgbank-http's route table. "
		"Errors are application/problem+json (RFC 9457) with a stable code. "
		"Customers send an access token (Authorization: Bearer), staff an API key (X-API-Key).\"},"
		"\"components\":{\"securitySchemes\":{"
		"\"bearer\":{\"type\":\"http\",\"scheme\":\"bearer\",\"bearerFormat\":\"JWT\"},"
		"\"apiKey\":{\"type\":\"apiKey\",\"in\":\"header\",\"name\":\"X-API-Key\"},"
		"\"cookie\":{\"type\":\"apiKey\",\"in\":\"cookie\",\"name\":\"" PBH_COOKIE_ACCESS "\","
		"\"description\":\"A browser session from POST /v1/browser/login; unsafe methods also need "
		"X-CSRF-Token and an allowed Origin\"}},"
		"\"schemas\":{\"Problem\":{\"type\":\"object\",\"required\":[\"type\",\"title\",\"status\",\"code\"],"
		"\"properties\":{\"type\":{\"type\":\"string\"},\"title\":{\"type\":\"string\"},"
		"\"status\":{\"type\":\"integer\"},\"code\":{\"type\":\"string\"},\"detail\":{\"type\":\"string\"}}}},"
		"\"responses\":{\"Problem\":{\"description\":\"An error (RFC 9457)\","
		"\"content\":{\"application/problem+json\":{\"schema\":{\"$ref\":\"#/components/schemas/Problem\"}}}},"
		"\"RateLimited\":{\"description\":\"Over a rate limit (code rate_limited): per client address, "
		"and per subject (token sub or API key) for each route class\","
		"\"headers\":{\"Retry-After\":{\"description\":\"Seconds to wait, at least 1\","
		"\"schema\":{\"type\":\"integer\",\"minimum\":1}}},"
		"\"content\":{\"application/problem+json\":{\"schema\":{\"$ref\":\"#/components/schemas/Problem\"}}}}}},"
		"\"paths\":{");
	for (int i = 0; i < pbh_nroutes; i++)
	{
		const pbh_route_t *r = &pbh_routes[i];
		int			seen = 0;

		/* one path item per pattern, holding each of its methods */
		for (int k = 0; k < i; k++)
			seen |= strcmp(pbh_routes[k].pattern, r->pattern) == 0;
		if (seen)
			continue;
		put(&o, "%s", i == 0 ? "" : ",");
		put_str(&o, r->pattern);
		put(&o, ":{");
		for (int k = i, n = 0; k < pbh_nroutes; k++)
		{
			const pbh_route_t *m = &pbh_routes[k];
			char		method[16];
			size_t		j;

			if (strcmp(m->pattern, r->pattern) != 0)
				continue;
			for (j = 0; m->method[j] && j < sizeof(method) - 1; j++)
				method[j] = (char) (m->method[j] - 'A' + 'a');
			method[j] = '\0';
			put(&o, "%s\"%s\":{", n++ ? "," : "", method);
			put_operation(&o, m);
			put(&o, "}");
		}
		put(&o, "}");
	}
	put(&o, "}}");
	document = o.buf;
	document_len = o.len;
}

const char *
pbh_openapi_document(size_t *len)
{
	*len = document_len;
	return document;
}
