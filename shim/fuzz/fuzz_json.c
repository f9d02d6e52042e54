/*
 * fuzz_json.c: the body parser (pbh_json_parse_object) and the response
 * rewriter (pbh_json_quote_amounts) on any bytes.  Invariants: no crash or
 * sanitizer report; a parsed object's members are NUL-terminated, their raw
 * text lies inside the input, strings decode to valid lengths; what the
 * rewriter returns is at least as long as its input and at most twice.
 */
#include "fuzz_common.h"

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
			FUZZ_ASSERT(members[i].raw >= (const char *) data &&
						members[i].raw + members[i].raw_len <= (const char *) data + size);
			if (members[i].type == PBH_JSON_STRING)
				FUZZ_ASSERT(members[i].str != NULL && strlen(members[i].str) <= members[i].raw_len);
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
