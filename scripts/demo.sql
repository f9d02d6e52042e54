-- scripts/demo.sql: demo data for scripts/demo (run once, on a new database)
\set ON_ERROR_STOP on
\set QUIET on
\o /dev/null

-- three customers with accounts in two currencies
SELECT bank.create_customer('alice@example.com', 'Alice', 'Archer') AS alice \gset
SELECT bank.create_customer('bob@example.com', 'Bob', 'Baker') AS bob \gset
SELECT bank.create_customer('shop@example.com', 'Corner', 'Shop') AS shop \gset
SELECT id AS alice_chk FROM bank.open_account('checking', 'Alice everyday', 'USD', :alice) \gset
SELECT id AS alice_sav FROM bank.open_account('savings', 'Alice rainy day', 'USD', :alice) \gset
SELECT id AS alice_eur FROM bank.open_account('checking', 'Alice travel', 'EUR', :alice) \gset
SELECT id AS bob_chk FROM bank.open_account('checking', 'Bob main', 'USD', :bob) \gset
SELECT id AS shop_chk FROM bank.open_account('checking', 'Shop takings', 'USD', :shop) \gset

-- KYC reviews (staff): approved customers may move large amounts
SELECT bank.set_kyc_status(:alice, 'approved', 'Documents checked');
SELECT bank.set_kyc_status(:bob, 'approved', 'Documents checked');
SELECT bank.set_kyc_status(:shop, 'approved', 'Business registration checked');

-- a customer who registered with a password: logs in and acts for herself
SET pgbank.bcrypt_cost = 10;
SELECT bank.register('carol@example.com', 'correct horse battery staple', 'Carol', 'Cole',
					 '+1 555 0100') AS carol \gset
SELECT id AS carol_chk FROM bank.open_account('checking', 'Carol main', 'USD', :carol) \gset
SELECT 1 FROM bank.deposit(:carol_chk, 150.00, 'demo-carol', 'Opening deposit');

-- money in, money moved, a card hold captured in part, a reversal
SELECT 1 FROM bank.deposit(:alice_chk, 2500.00, 'demo-salary-alice', 'Salary');
SELECT 1 FROM bank.deposit(:bob_chk, 1800.00, 'demo-salary-bob', 'Salary');
SELECT 1 FROM bank.deposit(:alice_eur, 300.00, 'demo-eur-alice', 'Cash');
SELECT 1 FROM bank.transfer(:alice_chk, :alice_sav, 500.00, 'demo-save', 'Savings');
SELECT 1 FROM bank.transfer(:alice_chk, :bob_chk, 42.50, 'demo-dinner', 'Dinner');
SELECT id AS hold FROM bank.hold(:bob_chk, :shop_chk, 80.00, 'demo-card-hold', '2 days', 'Card: groceries') \gset
SELECT 1 FROM bank.capture(:hold, 63.20);
SELECT id AS oops FROM bank.transfer(:bob_chk, :shop_chk, 19.99, 'demo-oops', 'Charged twice') \gset
SELECT 1 FROM bank.reverse(:oops, 'Duplicate card charge', 'demo-oops-reversal');
SELECT 1 FROM bank.withdraw(:alice_chk, 100.00, 'demo-atm', 'ATM');
SELECT 1 FROM bank.hold(:alice_chk, :shop_chk, 25.00, 'demo-open-hold', '7 days', 'Card: pending');
\o

\echo 'Demo accounts:'
SELECT id, number, name, currency, balance, pending_out, available
  FROM bank.account_balances WHERE customer_id IS NOT NULL ORDER BY id;
