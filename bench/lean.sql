-- bench/lean.sql: the lean baseline of `make bench`.
--
-- Above \quit: the bare two-table schema and its 10,000 funded accounts (psql
-- runs this part in a database of its own).  Below \quit: the pgbench script,
-- which bench/run.sh cuts out of this file (psql never reads past \quit).
--
-- The statement is the floor cost of a durable transfer on this machine: one
-- round trip that locks both rows in id order (FOR NO KEY UPDATE, so two
-- opposite transfers cannot deadlock), checks the debited balance on the
-- locked row version, updates both balances and inserts the transfer row.  No
-- idempotency key, no ledger entries, no foreign keys, no triggers.  When
-- funds are short nothing is written (cannot happen here: 1,000,000.00 each,
-- transfers of 1.00).

\set ON_ERROR_STOP 1

CREATE TABLE accounts (
	id		bigint PRIMARY KEY,
	balance	bigint NOT NULL
);

CREATE TABLE transfers (
	id			bigserial PRIMARY KEY,
	from_id		bigint NOT NULL,
	to_id		bigint NOT NULL,
	amount		bigint NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT now()
);

INSERT INTO accounts (id, balance) SELECT g, 100000000 FROM generate_series(1, 10000) g;

\quit
\set a random(1, 10000)
\set d random(1, 9999)
\set b 1 + (:a - 1 + :d) % 10000
WITH l AS (SELECT id, balance FROM accounts WHERE id IN (:a, :b) ORDER BY id FOR NO KEY UPDATE), u AS (UPDATE accounts AS x SET balance = x.balance + CASE WHEN x.id = :a THEN -100 ELSE 100 END FROM l WHERE x.id = l.id AND (SELECT balance FROM l WHERE l.id = :a) >= 100 RETURNING x.id) INSERT INTO transfers (from_id, to_id, amount) SELECT :a, :b, 100 WHERE (SELECT count(*) FROM u) = 2;
