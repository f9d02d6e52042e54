# t/PgbankTest.pm -- what every pgbank TAP test needs before its first
# cluster, and the helpers the pgbench tests share.  `use PgbankTest;` after PostgreSQL::Test::Cluster (the Makefile
# adds t/ to prove's include path; a bare prove needs `-I t`).
package PgbankTest;

use strict;
use warnings;

use File::Basename qw(dirname);
use IPC::Run;

# Cluster::init runs pg_regress --config-auth; PGXS's installcheck sets
# PG_REGRESS, a bare `prove` does not.
if (!defined $ENV{PG_REGRESS})
{
	my $pgxs = `pg_config --pgxs`;
	chomp $pgxs;
	$ENV{PG_REGRESS} = dirname($pgxs) . '/../../src/test/regress/pg_regress';
}

# Open n USD checking accounts, one per new customer named "$prefix $i",
# after creating the extension, and fund each with $funding through
# bank.deposit.  Nothing else writes meanwhile, so the accounts' ids are
# consecutive.  Returns the first account id.
sub funded_accounts
{
	my ($node, $prefix, $n, $funding) = @_;
	$node->safe_psql(
		'postgres', qq{
SET client_min_messages = warning;
CREATE EXTENSION pgbank CASCADE;
SELECT count(bank.open_account('checking', '$prefix ' || g, 'USD',
		bank.create_customer('$prefix' || g || '\@example.com', 'Test', 'Customer ' || g)))
  FROM generate_series(1, $n) g;
SELECT count(d.id)
  FROM bank.accounts a, LATERAL bank.deposit(a.id, $funding, 'fund-' || a.id) d
 WHERE a.name LIKE '$prefix %';
});
	return $node->safe_psql('postgres',
		"SELECT min(id) FROM bank.accounts WHERE name LIKE '$prefix %'");
}

# Write pgbench scripts (name => [weight, text]) as "$dir/$tag-$name.sql";
# returns pgbench's -f arguments, in the order of the sorted names.
sub pgbench_files
{
	my ($dir, $tag, $scripts) = @_;
	my @files;
	for my $name (sort keys %$scripts)
	{
		my $file = "$dir/$tag-$name.sql";
		open my $fh, '>', $file or die "cannot write $file: $!";
		print $fh $scripts->{$name}[1];
		close $fh;
		push @files, '-f', "$file\@$scripts->{$name}[0]";
	}
	return @files;
}

# Run one transaction of script with pgbench -M extended, so that its
# :variables (the pairs of %vars) reach the server as bind parameters, the way
# an application passes secrets.  Returns pgbench's standard error.
my $calls = 0;
sub pgbench_call
{
	my ($node, $script, %vars) = @_;
	my $file = $node->basedir . '/call' . ++$calls . '.sql';
	open(my $fh, '>', $file) or die "cannot write $file: $!";
	print $fh $script;
	close $fh;
	my @cmd = ('pgbench', '-n', '-t', '1', '-M', 'extended', '-f', $file,
		(map { ('-D', "$_=$vars{$_}") } sort keys %vars),
		'-h', $node->host, '-p', $node->port, 'postgres');
	my ($out, $err);
	IPC::Run::run(\@cmd, '>', \$out, '2>', \$err);
	return $err;
}

# pgbench's summary: processed, failed, serialization, deadlock, and the
# transactions of each script (names sorted as pgbench_files wrote them).
# Dies when a count is missing.
sub pgbench_summary
{
	my ($out, @names) = @_;
	my %r;
	@names = sort @names;
	($r{processed}) = $out =~ /^number of transactions actually processed: (\d+)/m;
	($r{failed}) = $out =~ /^number of failed transactions: (\d+)/m;
	($r{serialization}) = $out =~ /^number of serialization failures: (\d+)/m;
	($r{deadlock}) = $out =~ /^number of deadlock failures: (\d+)/m;
	if (@names == 1)
	{
		$r{ $names[0] } = $r{processed};
	}
	else
	{
		# per-script sections: "SQL script N: file", " - weight: ...",
		# " - T transactions (...)"
		for my $i (0 .. $#names)
		{
			my $n = $i + 1;
			($r{ $names[$i] }) =
			  $out =~ /^SQL script $n: .*\n - weight: .*\n - (\d+) transactions/m;
		}
	}
	for my $k ('processed', 'failed', 'serialization', 'deadlock', @names)
	{
		die "no '$k' count in pgbench's output" unless defined $r{$k};
	}
	return \%r;
}

1;
