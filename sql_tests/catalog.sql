-- Catalog lint: the security rules hold for every object of the extension
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pgbank CASCADE;
CREATE EXTENSION pgbank CASCADE;
\set VERBOSITY sqlstate

-- every table has row-level security enabled and forced (none listed)
SELECT c.relname AS table_without_forced_rls
  FROM pg_class c
 WHERE c.relnamespace = 'bank'::regnamespace AND c.relkind IN ('r', 'p')
   AND NOT (c.relrowsecurity AND c.relforcerowsecurity);

-- every view is security_invoker (none listed)
SELECT c.relname AS view_not_security_invoker
  FROM pg_class c
 WHERE c.relnamespace = 'bank'::regnamespace AND c.relkind = 'v'
   AND NOT coalesce('security_invoker=true' = ANY (c.reloptions), false);

-- every function pins search_path, except the nine that run no SQL (see
-- sql/pgbank.sql; spi.c refuses SQL under any other path); no SECURITY DEFINER
SELECT p.oid::regprocedure AS function_without_pinned_search_path, p.prosecdef
  FROM pg_proc p
 WHERE p.pronamespace = 'bank'::regnamespace
   AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false);

-- PUBLIC can execute no function (a NULL proacl means PUBLIC can) (none listed)
SELECT p.oid::regprocedure AS public_executable
  FROM pg_proc p
 WHERE p.pronamespace = 'bank'::regnamespace
   AND (p.proacl IS NULL OR EXISTS (SELECT FROM aclexplode(p.proacl) a WHERE a.grantee = 0));

-- PUBLIC can read nothing: tables, views, sequences, the schema (none listed)
SELECT c.relname AS public_readable
  FROM pg_class c
 WHERE c.relnamespace = 'bank'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
   AND (c.relacl IS NULL OR EXISTS (SELECT FROM aclexplode(c.relacl) a WHERE a.grantee = 0)
		OR EXISTS (SELECT FROM pg_attribute t, aclexplode(t.attacl) a
					WHERE t.attrelid = c.oid AND a.grantee = 0));
SELECT has_schema_privilege('public', 'bank', 'USAGE') AS public_uses_schema;

-- no table grants a write to an API role: writes go through functions; the
-- one exception is bank.risk_rules, configuration that admins edit directly
-- (under RLS, every change audited by its trigger)
SELECT c.relname, a.privilege_type, a.grantee::regrole
  FROM pg_class c, aclexplode(c.relacl) a
 WHERE c.relnamespace = 'bank'::regnamespace
   AND a.grantee <> 'bank_engine'::regrole AND a.grantee <> c.relowner
   AND a.privilege_type <> 'SELECT';

-- the roles: API groups cannot log in; the gateway logs in, inherits
-- nothing, and belongs to each API group; the engine cannot log in, bypasses
-- RLS, and has no members
SELECT rolname, rolcanlogin, rolinherit, rolbypassrls, rolsuper
  FROM pg_roles WHERE rolname LIKE 'bank\_%' ORDER BY rolname;
SELECT r.rolname AS gateway_member_of
  FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid
 WHERE m.member = 'bank_gateway'::regrole ORDER BY 1;
SELECT count(*) AS engine_members FROM pg_auth_members WHERE roleid = 'bank_engine'::regrole;

-- who may execute what: the whole matrix, so that any change of a grant
-- shows here (c customer, a anon, t teller, u auditor, s service, d admin,
-- g the gateway's own login, which inherits nothing)
SELECT p.proname,
	   concat_ws('',
		 CASE WHEN has_function_privilege('bank_anon', p.oid, 'EXECUTE') THEN 'a' END,
		 CASE WHEN has_function_privilege('bank_customer', p.oid, 'EXECUTE') THEN 'c' END,
		 CASE WHEN has_function_privilege('bank_teller', p.oid, 'EXECUTE') THEN 't' END,
		 CASE WHEN has_function_privilege('bank_auditor', p.oid, 'EXECUTE') THEN 'u' END,
		 CASE WHEN has_function_privilege('bank_service', p.oid, 'EXECUTE') THEN 's' END,
		 CASE WHEN has_function_privilege('bank_admin', p.oid, 'EXECUTE') THEN 'd' END,
		 CASE WHEN has_function_privilege('bank_gateway', p.oid, 'EXECUTE') THEN 'g' END) AS roles
  FROM pg_proc p
 WHERE p.pronamespace = 'bank'::regnamespace
 ORDER BY p.proname, p.oid::regprocedure::text;

-- a role outside the bank groups can call nothing of ours
CREATE ROLE regress_outsider;
SET ROLE regress_outsider;
SELECT bank.whoami();
SELECT count(*) FROM bank.currencies;
RESET ROLE;
DROP ROLE regress_outsider;

-- the secrets are superuser-only settings, hidden from other roles
SET ROLE bank_admin;
SHOW pgbank.jwt_secret;
SELECT current_setting('pgbank.master_key');
SELECT current_setting('pgbank.card_key');
SELECT count(*) AS listed FROM pg_settings
 WHERE name IN ('pgbank.jwt_secret', 'pgbank.master_key', 'pgbank.card_key');
SET pgbank.jwt_secret = 'attacker-chosen-secret-attacker-chosen';
RESET ROLE;
