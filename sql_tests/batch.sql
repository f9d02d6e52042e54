-- bank.transfer_batch: per-item results, declines recorded with the batch,
-- malformed batches refused whole, replays, grants; bank.account_amount;
-- bank.api_key_role
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pgbank CASCADE;
CREATE EXTENSION pgbank CASCADE;
\set VERBOSITY sqlstate

SELECT bank.create_customer('a@example.com', 'Ann', 'A') AS ca \gset
SELECT bank.create_customer('b@example.com', 'Ben', 'B') AS cb \gset
SELECT id AS a1 FROM bank.open_account('checking', 'ann', 'USD', :ca) \gset
SELECT id AS a2 FROM bank.open_account('savings', 'ann 2', 'USD', :ca) \gset
SELECT id AS b1 FROM bank.open_account('checking', 'ben', 'USD', :cb) \gset
SELECT id AS be FROM bank.open_account('checking', 'ben eur', 'EUR', :cb) \gset
SELECT id AS bj FROM bank.open_account('checking', 'ben jpy', 'JPY', :cb) \gset
SELECT status FROM bank.deposit(:a1, 100, 'fund-a1');
SELECT status FROM bank.deposit(:b1, 10, 'fund-b1');
SELECT api_key AS svc FROM bank.create_api_key('bank_service', '{*}', now() + interval '1 hour') \gset
SELECT api_key AS tel FROM bank.create_api_key('bank_teller', '{*}', now() + interval '1 hour') \gset

-- a batch as a payment rail sends it: its API key, its role
CREATE FUNCTION pg_temp.batch(items jsonb, key text DEFAULT NULL, role text DEFAULT 'bank_service')
	RETURNS SETOF bank.batch_item_result LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE pg_catalog.format('SET LOCAL ROLE %I', role);
	PERFORM bank.authenticate_api_key(key);
	RETURN QUERY SELECT * FROM bank.transfer_batch(items);
	RESET ROLE;
END $$;
CREATE FUNCTION pg_temp.item(f bigint, t bigint, amount jsonb, k text) RETURNS jsonb
	LANGUAGE sql AS $$ SELECT jsonb_build_object('from_account', f, 'to_account', t, 'amount', amount, 'idempotency_key', k) $$;
SELECT count(*) AS transfers0 FROM bank.transfers \gset

-- one result per item, in item order: posted (a decimal string, an integer
-- of minor units), declined and recorded, refused (unknown account, too many
-- fraction digits, another currency, zero minor units, too large), and a
-- decline that rests on an earlier item of the same batch (items run in
-- from_account order: b1's 10.00 arrives from item 1 before item 6 spends it)
SELECT item, idempotency_key, transfer_id IS NOT NULL AS has_id, status, code, message, replayed
  FROM pg_temp.batch(jsonb_build_array(
	pg_temp.item(:a1, :b1, '"10.00"', 'k1'),
	pg_temp.item(:a1, :a2, '2550', 'k2'),
	pg_temp.item(:a1, :b1, '"500"', 'k3'),
	pg_temp.item(:a1, 999999, '"1"', 'k4'),
	pg_temp.item(:a1, :b1, '"1.001"', 'k5'),
	pg_temp.item(:b1, :a1, '"19.00"', 'k6'),
	pg_temp.item(:b1, :a1, '"2.00"', 'k7'),
	pg_temp.item(:a1, :be, '"1"', 'k8'),
	pg_temp.item(:a1, :b1, '0', 'k9'),
	pg_temp.item(:a1, :b1, '1000000000000001', 'k10'),
	pg_temp.item(:a1, :b1, '-5', 'k11')), :'svc');
-- the money moved exactly so, and the ledger holds
SELECT posted, available FROM bank.balance(:a1);
SELECT posted, available FROM bank.balance(:b1);
SELECT * FROM bank.check_ledger();
-- the decline is a failed transfer with its audit row, like a single one's;
-- every posted item has its transfer.create row; the batch has one row
SELECT t.idempotency_key, t.status, t.failure_code, t.amount
  FROM bank.transfers t WHERE t.idempotency_scope LIKE 'api_key:%' ORDER BY t.id;
SELECT action, count(*) FROM bank.audit_events
 WHERE action IN ('transfer.create', 'transfer.declined', 'transfer.batch') AND api_key_id IS NOT NULL
 GROUP BY action ORDER BY action;
SELECT metadata FROM bank.audit_events WHERE action = 'transfer.batch';

-- the same batch again: every recorded item replays (same ids), nothing
-- moves, nothing is audited; the refused ones are refused again
SELECT count(*) AS audit0 FROM bank.audit_events \gset
SELECT item, status, code, replayed
  FROM pg_temp.batch(jsonb_build_array(
	pg_temp.item(:a1, :b1, '"10.00"', 'k1'),
	pg_temp.item(:a1, :a2, '2550', 'k2'),
	pg_temp.item(:a1, :b1, '"500"', 'k3'),
	pg_temp.item(:a1, 999999, '"1"', 'k4')), :'svc');
SELECT count(*) - :audit0 AS new_audit_rows FROM bank.audit_events;
-- an item key's transfer is the same as bank.transfer's with that key
SELECT (SELECT transfer_id FROM pg_temp.batch(jsonb_build_array(pg_temp.item(:a1, :b1, '1000', 'k1')), :'svc'))
	 = (SELECT id FROM bank.transfers WHERE idempotency_key = 'k1') AS minor_units_replay_decimal;
-- a key reused for another payload refuses that item only
SELECT item, status, code, replayed
  FROM pg_temp.batch(jsonb_build_array(
	pg_temp.item(:a1, :b1, '"11.00"', 'k1'),
	pg_temp.item(:a1, :b1, '"1.00"', 'k12')), :'svc');

-- a batch rolled back takes its declines with it (they rested on its writes)
BEGIN;
SELECT item, status, code FROM pg_temp.batch(jsonb_build_array(
	pg_temp.item(:a1, :b1, '"1.00"', 'r1'), pg_temp.item(:a1, :b1, '"999.00"', 'r2')), :'svc');
ROLLBACK;
SELECT count(*) AS rolled_back FROM bank.transfers WHERE idempotency_key IN ('r1', 'r2');

-- malformed batches are refused whole, and write nothing
SELECT count(*) AS transfers1 FROM bank.transfers \gset
SELECT * FROM pg_temp.batch('{"items": []}', :'svc');
SELECT * FROM pg_temp.batch('[]', :'svc');
SELECT * FROM pg_temp.batch('[1]', :'svc');
SELECT * FROM pg_temp.batch(NULL, :'svc');
SELECT * FROM pg_temp.batch(jsonb_build_array(pg_temp.item(:a1, :b1, '"1"', 'm1') || '{"status": "posted"}'), :'svc');
SELECT * FROM pg_temp.batch(jsonb_build_array(pg_temp.item(:a1, :b1, '"1"', 'm1') - 'to_account'), :'svc');
SELECT * FROM pg_temp.batch(jsonb_build_array(pg_temp.item(:a1, :b1, '"1"', 'm1') - 'idempotency_key'), :'svc');
SELECT * FROM pg_temp.batch(jsonb_build_array(pg_temp.item(:a1, :b1, 'null', 'm1')), :'svc');
SELECT * FROM pg_temp.batch(jsonb_build_array(pg_temp.item(:a1, :b1, '10.5', 'm1')), :'svc');
SELECT * FROM pg_temp.batch(jsonb_build_array(pg_temp.item(:a1, :b1, '"1e3"', 'm1')), :'svc');
SELECT * FROM pg_temp.batch(jsonb_build_array(pg_temp.item(:a1, :b1, '"-1"', 'm1')), :'svc');
SELECT * FROM pg_temp.batch(jsonb_build_array(pg_temp.item(:a1, :b1, '"1"', 'm1') || jsonb_build_object('from_account', :a1::text)), :'svc');
SELECT * FROM pg_temp.batch(jsonb_build_array(pg_temp.item(:a1, :b1, '"1"', 'm1') || '{"metadata": [1]}'), :'svc');
SELECT * FROM pg_temp.batch(jsonb_build_array(pg_temp.item(:a1, :b1, '"1"', 'm1'), pg_temp.item(:a1, :a2, '"1"', 'm2'), pg_temp.item(:a1, :b1, '"2"', 'm1')), :'svc');
SELECT * FROM pg_temp.batch(jsonb_build_array(pg_temp.item(:a1, :b1, '"1"', '')), :'svc');
SELECT * FROM pg_temp.batch((SELECT jsonb_agg(pg_temp.item(:a1, :b1, '1', 'big' || g)) FROM generate_series(1, 1001) g), :'svc');
SELECT count(*) - :transfers1 AS written FROM bank.transfers;

-- 1000 items is the most, and works (each item its own subtransaction)
SELECT status, count(*) FROM pg_temp.batch((SELECT jsonb_agg(pg_temp.item(:a1, :b1, '1', 'max' || g)) FROM generate_series(1, 1000) g), :'svc')
 GROUP BY status;
SELECT * FROM bank.check_ledger();

-- description and metadata go with the item; the transfer is audited
SELECT status FROM pg_temp.batch(jsonb_build_array(pg_temp.item(:a1, :b1, '"1.00"', 'd1')
	|| '{"description": "rent", "metadata": {"rail": "ach"}}'), :'svc');
SELECT description, metadata FROM bank.transfers WHERE idempotency_key = 'd1';

-- granted to bank_service only: not to tellers or customers
SELECT * FROM pg_temp.batch(jsonb_build_array(pg_temp.item(:a1, :b1, '"1"', 'g1')), :'tel', 'bank_teller');
SET ROLE bank_customer;
SELECT * FROM bank.transfer_batch('[]');
RESET ROLE;
-- the service's key scopes apply: a key without transfer_batch is refused
SELECT api_key AS svc2 FROM bank.create_api_key('bank_service', '{deposit}', now() + interval '1 hour') \gset
SELECT * FROM pg_temp.batch(jsonb_build_array(pg_temp.item(:a1, :b1, '"1"', 'g2')), :'svc2');

-- bank.account_amount: minor units in the account's currency, exactly
SELECT bank.account_amount(:a1, 1050) AS usd, bank.account_amount(:bj, 1050) AS jpy,
	   bank.account_amount(:a1, NULL) AS none, bank.account_amount(:a1, 1000000000000000) AS most;
SELECT bank.account_amount(:a1, 0);
SELECT bank.account_amount(:a1, -1);
SELECT bank.account_amount(:a1, 1000000000000001);
SELECT bank.account_amount(NULL, 1);
SELECT bank.account_amount(999999, 1);

-- bank.api_key_role: the gateway learns a key's role, and nothing more
SET ROLE bank_gateway;
SELECT role FROM bank.api_key_role(:'svc');
SELECT role FROM bank.api_key_role(:'tel');
SELECT role FROM bank.api_key_role('pbk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA');
SELECT role FROM bank.api_key_role(NULL);
RESET ROLE;
SELECT bank.revoke_api_key(id) FROM bank.api_keys WHERE role = 'bank_teller';
SET ROLE bank_gateway;
SELECT role FROM bank.api_key_role(:'tel');
RESET ROLE;
SET ROLE bank_service;
SELECT role FROM bank.api_key_role(:'svc');
RESET ROLE;
