/*-------------------------------------------------------------------------
 *
 * shim/test/pipeline.c
 *		What pgbank-http relies on in libpq's pipeline mode, checked against
 *		a live server and printed as TAP (run by t/100_http_pipeline.pl):
 *
 *		- several Executes before one Sync are one implicit transaction: when
 *		  a later statement fails, the earlier ones' writes are rolled back;
 *		- the failure ends at the Sync: the next pipeline, already queued
 *		  behind it, runs and commits;
 *		- set_config(..., true) (role, read-only) lasts until the Sync and
 *		  not after, whether the transaction commits or fails: a request's
 *		  role never leaks into the next request on the connection;
 *		- transaction_read_only set by the first statement refuses a write
 *		  in a later one.
 *
 *		Usage: pipeline ADMIN_DSN GATEWAY_DSN (blocking libpq: a test).
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libpq-fe.h>

static int	ntest = 0;
static int	nfail = 0;

static void
ok(int cond, const char *name)
{
	ntest++;
	if (!cond)
		nfail++;
	printf("%sok %d - %s\n", cond ? "" : "not ", ntest, name);
}

static PGconn *
connect_or_die(const char *dsn)
{
	PGconn	   *c = PQconnectdb(dsn);

	if (PQstatus(c) != CONNECTION_OK)
	{
		printf("Bail out! cannot connect: %s", PQerrorMessage(c));
		exit(1);
	}
	return c;
}

/* send statements (no parameters) then one Sync, without reading */
static void
send_pipeline(PGconn *c, const char *const *sql, int n)
{
	for (int i = 0; i < n; i++)
		if (PQsendQueryParams(c, sql[i], 0, NULL, NULL, NULL, NULL, 0) != 1)
		{
			printf("Bail out! send failed: %s", PQerrorMessage(c));
			exit(1);
		}
	if (PQpipelineSync(c) != 1)
	{
		printf("Bail out! sync failed: %s", PQerrorMessage(c));
		exit(1);
	}
}

/*
 * Read one pipeline's results up to its Sync: the status of each statement
 * into st[], the first value of the last successful one into value.
 */
static int
read_pipeline(PGconn *c, ExecStatusType *st, int max, char *value, size_t vlen)
{
	int			n = 0;

	value[0] = '\0';
	for (;;)
	{
		PGresult   *r = PQgetResult(c);

		if (r == NULL)
			continue;
		if (PQresultStatus(r) == PGRES_PIPELINE_SYNC)
		{
			PQclear(r);
			return n;
		}
		if (n < max)
			st[n] = PQresultStatus(r);
		if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0)
			snprintf(value, vlen, "%s", PQgetvalue(r, 0, 0));
		n++;
		PQclear(r);
	}
}

static void
exec_or_die(PGconn *c, const char *sql)
{
	PGresult   *r = PQexec(c, sql);

	if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
	{
		printf("Bail out! %s: %s", sql, PQerrorMessage(c));
		exit(1);
	}
	PQclear(r);
}

int
main(int argc, char **argv)
{
	PGconn	   *admin,
			   *gw;
	ExecStatusType st[8];
	char		v[256];
	int			n;

	if (argc != 3)
	{
		fprintf(stderr, "usage: %s ADMIN_DSN GATEWAY_DSN\n", argv[0]);
		return 2;
	}
	admin = connect_or_die(argv[1]);
	exec_or_die(admin, "SET client_min_messages = warning");
	exec_or_die(admin, "DROP TABLE IF EXISTS pbh_pipe");
	exec_or_die(admin, "CREATE TABLE pbh_pipe (x int)");
	exec_or_die(admin, "GRANT SELECT, INSERT ON pbh_pipe TO bank_gateway");
	gw = connect_or_die(argv[2]);
	printf("1..10\n");
	PQenterPipelineMode(gw);

	{
		/* a write, a write, a failure, one Sync; then a write, one Sync */
		const char *const a[] = {"INSERT INTO pbh_pipe VALUES (1)", "INSERT INTO pbh_pipe VALUES (2)",
		"SELECT 1 / 0"};
		const char *const b[] = {"INSERT INTO pbh_pipe VALUES (3)"};
		const char *const count[] = {"SELECT string_agg(x::text, ',' ORDER BY x) FROM pbh_pipe"};

		send_pipeline(gw, a, 3);
		send_pipeline(gw, b, 1);
		n = read_pipeline(gw, st, 8, v, sizeof(v));
		ok(n == 3 && st[0] == PGRES_COMMAND_OK && st[1] == PGRES_COMMAND_OK &&
		   st[2] == PGRES_FATAL_ERROR, "the failing pipeline: two writes done, then the error");
		n = read_pipeline(gw, st, 8, v, sizeof(v));
		ok(n == 1 && st[0] == PGRES_COMMAND_OK, "the next pipeline, queued behind the failure, runs");
		send_pipeline(gw, count, 1);
		read_pipeline(gw, st, 8, v, sizeof(v));
		ok(strcmp(v, "3") == 0, "the failed pipeline's writes were rolled back, the next one's kept");
		if (strcmp(v, "3") != 0)
			printf("# rows: %s\n", v);
	}
	{
		const char *const a[] = {"SELECT set_config('role', 'bank_anon', true)", "SELECT current_user"};
		const char *const fail[] = {"SELECT set_config('role', 'bank_anon', true)", "SELECT 1 / 0"};
		const char *const who[] = {"SELECT current_user"};

		send_pipeline(gw, a, 2);
		read_pipeline(gw, st, 8, v, sizeof(v));
		ok(strcmp(v, "bank_anon") == 0, "set_config('role', ..., true) applies to the next statement of the pipeline");
		send_pipeline(gw, who, 1);
		read_pipeline(gw, st, 8, v, sizeof(v));
		ok(strcmp(v, "bank_gateway") == 0, "after the Sync (commit) the role is the login role again");
		send_pipeline(gw, fail, 2);
		read_pipeline(gw, st, 8, v, sizeof(v));
		send_pipeline(gw, who, 1);
		read_pipeline(gw, st, 8, v, sizeof(v));
		ok(strcmp(v, "bank_gateway") == 0, "after a failed pipeline too");
	}
	{
		const char *const ro[] = {"SELECT set_config('transaction_read_only', 'on', true)",
		"INSERT INTO pbh_pipe VALUES (4)"};
		const char *const rw[] = {"SELECT set_config('transaction_read_only', 'off', true)",
		"INSERT INTO pbh_pipe VALUES (5)"};
		const char *const count[] = {"SELECT string_agg(x::text, ',' ORDER BY x) FROM pbh_pipe"};
		const char *const show[] = {"SHOW transaction_read_only"};

		send_pipeline(gw, ro, 2);
		n = read_pipeline(gw, st, 8, v, sizeof(v));
		ok(n == 2 && st[1] == PGRES_FATAL_ERROR, "a read-only pipeline refuses a write");
		send_pipeline(gw, rw, 2);
		n = read_pipeline(gw, st, 8, v, sizeof(v));
		ok(n == 2 && st[1] == PGRES_COMMAND_OK, "a read-write pipeline writes");
		send_pipeline(gw, count, 1);
		read_pipeline(gw, st, 8, v, sizeof(v));
		ok(strcmp(v, "3,5") == 0, "only the read-write pipeline's row is there");
		send_pipeline(gw, show, 1);
		read_pipeline(gw, st, 8, v, sizeof(v));
		ok(strcmp(v, "off") == 0, "read-only does not outlive its pipeline");
	}
	PQfinish(gw);
	exec_or_die(admin, "DROP TABLE pbh_pipe");
	PQfinish(admin);
	return nfail == 0 ? 0 : 1;
}
