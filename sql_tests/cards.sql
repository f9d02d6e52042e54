-- the card vault: tokenize (Luhn, expiry, masking), detokenize for
-- bank_service only, audited without the number; no error message carries
-- any digit of a rejected number; the stored number is encrypted; card
-- numbers are masked in messages (the log filter).

\set VERBOSITY sqlstate
\pset null '<null>'
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pgbank CASCADE;
CREATE EXTENSION pgbank CASCADE;
RESET client_min_messages;

-- expiry dates relative to today: next year, and last month
SELECT to_char(bank.business_date() + interval '1 year', 'MM/YY') AS next_year,
	   to_char(bank.business_date() + interval '1 year', 'MM/YYYY') AS next_year_long,
	   to_char(bank.business_date() - interval '1 month', 'MM/YY') AS last_month,
	   to_char(bank.business_date(), 'MM/YY') AS this_month,
	   to_char(bank.business_date() + interval '21 years', 'MM/YYYY') AS too_far \gset

-- tokenize: 16 digits keep the first six and the last four, shorter ones
-- the last four only; a card is valid through its expiry month
SET ROLE bank_service;
SELECT token AS visa, masked FROM bank.tokenize_card('4111111111111111', :'next_year') \gset
SELECT :'masked' AS masked, :'visa' ~ '^tok_[A-Za-z0-9_-]{32}$' AS token_shape;
SELECT masked FROM bank.tokenize_card('378282246310005', :'this_month');
SELECT masked FROM bank.tokenize_card('4222222222222', :'next_year_long');
SELECT masked FROM bank.tokenize_card('6011111111111117', :'next_year');
-- each call is a new random token, even for the same card
SELECT count(DISTINCT (bank.tokenize_card('4111111111111111', :'next_year')).token) AS tokens
  FROM generate_series(1, 3);
RESET ROLE;

-- rejected numbers and expiries: a precise SQLSTATE, and no digit at all
-- in the message, detail, hint or context (so none of the number)
CREATE FUNCTION pg_temp.try(pan text, expiry text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	st text; m text; d text; h text; c text;
BEGIN
	PERFORM bank.tokenize_card(pan, expiry);
	RETURN 'accepted';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL,
		h = PG_EXCEPTION_HINT, c = PG_EXCEPTION_CONTEXT;
	RETURN st || CASE WHEN concat(m, d, h) ~ '[0-9]' THEN ' digits in: ' || m
					  WHEN pan <> '' AND position(pan IN c) > 0 THEN ' number in context'
					  ELSE ' (no digits)' END;
END
$$;
GRANT EXECUTE ON FUNCTION pg_temp.try(text, text) TO bank_service;
SET ROLE bank_service;
SELECT pan, pg_temp.try(pan, :'next_year') AS result
  FROM (VALUES ('4111111111111112'),		-- wrong check digit
			   ('41111111111111111111'),	-- 20 digits
			   ('411111111111'),			-- 12 digits
			   ('4111 1111 1111 1111'),		-- blanks
			   ('4111-1111-1111-1111'),		-- dashes
			   ('４１１１１１１１１１１１１１１１'),	-- full-width digits
			   (''),
			   ('79927398710')) v(pan);
SELECT label, pg_temp.try('4111111111111111', expiry) AS result
  FROM (VALUES ('last month', :'last_month'), ('13/30', '13/30'), ('00/30', '00/30'),
			   ('1/30', '1/30'), ('01-30', '01-30'), ('01/3', '01/3'), ('ab/cd', 'ab/cd'),
			   ('21 years ahead', :'too_far'), ('01/2000', '01/2000')) v(label, expiry);
SELECT bank.tokenize_card(NULL, '01/30');
SELECT bank.tokenize_card('4111111111111111', NULL);
RESET ROLE;

-- stored encrypted under pgbank.card_key: the column holds no digits of it
SELECT count(*) AS cards,
	   count(*) FILTER (WHERE position(convert_to('4111111111111111', 'UTF8') IN pan) > 0) AS in_clear,
	   count(*) FILTER (WHERE pgp_sym_decrypt(pan, current_setting('pgbank.card_key'))
							  = '4111111111111111') AS decrypts
  FROM bank.cards;

-- detokenize: bank_service only
SET ROLE bank_service;
SELECT pan, expiry = :'next_year_long' AS expiry_ok FROM bank.detokenize_card(:'visa');
SELECT * FROM bank.detokenize_card('tok_nosuchtokennosuchtokennosuchtoke');
SELECT * FROM bank.detokenize_card(NULL);
-- the service reads masked numbers, never the ciphertext
SELECT masked FROM bank.cards WHERE token = :'visa';
SELECT pan FROM bank.cards WHERE token = :'visa';
RESET ROLE;
SET ROLE bank_admin;
SELECT * FROM bank.detokenize_card(:'visa');
SELECT * FROM bank.tokenize_card('4111111111111111', :'next_year');
SELECT masked FROM bank.cards WHERE token = :'visa';
RESET ROLE;
SET ROLE bank_auditor;
SELECT * FROM bank.detokenize_card(:'visa');
RESET ROLE;
SET ROLE bank_customer;
SELECT * FROM bank.detokenize_card(:'visa');
SELECT count(*) FROM bank.cards;
RESET ROLE;

-- the audit trail: one row per tokenize and detokenize, naming the token
-- and the last four digits, never the number
SELECT action, count(*) FROM bank.audit_events WHERE resource_type = 'card' GROUP BY 1 ORDER BY 1;
SELECT action, metadata FROM bank.audit_events
 WHERE resource_type = 'card' AND resource_id = :'visa' ORDER BY id;
SELECT count(*) AS audit_rows_with_a_number
  FROM bank.audit_events e
 WHERE (e.*)::text ~ '4111111111111111|378282246310005|4222222222222|6011111111111117';

-- without the key nothing is stored or shown
SET pgbank.card_key = 'too short';
SET ROLE bank_service;
SELECT * FROM bank.tokenize_card('4111111111111111', :'next_year');
SELECT * FROM bank.detokenize_card(:'visa');
RESET ROLE;
-- with another key, the number does not decrypt
SET pgbank.card_key = 'a card key that is long enough but not the right one';
SET ROLE bank_service;
SELECT * FROM bank.detokenize_card(:'visa');
RESET ROLE;
RESET pgbank.card_key;

-- the log filter: a card number in any message that reaches the server log
-- is masked, and the client gets the masked message too; digit runs that
-- are not card numbers (too short, or failing the Luhn check) are left
-- alone.  A notice below log_min_messages is not logged and not filtered.
\set VERBOSITY default
DO $$ BEGIN RAISE NOTICE 'not logged: 4111111111111111'; END $$;
DO $$ BEGIN RAISE EXCEPTION 'failing with 6011111111111117 and 4111 1111-1111 1111'
	USING DETAIL = 'detail 378282246310005', HINT = 'hint 4222222222222 (a card), account 000000000197, 1234567890123 and 4000123456789010 (no cards)'; END $$;
\set VERBOSITY sqlstate
