-- accounts: customers, opening accounts (types, limits), account numbers,
-- reading and listing, renaming, freezing and closing.

\set VERBOSITY sqlstate
\pset null '<null>'
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pgbank CASCADE;
CREATE EXTENSION pgbank CASCADE;
RESET client_min_messages;

-- create_customer: the email is trimmed (spaces, tabs) and lower-cased
SELECT bank.create_customer('  Alice@Example.COM ', 'Alice', 'Archer') AS alice \gset
SELECT bank.create_customer(E'\tBOB@example.org\t', 'Bob', 'Baker') AS bob \gset
SELECT id = :alice AS is_alice, email, first_name, last_name FROM bank.customers ORDER BY id;

-- names are counted in characters, not bytes: 100 two-byte characters fit
SELECT bank.create_customer('eve@example.com', repeat('é', 100), 'Ève') AS eve \gset
SELECT length(first_name), last_name FROM bank.customers WHERE id = :eve;

-- an email that is taken, whatever its case and spacing: PB024
SELECT bank.create_customer('alice@example.com', 'Other', 'Alice');
SELECT bank.create_customer(' ALICE@EXAMPLE.COM', 'Other', 'Alice');

-- invalid emails and names: PB023
SELECT bank.create_customer('no-at-sign.example.com', 'X', 'Y');
SELECT bank.create_customer('@example.com', 'X', 'Y');
SELECT bank.create_customer('carol@', 'X', 'Y');
SELECT bank.create_customer('carol@x@example.com', 'X', 'Y');
SELECT bank.create_customer('carol smith@example.com', 'X', 'Y');
SELECT bank.create_customer(E'carol\n@example.com', 'X', 'Y');
SELECT bank.create_customer('', 'X', 'Y');
SELECT bank.create_customer('   ', 'X', 'Y');
SELECT bank.create_customer(repeat('c', 250) || '@x.io', 'X', 'Y');
SELECT bank.create_customer('carol@example.com', '', 'Y');
SELECT bank.create_customer('carol@example.com', 'X', repeat('y', 101));

-- non-ASCII capitals are lower-cased like ASCII ones; any control or
-- blank character inside the address is PB023
SELECT bank.create_customer('ÉLISE@example.com', 'Élise', 'Y') AS elise \gset
SELECT email FROM bank.customers WHERE id = :elise;
SELECT bank.create_customer(E'carol\x0b@example.com', 'X', 'Y');
SELECT bank.create_customer(E'carol\x0c@example.com', 'X', 'Y');

-- create_customer is strict: a NULL argument gives NULL and creates nothing
SELECT bank.create_customer(NULL, 'X', 'Y') IS NULL AS null_email;

-- none of the refused customers was created
SELECT count(*) AS customers FROM bank.customers;

-- open_account: the three customer types; a new account is active and empty,
-- its number is the zero-padded id with two check digits
SELECT id AS a_chk FROM bank.open_account('checking', 'alice checking', 'USD', :alice) \gset
SELECT id AS a_sav FROM bank.open_account('savings', 'alice savings', 'USD', :alice) \gset
-- an investment account needs an approved KYC review (PB046)
SELECT id FROM bank.open_account('investment', 'alice investment', 'JPY', :alice);
UPDATE bank.customers SET kyc_status = 'approved' WHERE id IN (:alice, :bob);
SELECT id AS a_inv FROM bank.open_account('investment', 'alice investment', 'JPY', :alice) \gset
SELECT id AS b_chk FROM bank.open_account('checking', 'bob checking', 'USD', :bob) \gset
SELECT left(number, 10) = lpad(id::text, 10, '0') AS number_is_id,
       bank.account_number_valid(number) AS number_valid,
       customer_id = :alice AS alice_owns, type, name, currency, status,
       balance, pending_out, available, overdraft_limit, closed_at
  FROM bank.account_balances WHERE id IN (:a_chk, :a_sav, :a_inv) ORDER BY id;

-- open_account returns what get_account returns
SELECT a = g AS same
  FROM bank.open_account('checking', 'alice second', 'EUR', :alice) a,
       LATERAL bank.get_account(a.id) g;

-- system account types cannot be opened by customers: PB019
SELECT id FROM bank.open_account('settlement', 'mine', 'USD', :alice);
SELECT id FROM bank.open_account('fee_income', 'mine', 'USD', :alice);
SELECT id FROM bank.open_account('interest_expense', 'mine', 'USD', :alice);

-- unknown customer: PB021
SELECT id FROM bank.open_account('checking', 'ghost', 'USD', 999999);

-- NULL arguments are named errors: PB022
SELECT id FROM bank.open_account(NULL, 'x', 'USD', :alice);
SELECT id FROM bank.open_account('checking', NULL, 'USD', :alice);
SELECT id FROM bank.open_account('checking', 'x', NULL, :alice);
SELECT id FROM bank.open_account('checking', 'x', 'USD', NULL);

-- bad name (empty, over 100 characters): PB023; unknown currency: PB008
SELECT id FROM bank.open_account('checking', '', 'USD', :alice);
SELECT id FROM bank.open_account('checking', repeat('n', 101), 'USD', :alice);
SELECT id FROM bank.open_account('checking', 'x', 'ZZZ', :alice);

-- none of the refused accounts was opened
SELECT count(*) AS alice_accounts FROM bank.accounts WHERE customer_id = :alice;

-- at most 10 open accounts per customer by default: the 11th is PB011
SELECT count(*) AS opened
  FROM generate_series(5, 10) g,
       LATERAL bank.open_account('savings', 'alice ' || g, 'USD', :alice) a;
SELECT count(*) AS alice_accounts FROM bank.accounts WHERE customer_id = :alice;
SELECT id FROM bank.open_account('savings', 'alice 11', 'USD', :alice);

-- the limit is per customer: bob can still open accounts
SELECT name FROM bank.open_account('savings', 'bob savings', 'USD', :bob);

-- after closing one (empty) account, alice can open another, and no more
SELECT id AS a_last FROM bank.accounts WHERE customer_id = :alice AND name = 'alice 10' \gset
SELECT name, status, closed_at IS NOT NULL AS has_closed_at FROM bank.close_account(:a_last);
SELECT name, status FROM bank.open_account('savings', 'alice 11', 'USD', :alice);
SELECT id FROM bank.open_account('savings', 'alice 12', 'USD', :alice);
SELECT count(*) FILTER (WHERE status <> 'closed') AS open_accounts, count(*) AS all_accounts
  FROM bank.accounts WHERE customer_id = :alice;

-- the limit is the GUC pgbank.max_open_accounts (superuser): bob has 2
SET pgbank.max_open_accounts = 3;
SELECT name FROM bank.open_account('investment', 'bob investment', 'USD', :bob);
SELECT id FROM bank.open_account('investment', 'bob 4', 'USD', :bob);
RESET pgbank.max_open_accounts;

-- every account number (system and customer) carries valid check digits
SELECT bool_and(bank.account_number_valid(number)) AS all_valid,
       bool_and(number ~ '^[0-9]{12}$') AS all_12_digits
  FROM bank.accounts;

-- changing any one digit, or swapping two different adjacent digits, of a
-- number makes it invalid
SELECT number AS alice_number FROM bank.accounts WHERE id = :a_chk \gset
SELECT bool_or(bank.account_number_valid(
           overlay(:'alice_number' PLACING ((substr(:'alice_number', i, 1)::int + d) % 10)::text
                   FROM i FOR 1))) AS any_changed_digit_valid,
       count(*) AS variants
  FROM generate_series(1, 12) i, generate_series(1, 9) d;
SELECT bool_or(bank.account_number_valid(
           overlay(:'alice_number' PLACING substr(:'alice_number', i + 1, 1) || substr(:'alice_number', i, 1)
                   FROM i FOR 2))) AS any_swap_valid
  FROM generate_series(1, 11) i
 WHERE substr(:'alice_number', i, 1) <> substr(:'alice_number', i + 1, 1);

-- wrong length or non-digits are invalid
SELECT bank.account_number_valid(left(:'alice_number', 11)) AS too_short,
       bank.account_number_valid(:'alice_number' || '0') AS too_long,
       bank.account_number_valid(left(:'alice_number', 11) || 'x') AS letter,
       bank.account_number_valid('') AS empty;

-- get_account: a missing account is PB009; strict on NULL
SELECT name, type, currency, status FROM bank.get_account(:a_chk);
SELECT id FROM bank.get_account(999999);
SELECT id FROM bank.get_account(NULL);

-- list_accounts: a customer's accounts in id order, with a type filter
SELECT name, type, currency, status FROM bank.list_accounts(:alice);
SELECT name FROM bank.list_accounts(:alice, 'checking');
SELECT name FROM bank.list_accounts(:alice, 'investment');
SELECT name FROM bank.list_accounts(:bob);

-- keyset pagination: pages of 4, each after the last id of the previous one
SELECT name FROM bank.list_accounts(:alice, "limit" => 4);
SELECT max(id) AS page1 FROM bank.list_accounts(:alice, "limit" => 4) \gset
SELECT name FROM bank.list_accounts(:alice, after => :page1, "limit" => 4);
SELECT max(id) AS page2 FROM bank.list_accounts(:alice, after => :page1, "limit" => 4) \gset
SELECT name FROM bank.list_accounts(:alice, after => :page2, "limit" => 4);
SELECT max(id) AS page3 FROM bank.list_accounts(:alice, after => :page2, "limit" => 4) \gset
SELECT count(*) AS after_last_page FROM bank.list_accounts(:alice, after => :page3, "limit" => 4);

-- pagination and type filter together
SELECT name FROM bank.list_accounts(:alice, 'savings', :a_sav, 3);

-- limit 1 and 1000 are the bounds; outside them PB023; NULL customer PB022
SELECT name FROM bank.list_accounts(:alice, "limit" => 1);
SELECT count(*) FROM bank.list_accounts(:alice, "limit" => 1000);
SELECT count(*) FROM bank.list_accounts(:alice, "limit" => 0);
SELECT count(*) FROM bank.list_accounts(:alice, "limit" => 1001);
SELECT count(*) FROM bank.list_accounts(:alice, "limit" => -1);
SELECT count(*) FROM bank.list_accounts(NULL);

-- an unknown customer simply has no accounts
SELECT count(*) FROM bank.list_accounts(999999);

-- rename_account: renames; bad name PB023; unknown or system account PB009
SELECT name FROM bank.rename_account(:a_chk, 'alice main');
SELECT name FROM bank.rename_account(:a_chk, repeat('é', 100)) \gset renamed_
SELECT length(:'renamed_name') AS renamed_length;
SELECT name FROM bank.rename_account(:a_chk, 'alice main');
SELECT name FROM bank.rename_account(:a_chk, '');
SELECT name FROM bank.rename_account(:a_chk, repeat('n', 101));
SELECT name FROM bank.rename_account(999999, 'x');
SELECT id AS settlement_usd FROM bank.accounts WHERE type = 'settlement' AND currency = 'USD' \gset
SELECT name FROM bank.rename_account(:settlement_usd, 'mine');
SELECT name FROM bank.get_account(:a_chk);

-- money for the freeze and close probes
SELECT status FROM bank.deposit(:a_chk, 100, 'acc-dep-1');
SELECT status FROM bank.deposit(:a_sav, 50, 'acc-dep-2');

-- freeze: the account is frozen; freezing again is a no-op
SELECT name, status FROM bank.freeze_account(:a_chk, 'suspicious activity');
SELECT name, status FROM bank.freeze_account(:a_chk, 'still suspicious');
SELECT status_reason FROM bank.accounts WHERE id = :a_chk;

-- a frozen account refuses debits and holds: PB002 (recorded as failed)
SELECT id FROM bank.withdraw(:a_chk, 1, 'acc-frozen-1');
SELECT id FROM bank.transfer(:a_chk, :a_sav, 1, 'acc-frozen-2');
SELECT id FROM bank.hold(:a_chk, :a_sav, 1, 'acc-frozen-3');
SELECT idempotency_key, kind, status, failure_code FROM bank.transfers
 WHERE idempotency_key LIKE 'acc-frozen-%' ORDER BY id;

-- a frozen account still receives credits
SELECT status FROM bank.deposit(:a_chk, 5, 'acc-frozen-credit-1');
SELECT status FROM bank.transfer(:a_sav, :a_chk, 10, 'acc-frozen-credit-2');
SELECT status FROM bank.hold(:a_sav, :a_chk, 1, 'acc-frozen-credit-3');
SELECT name, status, balance, available FROM bank.get_account(:a_chk);

-- freeze and unfreeze: bad reason PB023; unknown or system account PB009
SELECT status FROM bank.freeze_account(:a_chk, '');
SELECT status FROM bank.freeze_account(:a_chk, repeat('r', 501));
SELECT status FROM bank.unfreeze_account(:a_chk, '');
SELECT status FROM bank.freeze_account(999999, 'x');
SELECT status FROM bank.unfreeze_account(999999, 'x');
SELECT status FROM bank.freeze_account(:settlement_usd, 'x');

-- unfreeze: active again (twice is a no-op), and debits work again
SELECT name, status FROM bank.unfreeze_account(:a_chk, 'cleared');
SELECT name, status FROM bank.unfreeze_account(:a_chk, 'cleared');
SELECT status_reason FROM bank.accounts WHERE id = :a_chk;
SELECT status FROM bank.withdraw(:a_chk, 1, 'acc-after-unfreeze');
-- balance: 100 + 5 + 10 - 1 = 114, with the incoming hold of 1 not counted
SELECT name, status, balance, pending_out, available FROM bank.get_account(:a_chk);

-- close_account: a non-zero balance is PB012
SELECT status FROM bank.close_account(:a_chk);

-- an open hold out of the account, or into it, is PB013 even at a zero
-- posted balance (bob's checking holds on its overdraft, set by the superuser)
SELECT id AS b_sav FROM bank.list_accounts(:bob, 'savings') \gset
UPDATE bank.accounts SET overdraft_limit = 300 WHERE id = :b_chk;
SELECT id AS hold_out FROM bank.hold(:b_chk, :b_sav, 3, 'acc-hold-out') \gset
SELECT name, balance, pending_out, available FROM bank.get_account(:b_chk);
SELECT status FROM bank.close_account(:b_chk);
SELECT status FROM bank.close_account(:b_sav);
SELECT status FROM bank.void(:hold_out);
UPDATE bank.accounts SET overdraft_limit = 0 WHERE id = :b_chk;
SELECT name, balance, pending_out, available, overdraft_limit FROM bank.get_account(:b_chk);
-- empty alice savings: the hold into alice checking reserves its last 1.00
-- until it is voided
SELECT id AS hold_in FROM bank.transfers WHERE idempotency_key = 'acc-frozen-credit-3' \gset
SELECT status FROM bank.withdraw(:a_sav, 39, 'acc-sav-empty');
SELECT balance, pending_out, available FROM bank.get_account(:a_sav);
SELECT status FROM bank.void(:hold_in);
SELECT status FROM bank.withdraw(:a_sav, 1, 'acc-sav-empty-2');
SELECT balance, pending_out, available FROM bank.get_account(:a_sav);

-- zero balance, no holds: closed; closing again returns it unchanged
SELECT name, status, balance, closed_at IS NOT NULL AS has_closed_at FROM bank.close_account(:b_chk);
SELECT name, status, balance, closed_at IS NOT NULL AS has_closed_at FROM bank.close_account(:b_chk);
SELECT name, status FROM bank.close_account(:a_sav);

-- closing an unknown or a system account: PB009
SELECT status FROM bank.close_account(999999);
SELECT status FROM bank.close_account(:settlement_usd);

-- a closed account: nothing moves in or out (PB003, declines recorded), it
-- cannot be renamed, frozen or unfrozen (PB003)
SELECT id FROM bank.deposit(:b_chk, 1, 'acc-closed-1');
SELECT id FROM bank.withdraw(:b_chk, 1, 'acc-closed-2');
SELECT id FROM bank.transfer(:a_chk, :b_chk, 1, 'acc-closed-3');
SELECT id FROM bank.transfer(:b_chk, :a_chk, 1, 'acc-closed-4');
SELECT id FROM bank.hold(:a_chk, :b_chk, 1, 'acc-closed-5');
SELECT idempotency_key, kind, status, failure_code FROM bank.transfers
 WHERE idempotency_key LIKE 'acc-closed-%' ORDER BY id;
SELECT name FROM bank.rename_account(:b_chk, 'reopened');
SELECT status FROM bank.freeze_account(:b_chk, 'x');
SELECT status FROM bank.unfreeze_account(:b_chk, 'x');
SELECT name, status, balance FROM bank.get_account(:b_chk);

-- a declined deposit replayed is declined again
SELECT id FROM bank.deposit(:b_chk, 1, 'acc-closed-1');

-- alice checking kept its money through all of this (114.00)
SELECT name, status, balance FROM bank.get_account(:a_chk);

-- the ledger is consistent
SELECT * FROM bank.check_ledger();
