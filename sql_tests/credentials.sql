-- credentials: registration, password policy, logins (failures, lockout),
-- TOTP, refresh token rotation and reuse detection, logout, password
-- changes, KYC status, API keys, and the audit trail they leave.

\set VERBOSITY sqlstate
\pset null '<null>'
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pgbank CASCADE;
CREATE EXTENSION pgbank CASCADE;
RESET client_min_messages;
SET pgbank.bcrypt_cost = 4;
SET pgbank.max_failed_logins = 3;
SET pgbank.lockout_duration = 1;

-- register (anonymous): the email is trimmed and lower-cased; the password
-- is stored as bcrypt of the configured cost, never in clear
SET ROLE bank_anon;
SELECT bank.register('  Alice@Example.COM ', 'correct horse battery', 'Alice', 'Archer') AS alice \gset
SELECT bank.register(E'\tbob@example.org', 'bob''s long password', 'Bob', 'Baker', '+1 555 0100') AS bob \gset
RESET ROLE;
SELECT id = :alice AS is_alice, email, kyc_status, password_hash ~ '^\$2a\$04\$' AS bcrypt_cost_4,
       strpos(password_hash, 'horse') = 0 AS not_clear, failed_logins, mfa_enabled
  FROM bank.customers ORDER BY id;

-- a taken email, whatever its case and spacing: PB024
SET ROLE bank_anon;
SELECT bank.register('alice@example.com', 'another long password', 'A', 'B');
SELECT bank.register(' ALICE@EXAMPLE.COM', 'another long password', 'A', 'B');

-- weak passwords: PB045 (under 12 characters, over 1000, or the email)
SELECT bank.register('carol@example.com', 'short', 'Carol', 'C');
SELECT bank.register('carol@example.com', repeat('x', 11), 'Carol', 'C');
SELECT bank.register('carol@example.com', repeat('x', 1001), 'Carol', 'C');
SELECT bank.register('carol@example.com', 'carol@example.com', 'Carol', 'C');
SELECT bank.register(' Carol@Example.com', 'CAROL@EXAMPLE.COM', 'Carol', 'C');

-- passwords are counted in characters: 12 two-byte characters are enough
SELECT bank.register('dave@example.com', repeat('é', 12), 'Dave', 'D') > 0 AS registered;

-- invalid emails and names: PB023; NULL arguments: PB022
SELECT bank.register('no-at-sign.example.com', 'long enough password', 'X', 'Y');
SELECT bank.register('x y@example.com', 'long enough password', 'X', 'Y');
SELECT bank.register('carol@example.com', 'long enough password', '', 'Y');
SELECT bank.register(NULL, 'long enough password', 'X', 'Y');
SELECT bank.register('carol@example.com', NULL, 'X', 'Y');
SELECT bank.register('carol@example.com', 'long enough password', 'X', NULL);
RESET ROLE;
SELECT count(*) AS customers FROM bank.customers;

-- bcrypt reads 72 bytes: the pre-hash makes a difference after them count
SELECT bank.register('long@example.com', repeat('a', 80) || 'X', 'Long', 'L') AS long \gset
SELECT status FROM bank.login('long@example.com', repeat('a', 80) || 'Y');
SELECT status FROM bank.login('long@example.com', repeat('a', 80) || 'X');

-- login: ok issues an access token, a refresh token and their expiries
SET ROLE bank_anon;
SELECT status, customer_id = :alice AS is_alice, access_token ~ '^[\w-]+\.[\w-]+\.[\w-]+$' AS jwt,
       length(refresh_token) AS refresh_chars,
       expires_at - now() BETWEEN interval '4 min' AND interval '6 min' AS access_5_min,
       refresh_expires_at - now() BETWEEN interval '29 days' AND interval '31 days' AS refresh_30_days
  FROM bank.login(' ALICE@example.com', 'correct horse battery');

-- a wrong password and an unknown email give the same answer: denied,
-- nothing issued
SELECT * FROM bank.login('alice@example.com', 'wrong horse battery');
SELECT * FROM bank.login('nobody@example.com', 'wrong horse battery');
SELECT a IS NOT DISTINCT FROM b AS identical
  FROM bank.login('alice@example.com', 'wrong horse battery') a,
       bank.login('nobody@example.com', 'wrong horse battery') b;

-- malformed input raises: NULL (PB022), too long (PB023)
SELECT status FROM bank.login(NULL, 'x');
SELECT status FROM bank.login('alice@example.com', NULL);
SELECT status FROM bank.login(repeat('a', 300) || '@example.com', 'x');
SELECT status FROM bank.login('alice@example.com', repeat('x', 1001));
SELECT status FROM bank.login('alice@example.com', 'x', repeat('1', 17));
RESET ROLE;

-- failures are counted (they commit although login returns normally)
SELECT failed_logins FROM bank.customers WHERE id = :alice;

-- a success resets the counter
SELECT status FROM bank.login('alice@example.com', 'correct horse battery');
SELECT failed_logins FROM bank.customers WHERE id = :alice;

-- three failures in a row lock the customer out, even with the right
-- password; the counter starts again
SELECT status FROM bank.login('bob@example.org', 'wrong password 1');
SELECT status FROM bank.login('bob@example.org', 'wrong password 2');
SELECT failed_logins, locked_until IS NULL AS unlocked FROM bank.customers WHERE id = :bob;
SELECT status FROM bank.login('bob@example.org', 'wrong password 3');
SELECT failed_logins, locked_until > now() AS locked FROM bank.customers WHERE id = :bob;
SELECT status FROM bank.login('bob@example.org', 'bob''s long password');

-- the lockout ends after pgbank.lockout_duration (1 s here)
SELECT pg_sleep(1.2);
SELECT status FROM bank.login('bob@example.org', 'bob''s long password');
SELECT failed_logins, locked_until IS NULL AS unlocked FROM bank.customers WHERE id = :bob;

-- RFC 6238 test vectors (SHA-1, secret "12345678901234567890")
SELECT t, bank.totp_code('GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ', to_timestamp(t), 8) AS code
  FROM unnest(ARRAY[59, 1111111109, 1111111111, 1234567890, 2000000000, 20000000000]) t;
SELECT bank.totp_code('gezdgnbvgy3tqojqgezdgnbvgy3tqojq', to_timestamp(59)) AS six_digits;
SELECT bank.totp_code('not base32!', to_timestamp(59));
SELECT bank.totp_code('GEZDGNBVGY3TQOJQ', to_timestamp(59), 9);

-- totp_code is for superusers only
SET ROLE bank_customer;
SELECT bank.totp_code('GEZDGNBVGY3TQOJQ');
RESET ROLE;

-- MFA enrolment: a 20-byte secret in base32 and its otpauth URI
SET pgbank.max_failed_logins = 10;
SELECT access_token AS tok FROM bank.login('alice@example.com', 'correct horse battery') \gset
SET ROLE bank_customer;
BEGIN;
SELECT bank.authenticate(:'tok') = :alice AS authenticated;
SELECT secret AS sec, otpauth_uri AS uri FROM bank.mfa_enroll() \gset
COMMIT;
RESET ROLE;
SELECT length(:'sec') AS secret_chars, :'sec' ~ '^[A-Z2-7]{32}$' AS base32,
       :'uri' = 'otpauth://totp/pgbank:alice@example.com?secret=' || :'sec'
                || '&issuer=pgbank&algorithm=SHA1&digits=6&period=30' AS uri_ok;
SELECT mfa_enabled, mfa_pending_secret IS NOT NULL AS pending,
       strpos(encode(mfa_pending_secret, 'escape'), :'sec') = 0 AS encrypted
  FROM bank.customers WHERE id = :alice;

-- codes of the previous, current and next 30 s steps
SELECT bank.totp_code(:'sec', now() - interval '30 s') AS c_prev,
       bank.totp_code(:'sec', now()) AS c_now,
       bank.totp_code(:'sec', now() + interval '30 s') AS c_next \gset
SELECT lpad(((:'c_now'::int + 1) % 1000000)::text, 6, '0') AS c_bad \gset

-- confirming: a wrong code is PB047; a right one turns MFA on
SET ROLE bank_customer;
BEGIN;
SELECT bank.authenticate(:'tok') = :alice AS authenticated;
SELECT bank.mfa_confirm(:'c_bad');
ROLLBACK;
BEGIN;
SELECT bank.authenticate(:'tok') = :alice AS authenticated;
SELECT bank.mfa_confirm(:'c_prev');
COMMIT;
-- enrolling again while on, or confirming with nothing pending: PB048
BEGIN;
SELECT bank.authenticate(:'tok') = :alice AS authenticated;
SELECT bank.mfa_enroll();
ROLLBACK;
BEGIN;
SELECT bank.authenticate(:'tok') = :alice AS authenticated;
SELECT bank.mfa_confirm(:'c_now');
ROLLBACK;
RESET ROLE;
SELECT mfa_enabled, mfa_secret IS NOT NULL AS has_secret, mfa_pending_secret IS NULL AS no_pending
  FROM bank.customers WHERE id = :alice;

-- login with MFA on: the password alone gives mfa_required (not a failure)
SELECT * FROM bank.login('alice@example.com', 'correct horse battery');
SELECT failed_logins FROM bank.customers WHERE id = :alice;
-- a wrong password with a right code is still denied
SELECT status FROM bank.login('alice@example.com', 'wrong horse battery', :'c_now');
-- a code from a step already used (the one confirmed), or a wrong code: denied
SELECT status FROM bank.login('alice@example.com', 'correct horse battery', :'c_prev');
SELECT status FROM bank.login('alice@example.com', 'correct horse battery', :'c_bad');
SELECT status FROM bank.login('alice@example.com', 'correct horse battery', 'abcdef');
-- the current code is accepted once, and refused when replayed
SELECT status FROM bank.login('alice@example.com', 'correct horse battery', :'c_now');
SELECT status FROM bank.login('alice@example.com', 'correct horse battery', :'c_now');
SELECT failed_logins FROM bank.customers WHERE id = :alice;

-- disabling MFA needs a fresh code: a used one is PB047
SET ROLE bank_customer;
BEGIN;
SELECT bank.authenticate(:'tok') = :alice AS authenticated;
SELECT bank.mfa_disable(:'c_now');
ROLLBACK;
BEGIN;
SELECT bank.authenticate(:'tok') = :alice AS authenticated;
SELECT bank.mfa_disable(:'c_next');
COMMIT;
-- and once off, disabling again is PB048
BEGIN;
SELECT bank.authenticate(:'tok') = :alice AS authenticated;
SELECT bank.mfa_disable(:'c_next');
ROLLBACK;
RESET ROLE;
SELECT status FROM bank.login('alice@example.com', 'correct horse battery');
SELECT mfa_enabled, mfa_secret IS NULL AS no_secret FROM bank.customers WHERE id = :alice;
SET pgbank.max_failed_logins = 3;

-- refresh: each refresh token gives a new pair; the session stays the same
SELECT access_token AS tok1, refresh_token AS rt1 FROM bank.login('alice@example.com', 'correct horse battery') \gset
SELECT max(id) AS sess FROM bank.sessions \gset
SET ROLE bank_anon;
SELECT access_token AS tok2, refresh_token AS rt2 FROM bank.refresh(:'rt1') \gset
SELECT access_token AS tok3, refresh_token AS rt3 FROM bank.refresh(:'rt2') \gset
SELECT :'rt1' <> :'rt2' AND :'rt2' <> :'rt3' AS rotated, :'tok2' <> :'tok3' AS new_access;
RESET ROLE;
SELECT count(*) AS tokens, count(used_at) AS used, bool_and(session_id = :sess) AS same_session
  FROM bank.refresh_tokens WHERE session_id = :sess;
SELECT count(*) AS stored_in_clear FROM bank.refresh_tokens
 WHERE token_hash IN (convert_to(:'rt1', 'UTF8'), convert_to(:'rt3', 'UTF8'));
SET ROLE bank_customer;
BEGIN;
SELECT bank.authenticate(:'tok3') = :alice AS newest_works;
COMMIT;

-- an unknown token: denied; NULL: PB022
SET ROLE bank_anon;
SELECT * FROM bank.refresh('no such token');
SELECT * FROM bank.refresh(NULL);

-- reusing an old refresh token revokes the whole session: the newest
-- refresh token and the access tokens stop working
SELECT status FROM bank.refresh(:'rt1');
SELECT status FROM bank.refresh(:'rt3');
RESET ROLE;
SELECT revoked_reason FROM bank.sessions WHERE id = :sess;
SET ROLE bank_customer;
SELECT bank.authenticate(:'tok3');
SELECT bank.authenticate(:'tok1');
RESET ROLE;

-- a session not refreshed for pgbank.idle_timeout has ended
SELECT refresh_token AS rt FROM bank.login('alice@example.com', 'correct horse battery') \gset
SELECT max(id) AS sess FROM bank.sessions \gset
UPDATE bank.sessions SET last_seen_at = now() - interval '1 hour' WHERE id = :sess;
SELECT status FROM bank.refresh(:'rt');
SELECT revoked_reason FROM bank.sessions WHERE id = :sess;

-- logout: the access token and the refresh token stop working at once
SELECT access_token AS tok, refresh_token AS rt FROM bank.login('alice@example.com', 'correct horse battery') \gset
SET ROLE bank_customer;
BEGIN;
SELECT bank.authenticate(:'tok') = :alice AS authenticated;
SELECT bank.logout();
COMMIT;
SELECT bank.authenticate(:'tok');
-- without a token, logout is PB041
SELECT bank.logout();
RESET ROLE;
SET ROLE bank_anon;
SELECT status FROM bank.refresh(:'rt');
-- anonymous callers may not call logout at all
SELECT bank.logout();
RESET ROLE;

-- end_session: a browser logs out with its refresh token (its access token
-- may have expired): the session ends, audited; an already used refresh
-- token of the session ends it too, as a reuse (someone kept a copy); NULL,
-- an unknown token and a second call do nothing
SELECT refresh_token AS rt1 FROM bank.login('alice@example.com', 'correct horse battery') \gset
SELECT access_token AS tok2, refresh_token AS rt2 FROM bank.refresh(:'rt1') \gset
SELECT count(*) AS logouts_before FROM bank.audit_events WHERE action = 'auth.logout' \gset
SET ROLE bank_anon;
SELECT bank.end_session(NULL);
SELECT bank.end_session('no such token');
SELECT bank.end_session(:'rt1');
SELECT status FROM bank.refresh(:'rt2');
SELECT bank.end_session(:'rt2');
RESET ROLE;
SELECT revoked_reason FROM bank.sessions s JOIN bank.refresh_tokens r ON r.session_id = s.id
 WHERE r.token_hash = digest(:'rt2', 'sha256');
SELECT count(*) - :logouts_before AS new_logouts FROM bank.audit_events WHERE action = 'auth.logout';
SET ROLE bank_customer;
SELECT bank.authenticate(:'tok2');
RESET ROLE;
-- the current refresh token: an ordinary logout
SELECT refresh_token AS rt3 FROM bank.login('alice@example.com', 'correct horse battery') \gset
SET ROLE bank_anon;
SELECT bank.end_session(:'rt3');
RESET ROLE;
SELECT revoked_reason FROM bank.sessions s JOIN bank.refresh_tokens r ON r.session_id = s.id
 WHERE r.token_hash = digest(:'rt3', 'sha256');
SELECT count(*) - :logouts_before AS new_logouts FROM bank.audit_events WHERE action = 'auth.logout';

-- change_password: the old password must match (28P01), the new one meet
-- the policy (PB045); the customer's other sessions end, this one stays
SELECT access_token AS tok_a FROM bank.login('alice@example.com', 'correct horse battery') \gset
SELECT access_token AS tok_b FROM bank.login('alice@example.com', 'correct horse battery') \gset
SET ROLE bank_customer;
BEGIN;
SELECT bank.authenticate(:'tok_a') = :alice AS authenticated;
SELECT bank.change_password('wrong horse battery', 'a new long password');
ROLLBACK;
BEGIN;
SELECT bank.authenticate(:'tok_a') = :alice AS authenticated;
SELECT bank.change_password('correct horse battery', 'short');
ROLLBACK;
BEGIN;
SELECT bank.authenticate(:'tok_a') = :alice AS authenticated;
SELECT bank.change_password('correct horse battery', 'Alice@Example.com');
ROLLBACK;
BEGIN;
SELECT bank.authenticate(:'tok_a') = :alice AS authenticated;
SELECT bank.change_password(NULL, 'a new long password');
ROLLBACK;
BEGIN;
SELECT bank.authenticate(:'tok_a') = :alice AS authenticated;
SELECT bank.change_password('correct horse battery', 'a new long password');
COMMIT;
BEGIN;
SELECT bank.authenticate(:'tok_a') = :alice AS this_session_stays;
COMMIT;
SELECT bank.authenticate(:'tok_b');
RESET ROLE;
SELECT count(*) AS live_sessions FROM bank.sessions WHERE customer_id = :alice AND revoked_at IS NULL;
SELECT status FROM bank.login('alice@example.com', 'correct horse battery');
SELECT status FROM bank.login('alice@example.com', 'a new long password');

-- set_kyc_status (staff): returns the new status; unknown customer PB021,
-- bad reason PB023, NULL PB022
SELECT bank.set_kyc_status(:alice, 'approved', 'documents checked');
SELECT kyc_status, kyc_updated_at IS NOT NULL AS updated FROM bank.customers WHERE id = :alice;
SELECT bank.set_kyc_status(999999, 'approved', 'documents checked');
SELECT bank.set_kyc_status(:alice, 'rejected', '');
SELECT bank.set_kyc_status(:alice, 'rejected', repeat('r', 501));
SELECT bank.set_kyc_status(:alice, NULL, 'documents checked');
-- customers may not
SELECT access_token AS tok FROM bank.login('alice@example.com', 'a new long password') \gset
SET ROLE bank_customer;
BEGIN;
SELECT bank.authenticate(:'tok') = :alice AS authenticated;
SELECT bank.set_kyc_status(:alice, 'approved', 'self service');
ROLLBACK;
RESET ROLE;

-- API keys: "pbk_" and 32 characters, shown once; stored as a hash and a
-- 12-character prefix
SELECT id AS kid, api_key AS key
  FROM bank.create_api_key('bank_teller', ARRAY['set_kyc_status'], now() + interval '30 days', 'kyc bot') \gset
SELECT :'key' ~ '^pbk_[A-Za-z0-9_-]{32}$' AS key_format;
SELECT id = :kid AS is_kid, name, role, scopes, prefix = left(:'key', 12) AS prefix_ok,
       expires_at - now() BETWEEN interval '29 days' AND interval '31 days' AS expires_ok, revoked_at
  FROM bank.list_api_keys();
SELECT count(*) AS stored_in_clear FROM bank.api_keys WHERE secret_hash = convert_to(:'key', 'UTF8');

-- a key works for its role and within its scopes
SET ROLE bank_teller;
BEGIN;
SELECT bank.authenticate_api_key(:'key') = :kid AS authenticated;
SELECT bank.set_kyc_status(:bob, 'in_review', 'by the kyc bot');
SELECT kind, api_key_id = :kid AS is_kid FROM bank.whoami();
COMMIT;
RESET ROLE;
SELECT kyc_status FROM bank.customers WHERE id = :bob;

-- a function outside the key's scopes: 42501
SELECT id AS kid2, api_key AS key2
  FROM bank.create_api_key('bank_admin', ARRAY['list_api_keys'], now() + interval '1 day') \gset
SET ROLE bank_admin;
BEGIN;
SELECT bank.authenticate_api_key(:'key2') = :kid2 AS authenticated;
SELECT count(*) > 0 AS listed FROM bank.list_api_keys();
SELECT bank.revoke_api_key(:kid);
ROLLBACK;
RESET ROLE;

-- the key's role only: PB042
SET ROLE bank_auditor;
BEGIN;
SELECT bank.authenticate_api_key(:'key');
ROLLBACK;
RESET ROLE;

-- bad requests: PB023 (role, scopes, expiry, name), PB022 (NULLs)
SELECT id FROM bank.create_api_key('bank_customer', ARRAY['*'], now() + interval '1 day');
SELECT id FROM bank.create_api_key('pgbank', ARRAY['*'], now() + interval '1 day');
SELECT id FROM bank.create_api_key('bank_teller', ARRAY['create_api_key'], now() + interval '1 day');
SELECT id FROM bank.create_api_key('bank_teller', ARRAY['no_such_function'], now() + interval '1 day');
SELECT id FROM bank.create_api_key('bank_teller', ARRAY[]::text[], now() + interval '1 day');
SELECT id FROM bank.create_api_key('bank_teller', ARRAY['*', NULL], now() + interval '1 day');
SELECT id FROM bank.create_api_key('bank_teller', ARRAY['*'], now() - interval '1 s');
SELECT id FROM bank.create_api_key('bank_teller', ARRAY['*'], now() + interval '1 year 1 day');
SELECT id FROM bank.create_api_key('bank_teller', ARRAY['*'], now() + interval '1 day', '');
SELECT id FROM bank.create_api_key('bank_teller', NULL, now() + interval '1 day');
SELECT count(*) AS keys FROM bank.api_keys;

-- revoked keys stop working (PB043); revoking is idempotent; unknown: PB050
SELECT bank.revoke_api_key(:kid);
SELECT bank.revoke_api_key(:kid);
SELECT bank.revoke_api_key(999999);
SELECT name, revoked_at IS NOT NULL AS revoked FROM bank.list_api_keys() WHERE id = :kid;
SET ROLE bank_teller;
BEGIN;
SELECT bank.authenticate_api_key(:'key');
ROLLBACK;
BEGIN;
SELECT bank.authenticate_api_key('pbk_unknown');
ROLLBACK;
RESET ROLE;

-- expired keys: PB043
SELECT api_key AS key3
  FROM bank.create_api_key('bank_teller', ARRAY['*'], clock_timestamp() + interval '1 s') \gset
SELECT pg_sleep(1.2);
SET ROLE bank_teller;
BEGIN;
SELECT bank.authenticate_api_key(:'key3');
ROLLBACK;
RESET ROLE;

-- customers and tellers may not manage keys
SET ROLE bank_teller;
SELECT * FROM bank.list_api_keys();
RESET ROLE;

-- the audit trail: the actions, by resource
SELECT action, resource_type, count(*) AS n, count(actor_customer) AS with_customer
  FROM bank.audit_events GROUP BY action, resource_type ORDER BY action, resource_type;
SELECT metadata FROM bank.audit_events WHERE action IN ('auth.login_failed', 'auth.lockout')
 GROUP BY metadata ORDER BY metadata::text;
SELECT metadata FROM bank.audit_events WHERE action IN ('customer.kyc_status', 'api_key.create')
 ORDER BY id;

-- and never a password, token, code, key, email or phone (looked for in
-- every text column, not in the time, id or xid, where digits like 555 or a
-- six-digit code occur by chance)
SELECT count(*) AS leaks
  FROM bank.audit_events e,
	   LATERAL (SELECT concat_ws('|', e.action, e.resource_type, e.resource_id, e.metadata,
								 e.request_id, e.client_addr, e.user_agent, e.acting_role,
								 e.session_role) AS t) x
 WHERE x.t ~* '(horse|password [0-9]|long password|@|555|pbk_)'
    OR strpos(x.t, :'sec') > 0
    OR strpos(x.t, :'rt1') > 0 OR strpos(x.t, :'tok1') > 0
    OR strpos(x.t, substr(:'key', 5)) > 0 OR strpos(x.t, substr(:'key2', 5)) > 0
    OR e.metadata::text ~ '[0-9]{6}';
