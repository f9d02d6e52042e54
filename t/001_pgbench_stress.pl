# t/001_pgbench_stress.pl -- pgbench stress of the money paths: no failed
# transaction, no deadlock, no negative balance, and the ledger's invariants
# hold afterwards.
#
# Phase 1: 1,000 customers with one USD checking account each, every one
# funded with 1,000,000.00 by bank.deposit, so that no random transfer of
# 0.01 .. 10.00 can ever be declined; then pgbench, 8 clients, 20 s (or
# PGBANK_STRESS_SECONDS), runs bank.transfer between two distinct random
# accounts with a new idempotency key each (gen_random_uuid()).
#
# Phase 2 (10 s, 8 clients): the hot paths.  Two transfers of 1.00 out of
# three go from a random account to ONE merchant account (lock-free credits
# of one row), one out of three is a deposit of 1.00 into a random account
# (every deposit debits the one USD settlement account).
#
# After each phase:
#  - pgbench exited 0 with 0 failed transactions, 0 deadlock failures (the
#    serialization failure count is reported), and processed > 0;
#  - the sum of all balances (system accounts included) is 0 per currency,
#    and the USD total row of bank.trial_balance() has debit = credit;
#  - the customers' balances add up to the money deposited;
#  - no customer balance or available amount is negative, nor any
#    balance_after of a customer account's entries;
#  - bank.check_ledger() returns nothing;
#  - the posted transfers are exactly the deposits plus pgbench's processed
#    count, and no transfer failed or is pending;
#  - after phase 2, the merchant credits and deposits in the ledger add up
#    to pgbench's processed count, the customers' total grew by 1.00 per
#    deposit and the merchant holds 1.00 per credit.
#
# The cluster keeps Cluster.pm's fsync = off: this is a test of concurrency,
# not of durability (t/002_crash.pl is), and faster commits mean more
# transactions overlapping.

use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgbankTest;


my $customers = 1000;
my $funding = 1_000_000;                 # USD per customer account
my $seconds = $ENV{PGBANK_STRESS_SECONDS} // 20;
my $hot_seconds = 10;
my $clients = 8;

my $node = PostgreSQL::Test::Cluster->new('stress');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
max_connections = 40
max_worker_processes = 16
shared_buffers = 128MB
log_statement = none
log_lock_waits = on
deadlock_timeout = 100ms
});
$node->start;

# The accounts, through the bank.* API only.  Customer accounts get
# consecutive ids (nothing else writes meanwhile): checked below, since the
# pgbench scripts address them as :base + 0 .. 999.
PgbankTest::funded_accounts($node, 'stress', $customers, $funding);
$node->safe_psql('postgres',
	"SELECT bank.open_account('checking', 'merchant', 'USD',"
	  . " bank.create_customer('merchant\@example.com', 'Hot', 'Merchant'))");

my ($base, $max, $count) = split /\|/, $node->safe_psql('postgres',
	"SELECT min(id), max(id), count(*) FROM bank.accounts WHERE name LIKE 'stress %'");
is($count, $customers, "$customers customer accounts opened");
is($max - $base + 1, $customers, 'customer account ids are consecutive');
my $merchant = $node->safe_psql('postgres',
	"SELECT id FROM bank.accounts WHERE name = 'merchant'");
is( $node->safe_psql('postgres',
		"SELECT sum(b.posted) FROM bank.accounts a, LATERAL bank.balance(a.id) b"
		  . " WHERE a.name LIKE 'stress %'"),
	sprintf('%d.00', $customers * $funding),
	'every customer account funded');

# Run pgbench with the given scripts (name => [weight, text]); returns the
# parsed summary: processed, failed, serialization, deadlock, and per
# script name the number of transactions.
sub run_pgbench
{
	my ($phase, $secs, %scripts) = @_;
	my @names = sort keys %scripts;
	my @files = PgbankTest::pgbench_files($node->basedir, $phase =~ s/ //gr, \%scripts);
	my @cmd = (
		'pgbench', '-n', '-M', 'prepared', '-c', $clients, '-j', 2,
		'-T', $secs, '--failures-detailed',
		'-D', "base=$base", '-D', "n=$customers", '-D', "merchant=$merchant",
		@files, '-h', $node->host, '-p', $node->port, 'postgres');
	my ($out, $err) = ('', '');
	note "running: @cmd";
	my $ok = IPC::Run::run(\@cmd, '>', \$out, '2>', \$err);
	note "pgbench $phase stdout:\n$out";
	note "pgbench $phase stderr:\n$err" if $err ne '';
	ok($ok, "$phase: pgbench exited 0");
	unlike($out . $err, qr/aborted/, "$phase: no pgbench client aborted");

	my %r = %{ PgbankTest::pgbench_summary($out, @names) };
	diag(
		sprintf(
			"%s: %d transactions processed (%.0f/s), %d failed, %d serialization failures, %d deadlock failures",
			$phase, $r{processed}, $r{processed} / $secs, $r{failed},
			$r{serialization}, $r{deadlock}));
	cmp_ok($r{processed}, '>', 0, "$phase: pgbench processed transactions");
	is($r{failed}, 0, "$phase: no failed transaction");
	is($r{deadlock}, 0, "$phase: no deadlock");
	return \%r;
}

# The ledger's invariants, with the number of transfers and the customers'
# total expected by now.
sub check_invariants
{
	my ($phase, $posted, $customer_total) = @_;

	is( $node->safe_psql(
			'postgres', q{
SELECT a.currency || ' ' || sum(b.posted)
  FROM bank.accounts a, LATERAL bank.balance(a.id) b
 GROUP BY a.currency HAVING sum(b.posted) <> 0}),
		'',
		"$phase: the balances of every currency add up to zero");
	is( $node->safe_psql(
			'postgres', q{
SELECT count(*) FROM bank.trial_balance()
 WHERE currency = 'USD' AND account_type IS NULL AND debit = credit AND debit > 0}),
		'1',
		"$phase: the USD trial balance is balanced");
	is( $node->safe_psql(
			'postgres', q{
SELECT sum(b.posted) FROM bank.accounts a, LATERAL bank.balance(a.id) b
 WHERE a.customer_id IS NOT NULL}),
		sprintf('%.2f', $customer_total),
		"$phase: customer balances add up to the deposits");
	is( $node->safe_psql(
			'postgres', q{
SELECT count(*) FROM bank.accounts a, LATERAL bank.balance(a.id) b
 WHERE a.customer_id IS NOT NULL AND (b.posted < 0 OR b.available < 0)}),
		'0',
		"$phase: no negative customer balance");
	is( $node->safe_psql(
			'postgres', q{
SELECT count(*) FROM bank.entries e JOIN bank.accounts a ON a.id = e.account_id
 WHERE a.customer_id IS NOT NULL AND e.balance_after < 0}),
		'0',
		"$phase: no customer entry with a negative balance_after");
	is( $node->safe_psql(
			'postgres',
			q{SELECT string_agg(concat_ws(' ', violation, subject, detail), E'\n')
				FROM bank.check_ledger()}),
		'',
		"$phase: check_ledger() finds no violation");
	is( $node->safe_psql(
			'postgres', q{
SELECT string_agg(status || ' ' || n, ', ' ORDER BY status)
  FROM (SELECT status, count(*) AS n FROM bank.transfers GROUP BY status) s}),
		"posted $posted",
		"$phase: $posted posted transfers (deposits + pgbench), none failed or pending");
	return;
}

my $deposits = $customers;
my $customer_total = $customers * $funding;

# Phase 1: random transfers of 0.01 .. 10.00 between distinct accounts.
my $r1 = run_pgbench(
	'phase 1',
	$seconds,
	transfer => [
		1, q{
\set a random(0, :n - 1)
\set d random(1, :n - 1)
\set from :base + :a
\set to :base + (:a + :d) % :n
\set cents random(1, 1000)
SELECT id FROM bank.transfer(:from, :to, :cents * 0.01, gen_random_uuid()::text);
}
	]);
check_invariants('phase 1', $deposits + $r1->{processed}, $customer_total);

# Phase 2: hot merchant credits and deposits (hot settlement account).
my $r2 = run_pgbench(
	'phase 2',
	$hot_seconds,
	hot_credit => [
		2, q{
\set from :base + random(0, :n - 1)
SELECT id FROM bank.transfer(:from, :merchant, 1.00, gen_random_uuid()::text);
}
	],
	hot_deposit => [
		1, q{
\set to :base + random(0, :n - 1)
SELECT id FROM bank.deposit(:to, 1.00, gen_random_uuid()::text);
}
	]);
# pgbench's per-script counts can miss the last few transactions of a -T
# run (its total does not), so the split comes from the ledger, and must add
# up to pgbench's total.
my ($hot_deposits, $hot_credits) = split /\|/, $node->safe_psql('postgres', qq{
SELECT count(*) FILTER (WHERE kind = 'deposit') - $customers,
       count(*) FILTER (WHERE kind = 'transfer' AND to_account = $merchant)
  FROM bank.transfers WHERE status = 'posted'});
note "phase 2: pgbench counted $r2->{hot_credit} merchant credits and $r2->{hot_deposit} deposits by script; "
  . "the ledger has $hot_credits and $hot_deposits";
cmp_ok($hot_credits, '>', 0, 'phase 2: hot merchant credits ran');
cmp_ok($hot_deposits, '>', 0, 'phase 2: deposits ran');
is($hot_credits + $hot_deposits, $r2->{processed},
	'phase 2: the ledger holds exactly the merchant credits and deposits pgbench processed');
$customer_total += $hot_deposits;
check_invariants('phase 2', $deposits + $r1->{processed} + $r2->{processed},
	$customer_total);
is($node->safe_psql('postgres', "SELECT posted FROM bank.balance($merchant)"),
	sprintf('%d.00', $hot_credits),
	'phase 2: the merchant holds 1.00 per credit');

$node->stop;
done_testing();
