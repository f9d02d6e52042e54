/* sql/pgbank.sql -- install script of pgbank (the one editable copy; the
 * Makefile copies it to pgbank--<version>.sql at build time) */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION pgbank CASCADE" to load this file. \quit

/*
 * Money is stored as bigint minor units of the account's currency; amounts
 * are numeric at the SQL interface.  Every movement is a transfer with a
 * debit leg and a credit leg of equal amount.  A leg that must check funds
 * (a debit of a customer account) locks the account row and is written as an
 * entry at once; a leg that needs no check (any credit, any leg of a system
 * account) is written lock-free to bank.pending_legs and folded into entries
 * later, under the account lock, by whoever next holds it.  So:
 *
 *   posted balance = accounts.balance + sum(pending_legs.amount)
 *   accounts.balance = sum(entries.amount) = last entries.balance_after
 *   per transfer: sum(legs) = 0;  per currency: sum(posted balances) = 0
 *
 * bank.check_ledger() reports any row that breaks these.
 */

REVOKE ALL ON SCHEMA bank FROM PUBLIC;

--
-- Roles.  Cluster-wide, so created only when absent and never dropped by
-- DROP EXTENSION.  API roles are NOLOGIN groups: a person or program logs in
-- as a role of its own that is a member of one.  bank_gateway is the HTTP
-- server's login: NOINHERIT, so it holds no privilege until it switches
-- (SET LOCAL ROLE) to the role of the request, and a gateway session gets
-- no staff authority without a credential (see identity.c).  bank_engine is
-- the ledger's own role: the C code switches to it for its writes; it cannot
-- log in, bypasses row-level security, and must have no members.
--
DO $$
DECLARE
	r text;
BEGIN
	FOREACH r IN ARRAY ARRAY['bank_anon', 'bank_customer', 'bank_teller', 'bank_auditor',
							 'bank_service', 'bank_admin']
	LOOP
		IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r) THEN
			EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
		END IF;
	END LOOP;
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'bank_gateway') THEN
		CREATE ROLE bank_gateway LOGIN NOINHERIT;
	ELSIF (SELECT rolinherit FROM pg_catalog.pg_roles WHERE rolname = 'bank_gateway') THEN
		ALTER ROLE bank_gateway NOINHERIT;
	END IF;
	GRANT bank_anon, bank_customer, bank_teller, bank_auditor, bank_service, bank_admin
		TO bank_gateway;
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'bank_engine') THEN
		CREATE ROLE bank_engine NOLOGIN NOINHERIT BYPASSRLS;
	ELSIF EXISTS (SELECT FROM pg_catalog.pg_roles
				   WHERE rolname = 'bank_engine'
					 AND (rolcanlogin OR rolsuper OR NOT rolbypassrls))
		  OR EXISTS (SELECT FROM pg_catalog.pg_auth_members
					  WHERE roleid = 'bank_engine'::regrole) THEN
		RAISE EXCEPTION 'role bank_engine exists but is not pgbank''s'
			USING DETAIL = 'It must be NOLOGIN, BYPASSRLS, not a superuser, and have no members.';
	END IF;
END
$$;

--
-- Domains: single-column rules.  A domain's check is compiled once per
-- session and runs only when a value of it is stored, whereas a table CHECK
-- is re-planned by every statement and every UPDATE runs all of them; so
-- single-column rules live here and tables keep only rules across columns.
--

CREATE DOMAIN bank.minor_amount AS bigint CHECK (VALUE > 0);
COMMENT ON DOMAIN bank.minor_amount IS 'A positive amount in minor units of a currency';
CREATE DOMAIN bank.leg_amount AS bigint CHECK (VALUE <> 0);
COMMENT ON DOMAIN bank.leg_amount IS 'A signed, non-zero amount in minor units: negative debits, positive credits';
CREATE DOMAIN bank.minor_nonneg AS bigint CHECK (VALUE >= 0);
COMMENT ON DOMAIN bank.minor_nonneg IS 'A non-negative amount in minor units (limits, reservations)';
CREATE DOMAIN bank.account_number AS text CHECK (VALUE ~ '^[0-9]{12}$');
COMMENT ON DOMAIN bank.account_number IS 'Twelve digits: ten, then two ISO 7064 MOD 97-10 check digits';
CREATE DOMAIN bank.label AS text CHECK (char_length(VALUE) BETWEEN 1 AND 100);
COMMENT ON DOMAIN bank.label IS 'A short name: 1 to 100 characters';
CREATE DOMAIN bank.note AS text CHECK (char_length(VALUE) <= 500);
COMMENT ON DOMAIN bank.note IS 'A description or reason: at most 500 characters';
CREATE DOMAIN bank.idempotency_key AS text CHECK (char_length(VALUE) BETWEEN 1 AND 255);
COMMENT ON DOMAIN bank.idempotency_key IS 'A client''s idempotency key: 1 to 255 characters';
CREATE DOMAIN bank.metadata AS jsonb CHECK (jsonb_typeof(VALUE) = 'object');
COMMENT ON DOMAIN bank.metadata IS 'Free-form metadata: a JSON object';

--
-- Currencies (ISO 4217)
--

CREATE TABLE bank.currencies (
	code		char(3) PRIMARY KEY CHECK (code ~ '^[A-Z]{3}$'),
	numeric_code smallint NOT NULL UNIQUE CHECK (numeric_code BETWEEN 1 AND 999),
	exponent	smallint NOT NULL CHECK (exponent BETWEEN 0 AND 4),
	name		text NOT NULL
);

COMMENT ON TABLE bank.currencies IS
'ISO 4217 currencies: code, numeric code and the exponent of the minor unit (JPY 0, USD 2, BHD 3)';

INSERT INTO bank.currencies (code, numeric_code, exponent, name) VALUES
('AED', 784, 2, 'UAE Dirham'), ('AFN', 971, 2, 'Afghani'), ('ALL', 8, 2, 'Lek'),
('AMD', 51, 2, 'Armenian Dram'), ('AOA', 973, 2, 'Kwanza'), ('ARS', 32, 2, 'Argentine Peso'),
('AUD', 36, 2, 'Australian Dollar'), ('AWG', 533, 2, 'Aruban Florin'), ('AZN', 944, 2, 'Azerbaijan Manat'),
('BAM', 977, 2, 'Convertible Mark'), ('BBD', 52, 2, 'Barbados Dollar'), ('BDT', 50, 2, 'Taka'),
('BGN', 975, 2, 'Bulgarian Lev'), ('BHD', 48, 3, 'Bahraini Dinar'), ('BIF', 108, 0, 'Burundi Franc'),
('BMD', 60, 2, 'Bermudian Dollar'), ('BND', 96, 2, 'Brunei Dollar'), ('BOB', 68, 2, 'Boliviano'),
('BRL', 986, 2, 'Brazilian Real'), ('BSD', 44, 2, 'Bahamian Dollar'), ('BTN', 64, 2, 'Ngultrum'),
('BWP', 72, 2, 'Pula'), ('BYN', 933, 2, 'Belarusian Ruble'), ('BZD', 84, 2, 'Belize Dollar'),
('CAD', 124, 2, 'Canadian Dollar'), ('CDF', 976, 2, 'Congolese Franc'), ('CHF', 756, 2, 'Swiss Franc'),
('CLF', 990, 4, 'Unidad de Fomento'), ('CLP', 152, 0, 'Chilean Peso'), ('CNY', 156, 2, 'Yuan Renminbi'),
('COP', 170, 2, 'Colombian Peso'), ('CRC', 188, 2, 'Costa Rican Colon'), ('CUP', 192, 2, 'Cuban Peso'),
('CVE', 132, 2, 'Cabo Verde Escudo'), ('CZK', 203, 2, 'Czech Koruna'), ('DJF', 262, 0, 'Djibouti Franc'),
('DKK', 208, 2, 'Danish Krone'), ('DOP', 214, 2, 'Dominican Peso'), ('DZD', 12, 2, 'Algerian Dinar'),
('EGP', 818, 2, 'Egyptian Pound'), ('ERN', 232, 2, 'Nakfa'), ('ETB', 230, 2, 'Ethiopian Birr'),
('EUR', 978, 2, 'Euro'), ('FJD', 242, 2, 'Fiji Dollar'), ('FKP', 238, 2, 'Falkland Islands Pound'),
('GBP', 826, 2, 'Pound Sterling'), ('GEL', 981, 2, 'Lari'), ('GHS', 936, 2, 'Ghana Cedi'),
('GIP', 292, 2, 'Gibraltar Pound'), ('GMD', 270, 2, 'Dalasi'), ('GNF', 324, 0, 'Guinean Franc'),
('GTQ', 320, 2, 'Quetzal'), ('GYD', 328, 2, 'Guyana Dollar'), ('HKD', 344, 2, 'Hong Kong Dollar'),
('HNL', 340, 2, 'Lempira'), ('HTG', 332, 2, 'Gourde'), ('HUF', 348, 2, 'Forint'),
('IDR', 360, 2, 'Rupiah'), ('ILS', 376, 2, 'New Israeli Sheqel'), ('INR', 356, 2, 'Indian Rupee'),
('IQD', 368, 3, 'Iraqi Dinar'), ('IRR', 364, 2, 'Iranian Rial'), ('ISK', 352, 0, 'Iceland Krona'),
('JMD', 388, 2, 'Jamaican Dollar'), ('JOD', 400, 3, 'Jordanian Dinar'), ('JPY', 392, 0, 'Yen'),
('KES', 404, 2, 'Kenyan Shilling'), ('KGS', 417, 2, 'Som'), ('KHR', 116, 2, 'Riel'),
('KMF', 174, 0, 'Comorian Franc'), ('KRW', 410, 0, 'Won'), ('KWD', 414, 3, 'Kuwaiti Dinar'),
('KYD', 136, 2, 'Cayman Islands Dollar'), ('KZT', 398, 2, 'Tenge'), ('LAK', 418, 2, 'Lao Kip'),
('LBP', 422, 2, 'Lebanese Pound'), ('LKR', 144, 2, 'Sri Lanka Rupee'), ('LRD', 430, 2, 'Liberian Dollar'),
('LSL', 426, 2, 'Loti'), ('LYD', 434, 3, 'Libyan Dinar'), ('MAD', 504, 2, 'Moroccan Dirham'),
('MDL', 498, 2, 'Moldovan Leu'), ('MGA', 969, 2, 'Malagasy Ariary'), ('MKD', 807, 2, 'Denar'),
('MMK', 104, 2, 'Kyat'), ('MNT', 496, 2, 'Tugrik'), ('MOP', 446, 2, 'Pataca'),
('MRU', 929, 2, 'Ouguiya'), ('MUR', 480, 2, 'Mauritius Rupee'), ('MVR', 462, 2, 'Rufiyaa'),
('MWK', 454, 2, 'Malawi Kwacha'), ('MXN', 484, 2, 'Mexican Peso'), ('MYR', 458, 2, 'Malaysian Ringgit'),
('MZN', 943, 2, 'Mozambique Metical'), ('NAD', 516, 2, 'Namibia Dollar'), ('NGN', 566, 2, 'Naira'),
('NIO', 558, 2, 'Cordoba Oro'), ('NOK', 578, 2, 'Norwegian Krone'), ('NPR', 524, 2, 'Nepalese Rupee'),
('NZD', 554, 2, 'New Zealand Dollar'), ('OMR', 512, 3, 'Rial Omani'), ('PAB', 590, 2, 'Balboa'),
('PEN', 604, 2, 'Sol'), ('PGK', 598, 2, 'Kina'), ('PHP', 608, 2, 'Philippine Peso'),
('PKR', 586, 2, 'Pakistan Rupee'), ('PLN', 985, 2, 'Zloty'), ('PYG', 600, 0, 'Guarani'),
('QAR', 634, 2, 'Qatari Rial'), ('RON', 946, 2, 'Romanian Leu'), ('RSD', 941, 2, 'Serbian Dinar'),
('RUB', 643, 2, 'Russian Ruble'), ('RWF', 646, 0, 'Rwanda Franc'), ('SAR', 682, 2, 'Saudi Riyal'),
('SBD', 90, 2, 'Solomon Islands Dollar'), ('SCR', 690, 2, 'Seychelles Rupee'), ('SDG', 938, 2, 'Sudanese Pound'),
('SEK', 752, 2, 'Swedish Krona'), ('SGD', 702, 2, 'Singapore Dollar'), ('SHP', 654, 2, 'Saint Helena Pound'),
('SLE', 925, 2, 'Leone'), ('SOS', 706, 2, 'Somali Shilling'), ('SRD', 968, 2, 'Surinam Dollar'),
('SSP', 728, 2, 'South Sudanese Pound'), ('STN', 930, 2, 'Dobra'), ('SVC', 222, 2, 'El Salvador Colon'),
('SYP', 760, 2, 'Syrian Pound'), ('SZL', 748, 2, 'Lilangeni'), ('THB', 764, 2, 'Baht'),
('TJS', 972, 2, 'Somoni'), ('TMT', 934, 2, 'Turkmenistan New Manat'), ('TND', 788, 3, 'Tunisian Dinar'),
('TOP', 776, 2, 'Pa''anga'), ('TRY', 949, 2, 'Turkish Lira'), ('TTD', 780, 2, 'Trinidad and Tobago Dollar'),
('TWD', 901, 2, 'New Taiwan Dollar'), ('TZS', 834, 2, 'Tanzanian Shilling'), ('UAH', 980, 2, 'Hryvnia'),
('UGX', 800, 0, 'Uganda Shilling'), ('USD', 840, 2, 'US Dollar'), ('UYI', 940, 0, 'Uruguay Peso en Unidades Indexadas'),
('UYU', 858, 2, 'Peso Uruguayo'), ('UYW', 927, 4, 'Unidad Previsional'), ('UZS', 860, 2, 'Uzbekistan Sum'),
('VED', 926, 2, 'Bolivar Soberano'), ('VES', 928, 2, 'Bolivar Soberano'), ('VND', 704, 0, 'Dong'),
('VUV', 548, 0, 'Vatu'), ('WST', 882, 2, 'Tala'), ('XAF', 950, 0, 'CFA Franc BEAC'),
('XCD', 951, 2, 'East Caribbean Dollar'), ('XOF', 952, 0, 'CFA Franc BCEAO'), ('XPF', 953, 0, 'CFP Franc'),
('YER', 886, 2, 'Yemeni Rial'), ('ZAR', 710, 2, 'Rand'), ('ZMW', 967, 2, 'Zambian Kwacha'),
('ZWL', 932, 2, 'Zimbabwe Dollar');

--
-- Customers: identity, credentials and personal data
--

CREATE TYPE bank.kyc_status AS ENUM ('pending', 'in_review', 'approved', 'rejected');
COMMENT ON TYPE bank.kyc_status IS
'Know-your-customer review: pending, in_review, approved, rejected; set by staff';

CREATE TABLE bank.customers (
	id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	email		text NOT NULL UNIQUE
				CHECK (email = lower(btrim(email)) AND email ~ '^[^@\s]+@[^@\s]+$' AND length(email) <= 254),
	first_name	bank.label NOT NULL,
	last_name	bank.label NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT now(),
	kyc_status	bank.kyc_status NOT NULL DEFAULT 'pending',
	kyc_updated_at timestamptz,
	password_hash text,
	password_changed_at timestamptz,
	failed_logins integer NOT NULL DEFAULT 0 CHECK (failed_logins >= 0),
	locked_until timestamptz,
	mfa_enabled boolean NOT NULL DEFAULT false,
	mfa_secret	bytea,
	mfa_pending_secret bytea,
	mfa_last_step bigint NOT NULL DEFAULT 0,
	phone		bytea,
	national_id bytea,
	address		bytea,
	erased_at	timestamptz,
	CONSTRAINT customers_mfa_has_secret CHECK (NOT mfa_enabled OR mfa_secret IS NOT NULL),
	CONSTRAINT customers_erased_has_no_secrets
		CHECK (erased_at IS NULL OR (password_hash IS NULL AND mfa_secret IS NULL
									 AND mfa_pending_secret IS NULL))
);

COMMENT ON TABLE bank.customers IS
'Customers of the bank; every non-system account belongs to one. Credentials and personal data are readable by bank_engine only: password_hash is bcrypt (pgcrypto), mfa secrets, phone, national_id and address are encrypted under the customer''s data key (bank.customer_keys)';
COMMENT ON COLUMN bank.customers.password_hash IS 'bcrypt hash; NULL: the customer cannot log in (created by staff, or erased)';
COMMENT ON COLUMN bank.customers.failed_logins IS 'Failed logins since the last success; pgbank.max_failed_logins of them lock the customer out';
COMMENT ON COLUMN bank.customers.mfa_last_step IS 'The last TOTP time step accepted: a code is never accepted twice';
COMMENT ON COLUMN bank.customers.phone IS 'pgp_sym_encrypt under the customer''s data key';
COMMENT ON COLUMN bank.customers.erased_at IS 'When the customer''s data key was destroyed (crypto-shredding)';

CREATE TABLE bank.customer_keys (
	customer_id bigint PRIMARY KEY REFERENCES bank.customers (id),
	wrapped_key bytea NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE bank.customer_keys IS
'Per-customer data keys, encrypted (pgp_sym_encrypt_bytea) under pgbank.master_key. Deleting a row crypto-shreds that customer''s personal data';

CREATE TABLE bank.sessions (
	id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	customer_id bigint NOT NULL REFERENCES bank.customers (id),
	created_at	timestamptz NOT NULL DEFAULT now(),
	last_seen_at timestamptz NOT NULL DEFAULT now(),
	expires_at	timestamptz NOT NULL,
	revoked_at	timestamptz,
	revoked_reason text CHECK (revoked_reason IN ('logout', 'refresh_reuse', 'idle', 'erased', 'password_changed', 'locked'))
);
CREATE INDEX sessions_customer_idx ON bank.sessions (customer_id) WHERE revoked_at IS NULL;
COMMENT ON TABLE bank.sessions IS
'Login sessions: access tokens name their session (sid) and stop working when it is revoked (logout, refresh token reuse, erasure) or expires';

CREATE TABLE bank.refresh_tokens (
	token_hash	bytea PRIMARY KEY CHECK (length(token_hash) = 32),
	session_id	bigint NOT NULL REFERENCES bank.sessions (id),
	issued_at	timestamptz NOT NULL DEFAULT now(),
	used_at		timestamptz
);
CREATE INDEX refresh_tokens_session_idx ON bank.refresh_tokens (session_id);
COMMENT ON TABLE bank.refresh_tokens IS
'Refresh tokens by SHA-256 of the token (the token itself is never stored). Each is used once: refreshing marks it used and issues the next one of its session; presenting a used one revokes the session (the whole family)';

CREATE TABLE bank.api_keys (
	id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name		bank.label NOT NULL,
	role		name NOT NULL CHECK (role IN ('bank_teller', 'bank_auditor', 'bank_service', 'bank_admin')),
	scopes		text[] NOT NULL CHECK (cardinality(scopes) BETWEEN 1 AND 64),
	prefix		text NOT NULL,
	secret_hash bytea NOT NULL UNIQUE CHECK (length(secret_hash) = 32),
	created_by	name NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT now(),
	expires_at	timestamptz NOT NULL,
	revoked_at	timestamptz,
	CHECK (expires_at > created_at)
);
COMMENT ON TABLE bank.api_keys IS
'API keys of services: bound to one staff role and a list of scopes (function names, or *); stored as the SHA-256 of the key, which is shown once at creation';

--
-- Audit events.  One row per recorded action, written by audit.c in the
-- action's own transaction (or, for a refused call or a declined transfer,
-- in a transaction of its own).  Rows form 64 hash chains, "stripes": a
-- transaction appends to one stripe, which it holds until it ends, so
-- concurrent transactions append to different stripes and never wait on a
-- single head.  Each row's hash is
--   sha256(previous hash || int4 stripe || int8 seq || int8 id || payload)
-- where payload is the canonical encoding of the row's other columns
-- (bank.audit_payload).  See bank.audit_verify.
--
CREATE TABLE bank.audit_events (
	id			bigint NOT NULL,
	at			timestamptz NOT NULL,
	xid			xid8 NOT NULL,
	actor_customer bigint,
	api_key_id	bigint,
	acting_role name NOT NULL,
	session_role name NOT NULL,
	action		text NOT NULL,
	resource_type text NOT NULL,
	resource_id text,
	metadata	jsonb NOT NULL,
	request_id	text,
	client_addr inet,
	user_agent	text,
	stripe		integer NOT NULL,
	seq			bigint NOT NULL,
	hash		bytea NOT NULL,
	PRIMARY KEY (stripe, seq)
);
CREATE SEQUENCE bank.audit_events_id_seq OWNED BY bank.audit_events.id;
-- keyset pagination is on (at, id), newest first, under every filter
CREATE INDEX audit_events_at_idx ON bank.audit_events (at, id);
CREATE INDEX audit_events_actor_idx ON bank.audit_events (actor_customer, at, id)
	WHERE actor_customer IS NOT NULL;
CREATE INDEX audit_events_resource_idx ON bank.audit_events (resource_type, resource_id, at, id);
CREATE INDEX audit_events_action_idx ON bank.audit_events (action, at, id);
COMMENT ON TABLE bank.audit_events IS
'Who did what, when and from where: every mutation, logins and their failures, lockouts, MFA and key changes, refused calls, DDL on the bank schema. Rows are appended by the extension only (in the action''s transaction), never changed, and hash-chained in 64 stripes (bank.audit_verify). Removed only by bank.purge_expired, past pgbank.audit_retention';
COMMENT ON COLUMN bank.audit_events.stripe IS 'The hash chain (0-63) the row belongs to';
COMMENT ON COLUMN bank.audit_events.seq IS 'Position in its stripe: 1, 2, 3, ... with no gaps';
COMMENT ON COLUMN bank.audit_events.hash IS
'sha256(hash of the previous row of the stripe (or of its seal, or 32 zero bytes) || int4 stripe || int8 seq || int8 id || bank.audit_payload(row)), integers big-endian';

-- Where purged rows were: per stripe, the position and hash of the last
-- row removed; verification of what remains starts from it.
CREATE TABLE bank.audit_seals (
	stripe		integer PRIMARY KEY,
	seq			bigint NOT NULL,
	hash		bytea NOT NULL,
	at			timestamptz NOT NULL
);
COMMENT ON TABLE bank.audit_seals IS
'Sealed heads of purged audit segments: per stripe, the position and hash of the last row bank.purge_expired removed. The latest audit.purge event repeats them, so a forged seal does not verify';

-- Anchors handed out by bank.audit_head(), chained among themselves.
CREATE TABLE bank.audit_checkpoints (
	checkpoint	bigint PRIMARY KEY,
	at			timestamptz NOT NULL,
	stripes		integer[] NOT NULL,
	seqs		bigint[] NOT NULL,
	hashes		bytea[] NOT NULL,
	hash		bytea NOT NULL
);
COMMENT ON TABLE bank.audit_checkpoints IS
'Anchors returned by bank.audit_head(): the last committed row (seq, hash) of every non-empty stripe at that moment; every row named here must stay, or be sealed by a purge (bank.audit_verify checks the latest checkpoint, or the anchor given). hash = sha256(previous checkpoint''s hash || int8 checkpoint || for each stripe: int4 stripe || int8 seq || hash)';

--
-- Accounts
--

CREATE TYPE bank.account_type AS ENUM (
	'checking', 'savings', 'investment',
	'settlement', 'fee_income', 'interest_expense'
);
COMMENT ON TYPE bank.account_type IS
'checking, savings and investment accounts belong to customers; settlement (the outside world), fee_income and interest_expense are system accounts, one per currency';

CREATE TYPE bank.account_status AS ENUM ('active', 'frozen', 'closed');
COMMENT ON TYPE bank.account_status IS
'active; frozen (no debits or holds, credits still land); closed (nothing moves, final)';

CREATE TABLE bank.accounts (
	id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	number		bank.account_number NOT NULL UNIQUE,
	customer_id bigint REFERENCES bank.customers (id),
	type		bank.account_type NOT NULL,
	name		bank.label NOT NULL,
	currency	char(3) NOT NULL REFERENCES bank.currencies (code),
	status		bank.account_status NOT NULL DEFAULT 'active',
	overdraft_limit bank.minor_nonneg NOT NULL DEFAULT 0,
	balance		bigint NOT NULL DEFAULT 0,
	pending_out bank.minor_nonneg NOT NULL DEFAULT 0,
	opened_at	timestamptz NOT NULL DEFAULT now(),
	closed_at	timestamptz,
	status_reason bank.note,
	CONSTRAINT accounts_system_has_no_customer
		CHECK ((type IN ('settlement', 'fee_income', 'interest_expense')) = (customer_id IS NULL)),
	-- the folded balance, and the folded balance less reservations, stay
	-- within the overdraft limit (system accounts have no limit)
	CONSTRAINT accounts_within_overdraft
		CHECK (customer_id IS NULL OR
			   (balance >= -overdraft_limit AND balance - pending_out >= -overdraft_limit)),
	-- closed_at is set exactly when closed, and a closed account is empty
	CONSTRAINT accounts_closed
		CHECK ((status = 'closed') = (closed_at IS NOT NULL) AND
			   (status <> 'closed' OR (balance = 0 AND pending_out = 0)))
);

CREATE UNIQUE INDEX accounts_one_system_account_per_currency
	ON bank.accounts (type, currency) WHERE customer_id IS NULL;
CREATE INDEX accounts_customer_idx ON bank.accounts (customer_id, id) WHERE customer_id IS NOT NULL;

COMMENT ON TABLE bank.accounts IS
'Accounts. balance is the folded part of the posted balance (sum of entries); lock-free legs not yet folded are in pending_legs. pending_out is the sum of open holds on the account. Only the ledger engine changes balance and pending_out';
COMMENT ON COLUMN bank.accounts.number IS
'10 digits and 2 ISO 7064 MOD 97-10 check digits';
COMMENT ON COLUMN bank.accounts.balance IS
'Folded posted balance in minor units; equals the sum and the last balance_after of the account''s entries';
COMMENT ON COLUMN bank.accounts.pending_out IS
'Minor units reserved by open holds on this account';

--
-- Transfers
--

CREATE TYPE bank.transfer_kind AS ENUM (
	'deposit', 'withdrawal', 'transfer', 'fee', 'interest', 'reversal'
);
COMMENT ON TYPE bank.transfer_kind IS 'What a transfer is for';

CREATE TYPE bank.transfer_status AS ENUM (
	'pending', 'posted', 'voided', 'failed', 'reversed', 'held_for_review'
);
COMMENT ON TYPE bank.transfer_status IS
'pending (a hold: funds reserved), posted, voided (a released hold), failed (declined; no money moved), reversed (posted, then undone by a reversal), held_for_review';

CREATE TABLE bank.transfers (
	id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	kind		bank.transfer_kind NOT NULL,
	status		bank.transfer_status NOT NULL,
	from_account bigint NOT NULL,
	to_account	bigint NOT NULL,
	currency	char(3) NOT NULL,
	amount		bank.minor_amount NOT NULL,
	posted_amount bank.minor_amount,
	idempotency_scope text,
	idempotency_key bank.idempotency_key,
	fingerprint bytea,
	description bank.note,
	metadata	bank.metadata NOT NULL DEFAULT '{}',
	reverses	bigint REFERENCES bank.transfers (id),
	failure_code char(5),
	failure_message text,
	created_at	timestamptz NOT NULL DEFAULT now(),
	posted_at	timestamptz,
	expires_at	timestamptz,
	resolved_at timestamptz,
	-- from_account and to_account exist and hold the transfer's currency:
	-- checked by the transfers_guard trigger without a row lock, which is
	-- sound because accounts are never deleted and their id, currency and
	-- owner never change (accounts_guard).  A foreign key would take FOR KEY
	-- SHARE on both rows for every transfer: on the settlement account that
	-- is a multixact per deposit and most of a deposit's time.
	UNIQUE (idempotency_scope, idempotency_key),
	CONSTRAINT transfers_distinct_accounts CHECK (from_account <> to_account),
	CONSTRAINT transfers_key_has_scope_and_fingerprint
		CHECK ((idempotency_key IS NULL) = (idempotency_scope IS NULL)
			   AND (idempotency_key IS NULL) = (fingerprint IS NULL)),
	-- money moved (posted, reversed) exactly when posted_amount and posted_at
	-- are set, never more than authorised; a failure code exactly when failed
	CONSTRAINT transfers_status_columns
		CHECK ((status IN ('posted', 'reversed')) = (posted_amount IS NOT NULL)
			   AND (status IN ('posted', 'reversed')) = (posted_at IS NOT NULL)
			   AND posted_amount <= amount
			   AND (status = 'failed') = (failure_code IS NOT NULL)),
	CONSTRAINT transfers_reversal_reverses
		CHECK ((kind = 'reversal') = (reverses IS NOT NULL))
);

-- Posted transfers are found through their legs; only holds and reversals
-- need indexes of their own here, so a plain transfer pays for two.
CREATE UNIQUE INDEX transfers_one_reversal ON bank.transfers (reverses)
	WHERE reverses IS NOT NULL AND status <> 'failed';
CREATE INDEX transfers_holds_out_idx ON bank.transfers (from_account, id) WHERE expires_at IS NOT NULL;
CREATE INDEX transfers_holds_in_idx ON bank.transfers (to_account, id) WHERE expires_at IS NOT NULL;
CREATE INDEX transfers_hold_expiry_idx ON bank.transfers (expires_at)
	WHERE status IN ('pending', 'held_for_review');
-- Declines have no legs: bank.list_transfers finds them here.  Only failed
-- rows (inserted failed, never changed) are in these indexes.
CREATE INDEX transfers_failed_from_idx ON bank.transfers (from_account, id) WHERE status = 'failed';
CREATE INDEX transfers_failed_to_idx ON bank.transfers (to_account, id) WHERE status = 'failed';

COMMENT ON TABLE bank.transfers IS
'One row per money movement or attempt: its kind, status, accounts, amount in minor units, idempotency key (unique per scope) and the SHA-256 fingerprint of the request that created it';
COMMENT ON COLUMN bank.transfers.amount IS 'Requested (for a hold: authorised) amount in minor units';
COMMENT ON COLUMN bank.transfers.posted_amount IS 'Amount that moved (a capture may be partial)';
COMMENT ON COLUMN bank.transfers.idempotency_scope IS 'Who the key belongs to: keys are unique per scope';
COMMENT ON COLUMN bank.transfers.failure_code IS 'SQLSTATE of the decline, for status failed';

--
-- Legs: entries (folded, with a running balance) and pending legs (lock-free)
--

CREATE TABLE bank.entries (
	id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	account_id	bigint NOT NULL,
	transfer_id bigint NOT NULL REFERENCES bank.transfers (id),
	currency	char(3) NOT NULL,
	amount		bank.leg_amount NOT NULL,
	balance_after bigint NOT NULL,
	posted_at	timestamptz NOT NULL
);

-- A leg's account and currency are those of its transfer's accounts: the
-- deferred constraint trigger transfers_legs_balance checks every leg of a
-- transfer against it at commit (a foreign key per leg would repeat what the
-- transfer's own foreign keys already lock and check).
CREATE INDEX entries_account_idx ON bank.entries (account_id, id) INCLUDE (amount, posted_at);
CREATE INDEX entries_transfer_idx ON bank.entries (transfer_id);

COMMENT ON TABLE bank.entries IS
'Immutable ledger entries, one per leg, in the order they were applied to the account (id), each with the account''s balance after it. UPDATE, DELETE and TRUNCATE are refused';
COMMENT ON COLUMN bank.entries.amount IS 'Signed minor units: negative debits, positive credits';
COMMENT ON COLUMN bank.entries.posted_at IS 'When the money moved (the transfer''s posting time)';

CREATE TABLE bank.pending_legs (
	id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	account_id	bigint NOT NULL,
	transfer_id bigint NOT NULL REFERENCES bank.transfers (id),
	currency	char(3) NOT NULL,
	amount		bank.leg_amount NOT NULL,
	posted_at	timestamptz NOT NULL
);

CREATE INDEX pending_legs_account_idx ON bank.pending_legs (account_id, id) INCLUDE (amount);
CREATE INDEX pending_legs_transfer_idx ON bank.pending_legs (transfer_id);

COMMENT ON TABLE bank.pending_legs IS
'Posted legs written without the account lock (credits, and legs of system accounts), not yet folded into entries; they count in the posted balance. Rows leave only by folding';

--
-- Risk: fraud screening rules, outgoing limits and counters, the review
-- queue (risk.c, review.c).  Every outgoing transfer, withdrawal and hold of
-- a customer account is screened in its own transaction; the customer's
-- counters row is locked FOR NO KEY UPDATE before the debited account, so
-- two moves of one customer (from any of their accounts) are screened one
-- after the other.
--

CREATE TYPE bank.risk_rule_kind AS ENUM (
	'max_amount', 'daily_total', 'monthly_total', 'velocity', 'new_payee', 'unusual_amount'
);
COMMENT ON TYPE bank.risk_rule_kind IS
'What a fraud screening rule looks at: max_amount (one move above amount, optionally only for customers of one KYC status), daily_total and monthly_total (the customer''s outgoing total of the UTC day or month, this move included, above amount), velocity (more than max_count moves in window_minutes), new_payee (first transfer to an account of another customer above amount), unusual_amount (above multiplier times the median of the last history accepted moves, once there are min_history of them)';

CREATE TYPE bank.risk_action AS ENUM ('decline', 'review');
COMMENT ON TYPE bank.risk_action IS
'What a rule that fires does: decline (an error with the rule kind''s SQLSTATE, recorded as a failed transfer) or review (the funds are reserved and the transfer waits, held_for_review, for a teller)';

CREATE TABLE bank.risk_rules (
	id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name		bank.label NOT NULL UNIQUE,
	kind		bank.risk_rule_kind NOT NULL,
	action		bank.risk_action NOT NULL,
	enabled		boolean NOT NULL DEFAULT true,
	currency	char(3) REFERENCES bank.currencies (code),
	kyc_status	bank.kyc_status,
	amount		numeric CHECK (amount > 0 AND amount < 1e15),
	max_count	integer CHECK (max_count BETWEEN 1 AND 99),
	window_minutes integer CHECK (window_minutes BETWEEN 1 AND 1440),
	multiplier	numeric(8, 2) CHECK (multiplier >= 1),
	history		integer CHECK (history BETWEEN 1 AND 50),
	min_history integer CHECK (min_history >= 1 AND min_history <= history),
	created_at	timestamptz NOT NULL DEFAULT now(),
	-- each kind has exactly its parameters
	CONSTRAINT risk_rules_parameters CHECK (CASE kind
		WHEN 'max_amount' THEN currency IS NOT NULL AND amount IS NOT NULL
			AND num_nulls(max_count, window_minutes, multiplier, history, min_history) = 5
		WHEN 'velocity' THEN max_count IS NOT NULL AND window_minutes IS NOT NULL
			AND num_nulls(kyc_status, amount, multiplier, history, min_history) = 5
		WHEN 'unusual_amount' THEN multiplier IS NOT NULL AND history IS NOT NULL
			AND min_history IS NOT NULL
			AND num_nulls(kyc_status, amount, max_count, window_minutes) = 4
		ELSE currency IS NOT NULL AND amount IS NOT NULL
			AND num_nulls(kyc_status, max_count, window_minutes, multiplier, history, min_history) = 6
	END)
);
CREATE INDEX risk_rules_currency_idx ON bank.risk_rules (currency) WHERE enabled;
COMMENT ON TABLE bank.risk_rules IS
'Fraud screening rules, edited by admins with INSERT, UPDATE and DELETE (each change audited as risk_rule.create, .update or .delete; amounts checked against the currency''s exponent). Every enabled rule of the move''s currency (or with currency NULL: velocity and unusual_amount only) is evaluated on every outgoing transfer, withdrawal and hold of a customer account; declines win over reviews, and the first declining rule in kind order, then id, names the SQLSTATE';
COMMENT ON COLUMN bank.risk_rules.amount IS 'Threshold in units of currency (10.50), for max_amount, daily_total, monthly_total and new_payee';
COMMENT ON COLUMN bank.risk_rules.kyc_status IS 'max_amount only: apply to customers with this KYC status (NULL: every customer)';
COMMENT ON COLUMN bank.risk_rules.multiplier IS 'unusual_amount: fires when the amount exceeds multiplier times the median of the customer''s last history accepted moves in the currency';

CREATE TABLE bank.customer_limits (
	customer_id bigint NOT NULL REFERENCES bank.customers (id),
	currency	char(3) NOT NULL REFERENCES bank.currencies (code),
	daily_limit bank.minor_nonneg,
	monthly_limit bank.minor_nonneg,
	updated_at	timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (customer_id, currency)
);
COMMENT ON TABLE bank.customer_limits IS
'Per-customer outgoing limits in minor units of a currency, set by staff with bank.set_customer_limits (NULL: no limit): the UTC day''s and month''s outgoing total (transfers, withdrawals and holds, this one included) may not exceed them (PB071, PB072)';

CREATE TABLE bank.risk_counters (
	customer_id bigint NOT NULL REFERENCES bank.customers (id),
	currency	char(3) NOT NULL,
	day			date NOT NULL,
	day_total	bank.minor_nonneg NOT NULL DEFAULT 0,
	month		date NOT NULL,
	month_total bank.minor_nonneg NOT NULL DEFAULT 0,
	recent_at	timestamptz[] NOT NULL DEFAULT '{}',
	recent_amounts bigint[] NOT NULL DEFAULT '{}',
	PRIMARY KEY (customer_id, currency)
);
COMMENT ON TABLE bank.risk_counters IS
'Per customer and currency, maintained by the screening in the move''s own transaction under this row''s FOR NO KEY UPDATE lock: the outgoing total of the UTC day and month (moves accepted or held for review; a void, rejection, expiry or partial capture gives its rest back if still in the same day or month), the times of the last such moves (velocity) and the amounts of the last accepted without review (unusual_amount), as many as the enabled rules need';

CREATE TABLE bank.payees (
	customer_id bigint NOT NULL,
	account_id	bigint NOT NULL,
	first_at	timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (customer_id, account_id)
);
COMMENT ON TABLE bank.payees IS
'Accounts of other customers a customer has transferred to (a transfer accepted without review, or approved): the new_payee rule looks here';

CREATE TYPE bank.review_status AS ENUM ('open', 'approved', 'rejected', 'expired');
COMMENT ON TYPE bank.review_status IS 'A review item: open, approved or rejected by staff, or expired (voided by bank.expire_holds)';

CREATE TABLE bank.fraud_reviews (
	transfer_id bigint PRIMARY KEY REFERENCES bank.transfers (id),
	customer_id bigint NOT NULL,
	hold		boolean NOT NULL,
	rules		jsonb NOT NULL,
	status		bank.review_status NOT NULL DEFAULT 'open',
	created_at	timestamptz NOT NULL DEFAULT now(),
	decided_at	timestamptz,
	decided_by	name,
	reason		bank.note,
	CONSTRAINT fraud_reviews_decided CHECK ((status = 'open') = (decided_at IS NULL))
);
CREATE INDEX fraud_reviews_open_idx ON bank.fraud_reviews (transfer_id) WHERE status = 'open';
COMMENT ON TABLE bank.fraud_reviews IS
'The review queue: one row per transfer held for review, with the rules that fired ([{"id", "name", "kind"}]) and, once decided, the decision, who took it, when and why. Written only by the screening, bank.review_approve, bank.review_reject and bank.expire_holds';

--
-- Internal helpers (C)
--

CREATE FUNCTION bank.minor_to_amount(minor bigint, exponent integer) RETURNS numeric
	AS 'MODULE_PATHNAME', 'pgbank_minor_to_amount'
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION bank.minor_to_amount(bigint, integer) IS
'An amount in minor units as an exact numeric with the currency''s exponent as scale';

CREATE FUNCTION bank.amount_to_minor(amount numeric, currency char(3)) RETURNS bigint
	AS 'MODULE_PATHNAME', 'pgbank_amount_to_minor'
	LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION bank.amount_to_minor(numeric, char) IS
'An exact amount in minor units of the currency; error PB006 when it is not positive or has more fraction digits than the currency allows, PB007 on overflow, PB008 for an unknown currency';

CREATE FUNCTION bank.account_amount(account bigint, minor bigint) RETURNS numeric
	AS 'MODULE_PATHNAME', 'pgbank_account_amount'
	LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION bank.account_amount(bigint, bigint) IS
'An integer of minor units of the account''s currency as its exact amount (1050 in a USD account is 10.50), for JSON clients that send minor units; NULL minor units give NULL. PB006 when not positive, PB007 above 10^15; the account is read as the caller under row-level security, so one the caller may not see is PB009 like one that does not exist. Takes no lock';

CREATE FUNCTION bank.account_number_valid(number text) RETURNS boolean
	AS 'MODULE_PATHNAME', 'pgbank_account_number_valid'
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION bank.account_number_valid(text) IS
'True when the text is 12 digits whose last two are the ISO 7064 MOD 97-10 check digits of the first ten';

--
-- Views (security_invoker: they show what the caller may see)
--

CREATE VIEW bank.account_balances WITH (security_invoker = true) AS
SELECT a.id, a.number, a.customer_id, a.type, a.name, a.currency, a.status,
	   bank.minor_to_amount(p.posted, c.exponent) AS balance,
	   bank.minor_to_amount(a.pending_out, c.exponent) AS pending_out,
	   bank.minor_to_amount(p.posted - a.pending_out, c.exponent) AS available,
	   bank.minor_to_amount(a.overdraft_limit, c.exponent) AS overdraft_limit,
	   a.opened_at, a.closed_at
  FROM bank.accounts a
  JOIN bank.currencies c ON c.code = a.currency
 CROSS JOIN LATERAL (
	SELECT a.balance + coalesce((SELECT sum(l.amount) FROM bank.pending_legs l
								  WHERE l.account_id = a.id), 0)::bigint AS posted) p;
COMMENT ON VIEW bank.account_balances IS
'Accounts with posted balance (folded balance plus pending legs), reserved and available amounts as exact numerics';

--
-- The account API
--

CREATE TYPE bank.account_info AS (
	id			bigint,
	number		text,
	customer_id bigint,
	type		bank.account_type,
	name		text,
	currency	char(3),
	status		bank.account_status,
	balance		numeric,
	pending_out numeric,
	available	numeric,
	overdraft_limit numeric,
	opened_at	timestamptz,
	closed_at	timestamptz
);
COMMENT ON TYPE bank.account_info IS 'An account as the API returns it: amounts as exact numerics in the account''s currency';

CREATE FUNCTION bank.create_customer(email text, first_name text, last_name text) RETURNS bigint
	AS 'MODULE_PATHNAME', 'pgbank_create_customer'
	LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.create_customer(text, text, text) IS
'Creates a customer (email normalised: trimmed and lower-cased) and returns its id; PB024 when the email is taken';

CREATE FUNCTION bank.open_account(type bank.account_type, name text, currency char(3), customer_id bigint DEFAULT NULL)
	RETURNS bank.account_info
	AS 'MODULE_PATHNAME', 'pgbank_open_account'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.open_account(bank.account_type, text, char, bigint) IS
'Opens a checking, savings or investment account for the customer; at most pgbank.max_open_accounts open accounts per customer (PB011); locks the customer row FOR NO KEY UPDATE to count them';

CREATE FUNCTION bank.get_account(id bigint) RETURNS bank.account_info
	AS 'MODULE_PATHNAME', 'pgbank_get_account'
	LANGUAGE C STABLE STRICT PARALLEL RESTRICTED;
COMMENT ON FUNCTION bank.get_account(bigint) IS 'An account with its balances; PB009 when it does not exist';

CREATE FUNCTION bank.list_accounts(customer_id bigint DEFAULT NULL, type bank.account_type DEFAULT NULL,
								   after bigint DEFAULT NULL, "limit" integer DEFAULT 50)
	RETURNS SETOF bank.account_info
	AS 'MODULE_PATHNAME', 'pgbank_list_accounts'
	LANGUAGE C STABLE PARALLEL RESTRICTED ROWS 10;
COMMENT ON FUNCTION bank.list_accounts(bigint, bank.account_type, bigint, integer) IS
'A customer''s accounts in id order, optionally of one type; keyset pagination: pass the last id seen as after; limit 1 to 1000';

CREATE FUNCTION bank.rename_account(id bigint, name text) RETURNS bank.account_info
	AS 'MODULE_PATHNAME', 'pgbank_rename_account'
	LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.rename_account(bigint, text) IS 'Renames an account that is not closed';

CREATE FUNCTION bank.freeze_account(id bigint, reason text) RETURNS bank.account_info
	AS 'MODULE_PATHNAME', 'pgbank_freeze_account'
	LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.freeze_account(bigint, text) IS
'Freezes an active account: no debits or holds from it until unfrozen (credits still land; staff reversals still apply). Locks the account FOR NO KEY UPDATE';

CREATE FUNCTION bank.unfreeze_account(id bigint, reason text) RETURNS bank.account_info
	AS 'MODULE_PATHNAME', 'pgbank_unfreeze_account'
	LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.unfreeze_account(bigint, text) IS 'Makes a frozen account active again';

CREATE FUNCTION bank.close_account(id bigint) RETURNS bank.account_info
	AS 'MODULE_PATHNAME', 'pgbank_close_account'
	LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.close_account(bigint) IS
'Closes an account whose posted balance is zero and that has no open holds in or out (PB012, PB013). Locks the account FOR UPDATE, which waits for in-flight lock-free credits';

--
-- The money API
--

CREATE TYPE bank.transfer_info AS (
	id			bigint,
	kind		bank.transfer_kind,
	status		bank.transfer_status,
	from_account bigint,
	to_account	bigint,
	currency	char(3),
	amount		numeric,
	posted_amount numeric,
	description text,
	metadata	jsonb,
	reverses	bigint,
	failure_code text,
	failure_message text,
	created_at	timestamptz,
	posted_at	timestamptz,
	expires_at	timestamptz,
	resolved_at timestamptz
);
COMMENT ON TYPE bank.transfer_info IS 'A transfer as the API returns it: amounts as exact numerics in its currency';

CREATE FUNCTION bank.transfer(from_account bigint, to_account bigint, amount numeric,
							  idempotency_key text, description text DEFAULT NULL,
							  metadata jsonb DEFAULT '{}')
	RETURNS bank.transfer_info
	AS 'MODULE_PATHNAME', 'pgbank_transfer'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.transfer(bigint, bigint, numeric, text, text, jsonb) IS
'Moves amount between two customer accounts of one currency and posts it at once. Locks the debited account FOR NO KEY UPDATE; the credit is lock-free. Idempotent per key: a retry with the same payload returns the original result (a declined original is raised again), another payload is PB005. Declines (PB001 insufficient funds, PB002 frozen, PB003 closed) are recorded as failed transfers when the call is its transaction''s first write. Needs READ COMMITTED (PB025)';

CREATE FUNCTION bank.deposit(account bigint, amount numeric, idempotency_key text,
							 description text DEFAULT NULL, metadata jsonb DEFAULT '{}')
	RETURNS bank.transfer_info
	AS 'MODULE_PATHNAME', 'pgbank_deposit'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.deposit(bigint, numeric, text, text, jsonb) IS
'Money in from the outside world: debits the settlement account of the currency, credits the customer account; takes no row lock that other deposits wait on. Idempotent per key';

CREATE FUNCTION bank.withdraw(account bigint, amount numeric, idempotency_key text,
							  description text DEFAULT NULL, metadata jsonb DEFAULT '{}')
	RETURNS bank.transfer_info
	AS 'MODULE_PATHNAME', 'pgbank_withdraw'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.withdraw(bigint, numeric, text, text, jsonb) IS
'Money out to the outside world: debits the customer account (locked FOR NO KEY UPDATE, funds checked), credits the settlement account lock-free. Idempotent per key';

CREATE FUNCTION bank.hold(from_account bigint, to_account bigint, amount numeric,
						  idempotency_key text, expires_in interval DEFAULT NULL,
						  description text DEFAULT NULL, metadata jsonb DEFAULT '{}')
	RETURNS bank.transfer_info
	AS 'MODULE_PATHNAME', 'pgbank_hold'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.hold(bigint, bigint, numeric, text, interval, text, jsonb) IS
'An authorisation hold: reserves amount on the debited account (pending transfer) until captured, voided or expired (expires_in, default pgbank.hold_expiry). Locks the debited account FOR NO KEY UPDATE. Idempotent per key';

CREATE FUNCTION bank.capture(hold_id bigint, amount numeric DEFAULT NULL) RETURNS bank.transfer_info
	AS 'MODULE_PATHNAME', 'pgbank_capture'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.capture(bigint, numeric) IS
'Posts a pending hold in full (amount NULL) or in part (the rest is released). Locks the debited account, then the hold. Capturing again with the same amount (NULL: the full amount) returns the posted transfer; PB014 when the hold is not pending or was captured for another amount, PB015 when it expired, PB016 when amount exceeds it';

CREATE FUNCTION bank.void(hold_id bigint) RETURNS bank.transfer_info
	AS 'MODULE_PATHNAME', 'pgbank_void'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.void(bigint) IS
'Releases a pending hold. Locks the debited account, then the hold. Voiding a voided hold returns it; PB014 when it was posted';

CREATE FUNCTION bank.reverse(transfer_id bigint, reason text, idempotency_key text)
	RETURNS bank.transfer_info
	AS 'MODULE_PATHNAME', 'pgbank_reverse'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.reverse(bigint, text, text) IS
'Undoes a posted transfer with a reversal transfer in the other direction and marks it reversed (once only, PB017). Applies to frozen accounts too; the account debited by the reversal is locked and funds-checked. Idempotent per key';

CREATE FUNCTION bank.expire_holds() RETURNS integer
	AS 'MODULE_PATHNAME', 'pgbank_expire_holds'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.expire_holds() IS
'Voids every pending hold past its expiry and returns how many; each account is locked FOR NO KEY UPDATE in id order';

CREATE FUNCTION bank.fold_account(account bigint) RETURNS boolean
	AS 'MODULE_PATHNAME', 'pgbank_fold_account'
	LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.fold_account(bigint) IS
'Folds the account''s pending legs into entries under its lock (FOR NO KEY UPDATE) and returns whether there were any; the posted balance does not change';

CREATE TYPE bank.batch_item_result AS (
	item		integer,
	idempotency_key text,
	transfer_id bigint,
	status		bank.transfer_status,
	code		text,
	message		text,
	replayed	boolean
);
COMMENT ON TYPE bank.batch_item_result IS
'The outcome of one item of bank.transfer_batch: item is its 1-based position; posted (transfer_id set, code NULL), declined (status failed, the failed transfer''s id, code PB001/PB002/PB003), or refused without a record (status and transfer_id NULL, code the SQLSTATE, e.g. PB009, PB005, PB006); replayed when the item''s key already had its transfer';

CREATE FUNCTION bank.transfer_batch(items jsonb) RETURNS SETOF bank.batch_item_result
	AS 'MODULE_PATHNAME', 'pgbank_transfer_batch'
	LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 100;
COMMENT ON FUNCTION bank.transfer_batch(jsonb) IS
'Moves money between customer accounts for a payment rail: items is a JSON array of 1 to 1000 objects {from_account, to_account, amount (a decimal string, or an integer of minor units), idempotency_key, description?, metadata?}; one result per item, in item order. A malformed batch (PB026: not an array of objects, an unknown, missing or mistyped field, a bad amount, a key twice) or one too large (PB027) writes nothing. Each item is a bank.transfer in a subtransaction of its own: a decline is recorded as a failed transfer (with its audit row) in the batch''s transaction and does not undo the others; another pgbank error refuses that item only; any other error fails the batch. Keys are locked first in key order, then items run in ascending order of (debited customer, currency, from_account), the order in which they lock risk counters and accounts, so concurrent batches cannot deadlock. Idempotent per item key (the same key and item replays its result). Needs READ COMMITTED (PB025)';

--
-- Reads of transfers
--

CREATE FUNCTION bank.get_transfer(id bigint) RETURNS bank.transfer_info
	AS 'MODULE_PATHNAME', 'pgbank_get_transfer'
	LANGUAGE C STABLE STRICT PARALLEL RESTRICTED;
COMMENT ON FUNCTION bank.get_transfer(bigint) IS
'A transfer, read as the caller under row-level security: a customer sees one touching their accounts; PB010 otherwise, exactly like one that does not exist';

CREATE FUNCTION bank.list_transfers(account bigint, before_id bigint DEFAULT NULL,
									"limit" integer DEFAULT 50)
	RETURNS SETOF bank.transfer_info
	AS 'MODULE_PATHNAME', 'pgbank_list_transfers'
	LANGUAGE C STABLE PARALLEL RESTRICTED ROWS 50;
COMMENT ON FUNCTION bank.list_transfers(bigint, bigint, integer) IS
'The transfers touching an account (posted, holds, reversals, and declines for the account that attempted them or was to be credited), newest first; keyset pagination: pass the last id seen as before_id; limit 1 to 1000. Read as the caller: the account must be visible (PB009)';

--
-- Risk: limits, the review queue (risk.c, review.c)
--

CREATE FUNCTION bank.set_customer_limits(customer_id bigint, currency char(3),
										 daily_limit numeric, monthly_limit numeric, reason text)
	RETURNS TABLE (customer_id bigint, currency char(3), daily_limit numeric, monthly_limit numeric)
	AS 'MODULE_PATHNAME', 'pgbank_set_customer_limits'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.set_customer_limits(bigint, char, numeric, numeric, text) IS
'Staff: sets a customer''s daily and monthly outgoing limits in a currency (NULL: none; 0: nothing may go out) and returns them (audited as customer.limits). Enforced on every transfer, withdrawal and hold from the customer''s accounts in that currency, under the customer''s counters lock: PB071, PB072';

CREATE FUNCTION bank.set_overdraft_limit(account bigint, overdraft_limit numeric, reason text)
	RETURNS bank.account_info
	AS 'MODULE_PATHNAME', 'pgbank_set_overdraft_limit'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.set_overdraft_limit(bigint, numeric, text) IS
'Staff: sets how far below zero an account''s available balance may go (0: not at all), audited as account.overdraft_limit. Locks the account FOR NO KEY UPDATE (and folds it), so it is atomic with the funds checks of transfers; PB078 when the account is already below minus the new limit';

CREATE FUNCTION bank.review_queue(after bigint DEFAULT NULL, "limit" integer DEFAULT 50)
	RETURNS TABLE (transfer_id bigint, customer_id bigint, kind bank.transfer_kind, hold boolean,
				   from_account bigint, to_account bigint, currency char(3), amount numeric,
				   rules jsonb, created_at timestamptz, expires_at timestamptz)
	AS 'MODULE_PATHNAME', 'pgbank_review_queue'
	LANGUAGE C STABLE PARALLEL RESTRICTED ROWS 50;
COMMENT ON FUNCTION bank.review_queue(bigint, integer) IS
'Staff: the transfers held for review and not yet decided, oldest first, with the rules that fired; keyset pagination on transfer_id (after), limit 1 to 1000';

CREATE FUNCTION bank.review_approve(transfer_id bigint, reason text) RETURNS bank.transfer_info
	AS 'MODULE_PATHNAME', 'pgbank_review_approve'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.review_approve(bigint, text) IS
'Staff: approves a transfer held for review (audited as review.approve): a transfer or withdrawal posts from the funds it reserved (locks the debited account, then the transfer); a hold becomes an ordinary pending hold. PB076 when it is not awaiting review (decided already, or never held), PB077 when its review period ended, PB002/PB003 when the accounts were frozen or closed meanwhile';

CREATE FUNCTION bank.review_reject(transfer_id bigint, reason text) RETURNS bank.transfer_info
	AS 'MODULE_PATHNAME', 'pgbank_review_reject'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.review_reject(bigint, text) IS
'Staff: rejects a transfer held for review (audited as review.reject): it is voided and its reserved funds released. PB076 when it is not awaiting review';

CREATE FUNCTION bank.risk_rules_audit() RETURNS trigger
	AS 'MODULE_PATHNAME', 'pgbank_risk_rules_audit'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.risk_rules_audit() IS
'Trigger: checks a rule''s amount against its currency''s exponent (PB006) and records every change of bank.risk_rules as a risk_rule.create, .update or .delete audit row holding the rule as JSON';

CREATE TRIGGER risk_rules_audit AFTER INSERT OR UPDATE OR DELETE ON bank.risk_rules
	FOR EACH ROW EXECUTE FUNCTION bank.risk_rules_audit();

--
-- Reads and reports
--

CREATE FUNCTION bank.balance(account bigint, as_of timestamptz DEFAULT NULL,
							 OUT currency char(3), OUT posted numeric, OUT pending_out numeric,
							 OUT pending_in numeric, OUT available numeric, OUT as_of timestamptz)
	AS 'MODULE_PATHNAME', 'pgbank_balance'
	LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION bank.balance(bigint, timestamptz) IS
'Posted balance, amounts held out (pending_out) and in (pending_in), and available (posted - pending_out), now or as of a past timestamp';

CREATE TYPE bank.entry_info AS (
	entry_id	bigint,
	transfer_id bigint,
	kind		bank.transfer_kind,
	amount		numeric,
	balance_after numeric,
	posted_at	timestamptz,
	counterparty bigint,
	description text,
	cursor		bigint
);
COMMENT ON TYPE bank.entry_info IS
'A leg of an account: entry_id is NULL and balance_after provisional for a leg not yet folded; cursor is the row''s position for keyset pagination (the entry id, or minus the pending leg''s id)';

CREATE FUNCTION bank.entries(account bigint, after bigint DEFAULT NULL, "limit" integer DEFAULT 100)
	RETURNS SETOF bank.entry_info
	AS 'MODULE_PATHNAME', 'pgbank_entries'
	LANGUAGE C STABLE PARALLEL RESTRICTED ROWS 100;
COMMENT ON FUNCTION bank.entries(bigint, bigint, integer) IS
'An account''s entries in ledger order, then its legs not yet folded; keyset pagination: pass the last row''s cursor as after; limit 1 to 1000. To see new activity later, page on from the last entry''s cursor';

CREATE TYPE bank.statement_line AS (
	line		text,
	posted_at	timestamptz,
	entry_id	bigint,
	transfer_id bigint,
	kind		bank.transfer_kind,
	description text,
	amount		numeric,
	balance		numeric
);
COMMENT ON TYPE bank.statement_line IS
'A statement line: line is opening, entry or closing';

CREATE FUNCTION bank.statement(account bigint, "from" timestamptz, "to" timestamptz)
	RETURNS SETOF bank.statement_line
	AS 'MODULE_PATHNAME', 'pgbank_statement'
	LANGUAGE C STABLE STRICT PARALLEL RESTRICTED ROWS 100;
COMMENT ON FUNCTION bank.statement(bigint, timestamptz, timestamptz) IS
'The statement of [from, to): the opening balance, each leg posted in the period and the closing balance (opening plus the legs)';

CREATE FUNCTION bank.trial_balance(OUT currency char(3), OUT account_type bank.account_type,
								   OUT accounts bigint, OUT debit numeric, OUT credit numeric)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'pgbank_trial_balance'
	LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION bank.trial_balance() IS
'Per currency and account type: the number of accounts, the sum of debit (negative) balances and of credit (positive) balances; a row with account_type NULL totals the currency, where debit equals credit';

CREATE FUNCTION bank.check_ledger(OUT violation text, OUT subject text, OUT detail text)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'pgbank_check_ledger'
	LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION bank.check_ledger() IS
'Every broken ledger invariant, one row each (balance_mismatch, running_balance, transfer_unbalanced, transfer_legs, transfer_accounts, currency_unbalanced, pending_mismatch, overdraft_exceeded, currency_mismatch, closed_not_empty); no rows on a consistent ledger';

--
-- Identity: verified credentials for the current transaction
--
CREATE FUNCTION bank.authenticate(access_token text) RETURNS bigint
	AS 'MODULE_PATHNAME', 'pgbank_authenticate'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.authenticate(text) IS
'Verifies an access token (HS256 with pgbank.jwt_secret, the algorithm pinned; exp and nbf within pgbank.jwt_clock_skew; iss and aud as configured; its session live) and makes its customer the caller for the rest of this transaction only, bound to the current role, which must be a customer role. Returns the customer id; PB040 for any invalid token, PB042 from a staff role, PB044 when the transaction already has an identity. Pass the token as a bind parameter: a failing statement''s text reaches the server log';
CREATE FUNCTION bank.authenticate_api_key(api_key text) RETURNS bigint
	AS 'MODULE_PATHNAME', 'pgbank_authenticate_api_key'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.authenticate_api_key(text) IS
'Verifies an API key (known, not revoked, not expired) for this transaction only; the current role must be the key''s role, and the key''s scopes limit the functions the transaction may call. Returns the key id; PB043 for an invalid key, PB042 from another role';
CREATE FUNCTION bank.api_key_role(api_key text, OUT id bigint, OUT role name)
	AS 'MODULE_PATHNAME', 'pgbank_api_key_role'
	LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION bank.api_key_role(text) IS
'For the HTTP gateway, before it switches role: the id and role of a valid API key (known, not revoked, not expired), PB043 otherwise. Verifies only: it grants nothing, and each request still calls bank.authenticate_api_key in its own transaction. Executable by bank_gateway alone';
CREATE FUNCTION bank.current_customer_id() RETURNS bigint
	AS 'MODULE_PATHNAME', 'pgbank_current_customer_id'
	LANGUAGE C STABLE LEAKPROOF PARALLEL RESTRICTED;
COMMENT ON FUNCTION bank.current_customer_id() IS
'The customer verified by bank.authenticate() in this transaction, if the current role is still the one that verified it; else NULL. Row-level security policies rest on it';
CREATE FUNCTION bank.acting_as_staff() RETURNS boolean
	AS 'MODULE_PATHNAME', 'pgbank_acting_as_staff'
	LANGUAGE C STABLE LEAKPROOF PARALLEL RESTRICTED;
COMMENT ON FUNCTION bank.acting_as_staff() IS
'True when the caller has staff authority now: a superuser; a staff role''s own login (not a bank_gateway session) with no credential verified; or an API key verified for the current role';
CREATE TYPE bank.whoami AS (
	kind		text,
	customer_id bigint,
	session_id	bigint,
	api_key_id	bigint,
	acting_role name,
	session_role name,
	identity_suspended boolean
);
COMMENT ON TYPE bank.whoami IS
'kind is customer, api_key, staff or none; identity_suspended is true when a credential was verified in this transaction for a role other than the current one';
CREATE FUNCTION bank.whoami() RETURNS bank.whoami
	AS 'MODULE_PATHNAME', 'pgbank_whoami'
	LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION bank.whoami() IS 'Who the caller is in this transaction';
CREATE FUNCTION bank.set_request_context(request_id text, client_addr text, user_agent text)
	RETURNS void
	AS 'MODULE_PATHNAME', 'pgbank_set_request_context'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.set_request_context(text, text, text) IS
'Request id (up to 128 bytes), client address (an inet) and user agent (up to 512 bytes) recorded with the audit rows of this transaction; cleared when it ends';

--
-- Customers: registration, logins, sessions, second factor, KYC, API keys
--
CREATE TYPE bank.auth_result AS (
	status		text,
	customer_id bigint,
	access_token text,
	refresh_token text,
	expires_at	timestamptz,
	refresh_expires_at timestamptz
);
COMMENT ON TYPE bank.auth_result IS
'Outcome of bank.login() and bank.refresh(): status ok (tokens set), mfa_required (password right, TOTP code needed; nothing issued) or denied (nothing issued, and nothing said about why)';
CREATE FUNCTION bank.register(email text, password text, first_name text, last_name text,
							  phone text DEFAULT NULL)
	RETURNS bigint
	AS 'MODULE_PATHNAME', 'pgbank_register'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.register(text, text, text, text, text) IS
'Registers a customer: email normalised (trimmed, lower-cased) and unique (PB024); password of 12 to 1000 characters, not the email (PB045), stored as bcrypt with cost pgbank.bcrypt_cost; phone encrypted under a new data key. KYC starts pending. Returns the customer id';
CREATE FUNCTION bank.login(email text, password text, totp text DEFAULT NULL)
	RETURNS bank.auth_result
	AS 'MODULE_PATHNAME', 'pgbank_login'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.login(text, text, text) IS
'Checks email, password and (when enrolled) a TOTP code and opens a session: an access token (pgbank.access_token_ttl) and a refresh token. Unknown email, wrong password, wrong code and lockout all return status denied after the same bcrypt work; pgbank.max_failed_logins failures in a row lock the customer out for pgbank.lockout_duration. Failures commit (counted and audited), so it does not raise for them';
CREATE FUNCTION bank.refresh(refresh_token text) RETURNS bank.auth_result
	AS 'MODULE_PATHNAME', 'pgbank_refresh'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.refresh(text) IS
'Exchanges a refresh token for a new access token and a new refresh token (rotation). A refresh token already used revokes its whole session (reuse detection); a session not refreshed for pgbank.idle_timeout has ended. Returns status denied when nothing is issued';
CREATE FUNCTION bank.logout() RETURNS void
	AS 'MODULE_PATHNAME', 'pgbank_logout'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.logout() IS
'Ends the authenticated customer''s session: its access and refresh tokens stop working at once';
CREATE FUNCTION bank.end_session(refresh_token text) RETURNS void
	AS 'MODULE_PATHNAME', 'pgbank_end_session'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.end_session(text) IS
'Ends the session a refresh token belongs to (its access token may have expired), audited as auth.logout; an already used token is a copy someone kept: the session ends as a reuse (revoked_reason refresh_reuse, audited auth.refresh_reuse), as with bank.refresh; holding the token is the credential, as for bank.refresh. Does nothing for NULL or a token of no session (idempotent, and tells nothing about which tokens exist). For browsers logging out with the refresh token of their cookie';
CREATE FUNCTION bank.change_password(old_password text, new_password text) RETURNS void
	AS 'MODULE_PATHNAME', 'pgbank_change_password'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.change_password(text, text) IS
'Changes the authenticated customer''s password (the old one must match, else 28P01 invalid_password; the new one must meet the policy, PB045) and ends their other sessions';
CREATE FUNCTION bank.mfa_enroll(OUT secret text, OUT otpauth_uri text)
	AS 'MODULE_PATHNAME', 'pgbank_mfa_enroll'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.mfa_enroll() IS
'Starts TOTP enrolment (RFC 6238: SHA-1, 6 digits, 30 s) for the authenticated customer: returns the new secret in base32 and its otpauth:// URI, once. It takes effect at bank.mfa_confirm(); PB048 when MFA is already on';
CREATE FUNCTION bank.mfa_confirm(code text) RETURNS void
	AS 'MODULE_PATHNAME', 'pgbank_mfa_confirm'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.mfa_confirm(text) IS
'Turns TOTP on with a code from the enrolled secret (PB047 when wrong, PB048 when nothing is being enrolled)';
CREATE FUNCTION bank.mfa_disable(code text) RETURNS void
	AS 'MODULE_PATHNAME', 'pgbank_mfa_disable'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.mfa_disable(text) IS
'Turns TOTP off, given a current code (PB047 when wrong, PB048 when MFA is off)';
CREATE FUNCTION bank.totp_code(secret text, at timestamptz DEFAULT now(), digits integer DEFAULT 6)
	RETURNS text
	AS 'MODULE_PATHNAME', 'pgbank_totp_code'
	LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION bank.totp_code(text, timestamptz, integer) IS
'The RFC 6238 code (HMAC-SHA-1, 30 s steps, 6 to 8 digits) of a secret given in base32, as bank.mfa_enroll() returns it, at a time; for operators and tests, executable by superusers only';
CREATE FUNCTION bank.set_kyc_status(customer_id bigint, status bank.kyc_status, reason text)
	RETURNS bank.kyc_status
	AS 'MODULE_PATHNAME', 'pgbank_set_kyc_status'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.set_kyc_status(bigint, bank.kyc_status, text) IS
'Staff: sets a customer''s KYC status and returns it (audited). Approval is required to open an investment account and to move more than pgbank.kyc_transfer_limit at once (PB046)';
CREATE FUNCTION bank.create_api_key(role name, scopes text[], expires_at timestamptz,
									name text DEFAULT 'api key', OUT id bigint, OUT api_key text)
	AS 'MODULE_PATHNAME', 'pgbank_create_api_key'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.create_api_key(name, text[], timestamptz, text) IS
'Admin: creates an API key bound to a staff role and scopes (names of bank functions that role may execute, or *), expiring at expires_at (at most a year ahead). The key is returned once and stored as its SHA-256 (audited)';
CREATE FUNCTION bank.revoke_api_key(id bigint) RETURNS void
	AS 'MODULE_PATHNAME', 'pgbank_revoke_api_key'
	LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.revoke_api_key(bigint) IS 'Admin: revokes an API key at once (audited)';
CREATE FUNCTION bank.list_api_keys(OUT id bigint, OUT name text, OUT role name, OUT scopes text[],
								   OUT prefix text, OUT created_by name, OUT created_at timestamptz,
								   OUT expires_at timestamptz, OUT revoked_at timestamptz)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'pgbank_list_api_keys'
	LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION bank.list_api_keys() IS 'Admin: every API key, without its secret';

--
-- Personal data: encrypted at rest, masked for staff, erasable, exportable
--
CREATE TYPE bank.customer_profile AS (
	id			bigint,
	email		text,
	first_name	text,
	last_name	text,
	phone		text,
	national_id text,
	address		text,
	kyc_status	bank.kyc_status,
	mfa_enabled boolean,
	created_at	timestamptz,
	erased_at	timestamptz
);
COMMENT ON TYPE bank.customer_profile IS
'A customer as the API shows them: personal data in clear for the customer, masked for staff, NULL once erased';
CREATE FUNCTION bank.get_customer(customer_id bigint DEFAULT NULL) RETURNS bank.customer_profile
	AS 'MODULE_PATHNAME', 'pgbank_get_customer'
	LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION bank.get_customer(bigint) IS
'A customer''s profile: the authenticated customer''s own in clear (customer_id NULL or their own; any other is PB021, as for an id that does not exist), or for staff any customer (customer_id required, PB022) with personal data masked: phone with every digit but the last two as * (+, blanks, - and parentheses kept), national id with every character but the last four as * (all of an id of four or fewer), address as the first character of each blank-separated word followed by ***. NULL once erased';
CREATE FUNCTION bank.update_profile(phone text, national_id text, address text,
									customer_id bigint DEFAULT NULL)
	RETURNS bank.customer_profile
	AS 'MODULE_PATHNAME', 'pgbank_update_profile'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.update_profile(text, text, text, bigint) IS
'Sets the personal data given (NULL leaves a field as it is), encrypted under the customer''s data key: the authenticated customer''s own (customer_id NULL or their own; any other is PB021), or any customer''s for staff, who must name it (PB022; audited with the names of the fields changed, never their values). Phone: 4 to 32 digits, blanks, +, - and parentheses; national id 1 to 64 characters; address 1 to 500 (PB023, without the value). Returns the profile as bank.get_customer shows it to the caller. PB049 once erased';
CREATE FUNCTION bank.erase_customer(customer_id bigint, reason text) RETURNS void
	AS 'MODULE_PATHNAME', 'pgbank_erase_customer'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.erase_customer(bigint, text) IS
'Admin: crypto-shreds a customer''s personal data by destroying their data key (the ciphertexts stay, unreadable), removes their credentials, name and email, and ends their sessions; accounts, transfers and entries stay whole. A NULL argument is PB022; erasing an erased customer changes nothing (audited)';
CREATE FUNCTION bank.export_my_data() RETURNS jsonb
	AS 'MODULE_PATHNAME', 'pgbank_export_my_data'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.export_my_data() IS
'Everything the bank holds about the authenticated customer as one JSON document: profile with personal data in clear, accounts, transfers, sessions and security events. Volatile: each export is audited (customer.export, among the customer''s security events)';

--
-- The audit trail (audit.c)
--

CREATE FUNCTION bank.audit_search(actor_customer bigint DEFAULT NULL,
		resource_type text DEFAULT NULL, resource_id text DEFAULT NULL,
		action text DEFAULT NULL, since timestamptz DEFAULT NULL,
		until timestamptz DEFAULT NULL, before_at timestamptz DEFAULT NULL,
		before_id bigint DEFAULT NULL, max_rows integer DEFAULT 100)
	RETURNS SETOF bank.audit_events
	AS 'MODULE_PATHNAME', 'pgbank_audit_search'
	LANGUAGE C STABLE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.audit_search(bigint, text, text, text, timestamptz, timestamptz, timestamptz, bigint, integer) IS
'Audit rows matching every filter given (actor customer, resource type and id, action, since <= at < until), newest first, at most max_rows (1..1000, default 100). Keyset pagination: pass the at and id of the last row as before_at and before_id. Auditors and admins see every row; a customer sees their own security events (resource types session and credential) and nothing else';

CREATE FUNCTION bank.audit_verify(anchor_checkpoint bigint DEFAULT NULL,
		anchor_hash bytea DEFAULT NULL, from_id bigint DEFAULT NULL, to_id bigint DEFAULT NULL)
	RETURNS TABLE (id bigint, stripe integer, seq bigint, problem text)
	AS 'MODULE_PATHNAME', 'pgbank_audit_verify'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.audit_verify(bigint, bytea, bigint, bigint) IS
'Recomputes the hash chains of the audit trail (rows with from_id <= id <= to_id when given) from the seals of purged segments, checks the seals against the last audit.purge event, and checks that every row named by the anchor given (its hash checked too), or else by the latest checkpoint of bank.audit_head(), is still there. Returns nothing when all holds, else the first broken link: id (of the first bad row; NULL when the row is missing or the anchor itself is bad), stripe and seq of the bad or missing row, and the problem (row altered, row missing, row out of order, anchored row missing (truncated), anchored row altered, anchor does not match its checkpoint, anchor checkpoint missing, the seals do not match the last audit.purge event). One snapshot: rows committing meanwhile are not half-seen';

CREATE FUNCTION bank.audit_head(OUT checkpoint bigint, OUT hash bytea, OUT at timestamptz)
	RETURNS record
	AS 'MODULE_PATHNAME', 'pgbank_audit_head'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.audit_head() IS
'An anchor for the audit trail: records the last committed row of every stripe as a checkpoint (chained to the previous one) and returns its number and hash. Keep both outside the database; bank.audit_verify(checkpoint, hash) later detects any change to what they cover, a truncated tail included';

CREATE FUNCTION bank.purge_expired() RETURNS bigint
	AS 'MODULE_PATHNAME', 'pgbank_purge_expired'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.purge_expired() IS
'Removes audit rows older than pgbank.audit_retention (0, the default, keeps all) and returns how many. Refuses (PB052) when the trail does not verify. For each stripe it removes a prefix and keeps the last removed row''s position and hash as the stripe''s seal (bank.audit_seals), repeated in its own audit.purge row, so what remains still verifies';

CREATE FUNCTION bank.audit_ddl() RETURNS event_trigger
	AS 'MODULE_PATHNAME', 'pgbank_audit_ddl'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.audit_ddl() IS
'Event trigger: DDL on objects of the bank schema (by anyone, superusers included) is recorded as a dba.ddl audit row naming the command and the objects';

--
-- Interest and fees (products.c).  Rates and fees are dated: the row in
-- effect on a day is the one of the account's type and currency with the
-- latest effective_from on or before that day.  Days and months are those of
-- pgbank.business_timezone.  Interest accrues daily on the end-of-day posted
-- balance, actual/actual: balance * annual_rate / (366 in a leap year, else
-- 365).  Each day's exact amount plus the carry of the account's previous
-- accrual is rounded half-even to the minor unit, and the rest is carried.
-- Carries are kept exactly, in units of 1/133590 of a minor unit (133590 =
-- 365 * 366, so a day's share of either year length is a whole number of
-- them).  bank.post_month posts a month's accruals from the interest-expense
-- account of the currency and charges the month's fees to fee income, once
-- per account, month and kind.
--

CREATE TABLE bank.interest_rates (
	account_type bank.account_type NOT NULL
				CHECK (account_type IN ('checking', 'savings', 'investment')),
	currency	char(3) NOT NULL REFERENCES bank.currencies (code),
	effective_from date NOT NULL,
	annual_rate numeric NOT NULL CHECK (annual_rate >= 0 AND annual_rate <= 1 AND scale(annual_rate) <= 12),
	set_by		name NOT NULL,
	set_at		timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (account_type, currency, effective_from)
);
COMMENT ON TABLE bank.interest_rates IS
'Annual interest rates per account type and currency, from a day on (the latest effective_from on or before a day applies; no row: no interest). Set by admins with bank.set_interest_rate';
COMMENT ON COLUMN bank.interest_rates.annual_rate IS 'A fraction: 0.0365 is 3.65 % a year';

CREATE TABLE bank.fee_schedule (
	account_type bank.account_type NOT NULL
				CHECK (account_type IN ('checking', 'savings', 'investment')),
	currency	char(3) NOT NULL REFERENCES bank.currencies (code),
	fee			text NOT NULL CHECK (fee IN ('monthly_maintenance', 'withdrawal')),
	effective_from date NOT NULL,
	amount		bank.minor_nonneg NOT NULL,
	set_by		name NOT NULL,
	set_at		timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (account_type, currency, fee, effective_from)
);
COMMENT ON TABLE bank.fee_schedule IS
'Fees per account type and currency, from a day on, in minor units: monthly_maintenance (charged for each month the account is open at its end) and withdrawal (charged per posted withdrawal, at the fee in effect on the day it posted). 0 turns a fee off. Set by admins with bank.set_fee; charged by bank.post_month';

CREATE TABLE bank.interest_accruals (
	account_id	bigint NOT NULL REFERENCES bank.accounts (id),
	day			date NOT NULL,
	balance		bigint NOT NULL CHECK (balance > 0),
	annual_rate numeric NOT NULL,
	days_in_year smallint NOT NULL CHECK (days_in_year IN (365, 366)),
	carry_in	numeric NOT NULL,
	amount		bigint NOT NULL CHECK (amount >= 0),
	carry		numeric NOT NULL CHECK (carry * 2 BETWEEN -133590 AND 133590),
	accrued_at	timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (account_id, day),
	-- nothing is lost: the day's exact interest plus the carry in is the
	-- amount accrued plus the carry out, in 1/133590 minor units
	CONSTRAINT interest_accruals_exact
		CHECK (balance * annual_rate * (133590 / days_in_year) + carry_in = amount * 133590 + carry)
);
COMMENT ON TABLE bank.interest_accruals IS
'One row per account and day that earned interest (bank.accrue_interest): the end-of-day posted balance, the rate and year length used, the carry in and out (in 1/133590 of a minor unit) and the amount accrued in minor units, rounded half-even. The primary key makes a day accrue once; rows never change';
COMMENT ON COLUMN bank.interest_accruals.carry IS
'What rounding left over, in 1/133590 of a minor unit (between minus and plus one half of a minor unit), carried into the account''s next accrual';

CREATE TABLE bank.month_postings (
	account_id	bigint NOT NULL REFERENCES bank.accounts (id),
	month		date NOT NULL CHECK (extract(day FROM month) = 1),
	kind		text NOT NULL CHECK (kind IN ('interest', 'monthly_maintenance', 'withdrawal')),
	currency	char(3) NOT NULL,
	amount		bank.minor_amount NOT NULL,
	units		integer NOT NULL CHECK (units > 0),
	transfer_id bigint REFERENCES bank.transfers (id),
	failure_code char(5),
	posted_at	timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (account_id, month, kind),
	CONSTRAINT month_postings_outcome CHECK ((transfer_id IS NULL) <> (failure_code IS NULL))
);
COMMENT ON TABLE bank.month_postings IS
'What bank.post_month did for an account, month and kind (interest, monthly_maintenance fee, withdrawal fees): the amount in minor units, how many days or withdrawals it covers, and the transfer that posted it, or the SQLSTATE that declined it (a fee beyond the available funds is not charged). The primary key makes each post once; rows never change';

CREATE FUNCTION bank.div_round_half_even(numerator numeric, denominator numeric) RETURNS numeric
	LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
	RETURN (SELECT q + CASE WHEN 2 * r > abs(denominator) THEN 1
						   WHEN 2 * r = abs(denominator) AND mod(q, 2) <> 0 THEN 1
						   ELSE 0 END
			  FROM (SELECT t - CASE WHEN m < 0 THEN 1 ELSE 0 END AS q,
						   m + CASE WHEN m < 0 THEN abs(denominator) ELSE 0 END AS r
					  FROM (SELECT div(n, d) AS t, mod(n, d) AS m
							  FROM (SELECT numerator * sign(denominator) AS n,
										   abs(denominator) AS d) s0) s1) s2);
COMMENT ON FUNCTION bank.div_round_half_even(numeric, numeric) IS
'numerator / denominator rounded to an integer, halves to the even neighbour (banker''s rounding), computed exactly (no rounded division): 5/2 = 2, 7/2 = 4, -5/2 = -2';

CREATE FUNCTION bank.business_date(at timestamptz DEFAULT now()) RETURNS date
	AS 'MODULE_PATHNAME', 'pgbank_business_date'
	LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION bank.business_date(timestamptz) IS
'The date of a moment (default now) in pgbank.business_timezone: the calendar that interest days, fee months, statements and daily trial balances follow';

CREATE FUNCTION bank.set_interest_rate(account_type bank.account_type, currency char(3),
									   annual_rate numeric, effective_from date)
	RETURNS void
	AS 'MODULE_PATHNAME', 'pgbank_set_interest_rate'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.set_interest_rate(bank.account_type, char, numeric, date) IS
'Admin: the annual rate (a fraction, 0 to 1) of an account type and currency from a day on; setting the same day again replaces it (audited). PB023 for a system account type or a rate out of range, PB065 when that type and currency already accrued interest on or after the day';

CREATE FUNCTION bank.set_fee(account_type bank.account_type, currency char(3), fee text,
							 amount numeric, effective_from date)
	RETURNS void
	AS 'MODULE_PATHNAME', 'pgbank_set_fee'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.set_fee(bank.account_type, char, text, numeric, date) IS
'Admin: a fee (monthly_maintenance or withdrawal) of an account type and currency from a day on, in the currency (0 turns it off); setting the same day again replaces it (audited). PB023 for an unknown fee or a system account type, PB006 for an amount with too many fraction digits, PB065 when that fee was already charged for the day''s month or a later one';

CREATE FUNCTION bank.accrue_interest(day date) RETURNS integer
	AS 'MODULE_PATHNAME', 'pgbank_accrue_interest'
	LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.accrue_interest(date) IS
'Accrues one day''s interest on every customer account with a positive rate and a positive end-of-day posted balance, and returns how many accounts accrued. Each (account, day) accrues once: running a day again accrues nothing. Runs one at a time (a transaction-level advisory lock shared with bank.post_month). PB064 when the day has not ended in pgbank.business_timezone, PB065 when a later day was accrued already or the day''s month was posted, PB066 while a bank.accrue_interest job for an earlier day is queued or dead (days are accrued in order)';

CREATE FUNCTION bank.post_month(month date)
	RETURNS TABLE (account_id bigint, kind text, currency char(3), amount numeric,
				   units integer, transfer_id bigint, failure_code text)
	AS 'MODULE_PATHNAME', 'pgbank_post_month'
	LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE ROWS 100;
COMMENT ON FUNCTION bank.post_month(date) IS
'For the calendar month of the date given: posts each account''s accrued interest (kind interest, from the currency''s interest_expense account), then charges its monthly maintenance fee and its withdrawal fees (kind fee, to fee_income), one transfer per account and kind, and returns what it did. A fee the account cannot pay (funds, closed) is recorded as declined, not charged. Each (account, month, kind) posts once: running a month again posts nothing. Runs one at a time with bank.accrue_interest. PB064 when the month has not ended, PB066 while a bank.accrue_interest job for one of its days is queued or dead (posting would close that day before its interest accrued; a dead one needs bank.retry_job or bank.cancel_job)';

--
-- The card vault (vault.c): card numbers (PAN) stored encrypted under
-- pgbank.card_key, handed back only to bank_service
--

CREATE TABLE bank.cards (
	token		text PRIMARY KEY CHECK (token ~ '^tok_[A-Za-z0-9_-]{32}$'),
	pan			bytea NOT NULL,
	masked		text NOT NULL CHECK (masked ~ '^[0-9]{0,6}\*+[0-9]{4}$'),
	expiry_month smallint NOT NULL CHECK (expiry_month BETWEEN 1 AND 12),
	expiry_year smallint NOT NULL CHECK (expiry_year BETWEEN 2000 AND 2999),
	created_by	name NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE bank.cards IS
'Tokenised payment cards: a random token, the card number encrypted (pgp_sym_encrypt under pgbank.card_key; no API role can read the column), the masked number and the expiry';
COMMENT ON COLUMN bank.cards.masked IS
'The card number with every digit but the last four replaced by * (the first six kept when it has 16 digits or more)';

CREATE FUNCTION bank.tokenize_card(pan text, expiry text, OUT token text, OUT masked text)
	AS 'MODULE_PATHNAME', 'pgbank_tokenize_card'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.tokenize_card(text, text) IS
'Service: stores a card number (13 to 19 digits with a valid Luhn check digit, else PB060) and its expiry (MM/YY or MM/YYYY, else PB061; not before this month, else PB062) and returns a new random token and the masked number (audited, without the number). Errors never show the number. Pass both as bind parameters; pgbank removes card numbers from server log lines, but set log_parameter_max_length = 0 as well';

CREATE FUNCTION bank.detokenize_card(token text, OUT pan text, OUT expiry text)
	AS 'MODULE_PATHNAME', 'pgbank_detokenize_card'
	LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.detokenize_card(text) IS
'Service only: the card number and expiry (MM/YYYY) of a token; audited (card.detokenize, naming the token only). PB063 for an unknown token';

--
-- Reports (report.c)
--

CREATE FUNCTION bank.monthly_statement(account bigint, month date)
	RETURNS SETOF bank.statement_line
	AS 'MODULE_PATHNAME', 'pgbank_monthly_statement'
	LANGUAGE C STABLE PARALLEL RESTRICTED ROWS 100;
COMMENT ON FUNCTION bank.monthly_statement(bigint, date) IS
'The statement of the date''s calendar month in pgbank.business_timezone: the lines of bank.statement (opening, each leg, closing), then two totals: interest (the interest legs of the month) and fees (the fee legs); both lines are there when zero. A customer gets their own accounts only (PB009 for others)';

CREATE FUNCTION bank.daily_trial_balance(day date, OUT currency char(3),
										 OUT account_type bank.account_type, OUT accounts bigint,
										 OUT debit numeric, OUT credit numeric)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME', 'pgbank_daily_trial_balance'
	LANGUAGE C STABLE STRICT PARALLEL RESTRICTED;
COMMENT ON FUNCTION bank.daily_trial_balance(date) IS
'bank.trial_balance at the end of a day in pgbank.business_timezone: per currency and account type, the accounts with a balance and the sum of debit and of credit balances from the legs posted before the day ended; a row with account_type NULL totals the currency, where debit equals credit';

CREATE VIEW bank.account_exceptions WITH (security_invoker = true) AS
SELECT b.id AS account_id, b.number, b.customer_id, b.currency,
	   CASE WHEN b.balance < -b.overdraft_limit OR b.available < -b.overdraft_limit
			THEN 'over_limit' ELSE 'overdrawn' END AS problem,
	   NULL::bigint AS transfer_id, b.balance AS amount, b.overdraft_limit,
	   NULL::timestamptz AS expires_at, NULL::numeric AS outgoing_limit
  FROM bank.account_balances b
 WHERE b.customer_id IS NOT NULL AND (b.balance < 0 OR b.available < -b.overdraft_limit)
UNION ALL
SELECT a.id, a.number, a.customer_id, a.currency, 'hold_past_expiry', t.id,
	   bank.minor_to_amount(t.amount, c.exponent),
	   bank.minor_to_amount(a.overdraft_limit, c.exponent), t.expires_at, NULL
  FROM bank.transfers t
  JOIN bank.accounts a ON a.id = t.from_account
  JOIN bank.currencies c ON c.code = a.currency
 WHERE t.status IN ('pending', 'held_for_review') AND t.expires_at <= now()
UNION ALL
SELECT NULL, NULL, r.customer_id, r.currency, o.problem, NULL,
	   bank.minor_to_amount(o.total, c.exponent), NULL, NULL,
	   bank.minor_to_amount(o.lim, c.exponent)
  FROM bank.risk_counters r
  JOIN bank.customer_limits l ON l.customer_id = r.customer_id AND l.currency = r.currency
  JOIN bank.currencies c ON c.code = r.currency
 CROSS JOIN LATERAL (VALUES
	('over_daily_limit', r.day_total, l.daily_limit,
	 r.day = (now() AT TIME ZONE 'UTC')::date),
	('over_monthly_limit', r.month_total, l.monthly_limit,
	 r.month = date_trunc('month', now() AT TIME ZONE 'UTC')::date)) o(problem, total, lim, current)
 WHERE o.current AND o.total > o.lim;
COMMENT ON VIEW bank.account_exceptions IS
'Accounts that need a look: overdrawn (posted balance below zero, within the overdraft limit), over_limit (posted or available balance below minus the overdraft limit; the ledger''s constraints should make this impossible), hold_past_expiry (a pending hold, or a move held for review, past its expiry that bank.expire_holds has not voided yet; amount is the hold''s), and customers over_daily_limit or over_monthly_limit (the UTC day''s or month''s outgoing total above a limit staff lowered since; account_id NULL, amount the total, outgoing_limit the limit)';
-- Background jobs (jobs.c; the worker is worker.c).  A job kind names a
-- function of the database and the roles that may queue it.  Every run,
-- scheduled or queued by hand, is a row of bank.job_queue: claimed FOR
-- UPDATE SKIP LOCKED by bank.run_next_job() and run in a subtransaction of
-- the claiming transaction, so the job's work and its "done" commit
-- together; after an error the work is rolled back, the error recorded and
-- the job retried with exponential backoff, up to its kind's max_attempts,
-- then dead.  A crash before the commit leaves the row queued: a job runs at
-- least once, so every job kind must be idempotent.  bank.schedule_jobs()
-- queues what bank.job_schedule says is due.  The worker calls both; without
-- it (no shared_preload_libraries) an admin or cron calls them.
--
CREATE TABLE bank.job_kinds (
	name		text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
	function	regprocedure NOT NULL,
	enqueue_roles name[] NOT NULL DEFAULT '{bank_admin}',
	max_attempts integer NOT NULL DEFAULT 5 CHECK (max_attempts BETWEEN 1 AND 100),
	backoff		interval NOT NULL DEFAULT '10 seconds' CHECK (backoff > '0'),
	description text NOT NULL
);
COMMENT ON TABLE bank.job_kinds IS
'What a background job can be: the function it calls (with the job''s arguments, text cast to the function''s argument types), the roles that may queue it with bank.enqueue_job (superusers always may), how often it is tried and the first retry delay (doubled after each failure, at most a day). Every job kind must be idempotent: a job runs at least once. Written by superusers only';

CREATE TABLE bank.job_schedule (
	job			text PRIMARY KEY REFERENCES bank.job_kinds (name),
	period		text CHECK (period IN ('day', 'month')),
	every		interval CHECK (every > '0'),
	delay		interval NOT NULL DEFAULT '0' CHECK (delay >= '0'),
	enabled		boolean NOT NULL DEFAULT true,
	next_period date,
	next_run_at timestamptz NOT NULL DEFAULT now(),
	CHECK (period IS NULL OR every IS NULL)
);
COMMENT ON TABLE bank.job_schedule IS
'When bank.schedule_jobs() queues a job kind. Housekeeping (period NULL): every "every" (NULL: pgbank.job_interval), with no argument, and not while a run of the kind is still queued. Calendar (period day or month): once per period, "delay" after the period ends (days and months of pgbank.business_timezone, the calendar bank.accrue_interest and bank.post_month check, whatever the session''s TimeZone), with the period''s first day (a date) as the only argument; periods missed while nothing ran are queued too, in order, each once (job key: the date). Adding one: INSERT INTO bank.job_schedule (job, period, delay) VALUES (''accrue_interest'', ''day'', ''5 minutes''). Written by superusers only';
COMMENT ON COLUMN bank.job_schedule.next_period IS 'Calendar jobs: the first period not yet queued (NULL until the first bank.schedule_jobs(): the current period)';

CREATE TABLE bank.job_queue (
	id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	job			text NOT NULL REFERENCES bank.job_kinds (name),
	args		text[] NOT NULL DEFAULT '{}',
	key			text CHECK (char_length(key) BETWEEN 1 AND 255),
	status		text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'done', 'dead', 'cancelled')),
	attempts	integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
	max_attempts integer NOT NULL CHECK (max_attempts >= 1),
	next_run_at timestamptz NOT NULL DEFAULT now(),
	enqueued_at timestamptz NOT NULL DEFAULT now(),
	enqueued_by name NOT NULL,
	scheduled	boolean NOT NULL DEFAULT false,
	started_at	timestamptz,
	finished_at timestamptz,
	result		text,
	error_code	char(5),
	error_message text,
	UNIQUE (job, key),
	CHECK (status <> 'queued' OR attempts < max_attempts),
	CHECK (status <> 'dead' OR attempts >= max_attempts),
	CHECK (status = 'queued' OR finished_at IS NOT NULL)
);
CREATE INDEX job_queue_due_idx ON bank.job_queue (next_run_at, id) WHERE status = 'queued';
CREATE INDEX job_queue_finished_idx ON bank.job_queue (finished_at) WHERE status <> 'queued';
COMMENT ON TABLE bank.job_queue IS
'Background jobs, one row per job: queued (waiting for next_run_at: its first run or a retry), done or dead (failed max_attempts times). Claimed FOR UPDATE SKIP LOCKED, so concurrent runners never take the same job; the row lock lasts the run. key makes queuing idempotent (unique per job kind). Finished rows are removed pgbank.job_retention after they finish';
COMMENT ON COLUMN bank.job_queue.result IS 'The first column of the first row the job''s function returned, as text (at most 200 characters)';
COMMENT ON COLUMN bank.job_queue.error_message IS 'The primary message of the last error (at most 500 characters), never its detail, hint, context or statement, which may carry values';

CREATE VIEW bank.job_runs WITH (security_invoker = true) AS
SELECT q.id, q.job, q.args,
	   CASE WHEN q.status = 'queued' AND q.attempts > 0 THEN 'retrying' ELSE q.status END AS status,
	   q.attempts, q.max_attempts, q.enqueued_at, q.enqueued_by, q.scheduled,
	   q.started_at, q.finished_at,
	   CASE WHEN q.status = 'queued' THEN q.next_run_at END AS next_run_at,
	   q.result, q.error_code, q.error_message
  FROM bank.job_queue q;
COMMENT ON VIEW bank.job_runs IS
'Background jobs and their last run: status queued (never run), retrying (failed, next_run_at is the next try), done, dead (with a key, as every calendar run has: kept until an admin retries or cancels it) or cancelled; attempts so far; started_at and finished_at of the last attempt; its result or its error (SQLSTATE and primary message only). A job being run shows its previous state until its run commits';

CREATE FUNCTION bank.enqueue_job(job text, args text[] DEFAULT '{}', key text DEFAULT NULL,
								 run_at timestamptz DEFAULT NULL)
	RETURNS bigint
	AS 'MODULE_PATHNAME', 'pgbank_enqueue_job'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.enqueue_job(text, text[], text, timestamptz) IS
'Queues a background job of a kind in bank.job_kinds (PB080 when unknown; 42501 when the caller''s role may not queue it) with its arguments as text (PB081 when their number does not fit the kind''s function or one is NULL; a value its type does not accept fails with that type''s error; a date is stored as YYYY-MM-DD whatever DateStyle), to run at run_at (default now) and returns its id. With a key, queuing is idempotent: the same kind and key return the same job (PB082 when its arguments differ)';

CREATE FUNCTION bank.run_next_job() RETURNS bigint
	AS 'MODULE_PATHNAME', 'pgbank_run_next_job'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.run_next_job() IS
'Claims the queued job due first (FOR UPDATE SKIP LOCKED: a job another transaction is running is skipped, never waited for), runs its function as the caller in a subtransaction, records the outcome (done with its result; or the error, then a retry after the kind''s backoff doubled per earlier attempt, or dead after max_attempts) and returns the job''s id; NULL when nothing is due. The job''s work and its outcome commit with the caller''s transaction. Needs READ COMMITTED (PB025)';

CREATE FUNCTION bank.retry_job(id bigint) RETURNS void
	AS 'MODULE_PATHNAME', 'pgbank_retry_job'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.retry_job(bigint) IS
'Admin: queues a dead job again, due now, for as many more attempts as its kind allows (its attempts so far and last error stay until it runs); PB083 when the job does not exist, PB084 when it is not dead. Audited (job.retry)';

CREATE FUNCTION bank.cancel_job(id bigint, reason text) RETURNS void
	AS 'MODULE_PATHNAME', 'pgbank_cancel_job'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.cancel_job(bigint, text) IS
'Admin: gives a dead job up for good (status cancelled; it never runs again and is purged after pgbank.job_retention like a done one). Dead jobs with a key (every calendar run) are kept until retried or cancelled: an interest accrual that died holds up the month''s posting and later days'' accruals (PB066), and cancelling it means that day''s interest is never accrued. reason: 1 to 500 characters (PB022, PB023); PB083 when the job does not exist, PB084 when it is not dead. Audited (job.cancel, with the reason)';

CREATE FUNCTION bank.schedule_jobs() RETURNS integer
	AS 'MODULE_PATHNAME', 'pgbank_schedule_jobs'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.schedule_jobs() IS
'Queues every job bank.job_schedule says is due and returns how many; removes finished jobs older than pgbank.job_retention. Schedule rows are locked FOR UPDATE SKIP LOCKED and calendar periods are keyed by date, so concurrent or repeated calls queue each run once';

CREATE FUNCTION bank.purge_sessions() RETURNS bigint
	AS 'MODULE_PATHNAME', 'pgbank_purge_sessions'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.purge_sessions() IS
'Removes the sessions that ended (revoked, expired, or idle past pgbank.idle_timeout) more than pgbank.session_retention ago, with their refresh tokens, and returns how many (0 when the retention is 0: kept for ever). Sessions locked by another transaction are left for the next run (SKIP LOCKED). Audited (session.purge) when it removes any';

CREATE FUNCTION bank.purge_idempotency_keys() RETURNS bigint
	AS 'MODULE_PATHNAME', 'pgbank_purge_idempotency_keys'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.purge_idempotency_keys() IS
'Releases the idempotency keys (key, scope and fingerprint) of settled transfers (not pending, not held for review) created more than pgbank.idempotency_retention ago, and returns how many (0 when the retention is 0, the default: keys kept for ever). A released key can be used again for a new request; the transfer stays whole. Transfers locked by another transaction are left for the next run (SKIP LOCKED). Audited (idempotency.purge) when it releases any';

-- The jobs pgbank schedules itself.  A job kind more is one row here, and
-- its schedule one row in bank.job_schedule.
INSERT INTO bank.job_kinds (name, function, enqueue_roles, description) VALUES
('expire_holds', 'bank.expire_holds()', '{bank_service,bank_admin}', 'Voids pending holds past their expiry'),
('purge_sessions', 'bank.purge_sessions()', '{bank_admin}', 'Removes sessions ended more than pgbank.session_retention ago'),
('purge_idempotency_keys', 'bank.purge_idempotency_keys()', '{bank_admin}', 'Releases idempotency keys older than pgbank.idempotency_retention'),
('purge_audit', 'bank.purge_expired()', '{bank_admin}', 'Removes audit rows older than pgbank.audit_retention, sealing what remains');
INSERT INTO bank.job_schedule (job, every) VALUES
('expire_holds', NULL), ('purge_sessions', '1 hour'), ('purge_idempotency_keys', '1 hour'),
('purge_audit', '1 hour');
-- interest and fees (products.c): each day's accrual five minutes after the
-- day ends, each month's posting fifteen minutes after the month ends
INSERT INTO bank.job_kinds (name, function, description, max_attempts, backoff) VALUES
('accrue_interest', 'bank.accrue_interest(date)', 'Accrues the interest of the day that ended', 10, '1 minute'),
('post_month', 'bank.post_month(date)', 'Posts the interest and fees of the month that ended', 10, '1 minute');
INSERT INTO bank.job_schedule (job, period, delay) VALUES
('accrue_interest', 'day', '5 minutes'), ('post_month', 'month', '15 minutes');

--
-- Account events (events.c): per customer, an ordered feed of what happened
-- to their accounts, for clients that follow it (pgbank-http's
-- GET /v1/events) and resume after the last event they saw.  Written at
-- commit, in the transaction that made the change, from what the triggers
-- below noted, without any lock; numbered per customer 1, 2, 3, ... by the
-- reader (bank.events_since), under the customer's row of bank.event_feeds,
-- and only rows already committed: so a number is never given to a row that
-- commits later than a higher one.  Each commit that writes events of a
-- followed feed (bank.events_watch) NOTIFYs channel pgbank_events with a
-- pseudonym of the customer (never an id or an amount).
--

CREATE TABLE bank.event_feeds (
	customer_id bigint PRIMARY KEY,
	last_seq	bigint NOT NULL CHECK (last_seq >= 0),
	watched_until timestamptz
);
COMMENT ON TABLE bank.event_feeds IS
'Per customer, the number of their latest numbered account event: the counter that numbers their feed without gaps (readers number committed events under this row''s lock). Written by the extension only';
COMMENT ON COLUMN bank.event_feeds.watched_until IS
'Until when someone follows this feed (bank.events_watch): only then does a commit NOTIFY, since every NOTIFY takes a database-wide lock through its commit';

CREATE TABLE bank.account_events (
	id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	customer_id bigint NOT NULL,
	seq			bigint CHECK (seq > 0),
	kind		text NOT NULL CHECK (kind IN ('transfer.debit', 'transfer.credit',
							'transfer.held_for_review', 'transfer.rejected',
							'hold.created', 'hold.captured', 'hold.voided',
							'account.frozen', 'account.unfrozen', 'account.closed')),
	account_id	bigint NOT NULL,
	transfer_id bigint,
	amount		bigint,
	currency	char(3) NOT NULL,
	occurred_at timestamptz NOT NULL,
	UNIQUE (customer_id, seq),
	CHECK ((kind LIKE 'account.%') = (transfer_id IS NULL AND amount IS NULL))
);
-- committed events waiting for their number, in the order they get it
CREATE INDEX account_events_unnumbered_idx ON bank.account_events (customer_id, id)
	WHERE seq IS NULL;
CREATE INDEX account_events_occurred_idx ON bank.account_events (occurred_at);
COMMENT ON TABLE bank.account_events IS
'What happened to customers'' accounts, per customer in feed order (seq, given by the first reader after the commit): money in and out (transfer.debit, transfer.credit), holds (hold.created, hold.captured, hold.voided), reviews (transfer.held_for_review, transfer.rejected), freezes and closing (account.frozen, account.unfrozen, account.closed). Declines are not events. Written by the extension at commit; removed only by bank.purge_account_events, past pgbank.event_retention';
COMMENT ON COLUMN bank.account_events.seq IS
'Position in the customer''s feed: 1, 2, 3, ... with no gaps; NULL until a reader of the feed numbers the (committed) event; never changed after. The SSE event id';
COMMENT ON COLUMN bank.account_events.amount IS
'Minor units, negative on the transfer''s debited side (money out of, or reserved on, account_id), positive on its credited side; NULL for account events';

CREATE FUNCTION bank.account_event() RETURNS trigger
	AS 'MODULE_PATHNAME', 'pgbank_account_event'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.account_event() IS
'Trigger: notes the account event of a new transfer row, a transfer''s change of status, or an account''s change of status, to be written at commit (readers number them). Runs no SQL';

CREATE TRIGGER transfers_events_insert AFTER INSERT ON bank.transfers
	FOR EACH ROW WHEN (NEW.status <> 'failed') EXECUTE FUNCTION bank.account_event();
CREATE TRIGGER transfers_events_update AFTER UPDATE OF status ON bank.transfers
	FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
	EXECUTE FUNCTION bank.account_event();
CREATE TRIGGER accounts_events_update AFTER UPDATE OF status ON bank.accounts
	FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
	EXECUTE FUNCTION bank.account_event();
COMMENT ON TRIGGER transfers_events_insert ON bank.transfers IS
'Posted transfers, holds and transfers held for review are account events (declines are not)';
COMMENT ON TRIGGER transfers_events_update ON bank.transfers IS
'Captures, voids, approvals and rejections are account events';
COMMENT ON TRIGGER accounts_events_update ON bank.accounts IS
'Freezing, unfreezing and closing an account are account events';

CREATE TYPE bank.account_event AS (
	seq			bigint,
	kind		text,
	account_id	bigint,
	transfer_id bigint,
	amount		numeric,
	currency	char(3),
	occurred_at timestamptz
);
COMMENT ON TYPE bank.account_event IS
'An account event as bank.events_since returns it: amount as an exact decimal of the currency, negative for money out of the account';

CREATE FUNCTION bank.events_since(after_id bigint, max integer DEFAULT 100)
	RETURNS SETOF bank.account_event
	AS 'MODULE_PATHNAME', 'pgbank_events_since'
	LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 100;
COMMENT ON FUNCTION bank.events_since(bigint, integer) IS
'The calling customer''s account events numbered above after_id (0: from the first kept), oldest first, at most max (1 to 1000); first numbers the events committed since the last call (not in a read-only transaction, which sees only numbered ones). Customers only (PB041 otherwise); read under row-level security. Numbers have no gaps: an event missing below the first returned was purged (pgbank.event_retention)';

CREATE FUNCTION bank.events_head() RETURNS bigint
	AS 'MODULE_PATHNAME', 'pgbank_events_head'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.events_head() IS
'The number of the calling customer''s latest account event (0 for none), after numbering those committed since the last call (as bank.events_since): where a follower that wants only new events starts. Customers only (PB041 otherwise)';

CREATE FUNCTION bank.events_watch(seconds integer) RETURNS void
	AS 'MODULE_PATHNAME', 'pgbank_events_watch'
	LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.events_watch(integer) IS
'Marks the calling customer''s feed as followed for the next seconds (1 to 3600): until then each commit that writes their events NOTIFYs pgbank_events. Writes only when less than half of that time is left. Customers only (PB041 otherwise)';

CREATE FUNCTION bank.purge_account_events() RETURNS bigint
	AS 'MODULE_PATHNAME', 'pgbank_purge_account_events'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.purge_account_events() IS
'Removes the account events that occurred more than pgbank.event_retention ago (default 30 days) and returns how many (0 when the retention is 0: kept for ever). Feed numbers are never reused. Audited (account_event.purge) when it removes any';

INSERT INTO bank.job_kinds (name, function, enqueue_roles, description) VALUES
('purge_account_events', 'bank.purge_account_events()', '{bank_admin}',
 'Removes account events older than pgbank.event_retention');
INSERT INTO bank.job_schedule (job, every) VALUES ('purge_account_events', '1 hour');

--
-- Invariants held by the database itself
--

CREATE FUNCTION bank.refuse_change() RETURNS trigger
	AS 'MODULE_PATHNAME', 'pgbank_refuse_change'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.refuse_change() IS
'Trigger: refuses UPDATE, DELETE and TRUNCATE (PB030) on append-only tables, whoever asks';

CREATE TRIGGER entries_immutable BEFORE UPDATE OR DELETE ON bank.entries
	FOR EACH ROW EXECUTE FUNCTION bank.refuse_change();
CREATE TRIGGER entries_no_truncate BEFORE TRUNCATE ON bank.entries
	FOR EACH STATEMENT EXECUTE FUNCTION bank.refuse_change();
CREATE TRIGGER audit_events_immutable BEFORE UPDATE OR DELETE ON bank.audit_events
	FOR EACH ROW EXECUTE FUNCTION bank.refuse_change();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON bank.audit_events
	FOR EACH STATEMENT EXECUTE FUNCTION bank.refuse_change();
CREATE TRIGGER audit_checkpoints_immutable BEFORE UPDATE OR DELETE ON bank.audit_checkpoints
	FOR EACH ROW EXECUTE FUNCTION bank.refuse_change();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON bank.audit_checkpoints
	FOR EACH STATEMENT EXECUTE FUNCTION bank.refuse_change();
CREATE TRIGGER interest_accruals_immutable BEFORE UPDATE OR DELETE ON bank.interest_accruals
	FOR EACH ROW EXECUTE FUNCTION bank.refuse_change();
CREATE TRIGGER interest_accruals_no_truncate BEFORE TRUNCATE ON bank.interest_accruals
	FOR EACH STATEMENT EXECUTE FUNCTION bank.refuse_change();
CREATE TRIGGER month_postings_immutable BEFORE UPDATE OR DELETE ON bank.month_postings
	FOR EACH ROW EXECUTE FUNCTION bank.refuse_change();
CREATE TRIGGER month_postings_no_truncate BEFORE TRUNCATE ON bank.month_postings
	FOR EACH STATEMENT EXECUTE FUNCTION bank.refuse_change();

CREATE FUNCTION bank.guard_engine_columns() RETURNS trigger
	AS 'MODULE_PATHNAME', 'pgbank_guard_engine_columns'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.guard_engine_columns() IS
'Trigger: only the ledger engine may change accounts.balance and pending_out, create transfers, insert legs or delete pending legs; a new account starts empty and its id, number, owner, type and currency never change; a transfer''s accounts exist and hold its currency (PB030, PB009, PB004); a transfer''s defining columns never change and its status moves only along the allowed transitions (PB031)';

CREATE TRIGGER accounts_guard BEFORE INSERT OR UPDATE ON bank.accounts
	FOR EACH ROW EXECUTE FUNCTION bank.guard_engine_columns();
CREATE TRIGGER currencies_immutable BEFORE UPDATE OR DELETE ON bank.currencies
	FOR EACH ROW EXECUTE FUNCTION bank.refuse_change();
CREATE TRIGGER currencies_no_truncate BEFORE TRUNCATE ON bank.currencies
	FOR EACH STATEMENT EXECUTE FUNCTION bank.refuse_change();
CREATE TRIGGER accounts_no_delete BEFORE DELETE ON bank.accounts
	FOR EACH ROW EXECUTE FUNCTION bank.refuse_change();
CREATE TRIGGER accounts_no_truncate BEFORE TRUNCATE ON bank.accounts
	FOR EACH STATEMENT EXECUTE FUNCTION bank.refuse_change();
CREATE TRIGGER pending_legs_guard BEFORE INSERT OR UPDATE OR DELETE ON bank.pending_legs
	FOR EACH ROW EXECUTE FUNCTION bank.guard_engine_columns();
CREATE TRIGGER pending_legs_no_truncate BEFORE TRUNCATE ON bank.pending_legs
	FOR EACH STATEMENT EXECUTE FUNCTION bank.refuse_change();
CREATE TRIGGER entries_guard BEFORE INSERT ON bank.entries
	FOR EACH ROW EXECUTE FUNCTION bank.guard_engine_columns();
CREATE TRIGGER transfers_guard BEFORE INSERT OR UPDATE OR DELETE ON bank.transfers
	FOR EACH ROW EXECUTE FUNCTION bank.guard_engine_columns();
CREATE TRIGGER transfers_no_truncate BEFORE TRUNCATE ON bank.transfers
	FOR EACH STATEMENT EXECUTE FUNCTION bank.refuse_change();

CREATE FUNCTION bank.check_transfer_legs() RETURNS trigger
	AS 'MODULE_PATHNAME', 'pgbank_check_transfer_legs'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION bank.check_transfer_legs() IS
'Constraint trigger, at commit: a posted or reversed transfer has exactly a debit leg of -posted_amount on from_account and a credit leg of +posted_amount on to_account, both in its currency; any other has no legs (PB032)';

CREATE CONSTRAINT TRIGGER transfers_legs_balance AFTER INSERT OR UPDATE ON bank.transfers
	DEFERRABLE INITIALLY DEFERRED
	FOR EACH ROW EXECUTE FUNCTION bank.check_transfer_legs();

--
-- System accounts: one settlement, fee income and interest expense account per currency
--

-- System account numbers are 9 followed by nine digits; customer account
-- numbers are the zero-padded account id (below 9,000,000,000).
INSERT INTO bank.accounts (number, type, name, currency)
SELECT base || lpad((98 - (base::bigint * 100) % 97)::text, 2, '0'), type, name, code
  FROM (SELECT '9' || lpad((row_number() OVER (ORDER BY c.code, t.type))::text, 9, '0') AS base,
			   t.type, t.type || ' ' || c.code AS name, c.code
		  FROM bank.currencies c
		 CROSS JOIN (VALUES ('settlement'::bank.account_type), ('fee_income'), ('interest_expense')) t(type)) s;

--
-- Every function that runs SQL does so with search_path pinned to pg_catalog
-- (and pg_temp last): the SQL the C code prepares, and functions and
-- operators it names without a schema, can never resolve to a caller's
-- object.  The exceptions run no SQL and look nothing up by name: pure
-- arithmetic, the identity checks row-level security calls on every query,
-- the request context pgbank-http sets on every request, and the row
-- triggers of every ledger write, which read the catalog by OID.
-- A pin costs a save and restore of search_path per call (per row, in a
-- policy or a trigger).  spi.c refuses to run SQL under any other
-- search_path, so an exception that ever ran SQL would fail its tests.
--

DO $$
DECLARE
	f regprocedure;
BEGIN
	FOR f IN SELECT p.oid FROM pg_catalog.pg_proc p
			  WHERE p.pronamespace = 'bank'::pg_catalog.regnamespace
				AND p.oid NOT IN ('bank.minor_to_amount(bigint, integer)'::pg_catalog.regprocedure,
								  'bank.account_number_valid(text)'::pg_catalog.regprocedure,
								  'bank.current_customer_id()'::pg_catalog.regprocedure,
								  'bank.acting_as_staff()'::pg_catalog.regprocedure,
								  'bank.set_request_context(text, text, text)'::pg_catalog.regprocedure,
								  'bank.refuse_change()'::pg_catalog.regprocedure,
								  'bank.guard_engine_columns()'::pg_catalog.regprocedure,
								  'bank.check_transfer_legs()'::pg_catalog.regprocedure,
								  'bank.account_event()'::pg_catalog.regprocedure)
	LOOP
		EXECUTE pg_catalog.format('ALTER FUNCTION %s SET search_path = pg_catalog, pg_temp', f);
	END LOOP;
END
$$;

-- The ledger writers run keyed lookups only, against tables whose size swings
-- (pending_legs fills and empties as legs are folded): a plan made while a
-- table was empty would scan it sequentially ever after.  So they are planned
-- without sequential scans; the reports keep the planner's own judgement.
ALTER FUNCTION bank.transfer(bigint, bigint, numeric, text, text, jsonb) SET enable_seqscan = off;
ALTER FUNCTION bank.deposit(bigint, numeric, text, text, jsonb) SET enable_seqscan = off;
ALTER FUNCTION bank.withdraw(bigint, numeric, text, text, jsonb) SET enable_seqscan = off;
ALTER FUNCTION bank.hold(bigint, bigint, numeric, text, interval, text, jsonb) SET enable_seqscan = off;
ALTER FUNCTION bank.capture(bigint, numeric) SET enable_seqscan = off;
ALTER FUNCTION bank.void(bigint) SET enable_seqscan = off;
ALTER FUNCTION bank.reverse(bigint, text, text) SET enable_seqscan = off;
ALTER FUNCTION bank.transfer_batch(jsonb) SET enable_seqscan = off;
ALTER FUNCTION bank.fold_account(bigint) SET enable_seqscan = off;
ALTER FUNCTION bank.close_account(bigint) SET enable_seqscan = off;
ALTER FUNCTION bank.review_approve(bigint, text) SET enable_seqscan = off;
ALTER FUNCTION bank.review_reject(bigint, text) SET enable_seqscan = off;
ALTER FUNCTION bank.set_overdraft_limit(bigint, numeric, text) SET enable_seqscan = off;

--
-- Row-level security: enabled and forced on every table.  Customers see
-- their own rows (bank.current_customer_id() rests on a verified token held
-- in backend memory, never on a setting); staff roles see every row while
-- they have staff authority (bank.acting_as_staff()).  Tables without a
-- policy for a role show it nothing.  bank_engine bypasses RLS: it is the
-- role the C code writes the ledger as.
--
DO $$
DECLARE
	t regclass;
BEGIN
	FOR t IN SELECT c.oid FROM pg_catalog.pg_class c
			  WHERE c.relnamespace = 'bank'::pg_catalog.regnamespace AND c.relkind IN ('r', 'p')
	LOOP
		EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', t);
		EXECUTE pg_catalog.format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', t);
	END LOOP;
END
$$;

CREATE POLICY currencies_read ON bank.currencies FOR SELECT
	TO bank_customer, bank_teller, bank_auditor, bank_service, bank_admin
	USING (true);

CREATE POLICY customers_own ON bank.customers FOR SELECT TO bank_customer
	USING (id = bank.current_customer_id());
CREATE POLICY customers_staff ON bank.customers FOR SELECT
	TO bank_teller, bank_auditor, bank_service, bank_admin
	USING (bank.acting_as_staff());

CREATE POLICY accounts_own ON bank.accounts FOR SELECT TO bank_customer
	USING (customer_id = bank.current_customer_id());
CREATE POLICY accounts_staff ON bank.accounts FOR SELECT
	TO bank_teller, bank_auditor, bank_service, bank_admin
	USING (bank.acting_as_staff());

CREATE POLICY transfers_own ON bank.transfers FOR SELECT TO bank_customer
	USING (EXISTS (SELECT 1 FROM bank.accounts a
					WHERE a.id IN (from_account, to_account)
					  AND a.customer_id = bank.current_customer_id()));
CREATE POLICY transfers_staff ON bank.transfers FOR SELECT
	TO bank_teller, bank_auditor, bank_service, bank_admin
	USING (bank.acting_as_staff());

CREATE POLICY entries_own ON bank.entries FOR SELECT TO bank_customer
	USING (account_id IN (SELECT a.id FROM bank.accounts a
						   WHERE a.customer_id = bank.current_customer_id()));
CREATE POLICY entries_staff ON bank.entries FOR SELECT
	TO bank_teller, bank_auditor, bank_service, bank_admin
	USING (bank.acting_as_staff());

CREATE POLICY pending_legs_own ON bank.pending_legs FOR SELECT TO bank_customer
	USING (account_id IN (SELECT a.id FROM bank.accounts a
						   WHERE a.customer_id = bank.current_customer_id()));
CREATE POLICY pending_legs_staff ON bank.pending_legs FOR SELECT
	TO bank_teller, bank_auditor, bank_service, bank_admin
	USING (bank.acting_as_staff());

-- a customer reads their own security events; auditors and admins read all
CREATE POLICY audit_events_own ON bank.audit_events FOR SELECT TO bank_customer
	USING (actor_customer = bank.current_customer_id()
		   AND resource_type IN ('session', 'credential'));
CREATE POLICY audit_events_staff ON bank.audit_events FOR SELECT
	TO bank_auditor, bank_admin
	USING (bank.acting_as_staff());

-- prices are no secret; accruals and postings are the account owner's
CREATE POLICY interest_rates_read ON bank.interest_rates FOR SELECT
	TO bank_customer, bank_teller, bank_auditor, bank_service, bank_admin
	USING (true);
CREATE POLICY fee_schedule_read ON bank.fee_schedule FOR SELECT
	TO bank_customer, bank_teller, bank_auditor, bank_service, bank_admin
	USING (true);
CREATE POLICY interest_accruals_own ON bank.interest_accruals FOR SELECT TO bank_customer
	USING (account_id IN (SELECT a.id FROM bank.accounts a
						   WHERE a.customer_id = bank.current_customer_id()));
CREATE POLICY interest_accruals_staff ON bank.interest_accruals FOR SELECT
	TO bank_teller, bank_auditor, bank_admin
	USING (bank.acting_as_staff());
CREATE POLICY month_postings_own ON bank.month_postings FOR SELECT TO bank_customer
	USING (account_id IN (SELECT a.id FROM bank.accounts a
						   WHERE a.customer_id = bank.current_customer_id()));
CREATE POLICY month_postings_staff ON bank.month_postings FOR SELECT
	TO bank_teller, bank_auditor, bank_admin
	USING (bank.acting_as_staff());
-- the vault: masked numbers only, for staff that handle cards or audit
CREATE POLICY cards_staff ON bank.cards FOR SELECT
	TO bank_auditor, bank_service, bank_admin
	USING (bank.acting_as_staff());

-- auditors and admins read the background jobs
CREATE POLICY job_kinds_staff ON bank.job_kinds FOR SELECT TO bank_auditor, bank_admin
	USING (bank.acting_as_staff());
CREATE POLICY job_schedule_staff ON bank.job_schedule FOR SELECT TO bank_auditor, bank_admin
	USING (bank.acting_as_staff());
CREATE POLICY job_queue_staff ON bank.job_queue FOR SELECT TO bank_auditor, bank_admin
	USING (bank.acting_as_staff());

COMMENT ON POLICY job_kinds_staff ON bank.job_kinds IS 'Auditors and admins see the job kinds';
COMMENT ON POLICY job_schedule_staff ON bank.job_schedule IS 'Auditors and admins see the job schedule';
COMMENT ON POLICY job_queue_staff ON bank.job_queue IS 'Auditors and admins see the background jobs';
-- risk rules: staff read them, admins edit them; the review queue and
-- limits are staff's; counters and payees are the engine's alone
CREATE POLICY risk_rules_staff ON bank.risk_rules FOR SELECT
	TO bank_teller, bank_auditor, bank_admin
	USING (bank.acting_as_staff());
CREATE POLICY risk_rules_admin_insert ON bank.risk_rules FOR INSERT TO bank_admin
	WITH CHECK (bank.acting_as_staff());
CREATE POLICY risk_rules_admin_update ON bank.risk_rules FOR UPDATE TO bank_admin
	USING (bank.acting_as_staff()) WITH CHECK (bank.acting_as_staff());
CREATE POLICY risk_rules_admin_delete ON bank.risk_rules FOR DELETE TO bank_admin
	USING (bank.acting_as_staff());
CREATE POLICY customer_limits_staff ON bank.customer_limits FOR SELECT
	TO bank_teller, bank_auditor, bank_admin
	USING (bank.acting_as_staff());
CREATE POLICY fraud_reviews_staff ON bank.fraud_reviews FOR SELECT
	TO bank_teller, bank_auditor, bank_admin
	USING (bank.acting_as_staff());
COMMENT ON POLICY risk_rules_staff ON bank.risk_rules IS 'Tellers, auditors and admins read the rules while they have staff authority';
COMMENT ON POLICY risk_rules_admin_insert ON bank.risk_rules IS 'Admins with staff authority add rules';
COMMENT ON POLICY risk_rules_admin_update ON bank.risk_rules IS 'Admins with staff authority change rules';
COMMENT ON POLICY risk_rules_admin_delete ON bank.risk_rules IS 'Admins with staff authority delete rules';
COMMENT ON POLICY customer_limits_staff ON bank.customer_limits IS 'Staff read customers'' outgoing limits';
COMMENT ON POLICY fraud_reviews_staff ON bank.fraud_reviews IS 'Staff read the review queue and its decisions';
-- the day's and month's totals, for bank.account_exceptions (a security
-- invoker view): auditors and admins only, not the recent moves
CREATE POLICY risk_counters_staff ON bank.risk_counters FOR SELECT
	TO bank_auditor, bank_admin
	USING (bank.acting_as_staff());
COMMENT ON POLICY risk_counters_staff ON bank.risk_counters IS 'Auditors and admins read the outgoing totals (bank.account_exceptions)';

-- account events: a customer reads their own feed; nobody else reads it
-- through SQL (pgbank-http reads it as the customer)
CREATE POLICY account_events_own ON bank.account_events FOR SELECT TO bank_customer
	USING (customer_id = bank.current_customer_id());
CREATE POLICY event_feeds_own ON bank.event_feeds FOR SELECT TO bank_customer
	USING (customer_id = bank.current_customer_id());
COMMENT ON POLICY account_events_own ON bank.account_events IS 'A customer sees their own account events only';
COMMENT ON POLICY event_feeds_own ON bank.event_feeds IS 'A customer sees their own feed''s counter only';

COMMENT ON POLICY customers_own ON bank.customers IS 'A customer sees their own row only';
COMMENT ON POLICY accounts_own ON bank.accounts IS 'A customer sees their own accounts only';
COMMENT ON POLICY transfers_own ON bank.transfers IS 'A customer sees transfers into or out of their own accounts';
COMMENT ON POLICY entries_own ON bank.entries IS 'A customer sees the entries of their own accounts';
COMMENT ON POLICY pending_legs_own ON bank.pending_legs IS 'A customer sees the unfolded legs of their own accounts';
COMMENT ON POLICY audit_events_own ON bank.audit_events IS 'A customer sees their own session and credential events';
COMMENT ON POLICY interest_rates_read ON bank.interest_rates IS 'Interest rates are prices: every API role but anonymous reads them';
COMMENT ON POLICY fee_schedule_read ON bank.fee_schedule IS 'Fees are prices: every API role but anonymous reads them';
COMMENT ON POLICY interest_accruals_own ON bank.interest_accruals IS 'A customer sees the interest accrued on their own accounts';
COMMENT ON POLICY month_postings_own ON bank.month_postings IS 'A customer sees the interest and fees posted to their own accounts';
COMMENT ON POLICY cards_staff ON bank.cards IS 'Staff that handle or audit cards see tokens and masked numbers (the encrypted number is granted to no API role)';

--
-- Privileges: nothing to PUBLIC; each role exactly what it needs.  Tables
-- are read-only for API roles (every write goes through a function, which
-- writes as bank_engine); customer credentials and personal data columns,
-- sessions, refresh tokens, API keys and data keys are readable by no API
-- role at all.
--
REVOKE ALL ON ALL TABLES IN SCHEMA bank FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA bank FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA bank FROM PUBLIC;

GRANT USAGE ON SCHEMA bank TO bank_anon, bank_customer, bank_teller, bank_auditor,
	bank_service, bank_admin, bank_gateway, bank_engine;
GRANT USAGE ON TYPE bank.account_type, bank.account_status, bank.transfer_kind,
	bank.transfer_status, bank.kyc_status TO bank_customer, bank_teller, bank_auditor,
	bank_service, bank_admin;

GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA bank TO bank_engine;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA bank TO bank_engine;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA bank TO bank_engine;
REVOKE EXECUTE ON FUNCTION bank.totp_code(text, timestamptz, integer) FROM bank_engine;

GRANT SELECT ON bank.currencies, bank.accounts, bank.transfers, bank.entries,
	bank.pending_legs, bank.account_balances
	TO bank_customer, bank_teller, bank_auditor, bank_service, bank_admin;
GRANT SELECT (id, email, first_name, last_name, created_at, kyc_status, kyc_updated_at,
			  mfa_enabled, erased_at) ON bank.customers
	TO bank_customer, bank_teller, bank_auditor, bank_service, bank_admin;
GRANT SELECT ON bank.audit_events TO bank_customer, bank_auditor, bank_admin;
GRANT SELECT ON bank.interest_rates, bank.fee_schedule
	TO bank_customer, bank_teller, bank_auditor, bank_service, bank_admin;
GRANT SELECT ON bank.interest_accruals, bank.month_postings
	TO bank_customer, bank_teller, bank_auditor, bank_admin;
GRANT SELECT (token, masked, expiry_month, expiry_year, created_by, created_at) ON bank.cards
	TO bank_auditor, bank_service, bank_admin;
GRANT SELECT ON bank.account_exceptions TO bank_auditor, bank_admin;
GRANT SELECT (customer_id, currency, day, day_total, month, month_total) ON bank.risk_counters
	TO bank_auditor, bank_admin;
GRANT SELECT ON bank.risk_rules, bank.customer_limits, bank.fraud_reviews
	TO bank_teller, bank_auditor, bank_admin;
-- risk rules are configuration that admins edit directly (audited by trigger)
GRANT INSERT, UPDATE, DELETE ON bank.risk_rules TO bank_admin;
GRANT USAGE ON TYPE bank.risk_rule_kind, bank.risk_action, bank.review_status
	TO bank_teller, bank_auditor, bank_admin;

-- helpers that views and policies call
GRANT EXECUTE ON FUNCTION bank.minor_to_amount(bigint, integer), bank.current_customer_id(),
	bank.acting_as_staff(), bank.whoami(), bank.set_request_context(text, text, text),
	bank.amount_to_minor(numeric, char), bank.account_number_valid(text)
	TO bank_anon, bank_customer, bank_teller, bank_auditor, bank_service, bank_admin;
GRANT EXECUTE ON FUNCTION bank.div_round_half_even(numeric, numeric),
	bank.business_date(timestamptz)
	TO bank_customer, bank_teller, bank_auditor, bank_service, bank_admin;

-- anonymous: become someone
GRANT EXECUTE ON FUNCTION bank.register(text, text, text, text, text),
	bank.login(text, text, text), bank.refresh(text), bank.end_session(text)
	TO bank_anon;

-- verifying a credential: customers use tokens, staff roles use API keys
GRANT EXECUTE ON FUNCTION bank.authenticate(text) TO bank_customer;
GRANT EXECUTE ON FUNCTION bank.authenticate_api_key(text)
	TO bank_teller, bank_auditor, bank_service, bank_admin;
-- the gateway's own login learns a key's role before it switches to it
GRANT EXECUTE ON FUNCTION bank.api_key_role(text) TO bank_gateway;
-- pgbank-http switches the role, verifies the credential and sets the request
-- context in one statement, whose EXECUTE checks are made when it starts,
-- still as bank_gateway.  This gives the gateway nothing: it may SET ROLE to
-- any bank role anyway, and as itself these refuse (PB042: not a customer
-- role, not the key's role) or only describe the request.
GRANT EXECUTE ON FUNCTION bank.authenticate(text), bank.authenticate_api_key(text),
	bank.set_request_context(text, text, text)
	TO bank_gateway;
-- the same for the event streams' first statement (GET /v1/events): as
-- itself the gateway is no customer, and bank.events_watch refuses (PB041)
GRANT EXECUTE ON FUNCTION bank.events_watch(integer) TO bank_gateway;

-- customers
GRANT EXECUTE ON FUNCTION bank.logout(), bank.change_password(text, text), bank.mfa_enroll(),
	bank.mfa_confirm(text), bank.mfa_disable(text), bank.export_my_data(),
	bank.transfer(bigint, bigint, numeric, text, text, jsonb),
	bank.hold(bigint, bigint, numeric, text, interval, text, jsonb),
	bank.rename_account(bigint, text), bank.close_account(bigint)
	TO bank_customer;

-- customers and staff: reads of what they may see, opening accounts, holds
GRANT EXECUTE ON FUNCTION bank.get_customer(bigint),
	bank.get_account(bigint), bank.list_accounts(bigint, bank.account_type, bigint, integer),
	bank.balance(bigint, timestamptz), bank.entries(bigint, bigint, integer),
	bank.statement(bigint, timestamptz, timestamptz),
	bank.get_transfer(bigint), bank.list_transfers(bigint, bigint, integer)
	TO bank_customer, bank_teller, bank_auditor, bank_service, bank_admin;
-- amounts in minor units, for the roles that move money
GRANT EXECUTE ON FUNCTION bank.account_amount(bigint, bigint)
	TO bank_customer, bank_service, bank_admin;
GRANT EXECUTE ON FUNCTION bank.open_account(bank.account_type, text, char, bigint),
	bank.update_profile(text, text, text, bigint)
	TO bank_customer, bank_teller, bank_admin;
GRANT EXECUTE ON FUNCTION bank.capture(bigint, numeric), bank.void(bigint)
	TO bank_customer, bank_service, bank_admin;

-- tellers (support) and admins
GRANT EXECUTE ON FUNCTION bank.create_customer(text, text, text),
	bank.freeze_account(bigint, text), bank.unfreeze_account(bigint, text),
	bank.reverse(bigint, text, text), bank.set_kyc_status(bigint, bank.kyc_status, text),
	bank.set_customer_limits(bigint, char, numeric, numeric, text),
	bank.set_overdraft_limit(bigint, numeric, text), bank.review_queue(bigint, integer),
	bank.review_approve(bigint, text), bank.review_reject(bigint, text)
	TO bank_teller, bank_admin;

-- payment rails
GRANT EXECUTE ON FUNCTION bank.deposit(bigint, numeric, text, text, jsonb),
	bank.withdraw(bigint, numeric, text, text, jsonb), bank.expire_holds(),
	bank.fold_account(bigint)
	TO bank_service, bank_admin;
GRANT EXECUTE ON FUNCTION bank.transfer_batch(jsonb) TO bank_service;

-- reports and the audit trail
GRANT EXECUTE ON FUNCTION bank.trial_balance(), bank.check_ledger(),
	bank.audit_verify(bigint, bytea, bigint, bigint), bank.audit_head()
	TO bank_auditor, bank_admin;
GRANT EXECUTE ON FUNCTION
	bank.audit_search(bigint, text, text, text, timestamptz, timestamptz, timestamptz, bigint, integer)
	TO bank_customer, bank_auditor, bank_admin;
GRANT EXECUTE ON FUNCTION bank.purge_expired() TO bank_admin;
GRANT EXECUTE ON FUNCTION bank.daily_trial_balance(date) TO bank_auditor, bank_admin;
GRANT EXECUTE ON FUNCTION bank.monthly_statement(bigint, date)
	TO bank_customer, bank_auditor, bank_admin;

-- interest and fees: configured by admins, run by the job worker (bank_service) or admins
GRANT EXECUTE ON FUNCTION bank.set_interest_rate(bank.account_type, char, numeric, date),
	bank.set_fee(bank.account_type, char, text, numeric, date)
	TO bank_admin;
GRANT EXECUTE ON FUNCTION bank.accrue_interest(date), bank.post_month(date)
	TO bank_service, bank_admin;

-- the card vault: payment rails only
GRANT EXECUTE ON FUNCTION bank.tokenize_card(text, text), bank.detokenize_card(text)
	TO bank_service;

-- background jobs: services and admins queue them, admins run them by hand
-- (the worker runs them as a superuser), auditors and admins watch them
GRANT EXECUTE ON FUNCTION bank.enqueue_job(text, text[], text, timestamptz)
	TO bank_service, bank_admin;
GRANT EXECUTE ON FUNCTION bank.run_next_job(), bank.retry_job(bigint), bank.cancel_job(bigint, text),
	bank.schedule_jobs(),
	bank.purge_sessions(),
	bank.purge_idempotency_keys()
	TO bank_admin;
GRANT SELECT ON bank.job_kinds, bank.job_schedule, bank.job_queue, bank.job_runs
	TO bank_auditor, bank_admin;

-- account events: customers follow their own feed; admins purge it
GRANT SELECT ON bank.account_events, bank.event_feeds TO bank_customer;
GRANT EXECUTE ON FUNCTION bank.events_since(bigint, integer), bank.events_head(),
	bank.events_watch(integer)
	TO bank_customer;
GRANT EXECUTE ON FUNCTION bank.purge_account_events() TO bank_admin;

-- administration
GRANT EXECUTE ON FUNCTION bank.create_api_key(name, text[], timestamptz, text),
	bank.revoke_api_key(bigint), bank.list_api_keys(), bank.erase_customer(bigint, text)
	TO bank_admin;

-- DBA operations on the bank schema are audited (last: the script's own DDL is not)
CREATE EVENT TRIGGER pgbank_audit_ddl ON ddl_command_end
	EXECUTE FUNCTION bank.audit_ddl();
CREATE EVENT TRIGGER pgbank_audit_drop ON sql_drop
	EXECUTE FUNCTION bank.audit_ddl();
