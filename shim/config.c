/*-------------------------------------------------------------------------
 *
 * config.c
 *		pgbank-http's settings: each has a flag and an environment variable
 *		(the flag wins), a default, and a check.  A bad setting stops the
 *		server before it binds anything, with a message naming the setting.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <stddef.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "pgbank_http.h"

pbh_config_t pbh_config;

typedef enum
{
	OPT_STRING,					/* char * */
	OPT_INT,					/* int, from min to max */
	OPT_SIZE,					/* size_t, from min to max */
	OPT_FILE,					/* char *: the file's first line(s), read now */
	OPT_LIST,					/* char **, NULL-terminated: comma-separated */
	OPT_BOOL					/* int, 0 or 1 */
} opt_kind_t;

typedef struct st_pbh_option_t
{
	const char *flag;
	const char *env;
	opt_kind_t	kind;
	const char *def;
	long		min;
	long		max;
	const char *help;
	size_t		offset;			/* of the field in pbh_config */
} pbh_option_t;

#define FIELD(f) offsetof(pbh_config_t, f)

/*
 * The settings, in --help order (getopt_long's val is 256 + the index).  A
 * new setting is one row here and its field in pbh_config_t.
 */
static const pbh_option_t options[] = {
	{"listen", "PGBANK_HTTP_LISTEN", OPT_STRING, "127.0.0.1", 0, 0,
	"address to listen on (numeric IPv4 or IPv6)", FIELD(listen_addr)},
	{"port", "PGBANK_HTTP_PORT", OPT_INT, "8080", 1, 65535, "TCP port", FIELD(port)},
	{"dsn", "PGBANK_HTTP_DSN", OPT_STRING, "user=bank_gateway dbname=postgres", 0, 0,
	"libpq connection string; the login must be bank_gateway (or a member of it)", FIELD(dsn)},
	{"threads", "PGBANK_HTTP_THREADS", OPT_INT, "0", 0, 256,
	"event-loop threads (0: one per CPU)", FIELD(threads)},
	{"connections", "PGBANK_HTTP_CONNECTIONS", OPT_INT, "4", 1, 256,
	"database connections per thread", FIELD(connections)},
	{"pipeline-depth", "PGBANK_HTTP_PIPELINE_DEPTH", OPT_INT, "4", 1, 256,
	"requests in flight on one database connection", FIELD(pipeline_depth)},
	{"queue-limit", "PGBANK_HTTP_QUEUE_LIMIT", OPT_INT, "1024", 0, 1000000,
	"requests waiting for a connection per thread before 503", FIELD(queue_limit)},
	{"jwt-secret-file", "PGBANK_HTTP_JWT_SECRET_FILE", OPT_FILE, NULL, 0, 0,
	"file holding pgbank.jwt_secret (32+ bytes; or PGBANK_HTTP_JWT_SECRET)", FIELD(jwt_secret)},
	{"jwt-issuer", "PGBANK_HTTP_JWT_ISSUER", OPT_STRING, "pgbank", 0, 0,
	"iss of accepted tokens (pgbank.jwt_issuer)", FIELD(jwt_issuer)},
	{"jwt-audience", "PGBANK_HTTP_JWT_AUDIENCE", OPT_STRING, "pgbank-api", 0, 0,
	"aud of accepted tokens (pgbank.jwt_audience)", FIELD(jwt_audience)},
	{"jwt-clock-skew", "PGBANK_HTTP_JWT_CLOCK_SKEW", OPT_INT, "30", 0, 300,
	"seconds of tolerance on exp and nbf (pgbank.jwt_clock_skew)", FIELD(jwt_clock_skew)},
	{"statement-timeout", "PGBANK_HTTP_STATEMENT_TIMEOUT", OPT_INT, "5000", 1, 600000,
	"statement_timeout of each request, milliseconds", FIELD(statement_timeout)},
	{"lock-timeout", "PGBANK_HTTP_LOCK_TIMEOUT", OPT_INT, "2000", 1, 600000,
	"lock_timeout of each request, milliseconds", FIELD(lock_timeout)},
	{"max-body", "PGBANK_HTTP_MAX_BODY", OPT_SIZE, "65536", 64, 16777216,
	"largest request body, bytes", FIELD(max_body)},
	{"request-timeout", "PGBANK_HTTP_REQUEST_TIMEOUT", OPT_INT, "10000", 100, 600000,
	"HTTP/1 request and idle timeout, milliseconds", FIELD(request_timeout)},
	{"retries", "PGBANK_HTTP_RETRIES", OPT_INT, "3", 0, 10,
	"retries of a request after a serialization failure or deadlock", FIELD(retries)},
	{"cors-origins", "PGBANK_HTTP_CORS_ORIGINS", OPT_LIST, "", 0, 0,
	"comma-separated origins allowed by CORS (exact match; none by default)", FIELD(cors_origins)},
	{"access-log", "PGBANK_HTTP_ACCESS_LOG", OPT_BOOL, "0", 0, 1,
	"1: one JSON line per request on stdout", FIELD(access_log)},
	{"api-key-cache", "PGBANK_HTTP_API_KEY_CACHE", OPT_INT, "30", 0, 3600,
	"seconds an API key's role is remembered (0: ask the database every time)", FIELD(api_key_cache)},
	{"read-connections", "PGBANK_HTTP_READ_CONNECTIONS", OPT_INT, "2", 0, 256,
	"more database connections per thread, for read-only routes only", FIELD(read_connections)},
	{"events-max-streams", "PGBANK_HTTP_EVENTS_MAX_STREAMS", OPT_INT, "1000", 1, 1000000,
	"open GET /v1/events streams per thread before 503", FIELD(events_max_streams)},
	{"events-per-customer", "PGBANK_HTTP_EVENTS_PER_CUSTOMER", OPT_INT, "5", 1, 1000,
	"open event streams per customer before 429", FIELD(events_per_customer)},
	{"events-heartbeat", "PGBANK_HTTP_EVENTS_HEARTBEAT", OPT_INT, "15", 1, 3600,
	"seconds between heartbeat comments on an event stream", FIELD(events_heartbeat)},
	{"events-buffer", "PGBANK_HTTP_EVENTS_BUFFER", OPT_INT, "262144", 4096, 67108864,
	"bytes an event stream holds for a slow client before it ends the stream", FIELD(events_buffer)},
	{"events-retry", "PGBANK_HTTP_EVENTS_RETRY", OPT_INT, "2000", 0, 600000,
	"milliseconds an event-stream client waits before reconnecting (SSE retry:)", FIELD(events_retry)},
};

#define NOPTIONS (sizeof(options) / sizeof(options[0]))

void
pbh_config_usage(FILE *out)
{
	size_t		i;

	fprintf(out,
			"pgbank-http " PBH_VERSION " - the HTTP server of pgbank\n\n"
			"Usage: pgbank-http [OPTION]...\n\n"
			"Each option also reads the environment variable shown; the flag wins.\n\n");
	for (i = 0; i < NOPTIONS; i++)
	{
		fprintf(out, "  --%s=%s\n      %s\n      env %s%s%s\n",
				options[i].flag,
				options[i].kind == OPT_INT || options[i].kind == OPT_BOOL ? "N" :
				options[i].kind == OPT_FILE ? "PATH" : "VALUE",
				options[i].help, options[i].env,
				options[i].def && options[i].def[0] ? ", default " : "",
				options[i].def && options[i].def[0] ? options[i].def : "");
	}
	fprintf(out,
			"  --help\n      this text\n"
			"  --version\n      the version\n\n"
			"The token secret must equal the cluster's pgbank.jwt_secret.  Listen on a\n"
			"loopback address unless a TLS-terminating proxy sits in front.\n");
}

static int
parse_int(const char *s, long min, long max, long *out)
{
	char	   *end;
	long		v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *s == '\0' || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

static char *
read_secret_file(const char *flag, const char *path, char *err, size_t errlen)
{
	FILE	   *f = fopen(path, "r");
	char		buf[4096];
	size_t		n;

	if (f == NULL)
	{
		snprintf(err, errlen, "--%s: cannot open %s: %s", flag, path, strerror(errno));
		return NULL;
	}
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	return strdup(buf);
}

static char **
split_list(const char *s)
{
	char	  **list = calloc(strlen(s) + 2, sizeof(char *));
	char	   *copy = strdup(s);
	char	   *tok,
			   *save = NULL;
	int			n = 0;

	for (tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save))
	{
		while (*tok == ' ')
			tok++;
		if (*tok != '\0')
			list[n++] = tok;
	}
	list[n] = NULL;
	return list;
}

/* apply one setting's text value */
static int
apply(size_t i, const char *value, char *err, size_t errlen)
{
	const pbh_option_t *o = &options[i];
	char	   *field = (char *) &pbh_config + o->offset;
	long		v = 0;

	if (o->kind == OPT_INT || o->kind == OPT_SIZE || o->kind == OPT_BOOL)
	{
		if (parse_int(value, o->min, o->max, &v) != 0)
		{
			snprintf(err, errlen, "--%s (%s): \"%s\" is not an integer from %ld to %ld",
					 o->flag, o->env, value, o->min, o->max);
			return -1;
		}
	}
	switch (o->kind)
	{
		case OPT_STRING:
			*(char **) field = strdup(value);
			break;
		case OPT_INT:
		case OPT_BOOL:
			*(int *) field = (int) v;
			break;
		case OPT_SIZE:
			*(size_t *) field = (size_t) v;
			break;
		case OPT_FILE:
			if ((*(char **) field = read_secret_file(o->flag, value, err, errlen)) == NULL)
				return -1;
			break;
		case OPT_LIST:
			*(char ***) field = split_list(value);
			break;
	}
	return 0;
}

/* the checks that span settings or need more than a range */
static int
check(char *err, size_t errlen)
{
	unsigned char addr[sizeof(struct in6_addr)];
	char	  **o;
	long		ncpu;

	if (inet_pton(AF_INET, pbh_config.listen_addr, addr) != 1 &&
		inet_pton(AF_INET6, pbh_config.listen_addr, addr) != 1)
	{
		snprintf(err, errlen, "--listen (PGBANK_HTTP_LISTEN): \"%s\" is not a numeric IPv4 or IPv6 address",
				 pbh_config.listen_addr);
		return -1;
	}
	if (pbh_config.jwt_secret == NULL)
	{
		snprintf(err, errlen, "no token secret: set --jwt-secret-file, PGBANK_HTTP_JWT_SECRET_FILE or PGBANK_HTTP_JWT_SECRET "
				 "(the cluster's pgbank.jwt_secret)");
		return -1;
	}
	if (strlen(pbh_config.jwt_secret) < 32)
	{
		snprintf(err, errlen, "the token secret is shorter than 32 bytes (pgbank.jwt_secret needs 32+)");
		return -1;
	}
	if (pbh_config.jwt_issuer[0] == '\0' || pbh_config.jwt_audience[0] == '\0')
	{
		snprintf(err, errlen, "--jwt-issuer and --jwt-audience must not be empty");
		return -1;
	}
	if (pbh_config.dsn[0] == '\0')
	{
		snprintf(err, errlen, "--dsn (PGBANK_HTTP_DSN) must not be empty");
		return -1;
	}
	for (o = pbh_config.cors_origins; *o != NULL; o++)
	{
		if ((strncmp(*o, "http://", 7) != 0 && strncmp(*o, "https://", 8) != 0) ||
			strchr(*o, '/') != strrchr(*o, '/') - 1 || strpbrk(*o, " \t\"*") != NULL)
		{
			snprintf(err, errlen, "--cors-origins: \"%s\" is not an origin (scheme://host[:port], no path, no wildcard)", *o);
			return -1;
		}
	}
	if (pbh_config.threads == 0)
	{
		ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		pbh_config.threads = ncpu > 0 ? (int) ncpu : 1;
	}
	return 0;
}

int
pbh_config_load(int argc, char **argv, char *err, size_t errlen)
{
	struct option longopts[NOPTIONS + 3];
	size_t		i;
	int			c;
	const char *secret_env;

	/* defaults, then the environment */
	for (i = 0; i < NOPTIONS; i++)
	{
		const char *v = getenv(options[i].env);

		if (options[i].def != NULL && apply(i, options[i].def, err, errlen) != 0)
			return -1;
		if (v != NULL && apply(i, v, err, errlen) != 0)
			return -1;
	}
	secret_env = getenv("PGBANK_HTTP_JWT_SECRET");
	if (pbh_config.jwt_secret == NULL && secret_env != NULL)
		pbh_config.jwt_secret = strdup(secret_env);

	/* then the flags */
	for (i = 0; i < NOPTIONS; i++)
	{
		longopts[i].name = options[i].flag;
		longopts[i].has_arg = required_argument;
		longopts[i].flag = NULL;
		longopts[i].val = 256 + (int) i;
	}
	longopts[NOPTIONS] = (struct option) {"help", no_argument, NULL, 'h'};
	longopts[NOPTIONS + 1] = (struct option) {"version", no_argument, NULL, 'V'};
	longopts[NOPTIONS + 2] = (struct option) {NULL, 0, NULL, 0};
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":hV", longopts, NULL)) != -1)
	{
		if (c == 'h')
		{
			pbh_config_usage(stdout);
			exit(0);
		}
		if (c == 'V')
		{
			printf("pgbank-http " PBH_VERSION "\n");
			exit(0);
		}
		if (c == ':')
		{
			snprintf(err, errlen, "%s needs a value", argv[optind - 1]);
			return -1;
		}
		if (c == '?' || c < 256 || c >= 256 + (int) NOPTIONS)
		{
			snprintf(err, errlen, "unknown option %s (see --help)", argv[optind - 1]);
			return -1;
		}
		if (apply((size_t) (c - 256), optarg, err, errlen) != 0)
			return -1;
	}
	if (optind < argc)
	{
		snprintf(err, errlen, "unexpected argument \"%s\" (see --help)", argv[optind]);
		return -1;
	}
	return check(err, errlen);
}
