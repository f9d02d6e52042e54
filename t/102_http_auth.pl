# t/102_http_auth.pl -- credentials at the door of pgbank-http.
#
# The token attack matrix (alg none, HS256 signed with a public key as the
# secret, a wrong signature, expired, nbf in the future, wrong iss, wrong aud,
# a role claim we never issue, malformed tokens and API keys, none at all)
# is refused with 401 and WWW-Authenticate, and a valid token on a route its
# role may not use with 403, all without one query: the database's own
# statement counter (pg_stat_statements) does not move.  A valid request
# moves it, so the check can fail.
#
# Then every route that takes an id, called by one customer with another
# customer's id, answers 404, exactly like an id that does not exist.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgbankTest;
use PgbankHttp;

my $h = PgbankHttp->new('auth');
my $node = $h->node;
$h->start_server;

my $alice = $h->customer('alice@example.com');
my $bob = $h->customer('bob@example.com');
my ($sub, $sid) = $node->safe_psql('postgres',
	"SELECT customer_id, id FROM bank.sessions WHERE customer_id = $alice->{id} AND revoked_at IS NULL") =~ /(\d+)\|(\d+)/;

my $now = time();
my $public_key = <<'PEM';
-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo
4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u
+qKhbwKfBstIs+bMY2Zkp18gnTxKLxoS2tFczGkPLPgizskuemMghRniWaoLcyeh
kd3qqGElvW/VDL5AaWTg0nLVkjRo9z+40RQzuVaE8AkAFmxZzow3x+VJYKdjykkJ
0iT9wCS0DRTXu269V264Vf/3jvredZiKRkgwlL9xNAwxXFg0x/XFw005UWVRIkdg
cKWTjpBP2dPwVZ4WWC+9aGVd+Gyn1o0CLelf4rEjGoXbAAEgAqeGUxrcIlbjXfbc
mwIDAQAB
-----END PUBLIC KEY-----
PEM

my %attacks = (
	'alg none, unsigned' => $h->make_token(sub => $sub, sid => $sid, header => { alg => 'none', typ => 'JWT' }, unsigned => 1),
	'alg none, signature of the real secret kept' => do {
		my $t = $h->make_token(sub => $sub, sid => $sid);
		my ($hd, $p, $s) = split /\./, $t;
		PgbankHttp::b64url('{"alg":"none","typ":"JWT"}') . ".$p.$s";
	},
	'HS256 signed with a public key as the secret' => $h->make_token(sub => $sub, sid => $sid, key => $public_key),
	'RS256 header, HMAC with the public key' => $h->make_token(sub => $sub, sid => $sid, header => { alg => 'RS256', typ => 'JWT' }, key => $public_key),
	'wrong signature' => $h->make_token(sub => $sub, sid => $sid, key => 'not the secret at all, but long enough'),
	'signature of another payload' => do {
		my (undef, undef, $s) = split /\./, $h->make_token(sub => $bob->{id}, sid => $sid);
		my ($hd, $p) = split /\./, $h->make_token(sub => $sub, sid => $sid);
		"$hd.$p.$s";
	},
	'expired' => $h->make_token(sub => $sub, sid => $sid, claims => { exp => $now - 3600, nbf => $now - 7200 }),
	'nbf in the future' => $h->make_token(sub => $sub, sid => $sid, claims => { nbf => $now + 3600, exp => $now + 7200 }),
	'wrong iss' => $h->make_token(sub => $sub, sid => $sid, claims => { iss => 'evil' }),
	'wrong aud' => $h->make_token(sub => $sub, sid => $sid, claims => { aud => 'someone-else' }),
	'aud array without ours' => $h->make_token(sub => $sub, sid => $sid, claims => { aud => [ 'a', 'b' ] }),
	'no exp' => $h->make_token(sub => $sub, sid => $sid, claims => { exp => undef }),
	'a staff role claim' => $h->make_token(sub => $sub, sid => $sid, claims => { role => 'bank_admin' }),
	'sub not an id' => $h->make_token(sub => "1 OR 1=1", sid => $sid),
	'valid token, alg HS256 but RS256 algorithm header signed with the secret' => $h->make_token(sub => $sub, sid => $sid, header => { alg => 'RS256', typ => 'JWT' }),
	'malformed: one part' => 'abc',
	'malformed: two parts' => 'abc.def',
	'malformed: four parts' => 'a.b.c.d',
	'malformed: not base64url' => '@@@.###.$$$',
	'malformed: empty' => '',
);

my $db0 = $h->db_requests;
for my $name (sort keys %attacks)
{
	my ($st, $d, $r) = $h->request('GET', '/v1/me', headers => { Authorization => "Bearer $attacks{$name}" });
	is($st, 401, "token attack '$name': 401");
	like($r->{headers}{'www-authenticate'} // '', qr/^Bearer realm="pgbank"/, '... with WWW-Authenticate');
	($st) = $h->request('POST', '/v1/transfers', headers => { Authorization => "Bearer $attacks{$name}", 'Idempotency-Key' => 'x' },
		body => { from_account => 1, to_account => 2, amount => '1.00' });
	is($st, 401, "... and on a money route");
}
my ($st, $d, $r) = $h->request('GET', '/v1/me', headers => { Authorization => "Basic YWxpY2U6c2VjcmV0" });
is($st, 401, 'Basic instead of Bearer: 401');
($st, $d, $r) = $h->request('GET', '/v1/me');
is($st, 401, 'no credential: 401');
like($r->{headers}{'www-authenticate'} // '', qr/^Bearer realm="pgbank"$/, '... with WWW-Authenticate');
($st, $d, $r) = $h->request('GET', '/v1/api-keys', headers => PgbankHttp::bearer($alice->{token}));
is($st, 403, 'a valid customer token on an admin route: 403');
like($r->{headers}{'www-authenticate'} // '', qr/insufficient_scope/, '... insufficient_scope');
($st) = $h->request('POST', '/v1/deposits', headers => { %{ PgbankHttp::bearer($alice->{token}) }, 'Idempotency-Key' => 'x' }, body => { account => 1, amount => '1.00' });
is($st, 403, 'a valid customer token on a service route: 403');
for my $key ('pbk_short', 'pbk_' . ('A' x 31) . '!', 'xyz_' . ('A' x 32), '')
{
	($st, $d, $r) = $h->request('GET', '/v1/api-keys', headers => { 'X-API-Key' => $key });
	is($st, 401, "malformed API key '$key': 401");
	like($r->{headers}{'www-authenticate'} // '', qr/^ApiKey/, '... with WWW-Authenticate');
}
my $svc = $h->api_key('bank_service');
($st) = $h->request('GET', '/v1/me', headers => { 'X-API-Key' => $svc });
is($st, 403, 'an API key on a customer-only route: 403');
($st) = $h->request('GET', '/v1/me', headers => { 'X-API-Key' => $svc, Authorization => "Bearer $alice->{token}" });
is($st, 400, 'two credentials at once: 400');
is($h->db_requests, $db0, 'none of the ' . (3 * scalar(keys %attacks) + 12) . ' refused requests sent a query');

# the counter does move: a valid request is one pipeline, and a token the
# server cannot refuse alone (signed right, session unknown) is refused by
# the database
($st) = $h->request('GET', '/v1/me', headers => PgbankHttp::bearer($alice->{token}));
is($st, 200, 'the valid token works');
is($h->db_requests, $db0 + 1, '... with exactly one round trip');
($st, $d) = $h->request('GET', '/v1/me', headers => PgbankHttp::bearer($h->make_token(sub => $sub, sid => 99999)));
is_deeply([ $st, $d->{code} ], [ 401, 'invalid_token' ], 'a well-signed token naming no live session: 401 from the database');
($st, $d) = $h->request('GET', '/v1/me', headers => PgbankHttp::bearer($h->make_token(sub => $bob->{id}, sid => $sid)));
is($st, 401, 'a well-signed token whose sub is not its session\'s customer: 401');
($st, $d) = $h->request('GET', '/v1/accounts/1', headers => { 'X-API-Key' => 'pbk_' . ('A' x 32) });
is_deeply([ $st, $d->{code} ], [ 401, 'invalid_api_key' ], 'a well-formed unknown API key: 401 from the database');

# --- another customer's id on every route that takes one: 404
my $aa = PgbankHttp::bearer($alice->{token});
my $ba = PgbankHttp::bearer($bob->{token});
($st, $d) = $h->request('POST', '/v1/accounts', headers => $aa, body => { type => 'checking', name => 'a', currency => 'USD' });
my $a1 = $d->{id};
($st, $d) = $h->request('POST', '/v1/accounts', headers => $ba, body => { type => 'checking', name => 'b', currency => 'USD' });
my $b1 = $d->{id};
($st, $d) = $h->request('POST', '/v1/accounts', headers => $ba, body => { type => 'checking', name => 'b2', currency => 'USD' });
my $b2 = $d->{id};
($st) = $h->request('POST', '/v1/deposits', headers => { 'X-API-Key' => $svc, 'Idempotency-Key' => 'fund-b' }, body => { account => $b1, amount => '100.00' });
is($st, 201, 'fund bob');
($st, $d) = $h->request('POST', '/v1/transfers', headers => { %$ba, 'Idempotency-Key' => 'b-t' }, body => { from_account => $b1, to_account => $b2, amount => '1.00' });
my $bt = $d->{id};
($st, $d) = $h->request('POST', '/v1/holds', headers => { %$ba, 'Idempotency-Key' => 'b-h' }, body => { from_account => $b1, to_account => $b2, amount => '1.00' });
my $bh = $d->{id};
ok($bt && $bh, 'bob has a transfer and a hold');

my @id_routes = (
	[ 'GET', "/v1/accounts/$b1" ],
	[ 'PATCH', "/v1/accounts/$b1", { name => 'mine now' } ],
	[ 'POST', "/v1/accounts/$b2/close" ],
	[ 'GET', "/v1/accounts/$b1/balance" ],
	[ 'GET', "/v1/accounts/$b1/entries" ],
	[ 'GET', "/v1/accounts/$b1/statement?from=2000-01-01&to=2100-01-01" ],
	[ 'GET', "/v1/transfers/$bt" ],
	[ 'GET', "/v1/transfers/$bh" ],
	[ 'GET', "/v1/transfers?account=$b1" ],
	[ 'POST', "/v1/holds/$bh/capture" ],
	[ 'POST', "/v1/holds/$bh/void" ],
	[ 'GET', "/v1/accounts?customer_id=$bob->{id}" ],
	[ 'POST', '/v1/transfers', { from_account => $b1, to_account => $a1, amount => '1.00' }, 1 ],
	[ 'POST', '/v1/holds', { from_account => $b1, to_account => $a1, amount => '1.00' }, 1 ],
);
for my $rt (@id_routes)
{
	my ($m, $p, $body, $key) = @$rt;
	my %hd = %$aa;
	$hd{'Idempotency-Key'} = "steal-$p" if $key;
	($st, $d) = $h->request($m, $p, headers => \%hd, defined $body ? (body => $body) : ());
	is($st, 404, "alice on bob's $m $p: 404 (" . ($d->{code} // '') . ')');
}
($st, $d) = $h->request('GET', "/v1/accounts/$b1/balance", headers => $ba);
is_deeply([ $st, $d->{posted}, $d->{available} ], [ 200, '99.00', '98.00' ], "bob's money is where it was");
is($node->safe_psql('postgres', "SELECT status FROM bank.transfers WHERE id = $bh"), 'pending', "bob's hold is untouched");
is($node->safe_psql('postgres', "SELECT name FROM bank.accounts WHERE id = $b1"), 'b', "bob's account name is untouched");

$h->stop_server;
$node->stop;
done_testing();
