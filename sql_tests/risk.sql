-- risk: fraud screening of outgoing transfers, withdrawals and holds.  Each
-- rule kind firing and not firing (decline and review), declines recorded
-- and replayed, declines winning over reviews, rule names escaped in audit
-- metadata, what is and is not screened, customer limits (daily, monthly,
-- given back by a void), overdraft limits, rule validation and auditing,
-- and who may edit the rules.

\set VERBOSITY sqlstate
\pset null '<null>'
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pgbank CASCADE;
CREATE EXTENSION pgbank CASCADE;
RESET client_min_messages;

-- one customer per section, so that each starts with empty counters; each
-- checking account is funded with 1000.00
CREATE FUNCTION pg_temp.acct(n text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
	a bigint;
BEGIN
	a := (bank.open_account('checking', n, 'USD',
							bank.create_customer(n || '@example.com', n, 'Test'))).id;
	PERFORM bank.deposit(a, 1000, 'fund-' || n);
	RETURN a;
END $$;
CREATE FUNCTION pg_temp.owner(a bigint) RETURNS bigint LANGUAGE sql AS
$$ SELECT customer_id FROM bank.accounts WHERE id = a $$;
-- the customer's counters: today's and this month's totals, moves kept
CREATE FUNCTION pg_temp.counters(a bigint)
	RETURNS TABLE (day_total bigint, month_total bigint, recent int, amounts bigint[])
	LANGUAGE sql AS
$$ SELECT day_total, month_total, cardinality(recent_at), recent_amounts
	 FROM bank.risk_counters WHERE customer_id = pg_temp.owner(a) $$;

SELECT pg_temp.acct('shop') AS shop \gset

-- no rules: a transfer posts, and is counted (minor units); no recent
-- times or amounts are kept while no rule needs them; a deposit is not
-- counted (money in)
SELECT pg_temp.acct('plain') AS plain \gset
SELECT status FROM bank.transfer(:plain, :shop, 12.50, 'plain-1');
SELECT status FROM bank.withdraw(:plain, 7.50, 'plain-2');
SELECT * FROM pg_temp.counters(:plain);
SELECT count(*) AS payees FROM bank.payees WHERE customer_id = pg_temp.owner(:plain);

-- a reversal (staff) is not screened or counted
SELECT id AS plain1 FROM bank.transfers WHERE idempotency_key = 'plain-1' \gset
SELECT status FROM bank.reverse(:plain1, 'mistake', 'plain-rev');
SELECT * FROM pg_temp.counters(:plain);
SELECT * FROM pg_temp.counters(:shop);

-- max_amount, decline: 100.00 is not above 100, 100.01 is (PB070), recorded
-- as a failed transfer; a retry with the same key replays the decline
INSERT INTO bank.risk_rules (name, kind, action, currency, amount)
	VALUES ('max 100', 'max_amount', 'decline', 'USD', 100);
SELECT pg_temp.acct('maxed') AS maxed \gset
SELECT status FROM bank.transfer(:maxed, :shop, 100, 'max-1');
SELECT status FROM bank.transfer(:maxed, :shop, 100.01, 'max-2');
SELECT status, failure_code, failure_message, amount FROM bank.transfers WHERE idempotency_key = 'max-2';
SELECT status FROM bank.transfer(:maxed, :shop, 100.01, 'max-2');
-- holds and withdrawals are screened too
SELECT status FROM bank.hold(:maxed, :shop, 100.01, 'max-3');
SELECT status FROM bank.withdraw(:maxed, 100.01, 'max-4');
SELECT action, metadata->>'code' AS code FROM bank.audit_events
 WHERE action = 'transfer.declined' ORDER BY id DESC LIMIT 1;
-- the declines moved nothing and were not counted
SELECT * FROM pg_temp.counters(:maxed);
-- a rule of another currency does not apply
SELECT id AS maxed_eur FROM bank.open_account('checking', 'maxed eur', 'EUR', pg_temp.owner(:maxed)) \gset
SELECT id AS shop_eur FROM bank.open_account('checking', 'shop eur', 'EUR', pg_temp.owner(:shop)) \gset
SELECT status FROM bank.deposit(:maxed_eur, 500, 'max-eur-fund');
SELECT status FROM bank.transfer(:maxed_eur, :shop_eur, 200, 'max-eur-1');
-- a disabled rule does not apply
UPDATE bank.risk_rules SET enabled = false WHERE name = 'max 100';
SELECT status FROM bank.transfer(:maxed, :shop, 100.01, 'max-5');

-- max_amount by KYC status, review: only customers whose KYC is pending;
-- the move is held, its funds reserved, and a review item names the rule
INSERT INTO bank.risk_rules (name, kind, action, currency, amount, kyc_status)
	VALUES ('unverified max 50', 'max_amount', 'review', 'USD', 50, 'pending');
SELECT pg_temp.acct('kyc') AS kyc \gset
SELECT status FROM bank.transfer(:kyc, :shop, 50, 'kyc-1');
SELECT status FROM bank.transfer(:kyc, :shop, 60, 'kyc-2');
SELECT posted, pending_out, available FROM bank.balance(:kyc);
SELECT r.hold, r.status, r.rules FROM bank.fraud_reviews r JOIN bank.transfers t ON t.id = r.transfer_id
 WHERE t.idempotency_key = 'kyc-2';
SELECT bank.set_kyc_status(pg_temp.owner(:kyc), 'approved', 'documents checked');
SELECT status FROM bank.transfer(:kyc, :shop, 60, 'kyc-3');
UPDATE bank.risk_rules SET enabled = false WHERE enabled;

-- daily_total, decline: the customer's total across their accounts, this
-- move included: 200 + 100 is not above 300, 0.01 more is (PB071)
INSERT INTO bank.risk_rules (name, kind, action, currency, amount)
	VALUES ('daily 300', 'daily_total', 'decline', 'USD', 300);
SELECT pg_temp.acct('daily') AS daily \gset
SELECT id AS daily2 FROM bank.open_account('savings', 'daily 2', 'USD', pg_temp.owner(:daily)) \gset
SELECT status FROM bank.deposit(:daily2, 500, 'daily-fund');
SELECT status FROM bank.transfer(:daily, :shop, 200, 'daily-1');
SELECT status FROM bank.hold(:daily2, :shop, 100, 'daily-2');
SELECT status FROM bank.withdraw(:daily2, 0.01, 'daily-3');
-- voiding the hold gives its 100 back to the day
SELECT id AS daily_hold FROM bank.transfers WHERE idempotency_key = 'daily-2' \gset
SELECT status FROM bank.void(:daily_hold);
SELECT * FROM pg_temp.counters(:daily);
SELECT status FROM bank.withdraw(:daily2, 100, 'daily-4');
-- a transfer between the customer's own accounts counts as outgoing too
SELECT status FROM bank.transfer(:daily, :daily2, 0.01, 'daily-5');
UPDATE bank.risk_rules SET enabled = false WHERE enabled;

-- monthly_total, review: 400 is not above 500; 200 more is, and is held
INSERT INTO bank.risk_rules (name, kind, action, currency, amount)
	VALUES ('monthly 500', 'monthly_total', 'review', 'USD', 500);
SELECT pg_temp.acct('monthly') AS monthly \gset
SELECT status FROM bank.transfer(:monthly, :shop, 400, 'monthly-1');
SELECT status FROM bank.transfer(:monthly, :shop, 200, 'monthly-2');
SELECT * FROM pg_temp.counters(:monthly);
UPDATE bank.risk_rules SET enabled = false WHERE enabled;

-- velocity, decline: at most 2 moves in 10 minutes; the third is PB073,
-- and a hold counts as a move
INSERT INTO bank.risk_rules (name, kind, action, max_count, window_minutes)
	VALUES ('2 per 10 min', 'velocity', 'decline', 2, 10);
SELECT pg_temp.acct('fast') AS fast \gset
SELECT status FROM bank.transfer(:fast, :shop, 1, 'fast-1');
SELECT status FROM bank.hold(:fast, :shop, 1, 'fast-2');
SELECT status FROM bank.transfer(:fast, :shop, 1, 'fast-3');
-- another customer is not slowed down by it
SELECT pg_temp.acct('slow') AS slow \gset
SELECT status FROM bank.transfer(:slow, :shop, 1, 'slow-1');
-- the window: moves older than 10 minutes do not count (time passing is
-- simulated by moving the recorded times back)
UPDATE bank.risk_counters SET recent_at = ARRAY[now() - interval '11 minutes', now() - interval '10 minutes 1 second']
 WHERE customer_id = pg_temp.owner(:fast);
SELECT status FROM bank.transfer(:fast, :shop, 1, 'fast-4');
UPDATE bank.risk_rules SET enabled = false WHERE enabled;

-- new_payee, decline: a first transfer to another customer's account above
-- 50 is PB074; at or below it passes and makes the payee known, after which
-- larger transfers pass; own accounts and withdrawals have no new payee
INSERT INTO bank.risk_rules (name, kind, action, currency, amount)
	VALUES ('new payee 50', 'new_payee', 'decline', 'USD', 50);
SELECT pg_temp.acct('payer') AS payer \gset
SELECT id AS payer2 FROM bank.open_account('savings', 'payer 2', 'USD', pg_temp.owner(:payer)) \gset
SELECT status FROM bank.transfer(:payer, :shop, 60, 'payee-1');
SELECT status FROM bank.transfer(:payer, :shop, 50, 'payee-2');
SELECT status FROM bank.transfer(:payer, :shop, 60, 'payee-3');
SELECT status FROM bank.transfer(:payer, :payer2, 60, 'payee-4');
SELECT status FROM bank.withdraw(:payer, 60, 'payee-5');
SELECT account_id = :shop AS payee_is_shop FROM bank.payees WHERE customer_id = pg_temp.owner(:payer);
UPDATE bank.risk_rules SET enabled = false WHERE enabled;

-- unusual_amount, review: above 3 x the median of the last 4 accepted
-- amounts, once there are 3 of them
INSERT INTO bank.risk_rules (name, kind, action, multiplier, history, min_history)
	VALUES ('3x usual', 'unusual_amount', 'review', 3, 4, 3);
SELECT pg_temp.acct('usual') AS usual \gset
SELECT status FROM bank.transfer(:usual, :shop, 10, 'usual-1');
SELECT status FROM bank.transfer(:usual, :shop, 20, 'usual-2');
-- only two amounts so far: no judgement yet
SELECT status FROM bank.transfer(:usual, :shop, 100, 'usual-3');
-- three amounts 10, 20, 100: median 20, so 60.01 is above 3 x 20 and is
-- held, and 60 is not
SELECT status FROM bank.transfer(:usual, :shop, 60.01, 'usual-4');
SELECT status FROM bank.transfer(:usual, :shop, 60, 'usual-5');
-- a held amount does not join the history
SELECT * FROM pg_temp.counters(:usual);
-- four amounts 10, 20, 100, 60: the median is (20 + 60) / 2 = 40, so
-- 120.01 is above 3 x 40 and 120 is not
SELECT status FROM bank.transfer(:usual, :shop, 120.01, 'usual-6');
SELECT status FROM bank.transfer(:usual, :shop, 120, 'usual-7');
-- the history kept is as deep as the rule needs (4, and the move itself)
SELECT * FROM pg_temp.counters(:usual);
UPDATE bank.risk_rules SET enabled = false WHERE enabled;

-- several rules fire: a decline wins over a review, whatever their order
-- (max_amount comes before new_payee)
INSERT INTO bank.risk_rules (name, kind, action, currency, amount)
	VALUES ('review above 10', 'max_amount', 'review', 'USD', 10),
		   ('no new payee above 10', 'new_payee', 'decline', 'USD', 10);
SELECT pg_temp.acct('twice') AS twice \gset
SELECT status FROM bank.transfer(:twice, :shop, 20, 'both-1');
-- two review rules: both are named
UPDATE bank.risk_rules SET action = 'review' WHERE name = 'no new payee above 10';
SELECT status FROM bank.transfer(:twice, :shop, 20, 'both-2');
SELECT jsonb_path_query_array(rules, '$[*].name') AS rules FROM bank.fraud_reviews r
  JOIN bank.transfers t ON t.id = r.transfer_id WHERE t.idempotency_key = 'both-2';
UPDATE bank.risk_rules SET enabled = false WHERE enabled;

-- a rule's name is admin-entered text: it reaches the audit metadata as a
-- JSON string, escaped, never as JSON syntax
INSERT INTO bank.risk_rules (name, kind, action, currency, amount)
	VALUES (E'evil", "injected": true, "x": "\\', 'max_amount', 'review', 'USD', 1);
SELECT pg_temp.acct('evil') AS evil \gset
SELECT status FROM bank.transfer(:evil, :shop, 2, 'evil-1');
SELECT metadata->'rules'->0->>'name' = (SELECT name FROM bank.risk_rules WHERE kind = 'max_amount'
										   AND amount = 1) AS name_round_trips,
	   metadata ? 'injected' AS injected, metadata->>'amount' AS amount, metadata->>'hold' AS hold
  FROM bank.audit_events WHERE action = 'transfer.fraud_flagged' ORDER BY id DESC LIMIT 1;
UPDATE bank.risk_rules SET enabled = false WHERE enabled;

-- customer limits (staff): daily 100, monthly 150; NULL means none
SELECT pg_temp.acct('limited') AS limited \gset
SELECT * FROM bank.set_customer_limits(pg_temp.owner(:limited), 'USD', 100, 150, 'new customer');
SELECT status FROM bank.transfer(:limited, :shop, 60, 'lim-1');
SELECT status FROM bank.transfer(:limited, :shop, 40.01, 'lim-2');
SELECT failure_code FROM bank.transfers WHERE idempotency_key = 'lim-2';
SELECT status FROM bank.hold(:limited, :shop, 40, 'lim-3');
-- a partial capture gives the rest back: 60 + 25 = 85 counted
SELECT id AS lim_hold FROM bank.transfers WHERE idempotency_key = 'lim-3' \gset
SELECT status FROM bank.capture(:lim_hold, 25);
SELECT day_total, month_total FROM pg_temp.counters(:limited);
SELECT status FROM bank.transfer(:limited, :shop, 15, 'lim-4');
-- no daily limit any more; the monthly one holds: 100 + 50.01 > 150
SELECT * FROM bank.set_customer_limits(pg_temp.owner(:limited), 'USD', NULL, 150, 'raised');
SELECT status FROM bank.transfer(:limited, :shop, 50.01, 'lim-5');
SELECT status FROM bank.transfer(:limited, :shop, 50, 'lim-6');
-- a limit of 0: nothing may go out
SELECT * FROM bank.set_customer_limits(pg_temp.owner(:limited), 'USD', 0, NULL, 'blocked');
SELECT status FROM bank.withdraw(:limited, 0.01, 'lim-7');
-- a limit lowered below what went out today shows in the exceptions view
SELECT problem, account_id, amount, outgoing_limit FROM bank.account_exceptions
 WHERE customer_id = pg_temp.owner(:limited);
SELECT action, resource_type, metadata FROM bank.audit_events
 WHERE action = 'customer.limits' ORDER BY id;
-- bad arguments change nothing
SELECT * FROM bank.set_customer_limits(NULL, 'USD', 1, 1, 'x');
SELECT * FROM bank.set_customer_limits(999999, 'USD', 1, 1, 'x');
SELECT * FROM bank.set_customer_limits(pg_temp.owner(:limited), 'USD', -1, 1, 'x');
SELECT * FROM bank.set_customer_limits(pg_temp.owner(:limited), 'USD', 1.001, 1, 'x');
SELECT * FROM bank.set_customer_limits(pg_temp.owner(:limited), 'XXX', 1, 1, 'x');
SELECT * FROM bank.set_customer_limits(pg_temp.owner(:limited), 'USD', 1, 1, '');
SELECT daily_limit, monthly_limit FROM bank.customer_limits WHERE customer_id = pg_temp.owner(:limited);

-- overdraft limits (staff): the account may then go below zero that far,
-- atomically with the funds checks (under the account's lock)
SELECT pg_temp.acct('od') AS od \gset
SELECT status FROM bank.withdraw(:od, 980, 'over-0');
SELECT status FROM bank.withdraw(:od, 50, 'over-1');
SELECT overdraft_limit, available FROM bank.set_overdraft_limit(:od, 50, 'good customer');
SELECT status FROM bank.withdraw(:od, 50, 'over-2');
SELECT status FROM bank.withdraw(:od, 20.01, 'over-3');
SELECT balance, available FROM bank.get_account(:od);
-- not below what the account already owes (PB078), nothing changed
SELECT overdraft_limit FROM bank.set_overdraft_limit(:od, 29.99, 'lower');
SELECT overdraft_limit FROM bank.set_overdraft_limit(:od, 30, 'lower');
SELECT overdraft_limit FROM bank.set_overdraft_limit(:od, -1, 'x');
SELECT overdraft_limit FROM bank.set_overdraft_limit(:od, 0.001, 'x');
SELECT id AS settle FROM bank.accounts WHERE type = 'settlement' AND currency = 'USD' \gset
SELECT overdraft_limit FROM bank.set_overdraft_limit(:settle, 10, 'x');
SELECT overdraft_limit FROM bank.set_overdraft_limit(:od, NULL, 'x');
SELECT action, metadata FROM bank.audit_events WHERE action = 'account.overdraft_limit' ORDER BY id;

-- rules are checked: an amount with more fraction digits than its currency
-- (PB006), parameters that do not fit the kind (23514)
INSERT INTO bank.risk_rules (name, kind, action, currency, amount)
	VALUES ('bad amount', 'max_amount', 'decline', 'USD', 1.001);
INSERT INTO bank.risk_rules (name, kind, action, currency)
	VALUES ('no amount', 'max_amount', 'decline', 'USD');
INSERT INTO bank.risk_rules (name, kind, action, max_count, window_minutes, amount)
	VALUES ('velocity with amount', 'velocity', 'decline', 2, 10, 5);
INSERT INTO bank.risk_rules (name, kind, action, currency, amount, kyc_status)
	VALUES ('daily by kyc', 'daily_total', 'decline', 'USD', 5, 'pending');
UPDATE bank.risk_rules SET amount = 0.001 WHERE name = 'max 100';

-- every change of a rule is audited with the rule as JSON
UPDATE bank.risk_rules SET amount = 200 WHERE name = 'max 100';
DELETE FROM bank.risk_rules WHERE name = 'max 100';
SELECT action, metadata->'rule'->>'name' AS name, metadata->'rule'->>'amount' AS amount
  FROM bank.audit_events WHERE resource_type = 'risk_rule' AND metadata->'rule'->>'name' = 'max 100'
 ORDER BY id;

-- who may read and edit the rules: admins edit, tellers and auditors read,
-- customers and services see nothing
CREATE ROLE regress_risk_admin LOGIN IN ROLE bank_admin;
CREATE ROLE regress_risk_teller LOGIN IN ROLE bank_teller;
SET ROLE regress_risk_admin;
INSERT INTO bank.risk_rules (name, kind, action, currency, amount)
	VALUES ('admin rule', 'max_amount', 'review', 'USD', 5000);
UPDATE bank.risk_rules SET enabled = false WHERE name = 'admin rule';
RESET ROLE;
SELECT acting_role, action FROM bank.audit_events WHERE metadata->'rule'->>'name' = 'admin rule'
 ORDER BY id;
SET ROLE regress_risk_teller;
SELECT count(*) > 0 AS teller_reads FROM bank.risk_rules;
INSERT INTO bank.risk_rules (name, kind, action, currency, amount)
	VALUES ('teller rule', 'max_amount', 'review', 'USD', 5000);
UPDATE bank.risk_rules SET enabled = true;
SELECT * FROM bank.set_customer_limits(pg_temp.owner(:plain), 'USD', 1, 1, 'teller sets a limit');
RESET ROLE;
SET ROLE bank_customer;
SELECT count(*) FROM bank.risk_rules;
SELECT * FROM bank.set_customer_limits(pg_temp.owner(:plain), 'USD', 1000000, NULL, 'me');
SELECT overdraft_limit FROM bank.set_overdraft_limit(:plain, 1000000, 'me');
RESET ROLE;
SET ROLE bank_service;
SELECT count(*) FROM bank.risk_rules;
RESET ROLE;
DROP ROLE regress_risk_admin, regress_risk_teller;

-- the books balance; held moves are reserved, not posted
SELECT * FROM bank.check_ledger();
