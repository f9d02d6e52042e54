# t/107_http_cache.pl -- HTTP caching and compression in pgbank-http.
#
# A GET's 200 carries a weak ETag of its body; If-None-Match with it is a
# 304 with no body, until the data changes (a deposit), then a 200 with a new
# tag.  Bodies of 1 KiB and more are gzip'd for a client that accepts gzip
# (and decompress to the same bytes), smaller ones and clients that do not
# accept it get the identity; a login, which carries tokens, is never
# compressed.  Writes carry no ETag.  Every response has the security
# headers of an API.

use strict;
use warnings;

use IO::Uncompress::Gunzip qw(gunzip $GunzipError);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgbankTest;
use PgbankHttp;

my $h = PgbankHttp->new('cache');
my $node = $h->node;
$h->start_server;
my $svc = $h->api_key('bank_service');
my $c = $h->customer('cache@example.com');
my $auth = PgbankHttp::bearer($c->{token});

my ($st, $d, $r) = $h->request('POST', '/v1/accounts', headers => $auth,
	body => { type => 'checking', name => 'cached', currency => 'USD' });
is($st, 201, 'open an account');
ok(!defined $r->{headers}{etag}, 'a write carries no ETag');
my $acct = $d->{id};

($st, $d, $r) = $h->request('GET', "/v1/accounts/$acct", headers => $auth);
is($st, 200, 'GET the account');
is_deeply(
	[ map { $r->{headers}{$_} } qw(cache-control x-content-type-options x-frame-options referrer-policy content-security-policy) ],
	[ 'no-store', 'nosniff', 'DENY', 'no-referrer', "default-src 'none'; frame-ancestors 'none'" ],
	'... with the security headers of an API (no caching, sniffing, framing, referrer)');
my $etag = $r->{headers}{etag};
like($etag, qr{^W/"[0-9a-f]{32}"$}, '... with a weak ETag of its body');
($st, $d, $r) = $h->request('GET', "/v1/accounts/$acct",
	headers => { %$auth, 'If-None-Match' => $etag });
is($st, 304, 'If-None-Match with it: 304');
is($r->{content} // '', '', '... with no body');
is($r->{headers}{etag}, $etag, '... and the same ETag');
($st) = $h->request('GET', "/v1/accounts/$acct",
	headers => { %$auth, 'If-None-Match' => qq{"0123", $etag} });
is($st, 304, 'a list holding it: 304');
($st) = $h->request('GET', "/v1/accounts/$acct",
	headers => { %$auth, 'If-None-Match' => '"00000000000000000000000000000000"' });
is($st, 200, 'another tag: 200');

($st) = $h->request('POST', '/v1/deposits',
	headers => { 'X-API-Key' => $svc, 'Idempotency-Key' => 'cache-dep-1' },
	body => { account => $acct, amount => '12.34' });
is($st, 201, 'a deposit changes the balance');
($st, $d, $r) = $h->request('GET', "/v1/accounts/$acct",
	headers => { %$auth, 'If-None-Match' => $etag });
is($st, 200, 'the old tag now gets a 200');
is($d->{balance}, '12.34', '... with the new balance');
isnt($r->{headers}{etag}, $etag, '... and a new ETag');

# gzip: the OpenAPI document is large (tens of KiB)
my ($plain_st, undef, $plain) = $h->request('GET', '/v1/openapi.json');
ok(!defined $plain->{headers}{'content-encoding'}, 'no Accept-Encoding: identity');
($st, undef, $r) = $h->request('GET', '/v1/openapi.json',
	headers => { 'Accept-Encoding' => 'gzip' });
is($st, 200, 'Accept-Encoding: gzip');
is($r->{headers}{'content-encoding'}, 'gzip', '... a large body is gzip\'d');
like($r->{headers}{vary} // '', qr/accept-encoding/i, '... with Vary: Accept-Encoding');
my $inflated;
ok(gunzip(\$r->{content} => \$inflated), '... which decompresses') or diag($GunzipError);
is($inflated, $plain->{content}, '... to the same bytes');
cmp_ok(length $r->{content}, '<', length($plain->{content}) / 3, '... in less than a third of the size');

($st, undef, $r) = $h->request('GET', "/v1/accounts/$acct",
	headers => { %$auth, 'Accept-Encoding' => 'gzip' });
ok(!defined $r->{headers}{'content-encoding'}, 'a small body is not compressed');

($st, undef, $r) = $h->request('POST', '/v1/login', headers => { 'Accept-Encoding' => 'gzip' },
	body => { email => 'cache@example.com', password => 'correct horse battery staple' });
is($st, 200, 'a login');
is($r->{headers}{'content-encoding'}, 'identity', '... is never compressed (it carries tokens)');

is($h->stop_server, 0, 'the server stops cleanly');
$node->stop;
done_testing();
