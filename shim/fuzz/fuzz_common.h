/*-------------------------------------------------------------------------
 *
 * fuzz_common.h
 *		What every libFuzzer target of pgbank-http's parsers shares: a fresh
 *		h2o memory pool per input, and the input as a NUL-terminated copy
 *		(the server's parsers get both forms).  Build and run with
 *		`make fuzz` and scripts/test fuzz.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PBH_FUZZ_COMMON_H
#define PBH_FUZZ_COMMON_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../pgbank_http.h"

/* the input with a NUL after it, in pool */
static inline char *
fuzz_cstring(h2o_mem_pool_t *pool, const uint8_t *data, size_t size)
{
	char	   *s = h2o_mem_alloc_pool(pool, size + 1);

	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

/* abort (a finding) when a claimed invariant does not hold */
#define FUZZ_ASSERT(cond) do { if (!(cond)) abort(); } while (0)

#endif
