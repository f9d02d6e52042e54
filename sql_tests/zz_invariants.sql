-- invariants: what the database itself refuses, even to the superuser that
-- owns the tables (append-only ledger, engine-only columns, CHECK
-- constraints, the deferred legs check), and what bank.check_ledger()
-- reports once the ledger is corrupted behind the triggers' back
-- (session_replication_role = replica).  Each corruption is undone before
-- the next, so each check_ledger() shows the effect of one corruption.

\set VERBOSITY sqlstate
\pset null '<null>'
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pgbank CASCADE;
CREATE EXTENSION pgbank CASCADE;
RESET client_min_messages;

SELECT bank.create_customer('alice@example.com', 'Alice', 'Archer') AS alice \gset
SELECT bank.create_customer('bob@example.com', 'Bob', 'Baker') AS bob \gset
SELECT id AS a FROM bank.open_account('checking', 'alice', 'USD', :alice) \gset
SELECT id AS b FROM bank.open_account('checking', 'bob', 'USD', :bob) \gset
SELECT id AS z FROM bank.open_account('savings', 'zoe', 'USD', :bob) \gset
SELECT id AS settle FROM bank.accounts WHERE type = 'settlement' AND currency = 'USD' \gset

-- check_ledger with account ids replaced by account names (ids depend on how
-- many system accounts the currency table creates)
CREATE FUNCTION pg_temp.named(s text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	r record;
BEGIN
	FOR r IN SELECT id, name FROM bank.accounts
			  WHERE customer_id IS NOT NULL OR (type = 'settlement' AND currency = 'USD')
			  ORDER BY id DESC
	LOOP
		s := regexp_replace(s, 'account ' || r.id || '\M', 'account ' || r.name, 'g');
		s := regexp_replace(s, '\m' || r.id || ':', r.name || ':', 'g');
	END LOOP;
	RETURN s;
END
$$;
CREATE TEMP VIEW violations AS
SELECT violation, pg_temp.named(subject) AS subject, pg_temp.named(detail) AS detail
  FROM bank.check_ledger();

-- a small ledger: folded entries, pending legs and an open hold
SELECT id AS t_dep FROM bank.deposit(:a, 100, 'inv-1') \gset
SELECT id AS t_tr FROM bank.transfer(:a, :b, 30, 'inv-2') \gset
SELECT id AS t_wd FROM bank.withdraw(:a, 5, 'inv-3') \gset
SELECT id AS t_hold FROM bank.hold(:a, :b, 10, 'inv-4') \gset
SELECT id AS t_dep2 FROM bank.deposit(:b, 20, 'inv-5') \gset
SELECT (SELECT count(*) FROM bank.entries) AS entries, (SELECT count(*) FROM bank.pending_legs) AS pending_legs;
SELECT * FROM violations;

-- entries are append-only for everyone: UPDATE, DELETE, TRUNCATE: PB030
UPDATE bank.entries SET amount = amount;
UPDATE bank.entries SET balance_after = balance_after + 1 WHERE account_id = :a;
DELETE FROM bank.entries WHERE account_id = :a;
TRUNCATE bank.entries;

-- only the ledger engine writes legs: INSERT into entries or pending_legs,
-- and UPDATE, DELETE, TRUNCATE of pending legs: PB030
INSERT INTO bank.entries (account_id, transfer_id, currency, amount, balance_after, posted_at)
VALUES (:a, :t_dep, 'USD', 1, 7001, now());
INSERT INTO bank.pending_legs (account_id, transfer_id, currency, amount, posted_at)
VALUES (:a, :t_dep, 'USD', 1, now());
UPDATE bank.pending_legs SET amount = amount + 1;
DELETE FROM bank.pending_legs;
TRUNCATE bank.pending_legs;

-- transfers are never deleted (PB030) nor truncated (refused by the foreign
-- keys of the legs, or with CASCADE by the triggers: PB030)
DELETE FROM bank.transfers WHERE id = :t_tr;
TRUNCATE bank.transfers;
TRUNCATE bank.transfers CASCADE;

-- a transfer's columns do not change outside the engine: its amount, its
-- accounts, its status (posted back to pending, or to reversed without a
-- reversal): PB030
UPDATE bank.transfers SET amount = 1 WHERE id = :t_tr;
UPDATE bank.transfers SET to_account = :z WHERE id = :t_tr;
UPDATE bank.transfers SET status = 'pending', posted_amount = NULL, posted_at = NULL WHERE id = :t_tr;
UPDATE bank.transfers SET status = 'pending' WHERE id = :t_tr;
UPDATE bank.transfers SET status = 'reversed' WHERE id = :t_tr;
UPDATE bank.transfers SET status = 'voided', resolved_at = now() WHERE id = :t_hold;

-- balances change only through transfers: PB030; an account's currency
-- never changes: PB030
UPDATE bank.accounts SET balance = balance + 100 WHERE id = :a;
UPDATE bank.accounts SET balance = 0;
UPDATE bank.accounts SET pending_out = 0 WHERE id = :a;
UPDATE bank.accounts SET currency = 'EUR' WHERE id = :z;

-- a new account starts empty: PB030
INSERT INTO bank.accounts (number, customer_id, type, name, currency, balance)
VALUES ('000000000097', :alice, 'checking', 'rich', 'USD', 100);

-- CHECK constraints (23514): a negative overdraft limit, a closed account
-- with money, a transfer of zero or from an account to itself
INSERT INTO bank.accounts (number, customer_id, type, name, currency, overdraft_limit)
VALUES ('000000000097', :alice, 'checking', 'overdrawn', 'USD', -1);
UPDATE bank.accounts SET overdraft_limit = -1 WHERE id = :a;
-- (status changes only through the account functions: PB030)
UPDATE bank.accounts SET status = 'closed', closed_at = now() WHERE id = :a;
-- accounts are never deleted or truncated, and their id, number, owner,
-- type and currency never change: PB030 (transfers rely on it in place of
-- foreign keys)
DELETE FROM bank.accounts WHERE id = :a;
TRUNCATE bank.accounts CASCADE;
UPDATE bank.accounts SET currency = 'EUR' WHERE id = :a;
UPDATE bank.accounts SET customer_id = :bob WHERE id = :a;
UPDATE bank.accounts SET type = 'savings' WHERE id = :a;
UPDATE bank.accounts SET number = '000000000097' WHERE id = :a;
UPDATE bank.accounts SET id = 999999 WHERE id = :a;

-- transfers are created only by the ledger functions: PB030
INSERT INTO bank.transfers (kind, status, from_account, to_account, currency, amount, failure_code)
VALUES ('transfer', 'failed', :a, :b, 'USD', 1, 'PB001');

-- with that guard switched off (as the owner can), the table's checks and
-- the deferred legs trigger still hold: 23514, 23514, then PB032 at commit
-- for a posted transfer without legs
ALTER TABLE bank.transfers DISABLE TRIGGER transfers_guard;
INSERT INTO bank.transfers (kind, status, from_account, to_account, currency, amount)
VALUES ('transfer', 'failed', :a, :b, 'USD', 0);
INSERT INTO bank.transfers (kind, status, from_account, to_account, currency, amount, failure_code)
VALUES ('transfer', 'failed', :a, :a, 'USD', 1, 'PB001');
BEGIN;
INSERT INTO bank.transfers (kind, status, from_account, to_account, currency, amount,
                            posted_amount, posted_at)
VALUES ('transfer', 'posted', :a, :b, 'USD', 100, 100, now());
COMMIT;
ALTER TABLE bank.transfers ENABLE TRIGGER transfers_guard;

-- nothing got through
SELECT (SELECT count(*) FROM bank.entries) AS entries, (SELECT count(*) FROM bank.pending_legs) AS pending_legs,
       (SELECT count(*) FROM bank.transfers) AS transfers;
SELECT name, balance, pending_out, status FROM bank.account_balances WHERE customer_id IS NOT NULL ORDER BY id;
SELECT * FROM violations;

-- Corruptions, with the triggers disabled.  CHECK constraints still hold.

-- 1. a folded balance changed: balance_mismatch, and the currency no longer
-- sums to zero
SET session_replication_role = replica;
UPDATE bank.accounts SET balance = balance + 100 WHERE id = :a;
RESET session_replication_role;
SELECT * FROM violations;
SET session_replication_role = replica;
UPDATE bank.accounts SET balance = balance - 100 WHERE id = :a;
RESET session_replication_role;
SELECT * FROM violations;

-- 2. an entry's amount changed: the balance no longer equals the sum of the
-- entries, running balances from that entry on are wrong, the transfer's
-- legs do not sum to zero and do not match its amount
SELECT id AS e_tr FROM bank.entries WHERE transfer_id = :t_tr AND account_id = :a \gset
SET session_replication_role = replica;
UPDATE bank.entries SET amount = amount + 1 WHERE id = :e_tr;
RESET session_replication_role;
SELECT * FROM violations;
SET session_replication_role = replica;
UPDATE bank.entries SET amount = amount - 1 WHERE id = :e_tr;
RESET session_replication_role;
SELECT * FROM violations;

-- 3. an entry deleted (alice's first): balance, running balances of the
-- later entries, and the transfer (one leg left)
SELECT id AS e_dep, account_id AS e_dep_account, transfer_id AS e_dep_transfer, currency AS e_dep_currency,
       amount AS e_dep_amount, balance_after AS e_dep_balance_after, posted_at AS e_dep_posted_at
  FROM bank.entries WHERE transfer_id = :t_dep AND account_id = :a \gset
SET session_replication_role = replica;
DELETE FROM bank.entries WHERE id = :e_dep;
RESET session_replication_role;
SELECT * FROM violations;
SET session_replication_role = replica;
INSERT INTO bank.entries (id, account_id, transfer_id, currency, amount, balance_after, posted_at)
OVERRIDING SYSTEM VALUE
VALUES (:e_dep, :e_dep_account, :e_dep_transfer, :'e_dep_currency', :e_dep_amount, :e_dep_balance_after,
        :'e_dep_posted_at');
RESET session_replication_role;
SELECT * FROM violations;

-- 4. a running balance changed: running_balance only
SET session_replication_role = replica;
UPDATE bank.entries SET balance_after = balance_after + 1 WHERE id = :e_tr;
RESET session_replication_role;
SELECT * FROM violations;
SET session_replication_role = replica;
UPDATE bank.entries SET balance_after = balance_after - 1 WHERE id = :e_tr;
RESET session_replication_role;

-- 5. reserved funds that no open hold explains: pending_mismatch
SET session_replication_role = replica;
UPDATE bank.accounts SET pending_out = pending_out + 500 WHERE id = :a;
RESET session_replication_role;
SELECT * FROM violations;
SET session_replication_role = replica;
UPDATE bank.accounts SET pending_out = pending_out - 500 WHERE id = :a;
RESET session_replication_role;

-- 6. a stray debit leg that overdraws bob: overdraft_exceeded, and the
-- transfer and the currency are unbalanced
SET session_replication_role = replica;
INSERT INTO bank.pending_legs (account_id, transfer_id, currency, amount, posted_at)
VALUES (:b, :t_dep2, 'USD', -10000, now()) RETURNING id AS stray \gset
RESET session_replication_role;
SELECT * FROM violations;
SET session_replication_role = replica;
DELETE FROM bank.pending_legs WHERE id = :stray;
RESET session_replication_role;

-- 7. a leg in another currency than its account and transfer:
-- currency_mismatch (the amounts still balance)
SELECT id AS l_dep2 FROM bank.pending_legs WHERE transfer_id = :t_dep2 AND account_id = :b \gset
SET session_replication_role = replica;
UPDATE bank.pending_legs SET currency = 'EUR' WHERE id = :l_dep2;
RESET session_replication_role;
SELECT * FROM violations;
SET session_replication_role = replica;
UPDATE bank.pending_legs SET currency = 'USD' WHERE id = :l_dep2;
RESET session_replication_role;

-- 8. a posted transfer whose credit went to the wrong account:
-- transfer_legs (the amounts still balance)
SET session_replication_role = replica;
UPDATE bank.pending_legs SET account_id = :z WHERE id = :l_dep2;
RESET session_replication_role;
SELECT * FROM violations;
SET session_replication_role = replica;
UPDATE bank.pending_legs SET account_id = :b WHERE id = :l_dep2;
RESET session_replication_role;

-- 9. money landing in a closed account: closed_not_empty (zoe is empty and
-- closed; a leg is slipped in)
SELECT status FROM bank.close_account(:z);
SET session_replication_role = replica;
UPDATE bank.pending_legs SET account_id = :z WHERE id = :l_dep2;
RESET session_replication_role;
SELECT * FROM violations;
SET session_replication_role = replica;
UPDATE bank.pending_legs SET account_id = :b WHERE id = :l_dep2;
RESET session_replication_role;

-- 10. a transfer naming an account that does not exist, or one in another
-- currency: transfer_accounts.  With its guard on, such a row cannot even be
-- written (PB030 outside the engine); with the guard off (as the owner can)
-- it is written, and reported
SET session_replication_role = replica;
INSERT INTO bank.transfers (kind, status, from_account, to_account, currency, amount, failure_code)
VALUES ('transfer', 'failed', :a, 999999, 'USD', 1, 'PB001'),
       ('transfer', 'failed', :a, :b, 'EUR', 1, 'PB001');
RESET session_replication_role;
SELECT violation, detail FROM violations WHERE violation = 'transfer_accounts';
SET session_replication_role = replica;
DELETE FROM bank.transfers WHERE to_account = 999999 OR currency = 'EUR';
RESET session_replication_role;

-- every corruption undone: the ledger is consistent again and the engine
-- works on it
SELECT * FROM violations;
SELECT status FROM bank.capture(:t_hold);
SELECT bank.fold_account(:b) AS folded;
SELECT name, balance, pending_out, available, status FROM bank.account_balances
 WHERE customer_id IS NOT NULL ORDER BY id;
SELECT * FROM violations;

-- a caller's search_path cannot redirect the engine's SQL: every function
-- runs with search_path pinned to pg_catalog, so an evil now() that would
-- mint money inside the engine's write window is never called
CREATE SCHEMA evil;
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN
	UPDATE bank.accounts SET balance = balance + 100000000 WHERE name = 'alice';
	RETURN pg_catalog.now();
END $$;
-- ... nor an evil sum(), which the fold a credit queues for pre-commit
-- would call as bank_engine if it ran under the caller's search_path (no
-- function of ours is running at pre-commit: the fold pins the path itself)
CREATE TABLE evil.calls (who name);
CREATE FUNCTION evil.mint(s bigint, v bigint) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO evil.calls VALUES (current_user);
	RETURN coalesce(s, 0) + v;
END $$;
CREATE AGGREGATE evil.sum(bigint) (sfunc = evil.mint, stype = bigint);
GRANT USAGE ON SCHEMA evil TO PUBLIC;
GRANT ALL ON evil.calls TO PUBLIC;
SELECT id AS y FROM bank.open_account('savings', 'yan', 'USD', :bob) \gset
SET search_path = evil, pg_catalog, public;
SELECT status FROM bank.deposit(:b, 1, 'sp-attack');
SELECT status FROM bank.transfer(:b, :a, 1, 'sp-attack-2');
SET pgbank.fold_every = 1;
SELECT status FROM bank.deposit(:y, 1, 'sp-attack-3');
RESET pgbank.fold_every;
RESET search_path;
SELECT count(*) AS legs_left_after_commit_fold FROM bank.pending_legs WHERE account_id = :y;
SELECT count(*) AS evil_calls FROM evil.calls;
DROP SCHEMA evil CASCADE;
SELECT * FROM violations;

-- a decline caught by an EXCEPTION block leaves no engine state behind: the
-- next call in the same transaction works (alice is KYC-approved, so the
-- large withdrawal is declined for funds, not for KYC)
UPDATE bank.customers SET kyc_status = 'approved' WHERE id = :alice;
DO $$
BEGIN
	BEGIN
		PERFORM bank.withdraw((SELECT id FROM bank.accounts WHERE name = 'alice'), 1000000, 'sx-too-much');
	EXCEPTION WHEN sqlstate 'PB001' THEN NULL;
	END;
	PERFORM bank.deposit((SELECT id FROM bank.accounts WHERE name = 'bob'), 5, 'sx-after');
END $$;
SELECT status FROM bank.transfers WHERE idempotency_key IN ('sx-too-much', 'sx-after') ORDER BY id;

-- a closed account stays closed; currencies never change (PB030)
UPDATE bank.accounts SET status = 'active', closed_at = NULL WHERE id = :z;
UPDATE bank.currencies SET exponent = 3 WHERE code = 'USD';
DELETE FROM bank.currencies WHERE code = 'XPF';
SELECT * FROM violations;

-- nothing is granted to PUBLIC: a role without grants can neither call the
-- functions nor read the tables nor even look up the schema (42501)
CREATE ROLE regress_pgbank_nobody;
SET ROLE regress_pgbank_nobody;
SELECT bank.get_account(:a);
SELECT count(*) FROM bank.accounts;
SELECT bank.transfer(:a, :b, 1, 'nobody');
RESET ROLE;
-- the ACLs themselves, defaults included (a function with no ACL is
-- executable by PUBLIC): nothing of ours grants PUBLIC anything
SELECT count(*) AS public_function_grants
  FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
 WHERE p.pronamespace = 'bank'::regnamespace AND a.grantee = 0;
SELECT count(*) AS public_relation_grants
  FROM pg_class c, aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
 WHERE c.relnamespace = 'bank'::regnamespace AND a.grantee = 0;
SELECT count(*) AS public_schema_grants
  FROM pg_namespace n, aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
 WHERE n.nspname = 'bank' AND a.grantee = 0;
DROP ROLE regress_pgbank_nobody;
