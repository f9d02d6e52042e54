-- bench/transfer.sql (pgbench): bank.transfer of 1.00 between two distinct
-- random accounts among the 10,000 (ids :base+1 .. :base+10000), new key each.
\set a :base + random(1, 10000)
\set d random(1, 9999)
\set b :base + 1 + (:a - :base - 1 + :d) % 10000
SELECT id FROM bank.transfer(:a, :b, 1.00, gen_random_uuid()::text);
