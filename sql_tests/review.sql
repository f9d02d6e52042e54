-- review: the review queue end to end.  Moves held for review reserve their
-- funds; staff list the queue and approve (a transfer or withdrawal posts, a
-- hold becomes an ordinary hold) or reject (voided, funds and daily totals
-- given back); each decision audited; a decided item cannot be decided again
-- (PB076); an item past its review period cannot be approved (PB077) and is
-- voided by bank.expire_holds; customers cannot decide.

\set VERBOSITY sqlstate
\pset null '<null>'
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pgbank CASCADE;
CREATE EXTENSION pgbank CASCADE;
RESET client_min_messages;

SELECT bank.create_customer('alice@example.com', 'Alice', 'Archer') AS alice \gset
SELECT bank.create_customer('shop@example.com', 'Shop', 'Keeper') AS shop_owner \gset
SELECT id AS a FROM bank.open_account('checking', 'alice', 'USD', :alice) \gset
SELECT id AS s FROM bank.open_account('checking', 'shop', 'USD', :shop_owner) \gset
SELECT status FROM bank.deposit(:a, 1000, 'r-fund');
INSERT INTO bank.risk_rules (name, kind, action, currency, amount)
	VALUES ('review above 100', 'max_amount', 'review', 'USD', 100),
		   ('review new payees above 100', 'new_payee', 'review', 'USD', 100);

CREATE TEMP VIEW bal AS
SELECT a.name, b.posted, b.pending_out, b.pending_in, b.available
  FROM bank.accounts a, LATERAL bank.balance(a.id) b
 WHERE a.customer_id IS NOT NULL ORDER BY a.id;
CREATE TEMP VIEW legs AS
SELECT transfer_id, account_id, amount FROM bank.entries
UNION ALL SELECT transfer_id, account_id, amount FROM bank.pending_legs;

-- a held transfer: funds reserved (available drops, posted does not),
-- pending in for the payee, no legs, status held_for_review
SELECT id AS t1, status, expires_at - created_at AS review_period
  FROM bank.transfer(:a, :s, 150, 'r-1', 'big purchase') \gset
SELECT :'status' AS status, :'review_period' AS review_period;
SELECT * FROM bal;
SELECT count(*) AS legs FROM legs WHERE transfer_id = :t1;

-- the queue, for staff: the item with its rules
SELECT transfer_id = :t1 AS is_t1, kind, hold, amount, rules FROM bank.review_queue();

-- the customer cannot spend the reserved funds
SELECT status FROM bank.withdraw(:a, 850.01, 'r-2');

-- approve: it posts from its reservation, with its two legs; the payee is
-- now known; the decision is audited
SELECT id = :t1 AS same, status, posted_amount FROM bank.review_approve(:t1, 'customer called');
SELECT * FROM bal;
SELECT amount FROM legs WHERE transfer_id = :t1 ORDER BY amount;
SELECT status, decided_by, reason, decided_at IS NOT NULL AS decided FROM bank.fraud_reviews
 WHERE transfer_id = :t1;
SELECT action, metadata FROM bank.audit_events
 WHERE resource_type = 'transfer' AND resource_id = :'t1' ORDER BY id;
SELECT count(*) AS queued FROM bank.review_queue();

-- a decided item cannot be decided again, either way (PB076)
SELECT status FROM bank.review_approve(:t1, 'again');
SELECT status FROM bank.review_reject(:t1, 'changed my mind');

-- reject: voided, reservation released, the day's total given back
SELECT day_total AS before_hold FROM bank.risk_counters WHERE customer_id = :alice;
SELECT id AS t2 FROM bank.transfer(:a, :s, 200, 'r-3') \gset
SELECT day_total AS while_held FROM bank.risk_counters WHERE customer_id = :alice;
SELECT id = :t2 AS same, status, posted_amount, resolved_at IS NOT NULL AS resolved
  FROM bank.review_reject(:t2, 'looks like fraud');
SELECT day_total AS after_reject FROM bank.risk_counters WHERE customer_id = :alice;
SELECT * FROM bal;
SELECT status, reason FROM bank.fraud_reviews WHERE transfer_id = :t2;
SELECT status FROM bank.review_reject(:t2, 'again');
SELECT status FROM bank.review_approve(:t2, 'oops');
-- a rejected transfer can no longer be captured or voided as a hold
SELECT status FROM bank.capture(:t2);

-- while held, the customer's hold functions cannot touch it either
SELECT id AS t3 FROM bank.transfer(:a, :s, 101, 'r-4') \gset
SELECT status FROM bank.capture(:t3);
SELECT status FROM bank.void(:t3);
SELECT status FROM bank.review_reject(:t3, 'not needed');

-- a hold held for review: approval makes it an ordinary pending hold that
-- keeps its own expiry; capture then posts it
SELECT id AS h1, status, expires_at - created_at AS lifetime
  FROM bank.hold(:a, :s, 120, 'r-5', '2 days') \gset
SELECT :'status' AS status, :'lifetime' AS lifetime;
SELECT hold FROM bank.review_queue() WHERE transfer_id = :h1;
SELECT status, expires_at - created_at AS lifetime FROM bank.review_approve(:h1, 'card ok');
SELECT * FROM bal;
SELECT status, posted_amount FROM bank.capture(:h1, 100);
SELECT * FROM bal;

-- a withdrawal held for review posts to the settlement account on approval
SELECT id AS w1, status FROM bank.withdraw(:a, 130, 'r-6') \gset
SELECT :'status' AS status;
SELECT status, posted_amount FROM bank.review_approve(:w1, 'branch confirmed');
SELECT count(*) AS legs FROM legs WHERE transfer_id = :w1;

-- items never held for review, and transfers that do not exist
SELECT id AS plain FROM bank.transfer(:a, :s, 5, 'r-7') \gset
SELECT status FROM bank.review_approve(:plain, 'x');
SELECT status FROM bank.review_reject(:plain, 'x');
SELECT status FROM bank.review_approve(999999, 'x');
SELECT status FROM bank.review_approve(NULL, 'x');
SELECT status FROM bank.review_approve(:plain, NULL);
SELECT status FROM bank.review_approve(:plain, '');
SELECT * FROM bank.review_queue(NULL, 0);

-- the review period: an item past it cannot be approved (PB077); it can
-- still be rejected until bank.expire_holds voids it and closes its review.
-- A transfer's period is pgbank.review_expiry (3 days); time passing is
-- simulated by the superuser moving expires_at back, triggers off.
SELECT id AS t4 FROM bank.transfer(:a, :s, 140, 'r-8') \gset
SELECT id AS t5 FROM bank.transfer(:a, :s, 141, 'r-9') \gset
SET session_replication_role = replica;
UPDATE bank.transfers SET expires_at = created_at WHERE id IN (:t4, :t5);
RESET session_replication_role;
SELECT status FROM bank.review_approve(:t4, 'too late');
SELECT status FROM bank.review_reject(:t5, 'rejected in time');
SELECT bank.expire_holds() AS expired;
SELECT t.id = :t4 AS is_t4, t.status, r.status AS review, r.reason
  FROM bank.transfers t JOIN bank.fraud_reviews r ON r.transfer_id = t.id
 WHERE t.id IN (:t4, :t5) ORDER BY t.id;
SELECT action FROM bank.audit_events
 WHERE resource_type = 'transfer' AND resource_id = :'t4' ORDER BY id;
SELECT status FROM bank.review_approve(:t4, 'after expiry');
SELECT bank.expire_holds() AS expired;
SELECT * FROM bal;

-- who may decide: tellers and admins with their own logins; not customers
-- (no privilege: refused before the function runs, with or without a
-- token; t/101_http_routes.pl tries it with one), not payment services
SELECT id AS t6 FROM bank.transfer(:a, :s, 160, 'r-10') \gset
SET ROLE bank_customer;
SELECT status FROM bank.review_approve(:t6, 'I approve myself');
SELECT count(*) FROM bank.fraud_reviews;
SELECT * FROM bank.review_queue();
RESET ROLE;
SET ROLE bank_service;
SELECT status FROM bank.review_reject(:t6, 'service');
RESET ROLE;
SELECT status FROM bank.transfers WHERE id = :t6;
CREATE ROLE regress_review_teller LOGIN IN ROLE bank_teller;
SET ROLE regress_review_teller;
SELECT count(*) AS queued FROM bank.review_queue();
SELECT status FROM bank.review_approve(:t6, 'teller checked');
RESET ROLE;
SELECT decided_by, reason FROM bank.fraud_reviews WHERE transfer_id = :t6;
DROP ROLE regress_review_teller;

-- the books balance
SELECT * FROM bank.check_ledger();
