/*-------------------------------------------------------------------------
 *
 * args.c
 *		Request text to route arguments: the query string, and each
 *		argument's value from the path, the query, a header or a member of
 *		the JSON body, checked against its type.  Pure functions of their
 *		input (no request, no response), so that the libFuzzer targets in
 *		shim/fuzz call exactly what the server runs.
 *
 * Invariants:
 *	- Every value handed to the database is a NUL-terminated string of at
 *	  most the argument's limit, or NULL; ids and integers are plain
 *	  decimal digits that fit a bigint, amounts decimal strings (never a
 *	  float or an exponent), enums one of their choices.
 *	- Percent-decoding never yields a NUL byte.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <string.h>

#include "pgbank_http.h"

#define MAX_TEXT_BYTES 4096

/* set *err and return NULL: an argument's bad value */
static const char *
arg_error(pbh_arg_error_t *err, const char *code, const char *format)
{
	err->code = code;
	err->format = format;
	return NULL;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* percent-decode (and + as blank) into a NUL-terminated copy; NULL if bad */
static char *
url_decode(h2o_mem_pool_t *pool, const char *s, size_t len)
{
	char	   *out = h2o_mem_alloc_pool(pool, len + 1),
			   *w = out;

	for (size_t i = 0; i < len; i++)
	{
		if (s[i] == '%')
		{
			int			h,
						l;

			if (i + 2 >= len)
				return NULL;
			h = hexval(s[i + 1]);
			l = hexval(s[i + 2]);
			if (h < 0 || l < 0 || (h == 0 && l == 0))
				return NULL;
			*w++ = (char) (h * 16 + l);
			i += 2;
		}
		else if (s[i] == '+')
			*w++ = ' ';
		else
			*w++ = s[i];
	}
	*w = '\0';
	return out;
}

/*
 * Split a query string (what follows '?', without it) into decoded
 * parameters: 0; -1 with *bad set on a malformed one or too many; -2 with
 * *bad the name of one given twice.
 */
int
pbh_parse_query(h2o_mem_pool_t *pool, const char *q, size_t len, pbh_qparam_t *out, int *n,
				const char **bad)
{
	const char *end = q + len;

	*n = 0;
	while (q < end)
	{
		const char *amp = memchr(q, '&', end - q),
				   *eq;

		if (amp == NULL)
			amp = end;
		if (amp > q)
		{
			eq = memchr(q, '=', amp - q);
			if (*n == PBH_MAX_QUERY_PARAMS)
			{
				*bad = "too many parameters";
				return -1;
			}
			out[*n].name = url_decode(pool, q, (eq ? eq : amp) - q);
			out[*n].value = eq ? url_decode(pool, eq + 1, amp - eq - 1) : "";
			out[*n].used = 0;
			if (out[*n].name == NULL || out[*n].value == NULL)
			{
				*bad = "a parameter is not well encoded";
				return -1;
			}
			for (int i = 0; i < *n; i++)
				if (strcmp(out[i].name, out[*n].name) == 0)
				{
					*bad = out[*n].name;
					return -2;
				}
			(*n)++;
		}
		q = amp + 1;
	}
	return 0;
}

int
pbh_digits_ok(const char *s, int allow_minus, int positive)
{
	const char *p = s;

	if (allow_minus && *p == '-')
		p++;
	if (*p == '\0' || strlen(p) > 18 || (p[0] == '0' && p[1] != '\0'))
		return 0;
	for (const char *c = p; *c; c++)
		if (*c < '0' || *c > '9')
			return 0;
	if (positive && (p != s || strcmp(p, "0") == 0))
		return 0;
	return 1;
}

int
pbh_amount_ok(const char *s)
{
	const char *p = s;
	int			digits = 0;

	while (*p >= '0' && *p <= '9')
		p++, digits++;
	if (digits == 0 || digits > 20)
		return 0;
	if (*p == '.')
	{
		const char *f = ++p;

		while (*p >= '0' && *p <= '9')
			p++;
		if (p == f || p - f > 20)
			return 0;
	}
	return *p == '\0';
}

/*
 * Check one argument's text (from the path, query or a header) or JSON
 * member and return its parameter text, NULL for SQL NULL.  A bad value
 * returns NULL with err->code (the problem's code) and err->format (its
 * detail, with one %s for the argument's name) set; err->code is NULL
 * otherwise.  Pure: nothing is sent (the fuzz target calls it directly).
 */
const char *
pbh_arg_value(h2o_mem_pool_t *pool, const pbh_arg_t *a, const char *text,
			  const pbh_json_member_t *m, pbh_arg_error_t *err)
{
	const char *v = text;
	size_t		max = a->max_len ? a->max_len : MAX_TEXT_BYTES;

	err->code = NULL;
	if (m != NULL)
	{
		if (m->type == PBH_JSON_NULL)
		{
			if (a->required)
				goto missing;
			return NULL;
		}
		switch (a->type)
		{
			case PBH_T_ID:
			case PBH_T_INT:
			case PBH_T_NATURAL:
				if (m->type != PBH_JSON_NUMBER || !m->is_integer)
					goto wrong_type;
				v = h2o_strdup(pool, m->raw, m->raw_len).base;
				break;
			case PBH_T_OBJECT:
				if (m->type != PBH_JSON_OBJECT)
					goto wrong_type;
				return h2o_strdup(pool, m->raw, m->raw_len).base;
			case PBH_T_STRINGS:
				if (m->type != PBH_JSON_ARRAY || !m->all_strings)
					goto wrong_type;
				return h2o_strdup(pool, m->raw, m->raw_len).base;
			case PBH_T_ARRAY:
				if (m->type != PBH_JSON_ARRAY)
					goto wrong_type;
				/* the database would read 1e3 as 1000: no exponents in amounts */
				if (m->exponent)
					return arg_error(err, "invalid_amount",
									 "%s holds a number in exponent form; amounts are decimal strings or integers of minor units");
				return h2o_strdup(pool, m->raw, m->raw_len).base;
			case PBH_T_AMOUNT:
				/* an integer is minor units: the PBH_T_MINOR argument takes it */
				if (m->type == PBH_JSON_NUMBER && m->is_integer)
					return NULL;
				if (m->type != PBH_JSON_STRING)
					goto wrong_type;
				v = m->str;
				break;
			case PBH_T_MINOR:
				if (m->type != PBH_JSON_NUMBER || !m->is_integer)
					return NULL;
				v = h2o_strdup(pool, m->raw, m->raw_len).base;
				break;
			default:
				if (m->type != PBH_JSON_STRING)
					goto wrong_type;
				v = m->str;
				break;
		}
	}
	if (v == NULL)
	{
		if (a->required)
			goto missing;
		return NULL;
	}
	switch (a->type)
	{
		case PBH_T_ID:
			if (!pbh_digits_ok(v, 0, 1))
				goto wrong_type;
			break;
		case PBH_T_INT:
			if (!pbh_digits_ok(v, 1, 0))
				goto wrong_type;
			break;
		case PBH_T_NATURAL:
			if (!pbh_digits_ok(v, 0, 0))
				goto wrong_type;
			break;
		case PBH_T_AMOUNT:
			if (!pbh_amount_ok(v))
				goto wrong_type;
			break;
		case PBH_T_MINOR:
			/* exact: the text goes to the database as a bigint */
			if (v[0] == '-' || strcmp(v, "0") == 0)
				return arg_error(err, "invalid_amount", "%s must be positive");
			if (v[0] == '\0' || v[0] == '0' || strspn(v, "0123456789") != strlen(v))
				return arg_error(err, "invalid_amount", "%s must be an integer of minor units");
			if (strlen(v) > 16)
				return arg_error(err, "amount_out_of_range", "%s must be at most 10^15 minor units");
			break;
		case PBH_T_ENUM:
			for (const char *const *c = a->choices; *c != NULL; c++)
				if (strcmp(*c, v) == 0)
					return v;
			goto wrong_type;
		case PBH_T_TIME:
		case PBH_T_INTERVAL:
			max = 64;
			/* fall through */
		default:
			if (strlen(v) > max)
				return arg_error(err, "invalid_argument", "%s is too long");
			break;
	}
	return v;

missing:
	if (a->source == PBH_ARG_HEADER)
		return arg_error(err, "missing_argument", "the %s header is required");
	if (a->source == PBH_ARG_COOKIE)
		return arg_error(err, "missing_argument", "the %s cookie is required");
	return arg_error(err, "missing_argument", "%s is required");
wrong_type:
	switch (a->type)
	{
		case PBH_T_AMOUNT:
			return arg_error(err, "invalid_amount",
							 "%s must be a decimal string of the currency's units, such as \"10.50\", "
							 "or an integer of minor units, such as 1050");
		case PBH_T_ID:
			return arg_error(err, "invalid_argument", "%s must be a positive integer id");
		case PBH_T_INT:
			return arg_error(err, "invalid_argument", "%s must be an integer");
		case PBH_T_NATURAL:
			return arg_error(err, "invalid_argument", "%s must be a non-negative integer");
		case PBH_T_OBJECT:
			return arg_error(err, "invalid_argument", "%s must be a JSON object");
		case PBH_T_STRINGS:
			return arg_error(err, "invalid_argument", "%s must be an array of strings");
		case PBH_T_ARRAY:
			return arg_error(err, "invalid_argument", "%s must be an array");
		case PBH_T_ENUM:
			return arg_error(err, "invalid_argument", "%s must be one of the allowed values");
		default:
			return arg_error(err, "invalid_argument", "%s must be a string");
	}
}
