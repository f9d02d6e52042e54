# t/103_http_money.pl -- money through pgbank-http under concurrency.
#
# Ten clients replay one Idempotency-Key at the same moment: one transfer
# exists and every client gets it (or, while the first is in flight, a
# conflict-free answer: 201 with the same id).  Then eight clients make
# random transfers among ten accounts of five customers, some too large
# (declines), over keep-alive connections to a two-thread server; after
# them bank.check_ledger() is empty, the money of the customers is what was
# deposited, and every acknowledged transfer exists.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgbankTest;
use PgbankHttp;
use JSON::PP;

my $h = PgbankHttp->new('money');
my $node = $h->node;
$h->start_server('--connections', '3');
my $svc = $h->api_key('bank_service');

my (@cust, @accts, %owner);
for my $i (1 .. 5)
{
	my $c = $h->customer("money$i\@example.com");
	push @cust, $c;
	for my $k (1 .. 2)
	{
		my ($st, $d) = $h->request('POST', '/v1/accounts', headers => PgbankHttp::bearer($c->{token}),
			body => { type => 'checking', name => "acct $k", currency => 'USD' });
		die "open: $st" unless $st == 201;
		push @accts, $d->{id};
		$owner{ $d->{id} } = $c;
		($st) = $h->request('POST', '/v1/deposits', headers => { 'X-API-Key' => $svc, 'Idempotency-Key' => "fund-$d->{id}" },
			body => { account => $d->{id}, amount => '100.00' });
		die "deposit: $st" unless $st == 201;
	}
}
pass('5 customers, 10 accounts of 100.00 each');

# run code in N children at once; each prints lines to its pipe
sub in_parallel
{
	my ($n, $code) = @_;
	my @kids;
	for my $i (0 .. $n - 1)
	{
		pipe(my $r, my $w) or die $!;
		my $pid = fork();
		die "fork: $!" unless defined $pid;
		if ($pid == 0)
		{
			close $r;
			my $client = HTTP::Tiny->new(keep_alive => 1, timeout => 60);
			print $w $_, "\n" for $code->($i, $client);
			close $w;
			POSIX::_exit(0);
		}
		close $w;
		push @kids, [ $pid, $r ];
	}
	my @out;
	for my $k (@kids)
	{
		my $fh = $k->[1];
		push @out, map { chomp; $_ } <$fh>;
		waitpid($k->[0], 0);
	}
	return @out;
}
use POSIX ();

my $json = JSON::PP->new;
my $url = $h->url;
my ($from, $to) = @accts[ 0, 2 ];
my $tok = $owner{$from}{token};

# --- ten parallel replays of one key
my @res = in_parallel(10, sub {
	my ($i, $client) = @_;
	my $r = $client->request('POST', "$url/v1/transfers", {
		headers => { Authorization => "Bearer $tok", 'Idempotency-Key' => 'same-key', 'Content-Type' => 'application/json' },
		content => '{"from_account":' . $from . ',"to_account":' . $to . ',"amount":"7.00"}' });
	my $d = eval { $json->decode($r->{content}) } // {};
	return "$r->{status} " . ($d->{id} // $d->{code} // '-');
});
is(scalar(@res), 10, 'ten replies');
my %ids = map { (split / /)[1] => 1 } grep { /^201 / } @res;
is(scalar(grep { /^201 \d+$/ } @res), 10, 'all ten got 201') or diag(join(', ', @res));
is(scalar(keys %ids), 1, '... with one transfer id');
is($node->safe_psql('postgres', "SELECT count(*) FROM bank.transfers WHERE idempotency_key = 'same-key'"), 1,
	'one transfer in the ledger for the key');
my ($st, $d) = $h->request('GET', "/v1/accounts/$from/balance", headers => PgbankHttp::bearer($tok));
is($d->{posted}, '93.00', 'the money moved once');

# --- concurrent random transfers
my $per = 60;
@res = in_parallel(8, sub {
	my ($i, $client) = @_;
	srand($i * 7919 + 1);
	my @out;
	for my $n (1 .. $per)
	{
		my $a = $accts[ int rand @accts ];
		my $b;
		do { $b = $accts[ int rand @accts ] } while ($b == $a);
		my $amount = rand() < 0.1 ? '150.00' : sprintf('%d.%02d', int(rand 5), int(rand 100));
		$amount = '0.01' if $amount eq '0.00';
		my $r = $client->request('POST', "$url/v1/transfers", {
			headers => { Authorization => "Bearer $owner{$a}{token}", 'Idempotency-Key' => "c$i-$n", 'Content-Type' => 'application/json' },
			content => qq({"from_account":$a,"to_account":$b,"amount":"$amount"}) });
		my $d = eval { $json->decode($r->{content}) } // {};
		push @out, "$r->{status} " . ($d->{id} // $d->{code} // '-');
	}
	return @out;
});
is(scalar(@res), 8 * $per, 'every concurrent request answered');
my @ok = grep { /^201 \d+$/ } @res;
my @declined = grep { /^422 insufficient_funds$/ } @res;
is(scalar(@ok) + scalar(@declined), scalar(@res), 'each one posted (201) or declined for funds (422)')
	or diag(join("\n", grep { !/^201 \d+$/ && !/^422 insufficient_funds$/ } @res));
ok(scalar(@ok) > 100, scalar(@ok) . ' transfers posted, ' . scalar(@declined) . ' declined');
my @ids = map { (split / /)[1] } @ok;
is($node->safe_psql('postgres', 'SELECT count(*) FROM bank.transfers WHERE status = \'posted\' AND id IN (' . join(',', @ids) . ')'),
	scalar(@ids), 'every acknowledged transfer is posted in the ledger');
is($node->safe_psql('postgres', "SELECT count(*) FROM bank.transfers WHERE kind = 'transfer' AND status = 'posted'"),
	scalar(@ids) + 1, '... and no other transfer was posted');
is($node->safe_psql('postgres', 'SELECT count(*) FROM bank.check_ledger()'), 0, 'bank.check_ledger() is empty');
is($node->safe_psql('postgres', 'SELECT sum(balance) FROM bank.account_balances WHERE id IN (' . join(',', @accts) . ')'),
	'1000.00', 'the customers hold the 1000.00 deposited: money is conserved');
is($node->safe_psql('postgres', 'SELECT count(*) FROM bank.account_balances WHERE available < 0 AND customer_id IS NOT NULL'),
	0, 'no customer account went below zero');
like($h->server_log, qr/ready/, 'the server log shows its connections');
unlike($h->server_log, qr/SQLSTATE/, 'and no internal error');

$h->stop_server;
$node->stop;
done_testing();
