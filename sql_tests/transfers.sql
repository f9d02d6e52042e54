-- transfers: deposit, withdraw and transfer; refused requests (same account,
-- currency mismatch, unknown and system accounts); declines for insufficient
-- funds recorded as failed transfers; idempotent replay; overdraft limits;
-- idempotency key, description and metadata validation.

\set VERBOSITY sqlstate
\pset null '<null>'
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pgbank CASCADE;
CREATE EXTENSION pgbank CASCADE;
RESET client_min_messages;

-- transfers with account names instead of ids, amounts in major units
CREATE TEMP VIEW tx AS
SELECT t.id, t.idempotency_key AS key, t.kind, t.status, d.name AS debit, c.name AS credit,
       bank.minor_to_amount(t.amount, cur.exponent) AS amount,
       bank.minor_to_amount(t.posted_amount, cur.exponent) AS posted,
       t.failure_code
  FROM bank.transfers t
  JOIN bank.accounts d ON d.id = t.from_account
  JOIN bank.accounts c ON c.id = t.to_account
  JOIN bank.currencies cur ON cur.code = t.currency;

-- the legs of each transfer (folded entries and pending legs)
CREATE TEMP VIEW legs AS
SELECT l.transfer_id, a.name, l.amount
  FROM (SELECT transfer_id, account_id, amount FROM bank.entries
        UNION ALL
        SELECT transfer_id, account_id, amount FROM bank.pending_legs) l
  JOIN bank.accounts a ON a.id = l.account_id;

-- posted balances of the customer accounts and the USD settlement account
CREATE TEMP VIEW bal AS
SELECT name, balance, pending_out, available
  FROM bank.account_balances
 WHERE customer_id IS NOT NULL OR (type = 'settlement' AND currency IN ('USD', 'EUR'))
 ORDER BY customer_id NULLS LAST, id;

SELECT bank.create_customer('alice@example.com', 'Alice', 'Archer') AS alice \gset
SELECT bank.create_customer('bob@example.com', 'Bob', 'Baker') AS bob \gset
SELECT id AS a_chk FROM bank.open_account('checking', 'alice checking', 'USD', :alice) \gset
SELECT id AS a_sav FROM bank.open_account('savings', 'alice savings', 'USD', :alice) \gset
SELECT id AS a_eur FROM bank.open_account('checking', 'alice euro', 'EUR', :alice) \gset
SELECT id AS b_chk FROM bank.open_account('checking', 'bob checking', 'USD', :bob) \gset
SELECT id AS settle_usd FROM bank.accounts WHERE type = 'settlement' AND currency = 'USD' \gset

-- deposit: money in from the settlement account
SELECT id, kind, status, currency, amount, posted_amount, description, metadata, reverses, failure_code
  FROM bank.deposit(:a_chk, 100, 'tr-dep-1', 'salary', '{"ref": "pay-1"}');
SELECT id, kind, status, currency, amount, posted_amount FROM bank.deposit(:a_eur, 20, 'tr-dep-2');

-- withdraw: money out to the settlement account
SELECT id, kind, status, currency, amount, posted_amount FROM bank.withdraw(:a_chk, 20, 'tr-wd-1');

-- transfer: between two customer accounts of one currency
SELECT id, kind, status, currency, amount, posted_amount, description
  FROM bank.transfer(:a_chk, :b_chk, 30.25, 'tr-tr-1', 'rent');
SELECT id, kind, status, currency, amount, posted_amount FROM bank.transfer(:a_chk, :a_sav, 9.75, 'tr-tr-2');

-- every transfer has a debit and a credit leg of the same amount
SELECT * FROM tx ORDER BY id;
SELECT transfer_id, name, amount FROM legs ORDER BY transfer_id, amount;

-- balances: alice 100 - 20 - 30.25 - 9.75 = 40; bob 30.25; alice savings
-- 9.75; settlement USD -(100 - 20) = -80; per currency the sum is zero
SELECT * FROM bal;

-- refused requests (not declines: nothing is recorded)
SELECT count(*) AS transfers FROM bank.transfers \gset before_
-- the same account on both sides: PB018
SELECT id FROM bank.transfer(:a_chk, :a_chk, 1, 'tr-bad-1');
-- different currencies: PB004
SELECT id FROM bank.transfer(:a_chk, :a_eur, 1, 'tr-bad-2');
SELECT id FROM bank.transfer(:a_eur, :a_chk, 1, 'tr-bad-3');
-- unknown accounts: PB009
SELECT id FROM bank.transfer(:a_chk, 999999, 1, 'tr-bad-4');
SELECT id FROM bank.transfer(999999, :a_chk, 1, 'tr-bad-5');
SELECT id FROM bank.deposit(999999, 1, 'tr-bad-6');
SELECT id FROM bank.withdraw(999999, 1, 'tr-bad-7');
-- a system account passed as a customer account: PB009
SELECT id FROM bank.transfer(:settle_usd, :a_chk, 1, 'tr-bad-8');
SELECT id FROM bank.transfer(:a_chk, :settle_usd, 1, 'tr-bad-9');
SELECT id FROM bank.deposit(:settle_usd, 1, 'tr-bad-10');
SELECT id FROM bank.withdraw(:settle_usd, 1, 'tr-bad-11');
-- NULL accounts: PB022
SELECT id FROM bank.transfer(NULL, :a_chk, 1, 'tr-bad-12');
SELECT id FROM bank.transfer(:a_chk, NULL, 1, 'tr-bad-13');
SELECT id FROM bank.deposit(NULL, 1, 'tr-bad-14');
SELECT id FROM bank.withdraw(NULL, 1, 'tr-bad-15');
SELECT count(*) = :before_transfers AS nothing_recorded FROM bank.transfers;

-- insufficient funds: PB001, recorded as a failed transfer that moved nothing
SELECT id FROM bank.transfer(:a_chk, :b_chk, 40.01, 'tr-nsf-1');
SELECT id FROM bank.withdraw(:a_chk, 1000, 'tr-nsf-2');
SELECT * FROM tx WHERE key LIKE 'tr-nsf-%' ORDER BY id;
SELECT regexp_replace(failure_message, '[0-9]+', 'N') AS failure_message
  FROM bank.transfers WHERE idempotency_key = 'tr-nsf-1';
SELECT count(*) AS legs_of_failed
  FROM legs WHERE transfer_id IN (SELECT id FROM bank.transfers WHERE status = 'failed');
SELECT * FROM bal;

-- the whole balance can go: exactly 40.00 leaves alice checking at zero
SELECT status, amount FROM bank.transfer(:a_chk, :a_sav, 40, 'tr-all');
SELECT name, balance, available FROM bal WHERE name = 'alice checking';
SELECT id FROM bank.withdraw(:a_chk, 0.01, 'tr-nsf-3');

-- replaying a decline declines again, even after the money has arrived; a
-- new key goes through
SELECT id FROM bank.transfer(:a_chk, :b_chk, 40.01, 'tr-nsf-1');
SELECT status FROM bank.deposit(:a_chk, 100, 'tr-dep-3');
SELECT id FROM bank.transfer(:a_chk, :b_chk, 40.01, 'tr-nsf-1');
SELECT count(*) AS rows_for_key FROM bank.transfers WHERE idempotency_key = 'tr-nsf-1';
SELECT status, amount FROM bank.transfer(:a_chk, :b_chk, 40.01, 'tr-nsf-1b');

-- idempotent replay: the same key and payload return the original transfer
-- and move nothing more
SELECT * FROM bal;
SELECT id, kind, status, amount, description, metadata FROM bank.deposit(:a_chk, 100, 'tr-dep-1', 'salary', '{"ref": "pay-1"}');
SELECT id, kind, status, amount FROM bank.withdraw(:a_chk, 20, 'tr-wd-1');
SELECT id, kind, status, amount, description FROM bank.transfer(:a_chk, :b_chk, 30.25, 'tr-tr-1', 'rent');
SELECT * FROM bal;

-- the payload is compared exactly: amounts in minor units (30.25 = 30.250),
-- metadata as canonical jsonb (key order and spacing do not matter)
SELECT id FROM bank.transfer(:a_chk, :b_chk, 30.250, 'tr-tr-1', 'rent');
SELECT id FROM bank.deposit(:a_chk, 100.00, 'tr-dep-1', 'salary', '{ "ref":"pay-1" }');
SELECT id FROM bank.transfer(:a_chk, :a_sav, 9.75, 'tr-tr-2', NULL, NULL);

-- the same key with another payload: PB005
SELECT id FROM bank.transfer(:a_chk, :b_chk, 30.26, 'tr-tr-1', 'rent');
SELECT id FROM bank.transfer(:a_chk, :a_sav, 30.25, 'tr-tr-1', 'rent');
SELECT id FROM bank.transfer(:a_chk, :b_chk, 30.25, 'tr-tr-1', 'rent!');
SELECT id FROM bank.transfer(:a_chk, :b_chk, 30.25, 'tr-tr-1');
SELECT id FROM bank.transfer(:a_chk, :b_chk, 30.25, 'tr-tr-1', 'rent', '{"x": 1}');
SELECT id FROM bank.deposit(:a_chk, 100, 'tr-dep-1', 'salary', '{"ref": "pay-2"}');
SELECT id FROM bank.deposit(:a_chk, 100, 'tr-dep-1', 'salary');
SELECT id FROM bank.transfer(:a_chk, :a_sav, 9.75, 'tr-tr-2', '');
-- another kind of request under the key: PB005
SELECT id FROM bank.withdraw(:a_chk, 100, 'tr-dep-1', 'salary', '{"ref": "pay-1"}');
SELECT id FROM bank.deposit(:a_chk, 20, 'tr-wd-1');
-- a decline's key with another payload: PB005 too
SELECT id FROM bank.transfer(:a_chk, :b_chk, 1, 'tr-nsf-1');
SELECT * FROM bal;

-- overdraft: the superuser lets bob go down to -50.00
UPDATE bank.accounts SET overdraft_limit = 5000 WHERE id = :b_chk;
SELECT name, balance, available, overdraft_limit FROM bank.get_account(:b_chk);
-- bob has 30.25 + 40.01 = 70.26; 120.26 takes him to exactly -50.00
SELECT status, amount FROM bank.withdraw(:b_chk, 120.26, 'tr-od-1');
SELECT name, balance, available, overdraft_limit FROM bank.get_account(:b_chk);
-- one cent more is PB001, by withdrawal or transfer
SELECT id FROM bank.withdraw(:b_chk, 0.01, 'tr-od-2');
SELECT id FROM bank.transfer(:b_chk, :a_chk, 0.01, 'tr-od-3');
-- credits still land (lock-free: a pending leg until bob's account is folded)
SELECT status FROM bank.transfer(:a_chk, :b_chk, 20, 'tr-od-4');
SELECT bank.fold_account(:b_chk) AS folded;
-- the limit cannot be lowered below what is used (23514); to exactly that, yes
UPDATE bank.accounts SET overdraft_limit = 2999 WHERE id = :b_chk;
UPDATE bank.accounts SET overdraft_limit = 3000 WHERE id = :b_chk;
SELECT name, balance, available, overdraft_limit FROM bank.get_account(:b_chk);
SELECT id FROM bank.withdraw(:b_chk, 0.01, 'tr-od-5');
-- a negative limit is refused by a CHECK constraint (23514)
UPDATE bank.accounts SET overdraft_limit = -1 WHERE id = :b_chk;

-- idempotency keys: 1 to 255 characters without control characters
SELECT status FROM bank.deposit(:a_sav, 0.01, repeat('k', 255));
SELECT status FROM bank.deposit(:a_sav, 0.01, 'with space and ünïcödé');
SELECT count(*) AS transfers FROM bank.transfers \gset before_
-- empty, too long, control characters, NULL: PB020
SELECT id FROM bank.deposit(:a_sav, 0.01, '');
SELECT id FROM bank.deposit(:a_sav, 0.01, repeat('k', 256));
SELECT id FROM bank.deposit(:a_sav, 0.01, E'tab\there');
SELECT id FROM bank.deposit(:a_sav, 0.01, E'new\nline');
SELECT id FROM bank.deposit(:a_sav, 0.01, E'\x01');
SELECT id FROM bank.deposit(:a_sav, 0.01, 'del' || chr(127));
SELECT id FROM bank.deposit(:a_sav, 0.01, NULL);
SELECT id FROM bank.withdraw(:a_sav, 0.01, NULL);
SELECT id FROM bank.transfer(:a_sav, :a_chk, 0.01, NULL);
SELECT id FROM bank.transfer(:a_sav, :a_chk, 0.01, repeat('k', 256));
SELECT count(*) = :before_transfers AS nothing_recorded FROM bank.transfers;

-- description: up to 500 characters; more is PB023
SELECT length(description) FROM bank.deposit(:a_sav, 0.01, 'tr-desc-1', repeat('d', 500));
SELECT id FROM bank.deposit(:a_sav, 0.01, 'tr-desc-2', repeat('d', 501));
SELECT id FROM bank.transfer(:a_sav, :a_chk, 0.01, 'tr-desc-3', repeat('d', 501));
SELECT id FROM bank.withdraw(:a_sav, 0.01, 'tr-desc-4', repeat('d', 501));

-- money moves only in READ COMMITTED: a replay must see a same-key transfer
-- committed after the transaction began, which a transaction snapshot hides
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT status FROM bank.deposit(:a_sav, 0.01, 'tr-rr');
ROLLBACK;
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT status FROM bank.transfer(:a_sav, :b_chk, 0.01, 'tr-ser');
ROLLBACK;

-- description and key lengths are counted in characters, not bytes
SELECT length(description) FROM bank.deposit(:a_sav, 0.01, 'tr-desc-mb', repeat('é', 300));
SELECT status FROM bank.deposit(:a_sav, 0.01, repeat('é', 128));

-- metadata: a JSON object (NULL means {}); anything else is PB023, as is an
-- object over 8 kB
SELECT metadata FROM bank.deposit(:a_sav, 0.01, 'tr-meta-1', NULL, '{"a": [1, 2], "b": {"c": null}}');
SELECT metadata FROM bank.deposit(:a_sav, 0.01, 'tr-meta-2', NULL, NULL);
SELECT id FROM bank.deposit(:a_sav, 0.01, 'tr-meta-3', NULL, '[]');
SELECT id FROM bank.deposit(:a_sav, 0.01, 'tr-meta-4', NULL, '[{"a": 1}]');
SELECT id FROM bank.deposit(:a_sav, 0.01, 'tr-meta-5', NULL, '"text"');
SELECT id FROM bank.deposit(:a_sav, 0.01, 'tr-meta-6', NULL, '42');
SELECT id FROM bank.deposit(:a_sav, 0.01, 'tr-meta-7', NULL, 'null');
SELECT id FROM bank.transfer(:a_sav, :a_chk, 0.01, 'tr-meta-8', NULL, 'true');
SELECT id FROM bank.deposit(:a_sav, 0.01, 'tr-meta-9', NULL,
                            jsonb_build_object('blob', repeat('x', 9000)));
SELECT count(*) AS transfers FROM bank.transfers WHERE idempotency_key LIKE 'tr-meta-%' OR idempotency_key LIKE 'tr-desc-%';

-- final balances: alice checking 100 - 20 - 30.25 - 9.75 - 40 + 100 - 40.01
-- - 20 = 39.99; alice savings 9.75 + 40 + 5 * 0.01 = 49.80; bob 70.26 -
-- 120.26 + 20 = -30.00; settlement USD -(200.05 - 20 - 120.26) = -59.79
SELECT * FROM bal;
SELECT * FROM bank.check_ledger();
