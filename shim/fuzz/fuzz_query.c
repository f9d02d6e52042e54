/*
 * fuzz_query.c: pbh_parse_query on any query string.  Invariants: no crash
 * or sanitizer report; at most PBH_MAX_QUERY_PARAMS parameters; names are
 * distinct; decoded names and values hold no NUL byte before their end and
 * are no longer than the input.
 */
#include "fuzz_common.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	h2o_mem_pool_t pool;
	pbh_qparam_t qp[PBH_MAX_QUERY_PARAMS];
	int			n = 0,
				rc;
	const char *bad = NULL;

	h2o_mem_init_pool(&pool);
	rc = pbh_parse_query(&pool, (const char *) data, size, qp, &n, &bad);
	FUZZ_ASSERT(n >= 0 && n <= PBH_MAX_QUERY_PARAMS);
	if (rc == 0)
	{
		for (int i = 0; i < n; i++)
		{
			FUZZ_ASSERT(strlen(qp[i].name) <= size && strlen(qp[i].value) <= size);
			for (int j = 0; j < i; j++)
				FUZZ_ASSERT(strcmp(qp[i].name, qp[j].name) != 0);
		}
	}
	else
		FUZZ_ASSERT(bad != NULL && (rc == -1 || rc == -2));
	h2o_mem_clear_pool(&pool);
	return 0;
}
