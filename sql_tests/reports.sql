-- reports: balance now and as of a past time; entries in ledger order with
-- running balances, keyset pagination, pending (unfolded) legs and folding;
-- statements; the trial balance; check_ledger on a consistent ledger.

\set VERBOSITY sqlstate
\pset null '<null>'
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pgbank CASCADE;
CREATE EXTENSION pgbank CASCADE;
RESET client_min_messages;

-- which legs stay pending is part of what this file checks: no
-- opportunistic folding unless a probe asks for it
SET pgbank.fold_every = 0;

SELECT bank.create_customer('alice@example.com', 'Alice', 'Archer') AS alice \gset
SELECT bank.create_customer('bob@example.com', 'Bob', 'Baker') AS bob \gset
SELECT bank.create_customer('carol@example.com', 'Carol', 'Clark') AS carol \gset
SELECT id AS a FROM bank.open_account('checking', 'alice', 'USD', :alice) \gset
SELECT id AS b FROM bank.open_account('checking', 'bob', 'USD', :bob) \gset
SELECT id AS c FROM bank.open_account('savings', 'carol yen', 'JPY', :carol) \gset
SELECT id AS e FROM bank.open_account('checking', 'alice euro', 'EUR', :alice) \gset

-- an account's entries with the counterparty's name instead of its id
CREATE FUNCTION pg_temp.entries(account bigint, after bigint DEFAULT NULL, lim integer DEFAULT 100)
RETURNS TABLE (entry_id bigint, transfer_id bigint, kind bank.transfer_kind, amount numeric,
               balance_after numeric, counterparty text, description text)
LANGUAGE sql AS $$
  SELECT e.entry_id, e.transfer_id, e.kind, e.amount, e.balance_after, a.name, e.description
    FROM bank.entries(account, after, lim) WITH ORDINALITY e
    LEFT JOIN bank.accounts a ON a.id = e.counterparty
   ORDER BY e.ordinality
$$;

-- a new account: zero now, and zero as of any time
SELECT currency, posted, pending_out, pending_in, available FROM bank.balance(:a);
SELECT clock_timestamp() AS t0 \gset
SELECT currency, posted, pending_out, pending_in, available, as_of = :'t0' AS as_of_echoed
  FROM bank.balance(:a, :'t0');
SELECT count(*) AS entries FROM bank.entries(:a);

-- activity, with a timestamp taken between each step:
--   t0 | deposit 100 | t1 | transfer 30 to bob | t2 | hold 20 for bob | t3
--   | withdraw 10 | t4 | capture 15 of the hold | t5 | deposit 5 | t6
SELECT status FROM bank.deposit(:a, 100, 'rp-1', 'salary');
SELECT clock_timestamp() AS t1 \gset
SELECT status FROM bank.transfer(:a, :b, 30, 'rp-2', 'rent');
SELECT clock_timestamp() AS t2 \gset
SELECT id AS h FROM bank.hold(:a, :b, 20, 'rp-3', NULL, 'card') \gset
SELECT clock_timestamp() AS t3 \gset
SELECT status FROM bank.withdraw(:a, 10, 'rp-4', 'atm');
SELECT clock_timestamp() AS t4 \gset
SELECT status FROM bank.capture(:h, 15);
SELECT clock_timestamp() AS t5 \gset
SELECT status FROM bank.deposit(:a, 5, 'rp-5', 'refund');
SELECT clock_timestamp() AS t6 \gset

-- balance as of each point in time, for alice then bob:
--   t0 0 | t1 100 | t2 70 | t3 70, 20 held out | t4 60, 20 held out
--   | t5 45 | t6 50 ; bob: t2 30 | t3 30, 20 held in | t5 45
SELECT t, b.currency, b.posted, b.pending_out, b.pending_in, b.available
  FROM (VALUES ('t0', :'t0'::timestamptz), ('t1', :'t1'), ('t2', :'t2'), ('t3', :'t3'),
               ('t4', :'t4'), ('t5', :'t5'), ('t6', :'t6')) v(t, ts),
       LATERAL bank.balance(:a, ts) b
 ORDER BY t;
SELECT t, b.posted, b.pending_out, b.pending_in, b.available
  FROM (VALUES ('t0', :'t0'::timestamptz), ('t1', :'t1'), ('t2', :'t2'), ('t3', :'t3'),
               ('t4', :'t4'), ('t5', :'t5'), ('t6', :'t6')) v(t, ts),
       LATERAL bank.balance(:b, ts) b
 ORDER BY t;

-- balance now agrees with the latest as_of
SELECT currency, posted, pending_out, pending_in, available FROM bank.balance(:a);
SELECT currency, posted, pending_out, pending_in, available FROM bank.balance(:b);

-- balance: unknown account PB009 (now and as of); NULL account PB022
SELECT posted FROM bank.balance(999999);
SELECT posted FROM bank.balance(999999, :'t1');
SELECT posted FROM bank.balance(NULL);

-- entries in ledger order with the balance after each: alice's debits
-- folded her deposit first; the last deposit is still a pending leg, listed
-- after the entries with a NULL entry_id and a provisional running balance
SELECT * FROM pg_temp.entries(:a);
-- bob's credits are all pending legs so far
SELECT * FROM pg_temp.entries(:b);

-- keyset pagination: pages of 2, each after the last entry_id seen; the
-- pending leg comes after the last entry
SELECT * FROM pg_temp.entries(:a, NULL, 2);
SELECT max(entry_id) AS p1 FROM bank.entries(:a, NULL, 2) \gset
SELECT * FROM pg_temp.entries(:a, :p1, 2);
SELECT max(entry_id) AS p2 FROM bank.entries(:a, :p1, 2) \gset
SELECT * FROM pg_temp.entries(:a, :p2, 2);
-- a page that ends exactly at the last entry does not show the pending leg
SELECT * FROM pg_temp.entries(:a, :p1, 1);


-- entries: limit 1 to 1000 (else PB023); unknown account PB009; NULL PB022
SELECT count(*) FROM bank.entries(:a, NULL, 1000);
SELECT count(*) FROM bank.entries(:a, NULL, 0);
SELECT count(*) FROM bank.entries(:a, NULL, 1001);
SELECT count(*) FROM bank.entries(999999);
SELECT count(*) FROM bank.entries(NULL);

-- folding turns pending legs into entries with the same running balances;
-- the posted balance does not change; folding again finds nothing
SELECT bank.fold_account(:a) AS folded;
SELECT * FROM pg_temp.entries(:a);
SELECT bank.fold_account(:a) AS folded_again;
SELECT bank.fold_account(:b) AS folded;
SELECT * FROM pg_temp.entries(:b);
SELECT currency, posted, available FROM bank.balance(:a);
SELECT currency, posted, available FROM bank.balance(:b);
SELECT posted FROM bank.balance(:a, :'t6');
-- folding an unknown account: PB009
SELECT bank.fold_account(999999);

-- the balance_after of the last entry is the account's balance
SELECT (SELECT balance_after FROM bank.entries(:a) ORDER BY entry_id DESC LIMIT 1) = posted AS last_is_balance
  FROM bank.balance(:a);

-- with pgbank.fold_every = 1 every lock-free leg folds its account at once
-- (when no one else holds it), so nothing stays pending
SET pgbank.fold_every = 1;
SELECT status FROM bank.deposit(:b, 7, 'rp-6', 'gift');
SET pgbank.fold_every = 0;
SELECT * FROM pg_temp.entries(:b);
SELECT count(*) AS bob_pending_legs FROM bank.pending_legs WHERE account_id = :b;
SELECT clock_timestamp() AS t7 \gset

-- statement of [t0, t7): opening 0, every leg, closing 50
SELECT line, entry_id, transfer_id, kind, description, amount, balance
  FROM bank.statement(:a, :'t0', :'t7');
-- statement of [t2, t4): opening 70, the withdrawal (the hold is no leg),
-- closing 60
SELECT line, entry_id, transfer_id, kind, description, amount, balance
  FROM bank.statement(:a, :'t2', :'t4');
-- statement of [t4, t7): opening 60, the capture and the deposit, closing 50
SELECT line, entry_id, transfer_id, kind, description, amount, balance
  FROM bank.statement(:a, :'t4', :'t7');
-- a period with no activity: opening = closing
SELECT line, entry_id, amount, balance
  FROM bank.statement(:a, :'t7', :'t7'::timestamptz + interval '1 day');
-- a period before the account had money
SELECT line, entry_id, amount, balance
  FROM bank.statement(:a, :'t0'::timestamptz - interval '1 day', :'t0');
-- bob's statement: every leg, including the one folded at once
SELECT line, entry_id, transfer_id, kind, description, amount, balance
  FROM bank.statement(:b, :'t0', :'t7');

-- for every pair of the timestamps: closing = opening + sum of the entries,
-- every running balance = the previous one + its amount, and the opening and
-- closing equal the balance as of just before the period's start and end
-- (the period is [from, to))
WITH ts(t) AS (VALUES (:'t0'::timestamptz), (:'t1'), (:'t2'), (:'t3'), (:'t4'), (:'t5'), (:'t6'), (:'t7')),
     periods AS (SELECT f.t AS f, x.t AS x FROM ts f, ts x WHERE f.t < x.t),
     s AS (SELECT p.f, p.x, st.*, row_number() OVER (PARTITION BY p.f, p.x) AS n
             FROM periods p, LATERAL bank.statement(:a, p.f, p.x) st),
     checks AS (
       SELECT f, x,
              max(balance) FILTER (WHERE line = 'closing') =
              max(balance) FILTER (WHERE line = 'opening') + coalesce(sum(amount) FILTER (WHERE line = 'entry'), 0)
                AS closing_ok,
              bool_and(line <> 'entry' OR balance = prev + amount) AS running_ok
         FROM (SELECT s.*, lag(balance) OVER (PARTITION BY f, x ORDER BY n) AS prev FROM s) s2
        GROUP BY f, x)
SELECT count(*) AS periods, bool_and(closing_ok) AS closing_ok, bool_and(running_ok) AS running_ok,
       bool_and((SELECT max(balance) FROM s WHERE s.f = c.f AND s.x = c.x AND line = 'opening')
                = (SELECT posted FROM bank.balance(:a, c.f - interval '1 microsecond'))) AS opening_is_balance,
       bool_and((SELECT max(balance) FROM s WHERE s.f = c.f AND s.x = c.x AND line = 'closing')
                = (SELECT posted FROM bank.balance(:a, c.x - interval '1 microsecond'))) AS closing_is_balance
  FROM checks c;

-- statement: the period must end after it starts (PB023); unknown account
-- PB009; strict on NULL
SELECT count(*) FROM bank.statement(:a, :'t4', :'t2');
SELECT count(*) FROM bank.statement(:a, :'t4', :'t4');
SELECT count(*) FROM bank.statement(999999, :'t0', :'t7');
SELECT count(*) FROM bank.statement(:a, NULL, :'t7');

-- the trial balance: per currency and type, debit (negative) and credit
-- (positive) balances, and per currency a total where debit = credit.  Bob
-- overdraws by 8 (limit set by the superuser) so checking has both sides.
UPDATE bank.accounts SET overdraft_limit = 1000 WHERE id = :b;
SELECT status FROM bank.withdraw(:b, 60, 'rp-7');
SELECT status FROM bank.deposit(:c, 1000, 'rp-8');
SELECT * FROM bank.trial_balance();
-- debit = credit in every currency total
SELECT currency, debit = credit AS balanced FROM bank.trial_balance() WHERE account_type IS NULL;

-- check_ledger finds nothing wrong
SELECT * FROM bank.check_ledger();

-- pending legs page by their own cursor (minus the leg id): an entry and
-- three pending deposits on a new account, two rows a page, reach every row
-- exactly once and in order
SET pgbank.fold_every = 0;
SELECT bank.create_customer('dave@example.com', 'Dave', 'Dunn') AS dave \gset
SELECT id AS d FROM bank.open_account('checking', 'dave', 'USD', :dave) \gset
SELECT id FROM bank.deposit(:d, 10, 'rp-pg-0') \gset
SELECT bank.fold_account(:d);
SELECT id FROM bank.deposit(:d, 1, 'rp-pg-1') \gset
SELECT id FROM bank.deposit(:d, 2, 'rp-pg-2') \gset
SELECT id FROM bank.deposit(:d, 3, 'rp-pg-3') \gset
CREATE TEMP TABLE pages (pg int, entry_id bigint, amount numeric, balance_after numeric, cur bigint);
DO $$
DECLARE
	next_after bigint := NULL;
	pgno int := 0;
	n int;
BEGIN
	LOOP
		pgno := pgno + 1;
		INSERT INTO pages
		SELECT pgno, e.entry_id, e.amount, e.balance_after, e.cursor
		  FROM bank.entries((SELECT id FROM bank.accounts WHERE name = 'dave'), next_after, 2) e;
		GET DIAGNOSTICS n = ROW_COUNT;
		EXIT WHEN n < 2 OR pgno > 50;
		SELECT p.cur INTO next_after FROM pages p WHERE p.pg = pgno ORDER BY p.ctid DESC LIMIT 1;
	END LOOP;
END $$;
SELECT pg, entry_id IS NOT NULL AS folded, amount, balance_after FROM pages ORDER BY pg, ctid;

-- an opportunistic fold waits for the commit: inside a transaction (explicit,
-- or a DO block) the credited account's legs stay pending, so no lock is
-- taken on it mid-transaction, and the commit folds them
SET pgbank.fold_every = 1;
BEGIN;
SELECT status FROM bank.deposit(:d, 4, 'rp-pc-1');
SELECT count(*) AS pending_inside_transaction FROM bank.pending_legs WHERE account_id = :d;
COMMIT;
SELECT count(*) AS pending_after_commit FROM bank.pending_legs WHERE account_id = :d;
DO $$
DECLARE
	acct bigint := (SELECT id FROM bank.accounts WHERE name = 'dave');
BEGIN
	PERFORM bank.deposit(acct, 5, 'rp-pc-2');
	IF (SELECT count(*) FROM bank.pending_legs WHERE account_id = acct) = 0 THEN
		RAISE EXCEPTION 'folded before the commit';
	END IF;
END $$;
SELECT count(*) AS pending_after_do FROM bank.pending_legs WHERE account_id = :d;
SELECT balance FROM bank.account_balances WHERE id = :d;
SET pgbank.fold_every = 0;
