/*-------------------------------------------------------------------------
 *
 * limits.c
 *		Token-bucket rate limits, checked before any database work:
 *
 *		  class   routes                              keyed by
 *		  auth    anonymous ones (register, login,    client address
 *		          refresh) and /v1/mfa/...
 *		  read    GET                                 subject, and address
 *		  write   the rest                            subject, and address
 *
 *		A subject is a verified token's sub claim or an API key (its
 *		SHA-256).  Each class has a rate (tokens per second) and a burst
 *		(bucket size); read and write routes also share one looser bucket
 *		per address (--rate-address), which stops one host whatever
 *		credentials it holds.  A request over a limit gets 429 problem+json
 *		(code rate_limited) with Retry-After in whole seconds (at least 1)
 *		and costs no query.  /livez, /readyz, /metrics and the OpenAPI
 *		document are answered before any of this (ops.c).
 *
 * Invariants:
 *	- One table for the whole server, shared by the event-loop threads: a
 *	  key's bucket is the same whichever thread its connection landed on
 *	  (SO_REUSEPORT), so a client gets the configured rate and burst on one
 *	  connection or on many.  Each set of the table has its own spin flag,
 *	  beside its entries (another set's flag is on another cache line),
 *	  held only while its SET_WAYS entries are searched and one is updated
 *	  (no call, no allocation inside): threads meet only on the same set.
 *	  The loops' clocks differ by at most a loop iteration; a bucket is
 *	  never refilled backwards.
 *	- O(1) and bounded: the table is fixed (--rate-limit-entries in all,
 *	  24 bytes each, 384 KiB by default; sets of SET_WAYS found by a keyed
 *	  hash of the kind and identity).  A
 *	  new key takes an empty entry of its set, else the one idle longest.
 *	  A flood of distinct addresses or subjects therefore never grows
 *	  memory; it can only push out idle keys, and a key pushed out starts
 *	  again with a full bucket (leniency for that key, bounded by its
 *	  burst).  The hash key is random per process, so a client cannot aim
 *	  at another's set.
 *	- IPv6 clients are keyed by their /64, which one host usually holds
 *	  whole; IPv4 by the address.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <math.h>
#include <sched.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/random.h>

#include "pgbank_http.h"

#define SET_WAYS 8

/* the kinds of bucket, part of the key */
enum
{
	KIND_ADDR_AUTH = 1,
	KIND_ADDR_ANY,
	KIND_SUBJ_READ,
	KIND_SUBJ_WRITE
};

typedef struct st_pbh_bucket_t
{
	uint64_t	key;			/* 0: empty */
	uint64_t	last_ms;		/* the loop's clock at the last refill */
	double		tokens;
} pbh_bucket_t;

/* a set of the table: its entries and the flag a thread holds to use them */
typedef struct st_pbh_set_t
{
	pbh_bucket_t ways[SET_WAYS];
	unsigned char busy;
} pbh_set_t;

typedef struct st_pbh_rate_t
{
	double		per_ms;			/* tokens per millisecond */
	double		burst;
} pbh_rate_t;

static pbh_rate_t rates[KIND_SUBJ_WRITE + 1];
static uint64_t hash_key[2];
static size_t nsets;

static pbh_set_t *table;		/* nsets sets, shared by the threads */

/* a keyed 64-bit hash of kind and bytes (multiply-xorshift rounds) */
static uint64_t
key_of(int kind, const void *data, size_t len)
{
	const unsigned char *p = data;
	uint64_t	h = hash_key[0] ^ ((uint64_t) kind << 56) ^ len;

	while (len >= 8)
	{
		uint64_t	w;

		memcpy(&w, p, 8);
		h ^= w * 0x9E3779B97F4A7C15ULL;
		h = (h ^ (h >> 29)) * 0xBF58476D1CE4E5B9ULL;
		p += 8;
		len -= 8;
	}
	if (len > 0)
	{
		uint64_t	w = 0;

		memcpy(&w, p, len);
		h ^= w * 0x9E3779B97F4A7C15ULL;
		h = (h ^ (h >> 29)) * 0xBF58476D1CE4E5B9ULL;
	}
	h ^= hash_key[1];
	h = (h ^ (h >> 32)) * 0x94D049BB133111EBULL;
	h ^= h >> 29;
	return h ? h : 1;
}

int
pbh_limits_init(void)
{
	int			r[][2] = {
		{0, 0},
		{pbh_config.rate_auth, pbh_config.burst_auth},
		{pbh_config.rate_address, pbh_config.burst_address},
		{pbh_config.rate_read, pbh_config.burst_read},
		{pbh_config.rate_write, pbh_config.burst_write},
	};

	for (int k = KIND_ADDR_AUTH; k <= KIND_SUBJ_WRITE; k++)
	{
		rates[k].per_ms = (double) r[k][0] / 1000.0;
		rates[k].burst = (double) r[k][1];
		if (rates[k].burst < 1.0)
			rates[k].burst = 1.0;
	}
	nsets = pbh_config.rate_limit_entries / SET_WAYS;
	if (pbh_config.rate_limit && (table = calloc(nsets, sizeof(pbh_set_t))) == NULL)
		return -1;
	if (getrandom(hash_key, sizeof(hash_key), 0) != (ssize_t) sizeof(hash_key))
	{
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		hash_key[0] = (uint64_t) ts.tv_nsec * 0x9E3779B97F4A7C15ULL ^ (uint64_t) getpid();
		hash_key[1] = (uint64_t) ts.tv_sec * 0xBF58476D1CE4E5B9ULL;
	}
	return 0;
}

pbh_limit_class_t
pbh_limits_class(const pbh_route_t *route)
{
	if ((route->roles & PBH_ROLE_ANON) || strncmp(route->pattern, "/v1/mfa/", 8) == 0)
		return PBH_LIMIT_AUTH;
	if (strcmp(route->method, "GET") == 0)
		return PBH_LIMIT_READ;
	return PBH_LIMIT_WRITE;
}

/*
 * Take one token from the key's bucket: 0, or the seconds until one is
 * there again.
 */
static int
take(pbh_thread_t *t, int kind, uint64_t key)
{
	const pbh_rate_t *rate = &rates[kind];
	uint64_t	now = h2o_now(t->ctx.loop);
	pbh_set_t  *ts = &table[key % nsets];
	pbh_bucket_t *set = ts->ways,
			   *b = NULL,
			   *victim = NULL;
	double		tokens,
				wait;
	int			taken;

	/* held for a few instructions: a waiter yields rather than spin on a
	 * holder the scheduler preempted */
	while (__atomic_test_and_set(&ts->busy, __ATOMIC_ACQUIRE))
		sched_yield();
	for (int i = 0; i < SET_WAYS; i++)
	{
		if (set[i].key == key)
		{
			b = &set[i];
			break;
		}
		if (victim == NULL || set[i].key == 0 ||
			(victim->key != 0 && set[i].last_ms < victim->last_ms))
			victim = &set[i];
	}
	if (b == NULL)
	{
		b = victim;
		b->key = key;
		b->tokens = rate->burst;
		b->last_ms = now;
	}
	else if (now > b->last_ms)
	{
		b->tokens += (now - b->last_ms) * rate->per_ms;
		if (b->tokens > rate->burst)
			b->tokens = rate->burst;
		b->last_ms = now;
	}
	taken = b->tokens >= 1.0;
	if (taken)
		b->tokens -= 1.0;
	tokens = b->tokens;
	__atomic_clear(&ts->busy, __ATOMIC_RELEASE);
	if (taken)
		return 0;
	wait = ceil((1.0 - tokens) / rate->per_ms / 1000.0);
	return wait < 1.0 ? 1 : wait > 86400.0 ? 86400 : (int) wait;
}

static int
too_many(h2o_req_t *req, int seconds, const char *what)
{
	pbh_thread_t *t = (pbh_thread_t *) req->conn->ctx;
	char	   *ra = h2o_mem_alloc_pool(&req->pool, 16);
	char		detail[128];

	PBH_COUNT(t->n_rate_limited);
	snprintf(ra, 16, "%d", seconds);
	snprintf(detail, sizeof(detail), "Too many requests from this %s; retry in %d second%s.",
			 what, seconds, seconds == 1 ? "" : "s");
	h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, ra, strlen(ra));
	pbh_problem_send(req, 429, "rate_limited", "Too many requests", detail);
	return 1;
}

int
pbh_limits_address(h2o_req_t *req, pbh_limit_class_t cls)
{
	pbh_thread_t *t = (pbh_thread_t *) req->conn->ctx;
	struct sockaddr_storage ss;
	socklen_t	len;
	int			kind = cls == PBH_LIMIT_AUTH ? KIND_ADDR_AUTH : KIND_ADDR_ANY;
	uint64_t	key;
	int			wait;

	if (!pbh_config.rate_limit)
		return 0;
	len = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *) &ss);
	if (len == 0)
		return 0;
	if (ss.ss_family == AF_INET)
		key = key_of(kind, &((struct sockaddr_in *) &ss)->sin_addr, 4);
	else if (ss.ss_family == AF_INET6)
	{
		const unsigned char *a = ((struct sockaddr_in6 *) &ss)->sin6_addr.s6_addr;

		/* an IPv4-mapped address is the IPv4 address; others by their /64 */
		if (IN6_IS_ADDR_V4MAPPED(&((struct sockaddr_in6 *) &ss)->sin6_addr))
			key = key_of(kind, a + 12, 4);
		else
			key = key_of(kind, a, 8);
	}
	else
		return 0;
	if ((wait = take(t, kind, key)) == 0)
		return 0;
	return too_many(req, wait, "address");
}

int
pbh_limits_subject(h2o_req_t *req, pbh_limit_class_t cls, const void *id, size_t len)
{
	pbh_thread_t *t = (pbh_thread_t *) req->conn->ctx;
	int			kind;
	int			wait;

	if (!pbh_config.rate_limit || cls == PBH_LIMIT_AUTH)
		return 0;
	kind = cls == PBH_LIMIT_READ ? KIND_SUBJ_READ : KIND_SUBJ_WRITE;
	if ((wait = take(t, kind, key_of(kind, id, len))) == 0)
		return 0;
	return too_many(req, wait, "subject");
}

