/*-------------------------------------------------------------------------
 *
 * json.c
 *		The JSON the server reads (request bodies, token headers and claims)
 *		and the JSON strings it writes.
 *
 * Invariants:
 *	- Strict RFC 8259: one value, no trailing data, no comments, nesting
 *	  at most 32 deep (checked before recursing, so the stack is bounded
 *	  whatever the input), no duplicate member names in any object (the
 *	  database's jsonb would keep the last one silently), at most 64
 *	  members at the top level and NESTED_MEMBERS in a nested object (so
 *	  the duplicate check stays cheap).
 *	- Strings are decoded to UTF-8; \u0000 and lone surrogates are refused
 *	  (a PostgreSQL text cannot hold them); raw bytes must be well-formed
 *	  UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF), in
 *	  member names as in values.
 *	- Numbers are never converted to floating point: a value keeps the text
 *	  it came with.
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "pgbank_http.h"

#define MAX_DEPTH 32
#define MAX_MEMBERS 64
#define NESTED_MEMBERS 256

typedef struct st_pbh_json_parser_t
{
	h2o_mem_pool_t *pool;
	const char *p;
	const char *end;
	const char *err;
	int			exponents;		/* numbers with an exponent seen so far */
} pbh_json_parser_t;

static void
skip_ws(pbh_json_parser_t *ps)
{
	while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
		ps->p++;
}

static int
fail(pbh_json_parser_t *ps, const char *msg)
{
	if (ps->err == NULL)
		ps->err = msg;
	return -1;
}

static int
hex4(const char *s, unsigned *out)
{
	unsigned	v = 0;
	int			i;

	for (i = 0; i < 4; i++)
	{
		char		c = s[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return -1;
	}
	*out = v;
	return 0;
}

/*
 * The length of the well-formed UTF-8 sequence at s (its first byte is
 * 0x80 or more), or 0 (RFC 3629: no overlong forms, no surrogates, nothing
 * above U+10FFFF).
 */
static int
utf8_sequence(const unsigned char *s, const unsigned char *end)
{
	unsigned char c = s[0];
	int			n;
	unsigned char lo = 0x80,
				hi = 0xBF;

	if (c >= 0xC2 && c <= 0xDF)
		n = 2;
	else if (c >= 0xE0 && c <= 0xEF)
	{
		n = 3;
		if (c == 0xE0)
			lo = 0xA0;			/* overlong */
		else if (c == 0xED)
			hi = 0x9F;			/* surrogates */
	}
	else if (c >= 0xF0 && c <= 0xF4)
	{
		n = 4;
		if (c == 0xF0)
			lo = 0x90;			/* overlong */
		else if (c == 0xF4)
			hi = 0x8F;			/* above U+10FFFF */
	}
	else
		return 0;
	if (end - s < n || s[1] < lo || s[1] > hi)
		return 0;
	for (int i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xBF)
			return 0;
	return n;
}

/* parse a string at ps->p (the opening quote); decoded copy in *out */
static int
parse_string(pbh_json_parser_t *ps, const char **out)
{
	const char *start = ++ps->p;
	char	   *buf,
			   *w;

	/* decoded text is never longer than the encoded text */
	while (ps->p < ps->end && *ps->p != '"')
	{
		if (*ps->p == '\\')
			ps->p++;
		ps->p++;
	}
	if (ps->p >= ps->end)
		return fail(ps, "unterminated string");
	buf = w = h2o_mem_alloc_pool(ps->pool, ps->p - start + 1);
	ps->p = start;
	while (*ps->p != '"')
	{
		unsigned char c = (unsigned char) *ps->p++;

		if (c < 0x20)
			return fail(ps, "control character in a string");
		if (c >= 0x80)
		{
			int			n = utf8_sequence((const unsigned char *) ps->p - 1,
										  (const unsigned char *) ps->end);

			if (n == 0)
				return fail(ps, "invalid UTF-8 in a string");
			memcpy(w, ps->p - 1, n);
			w += n;
			ps->p += n - 1;
			continue;
		}
		if (c != '\\')
		{
			*w++ = (char) c;
			continue;
		}
		c = (unsigned char) *ps->p++;
		switch (c)
		{
			case '"':
			case '\\':
			case '/':
				*w++ = (char) c;
				break;
			case 'b':
				*w++ = '\b';
				break;
			case 'f':
				*w++ = '\f';
				break;
			case 'n':
				*w++ = '\n';
				break;
			case 'r':
				*w++ = '\r';
				break;
			case 't':
				*w++ = '\t';
				break;
			case 'u':
				{
					unsigned	cp,
								lo;

					if (ps->end - ps->p < 4 || hex4(ps->p, &cp) != 0)
						return fail(ps, "bad \\u escape");
					ps->p += 4;
					if (cp >= 0xDC00 && cp <= 0xDFFF)
						return fail(ps, "lone surrogate in a string");
					if (cp >= 0xD800 && cp <= 0xDBFF)
					{
						if (ps->end - ps->p < 6 || ps->p[0] != '\\' || ps->p[1] != 'u' ||
							hex4(ps->p + 2, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF)
							return fail(ps, "lone surrogate in a string");
						ps->p += 6;
						cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
					}
					if (cp == 0)
						return fail(ps, "\\u0000 in a string");
					if (cp < 0x80)
						*w++ = (char) cp;
					else if (cp < 0x800)
					{
						*w++ = (char) (0xC0 | (cp >> 6));
						*w++ = (char) (0x80 | (cp & 0x3F));
					}
					else if (cp < 0x10000)
					{
						*w++ = (char) (0xE0 | (cp >> 12));
						*w++ = (char) (0x80 | ((cp >> 6) & 0x3F));
						*w++ = (char) (0x80 | (cp & 0x3F));
					}
					else
					{
						*w++ = (char) (0xF0 | (cp >> 18));
						*w++ = (char) (0x80 | ((cp >> 12) & 0x3F));
						*w++ = (char) (0x80 | ((cp >> 6) & 0x3F));
						*w++ = (char) (0x80 | (cp & 0x3F));
					}
					break;
				}
			default:
				return fail(ps, "bad escape in a string");
		}
	}
	ps->p++;					/* closing quote */
	*w = '\0';
	if (out != NULL)
		*out = buf;
	return 0;
}

static int
parse_number(pbh_json_parser_t *ps, int *is_integer)
{
	const char *s = ps->p;

	*is_integer = 1;
	if (ps->p < ps->end && *ps->p == '-')
		ps->p++;
	if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9')
		return fail(ps, "bad number");
	if (*ps->p == '0')
		ps->p++;
	else
		while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
			ps->p++;
	if (ps->p < ps->end && *ps->p == '.')
	{
		*is_integer = 0;
		ps->p++;
		if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9')
			return fail(ps, "bad number");
		while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
			ps->p++;
	}
	if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E'))
	{
		*is_integer = 0;
		ps->exponents++;
		ps->p++;
		if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-'))
			ps->p++;
		if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9')
			return fail(ps, "bad number");
		while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
			ps->p++;
	}
	return ps->p > s ? 0 : -1;
}

static int	parse_value(pbh_json_parser_t *ps, int depth, pbh_json_member_t *m);

static int
literal(pbh_json_parser_t *ps, const char *word)
{
	size_t		n = strlen(word);

	if ((size_t) (ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
		return fail(ps, "unexpected character");
	ps->p += n;
	return 0;
}

/* a value; m (may be NULL) receives its type and text */
static int
parse_value(pbh_json_parser_t *ps, int depth, pbh_json_member_t *m)
{
	pbh_json_member_t dummy;
	const char *start;

	if (m == NULL)
		m = &dummy;
	memset(m, 0, sizeof(*m));
	if (depth > MAX_DEPTH)
		return fail(ps, "nested too deep");
	skip_ws(ps);
	if (ps->p >= ps->end)
		return fail(ps, "unexpected end");
	start = ps->p;
	switch (*ps->p)
	{
		case '"':
			m->type = PBH_JSON_STRING;
			if (parse_string(ps, &m->str) != 0)
				return -1;
			break;
		case 't':
			m->type = PBH_JSON_BOOL;
			m->boolean = 1;
			if (literal(ps, "true") != 0)
				return -1;
			break;
		case 'f':
			m->type = PBH_JSON_BOOL;
			if (literal(ps, "false") != 0)
				return -1;
			break;
		case 'n':
			m->type = PBH_JSON_NULL;
			if (literal(ps, "null") != 0)
				return -1;
			break;
		case '[':
			m->type = PBH_JSON_ARRAY;
			m->all_strings = 1;
			ps->p++;
			skip_ws(ps);
			if (ps->p < ps->end && *ps->p == ']')
			{
				ps->p++;
				break;
			}
			for (;;)
			{
				pbh_json_member_t e;

				if (parse_value(ps, depth + 1, &e) != 0)
					return -1;
				if (e.type != PBH_JSON_STRING)
					m->all_strings = 0;
				skip_ws(ps);
				if (ps->p < ps->end && *ps->p == ',')
				{
					ps->p++;
					continue;
				}
				if (ps->p < ps->end && *ps->p == ']')
				{
					ps->p++;
					break;
				}
				return fail(ps, "expected , or ] in an array");
			}
			break;
		case '{':
			m->type = PBH_JSON_OBJECT;
			ps->p++;
			skip_ws(ps);
			if (ps->p < ps->end && *ps->p == '}')
			{
				ps->p++;
				break;
			}
			{
				/* names so far: on the stack, then in the pool as they grow */
				const char *local[16];
				const char **names = local;
				int			nnames = 0,
							cap = 16;

				for (;;)
				{
					const char *name;

					skip_ws(ps);
					if (ps->p >= ps->end || *ps->p != '"')
						return fail(ps, "expected a member name");
					if (parse_string(ps, &name) != 0)
						return -1;
					for (int i = 0; i < nnames; i++)
						if (strcmp(names[i], name) == 0)
							return fail(ps, "a member name appears twice");
					if (nnames == cap)
					{
						const char **more;

						if (cap == NESTED_MEMBERS)
							return fail(ps, "too many members in an object");
						more = h2o_mem_alloc_pool(ps->pool, sizeof(char *) * cap * 2);
						memcpy(more, names, sizeof(char *) * nnames);
						names = more;
						cap *= 2;
					}
					names[nnames++] = name;
					skip_ws(ps);
					if (ps->p >= ps->end || *ps->p != ':')
						return fail(ps, "expected : after a member name");
					ps->p++;
					if (parse_value(ps, depth + 1, NULL) != 0)
						return -1;
					skip_ws(ps);
					if (ps->p < ps->end && *ps->p == ',')
					{
						ps->p++;
						continue;
					}
					if (ps->p < ps->end && *ps->p == '}')
					{
						ps->p++;
						break;
					}
					return fail(ps, "expected , or } in an object");
				}
			}
			break;
		default:
			m->type = PBH_JSON_NUMBER;
			if (parse_number(ps, &m->is_integer) != 0)
				return fail(ps, "unexpected character");
			break;
	}
	m->raw = start;
	m->raw_len = ps->p - start;
	return 0;
}

int
pbh_json_parse_object(h2o_mem_pool_t *pool, const char *s, size_t len,
					  pbh_json_member_t **members, size_t *count, const char **err)
{
	pbh_json_parser_t ps = {pool, s, s + len, NULL, 0};
	pbh_json_member_t *out = h2o_mem_alloc_pool(pool, sizeof(*out) * MAX_MEMBERS);
	size_t		n = 0,
				i;

	*members = out;
	*count = 0;
	skip_ws(&ps);
	if (ps.p >= ps.end || *ps.p != '{')
	{
		*err = "the body is not a JSON object";
		return -1;
	}
	ps.p++;
	skip_ws(&ps);
	if (ps.p < ps.end && *ps.p == '}')
		ps.p++;
	else
	{
		for (;;)
		{
			const char *name;

			skip_ws(&ps);
			if (ps.p >= ps.end || *ps.p != '"')
			{
				fail(&ps, "expected a member name");
				break;
			}
			if (parse_string(&ps, &name) != 0)
				break;
			skip_ws(&ps);
			if (ps.p >= ps.end || *ps.p != ':')
			{
				fail(&ps, "expected : after a member name");
				break;
			}
			ps.p++;
			if (n == MAX_MEMBERS)
			{
				fail(&ps, "too many members");
				break;
			}
			{
				int			before = ps.exponents;

				if (parse_value(&ps, 1, &out[n]) != 0)
					break;
				out[n].exponent = ps.exponents != before;
			}
			out[n].name = name;
			for (i = 0; i < n; i++)
				if (strcmp(out[i].name, name) == 0)
					break;
			if (i < n)
			{
				fail(&ps, "a member name appears twice");
				break;
			}
			n++;
			skip_ws(&ps);
			if (ps.p < ps.end && *ps.p == ',')
			{
				ps.p++;
				continue;
			}
			if (ps.p < ps.end && *ps.p == '}')
			{
				ps.p++;
				break;
			}
			fail(&ps, "expected , or } in an object");
			break;
		}
	}
	if (ps.err == NULL)
	{
		skip_ws(&ps);
		if (ps.p != ps.end)
			fail(&ps, "data after the JSON object");
	}
	if (ps.err != NULL)
	{
		*err = ps.err;
		return -1;
	}
	*count = n;
	return 0;
}

size_t
pbh_json_escape(char *buf, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	char	   *w = buf;
	size_t		i;

	*w++ = '"';
	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		switch (c)
		{
			case '"':
				*w++ = '\\';
				*w++ = '"';
				break;
			case '\\':
				*w++ = '\\';
				*w++ = '\\';
				break;
			case '\n':
				*w++ = '\\';
				*w++ = 'n';
				break;
			case '\r':
				*w++ = '\\';
				*w++ = 'r';
				break;
			case '\t':
				*w++ = '\\';
				*w++ = 't';
				break;
			default:
				if (c < 0x20 || c == 0x7F)
				{
					*w++ = '\\';
					*w++ = 'u';
					*w++ = '0';
					*w++ = '0';
					*w++ = hex[c >> 4];
					*w++ = hex[c & 15];
				}
				else
					*w++ = (char) c;
		}
	}
	*w++ = '"';
	return w - buf;
}

/* does raw (a JSON array, as parse_object returned it) hold the string want? */
int
pbh_json_array_has_string(h2o_mem_pool_t *pool, const char *raw, size_t len, const char *want)
{
	pbh_json_parser_t ps = {pool, raw, raw + len, NULL, 0};

	skip_ws(&ps);
	if (ps.p >= ps.end || *ps.p != '[')
		return 0;
	ps.p++;
	for (;;)
	{
		pbh_json_member_t e;

		skip_ws(&ps);
		if (ps.p < ps.end && *ps.p == ']')
			return 0;
		if (parse_value(&ps, 1, &e) != 0)
			return 0;
		if (e.type == PBH_JSON_STRING && strcmp(e.str, want) == 0)
			return 1;
		skip_ws(&ps);
		if (ps.p < ps.end && *ps.p == ',')
			ps.p++;
	}
}

/*
 * Money goes out as decimal strings ("10.50"), never as JSON numbers, which
 * most clients read as binary floating point.  The database's JSON (jsonb
 * output: well-formed, numbers with their scale) is copied with the numeric
 * value of every member named like an amount put in quotes.
 */
static const char *const amount_members[] = {
	"amount", "posted_amount", "balance", "pending_out", "pending_in", "available",
	"overdraft_limit", "posted", "balance_after", "debit", "credit", "daily_limit",
	"monthly_limit", NULL
};

char *
pbh_json_quote_amounts(h2o_mem_pool_t *pool, const char *s, size_t len, size_t *outlen)
{
	char	   *out = h2o_mem_alloc_pool(pool, len * 2 + 1);
	char	   *w = out;
	const char *p = s,
			   *end = s + len;
	const char *key = NULL;
	size_t		keylen = 0;

	while (p < end)
	{
		if (*p == '"')
		{
			const char *start = p++;

			while (p < end && *p != '"')
			{
				/* an escape, unless the text ends with its backslash */
				if (*p == '\\' && p + 1 < end)
					p++;
				p++;
			}
			if (p < end)
				p++;
			memcpy(w, start, p - start);
			w += p - start;
			/* a member name when a colon follows */
			{
				const char *q = p;

				while (q < end && (*q == ' ' || *q == '\n'))
					q++;
				if (q < end && *q == ':')
				{
					key = start + 1;
					keylen = p - start - 2;
				}
				else
					key = NULL;
			}
			continue;
		}
		if (key != NULL && (*p == '-' || (*p >= '0' && *p <= '9')))
		{
			int			money = 0;

			for (const char *const *m = amount_members; *m != NULL; m++)
				if (strlen(*m) == keylen && memcmp(*m, key, keylen) == 0)
					money = 1;
			if (money)
				*w++ = '"';
			while (p < end && (*p == '-' || *p == '+' || *p == '.' || *p == 'e' || *p == 'E' ||
							   (*p >= '0' && *p <= '9')))
				*w++ = *p++;
			if (money)
				*w++ = '"';
			key = NULL;
			continue;
		}
		if (*p == ',' || *p == '{' || *p == '[' || *p == '}' || *p == ']')
			key = NULL;
		*w++ = *p++;
	}
	*outlen = w - out;
	return out;
}
