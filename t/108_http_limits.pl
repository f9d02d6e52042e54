# t/108_http_limits.pl -- hostile input against the real pgbank-http, over
# raw sockets (the bytes written by hand, so nothing in a client library
# tidies them up).
#
# Each case gets the expected 4xx as application/problem+json with a stable
# code, or, where HTTP has no answer (a head never finished, a connection
# over the limit), a connection closed promptly; never a 5xx; and after each
# one the server still serves a real read that goes to the database.  At the
# end bank.check_ledger() is empty, exactly the transfers that were accepted
# exist (none of a refused request), and /metrics counts no 5xx.
#
# Cases: an oversized body with Content-Length and one chunked (413), a good
# chunked body (accepted: 201, one transfer), bodies of exactly --max-body
# (accepted) and one byte more (413) both ways, malformed chunking and an
# unknown Transfer-Encoding (400), too many header fields and too large ones
# (431 below h2o's own limits; h2o's fixed 400 above them), JSON nested
# 10,000 deep, invalid UTF-8 in a value and in a name, duplicate names at
# the top and in a nested object, huge numbers (1e400, 400 digits) as an
# amount, NUL bytes, a slow-loris head and a slow body cut off by
# --request-timeout, and connections over --max-connections.

use strict;
use warnings;

use IO::Socket::INET;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use PgbankTest;
use PgbankHttp;

my $h = PgbankHttp->new('limits');
my $node = $h->node;
$h->start_server('--request-timeout', '1500', '--access-log', '1');
my $svc = $h->api_key('bank_service');
my $c = $h->customer('limits@example.com');
my $auth = PgbankHttp::bearer($c->{token});
my @acct;
for my $k (1 .. 2)
{
	my ($st, $d) = $h->request('POST', '/v1/accounts', headers => $auth,
		body => { type => 'checking', name => "limits $k", currency => 'USD' });
	die "open: $st" unless $st == 201;
	push @acct, $d->{id};
}
my ($st) = $h->request('POST', '/v1/deposits',
	headers => { 'X-API-Key' => $svc, 'Idempotency-Key' => 'limits-fund' },
	body => { account => $acct[0], amount => '500.00' });
is($st, 201, 'a funded account');

my $port = ($h->url =~ /:(\d+)$/)[0];
# 5xx so far: /readyz answers 503 until the pool is up, while start_server polls it
sub count_5xx
{
	my (undef, undef, $m) = $h->request('GET', '/metrics');
	return ($m->{content} =~ /^pgbank_http_responses_total\{class="5xx"\} (\d+)$/m)[0];
}
my $startup_5xx = count_5xx();
my $token = $c->{token};
my $transfers_before = $node->safe_psql('postgres', 'SELECT count(*) FROM bank.transfers');

# raw(bytes, wait => seconds): write the bytes (stopping quietly if the
# server closes first), then read the answer.  Returns a hash: status
# (undef when none came), headers (lower-case names), body, json (decoded
# problem), closed (the server ended the connection), seconds.
sub raw
{
	my ($bytes, %o) = @_;
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
		LocalAddr => $o{from} // '127.0.0.1') or die "connect: $!";
	local $SIG{PIPE} = 'IGNORE';
	my $t0 = time;
	my $off = 0;
	while ($off < length $bytes)
	{
		my $n = syswrite($s, $bytes, 65536, $off);
		last unless defined $n;
		$off += $n;
	}
	return PgbankHttp::read_answer($s, $t0, %o);
}

# the request's head, for POST /v1/transfers
sub transfer_head
{
	my ($key, @extra) = @_;
	return "POST /v1/transfers HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer $token\r\n"
	  . "Idempotency-Key: $key\r\nContent-Type: application/json\r\n"
	  . join('', map { "$_\r\n" } @extra);
}

sub transfer_raw
{
	my ($key, $body) = @_;
	return transfer_head($key, 'Content-Length: ' . length($body)) . "\r\n" . $body;
}

my $n5xx = 0;

# problem(r, status, code, name): the expected problem
sub problem
{
	my ($r, $status, $code, $name) = @_;
	$n5xx++ if ($r->{status} // 0) >= 500;
	is($r->{status}, $status, "$name: $status")
	  or diag(explain({ %$r, socket => undef }));
	is($r->{headers}{'content-type'}, 'application/problem+json', "$name: problem+json");
	is($r->{json}{code}, $code, "$name: code $code") if defined $code;
	is($r->{json}{status}, $status, "$name: the problem's status matches") if defined $code;
	ok(defined $r->{headers}{'x-request-id'} && defined $r->{headers}{'x-content-type-options'},
		"$name: request id and security headers") if defined $code;
}

# the server still answers a read that goes to the database
my $reads = 0;
sub still_serves
{
	my ($name) = @_;
	my ($st, $d) = $h->request('GET', "/v1/accounts/$acct[0]", headers => $auth);
	$reads++;
	is($st, 200, "after $name: the server still serves a database read");
}

# --- bodies
my $r = raw(transfer_head('big-cl', 'Content-Length: 70000') . "\r\n" . ('x' x 1000), eof => 3);
problem($r, 413, 'body_too_large', 'Content-Length over --max-body');
like($r->{json}{detail} // '', qr/65536 bytes/, '... naming the limit');
ok($r->{closed} || ($r->{headers}{connection} // '') =~ /close/i, '... and the connection is closed');
still_serves('413 with Content-Length');

my $chunk = sprintf("%x\r\n%s\r\n", 16384, '{' x 16384);
$r = raw(transfer_head('big-chunked', 'Transfer-Encoding: chunked') . "\r\n" . ($chunk x 6) . "0\r\n\r\n");
problem($r, 413, 'body_too_large', 'chunked body over --max-body (no Content-Length)');
still_serves('413 chunked');

my $good = encode_json({ from_account => 0 + $acct[0], to_account => 0 + $acct[1],
	amount => '1.25', description => 'chunked' });
my $half = int(length($good) / 2);
$r = raw(transfer_head('good-chunked', 'Transfer-Encoding: chunked') . "\r\n"
	  . sprintf("%x\r\n%s\r\n", $half, substr($good, 0, $half))
	  . sprintf("%x\r\n%s\r\n", length($good) - $half, substr($good, $half)) . "0\r\n\r\n");
is($r->{status}, 201, 'a good chunked body is accepted: 201');
is($r->{json}{amount}, '1.25', '... and the transfer is made');

# the boundary: exactly --max-body is accepted, one byte more is not, with
# Content-Length and chunked alike (h2o alone took a chunked body only
# below the limit); the padding is JSON white space
sub padded
{
	my ($key, $len) = @_;
	my $j = encode_json({ from_account => 0 + $acct[0], to_account => 0 + $acct[1],
		amount => '0.50', description => $key });
	return $j . (' ' x ($len - length $j));
}
sub chunked
{
	my ($body) = @_;
	my $out = '';
	$out .= sprintf("%x\r\n%s\r\n", length($1), $1) while $body =~ /(.{1,8192})/gs;
	return $out . "0\r\n\r\n";
}
$r = raw(transfer_raw('edge-cl', padded('edge-cl', 65536)));
is($r->{status}, 201, 'a body of exactly --max-body (Content-Length): accepted');
$r = raw(transfer_head('edge-chunked', 'Transfer-Encoding: chunked') . "\r\n"
	  . chunked(padded('edge-chunked', 65536)));
is($r->{status}, 201, 'a body of exactly --max-body (chunked): accepted');
$r = raw(transfer_raw('edge-cl-1', padded('edge-cl-1', 65537)));
problem($r, 413, 'body_too_large', 'one byte over --max-body (Content-Length)');
$r = raw(transfer_head('edge-chunked-1', 'Transfer-Encoding: chunked') . "\r\n"
	  . chunked(padded('edge-chunked-1', 65537)));
problem($r, 413, 'body_too_large', 'one byte over --max-body (chunked)');
still_serves('bodies at the limit');

$r = raw(transfer_head('bad-chunk', 'Transfer-Encoding: chunked') . "\r\nzz\r\n{}\r\n0\r\n\r\n");
problem($r, 400, 'bad_request', 'malformed chunk size');
like($r->{json}{detail} // '', qr/chunked/, '... saying what was wrong');
$r = raw(transfer_head('te-gzip', 'Transfer-Encoding: gzip') . "\r\n");
problem($r, 400, 'bad_request', 'unknown Transfer-Encoding');
$r = raw(transfer_head('bad-cl', 'Content-Length: 12abc') . "\r\n{}");
problem($r, 400, 'bad_request', 'broken Content-Length');
still_serves('broken framing');

# --- header fields
my @many = map { "X-Filler-$_: v" } 1 .. 70;
$r = raw(transfer_raw('many-headers', $good) =~ s/\r\n\r\n/"\r\n" . join('', map { "$_\r\n" } @many) . "\r\n"/er);
problem($r, 431, 'too_many_headers', '70 header fields (over --max-headers 64)');
$r = raw("GET /v1/accounts/$acct[0] HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $token\r\n"
	  . join('', map { "X-Filler-$_: v\r\n" } 1 .. 60) . "\r\n");
is($r->{status}, 200, '60 header fields are fine');
$r = raw("GET /livez HTTP/1.1\r\nHost: x\r\n" . join('', map { "X-Filler-$_: v\r\n" } 1 .. 101) . "\r\n", eof => 3);
is($r->{status}, 400, "101 header fields: h2o's own fixed 400 (above H2O_MAX_HEADERS)");
ok($r->{closed}, '... and the connection is closed');
$n5xx++ if ($r->{status} // 0) >= 500;

$r = raw("GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: " . ('a' x 20000) . "\r\n\r\n");
problem($r, 431, 'headers_too_large', 'a 20 kB header field (over --max-header-size 16384)');
$r = raw("GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: " . ('a' x 500000) . "\r\n\r\n");
is($r->{status}, 400, "a 500 kB header: h2o's own fixed 400 (over H2O_MAX_REQLEN)");
$n5xx++ if ($r->{status} // 0) >= 500;
still_serves('header limits');

# --- JSON
my %body = (from_account => 0 + $acct[0], to_account => 0 + $acct[1], amount => '2.00');
my $json_case = sub {
	my ($name, $text, $code, $detail) = @_;
	my $r = raw(transfer_raw("json-$name", $text));
	problem($r, 400, $code, $name);
	like($r->{json}{detail} // '', $detail, "$name: detail") if $detail;
};
$json_case->('JSON nested 10,000 deep',
	qq({"from_account":$acct[0],"to_account":$acct[1],"amount":"2.00","metadata":{"a":)
	  . ('[' x 10000) . (']' x 10000) . '}}', 'invalid_json', qr/nested too deep/);
$json_case->('a body of 10,000 [', '[' x 10000, 'invalid_json');
$json_case->('invalid UTF-8 in a string',
	qq({"from_account":$acct[0],"to_account":$acct[1],"amount":"2.00","description":"caf\xC3\x28"}),
	'invalid_json', qr/UTF-8/);
$json_case->('an overlong UTF-8 form',
	qq({"from_account":$acct[0],"to_account":$acct[1],"amount":"2.00","description":"\xC0\xAF"}),
	'invalid_json', qr/UTF-8/);
$json_case->('a UTF-8 surrogate',
	qq({"from_account":$acct[0],"to_account":$acct[1],"amount":"2.00","description":"\xED\xA0\x80"}),
	'invalid_json', qr/UTF-8/);
$json_case->('invalid UTF-8 in a member name',
	qq({"from_account":$acct[0],"to_account":$acct[1],"amount":"2.00","\xFFdescription":"x"}),
	'invalid_json', qr/UTF-8/);
$json_case->('a lone surrogate escape',
	qq({"from_account":$acct[0],"to_account":$acct[1],"amount":"2.00","description":"\\ud800"}),
	'invalid_json', qr/surrogate/);
$json_case->('a duplicate member name',
	qq({"from_account":$acct[0],"to_account":$acct[1],"amount":"2.00","amount":"400.00"}),
	'invalid_json', qr/twice/);
$json_case->('a duplicate name in a nested object',
	qq({"from_account":$acct[0],"to_account":$acct[1],"amount":"2.00","metadata":{"a":1,"a":2}}),
	'invalid_json', qr/twice/);
$json_case->('a raw NUL byte in a string',
	qq({"from_account":$acct[0],"to_account":$acct[1],"amount":"2.00","description":"a\0b"}),
	'invalid_json');
$json_case->('\u0000 in a string',
	qq({"from_account":$acct[0],"to_account":$acct[1],"amount":"2.00","description":"a\\u0000b"}),
	'invalid_json');
$json_case->('a NUL byte between members',
	qq({"from_account":$acct[0],\0"to_account":$acct[1],"amount":"2.00"}), 'invalid_json');
for my $amount ('1e400', '1' x 400, '"' . ('9' x 400) . '"', '"1e400"', '-1e400', '0.' . ('0' x 400) . '1')
{
	my $text = qq({"from_account":$acct[0],"to_account":$acct[1],"amount":$amount});
	my $r = raw(transfer_raw('huge-' . length($amount), $text));
	my $shown = length($amount) > 12 ? substr($amount, 0, 8) . '... (' . length($amount) . ' chars)' : $amount;
	problem($r, 400, undef, "amount $shown");
	like($r->{json}{code} // '', qr/^(invalid_amount|amount_out_of_range)$/,
		"amount $shown: an amount error ($r->{json}{code})");
}
still_serves('hostile JSON');

# NUL in the request line or a header value: h2o's parser refuses the head
$r = raw("GET /v1/acc\0ounts HTTP/1.1\r\nHost: x\r\n\r\n");
is($r->{status}, 400, 'a NUL in the path: 400');
$n5xx++ if ($r->{status} // 0) >= 500;
$r = raw("GET /livez HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n");
ok(defined $r->{status} && $r->{status} == 400, 'a NUL in a header value: 400');
$n5xx++ if ($r->{status} // 0) >= 500;
still_serves('NUL bytes');

# --- slow loris: a head never finished is cut off by --request-timeout (1.5 s)
{
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port) or die $!;
	my $t0 = time;
	syswrite($s, "GET /livez HTTP/1.1\r\nHost: x\r\nX-Slow: ");
	# meanwhile the server serves others
	still_serves('a slow-loris connection opened');
	my $r = PgbankHttp::read_answer($s, $t0, wait => 15);
	ok($r->{closed}, 'a head never finished: the server closes the connection');
	ok(!defined $r->{status}, '... without an answer (HTTP has none to give)');
	cmp_ok($r->{seconds}, '>=', 1.0, '... not before --request-timeout');
	cmp_ok($r->{seconds}, '<', 10, '... but soon after it (' . sprintf('%.1f', $r->{seconds}) . ' s)');
}

# --- a slow body: the head is whole, the body never is; the same timeout
{
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port) or die $!;
	my $t0 = time;
	syswrite($s, transfer_head('slow-body', 'Content-Length: 200') . "\r\n" . '{"from_account":');
	my $r = PgbankHttp::read_answer($s, $t0, wait => 15);
	ok($r->{closed} && !defined $r->{status}, 'a body never finished: closed without an answer');
	cmp_ok($r->{seconds}, '>=', 1.0, '... not before --request-timeout');
	cmp_ok($r->{seconds}, '<', 10, '... but soon after it (' . sprintf('%.1f', $r->{seconds}) . ' s)');
	still_serves('a slow body');
}

# nothing of a refused request was written
is($node->safe_psql('postgres', 'SELECT count(*) FROM bank.transfers') - $transfers_before, 3,
	'exactly three transfers were written: the good chunked one and the two at the limit');
is($node->safe_psql('postgres', "SELECT string_agg(description, ',' ORDER BY id) FROM bank.transfers WHERE id > 0 AND description IN ('chunked', 'edge-cl', 'edge-chunked', 'edge-cl-1', 'edge-chunked-1')"),
	'chunked,edge-cl,edge-chunked', '... those three and no other');
is($node->safe_psql('postgres', 'SELECT count(*) FROM bank.check_ledger()'), 0, 'check_ledger() is empty');
is(count_5xx() - $startup_5xx, 0, '/metrics: no 5xx since the server became ready')
  or diag(join("\n", grep { /"status":5/ } split /\n/, $h->server_log));
is($n5xx, 0, 'no 5xx answer in the whole matrix');

# --- connection limit: 4 open connections, the 5th closed at once
$h->stop_server;
$h->start_server('--max-connections', '4');
$port = ($h->url =~ /:(\d+)$/)[0];
{
	usleep(300_000);			# the readiness probes' connections close
	my @open;
	for (1 .. 4)
	{
		my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port)
		  or die $!;
		push @open, $s;
	}
	usleep(200_000);
	my $r = raw("GET /livez HTTP/1.1\r\nHost: x\r\n\r\n", wait => 5);
	ok(!defined $r->{status}, 'a 5th connection (over --max-connections 4) gets no answer');
	cmp_ok($r->{seconds}, '<', 2, '... and is closed at once, not left hanging ('
		  . sprintf('%.3f', $r->{seconds}) . ' s)');
	# the 4 open ones are served
	syswrite($open[0], "GET /livez HTTP/1.1\r\nHost: x\r\n\r\n");
	my $a = PgbankHttp::read_answer($open[0], time, wait => 5);
	is($a->{status}, 200, 'a connection within the limit is served');
	close $_ for @open;
	usleep(300_000);
	$r = raw("GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	is($r->{status}, 200, 'once they close, a new connection is served');
	my ($mst, undef, $m) = $h->request('GET', '/metrics');
	like($m->{content}, qr/^pgbank_http_connections_refused_total [1-9]/m,
		'/metrics counts the refused connection');
}
$h->stop_server;

done_testing();
