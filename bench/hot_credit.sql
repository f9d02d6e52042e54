-- bench/hot_credit.sql (pgbench): bank.transfer of 1.00 from a random account
-- to the one merchant account (:merchant), new key each.
\set a :base + random(1, 10000)
SELECT id FROM bank.transfer(:a, :merchant, 1.00, gen_random_uuid()::text);
