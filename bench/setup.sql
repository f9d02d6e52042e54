-- bench/setup.sql: the pgbank database of `make bench` (run by bench/run.sh
-- with psql -v ON_ERROR_STOP=1 in a fresh database, as the superuser).
--
-- 1,000 customers with 10 USD checking accounts each (pgbank.max_open_accounts
-- defaults to 10), then one merchant customer with one account.  The 10,000
-- customer accounts get consecutive ids (nothing else writes meanwhile), the
-- merchant's is the next one; run.sh checks that.  Every account is funded
-- with 1,000,000.00 through bank.deposit, so that no transfer of 1.00 is ever
-- declined, and then folded, so that the measured runs start from entries
-- only.  Everything goes through the bank.* API: no table is written directly.

\set ON_ERROR_STOP 1
SET client_min_messages = warning;

CREATE EXTENSION pgbank CASCADE;

SELECT count(bank.create_customer('bench' || g || '@example.com', 'Bench', 'Customer ' || g))
       AS customers
  FROM generate_series(1, 1000) g;

SELECT count(a.id) AS accounts
  FROM (SELECT c.id AS customer, n FROM bank.customers c, generate_series(1, 10) n
         ORDER BY c.id, n) s,
       LATERAL bank.open_account('checking', 'bench account ' || s.n, 'USD', s.customer) a;

SELECT (bank.open_account('checking', 'merchant', 'USD',
        bank.create_customer('merchant@example.com', 'Bench', 'Merchant'))).id AS merchant;

SELECT count(d.id) AS funded
  FROM bank.accounts a,
       LATERAL bank.deposit(a.id, 1000000.00, 'bench-funding-' || a.id) d
 WHERE a.customer_id IS NOT NULL;

SELECT count(bank.fold_account(a.id)) AS folded
  FROM bank.accounts a
 WHERE a.customer_id IS NOT NULL;
