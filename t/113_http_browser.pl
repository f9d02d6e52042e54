# t/113_http_browser.pl -- pgbank-http for browsers: CORS, cookie sessions
# with CSRF protection, form-encoded bodies.
#
# CORS: a preflight from an allowed origin gets exactly the Fetch headers
# (the requested method and headers, max-age, credentials, Vary: Origin);
# a foreign origin, a method the path does not have, or a header we do not
# accept gets a 403 without any CORS header; actual responses carry them
# only for allowed origins.
#
# Cookie sessions: /v1/browser/login sets the access and refresh cookies
# (HttpOnly; Secure; SameSite=Strict, Path=/v1 and /v1/browser) and
# returns a CSRF token instead of tokens.  A cookie GET works; a
# cookie POST without the token, with a wrong one, with another session's,
# or from a foreign origin is a 403 with a stable code, costs no query and
# writes nothing; with the token and a trusted Origin (or Referer, or our
# own origin) it works.  An Authorization header wins over the cookie.
# Refresh rotates the cookies; logout ends the session by the refresh
# cookie (the access cookie may have expired), clears both cookies in every
# answer to a trusted origin (not to a foreign one), and the old cookies are
# then refused.
#
# Forms: a transfer and an account rename as
# application/x-www-form-urlencoded, and each error a form can make (unknown,
# missing, mistyped, duplicate field, what only JSON can express, bad
# encoding) is a 400 that writes nothing.

use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgbankTest;
use PgbankHttp;

my $APP = 'https://app.example';
my $EVIL = 'https://evil.example';
my $h = PgbankHttp->new('browser');
my $node = $h->node;
$h->start_server('--cors-origins', "$APP, https://other.example");
my $svc = $h->api_key('bank_service');
my $c = $h->customer('browser@example.com');
my $bearer = PgbankHttp::bearer($c->{token});
my $PW = 'correct horse battery staple';

sub transfers
{
	return $node->safe_psql('postgres', 'SELECT count(*) FROM bank.transfers');
}

# the Set-Cookie headers of a response, as a list
sub set_cookies
{
	my ($r) = @_;
	my $v = $r->{headers}{'set-cookie'} // [];
	return ref $v ? @$v : ($v);
}

# the values of the cookies a response sets, by name
sub cookie_jar
{
	my ($r) = @_;
	my %jar;
	for (set_cookies($r)) { $jar{$1} = $2 if /^([^=]+)=([^;]*)/; }
	return \%jar;
}

# --- CORS ------------------------------------------------------------------
my ($st, $d, $r) = $h->request('OPTIONS', '/v1/transfers', headers => {
	Origin => $APP, 'Access-Control-Request-Method' => 'POST',
	'Access-Control-Request-Headers' => 'content-type,idempotency-key,x-csrf-token' });
is($st, 204, 'preflight from an allowed origin: 204');
is($r->{headers}{'access-control-allow-origin'}, $APP, '... Allow-Origin is that origin');
is($r->{headers}{'access-control-allow-methods'}, 'POST', '... Allow-Methods the requested method');
is($r->{headers}{'access-control-allow-headers'}, 'content-type,idempotency-key,x-csrf-token',
	'... Allow-Headers exactly the requested ones');
is($r->{headers}{'access-control-max-age'}, '600', '... Max-Age');
is($r->{headers}{'access-control-allow-credentials'}, 'true', '... credentials allowed (cookie sessions)');
like($r->{headers}{vary} // '', qr/\bOrigin\b/, '... Vary: Origin');

($st, $d, $r) = $h->request('OPTIONS', '/v1/accounts/1', headers => {
	Origin => $APP, 'Access-Control-Request-Method' => 'PATCH' });
is($st, 204, 'preflight without requested headers');
ok(!exists $r->{headers}{'access-control-allow-headers'}, '... no Allow-Headers');

my @cors = qw(access-control-allow-origin access-control-allow-methods access-control-allow-headers
  access-control-allow-credentials access-control-max-age access-control-expose-headers);
my %refusals = (
	'a foreign origin' => [ '/v1/transfers', { Origin => $EVIL, 'Access-Control-Request-Method' => 'POST' }, 'cors_origin' ],
	'no origin' => [ '/v1/transfers', { 'Access-Control-Request-Method' => 'POST' }, 'cors_origin' ],
	'a method the path lacks' => [ '/v1/transfers', { Origin => $APP, 'Access-Control-Request-Method' => 'DELETE' }, 'cors_method' ],
	'a header not accepted' => [ '/v1/transfers', { Origin => $APP, 'Access-Control-Request-Method' => 'POST',
		'Access-Control-Request-Headers' => 'content-type, x-evil' }, 'cors_header' ],
	'an origin differing in case' => [ '/v1/transfers', { Origin => 'https://APP.example', 'Access-Control-Request-Method' => 'POST' }, 'cors_origin' ],
);
for my $what (sort keys %refusals)
{
	my ($path, $hdr, $code) = @{ $refusals{$what} };
	($st, $d, $r) = $h->request('OPTIONS', $path, headers => $hdr);
	is("$st " . ($d->{code} // ''), "403 $code", "preflight with $what: 403 $code");
	is(join(',', grep { exists $r->{headers}{$_} } @cors), '', '... and no CORS header');
}

($st, $d, $r) = $h->request('GET', '/v1/me', headers => { %$bearer, Origin => $APP });
is($st, 200, 'an actual request from an allowed origin');
is($r->{headers}{'access-control-allow-origin'}, $APP, '... Allow-Origin');
is($r->{headers}{'access-control-allow-credentials'}, 'true', '... Allow-Credentials');
like($r->{headers}{'access-control-expose-headers'}, qr/X-Request-Id/, '... Expose-Headers');
like($r->{headers}{vary} // '', qr/\bOrigin\b/, '... Vary: Origin');
($st, $d, $r) = $h->request('GET', '/v1/me', headers => { %$bearer, Origin => $EVIL });
is($st, 200, 'an actual request from a foreign origin is answered (the browser withholds it)');
is(join(',', grep { exists $r->{headers}{$_} } @cors), '', '... without CORS headers');
like($r->{headers}{vary} // '', qr/\bOrigin\b/, '... but with Vary: Origin');

# --- cookie login ------------------------------------------------------------
my $login = { email => $c->{email}, password => $PW };
($st, $d) = $h->request('POST', '/v1/browser/login', body => $login);
is("$st $d->{code}", '403 csrf_origin', 'browser login without an Origin: 403 csrf_origin');
($st, $d) = $h->request('POST', '/v1/browser/login', headers => { Origin => $EVIL }, body => $login);
is("$st $d->{code}", '403 csrf_origin', 'browser login from a foreign origin: 403 csrf_origin');
($st, $d, $r) = $h->request('POST', '/v1/browser/login', headers => { Origin => $APP },
	body => { email => $c->{email}, password => 'wrong password here' });
is("$st $d->{code}", '401 denied', 'browser login with a wrong password: 401 denied');
ok(!grep({ /^__Secure-pgbank-access=[^;]/ } set_cookies($r)), '... and no session cookie');

($st, $d, $r) = $h->request('POST', '/v1/browser/login', headers => { Origin => $APP }, body => $login);
is($st, 200, 'browser login from an allowed origin: 200');
my @sc = sort(set_cookies($r));
is(scalar @sc, 2, '... sets two cookies');
like($sc[0], qr{^__Secure-pgbank-access=[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+; Path=/v1; Secure; HttpOnly; SameSite=Strict$},
	'... the access token: Path=/v1; Secure; HttpOnly; SameSite=Strict');
like($sc[1], qr{^__Secure-pgbank-refresh=[^;]+; Path=/v1/browser; Secure; HttpOnly; SameSite=Strict$},
	'... the refresh token: only for the browser session routes (login, refresh, logout)');
is_deeply([ sort keys %$d ], [qw(csrf_token customer_id expires_at refresh_expires_at)],
	'... the body: the CSRF token, no token');
like($d->{csrf_token}, qr/^[A-Za-z0-9_-]{43}$/, '... a 256-bit CSRF token');
is($d->{customer_id}, $c->{id}, '... and the customer');
is($r->{headers}{'content-encoding'}, 'identity', '... never compressed');
is($r->{headers}{'cache-control'}, 'no-store', '... never stored');
my $jar = cookie_jar($r);
my $csrf = $d->{csrf_token};
my $cookie = "__Secure-pgbank-access=$jar->{'__Secure-pgbank-access'}";
my $refresh_cookie = "__Secure-pgbank-refresh=$jar->{'__Secure-pgbank-refresh'}";

($st, $d) = $h->request('GET', '/v1/me', headers => { Cookie => $cookie });
is("$st $d->{id}", "200 $c->{id}", 'a GET with the access cookie works (no CSRF token needed)');
($st, $d) = $h->request('GET', '/v1/me', headers => { Cookie => "$cookie; $cookie" });
is($st, 401, 'the access cookie given twice is no credential');

# money to move
($st, $d) = $h->request('POST', '/v1/accounts', headers => $bearer,
	body => { type => 'checking', name => 'from', currency => 'USD' });
my $from = $d->{id};
($st, $d) = $h->request('POST', '/v1/accounts', headers => $bearer,
	body => { type => 'savings', name => 'to', currency => 'USD' });
my $to = $d->{id};
($st) = $h->request('POST', '/v1/deposits', headers => { 'X-API-Key' => $svc, 'Idempotency-Key' => 'br-dep' },
	body => { account => $from, amount => '100.00' });
is($st, 201, 'fund an account');

# --- CSRF refusals -----------------------------------------------------------
my $n_transfers = transfers();
my $n_db = $h->db_requests;
my $k = 0;
my $transfer = { from_account => $from, to_account => $to, amount => '1.00' };
my %csrf_cases = (
	'without the CSRF token' => [ { Origin => $APP }, 'csrf_token' ],
	'with a wrong CSRF token' => [ { Origin => $APP, 'X-CSRF-Token' => 'A' x 43 }, 'csrf_token' ],
	'with a token one character off' => [ { Origin => $APP, 'X-CSRF-Token' => substr($csrf, 0, 42) . (substr($csrf, 42) eq 'A' ? 'B' : 'A') }, 'csrf_token' ],
	'with the token from a foreign Origin' => [ { Origin => $EVIL, 'X-CSRF-Token' => $csrf }, 'csrf_origin' ],
	'with the token and Origin: null' => [ { Origin => 'null', 'X-CSRF-Token' => $csrf }, 'csrf_origin' ],
	'with the token and no Origin nor Referer' => [ { 'X-CSRF-Token' => $csrf }, 'csrf_origin' ],
	'with the token and a foreign Referer' => [ { Referer => "$EVIL/pay", 'X-CSRF-Token' => $csrf }, 'csrf_origin' ],
	'with the token and a look-alike Referer' => [ { Referer => "$APP.evil.example/pay", 'X-CSRF-Token' => $csrf }, 'csrf_origin' ],
);
for my $what (sort keys %csrf_cases)
{
	my ($hdr, $code) = @{ $csrf_cases{$what} };
	($st, $d) = $h->request('POST', '/v1/transfers',
		headers => { Cookie => $cookie, 'Idempotency-Key' => 'br-csrf-' . $k++, %$hdr }, body => $transfer);
	is("$st " . ($d->{code} // ''), "403 $code", "a cookie POST $what: 403 $code");
}
is(transfers(), $n_transfers, '... none of them wrote a transfer');
is($h->db_requests, $n_db, '... nor cost a query');

# another session's token does not fit this one
($st, $d) = $h->request('POST', '/v1/browser/login', headers => { Origin => $APP }, body => $login);
my $csrf2 = $d->{csrf_token};
isnt($csrf2, $csrf, 'a second browser session has another CSRF token');
($st, $d) = $h->request('POST', '/v1/transfers',
	headers => { Cookie => $cookie, Origin => $APP, 'X-CSRF-Token' => $csrf2, 'Idempotency-Key' => 'br-x' },
	body => $transfer);
is("$st $d->{code}", '403 csrf_token', "another session's CSRF token: 403 csrf_token");
is(transfers(), $n_transfers, '... nothing written');

# --- CSRF passes ---------------------------------------------------------------
($st, $d) = $h->request('POST', '/v1/transfers',
	headers => { Cookie => $cookie, Origin => $APP, 'X-CSRF-Token' => $csrf, 'Idempotency-Key' => 'br-ok-1' },
	body => $transfer);
is($st, 201, 'a cookie POST with the token from an allowed Origin: 201');
is(transfers(), $n_transfers + 1, '... one transfer written');
($st, $d) = $h->request('POST', '/v1/transfers',
	headers => { Cookie => $cookie, Referer => "$APP/payments?x=1", 'X-CSRF-Token' => $csrf,
		'Idempotency-Key' => 'br-ok-2' },
	body => $transfer);
is($st, 201, '... or, without Origin, a Referer of an allowed origin');
($st, $d) = $h->request('PATCH', "/v1/accounts/$from",
	headers => { Cookie => $cookie, Origin => $h->url, 'X-CSRF-Token' => $csrf },
	body => { name => 'renamed by cookie' });
is("$st $d->{name}", '200 renamed by cookie', '... or our own origin (PATCH)');

# an Authorization header wins: the cookie is not looked at
($st, $d) = $h->request('POST', '/v1/transfers',
	headers => { %$bearer, Cookie => '__Secure-pgbank-access=garbage', 'Idempotency-Key' => 'br-hdr' },
	body => $transfer);
is($st, 201, 'a bearer token with a bad cookie beside it: the header is used (no CSRF check)');
($st, $d) = $h->request('GET', '/v1/me',
	headers => { Authorization => 'Bearer not.a.token', Cookie => $cookie });
is($st, 401, 'a bad bearer token with a good cookie: 401 (the cookie is no fallback)');

# --- refresh and logout ----------------------------------------------------------
($st, $d) = $h->request('POST', '/v1/browser/refresh', headers => { Cookie => $refresh_cookie });
is("$st $d->{code}", '403 csrf_origin', 'browser refresh without an Origin: 403');
($st, $d) = $h->request('POST', '/v1/browser/refresh', headers => { Origin => $APP });
is("$st $d->{code}", '400 missing_argument', 'browser refresh without the cookie: 400');
($st, $d, $r) = $h->request('POST', '/v1/browser/refresh', headers => { Origin => $APP, Cookie => $refresh_cookie });
is($st, 200, 'browser refresh with the refresh cookie: 200');
my $jar2 = cookie_jar($r);
ok($jar2->{'__Secure-pgbank-access'} && $jar2->{'__Secure-pgbank-access'} ne $jar->{'__Secure-pgbank-access'},
	'... a new access cookie');
ok($jar2->{'__Secure-pgbank-refresh'} && $jar2->{'__Secure-pgbank-refresh'} ne $jar->{'__Secure-pgbank-refresh'},
	'... a new refresh cookie');
is($d->{csrf_token}, $csrf, '... the same session, the same CSRF token');
ok(!exists $d->{access_token} && !exists $d->{refresh_token}, '... no token in the body');
my $new_cookie = "__Secure-pgbank-access=$jar2->{'__Secure-pgbank-access'}";
($st) = $h->request('GET', '/v1/me', headers => { Cookie => $new_cookie });
is($st, 200, 'the new access cookie works');

my @cleared = ('__Secure-pgbank-access=; Path=/v1; Max-Age=0; Secure; HttpOnly; SameSite=Strict',
	'__Secure-pgbank-refresh=; Path=/v1/browser; Max-Age=0; Secure; HttpOnly; SameSite=Strict');
my $new_refresh = "__Secure-pgbank-refresh=$jar2->{'__Secure-pgbank-refresh'}";
($st, $d, $r) = $h->request('POST', '/v1/browser/logout',
	headers => { Cookie => "$new_cookie; $new_refresh", Origin => 'https://evil.example' });
is("$st $d->{code}", '403 csrf_origin', 'browser logout from a foreign origin: 403');
is_deeply([ set_cookies($r) ], [], '... and no cookie is cleared (a cross-site form cannot log the browser out)');
($st) = $h->request('GET', '/v1/me', headers => { Cookie => $new_cookie });
is($st, 200, '... but the session goes on');
# the access cookie lives 5 minutes, the refresh cookie as long as the
# session: a browser logging out later sends only the refresh cookie (the
# expired access cookie is sent too, and ignored)
($st, $d, $r) = $h->request('POST', '/v1/browser/logout',
	headers => { Cookie => "__Secure-pgbank-access=expired.or.garbage; $new_refresh", Origin => $APP });
is($st, 204, 'browser logout by the refresh cookie alone (the access cookie expired): 204');
is_deeply([ sort(set_cookies($r)) ], \@cleared, '... clears both cookies (Max-Age=0)');
($st) = $h->request('GET', '/v1/me', headers => { Cookie => $new_cookie });
is($st, 401, 'the old access cookie is then refused (401)');
($st) = $h->request('GET', '/v1/me', headers => { Cookie => $cookie });
is($st, 401, '... as is the one before the refresh');
($st) = $h->request('POST', '/v1/browser/refresh', headers => { Origin => $APP, Cookie => $new_refresh });
is($st, 401, '... and the refresh cookie');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM bank.audit_events WHERE action = 'auth.logout'"), 1, '... one auth.logout audit row');
($st, $d, $r) = $h->request('POST', '/v1/browser/logout', headers => { Origin => $APP, Cookie => $new_refresh });
is($st, 204, 'logging out again: 204, nothing more');
($st, $d, $r) = $h->request('POST', '/v1/browser/logout', headers => { Origin => $APP });
is($st, 204, '... and without any cookie');
is_deeply([ sort(set_cookies($r)) ], \@cleared, '... both clearing the cookies');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM bank.audit_events WHERE action = 'auth.logout'"), 1, '... still one auth.logout audit row');

# --- form bodies ---------------------------------------------------------------
sub form
{
	my ($method, $path, $body, %hdr) = @_;
	return $h->request($method, $path,
		headers => { %$bearer, 'Content-Type' => 'application/x-www-form-urlencoded', %hdr },
		body => $body);
}
($st, $d) = form('POST', '/v1/transfers', "from_account=$from&to_account=$to&amount=2.50&description=rent+%26+bills",
	'Idempotency-Key' => 'br-form-1');
is($st, 201, 'a transfer as a form body: 201');
is($d->{amount}, '2.50', '... of 2.50');
is($node->safe_psql('postgres', "SELECT description FROM bank.transfers WHERE id = $d->{id}"),
	'rent & bills', '... with the description decoded');
($st, $d) = form('POST', '/v1/transfers', "from_account=$from&to_account=$to&amount=3",
	'Idempotency-Key' => 'br-form-2');
is("$st $d->{amount}", '201 3.00', 'a form amount is a decimal of units: amount=3 moves 3.00, not 3 cents');
($st, $d) = form('PATCH', "/v1/accounts/$to", 'name=Holiday%20fund');
is("$st $d->{name}", '200 Holiday fund', 'an account rename as a form body');
($st, $d) = form('POST', '/v1/transfers', "from_account=$from&to_account=$to&amount=1.00",
	'Idempotency-Key' => 'br-form-c', 'Content-Type' => 'application/x-www-form-urlencoded; charset=UTF-8');
is($st, 201, 'a form with a charset parameter');

$n_transfers = transfers();
my %form_errors = (
	'an unknown field' => [ "from_account=$from&to_account=$to&amount=1.00&fee=0", '400 unknown_field', qr/unknown field fee/ ],
	'a missing field' => [ "from_account=$from&amount=1.00", '400 missing_argument', qr/to_account is required/ ],
	'an id that is no number' => [ "from_account=abc&to_account=$to&amount=1.00", '400 invalid_argument', qr/from_account must be a positive integer id/ ],
	'an empty id' => [ "from_account=&to_account=$to&amount=1.00", '400 invalid_argument', qr/from_account/ ],
	'an amount with an exponent' => [ "from_account=$from&to_account=$to&amount=1e3", '400 invalid_amount', qr/amount/ ],
	'a negative amount' => [ "from_account=$from&to_account=$to&amount=-1.00", '400 invalid_amount', qr/amount/ ],
	'a field given twice' => [ "from_account=$from&to_account=$to&amount=1.00&amount=900.00", '400 invalid_argument', qr/amount is given twice/ ],
	'an object (JSON only)' => [ "from_account=$from&to_account=$to&amount=1.00&metadata=x", '400 form_unsupported', qr/metadata cannot be given in a form body/ ],
	'a bad percent-encoding' => [ "from_account=$from&to_account=$to&amount=1.00&description=%zz", '400 invalid_form', qr/not well encoded/ ],
	'a NUL byte' => [ "from_account=$from&to_account=$to&amount=1.00&description=a%00b", '400 invalid_form', qr/not well encoded/ ],
);
for my $what (sort keys %form_errors)
{
	my ($body, $want, $detail) = @{ $form_errors{$what} };
	($st, $d) = form('POST', '/v1/transfers', $body, 'Idempotency-Key' => 'br-fe-' . $k++);
	is("$st " . ($d->{code} // ''), $want, "a form with $what: $want");
	like($d->{detail} // '', $detail, '... naming it');
}
($st, $d) = $h->request('POST', '/v1/transfers/batch',
	headers => { 'X-API-Key' => $svc, 'Content-Type' => 'application/x-www-form-urlencoded' }, body => 'items=1');
is("$st $d->{code}", '400 form_unsupported', 'a batch (an array) cannot be a form: 400');
($st, $d) = $h->request('POST', '/v1/transfers',
	headers => { %$bearer, 'Content-Type' => 'text/plain', 'Idempotency-Key' => 'br-tp' }, body => 'x=1');
is($st, 415, 'another media type: 415');
is(transfers(), $n_transfers, 'no form error wrote a transfer');

# a browser's form post with the cookie: CSRF applies the same way
($st, $d, $r) = $h->request('POST', '/v1/browser/login', headers => { Origin => $APP,
	'Content-Type' => 'application/x-www-form-urlencoded' },
	body => 'email=' . $c->{email} =~ s/@/%40/r . '&password=correct+horse+battery+staple');
is($st, 200, 'a browser login as a form body');
my $fcookie = '__Secure-pgbank-access=' . cookie_jar($r)->{'__Secure-pgbank-access'};
my $fcsrf = $d->{csrf_token};
($st, $d) = $h->request('POST', '/v1/transfers', headers => { Cookie => $fcookie, Origin => $EVIL,
	'X-CSRF-Token' => $fcsrf, 'Content-Type' => 'application/x-www-form-urlencoded', 'Idempotency-Key' => 'br-ff-1' },
	body => "from_account=$from&to_account=$to&amount=1.00");
is("$st $d->{code}", '403 csrf_origin', 'a cross-site form post with the cookie: 403');
($st, $d) = $h->request('POST', '/v1/transfers', headers => { Cookie => $fcookie, Origin => $APP,
	'X-CSRF-Token' => $fcsrf, 'Content-Type' => 'application/x-www-form-urlencoded', 'Idempotency-Key' => 'br-ff-2' },
	body => "from_account=$from&to_account=$to&amount=1.00");
is($st, 201, 'the same from the allowed origin with the token: 201');

# --- the OpenAPI document --------------------------------------------------------
($st, $d) = $h->request('GET', '/v1/openapi.json');
my $paths = $d->{paths};
ok($paths->{'/v1/transfers'}{post}{requestBody}{content}{'application/x-www-form-urlencoded'},
	'OpenAPI: POST /v1/transfers accepts a form');
ok(!$paths->{'/v1/transfers/batch'}{post}{requestBody}{content}{'application/x-www-form-urlencoded'},
	'... the batch does not');
is_deeply($paths->{'/v1/browser/refresh'}{post}{parameters},
	[ { name => '__Secure-pgbank-refresh', in => 'cookie', required => JSON::PP::true,
		schema => { type => 'string', maxLength => 4096 } } ],
	'... browser refresh takes the refresh cookie');
is_deeply($paths->{'/v1/browser/logout'}{post}{parameters},
	[ { name => '__Secure-pgbank-refresh', in => 'cookie', required => JSON::PP::false,
		schema => { type => 'string', maxLength => 4096 } } ],
	'... and so does browser logout (not required)');
ok($d->{components}{securitySchemes}{cookie}, '... and the cookie security scheme');

is($h->stop_server, 0, 'the server stops cleanly');
done_testing();
