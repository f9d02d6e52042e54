# t/002_crash.pl -- kill -9 under load: no acknowledged transfer is lost,
# nothing that was never sent appears, and the ledger is whole after
# recovery.
#
# Three cycles.  In each, 4 psql clients (IPC::Run, autocommit, -f a script
# of 30,000 statements each) send bank.transfer between random accounts, and
# one statement in eight is a bank.deposit, every one with a unique
# idempotency key crash-<cycle>-<client>-<n>; each statement returns its key,
# so a key in a client's output is acknowledged: its commit was reported to
# the client.  After 2-4 s of load the postmaster gets SIGKILL ($node->kill9).
# In cycles 1 and 3 only the postmaster is killed (its backends notice and
# exit on their own, possibly after finishing what they were doing); in
# cycle 2 every server process is killed at once.  The test waits until
# every process of the old server is gone, restarts, and checks:
#  - every acknowledged key is a posted transfer, with the accounts and the
#    amount that were sent;
#  - no key exists that was never sent: psql runs its script in order and
#    stops at the first error, so after a client's last acknowledged key at
#    most the next one was in flight ("in doubt": it may or may not exist);
#    all later keys must be absent;
#  - each in-doubt key, retried with the same payload on a new connection
#    (what a client does after a crash), ends as exactly one posted
#    transfer, and a retried acknowledged key returns the transfer id that
#    was acknowledged;
#  - bank.check_ledger() returns nothing; the balances of every currency add
#    up to zero; the customers hold exactly their initial funding plus the
#    deposits whose keys exist (transfers between customers conserve money).
# synchronous_commit stays on (the default) and fsync is turned on.
#
# Can it see lost work?  A total-balance check alone cannot (a lost transfer
# keeps the totals exact), hence the per-key checks.  With
# PGBANK_CRASH_SYNCHRONOUS_COMMIT=off (commits acknowledged before their WAL
# is flushed) the test fails as it should: in one such run 8, 11 and 7
# acknowledged keys were missing after the three crashes ("every
# acknowledged key ... is a posted transfer" failed in every cycle) while
# every total, check_ledger() and the never-sent checks still passed.

use strict;
use warnings;

use Cwd ();
use IPC::Run;
use List::Util qw(max sum0);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgbankTest;
use Time::HiRes qw(sleep time);


my $cycles = 3;
my $clients = 4;
my $statements = 30_000;    # per client and cycle: far more than 4 s of load
my $naccounts = 40;
my $funding = 1_000_000;    # USD per customer account
my $synchronous_commit = $ENV{PGBANK_CRASH_SYNCHRONOUS_COMMIT} // 'on';

my $node = PostgreSQL::Test::Cluster->new('crash');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
fsync = on
synchronous_commit = $synchronous_commit
max_worker_processes = 16
log_statement = none
# a backend that crashes during the checks (a bug) must not end the test:
# the server recovers and the remaining checks still run and report
restart_after_crash = on
});
$node->start;

PgbankTest::funded_accounts($node, 'crash', $naccounts, $funding);
my @accounts = split /\n/,
  $node->safe_psql('postgres',
	"SELECT id FROM bank.accounts WHERE name LIKE 'crash %' ORDER BY id");
is(scalar @accounts, $naccounts, "$naccounts funded customer accounts");

# payload of every key sent: "kind|from|to|amount in cents" (from is 0 for
# a deposit, whose debit is the settlement account)
my %payload;
my $deposits_expected = $naccounts * $funding * 100;    # cents held by customers
my $transfers_expected = $naccounts;    # the funding deposits

# The processes of the server: every one of them runs in the data directory
# (found this way, backends orphaned by the postmaster's death count too).
# The postmaster counts until it has been reaped (a zombie has no cwd, yet
# holds off a new postmaster: "lock file postmaster.pid already exists").
sub server_processes
{
	my $dir = Cwd::abs_path($node->data_dir);
	my @pids;
	opendir my $dh, '/proc' or die "cannot read /proc: $!";
	for my $p (grep { /^\d+$/ } readdir $dh)
	{
		my $cwd = readlink "/proc/$p/cwd";
		push @pids, $p if defined $cwd && $cwd eq $dir;
	}
	closedir $dh;
	return @pids;
}

sub wait_server_gone
{
	my ($pm) = @_;
	my $deadline = time + 120;
	while (-e "/proc/$pm" || server_processes())
	{
		die "server processes still alive after 120 s" if time > $deadline;
		sleep 0.05;
	}
	return;
}

# A statement's key, in a client's script order.
sub key_of { my ($cycle, $client, $n) = @_; return "crash-$cycle-$client-$n"; }

for my $cycle (1 .. $cycles)
{
	my $kill_all = ($cycle == 2);

	# the scripts
	my @files;
	for my $client (1 .. $clients)
	{
		my $file = $node->basedir . "/cycle$cycle-client$client.sql";
		open my $fh, '>', $file or die "cannot write $file: $!";
		for my $n (1 .. $statements)
		{
			my $key = key_of($cycle, $client, $n);
			my $cents = 1 + int(rand(1000));
			my $amount = sprintf('%d.%02d', $cents / 100, $cents % 100);
			my $to = $accounts[ int(rand($naccounts)) ];
			if ($n % 8 == 0)
			{
				$payload{$key} = "deposit|0|$to|$cents";
				print $fh
				  "SELECT '$key', id FROM bank.deposit($to, $amount, '$key');\n";
			}
			else
			{
				my $from;
				do { $from = $accounts[ int(rand($naccounts)) ] } while ($from == $to);
				$payload{$key} = "transfer|$from|$to|$cents";
				print $fh
				  "SELECT '$key', id FROM bank.transfer($from, $to, $amount, '$key');\n";
			}
		}
		close $fh;
		push @files, $file;
	}

	# the load
	my (@h, @out, @err);
	for my $client (1 .. $clients)
	{
		my $i = $client - 1;
		$out[$i] = '';
		$err[$i] = '';
		$h[$i] = IPC::Run::start(
			[
				'psql', '-X', '-At', '-v', 'ON_ERROR_STOP=1',
				'-h', $node->host, '-p', $node->port, '-d', 'postgres',
				'-f', $files[$i]
			],
			'<', \undef, '>', \$out[$i], '2>', \$err[$i]);
	}
	my $pause = 2 + rand(2);
	my $until = time + $pause;
	while (time < $until)
	{
		$_->pump_nb for @h;
		sleep 0.05;
	}

	# the crash
	my $pm = (split /\n/, PostgreSQL::Test::Utils::slurp_file($node->data_dir . '/postmaster.pid'))[0];
	my @others = grep { $_ != $pm } server_processes();
	note sprintf('cycle %d: SIGKILL to the postmaster %s after %.1f s%s',
		$cycle, $pm, $pause, $kill_all ? ' and to its ' . scalar(@others) . ' other processes' : '');
	$node->kill9;
	kill 'KILL', @others if $kill_all;
	wait_server_gone($pm);
	for my $i (0 .. $clients - 1)
	{
		$h[$i]->finish;    # psql exits once its connection is gone
	}

	# what each client saw acknowledged, and what was in doubt
	my (%acked, %in_doubt, %never_sent);
	for my $i (0 .. $clients - 1)
	{
		my $client = $i + 1;
		my $last = 0;
		for my $line (split /\n/, $out[$i])
		{
			my ($key, $id) = split /\|/, $line;
			die "unexpected psql output: $line"
			  unless defined $id && $key =~ /^crash-$cycle-$client-(\d+)$/;
			$acked{$key} = $id;
			$last = max($last, $1);
		}
		cmp_ok($last, '>', 0, "cycle $cycle: client $client got acknowledgements before the crash");
		note "cycle $cycle: client $client: $last acknowledged; stderr: $err[$i]";
		$in_doubt{ key_of($cycle, $client, $last + 1) } = 1 if $last < $statements;
		$never_sent{ key_of($cycle, $client, $_) } = 1 for ($last + 2 .. $statements);
	}

	$node->start;

	# the keys of this cycle that exist now
	my %found;
	for my $row (
		split /\n/,
		$node->safe_psql(
			'postgres', qq{
SELECT idempotency_key, kind, status,
       CASE WHEN kind = 'deposit' THEN 0 ELSE from_account END, to_account, amount
  FROM bank.transfers WHERE idempotency_key LIKE 'crash-$cycle-%'}))
	{
		my ($key, $kind, $status, $from, $to, $cents) = split /\|/, $row;
		$found{$key} = { status => $status, payload => "$kind|$from|$to|$cents" };
	}

	my @lost = grep { !exists $found{$_} || $found{$_}{status} ne 'posted' } sort keys %acked;
	is(scalar @lost, 0,
		"cycle $cycle: every acknowledged key (" . scalar(keys %acked) . ') is a posted transfer')
	  or diag("cycle $cycle: acknowledged but lost: @lost[0 .. (@lost > 20 ? 19 : $#lost)]");
	my @altered = grep { exists $found{$_} && $found{$_}{payload} ne $payload{$_} } sort keys %found;
	is(scalar @altered, 0, "cycle $cycle: every transfer found has the payload that was sent")
	  or diag("cycle $cycle: altered: @altered[0 .. (@altered > 20 ? 19 : $#altered)]");
	my @phantom = grep { !exists $acked{$_} && !exists $in_doubt{$_} } sort keys %found;
	is(scalar @phantom, 0, "cycle $cycle: no key exists that was never sent")
	  or diag("cycle $cycle: never sent but present: @phantom[0 .. (@phantom > 20 ? 19 : $#phantom)]");
	my @beyond = grep { exists $never_sent{$_} } keys %found;
	is(scalar @beyond, 0, "cycle $cycle: no key after a client's in-doubt one exists");
	note sprintf('cycle %d: %d acknowledged, %d in doubt of which %d committed',
		$cycle, scalar(keys %acked), scalar(keys %in_doubt),
		scalar(grep { exists $found{$_} } keys %in_doubt));

	# A client retries, on a new connection, what it does not know the fate
	# of: each in-doubt key must end as exactly one posted transfer, whether
	# the crash kept it or not.  A client that lost its acknowledgements
	# retries acknowledged keys too: each client's last one must return the
	# transfer id it acknowledged.
	my $retry = sub {
		my ($key) = @_;
		my ($kind, $from, $to, $cents) = split /\|/, $payload{$key};
		my $amount = sprintf('%d.%02d', $cents / 100, $cents % 100);
		my $sql =
		  $kind eq 'deposit'
		  ? "SELECT id, status FROM bank.deposit($to, $amount, '$key')"
		  : "SELECT id, status FROM bank.transfer($from, $to, $amount, '$key')";
		$node->poll_query_until('postgres', 'SELECT true')
		  or die "cycle $cycle: the server does not accept connections";
		my ($rc, $stdout, $stderr) = $node->psql('postgres', $sql);
		return $rc == 0 ? $stdout : "error: $stderr";
	};
	for my $key (sort keys %in_doubt)
	{
		like($retry->($key), qr/^\d+\|posted$/,
			"cycle $cycle: retrying in-doubt key $key posts it or returns it");
	}
	for my $client (1 .. $clients)
	{
		my ($key) = sort { (split /-/, $b)[3] <=> (split /-/, $a)[3] }
		  grep { /^crash-$cycle-$client-/ } keys %acked;
		is($retry->($key), "$acked{$key}|posted",
			"cycle $cycle: retrying acknowledged key $key returns the same transfer");
	}
	$node->poll_query_until('postgres', 'SELECT true')
	  or die "cycle $cycle: the server does not accept connections";
	is( $node->safe_psql(
			'postgres', qq{
SELECT count(*) FROM (SELECT idempotency_key FROM bank.transfers
 WHERE idempotency_key LIKE 'crash-$cycle-%'
 GROUP BY idempotency_key HAVING count(*) <> 1 OR bool_or(status <> 'posted')) k}),
		'0',
		"cycle $cycle: every key of the cycle has exactly one posted transfer");

	# the ledger after recovery
	my %now;
	for my $row (
		split /\n/,
		$node->safe_psql(
			'postgres',
			"SELECT idempotency_key FROM bank.transfers WHERE idempotency_key LIKE 'crash-$cycle-%'"))
	{
		$now{$row} = 1;
	}
	$transfers_expected += scalar keys %now;
	$deposits_expected += sum0(map { (split /\|/, $payload{$_})[3] }
		  grep { $payload{$_} =~ /^deposit/ } keys %now);

	is( $node->safe_psql(
			'postgres',
			q{SELECT string_agg(concat_ws(' ', violation, subject, detail), E'\n')
				FROM bank.check_ledger()}),
		'',
		"cycle $cycle: check_ledger() finds no violation after recovery");
	is( $node->safe_psql(
			'postgres', q{
SELECT a.currency || ' ' || sum(b.posted)
  FROM bank.accounts a, LATERAL bank.balance(a.id) b
 GROUP BY a.currency HAVING sum(b.posted) <> 0}),
		'',
		"cycle $cycle: the balances of every currency add up to zero");
	is( $node->safe_psql(
			'postgres', q{
SELECT sum(b.posted) FROM bank.accounts a, LATERAL bank.balance(a.id) b
 WHERE a.customer_id IS NOT NULL}),
		sprintf('%d.%02d', $deposits_expected / 100, $deposits_expected % 100),
		"cycle $cycle: customers hold their funding plus the deposits that exist");
	is( $node->safe_psql('postgres',
			"SELECT count(*) FROM bank.transfers WHERE status = 'posted'"),
		$transfers_expected,
		"cycle $cycle: posted transfers are the funding plus the keys that exist");
}

$node->stop;
done_testing();
