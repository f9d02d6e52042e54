-- Roles, privileges and row-level security: who sees and changes what
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pgbank CASCADE;
CREATE EXTENSION pgbank CASCADE;
\set VERBOSITY sqlstate

-- Two customers with an account each, money moved between them, a hold of
-- B's on A, and one unfolded leg each.
SELECT bank.create_customer('a@example.com', 'Ann', 'A') AS ca \gset
SELECT bank.create_customer('b@example.com', 'Ben', 'B') AS cb \gset
SELECT id AS aa FROM bank.open_account('checking', 'ann', 'USD', :ca) \gset
SELECT id AS ba FROM bank.open_account('checking', 'ben', 'USD', :cb) \gset
SELECT id AS bb FROM bank.open_account('savings', 'ben 2', 'USD', :cb) \gset
SELECT status FROM bank.deposit(:aa, 100, 'rls-1');
SELECT status FROM bank.deposit(:ba, 100, 'rls-2');
SELECT status FROM bank.transfer(:ba, :bb, 5, 'rls-3');
SELECT id AS hold_b FROM bank.hold(:ba, :bb, 7, 'rls-4') \gset
SELECT bank.fold_account(:aa), bank.fold_account(:ba), bank.fold_account(:bb);
SELECT status FROM bank.deposit(:aa, 1, 'rls-5');
SELECT status FROM bank.deposit(:ba, 1, 'rls-6');

-- Access tokens, signed in SQL with the cluster's key (a superuser may read
-- it), for sessions created here.
\i sql_tests/include/customer_token.psql

-- Every command on every table, in a subtransaction: the row count, or the
-- SQLSTATE it fails with.
CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	n bigint;
BEGIN
	EXECUTE sql INTO n;
	RETURN coalesce(n::text, 'ok');
EXCEPTION WHEN OTHERS THEN
	RETURN sqlstate;
END $$;
CREATE FUNCTION pg_temp.matrix() RETURNS TABLE (tbl text, sel text, ins text, upd text, del text)
LANGUAGE plpgsql AS $$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['currencies', 'customers', 'customer_keys', 'accounts', 'transfers',
							 'entries', 'pending_legs', 'sessions', 'refresh_tokens', 'api_keys',
							 'audit_events']
	LOOP
		tbl := t;
		sel := pg_temp.try(format('SELECT count(*) FROM bank.%I', t));
		ins := pg_temp.try(format('INSERT INTO bank.%I DEFAULT VALUES', t));
		upd := pg_temp.try(format('WITH u AS (UPDATE bank.%1$I SET %2$I = %2$I RETURNING 1) SELECT count(*) FROM u',
								  t, CASE t WHEN 'currencies' THEN 'name' WHEN 'customers' THEN 'first_name'
										   WHEN 'customer_keys' THEN 'created_at' WHEN 'accounts' THEN 'name'
										   WHEN 'transfers' THEN 'description' WHEN 'entries' THEN 'posted_at'
										   WHEN 'pending_legs' THEN 'posted_at' WHEN 'sessions' THEN 'revoked_at'
										   WHEN 'refresh_tokens' THEN 'used_at' WHEN 'api_keys' THEN 'name'
										   ELSE 'action' END));
		del := pg_temp.try(format('WITH d AS (DELETE FROM bank.%I RETURNING 1) SELECT count(*) FROM d', t));
		RETURN NEXT;
	END LOOP;
END $$;

CREATE ROLE regress_rls_teller LOGIN IN ROLE bank_teller;
CREATE ROLE regress_rls_auditor LOGIN IN ROLE bank_auditor;
CREATE ROLE regress_rls_service LOGIN IN ROLE bank_service;
CREATE ROLE regress_rls_admin LOGIN IN ROLE bank_admin;
CREATE ROLE regress_rls_nobody LOGIN;

-- anonymous: no table at all
SET ROLE bank_anon;
SELECT * FROM pg_temp.matrix();
RESET ROLE;

-- a customer without a token: privileges, but no rows
SET ROLE bank_customer;
SELECT * FROM pg_temp.matrix();
RESET ROLE;

-- customer A, authenticated: their own rows only, and never a write
BEGIN;
SET LOCAL ROLE bank_customer;
SELECT bank.authenticate(:'tok_a') = :ca AS authenticated;
SELECT * FROM pg_temp.matrix();
SELECT count(*) FILTER (WHERE customer_id = :ca) AS own, count(*) AS visible FROM bank.accounts;
COMMIT;

-- customer B, authenticated: their own rows (the hold is B's on both sides)
BEGIN;
SET LOCAL ROLE bank_customer;
SELECT bank.authenticate(:'tok_b') = :cb AS authenticated;
SELECT * FROM pg_temp.matrix();
COMMIT;

-- staff roles with their own logins: every ledger row, no secret tables, no writes
SET ROLE regress_rls_teller;
SELECT * FROM pg_temp.matrix();
SET ROLE regress_rls_auditor;
SELECT * FROM pg_temp.matrix();
SET ROLE regress_rls_service;
SELECT * FROM pg_temp.matrix();
SET ROLE regress_rls_admin;
SELECT * FROM pg_temp.matrix();
-- a role in no bank group: nothing
SET ROLE regress_rls_nobody;
SELECT * FROM pg_temp.matrix();
RESET ROLE;

-- the gateway login holds no privilege of its own (NOINHERIT), and a
-- gateway session that switches to a staff role without a credential gets
-- neither rows nor staff functions
SET SESSION AUTHORIZATION bank_gateway;
SELECT pg_temp.try('SELECT count(*) FROM bank.accounts') AS gateway_itself;
SET ROLE bank_teller;
SELECT pg_temp.try('SELECT count(*) FROM bank.accounts') AS gateway_as_teller;
SELECT bank.freeze_account(:aa, 'no credential');
SELECT kind FROM bank.whoami();
RESET ROLE;
RESET SESSION AUTHORIZATION;

-- Customer A cannot read, move or learn of B's accounts, transfers or data:
-- each is "not found", exactly like an id that does not exist.
BEGIN;
SET LOCAL ROLE bank_customer;
SELECT bank.authenticate(:'tok_a') IS NOT NULL AS authenticated;
SAVEPOINT s;
SELECT id FROM bank.get_account(:ba);
ROLLBACK TO s;
SELECT id FROM bank.get_account(999999);
ROLLBACK TO s;
SELECT * FROM bank.balance(:ba);
ROLLBACK TO s;
SELECT * FROM bank.entries(:ba);
ROLLBACK TO s;
SELECT * FROM bank.statement(:ba, now() - interval '1 day', now() + interval '1 day');
ROLLBACK TO s;
SELECT status FROM bank.transfer(:ba, :aa, 1, 'steal-1');
ROLLBACK TO s;
SELECT status FROM bank.transfer(999999, :aa, 1, 'steal-2');
ROLLBACK TO s;
SELECT status FROM bank.hold(:ba, :aa, 1, 'steal-3');
ROLLBACK TO s;
SELECT status FROM bank.capture(:hold_b);
ROLLBACK TO s;
SELECT status FROM bank.void(:hold_b);
ROLLBACK TO s;
SELECT status FROM bank.capture(999999);
ROLLBACK TO s;
SELECT name FROM bank.rename_account(:ba, 'mine now');
ROLLBACK TO s;
SELECT status FROM bank.close_account(:bb);
ROLLBACK TO s;
SELECT * FROM bank.list_accounts(:cb);
ROLLBACK TO s;
SELECT * FROM bank.list_accounts(999999);
ROLLBACK TO s;
SELECT id FROM bank.open_account('checking', 'for ben', 'USD', :cb);
ROLLBACK TO s;
-- staff functions are not theirs at all
SELECT status FROM bank.deposit(:aa, 1, 'self-deposit');
ROLLBACK TO s;
SELECT status FROM bank.freeze_account(:ba, 'spite');
ROLLBACK TO s;
SELECT * FROM bank.check_ledger();
ROLLBACK TO s;
-- their own: fine, and the transfer to B's account works (B's row stays unseen)
SELECT name, balance FROM bank.list_accounts();
SELECT status FROM bank.transfer(:aa, :ba, 2, 'pay-ben');
SELECT (bank.open_account('savings', 'ann savings', 'USD')).id IS NOT NULL AS opened;
SELECT count(*) AS accounts_seen FROM bank.accounts;
COMMIT;

-- customer idempotency keys are scoped to the customer
SELECT idempotency_scope = 'customer:' || :ca AS customer_scope
  FROM bank.transfers WHERE idempotency_key = 'pay-ben';

-- without a token a customer role can do nothing (PB041)
SET ROLE bank_customer;
SELECT id FROM bank.get_account(:aa);
SELECT status FROM bank.transfer(:aa, :ba, 1, 'no-token');
RESET ROLE;

-- a staff login acts for any customer; staff actions are audited
SET ROLE regress_rls_teller;
SELECT status FROM bank.freeze_account(:ba, 'fraud review');
SELECT status FROM bank.unfreeze_account(:ba, 'cleared');
SELECT status FROM bank.reverse((SELECT id FROM bank.transfers WHERE idempotency_key = 'pay-ben'),
								'customer request', 'rev-1');
SELECT name FROM bank.list_accounts(:ca) ORDER BY 1;
-- but not an admin's or a service's functions
SELECT status FROM bank.deposit(:aa, 1, 'teller-deposit');
RESET ROLE;
SELECT action, resource_type, resource_id = :'ba' AS on_ben, acting_role, session_role = current_user AS by_login
  FROM bank.audit_events WHERE action LIKE 'account.%' ORDER BY id;
SELECT action, acting_role FROM bank.audit_events WHERE action = 'transfer.reverse';

-- above pgbank.kyc_transfer_limit (1000) a customer needs KYC approval
-- (PB046, checked before funds); once approved, the funds check decides
BEGIN;
SET LOCAL ROLE bank_customer;
SELECT bank.authenticate(:'tok_a') IS NOT NULL AS authenticated;
SAVEPOINT s;
SELECT status FROM bank.transfer(:aa, :ba, 1000.01, 'kyc-1');
ROLLBACK TO s;
SELECT status FROM bank.transfer(:aa, :ba, 1000.00, 'kyc-2');
ROLLBACK;
UPDATE bank.customers SET kyc_status = 'approved' WHERE id = :ca;
BEGIN;
SET LOCAL ROLE bank_customer;
SELECT bank.authenticate(:'tok_a') IS NOT NULL AS authenticated;
SELECT status FROM bank.transfer(:aa, :ba, 1000.01, 'kyc-3');
ROLLBACK;

-- the ledger is whole
SELECT * FROM bank.check_ledger();

DROP ROLE regress_rls_teller, regress_rls_auditor, regress_rls_service, regress_rls_admin, regress_rls_nobody;
