-- bench/http_setup.sql: the customers of the HTTP runs of `make bench` (run
-- by bench/run.sh in the bank database after setup.sql, as the superuser,
-- with pgbank.bcrypt_cost = 4 and a long pgbank.access_token_ttl).
--
-- 100 customers register and log in through the bank.* API like any HTTP
-- client would (bank.register, bank.login), each with one funded USD
-- checking account.  Output: one line per customer, "access_token account",
-- for wrk's scripts (bench/http_*.lua).

\set ON_ERROR_STOP 1
SET client_min_messages = warning;

CREATE TEMP TABLE http_customers AS
SELECT g, bank.register('http' || g || '@example.com', 'bench password ' || g, 'Http', 'Customer ' || g) AS id
  FROM generate_series(1, 100) g;

CREATE TEMP TABLE http_accounts AS
SELECT c.g, c.id AS customer, (bank.open_account('checking', 'http bench', 'USD', c.id)).id AS account
  FROM http_customers c;

SELECT count(bank.deposit(a.account, 1000000.00, 'http-funding-' || a.account)) AS funded
  FROM http_accounts a \g /dev/null

\pset format unaligned
\pset tuples_only on
\pset fieldsep ' '
SELECT (bank.login('http' || a.g || '@example.com', 'bench password ' || a.g)).access_token, a.account
  FROM http_accounts a ORDER BY a.g;
