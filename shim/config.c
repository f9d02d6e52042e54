/*-------------------------------------------------------------------------
 *
 * config.c
 *		pgbank-http's settings: each has a flag and an environment variable
 *		(the flag wins), a default, and a check.  A bad setting stops the
 *		server before it binds anything, with a message naming the setting.
 *
 *		Sources, the later winning: the defaults, the --config-file (one
 *		"name = value" a line, the names those of the flags), the
 *		environment, the flags.  SIGHUP reads them all again, checks them,
 *		and publishes what may change in a running server (pbh_live_t: the
 *		access-log switch, the CORS origins, the token secret, read again
 *		from its file) as a new snapshot; every other setting keeps the
 *		value it had at start.  A reload that fails its checks changes
 *		nothing.
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
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "pgbank_http.h"

pbh_config_t pbh_config;
pbh_live_t *pbh_live_ptr;

/* argv as given to pbh_config_load, for a reload */
static int	saved_argc;
static char **saved_argv;

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
	{"tls-cert", "PGBANK_HTTP_TLS_CERT", OPT_STRING, NULL, 0, 0,
	"PEM certificate (chain) file: serve HTTPS only (with --tls-key)", FIELD(tls_cert)},
	{"tls-key", "PGBANK_HTTP_TLS_KEY", OPT_STRING, NULL, 0, 0,
	"PEM private key file of --tls-cert", FIELD(tls_key)},
	{"http2", "PGBANK_HTTP_HTTP2", OPT_BOOL, "0", 0, 1,
	"1: also offer HTTP/2 by ALPN (needs TLS; never h2c). This h2o lacks the fix for HTTP/2\n"
	"      rapid reset (CVE-2023-44487): a client can make it burn CPU; leave 0 on\n"
	"      anything reachable by untrusted clients", FIELD(http2)},
	{"hsts-max-age", "PGBANK_HTTP_HSTS_MAX_AGE", OPT_INT, "31536000", 0, 63072000,
	"max-age of Strict-Transport-Security, sent on every response when TLS is on", FIELD(hsts_max_age)},
	{"replica-dsn", "PGBANK_HTTP_REPLICA_DSN", OPT_STRING, NULL, 0, 0,
	"libpq connection string of a streaming replica for read-only routes (none by default)",
	FIELD(replica_dsn)},
	{"replica-connections", "PGBANK_HTTP_REPLICA_CONNECTIONS", OPT_INT, "2", 1, 256,
	"database connections per thread on the replica", FIELD(replica_connections)},
	{"replica-max-lag", "PGBANK_HTTP_REPLICA_MAX_LAG", OPT_INT, "1000", 10, 600000,
	"reads go to the primary while the replica lags more, milliseconds", FIELD(replica_max_lag)},
	{"replica-poll", "PGBANK_HTTP_REPLICA_POLL", OPT_INT, "10", 1, 10000,
	"how often each thread asks the replica's replay position, milliseconds", FIELD(replica_poll)},
	{"replica-read-your-writes", "PGBANK_HTTP_REPLICA_READ_YOUR_WRITES", OPT_BOOL, "1", 0, 1,
	"0: a subject's reads may miss its own writes (only to measure)", FIELD(replica_ryw)},
	{"config-file", "PGBANK_HTTP_CONFIG_FILE", OPT_STRING, NULL, 0, 0,
		"file of settings, one \"name = value\" a line (names as the flags'), read before the\n"
		"      environment and the flags; SIGHUP reads every source again and applies\n"
		"      access-log, cors-origins and the token secret (read again from\n"
		"      jwt-secret-file); the others need a restart", FIELD(config_file)},
	{"max-headers", "PGBANK_HTTP_MAX_HEADERS", OPT_INT, "64", 1, 90,
	"most header fields in a request, else 431 (h2o itself refuses more than 100 with a bare 400)",
	FIELD(max_headers)},
	{"max-header-size", "PGBANK_HTTP_MAX_HEADER_SIZE", OPT_INT, "16384", 1024, 262144,
	"most bytes of request line and header fields, else 431", FIELD(max_header_size)},
	{"max-connections", "PGBANK_HTTP_MAX_CONNECTIONS", OPT_INT, "1024", 1, 1000000,
	"open client connections of the whole server; more are closed at once", FIELD(max_connections)},
	{"rate-limit", "PGBANK_HTTP_RATE_LIMIT", OPT_BOOL, "1", 0, 1,
	"0: no rate limits at all", FIELD(rate_limit)},
	{"rate-auth", "PGBANK_HTTP_RATE_AUTH", OPT_INT, "5", 1, 1000000,
	"requests per second per client address to register, login, refresh and MFA routes", FIELD(rate_auth)},
	{"burst-auth", "PGBANK_HTTP_BURST_AUTH", OPT_INT, "10", 1, 1000000,
	"burst of --rate-auth", FIELD(burst_auth)},
	{"rate-read", "PGBANK_HTTP_RATE_READ", OPT_INT, "100", 1, 1000000,
	"GET requests per second per subject (token sub or API key)", FIELD(rate_read)},
	{"burst-read", "PGBANK_HTTP_BURST_READ", OPT_INT, "200", 1, 1000000,
	"burst of --rate-read", FIELD(burst_read)},
	{"rate-write", "PGBANK_HTTP_RATE_WRITE", OPT_INT, "20", 1, 1000000,
	"other requests per second per subject (token sub or API key)", FIELD(rate_write)},
	{"burst-write", "PGBANK_HTTP_BURST_WRITE", OPT_INT, "40", 1, 1000000,
	"burst of --rate-write", FIELD(burst_write)},
	{"rate-address", "PGBANK_HTTP_RATE_ADDRESS", OPT_INT, "1000", 1, 1000000,
	"requests per second per client address to the other /v1 routes", FIELD(rate_address)},
	{"burst-address", "PGBANK_HTTP_BURST_ADDRESS", OPT_INT, "2000", 1, 1000000,
	"burst of --rate-address", FIELD(burst_address)},
	{"rate-limit-entries", "PGBANK_HTTP_RATE_LIMIT_ENTRIES", OPT_INT, "16384", 64, 4194304,
	"rate-limit buckets of the server, shared by its threads (24 bytes each); the longest idle is reused when full",
	FIELD(rate_limit_entries)},
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
			"loopback address unless TLS is on (--tls-cert, --tls-key) or a\n"
			"TLS-terminating proxy sits in front.  HTTP/1.1 only unless --http2=1.\n\n"
			"Signals: SIGTERM or SIGINT refuse new connections, answer the requests in\n"
			"flight, and exit 0.  SIGHUP reads every source again and applies access-log,\n"
			"cors-origins and the token secret (no grace period for the old one: the\n"
			"database holds one pgbank.jwt_secret); a reload that fails changes nothing.\n");
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
	list[n + 1] = copy;			/* for free_list */
	return list;
}

static void
free_list(char **list)
{
	int			n = 0;

	if (list == NULL)
		return;
	while (list[n] != NULL)
		n++;
	free(list[n + 1]);
	free(list);
}

/* apply one setting's text value */
static int
apply(pbh_config_t *cfg, size_t i, const char *value, char *err, size_t errlen)
{
	const pbh_option_t *o = &options[i];
	char	   *field = (char *) cfg + o->offset;
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
			free(*(char **) field);
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
			free(*(char **) field);
			if ((*(char **) field = read_secret_file(o->flag, value, err, errlen)) == NULL)
				return -1;
			break;
		case OPT_LIST:
			free_list(*(char ***) field);
			*(char ***) field = split_list(value);
			break;
	}
	return 0;
}

/* the checks that span settings or need more than a range */
static int
check(pbh_config_t *cfg, char *err, size_t errlen)
{
	unsigned char addr[sizeof(struct in6_addr)];
	char	  **o;
	long		ncpu;

	if (inet_pton(AF_INET, cfg->listen_addr, addr) != 1 &&
		inet_pton(AF_INET6, cfg->listen_addr, addr) != 1)
	{
		snprintf(err, errlen, "--listen (PGBANK_HTTP_LISTEN): \"%s\" is not a numeric IPv4 or IPv6 address",
				 cfg->listen_addr);
		return -1;
	}
	if (cfg->jwt_secret == NULL)
	{
		snprintf(err, errlen, "no token secret: set --jwt-secret-file, PGBANK_HTTP_JWT_SECRET_FILE or PGBANK_HTTP_JWT_SECRET "
				 "(the cluster's pgbank.jwt_secret)");
		return -1;
	}
	if (strlen(cfg->jwt_secret) < 32)
	{
		snprintf(err, errlen, "the token secret is shorter than 32 bytes (pgbank.jwt_secret needs 32+)");
		return -1;
	}
	if (cfg->jwt_issuer[0] == '\0' || cfg->jwt_audience[0] == '\0')
	{
		snprintf(err, errlen, "--jwt-issuer and --jwt-audience must not be empty");
		return -1;
	}
	if (cfg->dsn[0] == '\0')
	{
		snprintf(err, errlen, "--dsn (PGBANK_HTTP_DSN) must not be empty");
		return -1;
	}
	for (o = cfg->cors_origins; *o != NULL; o++)
	{
		if ((strncmp(*o, "http://", 7) != 0 && strncmp(*o, "https://", 8) != 0) ||
			strchr(*o, '/') != strrchr(*o, '/') - 1 || strpbrk(*o, " \t\"*") != NULL)
		{
			snprintf(err, errlen, "--cors-origins: \"%s\" is not an origin (scheme://host[:port], no path, no wildcard)", *o);
			return -1;
		}
	}
	if (cfg->replica_dsn != NULL && cfg->replica_dsn[0] == '\0')
	{
		free(cfg->replica_dsn);
		cfg->replica_dsn = NULL;
	}
	if (cfg->threads == 0)
	{
		ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		cfg->threads = ncpu > 0 ? (int) ncpu : 1;
	}
	return 0;
}

/* the settings of a config file, applied to cfg */
static int
read_config_file(pbh_config_t *cfg, const char *path, char *err, size_t errlen)
{
	FILE	   *f = fopen(path, "r");
	char		line[4096];
	int			lineno = 0;

	if (f == NULL)
	{
		snprintf(err, errlen, "--config-file: cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL)
	{
		char	   *name = line,
				   *eq,
				   *value,
				   *end;
		size_t		i;

		lineno++;
		line[strcspn(line, "\r\n")] = '\0';
		while (*name == ' ' || *name == '\t')
			name++;
		if (*name == '\0' || *name == '#')
			continue;
		if ((eq = strchr(name, '=')) == NULL)
		{
			snprintf(err, errlen, "%s line %d: not \"name = value\"", path, lineno);
			fclose(f);
			return -1;
		}
		for (end = eq; end > name && (end[-1] == ' ' || end[-1] == '\t'); end--)
			;
		*end = '\0';
		for (value = eq + 1; *value == ' ' || *value == '\t'; value++)
			;
		for (end = value + strlen(value); end > value && (end[-1] == ' ' || end[-1] == '\t'); end--)
			;
		*end = '\0';
		for (i = 0; i < NOPTIONS; i++)
			if (strcmp(options[i].flag, name) == 0 && options[i].offset != FIELD(config_file))
				break;
		if (i == NOPTIONS)
		{
			snprintf(err, errlen, "%s line %d: unknown setting \"%s\"", path, lineno, name);
			fclose(f);
			return -1;
		}
		if (apply(cfg, i, value, err, errlen) != 0)
		{
			char		why[512];

			snprintf(why, sizeof(why), "%s", err);
			snprintf(err, errlen, "%s line %d: %s", path, lineno, why);
			fclose(f);
			return -1;
		}
	}
	fclose(f);
	return 0;
}

/* every source, in order, into cfg (zeroed by the caller) */
static int
load(pbh_config_t *cfg, int argc, char **argv, char *err, size_t errlen)
{
	struct option longopts[NOPTIONS + 3];
	size_t		i;
	int			c;
	const char *secret_env;
	const char *config_file = getenv("PGBANK_HTTP_CONFIG_FILE");

	/* the defaults, then the config file (found first), then the environment */
	for (i = 0; i < NOPTIONS; i++)
		if (options[i].def != NULL && apply(cfg, i, options[i].def, err, errlen) != 0)
			return -1;
	for (int k = 1; k < argc; k++)
	{
		if (strncmp(argv[k], "--config-file=", 14) == 0)
			config_file = argv[k] + 14;
		else if (strcmp(argv[k], "--config-file") == 0 && k + 1 < argc)
			config_file = argv[k + 1];
	}
	if (config_file != NULL && read_config_file(cfg, config_file, err, errlen) != 0)
		return -1;
	for (i = 0; i < NOPTIONS; i++)
	{
		const char *v = getenv(options[i].env);

		if (v != NULL && apply(cfg, i, v, err, errlen) != 0)
			return -1;
	}
	secret_env = getenv("PGBANK_HTTP_JWT_SECRET");
	if (cfg->jwt_secret == NULL && secret_env != NULL)
		cfg->jwt_secret = strdup(secret_env);

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
	optind = 0;					/* GNU: start afresh (a reload parses again) */
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
		if (apply(cfg, (size_t) (c - 256), optarg, err, errlen) != 0)
			return -1;
	}
	if (optind < argc)
	{
		snprintf(err, errlen, "unexpected argument \"%s\" (see --help)", argv[optind]);
		return -1;
	}
	/* the file read first must be the one named (getopt takes --config=) */
	if (cfg->config_file != NULL &&
		(config_file == NULL || strcmp(config_file, cfg->config_file) != 0))
	{
		snprintf(err, errlen, "write --config-file in full");
		return -1;
	}
	return check(cfg, err, errlen);
}

/*
 * The CSRF key of a token secret (browser.c): part of each snapshot, so
 * that a secret replaced at SIGHUP takes the old CSRF tokens with it.
 */
static void
csrf_key(const char *secret, unsigned char *key)
{
	static const char label[] = "pgbank-http csrf v1";
	unsigned int len = 32;

	HMAC(EVP_sha256(), secret, (int) strlen(secret),
		 (const unsigned char *) label, sizeof(label) - 1, key, &len);
}

/* a snapshot of the settings a reload may change, copied from cfg */
static pbh_live_t *
live_new(const pbh_config_t *cfg)
{
	pbh_live_t *live = calloc(1, sizeof(pbh_live_t));
	int			n = 0;

	while (cfg->cors_origins[n] != NULL)
		n++;
	live->jwt_secret = strdup(cfg->jwt_secret);
	csrf_key(live->jwt_secret, live->csrf_key);
	live->cors_origins = calloc(n + 1, sizeof(char *));
	for (int i = 0; i < n; i++)
		live->cors_origins[i] = strdup(cfg->cors_origins[i]);
	live->access_log = cfg->access_log;
	return live;
}

void
pbh_live_free(pbh_live_t *live)
{
	if (live == NULL)
		return;
	for (char **o = live->cors_origins; *o != NULL; o++)
		free(*o);
	free(live->cors_origins);
	free(live->jwt_secret);
	free(live);
}

/* the strings of a scratch configuration */
static void
config_free(pbh_config_t *cfg)
{
	for (size_t i = 0; i < NOPTIONS; i++)
	{
		char	   *field = (char *) cfg + options[i].offset;

		if (options[i].kind == OPT_STRING || options[i].kind == OPT_FILE)
			free(*(char **) field);
		else if (options[i].kind == OPT_LIST)
			free_list(*(char ***) field);
	}
}

int
pbh_config_load(int argc, char **argv, char *err, size_t errlen)
{
	saved_argc = argc;
	saved_argv = argv;
	if (load(&pbh_config, argc, argv, err, errlen) != 0)
		return -1;
	__atomic_store_n(&pbh_live_ptr, live_new(&pbh_config), __ATOMIC_RELEASE);
	return 0;
}

/*
 * Read every source again (called by the main thread, never by a loop):
 * on success the new snapshot is published and *old is the one it
 * replaced, which the caller frees once no thread can still be reading it.
 */
int
pbh_config_reload(pbh_live_t **old, char *err, size_t errlen)
{
	pbh_config_t scratch;
	int			rc;

	memset(&scratch, 0, sizeof(scratch));
	rc = load(&scratch, saved_argc, saved_argv, err, errlen);
	if (rc == 0)
		*old = __atomic_exchange_n(&pbh_live_ptr, live_new(&scratch), __ATOMIC_ACQ_REL);
	config_free(&scratch);
	return rc;
}
