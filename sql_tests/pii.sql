-- pii: personal data encrypted at rest under per-customer data keys, shown
-- in clear to the customer and masked to staff, erased by crypto-shredding,
-- exported as one JSON document.

\set VERBOSITY sqlstate
\pset null '<null>'
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pgbank CASCADE;
CREATE EXTENSION pgbank CASCADE;
DROP ROLE IF EXISTS regress_teller;
DROP ROLE IF EXISTS regress_admin;
CREATE ROLE regress_teller LOGIN IN ROLE bank_teller;
CREATE ROLE regress_admin LOGIN IN ROLE bank_admin;
RESET client_min_messages;

-- an access token for a customer, with a live session row of its own
-- (logins are another module's; this is what bank.login will hand out)
CREATE FUNCTION pg_temp.b64url(b bytea) RETURNS text LANGUAGE sql AS $$
	SELECT translate(rtrim(replace(encode(b, 'base64'), E'\n', ''), '='), '+/', '-_')
$$;
CREATE FUNCTION pg_temp.token(customer bigint) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	sid bigint;
	n bigint := extract(epoch FROM now())::bigint;
	h text := pg_temp.b64url(convert_to('{"alg":"HS256","typ":"JWT"}', 'UTF8'));
	p text;
BEGIN
	INSERT INTO bank.sessions (customer_id, expires_at)
	VALUES (customer, now() + interval '1 hour') RETURNING id INTO sid;
	p := pg_temp.b64url(convert_to(jsonb_build_object(
		'iss', 'pgbank', 'aud', 'pgbank-api', 'sub', customer::text, 'sid', sid::text,
		'role', 'bank_customer', 'iat', n, 'nbf', n, 'exp', n + 3600)::text, 'UTF8'));
	RETURN h || '.' || p || '.' ||
		pg_temp.b64url(hmac(h || '.' || p, current_setting('pgbank.jwt_secret'), 'sha256'));
END
$$;

SELECT bank.create_customer('alice@example.com', 'Alice', 'Archer') AS alice \gset
SELECT bank.create_customer('bob@example.com', 'Bob', 'Baker') AS bob \gset
SELECT bank.create_customer('carol@example.com', 'Carol', 'Cole') AS carol \gset
SELECT pg_temp.token(:alice) AS tok_a \gset
SELECT pg_temp.token(:bob) AS tok_b \gset

-- a new customer has no personal data and no data key yet
SELECT phone, national_id, address FROM bank.get_customer(:alice);
SELECT count(*) AS keys FROM bank.customer_keys;

-- staff (here the superuser) set personal data: returned masked, audited
-- with the names of the fields only
SELECT id = :alice AS is_alice, email, phone, national_id, address
  FROM bank.update_profile('+1 (555) 010-4477', 'CANARY-ID-123456789',
						   '12 Canary Wharf Road, London', :alice);
SELECT action, resource_type, resource_id = :'alice' AS is_alice, metadata,
       actor_customer, metadata::text ~ 'Canary|CANARY|555' AS leaks_values
  FROM bank.audit_events ORDER BY id;

-- stored columns are ciphertexts: no trace of the clear values in the raw bytes
SELECT position(convert_to('CANARY', 'UTF8') IN national_id) AS id_canary,
       position(convert_to('Canary', 'UTF8') IN address) AS address_canary,
       position(convert_to('4477', 'UTF8') IN phone) AS phone_canary
  FROM bank.customers WHERE id = :alice;

-- the data key is 32 random bytes wrapped under pgbank.master_key; with it
-- the ciphertext opens, with any other password it does not
SELECT length(pgp_sym_decrypt_bytea(wrapped_key, current_setting('pgbank.master_key'))) AS key_bytes,
       position(pgp_sym_decrypt_bytea(wrapped_key, current_setting('pgbank.master_key'))
				IN wrapped_key) AS key_in_clear
  FROM bank.customer_keys WHERE customer_id = :alice;
SELECT pgp_sym_decrypt(c.national_id,
					   encode(pgp_sym_decrypt_bytea(k.wrapped_key, current_setting('pgbank.master_key')), 'hex'))
	   AS national_id
  FROM bank.customers c JOIN bank.customer_keys k ON k.customer_id = c.id WHERE c.id = :alice;
SELECT pgp_sym_decrypt(national_id, 'not the key') FROM bank.customers WHERE id = :alice;
SELECT pgp_sym_decrypt(national_id, current_setting('pgbank.master_key'))
  FROM bank.customers WHERE id = :alice;

-- each customer has a key of their own
SELECT (bank.update_profile('07700 900123', 'B-998877', 'Flat 3, 221B Baker Street', :bob)).id = :bob AS is_bob;
SELECT count(DISTINCT pgp_sym_decrypt_bytea(wrapped_key, current_setting('pgbank.master_key'))) AS distinct_keys
  FROM bank.customer_keys;

-- bad values: PB023, and the message never holds the value
SELECT bank.update_profile('555-CANARY', NULL, NULL, :alice);
SELECT bank.update_profile('123', NULL, NULL, :alice);
SELECT bank.update_profile(repeat('1', 33), NULL, NULL, :alice);
SELECT bank.update_profile(NULL, '', NULL, :alice);
SELECT bank.update_profile(NULL, repeat('x', 65), NULL, :alice);
SELECT bank.update_profile(NULL, NULL, '', :alice);
SELECT bank.update_profile(NULL, NULL, repeat('é', 501), :alice);
\set VERBOSITY terse
SELECT bank.update_profile('555-CANARY', NULL, NULL, :alice);
\set VERBOSITY sqlstate
-- an unknown customer: PB021; staff must name the customer: PB022
SELECT bank.update_profile('555 0100', NULL, NULL, 999999);
SELECT bank.update_profile('555 0100', NULL, NULL);
SELECT bank.get_customer(999999);
SELECT bank.get_customer();

-- staff read masked personal data: a teller by role membership
SET ROLE regress_teller;
SELECT id = :alice AS is_alice, first_name, phone, national_id, address, erased_at
  FROM bank.get_customer(:alice);
SELECT phone, national_id, address FROM bank.get_customer(:bob);
-- a teller cannot read the ciphertexts or the keys themselves
SELECT phone FROM bank.customers WHERE id = :alice;
SELECT count(*) FROM bank.customer_keys;
RESET ROLE;

-- a customer reads their own personal data in clear, with or without their id
SET ROLE bank_customer;
BEGIN;
SELECT bank.authenticate(:'tok_a') = :alice AS authenticated;
SELECT id = :alice AS is_alice, email, first_name, last_name, phone, national_id, address,
       kyc_status, mfa_enabled, erased_at
  FROM bank.get_customer();
SELECT phone FROM bank.get_customer(:alice);
COMMIT;

-- another customer's id is PB021, exactly as for an id that does not exist
BEGIN;
SELECT bank.authenticate(:'tok_a') = :alice AS authenticated;
SELECT bank.get_customer(:bob);
ROLLBACK;
BEGIN;
SELECT bank.authenticate(:'tok_a') = :alice AS authenticated;
SELECT bank.get_customer(999999);
ROLLBACK;
BEGIN;
SELECT bank.authenticate(:'tok_a') = :alice AS authenticated;
SELECT bank.update_profile('555 0100', NULL, NULL, :bob);
ROLLBACK;

-- without a credential a customer role gets nothing (PB041)
SELECT bank.get_customer(:alice);

-- a customer updates their own data: NULL keeps a field; not audited
BEGIN;
SELECT bank.authenticate(:'tok_a') = :alice AS authenticated;
SELECT phone, national_id, address FROM bank.update_profile('+44 20 7946 0958', NULL, NULL);
COMMIT;
RESET ROLE;
SELECT count(*) AS audit_rows FROM bank.audit_events
 WHERE action = 'customer.update_profile' AND resource_id = :'alice';

-- a teller's change is audited: the teller's role, the fields, no values
SET ROLE regress_teller;
SELECT phone, national_id, address
  FROM bank.update_profile(NULL, 'AB1234567', 'Rue de la Paix 7', :alice);
-- (all NULL: nothing changes, nothing is audited)
SELECT (bank.update_profile(NULL, NULL, NULL, :alice)).national_id AS national_id;
RESET ROLE;
SELECT acting_role, action, resource_type, resource_id = :'alice' AS is_alice, metadata,
       metadata::text ~ 'AB12|Paix' AS leaks_values
  FROM bank.audit_events WHERE action = 'customer.update_profile' AND resource_id = :'alice'
 ORDER BY id;

-- masks of short, long and non-ASCII values
SELECT phone, national_id, address FROM bank.update_profile('12 34', 'ÉÀ12', 'Überweg   7', :carol);
SELECT phone, national_id, address FROM bank.update_profile('(0) 1234', 'ÉÀ12345', 'Å', :carol);

-- export_my_data: the customer's profile in clear, their accounts with
-- balances, the transfers of their accounts, their sessions and security
-- events; nothing of anyone else's
SELECT id AS a_chk FROM bank.open_account('checking', 'alice checking', 'USD', :alice) \gset
SELECT id AS a_sav FROM bank.open_account('savings', 'alice savings', 'EUR', :alice) \gset
SELECT id AS b_chk FROM bank.open_account('checking', 'bob checking', 'USD', :bob) \gset
SELECT status FROM bank.deposit(:a_chk, 100, 'pii-dep-a');
SELECT status FROM bank.deposit(:b_chk, 50, 'pii-dep-b');
SELECT status FROM bank.transfer(:a_chk, :b_chk, 12.5, 'pii-tr-ab');
SET ROLE bank_customer;
BEGIN;
SELECT bank.authenticate(:'tok_a') = :alice AS authenticated;
SELECT bank.export_my_data() AS export \gset
COMMIT;
RESET ROLE;
SELECT jsonb_object_keys(:'export'::jsonb) AS section ORDER BY 1;
SELECT e->'profile'->>'id' = :'alice' AS is_alice, e->'profile'->>'email' AS email,
       e->'profile'->>'phone' AS phone, e->'profile'->>'national_id' AS national_id,
       e->'profile'->>'address' AS address
  FROM (SELECT :'export'::jsonb AS e) x;
SELECT a->>'id' = :'a_chk' AS is_a_chk, a->>'customer_id' = :'alice' AS alices, a->>'type' AS type,
       a->>'currency' AS currency, a->>'balance' AS balance, a->>'available' AS available
  FROM jsonb_array_elements(:'export'::jsonb->'accounts') a;
SELECT t->>'kind' AS kind, t->>'status' AS status, t->>'amount' AS amount,
       t->>'to_account' = :'b_chk' AS to_bob, t->>'idempotency_key' AS idempotency_key
  FROM jsonb_array_elements(:'export'::jsonb->'transfers') t;
SELECT count(*) AS sessions, count(*) FILTER (WHERE s->>'revoked_at' IS NULL) AS live,
       bool_and(s ? 'expires_at' AND s ? 'last_seen_at' AND s ? 'revoked_reason') AS all_columns
  FROM jsonb_array_elements(:'export'::jsonb->'sessions') s;
SELECT count(*) = (SELECT count(*) FROM bank.sessions WHERE customer_id = :alice) AS all_own_sessions
  FROM jsonb_array_elements(:'export'::jsonb->'sessions') s
 WHERE (s->>'id')::bigint IN (SELECT id FROM bank.sessions WHERE customer_id = :alice);
SELECT jsonb_array_length(:'export'::jsonb->'security_events') AS security_events;
SELECT :'export' ~* 'bob|baker|07700|998877|221B' AS mentions_bob;
-- the export is audited, and the customer sees that among their security events
SELECT action, resource_type, actor_customer = :alice AS by_alice
  FROM bank.audit_events WHERE action = 'customer.export';
SET ROLE bank_customer;
BEGIN;
SELECT bank.authenticate(:'tok_a') = :alice AS authenticated;
SELECT jsonb_path_query(bank.export_my_data(), '$.security_events[*].action') AS event;
ROLLBACK;
RESET ROLE;

-- only a customer exports, their own data: staff get 42501
SELECT bank.export_my_data();
SET ROLE regress_teller;
SELECT bank.export_my_data();
RESET ROLE;

-- without the master key nothing is encrypted or decrypted: a clear error
-- that names the setting; a wrong master key is a clear error too
SET pgbank.master_key = '';
SELECT bank.get_customer(:alice);
\set VERBOSITY terse
SELECT bank.get_customer(:alice);
\set VERBOSITY sqlstate
SELECT bank.update_profile('555 0100', NULL, NULL, :alice);
SELECT bank.update_profile('555 0100', NULL, NULL, :carol);
SET pgbank.master_key = 'a master key that is long enough but not the right one';
SELECT bank.get_customer(:alice);
\set VERBOSITY terse
SELECT bank.get_customer(:alice);
\set VERBOSITY sqlstate
RESET pgbank.master_key;
-- a customer without personal data needs no key at all
SET pgbank.master_key = '';
SELECT bank.create_customer('dave@example.com', 'Dave', 'Dunn') AS dave \gset
SELECT phone, national_id, address FROM bank.get_customer(:dave);
RESET pgbank.master_key;

-- erase_customer: admin only (tellers have no EXECUTE); arguments required
SET ROLE regress_teller;
SELECT bank.erase_customer(:alice, 'gdpr request');
RESET ROLE;
SELECT bank.erase_customer(:alice, NULL);
SELECT bank.erase_customer(NULL, 'gdpr request');
SELECT bank.erase_customer(:alice, '');
SELECT bank.erase_customer(999999, 'gdpr request');

-- erasure: the data key is destroyed, credentials and names removed,
-- sessions revoked; accounts, balances and the ledger untouched
CREATE TEMP TABLE balances_before AS
SELECT id, balance, available FROM bank.account_balances WHERE customer_id IN (:alice, :bob);
SELECT count(*) AS transfers_before FROM bank.transfers \gset
SET ROLE regress_admin;
SELECT bank.erase_customer(:alice, 'gdpr request "art. 17"');
RESET ROLE;
SELECT count(*) AS alice_keys FROM bank.customer_keys WHERE customer_id = :alice;
SELECT count(*) AS bob_keys FROM bank.customer_keys WHERE customer_id = :bob;
SELECT email = 'erased-' || id || '@erased.invalid' AS email_erased, first_name, last_name,
       password_hash, mfa_enabled, mfa_secret, mfa_pending_secret, erased_at IS NOT NULL AS erased,
       phone IS NOT NULL AND national_id IS NOT NULL AND address IS NOT NULL AS ciphertexts_kept
  FROM bank.customers WHERE id = :alice;
SELECT count(*) AS sessions, count(*) FILTER (WHERE revoked_reason = 'erased') AS revoked
  FROM bank.sessions WHERE customer_id = :alice;
SELECT count(*) FILTER (WHERE revoked_at IS NULL) AS bob_live_sessions
  FROM bank.sessions WHERE customer_id = :bob;
SELECT count(*) AS accounts, count(*) FILTER (WHERE (b.balance, b.available) = (o.balance, o.available)) AS unchanged
  FROM bank.account_balances b JOIN balances_before o USING (id);
SELECT count(*) = :transfers_before AS transfers_kept FROM bank.transfers;
SELECT * FROM bank.check_ledger();
SELECT acting_role, action, resource_type, resource_id = :'alice' AS is_alice, metadata
  FROM bank.audit_events WHERE action = 'customer.erase';

-- personal data is gone for everyone: NULL to staff, and no key opens it
SELECT id = :alice AS is_alice, email = 'erased-' || :alice || '@erased.invalid' AS email_erased,
       first_name, phone, national_id, address, erased_at IS NOT NULL AS erased
  FROM bank.get_customer(:alice);
SELECT pgp_sym_decrypt(national_id, current_setting('pgbank.master_key'))
  FROM bank.customers WHERE id = :alice;
-- Bob's data is untouched
SELECT phone, national_id, address FROM bank.get_customer(:bob);

-- the old token no longer authenticates (its session was revoked): PB040
SET ROLE bank_customer;
BEGIN;
SELECT bank.authenticate(:'tok_a');
ROLLBACK;
RESET ROLE;

-- a second erasure changes nothing and is not audited again
SELECT erased_at AS erased_at_1 FROM bank.customers WHERE id = :alice \gset
SELECT bank.erase_customer(:alice, 'again');
SELECT erased_at = :'erased_at_1' AS unchanged FROM bank.customers WHERE id = :alice;
SELECT count(*) AS erase_events FROM bank.audit_events WHERE action = 'customer.erase';

-- personal data of an erased customer can never be written again: PB049
SELECT bank.update_profile('555 0100', NULL, NULL, :alice);
SELECT bank.update_profile(NULL, NULL, NULL, :alice);
SET ROLE regress_teller;
SELECT bank.update_profile(NULL, 'NEW-ID', NULL, :alice);
RESET ROLE;
DROP ROLE regress_teller, regress_admin;
