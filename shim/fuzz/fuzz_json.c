/*
 * fuzz_json.c: the body parser (pbh_json_parse_object) and the response
 * rewriter (pbh_json_quote_amounts) on any bytes.  Invariants: no crash or
 * sanitizer report; a parsed object's members are NUL-terminated, their raw
 * text lies inside the input, strings decode to valid lengths and to
 * well-formed UTF-8 (json.c refuses invalid UTF-8, in names too); what the
 * rewriter returns is at least as long as its input and at most twice.
 */
#include "fuzz_common.h"

/* RFC 3629 UTF-8, checked the plain way (no table shared with json.c) */
static int
utf8_ok(const unsigned char *s)
{
	while (*s)
	{
		uint32_t	cp;
		int			n;

		if (s[0] < 0x80)
		{
			s++;
			continue;
		}
		if ((s[0] & 0xE0) == 0xC0)
			n = 2, cp = s[0] & 0x1F;
		else if ((s[0] & 0xF0) == 0xE0)
			n = 3, cp = s[0] & 0x0F;
		else if ((s[0] & 0xF8) == 0xF0)
			n = 4, cp = s[0] & 0x07;
		else
			return 0;
		for (int i = 1; i < n; i++)
		{
			if ((s[i] & 0xC0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i] & 0x3F);
		}
		if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
			cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return 0;
		s += n;
	}
	return 1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	h2o_mem_pool_t pool;
	pbh_json_member_t *members;
	size_t		n,
				outlen;
	const char *err;
	char	   *out;
	char		esc[PBH_JSON_ESCAPED_MAX(64)];

	h2o_mem_init_pool(&pool);
	if (pbh_json_parse_object(&pool, (const char *) data, size, &members, &n, &err) == 0)
	{
		for (size_t i = 0; i < n; i++)
		{
			FUZZ_ASSERT(members[i].name != NULL);
			FUZZ_ASSERT(utf8_ok((const unsigned char *) members[i].name));
			for (size_t k = 0; k < i; k++)
				FUZZ_ASSERT(strcmp(members[k].name, members[i].name) != 0);
			FUZZ_ASSERT(members[i].raw >= (const char *) data &&
						members[i].raw + members[i].raw_len <= (const char *) data + size);
			if (members[i].type == PBH_JSON_STRING)
			{
				FUZZ_ASSERT(members[i].str != NULL && strlen(members[i].str) <= members[i].raw_len);
				FUZZ_ASSERT(utf8_ok((const unsigned char *) members[i].str));
			}
			if (members[i].type == PBH_JSON_ARRAY)
				(void) pbh_json_array_has_string(&pool, members[i].raw, members[i].raw_len, "x");
		}
	}
	else
		FUZZ_ASSERT(err != NULL);
	out = pbh_json_quote_amounts(&pool, (const char *) data, size, &outlen);
	if (out != NULL)
		FUZZ_ASSERT(outlen >= size && outlen <= 2 * size);
	{
		size_t		k = size < 64 ? size : 64;
		size_t		w = pbh_json_escape(esc, (const char *) data, k);

		FUZZ_ASSERT(w <= sizeof(esc));
	}
	h2o_mem_clear_pool(&pool);
	return 0;
}
