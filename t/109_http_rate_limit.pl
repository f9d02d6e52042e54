# t/109_http_rate_limit.pl -- token-bucket rate limits of pgbank-http
# (shim/limits.c) against the real server.
#
#  - auth routes (login) are limited per client address: 429 problem+json
#    with Retry-After, code rate_limited, and no query (the pipelines
#    counter of /metrics and pg_stat_statements both stay put); another
#    address still logs in;
#  - write routes per subject, separately from its reads;
#  - read and write routes also per address; /livez, /readyz, /metrics
#    never; a browser session's cookie counts as its token's subject;
#  - a flood: wrk on 64 connections asks for a subject's entries (a heavy
#    read) for several seconds against --rate-read 200: the 2xx answers are
#    within 10 % of 200 x duration + burst, every other answer is a 429 with
#    Retry-After >= 1, none a 5xx; meanwhile another subject on another
#    loopback address (127.0.0.2) reads at 50/s and its median latency stays
#    within 5 x its unloaded median + 20 ms (measured: 3-14 ms against
#    0.6-1.7 ms alone; 62 ms without rate limits, 150 ms with a limiter that
#    sleeps in the loop);
#  - the bucket table is bounded: with 64 entries in all, an address that
#    used up its bucket gets a fresh one after 2,000 other addresses came
#    by (it was pushed out, not kept while the table grew).

use strict;
use warnings;

use HTTP::Tiny;
use IO::Socket::INET;
use IPC::Run;
use JSON::PP;
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use PgbankTest;
use PgbankHttp;

my ($wrk) = grep { -x } map { "$_/wrk" } split /:/, $ENV{PATH};
plan skip_all => 'wrk is not installed' unless $wrk;

my $h = PgbankHttp->new('ratelimit');
my $node = $h->node;

# --- set-up, without limits: customers, accounts, 120 entries to flood on
$h->start_server;
my $svc = $h->api_key('bank_service');
my %c = map { $_ => $h->customer("rl-$_\@example.com") } qw(flood probe writer);
my %acct;
for my $who (sort keys %c)
{
	my ($st, $d) = $h->request('POST', '/v1/accounts', headers => PgbankHttp::bearer($c{$who}{token}),
		body => { type => 'checking', name => "rl $who", currency => 'USD' });
	die "open: $st" unless $st == 201;
	$acct{$who} = $d->{id};
}
for my $i (1 .. 120)
{
	my ($st) = $h->request('POST', '/v1/deposits',
		headers => { 'X-API-Key' => $svc, 'Idempotency-Key' => "rl-fund-$i" },
		body => { account => $acct{flood}, amount => '1.00' });
	die "deposit: $st" unless $st == 201;
}
pass('three customers; the flood account has 120 entries');
$h->stop_server;

my @limits = ('--rate-limit', '1', '--rate-read', '200', '--burst-read', '20',
	'--rate-write', '2', '--burst-write', '4', '--rate-auth', '2', '--burst-auth', '2',
	'--rate-address', '1000000', '--burst-address', '1000000');
$h->start_server(@limits);
my $url = $h->url;

sub metric
{
	my ($name) = @_;
	my $r = HTTP::Tiny->new->get("$url/metrics");
	return ($r->{content} =~ /^\Q$name\E (\d+)$/m)[0];
}

# a client from one loopback address, one keep-alive connection
sub client_from
{
	my ($addr) = @_;
	return HTTP::Tiny->new(keep_alive => 1, timeout => 30, local_address => $addr);
}

sub req
{
	my ($client, $method, $path, $headers, $body) = @_;
	my %args = (headers => { %{ $headers // {} } });
	if (defined $body)
	{
		$args{content} = encode_json($body);
		$args{headers}{'Content-Type'} = 'application/json';
	}
	my $r = $client->request($method, "$url$path", \%args);
	$r->{json} = eval { decode_json($r->{content}) };
	return $r;
}

# --- auth: per address (2/s, burst 2; the server's two threads share one
# table, so one connection meets the whole bucket)
{
	my $pipes = metric('pgbank_http_db_pipelines_total');
	my $queries = $h->db_requests;
	my $cl = client_from('127.0.0.3');
	my (%n, $bad_retry, $bad_problem);
	my $t0 = time;
	for (1 .. 10)
	{
		my $r = req($cl, 'POST', '/v1/login', {},
			{ email => 'rl-writer@example.com', password => 'correct horse battery staple' });
		$n{ $r->{status} }++;
		if ($r->{status} == 429)
		{
			$bad_retry++ unless ($r->{headers}{'retry-after'} // '') =~ /^[1-9]\d*$/;
			$bad_problem++ unless ($r->{headers}{'content-type'} // '') eq 'application/problem+json'
			  && ($r->{json}{code} // '') eq 'rate_limited' && $r->{json}{status} == 429;
		}
	}
	my $ok = $n{200} // 0;
	# the burst, then 2 a second
	my $most = 2 + 2 * (int(time - $t0) + 1);
	ok($ok >= 2 && $ok <= $most, "10 logins at once from one address: $ok accepted (the burst 2; at most $most)");
	is($n{429} // 0, 10 - $ok, '... the rest 429');
	ok(!$bad_retry, '... each with Retry-After, whole seconds >= 1');
	ok(!$bad_problem, '... as problem+json, code rate_limited');
	is(metric('pgbank_http_db_pipelines_total') - $pipes, $ok,
		'... and a refused login sent nothing to the database (pipelines counter)');
	is($h->db_requests - $queries, $ok, '... (pg_stat_statements agrees)');
	cmp_ok(metric('pgbank_http_rate_limited_total'), '>=', 10 - $ok, '/metrics counts them');
	my $r = req(client_from('127.0.0.4'), 'POST', '/v1/login', {},
		{ email => 'rl-writer@example.com', password => 'correct horse battery staple' });
	is($r->{status}, 200, 'another address still logs in');
}

# --- write: per subject (2/s, burst 4); reads are another bucket
{
	my $cl = client_from('127.0.0.5');
	my $auth = PgbankHttp::bearer($c{writer}{token});
	my %n;
	my $t0 = time;
	for my $i (1 .. 8)
	{
		my $r = req($cl, 'PATCH', "/v1/accounts/$acct{writer}", $auth, { name => "renamed $i" });
		$n{ $r->{status} }++;
	}
	my $ok = $n{200} // 0;
	# the whole burst on one connection (not a thread's half of it: with
	# per-thread tables, 2 and then 1 a second), then 2 a second
	my $elapsed = time - $t0;
	my $most = 4 + 2 * (int($elapsed) + 1);
	ok($ok >= 4 && $ok <= $most,
		sprintf('8 writes at once by one subject on one connection: %d accepted (the burst 4; at most %d; %.2f s)',
			$ok, $most, $elapsed));
	is($n{429} // 0, 8 - $ok, '... the rest 429');
	# the same subject from another address (maybe on the other thread):
	# the subject's bucket, not the address's
	my $other = client_from('127.0.0.6');
	my %m;
	$m{ req($other, 'PATCH', "/v1/accounts/$acct{writer}", $auth, { name => "again $_" })->{status} }++
	  for 1 .. 4;
	ok(($m{429} // 0) >= 1 && ($m{200} // 0) <= 3,
		'the same subject from another address is limited too (' . ($m{200} // 0) . ' of 4 accepted)');
	my $r = req($cl, 'GET', "/v1/accounts/$acct{writer}", $auth);
	is($r->{status}, 200, 'its reads are not');
}

# --- the flood
my $luafile = $node->basedir . '/flood.lua';
open(my $lf, '>', $luafile) or die $!;
print $lf <<'LUA';
local threads = {}
function setup(thread)
	table.insert(threads, thread)
end
function init(args)
	n2xx = 0; n429 = 0; n5xx = 0; nother = 0; badretry = 0
	wrk.headers["Authorization"] = "Bearer " .. os.getenv("FLOOD_TOKEN")
end
function response(status, headers, body)
	if status >= 200 and status < 300 then
		n2xx = n2xx + 1
	elseif status == 429 then
		n429 = n429 + 1
		local ra = tonumber(headers["retry-after"] or headers["Retry-After"] or "")
		if ra == nil or ra < 1 then badretry = badretry + 1 end
	elseif status >= 500 then
		n5xx = n5xx + 1
	else
		nother = nother + 1
	end
end
function done(summary, latency, requests)
	local t = {n2xx = 0, n429 = 0, n5xx = 0, nother = 0, badretry = 0}
	for _, th in ipairs(threads) do
		for k, _ in pairs(t) do t[k] = t[k] + th:get(k) end
	end
	io.write(string.format("FLOOD duration_us=%d n2xx=%d n429=%d n5xx=%d nother=%d badretry=%d errors=%d\n",
		summary.duration, t.n2xx, t.n429, t.n5xx, t.nother, t.badretry,
		summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
LUA
close $lf;

sub median
{
	my @s = sort { $a <=> $b } @_;
	return @s ? $s[ int($#s / 2) ] : 0;
}

# the probe: another subject, another address, 50 reads a second
sub probe
{
	my ($seconds) = @_;
	my $cl = client_from('127.0.0.2');
	my $auth = PgbankHttp::bearer($c{probe}{token});
	my (@ms, %st);
	my $end = time + $seconds;
	while (time < $end)
	{
		my $t0 = time;
		my $r = $cl->request('GET', "$url/v1/accounts/$acct{probe}", { headers => $auth });
		push @ms, (time - $t0) * 1000;
		$st{ $r->{status} }++;
		my $left = 0.02 - (time - $t0);
		usleep($left * 1e6) if $left > 0;
	}
	return (\@ms, \%st);
}

my ($ms0, $st0) = probe(2);
my $unloaded = median(@$ms0);
is_deeply([ keys %$st0 ], [200], 'the probe alone: all 200') or diag(explain($st0));

my $pipes0 = metric('pgbank_http_db_pipelines_total');
my $flood_seconds = 6;
my $out = '';
my $wrkrun = IPC::Run::start(
	[ $wrk, '-t', '1', '-c', '64', '-d', "${flood_seconds}s", '-s', $luafile,
		"$url/v1/accounts/$acct{flood}/entries?limit=100" ],
	'<', \undef, '>', \$out, '2>&1',
	init => sub { $ENV{FLOOD_TOKEN} = $c{flood}{token}; });
usleep(1_000_000);
my ($ms1, $st1) = probe($flood_seconds - 2.5);
$wrkrun->finish;
my $flooded = median(@$ms1);
note($out);
my %f = $out =~ /(\w+)=(\d+)/g;
ok(defined $f{n2xx}, 'wrk ran and reported') or diag($out);
my $dur = ($f{duration_us} // 0) / 1e6;
my $expect = 200 * $dur + 20;
my $total = ($f{n2xx} // 0) + ($f{n429} // 0);
note(sprintf('flood: %.2f s, %d answers (%.0f/s): %d 2xx (expected %.0f), %d 429',
	$dur, $total, $total / ($dur || 1), $f{n2xx} // 0, $expect, $f{n429} // 0));
cmp_ok($total, '>', 5 * $expect, 'the flood asked for far more than the limit');
cmp_ok(abs(($f{n2xx} // 0) - $expect), '<=', 0.10 * $expect,
	sprintf('2xx answers within 10 %% of 200/s x %.2f s + burst 20 = %.0f: %d', $dur, $expect, $f{n2xx} // 0));
is($f{n5xx}, 0, 'no 5xx');
is($f{nother}, 0, 'every other answer a 429');
is($f{badretry}, 0, 'every 429 with Retry-After >= 1');
# the server's own count: pipelines sent, less the probe's; wrk stops with
# up to one accepted request per connection unanswered
my $accepted = metric('pgbank_http_db_pipelines_total') - $pipes0 - scalar(@$ms1);
cmp_ok(abs($accepted - $expect), '<=', 0.10 * $expect + 64,
	"the database saw only the accepted requests: $accepted pipelines for the flood (pipelines counter)");
is_deeply([ keys %$st1 ], [200], 'the probe during the flood: all 200') or diag(explain($st1));
# generous for a shared machine (up to 14 ms seen with limits while other
# test suites ran; one run of the whole suite saw 103 ms with wrk on two
# threads, taking both cores from the server: the flood now has one thread,
# still some 30 times the limit), yet a server without rate limits (62 ms measured, its
# database queue 64 deep) or with a limiter that sleeps in the event loop
# (150 ms) is far outside it
my $bound = 5 * $unloaded + 20;
cmp_ok($flooded, '<=', $bound,
	sprintf('the probe\'s median latency stays in range: %.2f ms flooded, %.2f ms alone (bound %.2f)',
		$flooded, $unloaded, $bound));
$h->stop_server;

# --- per address on read and write routes; never on /livez, /readyz, /metrics
$h->start_server('--rate-limit', '1', '--rate-address', '20', '--burst-address', '20');
$url = $h->url;
{
	my $cl = client_from('127.0.0.7');
	my %n;
	$n{ req($cl, 'GET', $_)->{status} }++ for ('/livez', '/readyz', '/metrics') x 40;
	is_deeply(\%n, { 200 => 120 }, '120 operator requests from one address: never limited');
	%n = ();
	my $t0 = time;
	$n{ req($cl, 'GET', '/v1/accounts')->{status} }++ for 1 .. 40;
	# the burst 20, then 20 a second
	my $least = 40 - (20 + 20 * (int(time - $t0) + 1));
	$least = 1 if $least < 1;
	ok(($n{429} // 0) >= $least, 'reads without a credential from one address: limited per address ('
		  . ($n{429} // 0) . " of 40 refused, at least $least)");
	is(($n{401} // 0) + ($n{429} // 0), 40, '... the rest 401 (no credential)');
}
$h->stop_server;

# --- a browser session's cookie is the same subject as its bearer token
$h->start_server('--rate-limit', '1', '--threads', '1', '--rate-read', '1', '--burst-read', '4');
$url = $h->url;
{
	my $path = "/v1/accounts/$acct{probe}";
	my %n;
	my $t0 = time;
	$n{ req(client_from('127.0.0.8'), 'GET', $path, PgbankHttp::bearer($c{probe}{token}))->{status} }++
	  for 1 .. 6;
	my %m;
	$m{ req(client_from('127.0.0.9'), 'GET', $path,
			{ Cookie => "__Secure-pgbank-access=$c{probe}{token}" })->{status} }++ for 1 .. 3;
	my $most = int(time - $t0) + 1;
	ok(($n{200} // 0) == 4 && ($m{200} // 0) <= $most,
		'a subject with a bearer token, then by its cookie: one bucket ('
		  . ($n{200} // 0) . ' of 6 by token, ' . ($m{200} // 0) . " of 3 by cookie accepted, at most $most)");
	my $r = req(client_from('127.0.0.9'), 'GET', "/v1/accounts/$acct{writer}",
		{ Cookie => "__Secure-pgbank-access=$c{writer}{token}" });
	is($r->{status}, 200, 'another subject by cookie: not limited');
}
$h->stop_server;

# --- bounded table: 64 entries, one thread, 2,000 other addresses;
# a slow refill (1/s) and a large burst (200) tell a pushed-out bucket (fresh:
# 50 more pass) from one kept (at most the seconds elapsed pass)
$h->start_server('--rate-limit', '1', '--threads', '1', '--rate-limit-entries', '64',
	'--rate-address', '1', '--burst-address', '200');
$url = $h->url;
{
	my $first = client_from('127.0.1.1');
	my %n;
	my $t_used = time;
	$n{ req($first, 'GET', '/v1/accounts')->{status} }++ for 1 .. 220;
	my $least = 220 - 200 - (int(time - $t_used) + 1);
	$least = 1 if $least < 1;
	ok(($n{429} // 0) >= $least, 'an address uses up its bucket (burst 200): '
		  . ($n{429} // 0) . " of 220 refused, at least $least");
	my $port = ($url =~ /:(\d+)$/)[0];
	my ($limited, $answered) = (0, 0);
	my $t0 = time;
	for my $i (0 .. 1999)
	{
		my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
			LocalAddr => sprintf('127.0.%d.%d', 2 + int($i / 250), 1 + $i % 250)) or die $!;
		syswrite($s, "GET /v1/accounts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
		my $buf = '';
		while (sysread($s, my $chunk, 4096)) { $buf .= $chunk; }
		$limited++ if $buf =~ /^HTTP\/1\.1 429/;
		$answered++ if $buf =~ /^HTTP\/1\.1 401/;
	}
	is($limited, 0, sprintf('2,000 other addresses, one request each in %.1f s: none limited', time - $t0));
	is($answered, 2000, '... each answered (401: no credential)');
	# kept, its bucket would hold one token a second since it ran dry: far
	# fewer than 50 unless this took very long
	cmp_ok(time - $t_used, '<', 40, 'quick enough for the next check to mean something');
	my $again = client_from('127.0.1.1');
	%n = ();
	$n{ req($again, 'GET', '/v1/accounts')->{status} }++ for 1 .. 50;
	is($n{401} // 0, 50, 'the first address was pushed out of the full table: a fresh bucket, '
		  . 'all 50 pass (memory stays bounded)');
}
$h->stop_server;

done_testing();
