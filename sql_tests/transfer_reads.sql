-- bank.get_transfer and bank.list_transfers: read as the caller under
-- row-level security; another customer's transfer or account is "not found"
-- exactly like one that does not exist; declines are listed
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pgbank CASCADE;
CREATE EXTENSION pgbank CASCADE;
\set VERBOSITY sqlstate

SELECT bank.create_customer('a@example.com', 'Ann', 'A') AS ca \gset
SELECT bank.create_customer('b@example.com', 'Ben', 'B') AS cb \gset
SELECT id AS a1 FROM bank.open_account('checking', 'ann', 'USD', :ca) \gset
SELECT id AS b1 FROM bank.open_account('checking', 'ben', 'USD', :cb) \gset
SELECT id AS b2 FROM bank.open_account('savings', 'ben 2', 'USD', :cb) \gset
SELECT id AS dep FROM bank.deposit(:a1, 100, 'r-1') \gset
SELECT id AS t1 FROM bank.transfer(:a1, :b1, 10, 'r-2') \gset
SELECT id AS h1 FROM bank.hold(:a1, :b1, 5, 'r-3') \gset
SELECT id AS bt FROM bank.transfer(:b1, :b2, 1, 'r-4') \gset
-- a decline, recorded as a failed transfer (its own transaction's first write)
SELECT bank.transfer(:a1, :b1, 1000, 'r-5');
SELECT id AS failed FROM bank.transfers WHERE idempotency_key = 'r-5' \gset
SELECT bank.fold_account(:b1);
SELECT id AS late FROM bank.deposit(:b1, 2, 'r-6') \gset

\i sql_tests/include/customer_token.psql

-- Ann reads her own: every transfer touching her account, newest first,
-- the decline included; keyset pages
BEGIN;
SET LOCAL ROLE bank_customer;
SELECT bank.authenticate(:'tok_a') = :ca AS ann;
SELECT id = :failed AS is_failed, kind, status, amount, posted_amount, failure_code
  FROM bank.list_transfers(:a1);
SELECT id = :t1 AS is_t1, amount, status FROM bank.get_transfer(:t1);
SELECT id = :failed AS is_failed, status, failure_code FROM bank.get_transfer(:failed);
SELECT count(*) AS page1 FROM bank.list_transfers(:a1, NULL, 2);
SELECT array_agg(id ORDER BY id DESC) = ARRAY[:t1, :dep]::bigint[] AS page2
  FROM bank.list_transfers(:a1, (SELECT min(id) FROM bank.list_transfers(:a1, NULL, 2)), 2);
COMMIT;

-- the attack: Ann asks for Ben's transfer and Ben's account; both are "not
-- found", with the same SQLSTATE as ids that do not exist
BEGIN;
SET LOCAL ROLE bank_customer;
SELECT bank.authenticate(:'tok_a') = :ca AS ann;
SAVEPOINT s;
SELECT * FROM bank.get_transfer(:bt);
ROLLBACK TO s;
SELECT * FROM bank.get_transfer(99999999);
ROLLBACK TO s;
SELECT * FROM bank.list_transfers(:b1);
ROLLBACK TO s;
SELECT * FROM bank.list_transfers(99999999);
ROLLBACK TO s;
-- a transfer between Ann and Ben is both of theirs; Ben's own one is not
SELECT count(*) AS ann_sees FROM bank.transfers WHERE id IN (:t1, :bt);
COMMIT;

-- Ben sees the transfer from Ann (it credits him), and his own, with the
-- late deposit still a pending leg
BEGIN;
SET LOCAL ROLE bank_customer;
SELECT bank.authenticate(:'tok_b') = :cb AS ben;
SELECT kind, status, from_account = :b1 AS from_ben, amount FROM bank.list_transfers(:b1);
SELECT * FROM bank.get_transfer(:dep);
COMMIT;

-- staff: a teller's key sees any transfer and account
SELECT api_key AS tel FROM bank.create_api_key('bank_teller', '{*}', now() + interval '1 hour') \gset
BEGIN;
SET LOCAL ROLE bank_teller;
SELECT bank.authenticate_api_key(:'tel') IS NOT NULL AS teller;
SELECT id = :bt AS is_bt FROM bank.get_transfer(:bt);
SELECT count(*) AS listed FROM bank.list_transfers(:b1);
COMMIT;

-- a gateway session without a credential sees nothing; a limit out of range
SET ROLE bank_gateway;
SELECT * FROM bank.get_transfer(:t1);
RESET ROLE;
SELECT * FROM bank.list_transfers(:a1, NULL, 0);
SELECT * FROM bank.list_transfers(:a1, NULL, 1001);
SELECT * FROM bank.list_transfers(NULL);
