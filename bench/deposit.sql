-- bench/deposit.sql (pgbench): bank.deposit of 1.00 into a random account; the
-- USD settlement account is the debit side of every one.  New key each.
\set a :base + random(1, 10000)
SELECT id FROM bank.deposit(:a, 1.00, gen_random_uuid()::text);
