# t/112_http_tls.pl -- pgbank-http's optional TLS, HSTS and HTTP/2 option.
#
# With --tls-cert and --tls-key (a self-signed certificate made here with
# openssl) the server speaks HTTPS only: TLS 1.2 at least, ECDHE+AEAD
# suites, Strict-Transport-Security on every response, and a route works
# over it.  Bad files stop it at startup with a clear message.  ALPN offers
# http/1.1 only unless --http2=1: curl --http2 gets HTTP/1.1 without it and
# HTTP/2 with it, and routes answer correctly over h2.  Plain HTTP never
# carries HSTS and never speaks HTTP/2 (no h2c upgrade, no prior knowledge).
# curl is the client (HTTP::Tiny would need IO::Socket::SSL).

use strict;
use warnings;

use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgbankTest;
use PgbankHttp;

my $JSON = JSON::PP->new->canonical;
my $h = PgbankHttp->new('tls');
my $node = $h->node;
my $dir = $node->basedir;

# a certificate for 127.0.0.1, and an unrelated key
for my $name ('server', 'other')
{
	my ($out, $err);
	IPC::Run::run(
		[ 'openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
		  '-keyout', "$dir/$name.key", '-out', "$dir/$name.crt", '-subj', '/CN=127.0.0.1',
		  '-addext', 'subjectAltName=IP:127.0.0.1' ],
		'<', \undef, '>', \$out, '2>', \$err)
	  or BAIL_OUT("openssl req: $err");
}
my $cert = "$dir/server.crt";
my $key = "$dir/server.key";
open(my $fh, '>', "$dir/garbage.pem") or die $!;
print $fh "not a certificate\n";
close $fh;

# curl(url, args...) -> { code, version, headers => {lc name => value}, body }
my $n = 0;
sub curl
{
	my ($url, @args) = @_;
	$n++;
	my ($out, $err);
	IPC::Run::run(
		[ 'curl', '-s', '--max-time', '20', '-D', "$dir/h$n", '-o', "$dir/b$n",
		  '-w', '%{http_code} %{http_version}', @args, $url ],
		'<', \undef, '>', \$out, '2>', \$err);
	my ($code, $version) = split / /, $out // '';
	my %hd;
	if (open(my $hf, '<', "$dir/h$n"))
	{
		local $/;
		my $all = <$hf>;
		# the last response's headers (after any 1xx)
		my @blocks = split /\r?\n\r?\n/, $all;
		for my $line (split /\r?\n/, $blocks[-1] // '')
		{
			$hd{ lc $1 } = $2 if $line =~ /^([^:\s]+):\s*(.*)$/;
		}
	}
	my $body = -e "$dir/b$n" ? slurp_file("$dir/b$n") : '';
	return { code => $code // '000', version => $version // '0', headers => \%hd, body => $body };
}

# --- startup checks --------------------------------------------------------
sub start_fails
{
	my (@flags) = @_;
	my ($out, $err) = ('', '');
	local $ENV{PGBANK_HTTP_JWT_SECRET} = 'x' x 40;
	IPC::Run::run([ PgbankHttp::shim_path('pgbank-http'), '--port', '1', @flags ],
		'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(30));
	return ($? >> 8, $err);
}
my ($rc, $err) = start_fails('--tls-cert', $cert);
is($rc, 2, '--tls-cert without --tls-key stops the server');
like($err, qr/--tls-cert and --tls-key go together/, '... saying both are needed');
($rc, $err) = start_fails('--tls-cert', $cert, '--tls-key', "$dir/missing.key");
like($err, qr{--tls-key: cannot open .*missing\.key: No such file}, 'an unreadable key is named');
($rc, $err) = start_fails('--tls-cert', $cert, '--tls-key', "$dir/other.key");
is($rc, 2, 'a key of another certificate stops the server');
like($err, qr/the key in .*other\.key does not match the certificate/, '... saying they do not match');
($rc, $err) = start_fails('--tls-cert', "$dir/garbage.pem", '--tls-key', $key);
like($err, qr/--tls-cert: .*garbage\.pem holds no usable PEM certificate/, 'a file that is no certificate');
($rc, $err) = start_fails('--tls-cert', $cert, '--tls-key', "$dir/garbage.pem");
like($err, qr/--tls-key: .*garbage\.pem holds no unencrypted PEM private key/, 'a file that is no key');
($rc, $err) = start_fails('--http2', '1');
is($rc, 2, '--http2=1 without TLS stops the server');
like($err, qr/--http2=1 needs TLS/, '... (HTTP/2 is offered by ALPN only, never h2c)');

# --- plain HTTP: no HSTS, no HTTP/2 ----------------------------------------
$h->start_server;
my $plain = $h->url;
my $c = $h->customer('tls@example.com');
my ($st, $d, $r) = $h->request('GET', '/v1/me', headers => PgbankHttp::bearer($c->{token}));
is($st, 200, 'plain HTTP: a route answers');
ok(!exists $r->{headers}{'strict-transport-security'}, '... without Strict-Transport-Security');
$r = curl("$plain/livez", '--http2');
is("$r->{code} $r->{version}", '200 1.1', 'plain HTTP: curl --http2 (h2c upgrade) stays on HTTP/1.1');
$r = curl("$plain/livez", '--http2-prior-knowledge');
isnt($r->{code}, '200', 'plain HTTP: HTTP/2 with prior knowledge is not served');
$h->stop_server;

# --- TLS, HTTP/1.1 only ----------------------------------------------------
$h->start_server('--tls-cert', $cert, '--tls-key', $key);
my $url = $h->url;
like($url, qr{^https://}, 'the server speaks HTTPS');
$r = curl("$url/v1/me", '--cacert', $cert, '-H', "Authorization: Bearer $c->{token}");
is($r->{code}, '200', 'TLS: GET /v1/me with a bearer token');
is(eval { $JSON->decode($r->{body})->{id} }, $c->{id}, '... answers the customer');
is($r->{headers}{'strict-transport-security'}, 'max-age=31536000',
	'... with Strict-Transport-Security (one year by default)');
$r = curl("$url/v1/nowhere", '--cacert', $cert);
is($r->{code}, '404', 'TLS: an unknown route is 404');
is($r->{headers}{'strict-transport-security'}, 'max-age=31536000', '... and carries HSTS too');
$r = curl("$url/livez", '--cacert', $cert, '--http2');
is("$r->{code} $r->{version}", '200 1.1',
	'TLS without --http2: curl --http2 negotiates HTTP/1.1 (ALPN offers no h2)');
$r = curl("$url/livez", '--cacert', $cert, '--tls-max', '1.1');
is($r->{code}, '000', 'TLS 1.1 is refused');
$r = curl("$url/livez", '--cacert', $cert, '--tls-max', '1.2');
is($r->{code}, '200', 'TLS 1.2 is served');
$r = curl("$url/livez", '--cacert', $cert, '--tls-max', '1.2', '--ciphers', 'AES128-SHA');
is($r->{code}, '000', 'TLS 1.2 without forward secrecy or AEAD (AES128-SHA) is refused');
$r = curl("$url/livez", '--cacert', $cert, '--tls-max', '1.2', '--ciphers', 'ECDHE-RSA-AES128-GCM-SHA256');
is($r->{code}, '200', 'TLS 1.2 with ECDHE-RSA-AES128-GCM-SHA256 is served');
$r = curl(($url =~ s/^https/http/r) . '/livez');
is($r->{code}, '000', 'plain HTTP on the TLS port gets no answer');
$r = curl("$url/livez");
is($r->{code}, '000', 'a client that does not trust the certificate gets nothing');
$h->stop_server;

($st) = $h->start_server('--tls-cert', $cert, '--tls-key', $key, '--hsts-max-age', '600');
$r = curl("$h->{url}/livez", '--cacert', $cert);
is($r->{headers}{'strict-transport-security'}, 'max-age=600', '--hsts-max-age sets max-age');
$h->stop_server;

# --- TLS with --http2=1 ----------------------------------------------------
$h->start_server('--tls-cert', $cert, '--tls-key', $key, '--http2', '1');
$url = $h->url;
$r = curl("$url/livez", '--cacert', $cert, '--http2');
is("$r->{code} $r->{version}", '200 2', 'TLS with --http2=1: curl --http2 negotiates HTTP/2');
$r = curl("$url/livez", '--cacert', $cert, '--http1.1');
is("$r->{code} $r->{version}", '200 1.1', '... and a client asking for HTTP/1.1 still gets it');
$r = curl("$url/v1/login", '--cacert', $cert, '--http2', '-X', 'POST',
	'-H', 'Content-Type: application/json',
	'--data', $JSON->encode({ email => 'tls@example.com', password => 'correct horse battery staple' }));
is("$r->{code} $r->{version}", '200 2', 'over HTTP/2: POST /v1/login');
my $token = eval { $JSON->decode($r->{body})->{access_token} };
ok($token, '... returns an access token');
is($r->{headers}{'content-encoding'}, 'identity', '... not compressed');
$r = curl("$url/v1/me", '--cacert', $cert, '--http2', '-H', "Authorization: Bearer $token");
is("$r->{code} $r->{version}", '200 2', 'over HTTP/2: GET /v1/me with that token');
is(eval { $JSON->decode($r->{body})->{id} }, $c->{id}, '... answers the customer');
is($r->{headers}{'strict-transport-security'}, 'max-age=31536000', '... with HSTS');
is($r->{headers}{'x-content-type-options'}, 'nosniff', '... and the security headers');
$r = curl("$url/v1/accounts", '--cacert', $cert, '--http2', '-X', 'POST',
	'-H', "Authorization: Bearer $token", '-H', 'Content-Type: application/json',
	'--data', '{"type": "checking", "name": "h2", "currency": "USD", "extra": 1}');
is("$r->{code} $r->{version}", '400 2', 'over HTTP/2: an unknown body member is a 400');
like($r->{headers}{'content-type'}, qr{^application/problem\+json}, '... as problem+json');
$r = curl("$url/v1/accounts", '--cacert', $cert, '--http2', '-X', 'POST',
	'-H', "Authorization: Bearer $token", '-H', 'Content-Type: application/json',
	'--data', '{"type": "checking", "name": "h2", "currency": "USD"}');
is("$r->{code} $r->{version}", '201 2', 'over HTTP/2: POST /v1/accounts opens an account');
is($node->safe_psql('postgres', "SELECT count(*) FROM bank.accounts WHERE name = 'h2'"), '1',
	'... once');
my $acct = eval { $JSON->decode($r->{body})->{id} } // die 'no account id';

# A client that goes away while its request waits for the database: h2o
# disposes an HTTP/2 request (and its memory) at once, where HTTP/1.1 does
# not notice.  The answer that comes later must not touch it: before
# api.c kept its job in memory of its own, this was a use-after-free
# (AddressSanitizer: heap-use-after-free in pbh_problem_send from on_done)
# and the server died.
my $locker = IPC::Run::start(
	[ 'psql', '-X', '-q', '-d', $node->connstr('postgres'), '-c',
	  "BEGIN; SELECT 1 FROM bank.accounts WHERE id = $acct FOR UPDATE; SELECT pg_sleep(2); COMMIT;" ],
	'>', \my $lout, '2>', \my $lerr);
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE '%FOR UPDATE; SELECT pg_sleep(2)%' AND pid <> pg_backend_pid()")
  or die 'the locking session did not start';
my $gone = IPC::Run::start(
	[ 'curl', '-s', '--max-time', '30', '--cacert', $cert, '--http2', '-X', 'PATCH',
	  '-H', "Authorization: Bearer $token", '-H', 'Content-Type: application/json',
	  '--data', '{"name": "renamed after hang-up"}', "$url/v1/accounts/$acct" ],
	'<', \undef, '>', \my $gout, '2>', \my $gerr);
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND usename = 'bank_gateway'"),
	'over HTTP/2: a rename waits for a locked account');
$gone->kill_kill;
$locker->finish;
ok($node->poll_query_until('postgres',
	"SELECT name = 'renamed after hang-up' FROM bank.accounts WHERE id = $acct"),
	'... its client hangs up; the rename still commits (as with HTTP/1.1)');
my @after;
for (1 .. 5)
{
	$r = curl("$url/v1/accounts/$acct", '--cacert', $cert, '--http2', '-H', "Authorization: Bearer $token");
	push @after, "$r->{code} " . (eval { $JSON->decode($r->{body})->{name} } // '');
}
is_deeply(\@after, [ ('200 renamed after hang-up') x 5 ], '... and the server goes on answering');

# The same for an event stream whose first fetch waits: before events.c
# kept a guard in the request's memory, the stream kept a pointer to the
# freed request and started its response there when the fetch came back.
# The fetch renews the customer's watch, so a lock on the feed row holds
# it.
$node->safe_psql('postgres',
	"INSERT INTO bank.event_feeds (customer_id, last_seq) VALUES ($c->{id}, 0) ON CONFLICT DO NOTHING");
$locker = IPC::Run::start(
	[ 'psql', '-X', '-q', '-d', $node->connstr('postgres'), '-c',
	  "BEGIN; SELECT 1 FROM bank.event_feeds WHERE customer_id = $c->{id} FOR UPDATE; SELECT pg_sleep(2); COMMIT;" ],
	'>', \$lout, '2>', \$lerr);
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE '%event_feeds WHERE customer_id%FOR UPDATE; SELECT pg_sleep(2)%' AND pid <> pg_backend_pid()")
  or die 'the locking session did not start';
$gone = IPC::Run::start(
	[ 'curl', '-s', '-N', '--max-time', '30', '--cacert', $cert, '--http2',
	  '-H', "Authorization: Bearer $token", "$url/v1/events" ],
	'<', \undef, '>', \my $eout, '2>', \my $eerr);
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND usename = 'bank_gateway'"),
	'over HTTP/2: an event stream\'s first fetch waits for a locked feed row');
$gone->kill_kill;
$locker->finish;
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND usename = 'bank_gateway'"),
	'... its client hangs up; the fetch ends');
@after = ();
for (1 .. 5)
{
	$r = curl("$url/v1/accounts/$acct", '--cacert', $cert, '--http2', '-H', "Authorization: Bearer $token");
	push @after, $r->{code};
}
is_deeply(\@after, [ (200) x 5 ], '... and the server goes on answering');
$r = curl("$url/v1/events", '--cacert', $cert, '--http2', '--max-time', '1', '-H', "Authorization: Bearer $token");
is("$r->{code} $r->{version}", '200 2', '... event streams too (cut by the client after a second)');
like($h->server_log, qr/listening on 127\.0\.0\.1 port \d+ \(https, HTTP\/1\.1 and HTTP\/2;/,
	'the server says it serves HTTPS with HTTP/2');
is($h->stop_server, 0, 'the server stops cleanly');

done_testing();
