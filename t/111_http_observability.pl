# t/111_http_observability.pl -- what pgbank-http shows an operator, on the
# real server and cluster:
#
#  - the request id: a client's X-Request-Id (or, without a usable one, the
#    id the server makes) is the same in the response, the access log line
#    and the audit row the request's transfer wrote;
#  - the access log: one line of valid JSON (decoded strictly as UTF-8) per
#    request, with route, status, times and client, even for a path and a
#    method full of hostile bytes;
#  - Server-Timing: db and total durations on a route that reached the
#    database, none on routes that did not;
#  - /metrics: every line parses as Prometheus text; route labels are the
#    route table's patterns (never a raw path); histogram buckets are
#    cumulative and end in _count; counters move by exactly the requests
#    made; database errors by SQLSTATE class; the pool's gauges.
#
# Without the fix the access log wrote bytes >= 0x80 raw (the strict
# decode below fails), had no request id, route or database time, and
# /metrics had no route, histogram, database-error or pool series.

use strict;
use warnings;

use IO::Socket::INET;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use PgbankTest;
use PgbankHttp;

my $h = PgbankHttp->new('obs');
my $node = $h->node;
$h->start_server('--access-log', '1', '--threads', '2', '--connections', '2');

my $alice = $h->customer('alice@example.com');
my $bob = $h->customer('bob@example.com');
my $aa = PgbankHttp::bearer($alice->{token});
my ($st, $d, $r) = $h->request('POST', '/v1/accounts', headers => $aa,
	body => { type => 'checking', name => 'a', currency => 'USD' });
my $a1 = $d->{id};
($st, $d) = $h->request('POST', '/v1/accounts', headers => PgbankHttp::bearer($bob->{token}),
	body => { type => 'checking', name => 'b', currency => 'USD' });
my $b1 = $d->{id};
$node->safe_psql('postgres', "SELECT bank.deposit($a1, 100, 'fund')");

my $strict = JSON::PP->new->utf8;

# the access log lines so far that decode strictly (valid UTF-8 JSON); in
# list context, also the raw lines that do not
sub log_lines
{
	my (@out, @bad);
	open(my $fh, '<:raw', $h->{log}) or die $!;
	while (my $line = <$fh>)
	{
		next unless $line =~ /^\{/;
		chomp $line;
		my $v = eval { $strict->decode($line) };
		if (defined $v) { push @out, $v; }
		else { push @bad, $line; }
	}
	close $fh;
	return (\@out, \@bad);
}

# the access log line of a request id (waits for it: stdout is line-buffered)
sub log_line_of
{
	my ($rid) = @_;
	for (1 .. 100)
	{
		my @l = grep { ($_->{request_id} // '') eq $rid } @{ (log_lines())[0] };
		return $l[0] if @l;
		usleep(50_000);
	}
	return undef;
}

sub audit_rid
{
	my ($tid) = @_;
	return $node->safe_psql('postgres',
		"SELECT string_agg(coalesce(request_id, '<null>'), ',') FROM bank.audit_events"
		  . " WHERE action = 'transfer.create' AND resource_id = '$tid'");
}

# --- the request id: client-supplied, then generated
my $rid = 'tap-obs-0001.x:y_z';
($st, $d, $r) = $h->request('POST', '/v1/transfers',
	headers => { %$aa, 'Idempotency-Key' => 'obs-1', 'X-Request-Id' => $rid },
	body => { from_account => $a1, to_account => $b1, amount => '1.00' });
is($st, 201, 'a transfer with X-Request-Id');
is($r->{headers}{'x-request-id'}, $rid, '... the response carries the client\'s id');
is(audit_rid($d->{id}), $rid, '... so does its audit row, exactly');
my $line = log_line_of($rid);
ok($line, '... and its access log line');
is_deeply([ @{$line}{qw(method path route status client)} ],
	[ 'POST', '/v1/transfers', 'POST /v1/transfers', 201, '127.0.0.1' ],
	'... with method, path, route pattern, status and client');
ok(defined $line->{db_ms} && $line->{db_ms} > 0 && $line->{ms} >= $line->{db_ms},
	"... database time $line->{db_ms} ms within the request's $line->{ms} ms");

($st, $d, $r) = $h->request('POST', '/v1/transfers',
	headers => { %$aa, 'Idempotency-Key' => 'obs-2' },
	body => { from_account => $a1, to_account => $b1, amount => '1.00' });
my $gen = $r->{headers}{'x-request-id'};
is($st, 201, 'a transfer without X-Request-Id');
like($gen, qr/^[0-9a-f]+-\d+-\d+$/, "... gets a generated id ($gen)");
is(audit_rid($d->{id}), $gen, '... which its audit row carries');
ok(log_line_of($gen), '... and its access log line');

# an unusable id (a space, a quote) is replaced, everywhere the same
($st, $d, $r) = $h->request('POST', '/v1/transfers',
	headers => { %$aa, 'Idempotency-Key' => 'obs-3', 'X-Request-Id' => 'bad "id" here' },
	body => { from_account => $a1, to_account => $b1, amount => '1.00' });
$gen = $r->{headers}{'x-request-id'};
like($gen, qr/^[0-9a-f]+-\d+-\d+$/, 'an unusable X-Request-Id is replaced by a generated one');
is(audit_rid($d->{id}), $gen, '... the same in the audit row');

# --- Server-Timing
($st, $d, $r) = $h->request('GET', "/v1/accounts/$a1/balance", headers => $aa);
is($st, 200, 'a read');
my $timing = $r->{headers}{'server-timing'} // '';
like($timing, qr/^db;dur=\d+\.\d{3}, total;dur=\d+\.\d{3}$/, "... has Server-Timing ($timing)");
my ($db, $total) = $timing =~ /db;dur=([\d.]+), total;dur=([\d.]+)/;
ok(defined $db && $db > 0 && $db <= $total && $total < 30_000, '... db > 0, within total');
($st, $d, $r) = $h->request('GET', '/livez');
ok(!exists $r->{headers}{'server-timing'}, 'no Server-Timing on /livez (no database work)');
($st, $d, $r) = $h->request('GET', '/v1/accounts');
is($st, 401, 'a request refused before the database');
ok(!exists $r->{headers}{'server-timing'}, '... has no Server-Timing');
($st, $d, $r) = $h->request('GET', '/v1/no/such/route');
ok(!exists $r->{headers}{'server-timing'}, '... nor has a 404');

# --- hostile bytes in the access log
sub raw_request
{
	my ($text) = @_;
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => ($h->url =~ /:(\d+)$/)[0],
		Proto => 'tcp', Timeout => 10) or die "connect: $!";
	print $s $text;
	my $resp = '';
	while (my $n = sysread($s, my $buf, 4096)) { $resp .= $buf; }
	close $s;
	return $resp;
}
my $resp = raw_request("GET /v1/\xff\xfe\"q\\\xc3(x%00%ff HTTP/1.1\r\nHost: x\r\nX-Request-Id: tap-hostile-1\r\nConnection: close\r\n\r\n");
like($resp, qr{^HTTP/1\.1 404}, 'a path with invalid UTF-8, a quote and a backslash: 404');
$line = log_line_of('tap-hostile-1');
ok($line, '... its access log line is valid JSON');
like($line->{path} // '', qr/^\/v1\/\x{ff}\x{fe}"q\\\x{c3}\(x/, '... the path\'s bytes kept, one \\u00XX each');
is($line->{route}, 'unmatched', '... route "unmatched", not the raw path');
$resp = raw_request("GE\"T\\\x80 /livez HTTP/1.1\r\nHost: x\r\nX-Request-Id: tap-hostile-2\r\nConnection: close\r\n\r\n");
$line = log_line_of('tap-hostile-2');
ok($line, 'a hostile method: its access log line is valid JSON too')
  or diag($resp);
is($line->{method}, "GE\"T\\\x{80}", '... the method\'s bytes kept') if $line;
my ($all, $bad) = log_lines();
my @all = @$all;
ok(scalar(@all) >= 12 && !@$bad, scalar(@all) . ' access log lines, every one valid JSON')
  or diag("not valid JSON: " . join("\n", @$bad));
ok(!(grep { !defined $_->{request_id} || !defined $_->{route} || !defined $_->{status} } @all),
	'... every one with request id, route and status');

# --- /metrics
my $sample_re = qr/^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*)\})? (-?(?:\d+(?:\.\d+)?(?:e[+-]?\d+)?|\+Inf|NaN))$/;

# name{labels} -> value, every line checked
sub scrape
{
	my ($st, $d, $r) = $h->request('GET', '/metrics');
	die "metrics: $st" unless $st == 200;
	my %m;
	my $bad = 0;
	for my $l (split /\n/, $r->{content})
	{
		next if $l =~ /^# (?:HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* \S/;
		if ($l =~ $sample_re)
		{
			$m{ $2 ? "$1\{$2\}" : $1 } = $3;
		}
		else
		{
			diag("not Prometheus text: $l");
			$bad++;
		}
	}
	return (\%m, $bad, $r);
}

my ($m0, $bad0, $mr) = scrape();
is($bad0, 0, 'every /metrics line parses as Prometheus text');
like($mr->{headers}{'content-type'}, qr{^text/plain; version=0\.0\.4}, '... text/plain; version=0.0.4');
ok(!(grep { /route="[^"]*\/\d/ } keys %$m0), '... no route label holds a raw path (an id)');
ok(!(grep { /route="[^"]*\\x|\xff/ } keys %$m0), '... nor a hostile one');

my $bal = 'route="GET /v1/accounts/{id}/balance"';
my $n = 5;
for (1 .. $n)
{
	($st) = $h->request('GET', "/v1/accounts/$a1/balance", headers => $aa);
}
($st, $d) = $h->request('POST', '/v1/transfers', headers => { %$aa, 'Idempotency-Key' => 'obs-big' },
	body => { from_account => $a1, to_account => $b1, amount => '500.00' });
is($st, 422, 'a transfer refused for funds');
my ($m1, $bad1) = scrape();
is($bad1, 0, 'the second scrape parses too');
is(($m1->{"pgbank_http_route_responses_total{$bal,status=\"200\"}"} // 0)
	  - ($m0->{"pgbank_http_route_responses_total{$bal,status=\"200\"}"} // 0),
	$n, "route_responses_total of the balance route moved by exactly $n");
is(($m1->{"pgbank_http_request_duration_seconds_count{$bal}"} // 0)
	  - ($m0->{"pgbank_http_request_duration_seconds_count{$bal}"} // 0),
	$n, "... so did its latency histogram's _count");
is(($m1->{'pgbank_http_route_responses_total{route="POST /v1/transfers",status="422"}'} // 0), 1,
	'the refused transfer is counted under its route and 422');
is(($m1->{'pgbank_http_db_errors_total{sqlstate_class="PB"}'} // 0)
	  - ($m0->{'pgbank_http_db_errors_total{sqlstate_class="PB"}'} // 0), 1,
	'... and as a database error of class PB');
is($m1->{'pgbank_http_route_responses_total{route="unmatched",status="404"}'}, 2,
	'the two 404s are counted as "unmatched"');
is($m1->{'pgbank_http_requests_total'} - $m0->{'pgbank_http_requests_total'}, $n + 2,
	'requests_total moved by the requests made (and the scrape)');

# histograms: for every route, buckets cumulative in le order, +Inf = _count
my %routes;
for my $k (keys %$m1)
{
	$routes{$1} = 1 if $k =~ /^pgbank_http_request_duration_seconds_count\{(route="[^"]*")\}$/;
}
ok(scalar(keys %routes) >= 5, scalar(keys %routes) . ' routes with a histogram');
my $hist_ok = 1;
for my $route (sort keys %routes)
{
	my @b;
	for my $k (keys %$m1)
	{
		push @b, [ $1, $m1->{$k} ]
		  if $k =~ /^pgbank_http_request_duration_seconds_bucket\{\Q$route\E,le="([^"]+)"\}$/;
	}
	@b = sort { ($a->[0] eq '+Inf' ? 1e99 : $a->[0]) <=> ($b->[0] eq '+Inf' ? 1e99 : $b->[0]) } @b;
	my $prev = 0;
	for my $x (@b)
	{
		if ($x->[1] < $prev) { $hist_ok = 0; diag("$route: bucket le=$x->[0] below the previous"); }
		$prev = $x->[1];
	}
	if (@b < 2 || $b[-1][0] ne '+Inf'
		|| $b[-1][1] != $m1->{"pgbank_http_request_duration_seconds_count{$route}"}
		|| !defined $m1->{"pgbank_http_request_duration_seconds_sum{$route}"})
	{
		$hist_ok = 0;
		diag("$route: no +Inf bucket equal to _count, or no _sum");
	}
}
ok($hist_ok, '... each cumulative, ending in +Inf = _count, with a _sum');

# the pool: 2 threads x 2 general and 2 read connections, all ready
my $ready = 0;
for (1 .. 100)
{
	my ($m) = scrape();
	$ready = ($m->{'pgbank_http_pool_connections{class="general",state="ready"}'} // -1) == 4
	  && ($m->{'pgbank_http_pool_connections{class="read",state="ready"}'} // -1) == 4
	  && ($m->{'pgbank_http_pool_connections{class="general",state="not_ready"}'} // -1) == 0;
	last if $ready;
	usleep(50_000);
}
ok($ready, 'pool gauges: 4 general and 4 read connections ready, none not ready');
is($m1->{'pgbank_http_pool_jobs_waiting{class="general"}'}, 0, '... no job waiting');
ok(defined $m1->{'pgbank_http_pool_jobs_in_flight'}, '... jobs in flight shown');
is($m1->{'pgbank_http_rate_limited_total'}, 0, 'rate_limited_total shown (0)');
is($m1->{'pgbank_http_db_unavailable_total'}, 0, 'db_unavailable_total shown (0)');
ok(defined $m1->{'pgbank_http_db_connection_failures_total'}, 'db_connection_failures_total shown');

is($h->stop_server, 0, 'the server stops cleanly');
done_testing();
