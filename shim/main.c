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
 *	  threads end and the process exits 0.
 *	- HTTP/1.1 only (this h2o lacks the HTTP/2 rapid-reset fix).
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
volatile int pbh_stopping = 0;

static h2o_globalconf_t globalconf;
static int *listen_fds;

static void
on_signal(int sig)
{
	pbh_stopping = 1;
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
		h2o_accept(&t->accept_ctx, sock);
}

static void *
run_thread(void *arg)
{
	pbh_thread_t *t = arg;
	h2o_evloop_t *loop = h2o_evloop_create();
	int			drain_rounds = 0;

	h2o_context_init(&t->ctx, loop, &globalconf);
	t->accept_ctx.ctx = &t->ctx;
	t->accept_ctx.hosts = globalconf.hosts;
	t->listener = h2o_evloop_socket_create(loop, listen_fds[t->index], H2O_SOCKET_FLAG_DONT_READ);
	t->listener->data = t;
	h2o_socket_read_start(t->listener, on_accept);
	pbh_pool_init(t);

	for (;;)
	{
		h2o_evloop_run(loop, 100);
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
		/* answer what is in flight, then a few more rounds to send it */
		if (t->inflight == 0 && ++drain_rounds > 3)
			break;
	}
	pbh_pool_close(t);
	h2o_evloop_run(loop, 0);
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
	pbh_api_init();

	signal(SIGPIPE, SIG_IGN);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	h2o_config_init(&globalconf);
	globalconf.server_name = h2o_iovec_init(H2O_STRLIT("pgbank-http"));
	globalconf.max_request_entity_size = pbh_config.max_body;
	globalconf.http1.req_timeout = pbh_config.request_timeout;
	globalconf.http1.upgrade_to_http2 = 0;
	hostconf = h2o_config_register_host(&globalconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
	pathconf = h2o_config_register_path(hostconf, "/", 0);
	handler = h2o_create_handler(pathconf, sizeof(*handler));
	handler->on_req = pbh_api_on_req;
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
	for (i = 0; i < pbh_config.threads; i++)
	{
		pbh_threads[i].index = i;
		if (pthread_create(&pbh_threads[i].tid, NULL, run_thread, &pbh_threads[i]) != 0)
		{
			fprintf(stderr, "pgbank-http: error: cannot start thread %d\n", i);
			return 1;
		}
	}
	fprintf(stderr, "pgbank-http %s: listening on %s port %d (%d threads, %d + %d read-only database connections each)\n",
			PBH_VERSION, pbh_config.listen_addr, pbh_config.port, pbh_config.threads,
			pbh_config.connections, pbh_config.read_connections);
	for (i = 0; i < pbh_config.threads; i++)
		pthread_join(pbh_threads[i].tid, NULL);
	fprintf(stderr, "pgbank-http: stopped\n");
	return 0;
}
