# t/006_jobs_worker.pl -- the background worker of pgbank does each job.
#
# A cluster with pgbank preloaded, the worker on database postgres and
# pgbank.job_interval at 200 ms (the housekeeping schedules set to follow
# it), shows the worker:
#  - expiring a hold past its expiry;
#  - purging a session that ended more than pgbank.session_retention ago,
#    the idempotency key of a transfer older than
#    pgbank.idempotency_retention, and audit rows older than
#    pgbank.audit_retention (the trail still verifies);
#  - running a job queued with bank.enqueue_job (woken at its commit, not
#    after a job interval: the interval is raised to a minute for that);
#  - retrying a failing job with exponential backoff, visible in
#    bank.job_runs (retrying, then done once it can succeed; another one
#    dead after max_attempts); cancelling one that runs past
#    pgbank.job_timeout;
#  - surviving SIGHUP, stopping with the cluster (fast shutdown) and
#    starting with it, and coming back after a crash (kill -9 of the worker
#    in the middle of a job: the job stays queued and runs again, once).
# A second cluster without shared_preload_libraries has no worker, and the
# same jobs run when an admin calls bank.schedule_jobs() and
# bank.run_next_job().
#
# Can it fail?  With WorkerWake a no-op, the queued job waited a full job
# interval (59.4 s) and "... at once" failed.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgbankTest;
use Time::HiRes qw(time sleep);

my $node = PostgreSQL::Test::Cluster->new('jobs');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'pgbank'
max_worker_processes = 16
restart_after_crash = on
pgbank.job_interval = '200ms'
pgbank.bcrypt_cost = 4
pgbank.jwt_secret = 'jobs-test-jwt-secret-jobs-test-jwt-secret'
pgbank.master_key = 'jobs-test-master-key-jobs-test-master-key'
pgbank.session_retention = '1d'
pgbank.idempotency_retention = '1d'
pgbank.audit_retention = '3s'
});
$node->start;

sub worker_pid
{
	return $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'pgbank jobs worker'");
}

sub wait_for
{
	my ($query, $what) = @_;
	ok($node->poll_query_until('postgres', $query), $what);
}

wait_for(
	"SELECT EXISTS (SELECT FROM pg_stat_activity WHERE backend_type = 'pgbank jobs worker')",
	'the worker runs, before the extension exists');
my $pid = worker_pid();

$node->safe_psql(
	'postgres', q{
SET client_min_messages = warning;
CREATE EXTENSION pgbank CASCADE;
UPDATE bank.job_schedule SET every = NULL, next_run_at = now();
CREATE TABLE job_log (n integer, at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION log_job(n integer) RETURNS integer LANGUAGE sql AS
$$ INSERT INTO public.job_log (n) VALUES (n) RETURNING n $$;
CREATE TABLE job_gate (open boolean);
CREATE FUNCTION gated_job() RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	IF NOT EXISTS (SELECT FROM public.job_gate WHERE open) THEN
		RAISE EXCEPTION 'the gate is closed';
	END IF;
	RETURN 'through';
END $$;
CREATE FUNCTION slow_job(n integer) RETURNS integer LANGUAGE sql AS
$$ SELECT pg_sleep(4); INSERT INTO public.job_log (n) VALUES (n) RETURNING n $$;
INSERT INTO bank.job_kinds (name, function, max_attempts, backoff, description) VALUES
('log_job', 'log_job(integer)', 5, '1 second', 'test: logs n'),
('gated_job', 'gated_job()', 3, '2 seconds', 'test: fails until the gate opens'),
('doomed_job', 'gated_job()', 3, '500 ms', 'test: fails until the gate opens, retried sooner'),
('slow_job', 'slow_job(integer)', 5, '1 second', 'test: logs n after 4 s'),
('stuck_job', 'slow_job(integer)', 1, '1 second', 'test: takes longer than the job timeout');
});

# the ledger the jobs work on: alice holds 40.00 of her 100.00 for the shop;
# the hold's expiry is moved to its creation (guard triggers off for it)
my $setup = $node->safe_psql(
	'postgres', q{
SELECT bank.register('alice@example.com', 'correct horse battery', 'Alice', 'Archer') AS alice \gset
SELECT bank.create_customer('shop@example.com', 'Shop', 'Keeper') AS shop \gset
SELECT id AS a FROM bank.open_account('checking', 'alice', 'USD', :alice) \gset
SELECT id AS s FROM bank.open_account('checking', 'shop', 'USD', :shop) \gset
SELECT status FROM bank.deposit(:a, 100, 'w-dep-1');
SELECT id AS h FROM bank.hold(:a, :s, 40, 'w-hold-1', '1 minute') \gset
SELECT status FROM bank.login('alice@example.com', 'correct horse battery');
SELECT max(id) AS sid FROM bank.sessions \gset
SET session_replication_role = replica;
UPDATE bank.transfers SET expires_at = created_at WHERE id = :h;
UPDATE bank.transfers SET created_at = created_at - interval '2 days'
 WHERE idempotency_key = 'w-dep-1';
RESET session_replication_role;
UPDATE bank.sessions SET revoked_at = now() - interval '2 days', revoked_reason = 'logout'
 WHERE id = :sid;
SELECT :h, :sid;
});
my ($hold, $session) = (split /\n/, $setup)[-1] =~ /^(\d+)\|(\d+)$/;
ok($hold && $session, 'a hold and a session to work on');

# each housekeeping job, done by the worker
wait_for("SELECT status = 'voided' FROM bank.transfers WHERE id = $hold",
	'the worker expires a hold past its expiry');
wait_for("SELECT NOT EXISTS (SELECT FROM bank.sessions WHERE id = $session)",
	'the worker purges a session that ended more than pgbank.session_retention ago');
wait_for("SELECT idempotency_key IS NULL FROM bank.transfers WHERE kind = 'deposit'",
	'the worker releases an idempotency key older than pgbank.idempotency_retention');
wait_for("SELECT EXISTS (SELECT FROM bank.audit_events WHERE action = 'audit.purge')",
	'the worker purges audit rows older than pgbank.audit_retention');
is($node->safe_psql('postgres', 'SELECT count(*) FROM bank.audit_verify()'),
	'0', 'the audit trail still verifies after the purge');
is( $node->safe_psql(
		'postgres', q{
SELECT string_agg(DISTINCT job, ',' ORDER BY job) FROM bank.job_runs
 WHERE scheduled AND status = 'done' AND result::bigint > 0}),
	'expire_holds,purge_audit,purge_idempotency_keys,purge_sessions',
	'each of them is a done job in bank.job_runs with what it did');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM bank.job_runs WHERE status IN ('retrying', 'dead')"),
	'0', 'no job failed');

# interest: the worker runs the day's accrual the schedule (or, here, an
# admin) queues.  Alice's savings account holds 1000.00 since three days
# (its deposit moved back, guard triggers off); at 3.65 % a year the day
# before yesterday earns 1000.00 * 0.0365 / 365 = 0.10, ten minor units,
# nothing carried (2026 has 365 days).  The month's posting is the same
# mechanism (job post_month, scheduled each month).
my $interest = $node->safe_psql(
	'postgres', q{
SELECT bank.set_interest_rate('savings', 'USD', 0.0365, '2000-01-01');
SELECT id AS sv FROM bank.open_account('savings', 'alice savings', 'USD',
	(SELECT id FROM bank.customers WHERE email = 'alice@example.com')) \gset
SELECT id AS t FROM bank.deposit(:sv, 1000, 'w-sv-dep') \gset
SET session_replication_role = replica;
UPDATE bank.transfers SET created_at = created_at - interval '3 days',
	posted_at = posted_at - interval '3 days' WHERE id = :t;
UPDATE bank.entries SET posted_at = posted_at - interval '3 days' WHERE transfer_id = :t;
UPDATE bank.pending_legs SET posted_at = posted_at - interval '3 days' WHERE transfer_id = :t;
UPDATE bank.accounts SET opened_at = opened_at - interval '3 days' WHERE id = :sv;
RESET session_replication_role;
SELECT :sv || '|' || bank.enqueue_job('accrue_interest', ARRAY[(bank.business_date() - 2)::text]);
});
my ($savings, $accrual) = (split /\n/, $interest)[-1] =~ /^(\d+)\|(\d+)$/;
wait_for("SELECT status = 'done' FROM bank.job_runs WHERE id = $accrual",
	'the worker runs an interest accrual');
is($node->safe_psql('postgres',
		"SELECT amount, carry = 0 FROM bank.interest_accruals WHERE account_id = $savings"),
	'10|t', '... and the account accrues 0.10 for the day, nothing carried');

# a queued job runs at once: the commit of bank.enqueue_job wakes the worker
$node->safe_psql('postgres',
	"ALTER SYSTEM SET pgbank.job_interval = '1min'; SELECT pg_reload_conf();");
sleep(1.0);    # the worker reloads, then sleeps for up to a minute
my $t0 = time();
my $job = $node->safe_psql('postgres', "SELECT bank.enqueue_job('log_job', '{1}')");
wait_for("SELECT status = 'done' FROM bank.job_runs WHERE id = $job",
	'the worker runs a queued job');
my $waited = time() - $t0;
cmp_ok($waited, '<', 20, sprintf('... at once (%.2f s), not after the job interval', $waited));
is($node->safe_psql('postgres', 'SELECT count(*) FROM job_log WHERE n = 1'),
	'1', '... once');
is(worker_pid(), $pid, 'the worker survived the reload (SIGHUP)');
$node->safe_psql('postgres',
	"ALTER SYSTEM SET pgbank.job_interval = '200ms'; SELECT pg_reload_conf();");

# a failing job: retried with backoff (2 s, then 4 s), visible in the view;
# it succeeds once it can, with the attempts it took
$job = $node->safe_psql('postgres', "SELECT bank.enqueue_job('gated_job')");
wait_for(
	qq{SELECT status = 'retrying' AND attempts = 1 AND next_run_at - finished_at = '2 seconds'
			  AND error_code = 'P0001' AND error_message = 'the gate is closed'
		 FROM bank.job_runs WHERE id = $job},
	'a failing job is retrying in bank.job_runs, next try after its backoff, with its error');
wait_for(
	qq{SELECT attempts = 2 AND next_run_at - finished_at = '4 seconds'
		 FROM bank.job_runs WHERE id = $job},
	'... its second failure doubles the backoff');
$node->safe_psql('postgres', 'INSERT INTO job_gate VALUES (true)');
wait_for(
	qq{SELECT status = 'done' AND attempts = 3 AND result = 'through' AND error_code IS NULL
		 FROM bank.job_runs WHERE id = $job},
	'... and it is done at the third attempt once it can succeed');
$node->safe_psql('postgres', 'DELETE FROM job_gate');
$job = $node->safe_psql('postgres', "SELECT bank.enqueue_job('doomed_job')");
wait_for(
	qq{SELECT status = 'dead' AND attempts = 3 AND next_run_at IS NULL
		 FROM bank.job_runs WHERE id = $job},
	'a job that keeps failing is dead after max_attempts');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM bank.audit_events WHERE action = 'job.dead' AND resource_id = '$job'"),
	'1', '... with an audit row');

# a job that takes longer than pgbank.job_timeout is cancelled (57014),
# its work rolled back
$node->safe_psql('postgres',
	"ALTER SYSTEM SET pgbank.job_timeout = '1s'; SELECT pg_reload_conf();");
sleep(0.5);
$job = $node->safe_psql('postgres', "SELECT bank.enqueue_job('stuck_job', '{4}')");
wait_for(
	qq{SELECT status = 'dead' AND error_code = '57014'
			  AND finished_at - started_at < '3 seconds'
		 FROM bank.job_runs WHERE id = $job},
	'a job running past pgbank.job_timeout is cancelled');
is($node->safe_psql('postgres', 'SELECT count(*) FROM job_log WHERE n = 4'),
	'0', '... and its work rolled back');
$node->safe_psql('postgres',
	"ALTER SYSTEM RESET pgbank.job_timeout; SELECT pg_reload_conf();");

# stop and start with the worker running: it stops with the cluster (fast
# shutdown sends it SIGTERM) and starts with it
$node->stop('fast');
$node->start;
wait_for(
	"SELECT EXISTS (SELECT FROM pg_stat_activity WHERE backend_type = 'pgbank jobs worker')",
	'the worker runs again after a restart');
my $pid2 = worker_pid();
isnt($pid2, $pid, '... a new process');
$job = $node->safe_psql('postgres', "SELECT bank.enqueue_job('log_job', '{2}')");
wait_for("SELECT status = 'done' FROM bank.job_runs WHERE id = $job",
	'... and runs jobs');

# kill -9 the worker in the middle of a job: the postmaster restarts the
# cluster and the worker, and the job, whose work never committed, runs again
$job = $node->safe_psql('postgres', "SELECT bank.enqueue_job('slow_job', '{3}')");
wait_for(
	qq{SELECT EXISTS (SELECT FROM pg_stat_activity
					   WHERE backend_type = 'pgbank jobs worker' AND wait_event = 'PgSleep')},
	'the worker is in the middle of a slow job');
kill 'KILL', $pid2;
wait_for(
	qq{SELECT EXISTS (SELECT FROM pg_stat_activity
					   WHERE backend_type = 'pgbank jobs worker' AND pid <> $pid2)},
	'the worker is back after kill -9 (crash restart)');
wait_for("SELECT status = 'done' FROM bank.job_runs WHERE id = $job",
	'... and the interrupted job ran again');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*), max(attempts) FROM job_log, bank.job_runs WHERE n = 3 AND id = $job"),
	'1|1',
	'... its work committed once, counted as one attempt');
is($node->safe_psql('postgres', 'SELECT count(*) FROM bank.check_ledger()'),
	'0', 'the ledger is whole');
$node->stop('fast');

# without shared_preload_libraries there is no worker, and an admin runs
# the same jobs by hand
my $plain = PostgreSQL::Test::Cluster->new('nopreload');
$plain->init;
$plain->append_conf('postgresql.conf', "max_worker_processes = 16\n");
$plain->start;
is( $plain->safe_psql(
		'postgres', q{
SET client_min_messages = warning;
CREATE EXTENSION pgbank CASCADE;
SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pgbank jobs worker';
SELECT bank.schedule_jobs();
SELECT count(bank.run_next_job()) FROM generate_series(1, 6);
SELECT string_agg(job || ':' || status, ',' ORDER BY id) FROM bank.job_runs;
}),
	"0\n5\n5\nexpire_holds:done,purge_sessions:done,purge_idempotency_keys:done,purge_audit:done,"
	  . "purge_account_events:done",
	'without the worker, bank.schedule_jobs() and bank.run_next_job() run the jobs');
$plain->stop('fast');

done_testing();
