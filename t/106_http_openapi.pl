# t/106_http_openapi.pl -- the OpenAPI 3.1 document at /v1/openapi.json.
#
# It is generated from the route table, so it cannot drift: every
# operation it lists is routed by the server (called without a credential,
# none is a 404 or 405: it is refused for the credential or the input, as
# the route would be), and the routes the server answers for are listed.
# A real validator from the npm registry (@seriousme/openapi-schema-validator,
# the OpenAPI 3.1 JSON Schemas) finds the document valid, and finds a
# broken copy invalid (so that the check can fail).

use strict;
use warnings;

use File::Path qw(make_path);
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgbankTest;
use PgbankHttp;

my $h = PgbankHttp->new('openapi');
my $node = $h->node;
$h->start_server;

my ($st, $doc, $r) = $h->request('GET', '/v1/openapi.json');
is($st, 200, 'GET /v1/openapi.json answers without a credential');
like($r->{headers}{'content-type'}, qr{^application/json}, '... as JSON');
is($doc->{openapi}, '3.1.0', '... an OpenAPI 3.1 document');
($st) = $h->request('POST', '/v1/openapi.json', body => {});
is($st, 405, 'POST /v1/openapi.json is 405');

# every operation listed is routed: without a credential the server refuses
# it (401, 403) or its input (400, 415), but never answers "no such route"
my ($ops, @unrouted) = (0);
for my $path (sort keys %{ $doc->{paths} })
{
	for my $method (sort keys %{ $doc->{paths}{$path} })
	{
		my $op = $doc->{paths}{$path}{$method};
		(my $concrete = $path) =~ s/\{[a-z_]+\}/1/g;
		my ($s) = $h->request(uc $method, $concrete);
		$ops++;
		push @unrouted, uc($method) . " $path: $s" if $s == 404 || $s == 405;
		ok($op->{operationId} && $op->{responses} && @{ $op->{'x-pgbank-roles'} // [] },
			uc($method) . " $path has an operationId, responses and roles");
	}
}
cmp_ok($ops, '>=', 40, "the document lists $ops operations");
is(join('; ', @unrouted), '', 'every listed operation is routed by the server');

# and what the server routes is listed (a sample of each family)
for my $op ('post /v1/transfers', 'post /v1/transfers/batch', 'get /v1/accounts/{id}/balance',
	'post /v1/reviews/{id}/approve', 'get /v1/audit/verify', 'delete /v1/api-keys/{id}',
	'post /v1/login')
{
	my ($m, $p) = split / /, $op;
	ok($doc->{paths}{$p}{$m}, "$op is in the document");
}

# the body schema is the route's: required members, no other member
my $body = $doc->{paths}{'/v1/transfers'}{post}{requestBody}{content}{'application/json'}{schema};
is_deeply([ sort @{ $body->{required} } ], [ 'amount', 'from_account', 'to_account' ],
	'POST /v1/transfers requires from_account, to_account, amount');
ok(!$body->{additionalProperties}, '... and refuses members it does not know');
is(scalar @{ $body->{properties}{amount}{oneOf} }, 2,
	'... amount: a decimal string or an integer of minor units');
is_deeply($doc->{paths}{'/v1/transfers'}{post}{'x-pgbank-roles'}, ['bank_customer'],
	'... for customers, with an access token');
is($doc->{paths}{'/v1/transfers'}{post}{parameters}[0]{name}, 'Idempotency-Key',
	'... and the Idempotency-Key header');

# GET /v1/events, a route of the table that streams: text/event-stream, not
# read-only (each fetch numbers events and renews the watch, a write), rate
# limited, resumed with Last-Event-ID (before it was a row of the table the
# document said read-only, listed no 429 and no cookie session)
my $ev = $doc->{paths}{'/v1/events'}{get};
ok($ev->{responses}{200}{content}{'text/event-stream'}, 'GET /v1/events answers text/event-stream');
ok(!$ev->{responses}{200}{content}{'application/json'}, '... not JSON');
is($ev->{'x-pgbank-read-only'}, JSON::PP::false, '... is not read-only');
is_deeply($ev->{'x-pgbank-roles'}, ['bank_customer'], '... for customers');
is_deeply([ sort map { keys %$_ } @{ $ev->{security} } ], [ 'bearer', 'cookie' ],
	'... with an access token or a browser session');
ok($ev->{responses}{429}, '... may be rate limited');
is_deeply([ map { [ $_->{name}, $_->{in}, $_->{required} ] } @{ $ev->{parameters} } ],
	[ [ 'Last-Event-ID', 'header', JSON::PP::false ] ], '... takes Last-Event-ID, optionally');

# a real OpenAPI 3.1 validator, installed from the npm registry
SKIP:
{
	my $have = system('sh', '-c', 'command -v node >/dev/null && command -v npm >/dev/null') == 0;
	skip 'node and npm are not installed: cannot run the OpenAPI validator', 3 unless $have;
	my $dir = $node->basedir . '/npm';
	make_path($dir);
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run(
		[ 'npm', 'install', '--prefix', $dir, '--no-audit', '--no-fund', '--loglevel=error',
		  '@seriousme/openapi-schema-validator@2.11.0' ],
		'<', \undef, '>', \$out, '2>', \$err);
	ok($ok, 'npm installs @seriousme/openapi-schema-validator') or diag("$out$err");
	my $file = $node->basedir . '/openapi.json';
	my $bad = $node->basedir . '/openapi-broken.json';
	my $json = JSON::PP->new->canonical;
	open(my $fh, '>', $file) or die $!;
	print $fh $r->{content};
	close $fh;
	my %broken = %$doc;
	delete $broken{info};
	open($fh, '>', $bad) or die $!;
	print $fh $json->encode(\%broken);
	close $fh;
	local $ENV{NODE_PATH} = "$dir/node_modules";
	my $script = PgbankHttp::repo_path('t/openapi_validate.mjs');
	($out, $err) = ('', '');
	$ok = IPC::Run::run([ 'node', $script, $file ], '<', \undef, '>', \$out, '2>', \$err);
	ok($ok && $out =~ /"valid":true/, 'the validator finds the document valid OpenAPI 3.1')
	  or diag("$out$err");
	($out, $err) = ('', '');
	$ok = IPC::Run::run([ 'node', $script, $bad ], '<', \undef, '>', \$out, '2>', \$err);
	ok(!$ok && $out =~ /"valid":false/ && $out =~ /info/,
		'... and a copy without its info object invalid') or diag("$out$err");
}

is($h->stop_server, 0, 'the server stops cleanly');
$node->stop;
done_testing();
