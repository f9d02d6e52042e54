/*
 * fuzz_args.c: JSON body to route arguments, and the amount and id
 * checks.  The input is parsed as a JSON object; every argument of every
 * route is then given the member of its name (and, as text, the member's
 * raw value, as if it came from the path or the query).  Invariants: no
 * crash or sanitizer report; an accepted value is NUL-terminated and,
 * for its type, what the database may be given: ids plain digits without a
 * leading zero (non-negative integers the same, or "0"), amounts digits
 * with at most one point and digits on both sides, minor units positive
 * digits of at most 16, enums one of their choices.  A rejected value names a problem code and a detail format.
 * pbh_amount_ok is also checked against an independent reading of the
 * input as a decimal string.
 */
#include <ctype.h>

#include "fuzz_common.h"

/* the reference: ^[0-9]{1,20}(\.[0-9]{1,20})?$ */
static int
reference_amount(const char *s)
{
	size_t		i = 0,
				d = 0,
				f = 0;

	while (isdigit((unsigned char) s[i]))
		i++, d++;
	if (d < 1 || d > 20)
		return 0;
	if (s[i] == '.')
	{
		i++;
		while (isdigit((unsigned char) s[i]))
			i++, f++;
		if (f < 1 || f > 20)
			return 0;
	}
	return s[i] == '\0';
}

static void
check_accepted(const pbh_arg_t *a, const char *v)
{
	size_t		len = strlen(v);

	switch (a->type)
	{
		case PBH_T_ID:
			FUZZ_ASSERT(len >= 1 && len <= 18 && v[0] != '0');
			for (size_t i = 0; i < len; i++)
				FUZZ_ASSERT(isdigit((unsigned char) v[i]));
			break;
		case PBH_T_NATURAL:
			FUZZ_ASSERT(len >= 1 && len <= 18 && (v[0] != '0' || len == 1));
			for (size_t i = 0; i < len; i++)
				FUZZ_ASSERT(isdigit((unsigned char) v[i]));
			break;
		case PBH_T_AMOUNT:
			FUZZ_ASSERT(reference_amount(v));
			break;
		case PBH_T_MINOR:
			FUZZ_ASSERT(len >= 1 && len <= 16 && v[0] != '-' && strcmp(v, "0") != 0);
			break;
		case PBH_T_ENUM:
			{
				int			found = 0;

				for (const char *const *c = a->choices; *c != NULL; c++)
					found |= strcmp(*c, v) == 0;
				FUZZ_ASSERT(found);
			}
			break;
		default:
			break;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int	initialised;
	h2o_mem_pool_t pool;
	pbh_json_member_t *members = NULL;
	size_t		n = 0;
	const char *err;
	char	   *text;

	if (!initialised)
	{
		pbh_routes_init();
		initialised = 1;
	}
	h2o_mem_init_pool(&pool);
	text = fuzz_cstring(&pool, data, size);
	FUZZ_ASSERT(pbh_amount_ok(text) == reference_amount(text));
	(void) pbh_digits_ok(text, 1, 0);
	if (pbh_json_parse_object(&pool, (const char *) data, size, &members, &n, &err) != 0)
		n = 0;
	for (int r = 0; r < pbh_nroutes; r++)
	{
		for (int i = 0; i < pbh_routes[r].nargs; i++)
		{
			const pbh_arg_t *a = &pbh_routes[r].args[i];
			pbh_arg_error_t e;
			const char *v;

			for (size_t k = 0; k < n; k++)
			{
				if (strcmp(members[k].name, a->name) != 0)
					continue;
				v = pbh_arg_value(&pool, a, NULL, &members[k], &e);
				if (e.code != NULL)
					FUZZ_ASSERT(v == NULL && e.format != NULL);
				else if (v != NULL)
					check_accepted(a, v);
			}
			v = pbh_arg_value(&pool, a, text, NULL, &e);
			if (e.code != NULL)
				FUZZ_ASSERT(v == NULL && e.format != NULL);
			else if (v != NULL)
				check_accepted(a, v);
		}
	}
	h2o_mem_clear_pool(&pool);
	return 0;
}
