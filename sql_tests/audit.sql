-- The audit trail: what is recorded, atomicity, immutability, the hash
-- chains against every kind of tampering, anchors, retention, who reads what
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pgbank CASCADE;
CREATE EXTENSION pgbank CASCADE;
\set VERBOSITY sqlstate
SET pgbank.bcrypt_cost = 4;

CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN sqlstate;
END $$;

-- the chains verify from the start (no rows, every head at zero)
SELECT count(*) AS problems FROM bank.audit_verify();

--
-- Every mutation is one audit row, written with it
--
SELECT bank.create_customer('ann@example.com', 'Ann', 'A') AS ca \gset
SELECT bank.create_customer('ben@example.com', 'Ben', 'B') AS cb \gset
SELECT id AS aa FROM bank.open_account('checking', 'ann', 'USD', :ca) \gset
SELECT id AS ab FROM bank.open_account('savings', 'ann 2', 'USD', :ca) \gset
SELECT id AS ba FROM bank.open_account('checking', 'ben', 'USD', :cb) \gset
SELECT bank.set_request_context('req-1', '192.0.2.7', 'audit-test/1.0');
SELECT status FROM bank.deposit(:aa, 100, 'au-1');
SELECT status FROM bank.transfer(:aa, :ba, 10, 'au-2');
SELECT status FROM bank.transfer(:aa, :ba, 10, 'au-2');		-- a replay: no new row
SELECT id AS h1 FROM bank.hold(:aa, :ba, 5, 'au-3') \gset
SELECT status FROM bank.capture(:h1, 4);
SELECT status FROM bank.capture(:h1, 4);					-- the same capture again: no row
SELECT id AS h2 FROM bank.hold(:aa, :ba, 3, 'au-4') \gset
SELECT status FROM bank.void(:h2);
SELECT status FROM bank.withdraw(:aa, 1, 'au-5');
SELECT id AS t6 FROM bank.transfer(:aa, :ab, 2, 'au-6') \gset
SELECT status FROM bank.reverse(:t6, 'customer asked', 'au-7');
SELECT name FROM bank.rename_account(:ab, 'ann savings');
SELECT status FROM bank.freeze_account(:ba, 'review');
SELECT status FROM bank.unfreeze_account(:ba, 'cleared');
SELECT bank.set_kyc_status(:cb, 'approved', 'documents seen');
-- a decline commits on its own (recorded by a worker), with its audit row
SELECT pg_temp.try($$SELECT bank.transfer($$ || :aa || $$, $$ || :ba || $$, 500, 'au-8')$$);
SELECT status FROM bank.close_account(:ab);

SELECT action, resource_type,
	   resource_id = CASE WHEN resource_type = 'account' THEN :'ab' END AS on_ab,
	   metadata - 'from' - 'to' AS metadata
  FROM bank.audit_events ORDER BY id;

-- who and from where: the superuser's own login, the request context set
-- above (cleared at the end of each statement's transaction)
SELECT DISTINCT acting_role = current_user AS by_me, session_role = current_user AS logged_in_as_me,
	   actor_customer, api_key_id FROM bank.audit_events;
SELECT request_id, client_addr, user_agent, xid = xid AS has_xid
  FROM bank.audit_events WHERE action = 'deposit.create';
BEGIN;
SELECT bank.set_request_context('req-2', '2001:db8::1', 'audit-test/2.0');
SELECT status FROM bank.deposit(:aa, 1, 'au-10');
SELECT status FROM bank.deposit(:ba, 1, 'au-11');
COMMIT;
SELECT request_id, client_addr, user_agent, count(*), count(DISTINCT xid) AS transactions
  FROM bank.audit_events WHERE id > (SELECT max(id) - 2 FROM bank.audit_events)
 GROUP BY 1, 2, 3;

--
-- Atomic with the action: rolled back, no row; committed, exactly one
--
SELECT count(*) AS before FROM bank.audit_events \gset
BEGIN;
SELECT status FROM bank.deposit(:aa, 1, 'au-rb-1');
SELECT count(*) - :before AS inside FROM bank.audit_events;
ROLLBACK;
BEGIN;
SELECT status FROM bank.deposit(:aa, 1, 'au-rb-2');
SAVEPOINT s;
SELECT status FROM bank.deposit(:aa, 1, 'au-rb-3');
ROLLBACK TO SAVEPOINT s;
SELECT status FROM bank.deposit(:aa, 1, 'au-rb-4');
COMMIT;
-- a call that fails after writing leaves nothing either
BEGIN;
SELECT status FROM bank.deposit(:aa, 1, 'au-rb-5');
SELECT pg_temp.try($$SELECT bank.close_account($$ || :aa || $$)$$);
ROLLBACK;
SELECT count(*) - :before AS added FROM bank.audit_events;
SELECT array_agg(t.idempotency_key ORDER BY e.id) AS keys
  FROM bank.audit_events e JOIN bank.transfers t ON t.id::text = e.resource_id
 WHERE e.resource_type = 'transfer'
   AND e.id IN (SELECT id FROM bank.audit_events ORDER BY id DESC LIMIT 2);
-- every transfer has exactly one row saying how it was made
SELECT t.kind, t.status, count(e.id) AS rows
  FROM bank.transfers t LEFT JOIN bank.audit_events e
	ON (e.resource_type = 'transfer' AND e.resource_id = t.id::text
		AND e.action IN ('transfer.create', 'deposit.create', 'withdrawal.create', 'hold.create',
						 'transfer.declined'))
	   OR (t.kind = 'reversal' AND e.action = 'transfer.reverse'
		   AND (e.metadata->>'reversal')::bigint = t.id)
 GROUP BY t.id, t.kind, t.status HAVING count(e.id) <> 1;

--
-- Immutable, whoever asks
--
SELECT pg_temp.try('UPDATE bank.audit_events SET action = action') AS upd,
	   pg_temp.try('DELETE FROM bank.audit_events') AS del,
	   pg_temp.try('TRUNCATE bank.audit_events') AS trunc;
-- turning auditing off is for superusers (benchmarks) only
CREATE ROLE regress_audit_admin NOLOGIN IN ROLE bank_admin;
SET ROLE regress_audit_admin;
SELECT pg_temp.try('SET pgbank.audit = off') AS audit_off;
RESET ROLE;

--
-- Tamper-evident: each tampering (as a superuser, triggers disabled) is
-- found, and the first bad position reported
--
SELECT count(*) AS problems FROM bank.audit_verify();
SELECT checkpoint AS cp1, hash AS cp1_hash FROM bank.audit_head() \gset
SELECT count(*) AS problems FROM bank.audit_verify(:cp1, :'cp1_hash');
-- checkpoints are immutable too
SELECT pg_temp.try('UPDATE bank.audit_checkpoints SET hash = hash') AS upd_cp,
	   pg_temp.try('DELETE FROM bank.audit_checkpoints') AS del_cp,
	   pg_temp.try('TRUNCATE bank.audit_checkpoints') AS trunc_cp;
-- the longest stripe (this session's), its 3rd and 4th rows and its last
SELECT stripe AS st FROM bank.audit_events GROUP BY stripe ORDER BY count(*) DESC LIMIT 1 \gset
SELECT id AS r3 FROM bank.audit_events WHERE stripe = :st AND seq = 3 \gset
SELECT id AS r4 FROM bank.audit_events WHERE stripe = :st AND seq = 4 \gset
SELECT max(seq) AS last_seq, max(id) AS last_id FROM bank.audit_events WHERE stripe = :st \gset

-- an edited row
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE bank.audit_events SET metadata = metadata || '{"amount": 1}' WHERE id = :r4;
SELECT id = :r4 AS at_r4, seq, problem FROM bank.audit_verify();
ROLLBACK;
-- another column of another row
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE bank.audit_events SET actor_customer = 42 WHERE id = :r3;
SELECT id = :r3 AS at_r3, seq, problem FROM bank.audit_verify();
ROLLBACK;
-- a deleted row
BEGIN;
SET LOCAL session_replication_role = replica;
DELETE FROM bank.audit_events WHERE id = :r3;
SELECT id = :r4 AS at_r4, seq, problem FROM bank.audit_verify();
ROLLBACK;
-- reordering: two rows swap places (their positions), or their ids, or times
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE bank.audit_events SET seq = -3 WHERE id = :r3;
UPDATE bank.audit_events SET seq = 3 WHERE id = :r4;
UPDATE bank.audit_events SET seq = 4 WHERE id = :r3;
SELECT id = :r4 AS at_r4, seq, problem FROM bank.audit_verify();
ROLLBACK;
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE bank.audit_events SET id = CASE id WHEN :r3 THEN :r4 ELSE :r3 END WHERE id IN (:r3, :r4);
SELECT id = :r4 AS at_swapped, seq, problem FROM bank.audit_verify();
ROLLBACK;
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE bank.audit_events e SET at = o.at FROM bank.audit_events o
 WHERE (e.id, o.id) IN ((:r3, :r4), (:r4, :r3));
SELECT id = :r3 AS at_r3, seq, problem FROM bank.audit_verify();
ROLLBACK;
-- a row moved to another stripe
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE bank.audit_events SET stripe = (:st + 1) % 64 WHERE id = :r4;
SELECT id = :r4 AS at_r4, problem IS NOT NULL AS found FROM bank.audit_verify();
ROLLBACK;
-- a truncated tail: found from the latest checkpoint, and, with the
-- checkpoints deleted too, from the anchor kept outside
BEGIN;
SET LOCAL session_replication_role = replica;
DELETE FROM bank.audit_events WHERE stripe = :st AND seq > 3;
SELECT id, seq = :last_seq AS at_anchored_seq, problem FROM bank.audit_verify();
DELETE FROM bank.audit_checkpoints;
SELECT count(*) AS problems_without_anchor FROM bank.audit_verify();
SELECT id, seq, problem FROM bank.audit_verify(:cp1, :'cp1_hash');
ROLLBACK;
-- the last row of the stripe, edited
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE bank.audit_events SET action = 'transfer.create' WHERE id = :last_id;
SELECT id = :last_id AS at_last, problem FROM bank.audit_verify();
ROLLBACK;
-- a forged anchor, or an edited checkpoint
SELECT problem FROM bank.audit_verify(:cp1, sha256('forged'));
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE bank.audit_checkpoints SET seqs = array_fill(1::bigint, ARRAY[cardinality(seqs)])
 WHERE checkpoint = :cp1;
SELECT problem FROM bank.audit_verify(:cp1, :'cp1_hash');
ROLLBACK;
SELECT problem FROM bank.audit_verify(999, :'cp1_hash');
SELECT pg_temp.try($$SELECT * FROM bank.audit_verify(1, NULL)$$) AS half_anchor,
	   pg_temp.try($$SELECT * FROM bank.audit_verify(1, '\x00')$$) AS short_hash,
	   pg_temp.try($$SELECT * FROM bank.audit_verify(NULL, NULL, 5, 4)$$) AS bad_range;
-- a range: an edit inside is found, one outside is not looked at
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE bank.audit_events SET metadata = '{}' WHERE id = :r4;
SELECT id = :r4 AS at_r4, problem FROM bank.audit_verify(NULL, NULL, :r3, :r4);
SELECT count(*) AS problems_after_r4 FROM bank.audit_verify(NULL, NULL, :r4 + 1, :last_id);
ROLLBACK;
-- the tampering was rolled back: all verifies again
SELECT count(*) AS problems FROM bank.audit_verify(:cp1, :'cp1_hash');

--
-- Refused calls are recorded though their transaction fails
--
SELECT count(*) AS denied_before FROM bank.audit_events WHERE action = 'auth.denied' \gset
SET ROLE bank_customer;
SELECT pg_temp.try('SELECT * FROM bank.list_accounts()') AS unauthenticated;
RESET ROLE;
SELECT action, resource_type, resource_id, metadata, acting_role
  FROM bank.audit_events WHERE action = 'auth.denied' ORDER BY id OFFSET :denied_before;

--
-- Who reads what
--
SELECT bank.register('carol@example.com', 'carol''s long password', 'Carol', 'C') AS cc \gset
SELECT bank.register('dave@example.com', 'dave''s long password', 'Dave', 'D') AS cd \gset
SELECT status FROM bank.login('carol@example.com', 'wrong password!!', NULL);
SELECT access_token AS tok_c FROM bank.login('carol@example.com', 'carol''s long password', NULL) \gset
SELECT access_token AS tok_d FROM bank.login('dave@example.com', 'dave''s long password', NULL) \gset
SELECT id AS ca2 FROM bank.open_account('checking', 'carol', 'USD', :cc) \gset

-- a customer: their own security events, whatever they ask for
BEGIN;
SET LOCAL ROLE bank_customer;
SELECT bank.authenticate(:'tok_c') = :cc AS carol;
SELECT action, resource_type FROM bank.audit_search() ORDER BY id;
SELECT count(*) AS of_dave FROM bank.audit_search(actor_customer => :cd);
SELECT count(*) AS account_events FROM bank.audit_search(resource_type => 'account');
SELECT count(*) AS direct FROM bank.audit_events WHERE actor_customer IS DISTINCT FROM :cc
	OR resource_type NOT IN ('session', 'credential');
ROLLBACK;
-- a teller or a customer cannot verify, anchor or purge
SET ROLE bank_teller;
SELECT pg_temp.try('SELECT * FROM bank.audit_search()') AS search,
	   pg_temp.try('SELECT * FROM bank.audit_verify()') AS verify,
	   pg_temp.try('SELECT * FROM bank.audit_head()') AS head,
	   pg_temp.try('SELECT bank.purge_expired()') AS purge;
RESET ROLE;
-- an auditor: everything, filtered and paged by (at, id)
CREATE ROLE regress_audit_auditor NOLOGIN IN ROLE bank_auditor;
CREATE TEMP TABLE pages (page int, id bigint, at timestamptz);
GRANT ALL ON pages TO regress_audit_auditor;
SET ROLE regress_audit_auditor;
SELECT count(*) = (SELECT count(*) FROM bank.audit_search(max_rows => 1000)) AS sees_all
  FROM bank.audit_events;
SELECT action FROM bank.audit_search(actor_customer => :cc) ORDER BY id;
SELECT action FROM bank.audit_search(resource_type => 'account', resource_id => :'aa');
SELECT count(*) AS transfers_created FROM bank.audit_search(action => 'transfer.create');
SELECT count(*) AS in_window FROM bank.audit_search(since => now() - interval '1 hour', until => now() + interval '1 hour', max_rows => 1000);
SELECT count(*) AS none_in_future FROM bank.audit_search(since => now() + interval '1 hour');
-- keyset pages: newest first, disjoint, together the whole result
DO $$
DECLARE
	p int := 0;
	last_at timestamptz;
	last_id bigint;
	n int;
BEGIN
	LOOP
		p := p + 1;
		INSERT INTO pages SELECT p, e.id, e.at
		  FROM bank.audit_search(before_at => last_at, before_id => last_id, max_rows => 5) e;
		GET DIAGNOSTICS n = ROW_COUNT;
		EXIT WHEN n = 0;
		SELECT x.at, x.id INTO last_at, last_id FROM pages x WHERE page = p ORDER BY at, id LIMIT 1;
	END LOOP;
END $$;
SELECT count(*) = (SELECT count(*) FROM bank.audit_events) AS paged_all,
	   count(DISTINCT id) = count(*) AS disjoint, max(page) > 3 AS several_pages,
	   bool_and(by_page = overall) AS newest_first
  FROM (SELECT id, page, row_number() OVER (ORDER BY page, at DESC, id DESC) AS by_page,
			   row_number() OVER (ORDER BY at DESC, id DESC) AS overall FROM pages) s;
SELECT pg_temp.try('SELECT * FROM bank.audit_search(max_rows => 0)') AS zero_rows,
	   pg_temp.try('SELECT * FROM bank.audit_search(before_id => 1)') AS half_cursor,
	   pg_temp.try('SELECT * FROM bank.audit_search(resource_id => ''1'')') AS id_without_type;
RESET ROLE;

--
-- DBA operations on the bank schema
--
CREATE INDEX regress_audit_idx ON bank.accounts (name);
DROP INDEX bank.regress_audit_idx;
SELECT action, resource_id, metadata FROM bank.audit_events WHERE action = 'dba.ddl' ORDER BY id;

--
-- Retention: purge past it, and what remains still verifies
--
SELECT bank.purge_expired() AS kept_for_ever;
SELECT checkpoint AS cp2, hash AS cp2_hash FROM bank.audit_head() \gset
SELECT count(*) AS rows_before FROM bank.audit_events \gset
SELECT pg_sleep(1.2);
SELECT status FROM bank.deposit(:aa, 1, 'au-after');
SET pgbank.audit_retention = '1s';
-- a broken trail is not purged (the evidence would go with it)
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE bank.audit_events SET metadata = '{}' WHERE id = :r4;
SET LOCAL session_replication_role = origin;
SELECT pg_temp.try('SELECT bank.purge_expired()') AS purge_broken;
ROLLBACK;
SELECT bank.purge_expired() = :rows_before AS purged_all_old;
SELECT action FROM bank.audit_events ORDER BY id;
SELECT (metadata->>'removed')::bigint = :rows_before AS removed,
	   jsonb_array_length(metadata->'seals') = (SELECT count(*) FROM bank.audit_seals) AS seals
  FROM bank.audit_events WHERE action = 'audit.purge';
SELECT count(*) AS problems FROM bank.audit_verify();
SELECT count(*) AS problems_with_old_anchor FROM bank.audit_verify(:cp2, :'cp2_hash');
SELECT bank.purge_expired() AS nothing_more;
-- a forged seal does not verify
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE bank.audit_seals SET seq = seq + 1;
SELECT problem FROM bank.audit_verify();
ROLLBACK;
RESET pgbank.audit_retention;

DROP TABLE pages;
DROP ROLE regress_audit_admin, regress_audit_auditor;
