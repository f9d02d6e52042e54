# t/005_card_vault_log.pl -- no card number reaches the server log or the
# audit trail, even with every statement and its parameters logged.
#
# A sibling of t/003_no_secrets_in_log.pl for the card vault, under the
# worst logging settings: log_statement = all with bind parameters logged in
# full (log_parameter_max_length = -1, and on error too), failing
# statements logged (log_min_error_statement = error), verbose errors.
# Canary card numbers (valid Luhn digits, so that they are card numbers)
# reach bank.tokenize_card as bind parameters (pgbench -M extended), as
# literals in a failing statement's text, and inside a failing PL/pgSQL
# block.  Then no canary may appear in the server log or in any audit row.
#
# The check can fail: the controls show that the statements and their
# parameters were logged (a literal control string in a failing statement
# is there; the parameters of the tokenize call are there, masked), and a
# 16-digit run that fails the Luhn check (not a card number) is logged as
# it was sent.  Without the log filter (VaultInstallLogFilter in _PG_init)
# the canaries of the bind parameters and of the statement texts are in the
# log and this test fails.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgbankTest;

my $card_key = 'CARDKEY' . ('c5' x 20);

# a card number: the digits given, completed with their Luhn check digit
sub luhn_complete
{
	my ($digits) = @_;
	my $sum = 0;
	my @d = reverse split //, $digits;
	for my $i (0 .. $#d)
	{
		my $v = $d[$i];
		if ($i % 2 == 0)
		{
			$v *= 2;
			$v -= 9 if $v > 9;
		}
		$sum += $v;
	}
	return $digits . ((10 - $sum % 10) % 10);
}

my @canaries = (
	luhn_complete('400012345678901'),       # bind parameter, tokenized
	luhn_complete('400098765432109'),       # bind parameter, expired card
	luhn_complete('51051051051051'),        # literal in a failing statement
	luhn_complete('601100099990001'),       # literal in a failing PL/pgSQL block
	luhn_complete('371449635398431'),       # bind parameter, bad expiry
	luhn_complete('630495060000000000'),    # 19 digits, bind parameter
);

my $node = PostgreSQL::Test::Cluster->new('vault');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'pgbank'
pgbank.card_key = '$card_key'
log_statement = all
log_parameter_max_length = -1
log_parameter_max_length_on_error = -1
log_min_error_statement = error
log_error_verbosity = verbose
log_connections = on
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION pgbank CASCADE');

# one transaction of pgbench -M extended: :variables are bind parameters
sub call { return PgbankTest::pgbench_call($node, @_); }

my $expiry = $node->safe_psql('postgres',
	"SELECT to_char(bank.business_date() + interval '2 years', 'MM/YY')");
my $tokenize = "SET ROLE bank_service;\nSELECT token FROM bank.tokenize_card(:pan, :exp);\n";

# bind parameters: one accepted, one expired, one malformed expiry, a long one
call($tokenize, pan => $canaries[0], exp => $expiry);
my $err = call($tokenize, pan => $canaries[1], exp => '01/20');
like($err, qr/PB062|expired/, 'the expired card was refused');
call($tokenize, pan => $canaries[4], exp => 'never');
call($tokenize, pan => $canaries[5], exp => $expiry);

# literals: in a failing statement, and in a failing PL/pgSQL block
my ($rc, $out, $stderr) = $node->psql('postgres',
	"SET ROLE bank_service; SELECT bank.tokenize_card('$canaries[2]', 'xx/yy')");
like($stderr, qr/card expiry must be MM\/YY or MM\/YYYY/, 'the bad expiry was refused');
unlike($stderr, qr/$canaries[2]/, 'the error sent to the client does not hold the number');
($rc, $out, $stderr) = $node->psql('postgres',
	"DO \$\$ BEGIN PERFORM bank.tokenize_card('$canaries[3]', '13/99'); END \$\$");
like($stderr, qr/month must be from one to twelve/, 'the bad month was refused');

# the round trip: the accepted card comes back to bank_service (a result,
# which is never logged)
my $token = $node->safe_psql('postgres',
	"SELECT resource_id FROM bank.audit_events WHERE action = 'card.tokenize' ORDER BY id LIMIT 1");
like($token, qr/^tok_/, 'the tokenize call was audited with its token');
my $pan = $node->safe_psql('postgres',
	"SET ROLE bank_service; SELECT pan FROM bank.detokenize_card('$token')");
is($pan, $canaries[0], 'detokenize returns the card number');
is($node->safe_psql('postgres', 'SELECT count(*) FROM bank.cards'), '2',
	'the two valid cards were stored');

# the audit trail: no canary in any column of any row
my $audit = $node->safe_psql('postgres', 'SELECT string_agg(e::text, E\'\n\') FROM bank.audit_events e');
like($audit, qr/card\.detokenize/, 'the detokenize call was audited');

# controls: a literal in a failing statement is logged; so is a 16-digit
# run that is not a card number
my $control = 'CANARYCONTROLliteral';
$node->psql('postgres', "SELECT bank.tokenize_card('$control', '4000123456789010')");

$node->stop;
my $log = slurp_file($node->logfile);

like($log, qr/CANARYCONTROLliteral/, 'control: failing statement text is logged');
like($log, qr/4000123456789010/, 'control: a digit run that is no card number is logged');
like($log, qr/parameters: \$1 = '\*{16}'/, 'control: the bind parameters were logged, masked');
like($log, qr/PB060|PB061|PB062/, 'the failing calls did fail');
for my $c (@canaries)
{
	ok(index($log, $c) < 0, "log does not contain card number $c");
	ok(index($audit, $c) < 0, "no audit row contains card number $c");
}
ok(index($log, $card_key) < 0, 'log does not contain the card key');

done_testing();
