/*-------------------------------------------------------------------------
 *
 * main.c
 *		pgbank-http: settings, listeners, one event loop per thread, and a
 *		graceful stop.
 *
 * Invariants:
 *	- Every listener is bound (SO_REUSEPORT, one per thread, the kernel
 *	  spreading connections among them) before any thread starts, so a bad
 *	  address or a port in use stops the server at once with a message.
 *	- A second pgbank-http on the same address and port refuses to start
 *	  (see claim_port), instead of joining the first one's SO_REUSEPORT
 *	  group and taking half its connections.
 *	- SIGTERM or SIGINT: the listeners close, requests in flight finish and
 *	  are answered, event streams end (they never hold up a stop), then the
 *	  threads end and the process exits 0.  Until the last thread is done
 *	  every thread keeps its loop running, so that a request on a
 *	  connection kept alive, whichever thread holds it, is answered (503
 *	  shutting_down, Connection: close) instead of left unread.
 *	- HTTP/1.1 only (this h2o lacks the HTTP/2 rapid-reset fix), unless
 *	  --http2=1 with TLS: then ALPN offers h2.  Never h2c (no upgrade, no
 *	  prior knowledge over plain TCP).
 *	- With --tls-cert and --tls-key every listener speaks TLS (tls.c);
 *	  there is no plain HTTP beside it.
 *	- SIGHUP: the main thread (never a loop) reads the settings again and
 *	  publishes the reloadable ones (config.c); the snapshot replaced is
 *	  freed once every thread has ended the loop round it was in, since a
 *	  loop uses a snapshot only within one round (loop_rounds).
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "pgbank_http.h"

pbh_thread_t *pbh_threads;
_Atomic int pbh_stopping = 0;

static h2o_globalconf_t globalconf;
static int *listen_fds;

static volatile sig_atomic_t reload_requested = 0;

/* threads with requests in flight since SIGTERM (or not yet told) */
static int threads_draining;

static void
on_signal(int sig)
{
	if (sig == SIGHUP)
		reload_requested = 1;
	else
		pbh_stopping = 1;
}

/* reload the settings; free the old snapshot once no loop can hold it */
static void
reload(void)
{
	char		err[512];
	pbh_live_t *old = NULL;
	uint64_t   *seen;
	int			quiet = 0;

	if (pbh_config_reload(&old, err, sizeof(err)) != 0)
	{
		fprintf(stderr, "pgbank-http: reload failed, settings unchanged: %s\n", err);
		return;
	}
	fprintf(stderr, "pgbank-http: reloaded access-log, cors-origins and the token secret\n");
	seen = calloc(pbh_config.threads, sizeof(uint64_t));
	for (int i = 0; i < pbh_config.threads; i++)
		seen[i] = __atomic_load_n(&pbh_threads[i].loop_rounds, __ATOMIC_ACQUIRE);
	while (!quiet)
	{
		quiet = 1;
		for (int i = 0; i < pbh_config.threads; i++)
			if (__atomic_load_n(&pbh_threads[i].loop_rounds, __ATOMIC_ACQUIRE) == seen[i])
				quiet = 0;
		if (!quiet)
			usleep(5000);
	}
	free(seen);
	pbh_live_free(old);
}

/* the listening address as a sockaddr */
static socklen_t
listen_sockaddr(struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, pbh_config.listen_addr, &((struct sockaddr_in *) ss)->sin_addr) == 1)
	{
		((struct sockaddr_in *) ss)->sin_family = AF_INET;
		((struct sockaddr_in *) ss)->sin_port = htons(pbh_config.port);
		return sizeof(struct sockaddr_in);
	}
	inet_pton(AF_INET6, pbh_config.listen_addr, &((struct sockaddr_in6 *) ss)->sin6_addr);
	((struct sockaddr_in6 *) ss)->sin6_family = AF_INET6;
	((struct sockaddr_in6 *) ss)->sin6_port = htons(pbh_config.port);
	return sizeof(struct sockaddr_in6);
}

/*
 * Make sure nobody listens on our address and port, and that no other
 * pgbank-http starts on them while we run.
 *
 * SO_REUSEPORT lets any process of the same user bind a port whose sockets
 * all have it, and the kernel then spreads connections over all of them: a
 * second pgbank-http would silently take half the first one's connections.
 * Two steps keep it out, without giving up the per-thread SO_REUSEPORT
 * listeners:
 *
 *	1. A lock that lives exactly as long as this process: a Unix socket
 *	   bound in the abstract namespace under a name made of the address and
 *	   port.  The kernel lets one socket hold a name and frees it when the
 *	   process ends, however it ends (no file to go stale, no cleanup); the
 *	   namespace is the network namespace's, like the port.  A second
 *	   pgbank-http finds the name taken (EADDRINUSE) and stops.
 *	2. A probe: a socket bound to the address and port WITHOUT SO_REUSEPORT
 *	   (SO_REUSEADDR only, which ignores TIME_WAIT leftovers) fails while any
 *	   socket listens there, whoever owns it (another server, or a
 *	   pgbank-http of an older version, or one on a wildcard address that
 *	   covers ours).  It is closed at once, before our listeners bind;
 *	   between the two, step 1 keeps other pgbank-http processes out.
 *
 * The lock's descriptor stays open until exit (CLOEXEC: not inherited).
 */
static int
claim_port(char *err, size_t errlen)
{
	struct sockaddr_un un;
	struct sockaddr_storage ss;
	socklen_t	sslen = listen_sockaddr(&ss);
	int			lock,
				probe,
				on = 1,
				n;

	memset(&un, 0, sizeof(un));
	un.sun_family = AF_UNIX;
	n = snprintf(un.sun_path + 1, sizeof(un.sun_path) - 1, "pgbank-http %s port %d",
				 pbh_config.listen_addr, pbh_config.port);
	if ((lock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
		bind(lock, (struct sockaddr *) &un, offsetof(struct sockaddr_un, sun_path) + 1 + n) != 0)
	{
		snprintf(err, errlen, "%s port %d: %s", pbh_config.listen_addr, pbh_config.port,
				 errno == EADDRINUSE ? "another pgbank-http is already listening there" :
				 strerror(errno));
		return -1;
	}
	if ((probe = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
		setsockopt(probe, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
		bind(probe, (struct sockaddr *) &ss, sslen) != 0)
	{
		snprintf(err, errlen, "%s port %d: %s", pbh_config.listen_addr, pbh_config.port,
				 errno == EADDRINUSE ? "the address is already in use (another server listens there)" :
				 strerror(errno));
		return -1;
	}
	close(probe);
	return 0;
}

static int
open_listener(char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t	sslen = listen_sockaddr(&ss);
	int			fd,
				on = 1;

	if ((fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
		setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0 ||
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on)) != 0 ||
		bind(fd, (struct sockaddr *) &ss, sslen) != 0 || listen(fd, 1024) != 0)
	{
		snprintf(err, errlen, "cannot listen on %s port %d: %s", pbh_config.listen_addr,
				 pbh_config.port, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static void
on_accept(h2o_socket_t *listener, const char *err)
{
	pbh_thread_t *t = listener->data;
	h2o_socket_t *sock;

	if (err != NULL)
		return;
	while ((sock = h2o_evloop_socket_accept(listener)) != NULL)
		if (pbh_guard_accept(t, sock) == 0)
			h2o_accept(&t->accept_ctx, sock);
}

static void *
run_thread(void *arg)
{
	pbh_thread_t *t = arg;
	h2o_evloop_t *loop = h2o_evloop_create();
	int			drain_rounds = 0,
				drained = 0;

	h2o_context_init(&t->ctx, loop, &globalconf);
	t->accept_ctx.ctx = &t->ctx;
	t->accept_ctx.hosts = globalconf.hosts;
	t->accept_ctx.ssl_ctx = pbh_tls_ctx;
	t->listener = h2o_evloop_socket_create(loop, listen_fds[t->index], H2O_SOCKET_FLAG_DONT_READ);
	t->listener->data = t;
	h2o_socket_read_start(t->listener, on_accept);
	pbh_pool_init(t);

	for (;;)
	{
		h2o_evloop_run(loop, 100);
		pbh_pool_publish(t);
		__atomic_store_n(&t->loop_rounds, t->loop_rounds + 1, __ATOMIC_RELEASE);
		if (!pbh_stopping)
			continue;
		if (t->listener != NULL)
		{
			h2o_socket_read_stop(t->listener);
			h2o_socket_close(t->listener);
			t->listener = NULL;
			h2o_context_request_shutdown(&t->ctx);
			pbh_events_shutdown(t);
		}
		/*
		 * answer what is in flight, then a few more rounds to send it; then
		 * go on answering new requests (503) until every thread is done
		 */
		if (t->inflight == 0 && ++drain_rounds > 3)
		{
			if (!drained)
			{
				drained = 1;
				__atomic_sub_fetch(&threads_draining, 1, __ATOMIC_ACQ_REL);
			}
			if (__atomic_load_n(&threads_draining, __ATOMIC_ACQUIRE) == 0)
				break;
		}
	}
	pbh_pool_close(t);
	h2o_evloop_run(loop, 0);
	pbh_pool_publish(t);
	/* no more rounds: a reload waiting for this one may go on */
	__atomic_store_n(&t->loop_rounds, t->loop_rounds + 1, __ATOMIC_RELEASE);
	return NULL;
}

int
main(int argc, char **argv)
{
	char		err[512];
	h2o_hostconf_t *hostconf;
	h2o_pathconf_t *pathconf;
	h2o_handler_t *handler;
	struct sigaction sa;
	int			i;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (pbh_config_load(argc, argv, err, sizeof(err)) != 0)
	{
		fprintf(stderr, "pgbank-http: error: %s\n", err);
		return 2;
	}
	pbh_routes_init();
	pbh_openapi_init();
	if (pbh_tls_init(err, sizeof(err)) != 0)
	{
		fprintf(stderr, "pgbank-http: error: %s\n", err);
		return 2;
	}
	if (pbh_limits_init() != 0)
	{
		fprintf(stderr, "pgbank-http: error: no memory for %d rate-limit entries\n",
				pbh_config.rate_limit_entries);
		return 2;
	}

	signal(SIGPIPE, SIG_IGN);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);

	h2o_config_init(&globalconf);
	globalconf.server_name = h2o_iovec_init(H2O_STRLIT("pgbank-http"));
	/* one more: guard.c makes chunked and Content-Length bodies agree */
	globalconf.max_request_entity_size = pbh_config.max_body + 1;
	globalconf.http1.req_timeout = pbh_config.request_timeout;
	/* never h2c: HTTP/2 only by ALPN over TLS, and only with --http2=1 */
	globalconf.http1.upgrade_to_http2 = 0;
	hostconf = h2o_config_register_host(&globalconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
	pathconf = h2o_config_register_path(hostconf, "/", 0);
	handler = h2o_create_handler(pathconf, sizeof(*handler));
	handler->on_req = pbh_api_on_req;
	pbh_guard_register(hostconf);
	{
		/*
		 * gzip (h2o's filter, fast level) for bodies of 1 KiB and more
		 * when the client accepts it; bodies with credentials opt out
		 * (api.c); no brotli in this build
		 */
		h2o_compress_args_t gzip = {.min_size = 1024, .gzip = {.quality = 1}, .brotli = {.quality = -1}};

		h2o_compress_register(pathconf, &gzip);
	}

	if (claim_port(err, sizeof(err)) != 0)
	{
		fprintf(stderr, "pgbank-http: error: %s\n", err);
		return 1;
	}
	listen_fds = calloc(pbh_config.threads, sizeof(int));
	for (i = 0; i < pbh_config.threads; i++)
		if ((listen_fds[i] = open_listener(err, sizeof(err))) < 0)
		{
			fprintf(stderr, "pgbank-http: error: %s\n", err);
			return 1;
		}

	pbh_threads = calloc(pbh_config.threads, sizeof(pbh_thread_t));
	threads_draining = pbh_config.threads;
	pbh_obs_init();
	for (i = 0; i < pbh_config.threads; i++)
	{
		pbh_threads[i].index = i;
		if (pthread_create(&pbh_threads[i].tid, NULL, run_thread, &pbh_threads[i]) != 0)
		{
			fprintf(stderr, "pgbank-http: error: cannot start thread %d\n", i);
			return 1;
		}
	}
	fprintf(stderr, "pgbank-http %s: listening on %s port %d (%s, %s; %d threads, %d + %d read-only database connections each)\n",
			PBH_VERSION, pbh_config.listen_addr, pbh_config.port,
			pbh_tls_ctx ? "https" : "http", pbh_config.http2 ? "HTTP/1.1 and HTTP/2" : "HTTP/1.1 only",
			pbh_config.threads, pbh_config.connections, pbh_config.read_connections);
	while (!pbh_stopping)
	{
		if (reload_requested)
		{
			reload_requested = 0;
			reload();
		}
		usleep(20000);
	}
	for (i = 0; i < pbh_config.threads; i++)
		pthread_join(pbh_threads[i].tid, NULL);
	fprintf(stderr, "pgbank-http: stopped\n");
	return 0;
}
