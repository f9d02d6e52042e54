-- holds: authorisation holds reserve funds (available drops, posted does
-- not); capture in full or in part (the rest is released); void; idempotent
-- capture and void; refused captures; expiry; expires_in bounds; declines.

\set VERBOSITY sqlstate
\pset null '<null>'
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pgbank CASCADE;
CREATE EXTENSION pgbank CASCADE;
RESET client_min_messages;

-- balances of the customer accounts: posted, held out, held in, available
CREATE TEMP VIEW bal AS
SELECT a.name, b.posted, b.pending_out, b.pending_in, b.available
  FROM bank.accounts a, LATERAL bank.balance(a.id) b
 WHERE a.customer_id IS NOT NULL
 ORDER BY a.id;

-- the legs (entries and pending legs) of each transfer
CREATE TEMP VIEW legs AS
SELECT l.transfer_id, a.name, l.amount
  FROM (SELECT transfer_id, account_id, amount FROM bank.entries
        UNION ALL
        SELECT transfer_id, account_id, amount FROM bank.pending_legs) l
  JOIN bank.accounts a ON a.id = l.account_id;

SELECT bank.create_customer('alice@example.com', 'Alice', 'Archer') AS alice \gset
SELECT bank.create_customer('shop@example.com', 'Shop', 'Keeper') AS shop \gset
SELECT id AS a_chk FROM bank.open_account('checking', 'alice', 'USD', :alice) \gset
SELECT id AS a_eur FROM bank.open_account('checking', 'alice euro', 'EUR', :alice) \gset
SELECT id AS s_chk FROM bank.open_account('checking', 'shop', 'USD', :shop) \gset
SELECT id AS settle_usd FROM bank.accounts WHERE type = 'settlement' AND currency = 'USD' \gset
SELECT status FROM bank.deposit(:a_chk, 100, 'h-dep-1');

-- a hold is a pending transfer: it reserves the amount on the debited
-- account (available 60) and shows as pending_in on the credited one; no
-- money moves and no leg is written.  Default lifetime: 7 days.
SELECT id, kind, status, currency, amount, posted_amount, description,
       expires_at - created_at AS lifetime, posted_at, resolved_at
  FROM bank.hold(:a_chk, :s_chk, 40, 'h-1', NULL, 'card auth');
SELECT id AS h1 FROM bank.transfers WHERE idempotency_key = 'h-1' \gset
SELECT * FROM bal;
SELECT count(*) AS legs_of_hold FROM legs WHERE transfer_id = :h1;

-- the reserved funds cannot be spent: withdrawing more than the available
-- 60 is PB001, although the posted balance is 100
SELECT id FROM bank.withdraw(:a_chk, 60.01, 'h-wd-1');
SELECT status, amount FROM bank.withdraw(:a_chk, 10, 'h-wd-2');
SELECT * FROM bal;

-- capture in full (amount NULL): the money moves, the reservation goes
SELECT id, status, amount, posted_amount, posted_at IS NOT NULL AS has_posted_at,
       resolved_at IS NOT NULL AS has_resolved_at
  FROM bank.capture(:h1);
SELECT * FROM bal;
SELECT transfer_id, name, amount FROM legs WHERE transfer_id = :h1 ORDER BY amount;

-- capturing again, with no amount or the captured amount, returns the posted
-- hold and moves nothing; another amount, or a void, is PB014
SELECT id, status, amount, posted_amount FROM bank.capture(:h1);
SELECT id, status, amount, posted_amount FROM bank.capture(:h1, 40);
SELECT id, status, amount, posted_amount FROM bank.capture(:h1, 40.000);
SELECT id FROM bank.capture(:h1, 39);
SELECT id FROM bank.capture(:h1, 41);
SELECT id FROM bank.void(:h1);
SELECT * FROM bal;

-- partial capture: 12.34 of 30 moves, the other 17.66 is released
SELECT id AS h2 FROM bank.hold(:a_chk, :s_chk, 30, 'h-2') \gset
SELECT * FROM bal;
SELECT id, status, amount, posted_amount FROM bank.capture(:h2, 12.34);
SELECT * FROM bal;
SELECT transfer_id, name, amount FROM legs WHERE transfer_id = :h2 ORDER BY amount;

-- capturing the partial hold again with the same amount returns it; another
-- amount is PB014
SELECT id, status, amount, posted_amount FROM bank.capture(:h2, 12.34);
SELECT id, status, amount, posted_amount FROM bank.capture(:h2, 12.340);
SELECT id FROM bank.capture(:h2, 12.35);
SELECT id FROM bank.capture(:h2, 30);
SELECT * FROM bal;

-- a capture larger than the hold is PB016; a zero, negative or too precise
-- amount is PB006; the hold stays pending and reserved
SELECT id AS h3 FROM bank.hold(:a_chk, :s_chk, 10, 'h-3') \gset
SELECT id FROM bank.capture(:h3, 10.01);
SELECT id FROM bank.capture(:h3, 1000);
SELECT id FROM bank.capture(:h3, 0);
SELECT id FROM bank.capture(:h3, -1);
SELECT id FROM bank.capture(:h3, 0.001);
SELECT status FROM bank.transfers WHERE id = :h3;
SELECT * FROM bal;

-- void releases the reservation; voiding again returns the voided hold;
-- capturing a voided hold is PB014, with or without an amount
SELECT id, status, amount, posted_amount, posted_at, resolved_at IS NOT NULL AS has_resolved_at
  FROM bank.void(:h3);
SELECT * FROM bal;
SELECT id, status, amount, posted_amount FROM bank.void(:h3);
SELECT id FROM bank.capture(:h3);
SELECT id FROM bank.capture(:h3, 10);
SELECT count(*) AS legs_of_voided FROM legs WHERE transfer_id = :h3;
SELECT * FROM bal;

-- capture and void of something that is not a hold: an unknown transfer is
-- PB010, a posted transfer that never was a hold is PB014, NULL is PB022
SELECT id FROM bank.capture(999999);
SELECT id FROM bank.void(999999);
SELECT id AS dep FROM bank.transfers WHERE idempotency_key = 'h-dep-1' \gset
SELECT id FROM bank.capture(:dep);
SELECT id FROM bank.void(:dep);
SELECT id FROM bank.capture(NULL);
SELECT id FROM bank.capture(NULL, 1);

-- holding more than is available: PB001, recorded as a failed transfer that
-- reserves nothing; exactly the available amount can be held
SELECT * FROM bal;
SELECT id FROM bank.hold(:a_chk, :s_chk, 37.67, 'h-nsf-1');
SELECT kind, status, failure_code, expires_at FROM bank.transfers WHERE idempotency_key = 'h-nsf-1';
SELECT id AS h4 FROM bank.hold(:a_chk, :s_chk, 37.66, 'h-4') \gset
SELECT * FROM bal;
SELECT id FROM bank.hold(:a_chk, :s_chk, 0.01, 'h-nsf-2');
SELECT id FROM bank.withdraw(:a_chk, 0.01, 'h-nsf-3');
SELECT status FROM bank.void(:h4);
-- the declined hold replayed is still declined
SELECT id FROM bank.hold(:a_chk, :s_chk, 37.67, 'h-nsf-1');

-- the credited account cannot spend a hold's amount before the capture
SELECT id AS h5 FROM bank.hold(:a_chk, :s_chk, 5, 'h-5') \gset
SELECT name, posted, pending_in, available FROM bal WHERE name = 'shop';
SELECT id FROM bank.withdraw(:s_chk, 52.35, 'h-shop-1');
SELECT status FROM bank.capture(:h5);
SELECT status, amount FROM bank.withdraw(:s_chk, 52.34, 'h-shop-2');
SELECT * FROM bal;

-- idempotent holds: the same key and payload return the hold (in its
-- current state); another payload is PB005.  expires_in is part of the
-- payload ('60 seconds' is '1 minute')
SELECT id, status, posted_amount FROM bank.hold(:a_chk, :s_chk, 5, 'h-5');
SELECT id FROM bank.hold(:a_chk, :s_chk, 6, 'h-5');
SELECT id FROM bank.hold(:a_chk, :s_chk, 5, 'h-5', '1 hour');
SELECT id AS h6, expires_at - created_at AS lifetime FROM bank.hold(:a_chk, :s_chk, 1, 'h-6', '1 minute') \gset
SELECT :'lifetime' AS lifetime;
SELECT id = :h6 AS same_hold FROM bank.hold(:a_chk, :s_chk, 1, 'h-6', '60 seconds');
SELECT id FROM bank.hold(:a_chk, :s_chk, 1, 'h-6', '2 minutes');
SELECT id FROM bank.hold(:a_chk, :s_chk, 1, 'h-6');
-- a hold's key used by a plain transfer: PB005
SELECT id FROM bank.transfer(:a_chk, :s_chk, 1, 'h-6');
SELECT status FROM bank.void(:h6);

-- expires_in: 1 minute to 366 days, else PB023
SELECT expires_at = created_at + interval '366 days' AS expires_in_366_days
  FROM bank.hold(:a_chk, :s_chk, 1, 'h-exp-1', '366 days');
SELECT id FROM bank.hold(:a_chk, :s_chk, 1, 'h-exp-2', '59 seconds');
SELECT id FROM bank.hold(:a_chk, :s_chk, 1, 'h-exp-3', '367 days');
SELECT id FROM bank.hold(:a_chk, :s_chk, 1, 'h-exp-4', '0');
SELECT id FROM bank.hold(:a_chk, :s_chk, 1, 'h-exp-5', '-1 hour');
SELECT status FROM bank.void((SELECT id FROM bank.transfers WHERE idempotency_key = 'h-exp-1'));

-- the default lifetime is the GUC pgbank.hold_expiry (superuser)
SET pgbank.hold_expiry = '2h';
SELECT expires_at - created_at AS lifetime FROM bank.hold(:a_chk, :s_chk, 1, 'h-guc-1');
RESET pgbank.hold_expiry;
SELECT status FROM bank.void((SELECT id FROM bank.transfers WHERE idempotency_key = 'h-guc-1'));

-- refused holds: same account PB018, other currency PB004, unknown or system
-- account PB009, no key PB020, no amount PB022
SELECT id FROM bank.hold(:a_chk, :a_chk, 1, 'h-bad-1');
SELECT id FROM bank.hold(:a_chk, :a_eur, 1, 'h-bad-2');
SELECT id FROM bank.hold(:a_chk, 999999, 1, 'h-bad-3');
SELECT id FROM bank.hold(:a_chk, :settle_usd, 1, 'h-bad-4');
SELECT id FROM bank.hold(:settle_usd, :a_chk, 1, 'h-bad-5');
SELECT id FROM bank.hold(:a_chk, :s_chk, 1, NULL);
SELECT id FROM bank.hold(:a_chk, :s_chk, NULL, 'h-bad-6');
SELECT count(*) AS recorded FROM bank.transfers WHERE idempotency_key LIKE 'h-bad-%';

-- a frozen account cannot place a hold (PB002, recorded) nor capture one
-- (PB002); it can still release one; after unfreezing, capture works
SELECT id AS h7 FROM bank.hold(:a_chk, :s_chk, 2, 'h-7') \gset
SELECT id AS h8 FROM bank.hold(:a_chk, :s_chk, 3, 'h-8') \gset
SELECT status FROM bank.freeze_account(:a_chk, 'card stolen');
SELECT id FROM bank.hold(:a_chk, :s_chk, 1, 'h-frozen-1');
SELECT kind, status, failure_code FROM bank.transfers WHERE idempotency_key = 'h-frozen-1';
SELECT id FROM bank.capture(:h7);
SELECT status FROM bank.transfers WHERE id = :h7;
SELECT status FROM bank.void(:h8);
SELECT status FROM bank.unfreeze_account(:a_chk, 'card found');
SELECT status, posted_amount FROM bank.capture(:h7);
SELECT * FROM bal;

-- expiry: nothing has expired yet
SELECT bank.expire_holds() AS expired;

-- A hold cannot be created already expired (expires_in is at least a
-- minute), and a regression test should not sleep for one.  Time passing is
-- simulated by the superuser moving two holds' expiry back to their creation
-- time, with the guard triggers disabled for that one statement.
SELECT id AS h9 FROM bank.hold(:a_chk, :s_chk, 4, 'h-9', '1 minute') \gset
SELECT id AS h10 FROM bank.hold(:a_chk, :s_chk, 6, 'h-10', '1 minute') \gset
SELECT id AS h11 FROM bank.hold(:a_chk, :s_chk, 7, 'h-11') \gset
SELECT * FROM bal;
SET session_replication_role = replica;
UPDATE bank.transfers SET expires_at = created_at WHERE id IN (:h9, :h10);
RESET session_replication_role;

-- an expired hold cannot be captured (PB015) but is still pending and
-- reserved until expire_holds voids it
SELECT id FROM bank.capture(:h9);
SELECT id FROM bank.capture(:h9, 1);
SELECT id, status FROM bank.transfers WHERE id IN (:h9, :h10, :h11) ORDER BY id;
SELECT * FROM bal;

-- expire_holds voids exactly the expired holds and returns how many; a
-- second run finds none
SELECT bank.expire_holds() AS expired;
SELECT id, status, resolved_at IS NOT NULL AS has_resolved_at
  FROM bank.transfers WHERE id IN (:h9, :h10, :h11) ORDER BY id;
SELECT * FROM bal;
SELECT bank.expire_holds() AS expired;

-- an expired (voided) hold: capture is PB014, void returns it
SELECT id FROM bank.capture(:h9);
SELECT status FROM bank.void(:h9);

-- an expired hold can also be voided directly before expire_holds runs
SET session_replication_role = replica;
UPDATE bank.transfers SET expires_at = created_at WHERE id = :h11;
RESET session_replication_role;
SELECT status FROM bank.void(:h11);
SELECT bank.expire_holds() AS expired;

-- every hold is resolved; alice: 100 - 10 - 40 - 12.34 - 5 - 2 = 30.66;
-- shop: 40 + 12.34 + 5 - 52.34 + 2 = 7.00
SELECT status, count(*) FROM bank.transfers WHERE expires_at IS NOT NULL GROUP BY status ORDER BY status;
SELECT * FROM bal;
SELECT * FROM bank.check_ledger();
