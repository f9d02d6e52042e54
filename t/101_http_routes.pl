# t/101_http_routes.pl -- every route of pgbank-http through a real server
# and a real cluster: the happy path, then its error cases (missing, unknown
# and mistyped fields, the extension's own refusals mapped to their status
# and stable code), 404 for an unknown route, 405 with Allow for a wrong
# method, problem+json everywhere, and no internal detail in any error.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgbankTest;
use PgbankHttp;

my $h = PgbankHttp->new('routes');
my $node = $h->node;
$h->start_server;

my ($st, $d, $r);
my @problems;    # every error body, checked for leaks at the end

sub call
{
	my ($method, $path, %o) = @_;
	my ($s, $data, $res) = $h->request($method, $path, %o);
	if ($s >= 400)
	{
		push @problems, $res->{content};
		like($res->{headers}{'content-type'}, qr{^application/problem\+json}, "$method $path $s is problem+json");
	}
	return ($s, $data, $res);
}

# --- registration, login, refresh, logout, MFA
($st, $d) = call('POST', '/v1/register', body => { email => 'Alice@Example.com', password => 'correct horse battery staple', first_name => 'Alice', last_name => 'Archer', phone => '+1 555 0100' });
is($st, 201, 'register');
ok($d->{customer_id} > 0, '... returns the customer id');
($st, $d) = call('POST', '/v1/register', body => { email => 'alice@example.com', password => 'correct horse battery staple', first_name => 'A', last_name => 'B' });
is_deeply([ $st, $d->{code} ], [ 409, 'email_taken' ], 'register the same e-mail again: 409 email_taken');
($st, $d) = call('POST', '/v1/register', body => { email => 'weak@example.com', password => 'short', first_name => 'A', last_name => 'B' });
is_deeply([ $st, $d->{code} ], [ 422, 'weak_password' ], 'weak password: 422');
($st, $d) = call('POST', '/v1/register', body => { email => 'x@example.com', password => 'correct horse battery staple', first_name => 'A' });
is_deeply([ $st, $d->{code}, $d->{detail} ], [ 400, 'missing_argument', 'last_name is required' ], 'missing field: 400 naming it');
($st, $d) = call('POST', '/v1/register', body => { email => 'x@example.com', password => 'correct horse battery staple', first_name => 'A', last_name => 'B', kyc_status => 'approved' });
is_deeply([ $st, $d->{code}, $d->{detail} ], [ 400, 'unknown_field', 'unknown field kyc_status' ], 'unknown field: 400 naming it (no mass assignment)');
($st, $d) = call('POST', '/v1/register', body => { email => 'x@example.com', password => 12345678901234, first_name => 'A', last_name => 'B' });
is_deeply([ $st, $d->{code}, $d->{detail} ], [ 400, 'invalid_argument', 'password must be a string' ], 'wrong type: 400 naming it');
($st, $d) = call('POST', '/v1/register', body => '{"email": "x@example.com",');
is_deeply([ $st, $d->{code} ], [ 400, 'invalid_json' ], 'broken JSON: 400');
($st, $d) = call('POST', '/v1/register', body => '{"email": "a@b.c", "email": "d@e.f"}');
is($st, 400, 'a member twice: 400');
($st, $d) = call('POST', '/v1/register', body => '[1]');
is($st, 400, 'a body that is not an object: 400');
# (forms are accepted since t/113_http_browser.pl; another media type is not)
($st, $d) = call('POST', '/v1/register', body => 'email=x', headers => { 'Content-Type' => 'text/plain' });
is($st, 415, 'a body that is neither JSON nor a form: 415');

($st, $d) = call('POST', '/v1/login', body => { email => 'alice@example.com', password => 'wrong password 123' });
is_deeply([ $st, $d->{code} ], [ 401, 'denied' ], 'login with a wrong password: 401 denied');
($st, $d) = call('POST', '/v1/login', body => { email => 'alice@example.com', password => 'correct horse battery staple' });
is($st, 200, 'login');
ok($d->{access_token} && $d->{refresh_token}, '... returns tokens');
ok(!exists $d->{status}, '... without the status field');
my $alice = { token => $d->{access_token}, refresh => $d->{refresh_token}, id => $d->{customer_id} };
my $auth = PgbankHttp::bearer($alice->{token});

($st, $d) = call('POST', '/v1/refresh', body => { refresh_token => $alice->{refresh} });
is($st, 200, 'refresh');
my $old_refresh = $alice->{refresh};
$alice->{token} = $d->{access_token};
$alice->{refresh} = $d->{refresh_token};
$auth = PgbankHttp::bearer($alice->{token});
($st, $d) = call('POST', '/v1/refresh', body => { refresh_token => $old_refresh });
is($st, 401, 'a used refresh token: 401 (and the session ends: reuse detection)');
($st, $d) = call('GET', '/v1/me', headers => $auth);
is_deeply([ $st, $d->{code} ], [ 401, 'invalid_token' ], '... so the access token of that session no longer works');
ok($r = 1, 'log in again');
($st, $d) = call('POST', '/v1/login', body => { email => 'alice@example.com', password => 'correct horse battery staple' });
$alice->{token} = $d->{access_token};
$auth = PgbankHttp::bearer($alice->{token});

($st, $d) = call('GET', '/v1/me', headers => $auth);
is($st, 200, 'GET /v1/me');
is_deeply([ $d->{email}, $d->{phone}, $d->{kyc_status} ], [ 'alice@example.com', '+1 555 0100', 'pending' ], '... the customer in clear');

($st, $d) = call('POST', '/v1/mfa/confirm', headers => $auth, body => { code => '123456' });
is_deeply([ $st, $d->{code} ], [ 409, 'mfa_state' ], 'MFA confirm before enrolling: 409');
($st, $d) = call('POST', '/v1/mfa/enroll', headers => $auth);
is($st, 200, 'MFA enrol');
my $secret = $d->{secret};
like($d->{otpauth_uri}, qr{^otpauth://totp/}, '... with an otpauth URI');
($st, $d) = call('POST', '/v1/mfa/confirm', headers => $auth, body => { code => '000000' });
is_deeply([ $st, $d->{code} ], [ 422, 'invalid_mfa_code' ], 'MFA confirm with a wrong code: 422');
my $code = $node->safe_psql('postgres', "SELECT bank.totp_code('$secret')");
($st, $d) = call('POST', '/v1/mfa/confirm', headers => $auth, body => { code => $code });
is($st, 204, 'MFA confirm');
($st, $d) = call('POST', '/v1/login', body => { email => 'alice@example.com', password => 'correct horse battery staple' });
is_deeply([ $st, $d->{code} ], [ 401, 'mfa_required' ], 'login without the code once enrolled: 401 mfa_required');
$code = $node->safe_psql('postgres', "SELECT bank.totp_code('$secret', now() + interval '30 seconds')");
($st, $d) = call('POST', '/v1/login', body => { email => 'alice@example.com', password => 'correct horse battery staple', totp => $code });
is($st, 200, 'login with TOTP');
$alice->{token} = $d->{access_token};
$auth = PgbankHttp::bearer($alice->{token});

# --- accounts
($st, $d) = call('POST', '/v1/accounts', headers => $auth, body => { type => 'checking', name => 'Everyday', currency => 'USD' });
is($st, 201, 'open an account');
my $a1 = $d->{id};
is_deeply([ $d->{type}, $d->{currency}, $d->{status} ], [ 'checking', 'USD', 'active' ], '... as asked');
($st, $d) = call('POST', '/v1/accounts', headers => $auth, body => { type => 'savings', name => 'Rainy day', currency => 'USD' });
my $a2 = $d->{id};
($st, $d) = call('POST', '/v1/accounts', headers => $auth, body => { type => 'investment', name => 'Stocks', currency => 'USD' });
is_deeply([ $st, $d->{code} ], [ 403, 'kyc_required' ], 'an investment account without KYC: 403');
($st, $d) = call('POST', '/v1/accounts', headers => $auth, body => { type => 'settlement', name => 'x', currency => 'USD' });
is_deeply([ $st, $d->{code} ], [ 400, 'invalid_argument' ], 'a system account type: 400');
($st, $d) = call('POST', '/v1/accounts', headers => $auth, body => { type => 'checking', name => 'x', currency => 'ZZZ' });
is_deeply([ $st, $d->{code} ], [ 400, 'unknown_currency' ], 'an unknown currency: 400');
($st, $d) = call('POST', '/v1/accounts', headers => $auth, body => { type => 'checking', name => '', currency => 'USD' });
is($st, 400, 'an empty name: 400');

($st, $d) = call('GET', '/v1/accounts', headers => $auth);
is($st, 200, 'list accounts');
is_deeply([ map { $_->{id} } @{ $d->{data} } ], [ $a1, $a2 ], '... both, in id order');
($st, $d) = call('GET', '/v1/accounts?limit=1', headers => $auth);
is_deeply([ (map { $_->{id} } @{ $d->{data} }), $d->{next_after} ], [ $a1, $a1 ], 'keyset page 1');
($st, $d) = call('GET', "/v1/accounts?limit=1&after=$a1", headers => $auth);
is_deeply([ map { $_->{id} } @{ $d->{data} } ], [$a2], 'keyset page 2');
($st, $d) = call('GET', '/v1/accounts?type=savings', headers => $auth);
is_deeply([ map { $_->{id} } @{ $d->{data} } ], [$a2], 'type filter');
($st, $d) = call('GET', '/v1/accounts?type=bogus', headers => $auth);
is_deeply([ $st, $d->{detail} ], [ 400, 'type must be one of the allowed values' ], 'a bad type filter: 400');
($st, $d) = call('GET', '/v1/accounts?limit=0', headers => $auth);
is($st, 400, 'limit 0: 400');
($st, $d) = call('GET', '/v1/accounts?colour=red', headers => $auth);
is_deeply([ $st, $d->{detail} ], [ 400, 'unknown query parameter colour' ], 'unknown query parameter: 400 naming it');

($st, $d) = call('GET', "/v1/accounts/$a1", headers => $auth);
is_deeply([ $st, $d->{id} ], [ 200, $a1 ], 'get an account');
($st, $d) = call('GET', '/v1/accounts/abc', headers => $auth);
is_deeply([ $st, $d->{detail} ], [ 400, 'id must be a positive integer id' ], 'a non-numeric id: 400');
($st, $d) = call('GET', '/v1/accounts/99999999', headers => $auth);
is_deeply([ $st, $d->{code} ], [ 404, 'account_not_found' ], 'an account that does not exist: 404');
($st, $d) = call('PATCH', "/v1/accounts/$a2", headers => $auth, body => { name => 'Holidays' });
is_deeply([ $st, $d->{name} ], [ 200, 'Holidays' ], 'rename');
($st, $d) = call('PATCH', "/v1/accounts/$a2", headers => $auth, body => { name => 'Holidays', status => 'closed' });
is($st, 400, 'rename with another field: 400');

# --- money: service deposits, customer transfers, holds
my $svc = $h->api_key('bank_service');
my $skey = { 'X-API-Key' => $svc };
($st, $d) = call('POST', '/v1/deposits', headers => { %$skey, 'Idempotency-Key' => 'dep-1' }, body => { account => $a1, amount => '100.00' });
is_deeply([ $st, $d->{kind}, $d->{status}, $d->{amount} ], [ 201, 'deposit', 'posted', '100.00' ], 'deposit (service key)');
($st, $d) = call('POST', '/v1/deposits', headers => $skey, body => { account => $a1, amount => '100.00' });
is_deeply([ $st, $d->{detail} ], [ 400, 'the Idempotency-Key header is required' ], 'deposit without a key: 400');
($st, $d) = call('POST', '/v1/deposits', headers => { %$skey, 'Idempotency-Key' => 'dep-2' }, body => '{"account": ' . $a1 . ', "amount": 100.5}');
is_deeply([ $st, $d->{code} ], [ 400, 'invalid_amount' ], 'an amount as a JSON float: 400');
($st, $d) = call('POST', '/v1/deposits', headers => { %$skey, 'Idempotency-Key' => 'dep-3' }, body => { account => $a1, amount => '1.001' });
is_deeply([ $st, $d->{code} ], [ 400, 'invalid_amount' ], 'too many decimals: 400 invalid_amount');
($st, $d) = call('POST', '/v1/withdrawals', headers => { %$skey, 'Idempotency-Key' => 'wd-1' }, body => { account => $a1, amount => '10.00' });
is_deeply([ $st, $d->{kind} ], [ 201, 'withdrawal' ], 'withdrawal');
($st, $d) = call('POST', '/v1/withdrawals', headers => { %$skey, 'Idempotency-Key' => 'wd-2' }, body => { account => $a1, amount => '1000.00' });
is_deeply([ $st, $d->{code} ], [ 422, 'insufficient_funds' ], 'withdrawal beyond the balance: 422');
($st, $d) = call('POST', '/v1/deposits', headers => { 'Idempotency-Key' => 'x', %$auth }, body => { account => $a1, amount => '1.00' });
is($st, 403, 'a customer may not deposit: 403');

my $bob = $h->customer('bob@example.com');
my $bauth = PgbankHttp::bearer($bob->{token});
($st, $d) = call('POST', '/v1/accounts', headers => $bauth, body => { type => 'checking', name => 'Bob', currency => 'USD' });
my $b1 = $d->{id};
($st, $d) = call('POST', '/v1/accounts', headers => $bauth, body => { type => 'checking', name => 'Bob EUR', currency => 'EUR' });
my $beur = $d->{id};

($st, $d) = call('POST', '/v1/transfers', headers => { %$auth, 'Idempotency-Key' => 't-1' },
	body => { from_account => $a1, to_account => $b1, amount => '12.50', description => 'Lunch', metadata => { order => 42 } });
is_deeply([ $st, $d->{status}, $d->{amount}, $d->{metadata}{order} ], [ 201, 'posted', '12.50', 42 ], 'transfer');
my $t1 = $d->{id};
($st, $d) = call('POST', '/v1/transfers', headers => { %$auth, 'Idempotency-Key' => 't-1' },
	body => { from_account => $a1, to_account => $b1, amount => '12.50', description => 'Lunch', metadata => { order => 42 } });
is_deeply([ $st, $d->{id} ], [ 201, $t1 ], 'the same transfer again: the original');
($st, $d) = call('POST', '/v1/transfers', headers => { %$auth, 'Idempotency-Key' => 't-1' },
	body => { from_account => $a1, to_account => $b1, amount => '13.00' });
is_deeply([ $st, $d->{code} ], [ 409, 'idempotency_conflict' ], 'the same key, another payload: 409');
($st, $d) = call('POST', '/v1/transfers', headers => $auth, body => { from_account => $a1, to_account => $b1, amount => '1.00' });
is_deeply([ $st, $d->{detail} ], [ 400, 'the Idempotency-Key header is required' ], 'a transfer without Idempotency-Key: 400');
($st, $d) = call('POST', '/v1/transfers', headers => { %$auth, 'Idempotency-Key' => 't-2' }, body => { from_account => $a1, to_account => $a1, amount => '1.00' });
is_deeply([ $st, $d->{code} ], [ 400, 'same_account' ], 'to the same account: 400');
($st, $d) = call('POST', '/v1/transfers', headers => { %$auth, 'Idempotency-Key' => 't-3' }, body => { from_account => $a1, to_account => $beur, amount => '1.00' });
is_deeply([ $st, $d->{code} ], [ 422, 'currency_mismatch' ], 'across currencies: 422');
($st, $d) = call('POST', '/v1/transfers', headers => { %$auth, 'Idempotency-Key' => 't-4' }, body => { from_account => $a1, to_account => $b1, amount => '500.00' });
is_deeply([ $st, $d->{code} ], [ 422, 'insufficient_funds' ], 'more than the balance: 422 insufficient_funds');
my $declined = $node->safe_psql('postgres', "SELECT count(*) FROM bank.transfers WHERE status = 'failed' AND idempotency_key = 't-4'");
is($declined, 1, '... recorded as a failed transfer');
($st, $d) = call('POST', '/v1/transfers', headers => { %$auth, 'Idempotency-Key' => 't-5' }, body => { from_account => $a1, to_account => $b1, amount => '1.00', metadata => [1] });
is_deeply([ $st, $d->{detail} ], [ 400, 'metadata must be a JSON object' ], 'metadata not an object: 400');

($st, $d) = call('GET', "/v1/transfers/$t1", headers => $auth);
is_deeply([ $st, $d->{id}, $d->{amount} ], [ 200, $t1, '12.50' ], 'get a transfer');
($st, $d) = call('GET', '/v1/transfers/99999999', headers => $auth);
is_deeply([ $st, $d->{code} ], [ 404, 'transfer_not_found' ], 'a transfer that does not exist: 404');
($st, $d) = call('GET', "/v1/transfers?account=$a1", headers => $auth);
is($st, 200, 'list the transfers of an account');
ok((grep { $_->{id} == $t1 } @{ $d->{data} }), '... the transfer is there');
($st, $d) = call('GET', '/v1/transfers', headers => $auth);
is_deeply([ $st, $d->{detail} ], [ 400, 'account is required' ], 'list without account: 400');

($st, $d) = call('GET', "/v1/accounts/$a1/balance", headers => $auth);
is_deeply([ $st, $d->{posted}, $d->{available} ], [ 200, '77.50', '77.50' ], 'balance');
($st, $d) = call('GET', "/v1/accounts/$a1/balance?as_of=2000-01-01T00:00:00Z", headers => $auth);
is_deeply([ $st, $d->{posted} ], [ 200, '0.00' ], 'balance as of a past time');
($st, $d) = call('GET', "/v1/accounts/$a1/balance?as_of=yesterday-ish", headers => $auth);
is_deeply([ $st, $d->{code} ], [ 400, 'invalid_input' ], 'a bad timestamp: 400');
($st, $d) = call('GET', "/v1/accounts/$a1/entries", headers => $auth);
is_deeply([ $st, scalar @{ $d->{data} } ], [ 200, 3 ], 'entries');
($st, $d) = call('GET', "/v1/accounts/$a1/entries?limit=2", headers => $auth);
my $next = $d->{next_after};
($st, $d) = call('GET', "/v1/accounts/$a1/entries?limit=2&after=$next", headers => $auth);
is(scalar @{ $d->{data} }, 1, 'entries, next page');
($st, $d) = call('GET', "/v1/accounts/$a1/statement?from=2000-01-01&to=2100-01-01", headers => $auth);
is_deeply([ $st, $d->{data}[0]{line}, $d->{data}[-1]{line}, $d->{data}[-1]{balance} ], [ 200, 'opening', 'closing', '77.50' ], 'statement');
($st, $d) = call('GET', "/v1/accounts/$a1/statement?from=2000-01-01", headers => $auth);
is($st, 400, 'statement without to: 400');

($st, $d) = call('POST', '/v1/holds', headers => { %$auth, 'Idempotency-Key' => 'h-1' }, body => { from_account => $a1, to_account => $b1, amount => '20.00', expires_in => '1 hour' });
is_deeply([ $st, $d->{status} ], [ 201, 'pending' ], 'hold');
my $hold = $d->{id};
($st, $d) = call('GET', "/v1/accounts/$a1/balance", headers => $auth);
is($d->{available}, '57.50', '... reserves funds');
($st, $d) = call('POST', "/v1/holds/$hold/capture", headers => $auth, body => { amount => '50.00' });
is_deeply([ $st, $d->{code} ], [ 422, 'capture_exceeds_hold' ], 'capture more than the hold: 422');
($st, $d) = call('POST', "/v1/holds/$hold/capture", headers => $auth, body => { amount => '15.00' });
is_deeply([ $st, $d->{status}, $d->{posted_amount} ], [ 200, 'posted', '15.00' ], 'partial capture');
($st, $d) = call('POST', "/v1/holds/$hold/void", headers => $auth);
is_deeply([ $st, $d->{code} ], [ 409, 'hold_not_pending' ], 'void a captured hold: 409');
($st, $d) = call('POST', '/v1/holds', headers => { %$auth, 'Idempotency-Key' => 'h-2' }, body => { from_account => $a1, to_account => $b1, amount => '1.00' });
my $hold2 = $d->{id};
($st, $d) = call('POST', "/v1/holds/$hold2/void", headers => $skey);
is_deeply([ $st, $d->{status} ], [ 200, 'voided' ], 'void a hold (service key)');
($st, $d) = call('POST', '/v1/holds', headers => { %$auth, 'Idempotency-Key' => 'h-3' }, body => { from_account => $a1, to_account => $b1, amount => '1.00', expires_in => 'forever and a day' });
is($st, 400, 'a bad interval: 400');

# --- staff: freeze, reverse, KYC; admin: API keys
my $teller = $h->api_key('bank_teller');
my $tkey = { 'X-API-Key' => $teller };
($st, $d) = call('POST', "/v1/accounts/$a1/freeze", headers => $tkey, body => { reason => 'review' });
is_deeply([ $st, $d->{status} ], [ 200, 'frozen' ], 'freeze (teller key)');
($st, $d) = call('POST', '/v1/transfers', headers => { %$auth, 'Idempotency-Key' => 't-6' }, body => { from_account => $a1, to_account => $b1, amount => '1.00' });
is_deeply([ $st, $d->{code} ], [ 422, 'account_frozen' ], 'a transfer from a frozen account: 422');
($st, $d) = call('POST', "/v1/accounts/$a1/unfreeze", headers => $tkey, body => { reason => 'ok' });
is_deeply([ $st, $d->{status} ], [ 200, 'active' ], 'unfreeze');
($st, $d) = call('POST', "/v1/accounts/$a1/freeze", headers => $auth, body => { reason => 'x' });
is($st, 403, 'a customer may not freeze: 403');
($st, $d) = call('POST', "/v1/transfers/$t1/reverse", headers => { %$tkey, 'Idempotency-Key' => 'rev-1' }, body => { reason => 'dispute' });
is_deeply([ $st, $d->{kind}, $d->{reverses} ], [ 201, 'reversal', $t1 ], 'reverse');
($st, $d) = call('POST', "/v1/transfers/$t1/reverse", headers => { %$tkey, 'Idempotency-Key' => 'rev-2' }, body => { reason => 'again' });
is_deeply([ $st, $d->{code} ], [ 409, 'not_reversible' ], 'reverse twice: 409');
($st, $d) = call('PUT', "/v1/customers/$alice->{id}/kyc", headers => $tkey, body => { status => 'approved', reason => 'documents' });
is_deeply([ $st, $d->{kyc_status} ], [ 200, 'approved' ], 'KYC approval');
($st, $d) = call('PUT', "/v1/customers/$alice->{id}/kyc", headers => $tkey, body => { status => 'great', reason => 'x' });
is($st, 400, 'a bad KYC status: 400');
($st, $d) = call('GET', "/v1/customers/$alice->{id}", headers => $tkey);
is_deeply([ $st, $d->{phone} ], [ 200, '+* *** **00' ], 'a teller sees the customer masked');
($st, $d) = call('POST', '/v1/accounts', headers => $auth, body => { type => 'investment', name => 'Stocks', currency => 'USD' });
is($st, 201, 'an investment account after KYC');
($st, $d) = call('POST', "/v1/accounts/$a2/close", headers => $auth);
is_deeply([ $st, $d->{status} ], [ 200, 'closed' ], 'close an empty account');
($st, $d) = call('POST', "/v1/accounts/$a1/close", headers => $auth);
is_deeply([ $st, $d->{code} ], [ 409, 'account_not_empty' ], 'close an account with money: 409');

my $admin = $h->api_key('bank_admin');
my $akey = { 'X-API-Key' => $admin };
($st, $d) = call('POST', '/v1/api-keys', headers => $akey, body => { role => 'bank_auditor', scopes => [ 'get_account' ], expires_at => '2099-01-01T00:00:00Z' });
is_deeply([ $st, $d->{code} ], [ 400, 'invalid_argument' ], 'an API key expiring too late: 400');
($st, $d) = call('POST', '/v1/api-keys', headers => $akey, body => { role => 'bank_auditor', scopes => [ 'get_account' ], expires_at => (1900 + (gmtime)[5]) . '-' . sprintf('%02d', 1 + (gmtime)[4]) . '-' . sprintf('%02d', (gmtime)[3]) . 'T23:59:59Z', name => 'reports' });
is($st, 201, 'create an API key');
my ($kid, $kval) = ($d->{id}, $d->{api_key});
like($kval, qr/^pbk_/, '... shown once');
($st, $d) = call('GET', "/v1/accounts/$a1", headers => { 'X-API-Key' => $kval });
is_deeply([ $st, $d->{id} ], [ 200, $a1 ], 'the new auditor key reads an account (the server finds its role)');
($st, $d) = call('GET', "/v1/accounts/$a1/balance", headers => { 'X-API-Key' => $kval });
is($st, 403, '... but not outside its scopes');
($st, $d) = call('POST', '/v1/api-keys', headers => $akey, body => { role => 'bank_customer', scopes => ['*'], expires_at => '2099-01-01' });
is($st, 400, 'an API key for a customer role: 400');
($st, $d) = call('POST', '/v1/api-keys', headers => $akey, body => { role => 'bank_auditor', scopes => 'get_account', expires_at => '2099-01-01' });
is_deeply([ $st, $d->{detail} ], [ 400, 'scopes must be an array of strings' ], 'scopes not an array: 400');
($st, $d) = call('GET', '/v1/api-keys', headers => $akey);
ok($st == 200 && (grep { $_->{id} == $kid } @$d), 'list API keys');
ok(!(grep { exists $_->{secret_hash} || exists $_->{api_key} } @$d), '... without secrets');
($st, $d) = call('DELETE', "/v1/api-keys/$kid", headers => $akey);
is($st, 204, 'revoke an API key');
($st, $d) = call('GET', "/v1/accounts/$a1", headers => { 'X-API-Key' => $kval });
is_deeply([ $st, $d->{code} ], [ 401, 'invalid_api_key' ], 'a revoked key: 401');
($st, $d) = call('DELETE', '/v1/api-keys/99999', headers => $akey);
is_deeply([ $st, $d->{code} ], [ 404, 'api_key_not_found' ], 'revoke a key that does not exist: 404');
($st, $d) = call('GET', '/v1/api-keys', headers => $tkey);
is($st, 403, 'a teller may not list API keys: 403');

# --- fraud screening: a held transfer through the review queue, limits
($st, $d) = call('POST', '/v1/deposits', headers => { %$skey, 'Idempotency-Key' => 'risk-fund' }, body => { account => $a1, amount => '200.00' });
is($st, 201, 'fund alice for the risk routes');
$node->safe_psql('postgres', "INSERT INTO bank.risk_rules (name, kind, action, currency, amount) VALUES ('http review', 'max_amount', 'review', 'USD', 50)");
($st, $d) = call('POST', '/v1/transfers', headers => { %$auth, 'Idempotency-Key' => 'risk-1' }, body => { from_account => $a1, to_account => $b1, amount => '60.00' });
is_deeply([ $st, $d->{status} ], [ 201, 'held_for_review' ], 'a transfer above a review rule: 201 held_for_review');
my $held = $d->{id};
($st, $d) = call('GET', '/v1/reviews', headers => $tkey);
is_deeply([ $st, [ map { $_->{transfer_id} } @{ $d->{data} } ], $d->{data}[0]{rules}[0]{name} ], [ 200, [$held], 'http review' ], 'the teller sees it in the queue, with its rule');
($st, $d) = call('GET', '/v1/reviews', headers => $auth);
is($st, 403, 'a customer cannot list the queue: 403');
($st, $d) = call('POST', "/v1/reviews/$held/approve", headers => $auth, body => { reason => 'mine' });
is($st, 403, 'a customer cannot approve, not even their own: 403');
($st, $d) = call('POST', "/v1/reviews/$held/approve", headers => $tkey, body => { reason => 'called the customer' });
is_deeply([ $st, $d->{status}, $d->{posted_amount} ], [ 200, 'posted', '60.00' ], 'the teller approves: posted');
($st, $d) = call('POST', "/v1/reviews/$held/reject", headers => $tkey, body => { reason => 'changed my mind' });
is_deeply([ $st, $d->{code} ], [ 409, 'review_decided' ], 'a second decision: 409 review_decided');
($st, $d) = call('POST', "/v1/reviews/$held/approve", headers => $tkey, body => {});
is($st, 400, 'a decision without a reason: 400');
$node->safe_psql('postgres', "DELETE FROM bank.risk_rules WHERE name = 'http review'");
($st, $d) = call('PUT', "/v1/customers/$alice->{id}/limits", headers => $tkey, body => { currency => 'USD', daily_limit => '0.00', reason => 'suspicious' });
is_deeply([ $st, $d->{daily_limit}, $d->{monthly_limit} ], [ 200, '0.00', undef ], 'the teller sets a daily limit of 0');
($st, $d) = call('POST', '/v1/transfers', headers => { %$auth, 'Idempotency-Key' => 'risk-2' }, body => { from_account => $a1, to_account => $b1, amount => '1.00' });
is_deeply([ $st, $d->{code} ], [ 422, 'daily_limit' ], 'a transfer past it: 422 daily_limit');
($st, $d) = call('PUT', "/v1/customers/$alice->{id}/limits", headers => $tkey, body => { currency => 'USD', reason => 'cleared' });
is($st, 200, 'limits removed');
($st, $d) = call('PUT', "/v1/customers/$alice->{id}/limits", headers => $auth, body => { currency => 'USD', reason => 'me' });
is($st, 403, 'a customer cannot set limits: 403');
($st, $d) = call('PUT', "/v1/accounts/$a1/overdraft-limit", headers => $tkey, body => { overdraft_limit => '25.00', reason => 'good customer' });
is_deeply([ $st, $d->{overdraft_limit} ], [ 200, '25.00' ], 'the teller sets an overdraft limit');
($st, $d) = call('PUT', "/v1/accounts/$a1/overdraft-limit", headers => $tkey, body => { overdraft_limit => '-1', reason => 'x' });
is($st, 400, 'a negative overdraft limit: 400');

($st, $d) = call('POST', '/v1/logout', headers => $auth);
is($st, 204, 'logout');
($st, $d) = call('GET', '/v1/me', headers => $auth);
is($st, 401, '... and the token stops working');

# --- the audit trail
my $auditor = { 'X-API-Key' => $h->api_key('bank_auditor') };
($st, $d) = call('GET', '/v1/audit/events?resource_type=transfer&limit=2', headers => $auditor);
is_deeply([ $st, scalar @{ $d->{data} } ], [ 200, 2 ], 'audit search: a page of 2');
my ($last_at, $last_id) = ($d->{data}[1]{at}, $d->{data}[1]{id});
ok($d->{data}[0]{id} > $last_id && !exists $d->{data}[0]{hash}, '... newest first, without hashes');
(my $cursor_at = $last_at) =~ s/\+/%2B/g;
($st, $d) = call('GET', "/v1/audit/events?resource_type=transfer&limit=2&before_at=$cursor_at&before_id=$last_id",
	headers => $auditor);
ok($st == 200 && @{ $d->{data} } == 2 && !(grep { $_->{id} >= $last_id } @{ $d->{data} }),
	'... the next page is older');
($st, $d) = call('GET', '/v1/audit/events?limit=0', headers => $auditor);
is_deeply([ $st, $d->{code} ], [ 400, 'invalid_argument' ], 'audit search: limit 0 is 400');
($st, $d) = call('GET', '/v1/audit/events?colour=red', headers => $auditor);
is($st, 400, 'audit search: an unknown filter is 400');
($st, $d) = call('GET', '/v1/audit/events', headers => $bauth);
ok($st == 200 && @{ $d->{data} } > 0
	  && !(grep { $_->{actor_customer} != $bob->{id} || $_->{resource_type} !~ /^(session|credential)$/ } @{ $d->{data} }),
	'a customer reads their own security events only');
($st, $d) = call('GET', "/v1/audit/events?actor_customer=$alice->{id}", headers => $bauth);
is_deeply([ $st, scalar @{ $d->{data} } ], [ 200, 0 ], '... and nothing of another customer');
($st, $d) = call('GET', '/v1/audit/verify', headers => $bauth);
is($st, 403, 'a customer may not verify: 403');
($st, $d) = call('POST', '/v1/audit/anchors', headers => $auditor);
is($st, 201, 'an anchor');
my $anchor = $d;
($st, $d) = call('GET', "/v1/audit/verify?anchor_checkpoint=$anchor->{checkpoint}&anchor_hash=$anchor->{hash}",
	headers => $auditor);
is_deeply([ $st, $d->{intact} ? 1 : 0 ], [ 200, 1 ], 'the trail verifies against it');
$node->safe_psql('postgres', "BEGIN; SET LOCAL session_replication_role = replica;"
	  . " UPDATE bank.audit_events SET action = 'tampered' WHERE id = $last_id; COMMIT;");
($st, $d) = call('GET', '/v1/audit/verify', headers => $auditor);
is_deeply([ $st, $d->{intact} ? 1 : 0, $d->{first_broken_link}{id}, $d->{first_broken_link}{problem} ],
	[ 200, 0, $last_id, 'row altered' ], 'an edited row: its id and the problem');
($st, $d) = call('GET', '/v1/audit/verify?anchor_checkpoint=1', headers => $auditor);
is($st, 400, 'half an anchor: 400');

# --- routing
($st, $d) = call('GET', '/v1/nothing-here');
is_deeply([ $st, $d->{code} ], [ 404, 'not_found' ], 'unknown route: 404');
($st, $d, $r) = call('DELETE', '/v1/accounts');
is($st, 405, 'wrong method: 405');
is($r->{headers}{allow}, 'GET, POST, OPTIONS', '... with Allow');
($st, $d, $r) = call('PUT', '/v1/accounts/1');
is($r->{headers}{allow}, 'GET, PATCH, OPTIONS', 'Allow of an id route');
($st, $d) = call('GET', '/v1/accounts/');
is($st, 404, 'a trailing slash: 404');

# --- ops routes
($st, $d) = call('GET', '/livez');
is($st, 200, '/livez');
($st, $d) = call('GET', '/readyz');
is($st, 200, '/readyz');
(undef, undef, $r) = call('GET', '/metrics');
like($r->{content}, qr/^pgbank_http_requests_total \d+$/m, '/metrics');

# --- no internal detail in any error body
my $leaks = grep { /bank\.|SELECT|constraint|_pkey|_check|relation|function |CONTEXT|\bline \d/i } @problems;
is($leaks, 0, 'no error body shows SQL, function, table or constraint names (' . scalar(@problems) . ' errors)');
diag(join("\n", grep { /bank\.|SELECT|constraint|_pkey|_check|relation|function |CONTEXT/i } @problems)) if $leaks;
ok(scalar(@problems) > 50, 'and there were many errors to look at');

is($h->stop_server, 0, 'the server stops cleanly');
$node->stop;
done_testing();
