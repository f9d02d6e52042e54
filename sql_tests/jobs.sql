-- jobs: background jobs are plain SQL functions (the worker only calls
-- them): queuing (kinds, roles, arguments, keys), claiming and running,
-- failures (the error recorded without its detail, the job's work rolled
-- back, exponential backoff, dead after max_attempts), scheduling
-- (housekeeping runs not piled up; calendar periods each once, missed ones
-- caught up), the view, and every built-in job idempotent: a second run
-- does nothing.  (Two runners never take one job: specs/job_claim.spec; the
-- worker itself: t/005_jobs_worker.pl.)

\set VERBOSITY sqlstate
\pset null '<null>'
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pgbank CASCADE;
CREATE EXTENSION pgbank CASCADE;
RESET client_min_messages;
SET pgbank.bcrypt_cost = 4;

-- run the job due first and show how it went (or that nothing was due)
CREATE FUNCTION pg_temp.run(OUT job text, OUT args text[], OUT status text, OUT attempts integer,
							OUT result text, OUT error_code text, OUT error_message text)
	RETURNS SETOF record LANGUAGE plpgsql AS $$
DECLARE
	i bigint := bank.run_next_job();
BEGIN
	IF i IS NULL THEN
		RETURN QUERY SELECT 'nothing due'::text, NULL::text[], NULL::text, NULL::integer,
							NULL::text, NULL::text, NULL::text;
	END IF;
	RETURN QUERY SELECT r.job, r.args, r.status, r.attempts, r.result, r.error_code::text,
						r.error_message
				   FROM bank.job_runs r WHERE r.id = i;
END $$;

-- the built-in job kinds and their schedule
SELECT name, function, enqueue_roles, max_attempts, backoff FROM bank.job_kinds ORDER BY name;
SELECT job, period, every, delay, enabled, next_period FROM bank.job_schedule ORDER BY job;

-- nothing is queued at first; scheduling queues each housekeeping job once
-- (the schedule is due at installation) and moves its next run on, so a
-- second call queues nothing
SELECT * FROM pg_temp.run();
SELECT bank.schedule_jobs() AS queued;
SELECT bank.schedule_jobs() AS queued;
SELECT job, status, attempts, scheduled, enqueued_by FROM bank.job_runs ORDER BY id;
-- (housekeeping: hourly ones next run in about an hour, expire_holds sooner;
-- calendar ones at their period's end plus delay, whatever the time of day)
SELECT job, CASE WHEN period IS NULL THEN next_run_at - now() > '50 minutes'
				 ELSE next_run_at > now() END AS later
  FROM bank.job_schedule ORDER BY job;

-- a housekeeping job still queued is not queued again when due again
UPDATE bank.job_schedule SET next_run_at = now();
SELECT bank.schedule_jobs() AS queued;

-- each runs (in order of due time, then id); their results are the counts
-- they returned; then nothing is due
SELECT * FROM pg_temp.run();
SELECT * FROM pg_temp.run();
SELECT * FROM pg_temp.run();
SELECT * FROM pg_temp.run();
SELECT * FROM pg_temp.run();
SELECT * FROM pg_temp.run();
SELECT count(*) AS done, bool_and(finished_at >= started_at) AS timed
  FROM bank.job_runs WHERE status = 'done';
UPDATE bank.job_schedule SET enabled = false;

-- test job kinds: a daily job that records its day once (idempotent: a
-- second run of a day changes nothing and returns NULL), and a job that
-- writes, then fails with a detail that must not be recorded
CREATE TABLE job_log (day date PRIMARY KEY);
CREATE FUNCTION test_daily(day date) RETURNS integer LANGUAGE sql AS
$$ INSERT INTO public.job_log VALUES (day) ON CONFLICT DO NOTHING RETURNING 1 $$;
GRANT SELECT, INSERT ON job_log TO bank_admin;
CREATE FUNCTION test_fail(what text) RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.job_log VALUES ('1999-12-31');
	RAISE EXCEPTION 'job failed: %', what
		USING DETAIL = 'the card 4111111111111111', HINT = 'the key s3cr3t';
END $$;
INSERT INTO bank.job_kinds (name, function, enqueue_roles, max_attempts, backoff, description) VALUES
('test_daily', 'test_daily(date)', '{bank_service}', 3, '1 minute', 'test: records a day'),
('test_fail', 'test_fail(text)', '{bank_admin}', 3, '1 minute', 'test: fails');

-- queuing: unknown kind (PB080), NULL kind (PB022), wrong number of
-- arguments or a NULL one (PB081), a value the argument's type refuses (its
-- own error, 22007), a key too long (PB023)
SELECT bank.enqueue_job('no_such_job');
SELECT bank.enqueue_job(NULL);
SELECT bank.enqueue_job('test_daily');
SELECT bank.enqueue_job('test_daily', '{2026-01-01,2026-01-02}');
SELECT bank.enqueue_job('test_daily', '{NULL}');
SELECT bank.enqueue_job('test_daily', '{yesterday-ish}');
SELECT bank.enqueue_job('test_daily', '{2026-01-01}', repeat('k', 256));
SELECT count(*) AS queued FROM bank.job_queue WHERE status = 'queued';

-- a key makes queuing idempotent: the same job again, PB082 with other
-- arguments
SELECT bank.enqueue_job('test_daily', '{2026-01-01}', 'day-1') AS j1 \gset
SELECT bank.enqueue_job('test_daily', '{2026-01-01}', 'day-1') = :j1 AS same_job;
SELECT bank.enqueue_job('test_daily', '{2026-01-02}', 'day-1');
SELECT * FROM pg_temp.run();
SELECT * FROM pg_temp.run();

-- the job runs at least once, so it must be idempotent: the same day again
-- (no key) runs and changes nothing
SELECT bank.enqueue_job('test_daily', '{2026-01-01}') IS NOT NULL AS queued;
SELECT * FROM pg_temp.run();
SELECT * FROM job_log;

-- run_at: a job queued for later is not due yet
SELECT bank.enqueue_job('test_daily', '{2026-01-03}', NULL, now() + '1 hour') AS later \gset
SELECT * FROM pg_temp.run();
UPDATE bank.job_queue SET next_run_at = now() WHERE id = :later;
SELECT * FROM pg_temp.run();

-- a failure rolls back the job's work (no 1999-12-31 row), records the
-- SQLSTATE and primary message only (not the detail or hint), and retries
-- after the kind's backoff, doubled for each failure; after max_attempts
-- (3) the job is dead, with an audit row
SELECT bank.enqueue_job('test_fail', '{boom}') AS f \gset
SELECT * FROM pg_temp.run();
SELECT next_run_at - finished_at AS retry_in FROM bank.job_runs WHERE id = :f;
SELECT * FROM pg_temp.run();
UPDATE bank.job_queue SET next_run_at = now() WHERE id = :f;
SELECT * FROM pg_temp.run();
SELECT next_run_at - finished_at AS retry_in FROM bank.job_runs WHERE id = :f;
UPDATE bank.job_queue SET next_run_at = now() WHERE id = :f;
SELECT * FROM pg_temp.run();
SELECT next_run_at FROM bank.job_runs WHERE id = :f;
SELECT * FROM pg_temp.run();
SELECT * FROM job_log WHERE day = '1999-12-31';
SELECT count(*) AS secrets_kept FROM bank.job_queue
 WHERE error_message ~ '4111|s3cr3t' OR result ~ '4111|s3cr3t';
SELECT action, resource_type, resource_id = :'f' AS this_job, metadata
  FROM bank.audit_events WHERE action = 'job.dead';

-- an admin may queue a dead job again: it runs now, for max_attempts more
-- (its count goes on); a job that is not dead (PB084) or does not exist
-- (PB083) cannot be; NULL is PB022
SELECT bank.retry_job(:f);
SELECT status, attempts, max_attempts, next_run_at <= now() AS due FROM bank.job_runs WHERE id = :f;
SELECT bank.retry_job(:f);
SELECT bank.retry_job(-1);
SELECT bank.retry_job(NULL);
SELECT * FROM pg_temp.run();
SELECT action, resource_id = :'f' AS this_job, metadata FROM bank.audit_events WHERE action = 'job.retry';

-- or give a dead job up for good, with a reason: cancelled, never run
-- again, audited; not while it is queued (PB084); PB083, PB022 as above
SELECT bank.cancel_job(:f, 'still failing');
UPDATE bank.job_queue SET status = 'dead', attempts = max_attempts WHERE id = :f;
SELECT bank.cancel_job(:f, NULL);
SELECT bank.cancel_job(:f, '');
SELECT bank.cancel_job(-1, 'no such job');
SELECT bank.cancel_job(:f, 'the "boom" input is bad; given up');
SELECT status, attempts FROM bank.job_runs WHERE id = :f;
SELECT bank.cancel_job(:f, 'again');
SELECT bank.retry_job(:f);
SELECT * FROM pg_temp.run();
SELECT action, resource_id = :'f' AS this_job, metadata FROM bank.audit_events WHERE action = 'job.cancel';
DELETE FROM bank.job_queue WHERE id = :f;

-- a date argument is stored as YYYY-MM-DD whatever the session's DateStyle
-- (keys and arguments compare as text; a worker with another DateStyle
-- reads it back the same); other types as given
SET DateStyle = 'SQL, DMY';
SELECT bank.enqueue_job('test_daily', '{30/01/2026}', 'dmy') AS dmy \gset
SELECT args FROM bank.job_queue WHERE id = :dmy;
SELECT bank.enqueue_job('test_daily', '{2026-01-30}', 'dmy') = :dmy AS same_job;
SELECT bank.enqueue_job('test_fail', '{30/01/2026}') AS fdmy \gset
SELECT args FROM bank.job_queue WHERE id = :fdmy;
RESET DateStyle;
DELETE FROM bank.job_queue WHERE id IN (:dmy, :fdmy);

-- a job kind whose function was dropped fails like any job
CREATE FUNCTION test_gone() RETURNS integer LANGUAGE sql AS 'SELECT 1';
INSERT INTO bank.job_kinds (name, function, max_attempts, description)
VALUES ('test_gone', 'test_gone()', 1, 'test: its function is dropped');
SELECT bank.enqueue_job('test_gone') IS NOT NULL AS queued;
DROP FUNCTION test_gone();
SELECT * FROM pg_temp.run();

-- calendar schedules: each period that ended is queued once, with its first
-- day as the argument, missed periods included; next_period moves past them.
-- Days and months are pgbank.business_timezone's, not the session's
-- TimeZone (PST8PDT here): UTC+14 is another date for 21 or 22 hours a day,
-- and its midnight is never the session's.
SET pgbank.business_timezone = 'Pacific/Kiritimati';
SELECT bank.business_date(now()) AS today \gset
INSERT INTO bank.job_schedule (job, period) VALUES ('test_daily', 'day');
SELECT bank.schedule_jobs() AS queued;
SELECT next_period = :'today' AS starts_today,
	   next_run_at = (:'today'::date + 1)::timestamp AT TIME ZONE 'Pacific/Kiritimati' AS runs_after_midnight
  FROM bank.job_schedule WHERE job = 'test_daily';
UPDATE bank.job_schedule SET next_period = :'today'::date - 3, next_run_at = now()
 WHERE job = 'test_daily';
SET DateStyle = 'SQL, DMY';
SELECT bank.schedule_jobs() AS queued;
SELECT bank.schedule_jobs() AS queued;
RESET DateStyle;
SELECT args[1]::date - :'today' AS day, key = args[1] AS keyed_by_day,
	   key ~ '^\d{4}-\d{2}-\d{2}$' AS iso_key, scheduled
  FROM bank.job_queue WHERE job = 'test_daily' AND status = 'queued' ORDER BY id;
SELECT next_period = :'today' AS next_is_today FROM bank.job_schedule WHERE job = 'test_daily';
SELECT job, args[1]::date - :'today' AS day, status, result FROM pg_temp.run();
SELECT job, args[1]::date - :'today' AS day, status, result FROM pg_temp.run();
SELECT job, args[1]::date - :'today' AS day, status, result FROM pg_temp.run();
SELECT job FROM pg_temp.run();
SELECT count(*) AS days_logged FROM job_log WHERE day >= :'today'::date - 3;

-- the same period again is not queued again (its key)
UPDATE bank.job_schedule SET next_period = :'today'::date - 1, next_run_at = now()
 WHERE job = 'test_daily';
SELECT bank.schedule_jobs() AS queued;

-- monthly, with a delay: two months missed
DELETE FROM bank.job_schedule WHERE job = 'test_daily';
INSERT INTO bank.job_schedule (job, period, delay, next_period)
VALUES ('test_daily', 'month', '1 minute', date_trunc('month', :'today'::date) - interval '2 months');
SELECT bank.schedule_jobs() AS queued;
SELECT args[1]::date = date_trunc('month', :'today'::date) - interval '2 months' AS first_month
  FROM bank.job_queue WHERE job = 'test_daily' AND status = 'queued' ORDER BY id LIMIT 1;
SELECT next_period = date_trunc('month', (now() - interval '1 minute') AT TIME ZONE 'Pacific/Kiritimati')::date AS next_is_this_month,
	   next_run_at = ((next_period + interval '1 month') AT TIME ZONE 'Pacific/Kiritimati') + interval '1 minute' AS runs_after_month
  FROM bank.job_schedule WHERE job = 'test_daily';
DELETE FROM bank.job_queue WHERE job = 'test_daily' AND status = 'queued';
RESET pgbank.business_timezone;
DELETE FROM bank.job_schedule WHERE job = 'test_daily';

-- who may do what: a service queues what its kinds allow (the audit row
-- names it); it may not queue an admin job (42501, audited), nor run jobs;
-- a teller may not queue at all; tellers and customers cannot read the
-- jobs; auditors read the view but run nothing
SET ROLE bank_service;
SELECT bank.enqueue_job('test_daily', '{2026-02-01}', 'svc-1') AS svc \gset
SELECT bank.enqueue_job('test_fail', '{x}');
SELECT bank.run_next_job();
SELECT bank.retry_job(1);
SELECT bank.cancel_job(1, 'not mine to cancel');
SELECT count(*) FROM bank.job_runs;
RESET ROLE;
SELECT action, acting_role, resource_id = :'svc' AS this_job FROM bank.audit_events
 WHERE action = 'job.enqueue' AND acting_role = 'bank_service';
SELECT action, acting_role, resource_id, metadata->>'code' AS code
  FROM bank.audit_events WHERE action = 'auth.denied' ORDER BY id DESC LIMIT 1;
SET ROLE bank_teller;
SELECT bank.enqueue_job('test_daily', '{2026-02-02}');
SELECT count(*) FROM bank.job_runs;
RESET ROLE;
SET ROLE bank_customer;
SELECT count(*) FROM bank.job_runs;
SELECT count(*) FROM bank.job_queue;
RESET ROLE;
SET ROLE bank_auditor;
SELECT count(*) > 0 AS auditor_sees_jobs FROM bank.job_runs;
SELECT bank.schedule_jobs();
RESET ROLE;
SET ROLE bank_admin;
SELECT job, status FROM pg_temp.run();
RESET ROLE;

-- the built-in jobs, each run twice: the second run does nothing
SELECT bank.create_customer('alice@example.com', 'Alice', 'Archer') AS alice \gset
SELECT bank.create_customer('shop@example.com', 'Shop', 'Keeper') AS shop \gset
SELECT id AS a_chk FROM bank.open_account('checking', 'alice', 'USD', :alice) \gset
SELECT id AS s_chk FROM bank.open_account('checking', 'shop', 'USD', :shop) \gset
SELECT status FROM bank.deposit(:a_chk, 100, 'j-dep-1');

-- expire_holds: an expired hold (time simulated by the superuser, guard
-- triggers off for one statement) is voided once
SELECT id AS h1 FROM bank.hold(:a_chk, :s_chk, 40, 'j-h-1', '1 minute') \gset
SELECT id AS h2 FROM bank.hold(:a_chk, :s_chk, 5, 'j-h-2') \gset
SET session_replication_role = replica;
UPDATE bank.transfers SET expires_at = created_at WHERE id = :h1;
RESET session_replication_role;
SELECT bank.enqueue_job('expire_holds') IS NOT NULL AS queued;
SELECT job, status, result FROM pg_temp.run();
SELECT bank.enqueue_job('expire_holds') IS NOT NULL AS queued;
SELECT job, status, result FROM pg_temp.run();
SELECT id = :h1 AS expired_hold, status FROM bank.transfers WHERE id IN (:h1, :h2) ORDER BY id;
SELECT available FROM bank.balance(:a_chk);

-- purge_sessions: sessions that ended (revoked, expired, idle) more than
-- pgbank.session_retention ago go, with their refresh tokens; live ones
-- and recently ended ones stay
SELECT bank.register('bob@example.com', 'correct horse battery', 'Bob', 'Baker') AS bob \gset
SELECT status FROM bank.login('bob@example.com', 'correct horse battery');
SELECT status FROM bank.login('bob@example.com', 'correct horse battery');
SELECT status FROM bank.login('bob@example.com', 'correct horse battery');
SELECT status FROM bank.login('bob@example.com', 'correct horse battery');
SELECT min(id) AS s1, min(id) + 1 AS s2, min(id) + 2 AS s3, max(id) AS s4
  FROM bank.sessions WHERE customer_id = :bob \gset
UPDATE bank.sessions SET revoked_at = now() - interval '31 days', revoked_reason = 'logout'
 WHERE id = :s1;
UPDATE bank.sessions SET expires_at = now() - interval '31 days' WHERE id = :s2;
UPDATE bank.sessions SET last_seen_at = now() - interval '31 days' WHERE id = :s3;
UPDATE bank.sessions SET revoked_at = now() - interval '29 days', revoked_reason = 'logout'
 WHERE id = :s4;
SELECT bank.enqueue_job('purge_sessions') IS NOT NULL AS queued;
SELECT job, status, result FROM pg_temp.run();
SELECT bank.enqueue_job('purge_sessions') IS NOT NULL AS queued;
SELECT job, status, result FROM pg_temp.run();
SELECT id - :s1 AS session_left FROM bank.sessions WHERE customer_id = :bob ORDER BY id;
SELECT count(*) AS orphan_tokens FROM bank.refresh_tokens r
 WHERE NOT EXISTS (SELECT FROM bank.sessions s WHERE s.id = r.session_id);
SELECT action, metadata->>'removed' AS removed FROM bank.audit_events
 WHERE action = 'session.purge';
SET pgbank.session_retention = 0;
SELECT bank.purge_sessions() AS kept_for_ever;
RESET pgbank.session_retention;

-- purge_idempotency_keys: off by default; with a retention, the keys of
-- settled transfers older than it are released (the transfer stays), once;
-- a pending hold keeps its key; a released key can be used again
SELECT bank.purge_idempotency_keys() AS kept_for_ever;
SET session_replication_role = replica;
UPDATE bank.transfers SET created_at = created_at - interval '2 days'
 WHERE idempotency_key IN ('j-dep-1', 'j-h-1', 'j-h-2');
RESET session_replication_role;
SET pgbank.idempotency_retention = '1d';
SELECT bank.enqueue_job('purge_idempotency_keys') IS NOT NULL AS queued;
SELECT job, status, result FROM pg_temp.run();
SELECT bank.enqueue_job('purge_idempotency_keys') IS NOT NULL AS queued;
SELECT job, status, result FROM pg_temp.run();
SELECT id IN (:h1, :h2) AS hold, status, idempotency_key, idempotency_scope IS NULL AS no_scope,
	   fingerprint IS NULL AS no_fingerprint
  FROM bank.transfers WHERE kind <> 'transfer' OR id IN (:h1, :h2) ORDER BY id;
SELECT id AS dep2 FROM bank.deposit(:a_chk, 100, 'j-dep-1') \gset
SELECT count(*) AS deposits FROM bank.transfers WHERE kind = 'deposit' AND status = 'posted';
SELECT action, resource_type, metadata->>'removed' AS removed FROM bank.audit_events
 WHERE action = 'idempotency.purge';
RESET pgbank.idempotency_retention;

-- a key can be released only by the engine, never set or changed
UPDATE bank.transfers SET idempotency_key = NULL, idempotency_scope = NULL, fingerprint = NULL
 WHERE id = :dep2;
SELECT * FROM bank.check_ledger();

-- purge_audit (bank.purge_expired): twice in one transaction (one cutoff):
-- the second run removes nothing
SELECT pg_sleep(1.2);
SET pgbank.audit_retention = '1s';
BEGIN;
SELECT bank.enqueue_job('purge_audit') IS NOT NULL AS queued;
SELECT job, status, result::bigint > 0 AS removed_some FROM pg_temp.run();
SELECT bank.enqueue_job('purge_audit') IS NOT NULL AS queued;
SELECT job, status, result FROM pg_temp.run();
COMMIT;
RESET pgbank.audit_retention;
SELECT count(*) AS broken_links FROM bank.audit_verify();

-- done and cancelled jobs are forgotten after pgbank.job_retention, and
-- dead ones without a key; a dead one with a key (every calendar run) stays
-- until an admin retries or cancels it
SELECT bank.enqueue_job('test_fail', '{dead}', 'keyed-dead') AS dead \gset
UPDATE bank.job_queue SET status = 'dead', attempts = max_attempts, finished_at = now() WHERE id = :dead;
SET pgbank.job_retention = '1s';
UPDATE bank.job_queue SET finished_at = finished_at - interval '2 seconds' WHERE status <> 'queued';
SELECT bank.schedule_jobs() AS queued;
SELECT status, count(*) AS left_over FROM bank.job_queue WHERE status <> 'queued' GROUP BY 1;
RESET pgbank.job_retention;
DELETE FROM bank.job_queue WHERE id = :dead;
