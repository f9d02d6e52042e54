-- Account events: the per-customer feed behind GET /v1/events
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pgbank CASCADE;
CREATE EXTENSION pgbank CASCADE;
\set VERBOSITY sqlstate

-- Two customers: Ann with two accounts, Ben with one.
SELECT bank.create_customer('ann@example.com', 'Ann', 'A') AS ca \gset
SELECT bank.create_customer('ben@example.com', 'Ben', 'B') AS cb \gset
SELECT id AS a1 FROM bank.open_account('checking', 'ann 1', 'USD', :ca) \gset
SELECT id AS a2 FROM bank.open_account('savings', 'ann 2', 'USD', :ca) \gset
SELECT id AS b1 FROM bank.open_account('checking', 'ben 1', 'USD', :cb) \gset

-- Access tokens signed in SQL with the cluster's key (as in rls.sql)
\i sql_tests/include/customer_token.psql

-- the whole feed of a customer, as the superuser sees the table: in the
-- order written, numbered or not (readers number them)
CREATE FUNCTION pg_temp.feed(customer bigint)
RETURNS TABLE (seq bigint, kind text, account text, amount bigint) LANGUAGE sql AS $$
	SELECT e.seq, e.kind, (SELECT name FROM bank.accounts WHERE id = e.account_id), e.amount
	  FROM bank.account_events e WHERE e.customer_id = customer ORDER BY e.id
$$;
-- number a customer's feed as its reader does (bank.events_head, as them)
CREATE FUNCTION pg_temp.read_as(token text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
	head bigint;
BEGIN
	SET LOCAL ROLE bank_customer;
	PERFORM bank.authenticate(token);
	head := bank.events_head();
	RESET ROLE;
	RETURN head;
END $$;

-- Every kind: deposits (credits; the settlement account has no feed),
-- transfers both ways and between one customer's own accounts, a hold
-- captured in part, a hold voided, a freeze and an unfreeze.
SELECT status FROM bank.deposit(:a1, 100, 'ev-1');
SELECT status FROM bank.deposit(:b1, 50, 'ev-2');
SELECT status FROM bank.transfer(:a1, :b1, 10, 'ev-3');
SELECT status FROM bank.transfer(:b1, :a1, 3, 'ev-4');
SELECT status FROM bank.transfer(:a1, :a2, 7, 'ev-5');
SELECT id AS h1 FROM bank.hold(:a1, :b1, 20, 'ev-6') \gset
SELECT status, posted_amount FROM bank.capture(:h1, 15);
SELECT id AS h2 FROM bank.hold(:b1, :a1, 5, 'ev-7') \gset
SELECT status FROM bank.void(:h2);
SELECT status FROM bank.freeze_account(:a2, 'check');
SELECT status FROM bank.unfreeze_account(:a2, 'checked');
SELECT * FROM pg_temp.feed(:ca);
SELECT * FROM pg_temp.feed(:cb);
-- system accounts have no feed
SELECT count(*) AS events_without_customer FROM bank.account_events e
 WHERE NOT EXISTS (SELECT FROM bank.accounts a WHERE a.id = e.account_id AND a.customer_id = e.customer_id);
-- written unnumbered, without touching a feed row; the first reader numbers
-- what has committed, in the order written; the counters are the heads
SELECT count(*) AS unnumbered FROM bank.account_events WHERE seq IS NULL;
SELECT count(*) AS feed_rows FROM bank.event_feeds;
BEGIN;
SELECT pg_temp.read_as(:'tok_a') AS ann_head;
COMMIT;
BEGIN;
SELECT pg_temp.read_as(:'tok_b') AS ben_head;
COMMIT;
SELECT * FROM pg_temp.feed(:ca);
SELECT customer_id = :ca AS ann, last_seq FROM bank.event_feeds ORDER BY customer_id;
-- a read-only transaction reads, and numbers nothing
SELECT status FROM bank.deposit(:a1, 1, 'ev-ro');
BEGIN READ ONLY;
SELECT pg_temp.read_as(:'tok_a') AS ann_head_read_only;
COMMIT;
SELECT count(*) AS unnumbered FROM bank.account_events WHERE seq IS NULL;
BEGIN;
SELECT pg_temp.read_as(:'tok_a') AS ann_head;
COMMIT;

-- A decline (insufficient funds) is no event: Ben's feed does not grow
SELECT last_seq AS ben_before FROM bank.event_feeds WHERE customer_id = :cb \gset
SELECT bank.transfer(:b1, :a1, 1000, 'ev-8');
SELECT status FROM bank.get_transfer((SELECT max(id) FROM bank.transfers));
SELECT pg_temp.read_as(:'tok_b') - :ben_before AS ben_new_events;

-- Nothing is written when the transaction rolls back, nor for a rolled-back
-- savepoint; what commits is numbered on, with no gap
BEGIN;
SELECT status FROM bank.transfer(:a1, :b1, 1, 'ev-9');
ROLLBACK;
BEGIN;
SAVEPOINT s;
SELECT status FROM bank.transfer(:a1, :b1, 2, 'ev-10');
ROLLBACK TO SAVEPOINT s;
SELECT status FROM bank.transfer(:a1, :b1, 4, 'ev-11');
COMMIT;
SELECT pg_temp.read_as(:'tok_b') - :ben_before AS ben_new_events;
SELECT seq, kind, amount FROM pg_temp.feed(:cb) WHERE seq > :ben_before;
SELECT count(*) AS gaps FROM (SELECT customer_id, seq, lag(seq) OVER (PARTITION BY customer_id ORDER BY seq) AS prev
								FROM bank.account_events) s WHERE seq <> coalesce(prev, 0) + 1;

-- A batch: the failed item leaves no event, the good one does
SELECT item, status FROM bank.transfer_batch(jsonb_build_array(
	jsonb_build_object('from_account', :a1, 'to_account', :b1, 'amount', '1', 'idempotency_key', 'ev-12'),
	jsonb_build_object('from_account', :a1, 'to_account', :b1, 'amount', '99999', 'idempotency_key', 'ev-13')));
SELECT pg_temp.read_as(:'tok_b') > 0 AS numbered;
SELECT seq, kind, amount FROM pg_temp.feed(:cb) ORDER BY seq DESC LIMIT 1;

-- Closing an account is an event
SELECT id AS a3 FROM bank.open_account('savings', 'ann 3', 'USD', :ca) \gset
SELECT status FROM bank.close_account(:a3);
SELECT pg_temp.read_as(:'tok_a') > 0 AS numbered;
SELECT seq, kind, account, amount FROM pg_temp.feed(:ca) ORDER BY seq DESC LIMIT 1;

-- Reviews: a transfer held for review, then approved (money moves) or
-- rejected; a hold held for review and approved becomes a live hold
INSERT INTO bank.risk_rules (name, kind, action, currency, amount)
	VALUES ('review above 100', 'max_amount', 'review', 'USD', 100);
SELECT status FROM bank.deposit(:a1, 1000, 'ev-rv-0');
SELECT id AS r1, status FROM bank.transfer(:a1, :b1, 150, 'ev-rv-1') \gset
SELECT :'status' AS held;
SELECT status FROM bank.review_approve(:r1, 'checked');
SELECT id AS r2 FROM bank.transfer(:a1, :b1, 120, 'ev-rv-2') \gset
SELECT status FROM bank.review_reject(:r2, 'no');
SELECT id AS r3 FROM bank.hold(:a1, :b1, 130, 'ev-rv-3') \gset
SELECT status FROM bank.review_approve(:r3, 'checked');
DELETE FROM bank.risk_rules;
SELECT pg_temp.read_as(:'tok_a') > 0 AS numbered;
SELECT kind, account, amount FROM pg_temp.feed(:ca) ORDER BY seq DESC LIMIT 6;
SELECT pg_temp.read_as(:'tok_b') > 0 AS numbered;
SELECT kind, account, amount FROM pg_temp.feed(:cb) ORDER BY seq DESC LIMIT 5;

-- As the customer: bank.events_since pages through their own feed only
SET ROLE bank_customer;
BEGIN;
SELECT bank.authenticate(:'tok_a') = :ca AS authenticated;
SELECT seq, kind, amount, currency FROM bank.events_since(0, 3);
SELECT seq, kind, amount, currency FROM bank.events_since(3, 3);
SELECT count(*) AS all_mine FROM bank.events_since(0, 1000);
SELECT bank.events_head() = (SELECT last_seq FROM bank.event_feeds) AS head_is_last;
-- row-level security: the tables show Ann's rows only
SELECT count(DISTINCT customer_id) AS customers_seen, bool_and(customer_id = :ca) AS only_ann
  FROM bank.account_events;
SELECT count(*) AS feeds_seen FROM bank.event_feeds;
SELECT count(*) AS past_the_head FROM bank.events_since(bank.events_head(), 10);
-- bad arguments
SELECT * FROM bank.events_since(NULL, 10);
COMMIT;
BEGIN;
SELECT bank.authenticate(:'tok_a') = :ca AS authenticated;
SELECT * FROM bank.events_since(-1, 10);
COMMIT;
BEGIN;
SELECT bank.authenticate(:'tok_a') = :ca AS authenticated;
SELECT * FROM bank.events_since(0, 0);
COMMIT;
BEGIN;
SELECT bank.authenticate(:'tok_a') = :ca AS authenticated;
SELECT * FROM bank.events_since(0, 1001);
COMMIT;
BEGIN;
SELECT bank.authenticate(:'tok_b') = :cb AS authenticated;
SELECT count(*) AS bens, bool_and(account_id = :b1) AS only_bens_account FROM bank.events_since(0, 1000);
COMMIT;
-- without a token: not authenticated, and the tables show nothing
SELECT * FROM bank.events_since(0, 10);
SELECT bank.events_head();
SELECT count(*) AS unauthenticated_sees FROM bank.account_events;
RESET ROLE;

-- Staff have no feed of their own, and no grant on the feed
SET ROLE bank_teller;
SELECT * FROM bank.events_since(0, 10);
SELECT count(*) FROM bank.account_events;
RESET ROLE;
-- nobody writes the tables but the extension, not even a customer for themselves
SET ROLE bank_customer;
INSERT INTO bank.account_events (customer_id, seq, kind, account_id, currency, occurred_at)
	VALUES (1, 1000, 'transfer.debit', 1, 'USD', now());
UPDATE bank.event_feeds SET last_seq = 1;
RESET ROLE;

-- Following a feed: bank.events_watch(seconds) marks the caller's feed, so
-- that commits writing its events NOTIFY; a customer without events gets a
-- feed row at 0; a call with more than half the period left writes nothing
SELECT bank.create_customer('cat@example.com', 'Cat', 'C') AS cc \gset
SELECT pg_temp.token(:cc) AS tok_c \gset
SET ROLE bank_customer;
BEGIN;
SELECT bank.authenticate(:'tok_c') = :cc AS authenticated;
SELECT bank.events_watch(0);
COMMIT;
BEGIN;
SELECT bank.authenticate(:'tok_c') = :cc AS authenticated;
SELECT bank.events_watch(3601);
COMMIT;
BEGIN;
SELECT bank.authenticate(:'tok_c') = :cc AS authenticated;
SELECT bank.events_watch(60);
SELECT bank.events_head() AS head_without_events;
COMMIT;
RESET ROLE;
SELECT last_seq, watched_until BETWEEN now() + interval '55 s' AND now() + interval '65 s' AS watched_a_minute
  FROM bank.event_feeds WHERE customer_id = :cc;
SELECT xmin AS watch_xmin FROM bank.event_feeds WHERE customer_id = :cc \gset
SET ROLE bank_customer;
BEGIN;
SELECT bank.authenticate(:'tok_c') = :cc AS authenticated;
SELECT bank.events_watch(60);
COMMIT;
RESET ROLE;
SELECT xmin = :'watch_xmin' AS not_rewritten FROM bank.event_feeds WHERE customer_id = :cc;
-- staff and the unauthenticated have nothing to watch
SELECT bank.events_watch(60);
SET ROLE bank_teller;
SELECT bank.events_watch(60);
RESET ROLE;

-- Retention: nothing to purge while events are young; all of it past the
-- retention; the counter stays, so numbers go on and are never reused
SELECT bank.purge_account_events() AS purged_young;
SET pgbank.event_retention = 0;
SELECT bank.purge_account_events() AS purged_with_retention_0;
RESET pgbank.event_retention;
UPDATE bank.account_events SET occurred_at = occurred_at - interval '31 days' WHERE customer_id = :cb;
SELECT bank.purge_account_events() > 0 AS purged_old;
SELECT count(*) AS bens_left FROM bank.account_events WHERE customer_id = :cb;
SELECT last_seq AS ben_head FROM bank.event_feeds WHERE customer_id = :cb \gset
SELECT status FROM bank.deposit(:b1, 1, 'ev-14');
SELECT pg_temp.read_as(:'tok_b') = :ben_head + 1 AS numbered_on;
SELECT seq = :ben_head + 1 AS numbered_on FROM bank.account_events WHERE customer_id = :cb;
SELECT action FROM bank.audit_events WHERE action = 'account_event.purge';
SELECT job, every FROM bank.job_schedule WHERE job = 'purge_account_events';
