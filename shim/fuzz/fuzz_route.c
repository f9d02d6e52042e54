/*
 * fuzz_route.c: pbh_route_match on any method and path (the input's first
 * line is the method, the rest the path).  Invariants: no crash or
 * sanitizer report; a match returns a route of that method whose {id}
 * segments lie inside the path and are non-empty; no match is a 404 or a
 * 405 whose Allow list is NUL-terminated inside its buffer.
 */
#include "fuzz_common.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int	initialised;
	const char *nl = memchr(data, '\n', size);
	const char *method = (const char *) data;
	size_t		mlen = nl ? (size_t) (nl - method) : 0;
	const char *path = nl ? nl + 1 : method;
	size_t		plen = size - (nl ? mlen + 1 : 0);
	h2o_iovec_t ids[8];
	int			nids = 0,
				status = 0;
	char		allow[128];
	const pbh_route_t *r;

	if (!initialised)
	{
		pbh_routes_init();
		initialised = 1;
	}
	memset(allow, 'x', sizeof(allow));
	r = pbh_route_match(method, mlen, path, plen, ids, &nids, &status, allow, sizeof(allow));
	if (r != NULL)
	{
		FUZZ_ASSERT(strlen(r->method) == mlen && memcmp(r->method, method, mlen) == 0);
		FUZZ_ASSERT(nids >= 0 && nids <= 8);
		for (int i = 0; i < nids; i++)
			FUZZ_ASSERT(ids[i].len > 0 && ids[i].base >= path && ids[i].base + ids[i].len <= path + plen);
	}
	else
	{
		FUZZ_ASSERT(status == 404 || status == 405);
		if (status == 405)
			FUZZ_ASSERT(memchr(allow, '\0', sizeof(allow)) != NULL);
	}
	return 0;
}
