# t/PgbankTest.pm -- what every pgbank TAP test needs before its first
# cluster.  `use PgbankTest;` after PostgreSQL::Test::Cluster (the Makefile
# adds t/ to prove's include path; a bare prove needs `-I t`).
package PgbankTest;

use strict;
use warnings;

use File::Basename qw(dirname);

# Cluster::init runs pg_regress --config-auth; PGXS's installcheck sets
# PG_REGRESS, a bare `prove` does not.
if (!defined $ENV{PG_REGRESS})
{
	my $pgxs = `pg_config --pgxs`;
	chomp $pgxs;
	$ENV{PG_REGRESS} = dirname($pgxs) . '/../../src/test/regress/pg_regress';
}

1;
