# t/115_http_replica.pl -- read-only routes on a real streaming replica
# (--replica-dsn), with read-your-writes per subject.
#
# A primary and a hot standby streaming from it, pgbank-http in front of
# both.  (a) With the standby caught up, every read-only route answers from
# it (the server's counters, and pg_stat_statements on each node).  (b) With
# replay paused: customer A makes a transfer and at once reads their balance
# and transfers: the new ones, from the primary, while customer C's read of
# the very account A paid into is served by the stale standby and shows the
# old balance (read-your-writes is per subject); a new login read at once
# works (the standby refuses the session it has not replayed: the primary
# answers); a refused read is audited (on the primary).  After resuming, A's
# reads go back to the standby.  (c) The standby stopped: reads answer 200
# from the primary, no 5xx; started again, reads return to it.  (d) The same
# as (b) with --replica-read-your-writes=0: A then reads the stale balance
# from the standby, which is what (b) proves does not happen.  (e) With a
# small --replica-max-lag, a paused standby stops serving even subjects
# with no write once it lags more than that.  (g) A write whose connection
# is killed while it waits for a lock (it may have committed, as far as the
# server knows) sends its subject's reads to the primary until the replica
# is past a position taken after the loss.  (f) A --replica-dsn naming a
# server not in recovery serves nothing.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use PgbankTest;
use PgbankHttp;
use IPC::Run;
use HTTP::Tiny;
use POSIX ();

my $h = PgbankHttp->new('replica_primary', allows_streaming => 1);
my $primary = $h->node;

$primary->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('replica_standby');
$standby->init_from_backup($primary, 'b', has_streaming => 1);
$standby->start;

my $replica_dsn = 'host=' . $standby->host . ' port=' . $standby->port
  . ' user=bank_gateway dbname=postgres';
my @replica = ('--replica-dsn', $replica_dsn, '--replica-poll', '5');

$h->start_server(@replica, '--replica-max-lag', '60000');

# ---------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------

sub metrics
{
	my ($st, undef, $r) = $h->request('GET', '/metrics');
	die "metrics: $st" unless $st == 200;
	my %m;
	$m{replica} = $1 if $r->{content} =~ /^pgbank_http_reads_total\{served_by="replica"\} (\d+)$/m;
	$m{primary} = $1 if $r->{content} =~ /^pgbank_http_reads_total\{served_by="primary"\} (\d+)$/m;
	$m{resent} = $1 if $r->{content} =~ /^pgbank_http_replica_resent_total (\d+)$/m;
	$m{r5xx} = $1 if $r->{content} =~ /^pgbank_http_responses_total\{class="5xx"\} (\d+)$/m;
	die "no replica metrics:\n$r->{content}" unless defined $m{replica} && defined $m{resent};
	return \%m;
}

# one request; also who served it: replica, primary, or resent (the
# replica failed it, then the primary answered)
sub call
{
	my ($method, $path, %o) = @_;
	my $m0 = metrics();
	my ($st, $d, $r) = $h->request($method, $path, %o);
	my $m1 = metrics();
	my $by = $m1->{resent} > $m0->{resent} ? 'resent'
	  : $m1->{replica} > $m0->{replica} ? 'replica'
	  : $m1->{primary} > $m0->{primary} ? 'primary' : 'none';
	return ($st, $d, $by, $r);
}

# read as a subject until the replica serves it (within 20 s)
sub until_replica
{
	my ($path, $headers) = @_;
	my $deadline = time() + 20;
	while (time() < $deadline)
	{
		my ($st, $d, $by) = call('GET', $path, headers => $headers);
		return ($st, $d) if $by eq 'replica';
		usleep(50_000);
	}
	return;
}

sub standby_calls
{
	my ($node, $like) = @_;
	return $node->safe_psql('postgres',
		"SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE query LIKE '$like'");
}

sub pause_replay
{
	$standby->safe_psql('postgres', 'SELECT pg_wal_replay_pause()');
	$standby->poll_query_until('postgres',
		"SELECT pg_get_wal_replay_pause_state() = 'paused'")
	  or die 'replay did not pause';
}

sub resume_replay
{
	$standby->safe_psql('postgres', 'SELECT pg_wal_replay_resume()');
	$primary->wait_for_catchup($standby, 'replay');
}

# the posted balance of an account as the standby has it, in plain SQL
sub standby_posted
{
	my ($acct) = @_;
	return $standby->safe_psql('postgres', "SELECT posted FROM bank.balance($acct)");
}

# ---------------------------------------------------------------------
# customers, accounts, money
# ---------------------------------------------------------------------

my $svc = $h->api_key('bank_service');
my $admin = $h->api_key('bank_admin');
my $auditor = $h->api_key('bank_auditor');
my $teller = $h->api_key('bank_teller');
my $a = $h->customer('a@example.com');
my $c = $h->customer('c@example.com');
my $ah = PgbankHttp::bearer($a->{token});
my $ch = PgbankHttp::bearer($c->{token});

my %acct;
for my $x ([ 'a1', $ah ], [ 'a2', $ah ], [ 'c1', $ch ])
{
	my ($st, $d) = $h->request('POST', '/v1/accounts', headers => $x->[1],
		body => { type => 'checking', name => $x->[0], currency => 'USD' });
	die "open $x->[0]: $st" unless $st == 201;
	$acct{ $x->[0] } = $d->{id};
	($st) = $h->request('POST', '/v1/deposits',
		headers => { 'X-API-Key' => $svc, 'Idempotency-Key' => "fund-$x->[0]" },
		body => { account => $d->{id}, amount => '100.00' });
	die "deposit: $st" unless $st == 201;
}
my ($st, $d) = $h->request('POST', '/v1/transfers',
	headers => { %$ah, 'Idempotency-Key' => 'setup-1' },
	body => { from_account => $acct{a1}, to_account => $acct{a2}, amount => '1.00' });
is($st, 201, 'a first transfer');
my $t1 = $d->{id};
$primary->wait_for_catchup($standby, 'replay');

# ---------------------------------------------------------------------
# (a) every read-only route, served by the caught-up replica
# ---------------------------------------------------------------------

($st, $d) = until_replica("/v1/accounts/$acct{a1}/balance", $ah);
is($st, 200, '(a) a read of A goes to the caught-up replica');
is($d->{posted}, '99.00', '(a) with the right balance');

{
	my $bal = q{%bank.balance(%};
	my ($p0, $s0) = (standby_calls($primary, $bal), standby_calls($standby, $bal));
	my $n = 0;
	for (1 .. 10)
	{
		my ($st2, undef, $by) = call('GET', "/v1/accounts/$acct{a1}/balance", headers => $ah);
		$n++ if $st2 == 200 && $by eq 'replica';
	}
	is($n, 10, '(a) ten reads of A: all served by the replica');
	is(standby_calls($primary, $bal) - $p0, 0, '(a) the primary ran no balance statement');
	is(standby_calls($standby, $bal) - $s0, 10, '(a) the standby ran ten (pg_stat_statements there)');
	ok($standby->safe_psql('postgres',
			"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgbank-http replica'") >= 2,
		'(a) the server\'s replica connections are on the standby');
}

my @reads = (
	[ '/v1/me', $ah ],
	[ "/v1/customers/$a->{id}", { 'X-API-Key' => $teller } ],
	[ '/v1/accounts', $ah ],
	[ "/v1/accounts?customer_id=$c->{id}", { 'X-API-Key' => $teller } ],
	[ "/v1/accounts/$acct{a1}", $ah ],
	[ "/v1/accounts/$acct{a1}/balance", $ah ],
	[ "/v1/accounts/$acct{a1}/entries", $ah ],
	[ "/v1/accounts/$acct{a1}/statement?from=2000-01-01&to=2100-01-01", $ah ],
	[ "/v1/transfers/$t1", $ah ],
	[ "/v1/transfers?account=$acct{a1}", $ah ],
	[ '/v1/reviews', { 'X-API-Key' => $teller } ],
	[ '/v1/audit/events', $ah ],
	[ '/v1/audit/events', { 'X-API-Key' => $auditor } ],
	[ '/v1/audit/verify', { 'X-API-Key' => $auditor } ],
	[ '/v1/api-keys', { 'X-API-Key' => $admin } ]);
for my $r (@reads)
{
	# the API keys' first request asks their role (a lookup, then the read)
	my ($st2, undef, $by) = call('GET', $r->[0], headers => $r->[1]);
	($st2, undef, $by) = call('GET', $r->[0], headers => $r->[1]) if $by ne 'replica';
	is("$st2 $by", '200 replica', "(a) GET $r->[0] answered by the replica");
}

# ---------------------------------------------------------------------
# (b) read-your-writes while the replica is behind
# ---------------------------------------------------------------------

pause_replay();
my $c1_before = standby_posted($acct{c1});
is($c1_before, '100.00', '(b) C1 holds 100.00 on the paused standby');

($st, $d) = $h->request('POST', '/v1/transfers',
	headers => { %$ah, 'Idempotency-Key' => 'ryw-1' },
	body => { from_account => $acct{a1}, to_account => $acct{c1}, amount => '7.00' });
is($st, 201, '(b) A pays 7.00 into C1');
my $t2 = $d->{id};

my $by;
($st, $d, $by) = call('GET', "/v1/accounts/$acct{a1}/balance", headers => $ah);
is("$st $d->{posted} $by", '200 92.00 primary',
	'(b) A reads their balance at once: the new one, from the primary');
($st, $d, $by) = call('GET', "/v1/transfers?account=$acct{a1}", headers => $ah);
ok($st == 200 && (grep { $_->{id} == $t2 } @{ $d->{data} }) && $by eq 'primary',
	'(b) A lists their transfers: the new one is there (primary)');
is(standby_posted($acct{a1}), '99.00', '(b) while the standby, in SQL, still has 99.00 for A1');

($st, $d, $by) = call('GET', "/v1/accounts/$acct{c1}/balance", headers => $ch);
is("$st $d->{posted} $by", '200 100.00 replica',
	'(b) C (no write of their own) reads C1 from the stale replica: the old 100.00');

# a session the standby has not replayed: it refuses, the primary answers
($st, $d) = $h->request('POST', '/v1/login',
	body => { email => 'c@example.com', password => 'correct horse battery staple' });
is($st, 200, '(b) C logs in again (a new session, not on the standby)');
($st, $d, $by) = call('GET', "/v1/accounts/$acct{c1}/balance",
	headers => PgbankHttp::bearer($d->{access_token}));
is("$st $d->{posted} $by", '200 107.00 resent',
	'(b) a read with the new token: refused by the standby, answered by the primary');

# a refused read is audited, which only the primary can do
{
	my $denied = q{SELECT count(*) FROM bank.audit_events WHERE action = 'auth.denied'};
	my $n0 = $primary->safe_psql('postgres', $denied);
	($st, $d, $by) = call('GET', "/v1/accounts?customer_id=$a->{id}", headers => $ch);
	is("$st $by", '404 resent', '(b) C asks for A\'s accounts: 404, after the standby refused it');
	is($primary->safe_psql('postgres', $denied) - $n0, 1, '(b) and the refusal is audited once');
}

resume_replay();
($st, $d) = until_replica("/v1/accounts/$acct{a1}/balance", $ah);
is("$st $d->{posted}", '200 92.00', '(b) replay resumed: A\'s reads return to the replica');

# ---------------------------------------------------------------------
# (c) the replica down and back
# ---------------------------------------------------------------------

{
	my $m0 = metrics();
	$standby->stop('fast');
	my %seen;
	for (1 .. 20)
	{
		for my $r ([ "/v1/accounts/$acct{a1}/balance", $ah ], [ "/v1/accounts/$acct{c1}/balance", $ch ])
		{
			my ($st2) = $h->request('GET', $r->[0], headers => $r->[1]);
			$seen{$st2}++;
		}
		usleep(20_000);
	}
	is_deeply(\%seen, { 200 => 40 }, '(c) the standby stopped: 40 reads, all 200');
	my $m1 = metrics();
	is($m1->{r5xx} - $m0->{r5xx}, 0, '(c) no 5xx');
	ok($m1->{primary} - $m0->{primary} >= 38, '(c) the primary served them');
	$standby->start;
	($st, $d) = until_replica("/v1/accounts/$acct{c1}/balance", $ch);
	is("$st $d->{posted}", '200 107.00', '(c) the standby back: reads return to it');
}

# ---------------------------------------------------------------------
# (d) without read-your-writes, (b) fails: A reads the stale balance
# ---------------------------------------------------------------------

$h->stop_server;
$h->start_server(@replica, '--replica-max-lag', '60000', '--replica-read-your-writes', '0');
($st, $d) = until_replica("/v1/accounts/$acct{a1}/balance", $ah);
is("$st $d->{posted}", '200 92.00', '(d) read-your-writes off: A reads from the replica');
pause_replay();
($st) = $h->request('POST', '/v1/transfers',
	headers => { %$ah, 'Idempotency-Key' => 'ryw-2' },
	body => { from_account => $acct{a1}, to_account => $acct{c1}, amount => '2.00' });
is($st, 201, '(d) A pays 2.00 more');
($st, $d, $by) = call('GET', "/v1/accounts/$acct{a1}/balance", headers => $ah);
is("$st $d->{posted} $by", '200 92.00 replica',
	'(d) and reads the stale 92.00 from the replica: what (b) shows cannot happen with it on');
resume_replay();

# ---------------------------------------------------------------------
# (e) a replica that lags more than --replica-max-lag serves nobody
# ---------------------------------------------------------------------

$h->stop_server;
$h->start_server(@replica, '--replica-max-lag', '300');
($st, $d) = until_replica("/v1/accounts/$acct{c1}/balance", $ch);
is("$st $d->{posted}", '200 109.00', '(e) max lag 300 ms: C reads from the caught-up replica');
pause_replay();
($st) = $h->request('POST', '/v1/deposits',
	headers => { 'X-API-Key' => $svc, 'Idempotency-Key' => 'lag-1' },
	body => { account => $acct{a2}, amount => '5.00' });
is($st, 201, '(e) a deposit (by the service, not C) moves the primary on');
{
	my $deadline = time() + 20;
	my $went = '';
	while (time() < $deadline)
	{
		($st, $d, $by) = call('GET', "/v1/accounts/$acct{c1}/balance", headers => $ch);
		if ($by eq 'primary') { $went = "$st $by"; last; }
		usleep(50_000);
	}
	is($went, '200 primary', '(e) once the standby lags past it, C\'s reads go to the primary');
	my $n = 0;
	for (1 .. 5)
	{
		($st, $d, $by) = call('GET', "/v1/accounts/$acct{c1}/balance", headers => $ch);
		$n++ if $st == 200 && $by eq 'primary';
	}
	is($n, 5, '(e) and stay there while it lags');
}
resume_replay();
($st, $d) = until_replica("/v1/accounts/$acct{c1}/balance", $ch);
is($st, 200, '(e) caught up again: back to the replica');

# ---------------------------------------------------------------------
# (g) a write lost with its connection may have committed: its subject's
# reads go to the primary from then on
# ---------------------------------------------------------------------

$h->stop_server;
$h->start_server(@replica, '--replica-max-lag', '60000', '--lock-timeout', '10000');
($st) = until_replica("/v1/accounts/$acct{a1}/balance", $ah);
is($st, 200, '(g) A reads from the caught-up replica');
pause_replay();
{
	my $locker = IPC::Run::start(
		[ 'psql', '-X', '-q', '-d', $primary->connstr('postgres'), '-c',
		  "BEGIN; SELECT 1 FROM bank.accounts WHERE id = $acct{a1} FOR UPDATE; SELECT pg_sleep(3); COMMIT;" ],
		'>', \my $lout, '2>', \my $lerr);
	$primary->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE '%FOR UPDATE; SELECT pg_sleep(3)%' AND pid <> pg_backend_pid()")
	  or die 'the locking session did not start';
	my $writer = fork();
	if ($writer == 0)
	{
		my $r = HTTP::Tiny->new(timeout => 30)->request('POST', $h->url . '/v1/transfers',
			{ headers => { Authorization => "Bearer $a->{token}", 'Idempotency-Key' => 'lost-1',
				'Content-Type' => 'application/json' },
			  content => qq({"from_account": $acct{a1}, "to_account": $acct{a2}, "amount": "1.00"}) });
		POSIX::_exit($r->{status} == 503 ? 0 : 1);    # no END blocks: they stop the node
	}
	$primary->poll_query_until('postgres',
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND usename = 'bank_gateway'")
	  or die 'the transfer did not wait for the lock';
	waitpid($writer, 0);
	is($? >> 8, 0, '(g) A\'s transfer, its connection killed while it waited: 503');
	$locker->finish;
}
($st) = until_replica("/v1/accounts/$acct{c1}/balance", $ch);
is($st, 200, '(g) C still reads from the replica (the doubt is settled by a later primary position)');
($st, $d, $by) = call('GET', "/v1/accounts/$acct{a1}/balance", headers => $ah);
is("$st $by", '200 primary', '(g) A\'s reads go to the primary while the replica is behind that position');
resume_replay();
($st) = until_replica("/v1/accounts/$acct{a1}/balance", $ah);
is($st, 200, '(g) replayed: A is back on the replica');

# ---------------------------------------------------------------------
# (f) a "replica" that is not in recovery (a primary) serves nothing
# ---------------------------------------------------------------------

$h->stop_server;
$h->start_server('--replica-dsn',
	'host=' . $primary->host . ' port=' . $primary->port . ' user=bank_gateway dbname=postgres',
	'--replica-poll', '5');
{
	usleep(300_000);
	my $n = 0;
	for (1 .. 5)
	{
		($st, $d, $by) = call('GET', "/v1/accounts/$acct{c1}/balance", headers => $ch);
		$n++ if $st == 200 && $by eq 'primary';
	}
	is($n, 5, '(f) --replica-dsn naming a primary: every read stays on the primary');
	like($h->server_log, qr/the replica is not in recovery/, '(f) and the server says why');
}

is($h->stop_server, 0, 'the server stops cleanly');
unlike($h->server_log, qr/statement \d+ not prepared/, 'every statement prepared on both nodes');

$standby->stop;
done_testing();
