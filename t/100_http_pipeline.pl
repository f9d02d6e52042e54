# t/100_http_pipeline.pl -- the libpq pipeline semantics pgbank-http rests
# on, checked against a real server by shim/test/pipeline (TAP of its own):
# several Executes before one Sync are one transaction (a failure rolls back
# the earlier writes), a failure ends at its Sync, and the role and
# read-only set with set_config(..., true) end with the pipeline, committed
# or not.  Then the same through pgbank-http: a request whose call fails
# leaves nothing behind, and the next request on the same connection is not
# affected by it.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes ();
use HTTP::Tiny;
use POSIX ();
use PgbankTest;
use PgbankHttp;

my $h = PgbankHttp->new('pipeline');
my $node = $h->node;
my $base = 'host=' . $node->host . ' port=' . $node->port . ' dbname=postgres';

my ($out, $err);
my $ok = IPC::Run::run([ PgbankHttp::shim_path('test/pipeline'), "$base", "$base user=bank_gateway" ],
	'>', \$out, '2>', \$err);
note $err if $err;
for my $line (split /\n/, $out)
{
	next unless $line =~ /^(not )?ok \d+ - (.*)$/;
	ok(!defined $1, "pipeline: $2");
}
ok($ok, 'shim/test/pipeline exits 0');

# Through the server, one connection so that consecutive requests share it.
$h->start_server('--threads', '1', '--connections', '1', '--pipeline-depth', '1');
my $a = $h->customer('pipe-a@example.com');
my ($st, $d) = $h->request('POST', '/v1/accounts', headers => PgbankHttp::bearer($a->{token}),
	body => { type => 'checking', name => 'a', currency => 'USD' });
is($st, 201, 'open an account');
my $acct = $d->{id};

# a request whose statement fails after the role switch and the verified
# identity: nothing is written (a bad currency fails inside open_account)
my $before = $node->safe_psql('postgres', 'SELECT count(*) FROM bank.accounts');
($st, $d) = $h->request('POST', '/v1/accounts', headers => PgbankHttp::bearer($a->{token}),
	body => { type => 'checking', name => 'b', currency => 'XXX' });
is($st, 400, 'an unknown currency is a 400');
is($d->{code}, 'unknown_currency', '... with its stable code');
is($node->safe_psql('postgres', 'SELECT count(*) FROM bank.accounts'), $before, '... and no account was made');

# the next request on the same connection is anonymous: it must not run as
# the customer of the failed one (a leaked role or identity would let it)
($st, $d) = $h->request('GET', "/v1/accounts/$acct");
is($st, 401, 'the next request without a credential is refused before the database');
($st, $d) = $h->request('POST', '/v1/login', body => { email => 'pipe-a@example.com', password => 'wrong password!!' });
is($st, 401, 'an anonymous login after a failed customer request is denied normally');
($st, $d) = $h->request('GET', "/v1/accounts/$acct", headers => PgbankHttp::bearer($a->{token}));
is($st, 200, 'and the customer still reads the account');

is($h->stop_server, 0, 'the server stops cleanly on SIGTERM');

# A read never waits in a pipeline behind a write that waits for a lock:
# read-only routes have their own connections (--read-connections).  A
# session holds the customer's account FOR UPDATE for two seconds; a transfer
# from it waits on the one general connection; a read meanwhile is answered
# at once.  With no read connections it queues behind the transfer (the
# behaviour the split exists to avoid, measured here so that the test
# above would fail without it).
my $acct2;
for my $reads (1, 0)
{
	$h->start_server('--threads', '1', '--connections', '1', '--pipeline-depth', '4',
		'--read-connections', $reads, '--lock-timeout', '10000');
	if (!defined $acct2)
	{
		($st, $d) = $h->request('POST', '/v1/accounts', headers => PgbankHttp::bearer($a->{token}),
			body => { type => 'checking', name => 'b', currency => 'USD' });
		$acct2 = $d->{id} // die "open a second account: $st";
	}
	my $locker = IPC::Run::start(
		[ 'psql', '-X', '-q', '-d', $node->connstr('postgres'), '-c',
		  "BEGIN; SELECT 1 FROM bank.accounts WHERE id = $acct FOR UPDATE; SELECT pg_sleep(2); COMMIT;" ],
		'>', \my $lout, '2>', \my $lerr);
	$node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE '%FOR UPDATE; SELECT pg_sleep(2)%' AND pid <> pg_backend_pid()")
	  or die 'the locking session did not start';
	my $writer = fork();
	if ($writer == 0)
	{
		my $r = HTTP::Tiny->new(timeout => 30)->request('POST', $h->url . '/v1/transfers',
			{ headers => { Authorization => "Bearer $a->{token}", 'Idempotency-Key' => "hol-$reads",
				'Content-Type' => 'application/json' },
			  content => qq({"from_account": $acct, "to_account": $acct2, "amount": "1.00"}) });
		POSIX::_exit($r->{status} == 422 ? 0 : 1);    # no END blocks: they stop the node
	}
	$node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND usename = 'bank_gateway'")
	  or die 'the transfer did not wait for the lock';
	my $t0 = [ Time::HiRes::gettimeofday() ];
	($st, $d) = $h->request('GET', '/v1/accounts', headers => PgbankHttp::bearer($a->{token}));
	my $took = Time::HiRes::tv_interval($t0);
	is($st, 200, "read-connections $reads: the read is answered");
	if ($reads)
	{
		cmp_ok($took, '<', 1.0, "read-connections 1: the read does not wait for the blocked transfer (${took}s)");
	}
	else
	{
		cmp_ok($took, '>', 0.5, "read-connections 0: the read queues behind the blocked transfer (${took}s)");
	}
	waitpid($writer, 0);
	is($? >> 8, 0, "read-connections $reads: the transfer ends once the lock is gone (declined: no funds)");
	$locker->finish;
	is($h->stop_server, 0, "read-connections $reads: the server stops cleanly");
}

# While no read connection is up, reads use the general ones: the read
# connection's backend is terminated, and once the server has seen it go
# down (its log says so) a read is still answered, not refused with 503.
$h->start_server('--threads', '1', '--connections', '1', '--read-connections', '1');
$node->poll_query_until('postgres',
	"SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name = 'pgbank-http read'")
  or die 'the read connection did not open';
$node->safe_psql('postgres',
	"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pgbank-http read'");
my $down = 0;
for (1 .. 100)
{
	if ($h->server_log =~ /connection 1: down/) { $down = 1; last; }
	Time::HiRes::usleep(20_000);
}
ok($down, 'the server sees its read connection go down');
($st) = $h->request('GET', '/v1/accounts', headers => PgbankHttp::bearer($a->{token}));
is($st, 200, '... and answers a read on the general connection meanwhile');
is($h->stop_server, 0, 'the server stops cleanly');

$node->stop;
done_testing();
