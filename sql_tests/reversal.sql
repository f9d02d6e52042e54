-- reversal: undoing a posted transfer with a reversal in the other
-- direction; once only; idempotent per key; what cannot be reversed;
-- frozen, closed and emptied accounts.

\set VERBOSITY sqlstate
\pset null '<null>'
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pgbank CASCADE;
CREATE EXTENSION pgbank CASCADE;
RESET client_min_messages;

-- transfers with account names, amounts in major units
CREATE TEMP VIEW tx AS
SELECT t.id, t.kind, t.status, d.name AS debit, c.name AS credit,
       bank.minor_to_amount(t.amount, cur.exponent) AS amount,
       bank.minor_to_amount(t.posted_amount, cur.exponent) AS posted,
       t.reverses, t.failure_code, t.description
  FROM bank.transfers t
  JOIN bank.accounts d ON d.id = t.from_account
  JOIN bank.accounts c ON c.id = t.to_account
  JOIN bank.currencies cur ON cur.code = t.currency;

-- posted balances of the customer accounts and the USD settlement account
CREATE TEMP VIEW bal AS
SELECT name, status, balance, available
  FROM bank.account_balances
 WHERE customer_id IS NOT NULL OR (type = 'settlement' AND currency = 'USD')
 ORDER BY customer_id NULLS LAST, id;

SELECT bank.create_customer('alice@example.com', 'Alice', 'Archer') AS alice \gset
SELECT bank.create_customer('bob@example.com', 'Bob', 'Baker') AS bob \gset
SELECT bank.create_customer('dave@example.com', 'Dave', 'Dunn') AS dave \gset
SELECT id AS a FROM bank.open_account('checking', 'alice', 'USD', :alice) \gset
SELECT id AS b FROM bank.open_account('checking', 'bob', 'USD', :bob) \gset
SELECT id AS d FROM bank.open_account('checking', 'dave', 'USD', :dave) \gset
SELECT status FROM bank.deposit(:a, 100, 'rv-dep-1');

-- reverse a transfer: a reversal of the posted amount from the credited
-- account back to the debited one; the reason is its description; the
-- original becomes reversed (its posted amount stays)
SELECT id AS t1 FROM bank.transfer(:a, :b, 30, 'rv-t1') \gset
SELECT * FROM bal;
SELECT id, kind, status, amount, posted_amount, reverses = :t1 AS reverses_t1, description, failure_code
  FROM bank.reverse(:t1, 'customer dispute', 'rv-r1');
SELECT id AS r1 FROM bank.transfers WHERE idempotency_key = 'rv-r1' \gset
SELECT * FROM tx WHERE id IN (:t1, :r1) ORDER BY id;
-- balances are restored: alice 100, bob 0
SELECT * FROM bal;

-- a second reversal, under a new key: PB017
SELECT id FROM bank.reverse(:t1, 'customer dispute', 'rv-r1-again');
-- the same key and reason: the same reversal, nothing moves
SELECT id = :r1 AS same_reversal, kind, status FROM bank.reverse(:t1, 'customer dispute', 'rv-r1');
-- the same key with another reason or transfer: PB005
SELECT id FROM bank.reverse(:t1, 'another reason', 'rv-r1');
SELECT id FROM bank.reverse((SELECT id FROM bank.transfers WHERE idempotency_key = 'rv-dep-1'),
                            'customer dispute', 'rv-r1');
-- a key used by another kind of request: PB005
SELECT id FROM bank.reverse(:t1, 'customer dispute', 'rv-t1');
SELECT * FROM bal;

-- a reversal cannot be reversed: PB017
SELECT id FROM bank.reverse(:r1, 'undo the undo', 'rv-rr1');

-- a failed transfer cannot be reversed: PB017
SELECT id FROM bank.transfer(:a, :b, 1000, 'rv-failed');
SELECT id AS failed FROM bank.transfers WHERE idempotency_key = 'rv-failed' \gset
SELECT id FROM bank.reverse(:failed, 'nothing moved', 'rv-r-failed');

-- a pending or voided hold cannot be reversed (PB017); a captured one can,
-- by the captured amount
SELECT id AS h1 FROM bank.hold(:a, :b, 10, 'rv-h1') \gset
SELECT id FROM bank.reverse(:h1, 'pending', 'rv-r-h1');
SELECT status FROM bank.void(:h1);
SELECT id FROM bank.reverse(:h1, 'voided', 'rv-r-h1b');
SELECT id AS h2 FROM bank.hold(:a, :b, 10, 'rv-h2') \gset
SELECT status, posted_amount FROM bank.capture(:h2, 4);
SELECT kind, status, amount, posted_amount FROM bank.reverse(:h2, 'refund', 'rv-r-h2');
SELECT * FROM tx WHERE id = :h2 OR reverses = :h2 ORDER BY id;
SELECT * FROM bal;

-- deposits and withdrawals reverse against the settlement account
SELECT id AS dep2 FROM bank.deposit(:b, 25, 'rv-dep-2') \gset
SELECT id AS wd1 FROM bank.withdraw(:a, 15, 'rv-wd-1') \gset
SELECT kind, status, amount FROM bank.reverse(:dep2, 'chargeback', 'rv-r-dep2');
SELECT kind, status, amount FROM bank.reverse(:wd1, 'atm error', 'rv-r-wd1');
SELECT * FROM tx WHERE id IN (:dep2, :wd1) OR reverses IN (:dep2, :wd1) ORDER BY id;
SELECT * FROM bal;

-- bad requests: unknown transfer PB010; NULL transfer or reason PB022; empty
-- or over-long reason PB023; missing or bad key PB020
SELECT id FROM bank.reverse(999999, 'x', 'rv-bad-1');
SELECT id FROM bank.reverse(NULL, 'x', 'rv-bad-2');
SELECT id FROM bank.reverse(:t1, NULL, 'rv-bad-3');
SELECT id FROM bank.reverse(:t1, '', 'rv-bad-4');
SELECT id FROM bank.reverse(:t1, repeat('r', 501), 'rv-bad-5');
SELECT id FROM bank.reverse(:t1, 'x', NULL);
SELECT id FROM bank.reverse(:t1, 'x', '');
SELECT count(*) AS recorded FROM bank.transfers WHERE idempotency_key LIKE 'rv-bad-%';

-- the reason's length is counted in characters: 300 two-byte ones are fine
SELECT id AS t_mb FROM bank.transfer(:a, :b, 1, 'rv-mb-t') \gset
SELECT status FROM bank.reverse(:t_mb, repeat('é', 300), 'rv-mb');

-- a reversal debits a frozen account (staff correction), and credits one
SELECT id AS t2 FROM bank.transfer(:a, :b, 20, 'rv-t2') \gset
SELECT id AS t3 FROM bank.transfer(:a, :b, 1, 'rv-t3') \gset
SELECT status FROM bank.freeze_account(:b, 'fraud');
SELECT id FROM bank.withdraw(:b, 1, 'rv-frozen-wd');
SELECT kind, status, amount FROM bank.reverse(:t2, 'fraud', 'rv-r-t2');
SELECT status FROM bank.freeze_account(:a, 'fraud too');
SELECT * FROM bal;
SELECT kind, status, amount FROM bank.reverse(:t3, 'both frozen', 'rv-r-t3');
SELECT status FROM bank.unfreeze_account(:a, 'cleared');
SELECT status FROM bank.unfreeze_account(:b, 'cleared');
SELECT * FROM bal;

-- when the money is gone, the reversal is declined (PB001) and recorded as
-- a failed reversal; the original stays posted
SELECT id AS t5 FROM bank.transfer(:a, :b, 10, 'rv-t5') \gset
SELECT status FROM bank.withdraw(:b, 10, 'rv-b-out');
SELECT name, balance FROM bal WHERE name = 'bob';
SELECT id FROM bank.reverse(:t5, 'too late', 'rv-r-t5');
SELECT kind, status, reverses = :t5 AS reverses_t5, failure_code
  FROM bank.transfers WHERE idempotency_key = 'rv-r-t5';
SELECT status FROM bank.transfers WHERE id = :t5;
SELECT * FROM bal;
-- the declined reversal replayed is still declined, even with the money back
SELECT status FROM bank.deposit(:b, 10, 'rv-b-in');
SELECT id FROM bank.reverse(:t5, 'too late', 'rv-r-t5');
-- a new key reverses it, once
SELECT kind, status, amount FROM bank.reverse(:t5, 'too late', 'rv-r-t5b');
SELECT status FROM bank.transfers WHERE id = :t5;
SELECT id FROM bank.reverse(:t5, 'too late', 'rv-r-t5c');
SELECT * FROM tx WHERE id = :t5 OR reverses = :t5 ORDER BY id;

-- a reversal into a closed account is declined (PB003, recorded)
SELECT status FROM bank.deposit(:d, 5, 'rv-d-in');
SELECT id AS t6 FROM bank.transfer(:d, :a, 5, 'rv-t6') \gset
SELECT name, status FROM bank.close_account(:d);
SELECT id FROM bank.reverse(:t6, 'closed', 'rv-r-t6');
SELECT kind, status, failure_code FROM bank.transfers WHERE idempotency_key = 'rv-r-t6';
SELECT status FROM bank.transfers WHERE id = :t6;

-- balances: alice 100 - 30 + 30 - 4 + 4 - 15 + 15 - 20 + 20 - 1 + 1 - 10 + 10
-- + 5 = 105; bob 0 (every credit reversed or withdrawn); dave 0, closed;
-- settlement USD -(100 + 25 - 25 - 15 + 15 - 10 + 10 + 5) = -105
SELECT * FROM bal;
SELECT * FROM bank.check_ledger();
