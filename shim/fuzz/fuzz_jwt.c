/*
 * fuzz_jwt.c: pbh_jwt_verify on any bytes, twice: as received (the HMAC is
 * checked before anything is parsed, so only a token signed with the
 * secret gets further: the seeds hold one), and signed here (the input as
 * "header.payload" with its correct signature appended), which drives the
 * header and claim parsers with anything.  Invariants: no crash or
 * sanitizer report; unsigned input is never accepted (a PBH_JWT_OK for the
 * raw input must carry the signed seeds' header, i.e. be a seed or a
 * mutation that kept its signature valid, which the fuzzer cannot forge).
 */
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "fuzz_common.h"

#define SECRET "fuzz-secret-0123456789-0123456789-0123456789"

static const char *const signed_seed_prefix = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.";

static size_t
b64url(const unsigned char *in, size_t n, char *out)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t		w = 0;
	unsigned	acc = 0;
	int			bits = 0;

	for (size_t i = 0; i < n; i++)
	{
		acc = (acc << 8) | in[i];
		bits += 8;
		while (bits >= 6)
		{
			bits -= 6;
			out[w++] = a[(acc >> bits) & 63];
		}
	}
	if (bits > 0)
		out[w++] = a[(acc << (6 - bits)) & 63];
	return w;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	h2o_mem_pool_t pool;
	pbh_jwt_result_t r;
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	char	   *signed_token;
	size_t		n;

	pbh_config.jwt_secret = SECRET;
	pbh_config.jwt_issuer = "pgbank";
	pbh_config.jwt_audience = "pgbank-api";
	pbh_config.jwt_clock_skew = 30;
	h2o_mem_init_pool(&pool);

	r = pbh_jwt_verify(&pool, (const char *) data, size, 1700000000, NULL);
	FUZZ_ASSERT(pbh_jwt_result_text(r) != NULL);
	if (r == PBH_JWT_OK)
		FUZZ_ASSERT(size > strlen(signed_seed_prefix) &&
					memcmp(data, signed_seed_prefix, strlen(signed_seed_prefix)) == 0);

	HMAC(EVP_sha256(), SECRET, (int) strlen(SECRET), data, size, mac, &maclen);
	signed_token = h2o_mem_alloc_pool(&pool, size + 2 + 2 * maclen);
	memcpy(signed_token, data, size);
	signed_token[size] = '.';
	n = size + 1 + b64url(mac, maclen, signed_token + size + 1);
	r = pbh_jwt_verify(&pool, signed_token, n, 1700000000, NULL);
	FUZZ_ASSERT(pbh_jwt_result_text(r) != NULL);

	h2o_mem_clear_pool(&pool);
	return 0;
}
