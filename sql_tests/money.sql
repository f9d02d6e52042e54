-- money: exact amounts.  bank.amount_to_minor / bank.minor_to_amount, and
-- amounts as deposit, withdraw, transfer and hold take them: the currency's
-- exponent (JPY 0, USD 2, BHD 3, CLF 4), trailing zeros, every kind of
-- invalid amount, overflow, unknown currencies, NULL; and that a rejected
-- amount writes nothing.

\set VERBOSITY sqlstate
\pset null '<null>'
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pgbank CASCADE;
CREATE EXTENSION pgbank CASCADE;
RESET client_min_messages;

-- amount_to_minor: the exponent of each currency scales the amount
SELECT bank.amount_to_minor(10.50, 'USD') AS usd,
       bank.amount_to_minor(0.01, 'USD') AS usd_cent,
       bank.amount_to_minor(1000, 'JPY') AS jpy,
       bank.amount_to_minor(1.234, 'BHD') AS bhd,
       bank.amount_to_minor(0.5, 'BHD') AS bhd_half,
       bank.amount_to_minor(0.0001, 'CLF') AS clf;

-- trailing zeros are not fraction digits; exponent notation is just a numeric
SELECT bank.amount_to_minor(10.500, 'USD') AS usd_10_500,
       bank.amount_to_minor(10.5000000000, 'USD') AS usd_many_zeros,
       bank.amount_to_minor(5.000, 'JPY') AS jpy_5_000,
       bank.amount_to_minor(1e2, 'USD') AS usd_1e2,
       bank.amount_to_minor('1e-2', 'USD') AS usd_1e_minus_2;

-- more fraction digits than the currency allows: PB006
SELECT bank.amount_to_minor(10.505, 'USD');
SELECT bank.amount_to_minor(1.5, 'JPY');
SELECT bank.amount_to_minor(0.0005, 'BHD');
SELECT bank.amount_to_minor(0.00001, 'CLF');
SELECT bank.amount_to_minor(0.000000000000000000001, 'USD');

-- zero, negative, NaN and the infinities: PB006
SELECT bank.amount_to_minor(0, 'USD');
SELECT bank.amount_to_minor(0.00, 'USD');
SELECT bank.amount_to_minor(-1, 'USD');
SELECT bank.amount_to_minor(-0.01, 'USD');
SELECT bank.amount_to_minor('NaN', 'USD');
SELECT bank.amount_to_minor('Infinity', 'USD');
SELECT bank.amount_to_minor('-Infinity', 'USD');

-- the largest amount is 10^15 minor units, whatever the exponent
SELECT bank.amount_to_minor(10000000000000.00, 'USD') AS usd_max,
       bank.amount_to_minor(1000000000000000, 'JPY') AS jpy_max,
       bank.amount_to_minor(100000000000.0000, 'CLF') AS clf_max;

-- one minor unit more, or far more: PB007
SELECT bank.amount_to_minor(10000000000000.01, 'USD');
SELECT bank.amount_to_minor(92233720368547758.10, 'USD');
SELECT bank.amount_to_minor(1000000000000001, 'JPY');
SELECT bank.amount_to_minor(9223372036854775808, 'JPY');
SELECT bank.amount_to_minor(100000000000.0001, 'CLF');
SELECT bank.amount_to_minor(1e30, 'USD');

-- unknown currencies (codes are upper case ISO 4217): PB008
SELECT bank.amount_to_minor(1, 'XXX');
SELECT bank.amount_to_minor(1, 'usd');
SELECT bank.amount_to_minor(1, 'US');
SELECT bank.amount_to_minor(1, 'USDX');
SELECT bank.amount_to_minor(1, '');

-- amount_to_minor is strict: NULL in, NULL out
SELECT bank.amount_to_minor(NULL, 'USD') IS NULL AS null_amount,
       bank.amount_to_minor(1, NULL) IS NULL AS null_currency;

-- minor_to_amount: the exponent becomes the scale, sign kept
SELECT bank.minor_to_amount(1050, 2) AS usd,
       bank.minor_to_amount(0, 2) AS usd_zero,
       bank.minor_to_amount(-150, 2) AS usd_negative,
       bank.minor_to_amount(5, 3) AS bhd,
       bank.minor_to_amount(7, 0) AS jpy,
       bank.minor_to_amount(1, 4) AS clf;
SELECT bank.minor_to_amount(9223372036854775807, 2) AS max_usd,
       bank.minor_to_amount(-9223372036854775808, 2) AS min_usd,
       bank.minor_to_amount(9223372036854775807, 4) AS max_clf;

-- minor_to_amount: exponent outside 0..4 is PB023; strict on NULL
SELECT bank.minor_to_amount(1, 5);
SELECT bank.minor_to_amount(1, -1);
SELECT bank.minor_to_amount(NULL, 2) IS NULL AS null_minor;

-- round trip: minor_to_amount then amount_to_minor gives the minor units back
SELECT m, e, c, bank.amount_to_minor(bank.minor_to_amount(m, e), c) = m AS round_trip
  FROM (VALUES (1::bigint, 2, 'USD'), (1050, 2, 'USD'), (999, 0, 'JPY'),
               (1234, 3, 'BHD'), (1000000000000000, 2, 'USD'),
               (1000000000000000, 4, 'CLF')) v(m, e, c);

-- accounts in three currencies (and a second USD and JPY account)
SELECT bank.create_customer('money@example.com', 'Mona', 'Ney') AS cust \gset
SELECT id AS usd FROM bank.open_account('checking', 'usd', 'USD', :cust) \gset
SELECT id AS jpy FROM bank.open_account('checking', 'jpy', 'JPY', :cust) \gset
SELECT id AS bhd FROM bank.open_account('checking', 'bhd', 'BHD', :cust) \gset
SELECT id AS usd2 FROM bank.open_account('savings', 'usd 2', 'USD', :cust) \gset
SELECT id AS jpy2 FROM bank.open_account('savings', 'jpy 2', 'JPY', :cust) \gset

-- deposits: the amount comes back with the currency's scale and is stored in
-- minor units
SELECT id, kind, status, currency, amount, posted_amount FROM bank.deposit(:usd, 10.50, 'usd-1');
SELECT id, kind, status, currency, amount, posted_amount FROM bank.deposit(:usd, 10.500, 'usd-2');
SELECT id, kind, status, currency, amount, posted_amount FROM bank.deposit(:usd, 0.01, 'usd-3');
SELECT id, kind, status, currency, amount, posted_amount FROM bank.deposit(:jpy, 1000, 'jpy-1');
SELECT id, kind, status, currency, amount, posted_amount FROM bank.deposit(:jpy, 5.000, 'jpy-2');
SELECT id, kind, status, currency, amount, posted_amount FROM bank.deposit(:bhd, 1.234, 'bhd-1');
SELECT id, kind, status, currency, amount, posted_amount FROM bank.deposit(:bhd, 1.5, 'bhd-2');
SELECT id, currency, amount AS minor_units, posted_amount FROM bank.transfers ORDER BY id;

-- balances: USD 10.50 + 10.50 + 0.01, JPY 1000 + 5, BHD 1.234 + 1.500
SELECT name, currency, balance, pending_out, available
  FROM bank.get_account(:usd)
UNION ALL
SELECT name, currency, balance, pending_out, available
  FROM bank.get_account(:jpy)
UNION ALL
SELECT name, currency, balance, pending_out, available
  FROM bank.get_account(:bhd);

-- one amount is at most 10^15 minor units (PB007 above), so a balance would
-- need about 9,000 such credits to approach 2^63 - 1 minor units
SELECT id FROM bank.deposit(:usd, 10000000000000.01, 'cap-1');

-- what is in the ledger before the rejected amounts
SELECT (SELECT count(*) FROM bank.transfers) AS transfers,
       (SELECT count(*) FROM bank.entries) AS entries,
       (SELECT count(*) FROM bank.pending_legs) AS pending_legs,
       (SELECT sum(abs(amount)) FROM bank.pending_legs) AS legs_volume \gset before_

-- rejected amounts through deposit, withdraw, transfer and hold: PB006,
-- PB007, PB022 (NULL amount)
SELECT id FROM bank.deposit(:usd, 10.505, 'bad-1');
SELECT id FROM bank.deposit(:jpy, 1.5, 'bad-2');
SELECT id FROM bank.deposit(:bhd, 0.0005, 'bad-3');
SELECT id FROM bank.deposit(:usd, 0, 'bad-4');
SELECT id FROM bank.deposit(:usd, -5, 'bad-5');
SELECT id FROM bank.deposit(:usd, 'NaN', 'bad-6');
SELECT id FROM bank.deposit(:usd, 'Infinity', 'bad-7');
SELECT id FROM bank.deposit(:usd, '-Infinity', 'bad-8');
SELECT id FROM bank.deposit(:usd, 92233720368547758.08, 'bad-9');
SELECT id FROM bank.deposit(:usd, 1e30, 'bad-10');
SELECT id FROM bank.deposit(:usd, NULL, 'bad-11');
SELECT id FROM bank.withdraw(:usd, 0.001, 'bad-12');
SELECT id FROM bank.withdraw(:usd, -1, 'bad-13');
SELECT id FROM bank.transfer(:usd, :usd2, NULL, 'bad-14');
SELECT id FROM bank.hold(:jpy, :jpy2, 0.5, 'bad-15');
SELECT id FROM bank.withdraw(:bhd, 0.0001, 'bad-16');

-- a rejected amount is not a decline: it is not recorded, even under a key
-- that was used before (the key's original transfer is untouched)
SELECT id FROM bank.deposit(:usd, 10.505, 'usd-1');
SELECT id, amount FROM bank.deposit(:usd, 10.50, 'usd-1');

-- each rejection wrote nothing
SELECT (SELECT count(*) FROM bank.transfers) = :before_transfers AS transfers_unchanged,
       (SELECT count(*) FROM bank.entries) = :before_entries AS entries_unchanged,
       (SELECT count(*) FROM bank.pending_legs) = :before_pending_legs AS legs_unchanged,
       (SELECT sum(abs(amount)) FROM bank.pending_legs) = :before_legs_volume AS legs_volume_unchanged;

-- unknown currency when opening an account: PB008, nothing written
SELECT count(*) AS accounts FROM bank.accounts WHERE customer_id = :cust;
SELECT id FROM bank.open_account('checking', 'nope', 'XXX', :cust);
SELECT id FROM bank.open_account('checking', 'nope', 'usd', :cust);
SELECT count(*) AS accounts FROM bank.accounts WHERE customer_id = :cust;

-- the ledger is consistent
SELECT * FROM bank.check_ledger();
