-- interest and fees: the rate table and fee schedule, daily accrual with
-- banker's rounding and an exact carry, actual/actual day count across a
-- year end and a leap day, monthly posting through the ledger, declined
-- fees, re-runs that post nothing, periods not ended or already closed.
--
-- Every figure below is computed by hand in the comments.  Carries are in
-- 1/133590 of a minor unit (133590 = 365 * 366): a day's exact interest is
-- balance * rate * 366 of them in a 365-day year and balance * rate * 365
-- of them in a 366-day year.

\set VERBOSITY sqlstate
\pset null '<null>'
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pgbank CASCADE;
CREATE EXTENSION pgbank CASCADE;
RESET client_min_messages;
SET pgbank.business_timezone = 'UTC';

-- Test fixture: history in the past.  Money moves through the real
-- functions (deposit, withdraw), always "now"; this moves one transfer and
-- its legs back to a past instant, with the ledger's triggers skipped
-- (session_replication_role = replica, superuser only).  Nothing else
-- changes: amounts, balances and running balances stay as the engine wrote
-- them, and bank.check_ledger() still passes at the end.
CREATE FUNCTION pg_temp.backdate(transfer bigint, at timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM set_config('session_replication_role', 'replica', true);
	UPDATE bank.transfers SET created_at = at,
		   posted_at = CASE WHEN posted_at IS NOT NULL THEN at END,
		   resolved_at = CASE WHEN resolved_at IS NOT NULL THEN at END
	 WHERE id = transfer;
	UPDATE bank.entries SET posted_at = at WHERE transfer_id = transfer;
	UPDATE bank.pending_legs SET posted_at = at WHERE transfer_id = transfer;
	PERFORM set_config('session_replication_role', 'origin', true);
END
$$;
CREATE FUNCTION pg_temp.open_at(account bigint, at timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM set_config('session_replication_role', 'replica', true);
	UPDATE bank.accounts SET opened_at = at WHERE id = account;
	PERFORM set_config('session_replication_role', 'origin', true);
END
$$;

-- banker's rounding, exact: halves go to the even neighbour
SELECT n, d, bank.div_round_half_even(n, d) AS rounded
  FROM (VALUES (5, 2), (7, 2), (3, 2), (1, 2), (-1, 2), (-5, 2), (-7, 2), (5, -2),
			   (14, 10), (16, 10), (333975, 133590), (200385, 133590),
			   (1825000, 133590), (3, 1)) v(n, d);
SELECT bank.div_round_half_even(1, 0);

SELECT bank.create_customer('sam@example.com', 'Sam', 'Saver') AS sam \gset
SELECT id AS s1 FROM bank.open_account('savings', 'main', 'USD', :sam) \gset
SELECT id AS s3 FROM bank.open_account('savings', 'half', 'USD', :sam) \gset
SELECT id AS s4 FROM bank.open_account('savings', 'three halves', 'USD', :sam) \gset
SELECT id AS s5 FROM bank.open_account('savings', 'poor', 'USD', :sam) \gset
SELECT id AS y1 FROM bank.open_account('savings', 'yen', 'JPY', :sam) \gset
SELECT id AS c1 FROM bank.open_account('checking', 'everyday', 'USD', :sam) \gset
SELECT count(*) AS backdated
  FROM bank.accounts a,
	   pg_temp.open_at(a.id, CASE a.currency WHEN 'JPY' THEN '2023-12-01 00:00+00'
										  ELSE '2024-02-01 00:00+00' END::timestamptz)
 WHERE a.customer_id = :sam;

-- configuration: admins only; bad input refused, nothing changed
SELECT bank.set_interest_rate('savings', 'USD', 0.05, '2024-01-01');
SELECT bank.set_interest_rate('savings', 'JPY', 0.001, '2023-01-01');
SELECT bank.set_interest_rate('checking', 'USD', 0, '2023-01-01');
SELECT bank.set_interest_rate('settlement', 'USD', 0.01, '2024-01-01');
SELECT bank.set_interest_rate('savings', 'USD', 1.5, '2024-01-01');
SELECT bank.set_interest_rate('savings', 'USD', -0.01, '2024-01-01');
SELECT bank.set_interest_rate('savings', 'USD', 0.0000000000001, '2024-01-01');
SELECT bank.set_interest_rate('savings', 'XXX', 0.01, '2024-01-01');
SELECT bank.set_interest_rate('savings', 'USD', NULL, '2024-01-01');
SELECT bank.set_fee('savings', 'USD', 'monthly_maintenance', 2.00, '2024-01-01');
SELECT bank.set_fee('savings', 'USD', 'withdrawal', 0.50, '2024-01-01');
SELECT bank.set_fee('savings', 'USD', 'withdrawal', 0.75, '2024-02-15');
SELECT bank.set_fee('savings', 'USD', 'overdraft', 1, '2024-01-01');
SELECT bank.set_fee('savings', 'USD', 'withdrawal', 0.001, '2024-01-01');
SELECT bank.set_fee('savings', 'USD', 'withdrawal', -1, '2024-01-01');
SELECT bank.set_fee('fee_income', 'USD', 'withdrawal', 1, '2024-01-01');
SET ROLE bank_service;
SELECT bank.set_interest_rate('savings', 'USD', 0.07, '2024-01-01');
SELECT bank.set_fee('savings', 'USD', 'withdrawal', 0, '2024-01-01');
RESET ROLE;
SELECT account_type, currency, effective_from, annual_rate, set_by = current_user AS by_me
  FROM bank.interest_rates ORDER BY 1, 2, 3;
SELECT account_type, currency, fee, effective_from, amount FROM bank.fee_schedule ORDER BY 1, 2, 3, 4;

-- history: JPY from the end of 2023; USD in February 2024
SELECT pg_temp.backdate(id, '2023-12-30 08:00+00') FROM bank.deposit(:y1, 1000000, 'y1-in');
SELECT pg_temp.backdate(id, '2024-02-01 10:00+00') FROM bank.deposit(:s1, 1000.00, 's1-in');
SELECT pg_temp.backdate(id, '2024-02-10 10:00+00') FROM bank.withdraw(:s1, 10.00, 's1-out-1');
SELECT pg_temp.backdate(id, '2024-02-20 10:00+00') FROM bank.withdraw(:s1, 10.00, 's1-out-2');
SELECT pg_temp.backdate(id, '2024-02-20 11:00+00') FROM bank.deposit(:s3, 36.60, 's3-in');
SELECT pg_temp.backdate(id, '2024-02-20 12:00+00') FROM bank.deposit(:s4, 109.80, 's4-in');
SELECT pg_temp.backdate(id, '2024-02-20 13:00+00') FROM bank.deposit(:s5, 1.00, 's5-in');
SELECT pg_temp.backdate(id, '2024-02-21 09:00+00') FROM bank.deposit(:c1, 50.00, 'c1-in');
SELECT pg_temp.backdate(id, '2024-02-22 09:00+00') FROM bank.withdraw(:c1, 5.00, 'c1-out');
-- after the end of February: not in its balances
SELECT pg_temp.backdate(id, '2024-03-01 00:00+00') FROM bank.deposit(:s1, 100.00, 's1-march');
SELECT pg_temp.backdate(id, '2024-03-01 09:00+00') FROM bank.withdraw(:s1, 1.00, 's1-out-march');

-- JPY 1,000,000 at 0.1 %, 2023 has 365 days, 2024 has 366:
--   2023-12-30: 1000000 * 0.001 * 366 = 366000; / 133590 = 2.7397 -> 3,
--               carry 366000 - 3 * 133590 = -34770
--   2023-12-31: 366000 - 34770 = 331230 = 2.4795 -> 2, carry 64050
--   2024-01-01: 1000000 * 0.001 * 365 = 365000, + 64050 = 429050 = 3.2117 -> 3,
--               carry 28280
--   exact: 2 * 2.7397260 + 2.7322404 = 8.2116924 = 3 + 2 + 3 + 28280 / 133590
SELECT bank.accrue_interest('2023-12-30') AS accounts;
SELECT bank.accrue_interest('2023-12-31') AS accounts;
SELECT bank.accrue_interest('2024-01-01') AS accounts;
-- the same day again accrues nothing
SELECT bank.accrue_interest('2024-01-01') AS accounts;
SELECT day, balance, days_in_year, carry_in, amount, carry
  FROM bank.interest_accruals WHERE account_id = :y1 ORDER BY day;

-- USD at 5 % in leap-year February (factor 365):
-- s1: 980.00 = 98000 cents: 98000 * 0.05 * 365 = 1788500 (13.3880 cents a day)
--   02-27: 1788500 = 13.388 -> 13, carry 1788500 - 1736670 = 51830
--   02-28: 1788500 + 51830 = 1840330 = 13.776 -> 14, carry -29930
--   02-29: 1788500 - 29930 = 1758570 = 13.164 -> 13, carry 21900
--   exact 3 * 13.3879781 = 40.1639344 = 40 + 21900 / 133590
-- s3: 3660 cents: 3660 * 0.05 * 365 = 66795, exactly half a cent a day:
--   02-27: 0.5 -> 0 (even), carry 66795; 02-28: 133590 -> 1, carry 0;
--   02-29: 0.5 -> 0, carry 66795 (rounding alone would pay 0 + 0 + 0)
-- s4: 10980 cents: 10980 * 0.05 * 365 = 200385, one and a half cents a day:
--   02-27: 1.5 -> 2 (even), carry -66795; 02-28: 133590 -> 1, carry 0;
--   02-29: 1.5 -> 2, carry -66795
-- s5: 100 cents: 100 * 0.05 * 365 = 1825 a day: 0, 0, 0 with carries
--   1825, 3650, 5475 (0.041 cents by the 29th: kept, not lost)
-- c1: checking at 0 %: nothing
SELECT bank.accrue_interest('2024-02-27') AS accounts;
SELECT bank.accrue_interest('2024-02-28') AS accounts;
SELECT bank.accrue_interest('2024-02-29') AS accounts;
SELECT bank.accrue_interest('2024-02-29') AS accounts;
SELECT a.name, i.day, i.balance, i.days_in_year, i.carry_in, i.amount, i.carry
  FROM bank.interest_accruals i JOIN bank.accounts a ON a.id = i.account_id
 WHERE a.currency = 'USD' ORDER BY a.id, i.day;

-- days are accrued in order; days not ended are refused
SELECT bank.accrue_interest('2024-02-28');
SELECT bank.accrue_interest(bank.business_date());
SELECT bank.accrue_interest(bank.business_date() + 1);
SELECT bank.accrue_interest('infinity');
-- a rate cannot change for a day already accrued
SELECT bank.set_interest_rate('savings', 'USD', 0.06, '2024-02-29');
SELECT bank.set_interest_rate('savings', 'USD', 0.06, '2024-03-02');

-- posting: months that have not ended are refused
SELECT * FROM bank.post_month(bank.business_date());

-- December 2023 for JPY: 3 + 2 = 5 yen of interest, no fees for JPY
SELECT account_id = :y1 AS y1, kind, currency, amount, units, failure_code
  FROM bank.post_month('2023-12-01');
-- January: 3 yen; the USD accounts opened in February owe nothing
SELECT account_id = :y1 AS y1, kind, currency, amount, units, failure_code
  FROM bank.post_month('2024-01-31');

-- February 2024 (any day of it names the month), in the order posted:
--   interest first (it may pay the fees): s1 0.40 (13 + 14 + 13), s3 0.01
--     (0 + 1 + 0), s4 0.05 (2 + 1 + 2), s5 nothing due (0 + 0 + 0); yen:
--     carry 28280 in from 2024-01-01, then 365000 a day:
--     02-27: 393280 = 2.944 -> 3, carry -7490; 02-28: 357510 = 2.676 -> 3,
--     carry -43260; 02-29: 321740 = 2.408 -> 2, carry 54560: 8 yen
--   monthly maintenance 2.00 for each savings USD account open at the end
--     (s4 is frozen: the bank's own fee still applies); s5 holds 1.00:
--     declined (PB001), not charged
--   withdrawal fees of s1: 10.00 on 02-10 at 0.50, 10.00 on 02-20 at 0.75
--     (the fee in effect from 02-15) = 1.25 for 2; its March withdrawal is
--     March's; c1's withdrawal has no fee (no checking fees)
SELECT (bank.freeze_account(:s4, 'fees still apply')).status;
SELECT a.name, p.kind, p.currency, p.amount, p.units, p.transfer_id IS NOT NULL AS posted,
	   p.failure_code
  FROM bank.post_month('2024-02-15') WITH ORDINALITY p
  JOIN bank.accounts a ON a.id = p.account_id
 ORDER BY p.ordinality;
-- running the month again posts nothing, and so does the job worker's role
SELECT count(*) AS again FROM bank.post_month('2024-02-01');
SET ROLE bank_service;
SELECT count(*) AS again_as_service FROM bank.post_month('2024-02-29');
RESET ROLE;

-- what was posted: transfers through the ledger, between the account and
-- the currency's interest-expense or fee-income account
SELECT a.name, t.kind, t.status, f.type AS from_type, o.type AS to_type, t.amount,
	   t.description, t.metadata
  FROM bank.month_postings p
  JOIN bank.transfers t ON t.id = p.transfer_id
  JOIN bank.accounts a ON a.id = p.account_id
  JOIN bank.accounts f ON f.id = t.from_account
  JOIN bank.accounts o ON o.id = t.to_account
 ORDER BY p.month, a.id, p.kind;
SELECT a.name, p.month, p.kind, p.amount, p.failure_code
  FROM bank.month_postings p JOIN bank.accounts a ON a.id = p.account_id
 WHERE p.transfer_id IS NULL;
-- s1: 1000.00 - 10.00 - 10.00 + 100.00 - 1.00 (March) + 0.40 - 2.00 - 1.25 = 1076.15
-- s3: 36.60 + 0.01 - 2.00 = 34.61; s4: 109.80 + 0.05 - 2.00 = 107.85
-- yen: 1000000 + 5 + 3 + 8 = 1000016; fee income 2.00 * 3 + 1.25 = 7.25;
-- interest expense 0.40 + 0.01 + 0.05 = 0.46 and 16 yen
SELECT name, balance FROM bank.account_balances WHERE customer_id = :sam ORDER BY id;
SELECT type, currency, balance FROM bank.account_balances
 WHERE customer_id IS NULL AND type IN ('fee_income', 'interest_expense') AND balance <> 0
 ORDER BY 1, 2;

-- a fee cannot change for a month already charged; a later month can
SELECT bank.set_fee('savings', 'USD', 'monthly_maintenance', 3.00, '2024-02-20');
SELECT bank.set_fee('savings', 'USD', 'monthly_maintenance', 3.00, '2024-03-01');

-- once a month is posted, its days cannot be accrued any more
SELECT bank.accrue_interest('2024-03-01') AS accounts;
SELECT count(*) AS march_postings FROM bank.post_month('2024-03-01');
SELECT bank.accrue_interest('2024-03-02');

-- a month is not posted while an accrual of one of its days is queued (the
-- worker after an outage queues both together; a retried accrual stays
-- queued) or dead: its day would be closed and its interest never paid.
-- Any day names the month; the job's date was queued under another
-- DateStyle (it is stored as YYYY-MM-DD)
SET DateStyle = 'SQL, DMY';
SELECT bank.enqueue_job('accrue_interest', '{02/04/2024}') AS accrual \gset
RESET DateStyle;
-- (jobs of other kinds, whose arguments are not dates, are no matter)
SELECT bank.enqueue_job('purge_sessions') AS other \gset
UPDATE bank.job_queue SET args = '{not a date}' WHERE id = :other;
SELECT * FROM bank.post_month('2024-04-15');
-- days are accrued in order: not a later day either
SELECT bank.accrue_interest('2024-04-03');
UPDATE bank.job_queue SET status = 'dead', attempts = max_attempts, finished_at = now(),
	   error_code = '40P01' WHERE id = :accrual;
SELECT * FROM bank.post_month('2024-04-01');
SELECT bank.accrue_interest('2024-04-03');
-- an accrual of a later month does not hold it up; nor does a cancelled one
UPDATE bank.job_queue SET status = 'queued', attempts = 0, args = '{2024-05-01}' WHERE id = :accrual;
BEGIN;
SELECT count(*) AS april_postings FROM bank.post_month('2024-04-01');
ROLLBACK;
UPDATE bank.job_queue SET status = 'dead', attempts = max_attempts, args = '{2024-04-02}'
 WHERE id = :accrual;
SELECT bank.cancel_job(:accrual, 'test: the day is given up');
BEGIN;
SELECT count(*) AS april_postings FROM bank.post_month('2024-04-30');
ROLLBACK;
DELETE FROM bank.job_queue WHERE id IN (:accrual, :other);

-- accruals and postings are append-only
UPDATE bank.interest_accruals SET amount = amount + 1;
DELETE FROM bank.month_postings;
-- the identity of every accrual holds (none listed)
SELECT account_id, day FROM bank.interest_accruals
 WHERE balance * annual_rate * (133590 / days_in_year) + carry_in <> amount * 133590 + carry;

-- who may run and configure: not customers, not tellers
SET ROLE bank_teller;
SELECT bank.accrue_interest('2024-03-03');
SELECT * FROM bank.post_month('2024-03-01');
SELECT bank.set_interest_rate('savings', 'USD', 0.01, '2030-01-01');
RESET ROLE;

-- the audit trail names each run and each posting
SELECT action, resource_type, count(*)
  FROM bank.audit_events
 WHERE action IN ('interest.accrue', 'interest.post', 'interest.post_month', 'fee.post',
				  'fee.declined', 'interest_rate.set', 'fee.set')
 GROUP BY 1, 2 ORDER BY 1, 2;


-- Reports on the same history.
-- February 2024's statement of s1: opening 0, the deposit and the two
-- withdrawals, closing 980.00; February's interest and fees were posted
-- when the month was run (this month), so its totals are zero
SELECT line, kind, description, amount, balance
  FROM bank.monthly_statement(:s1, '2024-02-10');
-- this month's: opening 1079.00 (all of 2024), then what the runs posted:
-- February's fees (2.00, 1.25) and interest (0.40); March's, at 3.00
-- maintenance and 0.75 for the withdrawal of 03-01, and 0.15 of interest
-- (107900 * 0.05 * 365 = 1969175, + 21900 carried = 1991075 = 14.904 -> 15);
-- closing 1072.55; interest 0.55, fees -7.00 separately
SELECT line, kind, description, amount, balance
  FROM bank.monthly_statement(:s1, bank.business_date());
SELECT bank.monthly_statement(NULL, '2024-02-01');
SELECT bank.monthly_statement(:s1, 'infinity');
SELECT bank.monthly_statement(999999, '2024-02-01');

-- a customer reads their own monthly statement, and no one else's
SET pgbank.bcrypt_cost = 4;
SET ROLE bank_anon;
SELECT bank.register('rita@example.com', 'a long enough password', 'Rita', 'Reader') AS rita \gset
SELECT access_token AS rita_token FROM bank.login('rita@example.com', 'a long enough password') \gset
RESET ROLE;
SELECT id AS r1 FROM bank.open_account('checking', 'rita', 'USD', :rita) \gset
BEGIN;
SET LOCAL ROLE bank_customer;
SELECT bank.authenticate(:'rita_token') = :rita AS authenticated;
SELECT line, amount, balance FROM bank.monthly_statement(:r1, bank.business_date());
SELECT bank.monthly_statement(:s1, '2024-02-01');
ROLLBACK;

-- the daily trial balance at the end of 2024-02-29, before any posting:
-- USD savings 980.00 + 36.60 + 109.80 + 1.00 = 1127.40, checking 45.00,
-- settlement 1197.40 in - 25.00 out = -1172.40; JPY 1000000 each side
SELECT * FROM bank.daily_trial_balance('2024-02-29');
-- and at the end of today it is the trial balance of now (none listed)
(SELECT * FROM bank.daily_trial_balance(bank.business_date())
 EXCEPT SELECT * FROM bank.trial_balance())
UNION ALL
(SELECT * FROM bank.trial_balance()
 EXCEPT SELECT * FROM bank.daily_trial_balance(bank.business_date()));

-- accounts that need a look: c1 overdrawn within its overdraft (the
-- superuser grants it), a hold past its expiry not yet voided
UPDATE bank.accounts SET overdraft_limit = 10000 WHERE id = :c1;
SELECT status FROM bank.withdraw(:c1, 50.00, 'c1-overdraw');
SELECT id AS h1 FROM bank.hold(:s1, :s3, 5.00, 's1-hold', '1 minute') \gset
SELECT set_config('session_replication_role', 'replica', false);
UPDATE bank.transfers SET expires_at = now() - interval '1 hour' WHERE id = :h1;
SELECT set_config('session_replication_role', 'origin', false);
SELECT e.problem, a.name, e.transfer_id = :h1 AS the_hold, e.amount, e.overdraft_limit
  FROM bank.account_exceptions e JOIN bank.accounts a ON a.id = e.account_id
 ORDER BY e.problem, a.name;
SET ROLE bank_teller;
SELECT count(*) FROM bank.account_exceptions;
RESET ROLE;
SET ROLE bank_auditor;
SELECT count(*) AS visible FROM bank.account_exceptions;
RESET ROLE;
SELECT bank.expire_holds();
SELECT problem FROM bank.account_exceptions;

SELECT * FROM bank.check_ledger();
