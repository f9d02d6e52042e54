# t/003_no_secrets_in_log.pl -- no secret and no personal data reaches the
# server log.
#
# Every function that takes a secret (password, TOTP code, access or refresh
# token, API key) or personal data (email, phone, national id, address) is
# called with a canary value, the way an application calls it: as a bind
# parameter (pgbench -M extended turns :variables into $n parameters), with
# PostgreSQL's default statement logging (Cluster.pm's log_statement = all
# would log every parameter of every statement by design).  Many
# of the calls fail on purpose (weak password, wrong code, forged token,
# unknown key, wrong role, bad phone), since a failing statement is what
# PostgreSQL logs.  The log is verbose (log_error_verbosity = verbose, every
# connection logged).  Then no canary, no cluster secret and no issued key
# may appear in it.
#
# The check can fail: a control statement with a literal canary in its text
# fails too, and that canary must be in the log (PostgreSQL logs failing
# statement text; that is why the README says to pass secrets as parameters).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgbankTest;


my $jwt_secret = 'JWTSECRET' . ('x7' x 20);
my $master_key = 'MASTERKEY' . ('k9' x 20);

my $node = PostgreSQL::Test::Cluster->new('secrets');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'pgbank'
pgbank.jwt_secret = '$jwt_secret'
pgbank.master_key = '$master_key'
pgbank.bcrypt_cost = 4
log_statement = none
log_min_error_statement = error
log_error_verbosity = verbose
log_connections = on
log_disconnections = on
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION pgbank CASCADE');
$node->safe_psql('postgres', 'CREATE ROLE regress_admin LOGIN IN ROLE bank_admin');
$node->safe_psql('postgres', 'CREATE ROLE regress_teller LOGIN IN ROLE bank_teller');

my $n = 0;
my @canaries;

# a canary: distinctive, and recorded for the final check
sub canary
{
	my ($what, $pad) = @_;
	my $c = sprintf('CANARY%02d%s', ++$n, $what);
	$c .= $pad if defined $pad;
	push @canaries, $c;
	return $c;
}

# one transaction of pgbench -M extended: :variables are bind parameters
sub call { return PgbankTest::pgbench_call($node, @_); }

# registration: a weak password, then a good one with a phone, then the
# same email again
my $email = lc(canary('mail')) . '@example.com';
call("SET ROLE bank_anon;\nSELECT bank.register(:e, :p, 'Ann', 'A', NULL);\n",
	e => lc(canary('mail')) . '@example.com', p => canary('pw'));
my $password = canary('goodpassword', '-long-enough');
my $phone = '+44 20 7946 0' . sprintf('%03d', 958);
push @canaries, $phone;
call("SET ROLE bank_anon;\nSELECT bank.register(:e, :p, 'Ann', 'A', :ph);\n",
	e => $email, p => $password, ph => $phone);
call("SET ROLE bank_anon;\nSELECT bank.register(:e, :p, 'Ann', 'A', NULL);\n",
	e => $email, p => canary('pw2', '-long-enough'));
my $cid = $node->safe_psql('postgres', "SELECT id FROM bank.customers WHERE first_name = 'Ann'");
ok($cid =~ /^\d+$/, 'the customer was registered');

# logins: wrong password, unknown email, a stray TOTP code
call("SET ROLE bank_anon;\nSELECT status FROM bank.login(:e, :p, NULL);\n",
	e => $email, p => canary('wrongpw'));
call("SET ROLE bank_anon;\nSELECT status FROM bank.login(:e, :p, NULL);\n",
	e => lc(canary('nobody')) . '@example.com', p => canary('pw3'));
call("SET ROLE bank_anon;\nSELECT status FROM bank.login(:e, :p, :c);\n",
	e => $email, p => $password, c => canary('code'));

# a real session, to act as the customer (its tokens are secrets too)
my ($access, $refresh) = split /\|/, $node->safe_psql('postgres',
	"SELECT access_token || '|' || refresh_token FROM bank.login("
	  . "(SELECT email FROM bank.customers WHERE id = $cid), "
	  . "convert_from(decode('" . unpack('H*', $password) . "', 'hex'), 'UTF8'))");
ok(length($access) > 20 && length($refresh) > 20, 'logged in');
push @canaries, $access, $refresh;

# tokens: forged, garbage, refresh with a bad token
call("BEGIN;\nSET LOCAL ROLE bank_customer;\nSELECT bank.authenticate(:t);\nCOMMIT;\n",
	t => 'eyJhbGciOiJub25lIn0.' . canary('tokenbody') . '.');
call("BEGIN;\nSET LOCAL ROLE bank_customer;\nSELECT bank.authenticate(:t);\nCOMMIT;\n",
	t => canary('garbage'));
call("SET ROLE bank_anon;\nSELECT status FROM bank.refresh(:t);\n", t => canary('refresh'));

# authenticated calls that fail: wrong old password, weak new one, bad MFA
# code, bad phone; and ones that succeed with personal data
my $auth = "BEGIN;\nSET LOCAL ROLE bank_customer;\nSELECT bank.authenticate(:tok);\n";
call($auth . "SELECT bank.change_password(:o, :p);\nCOMMIT;\n",
	tok => $access, o => canary('oldpw', '-long-enough'), p => canary('newpw', '-long-enough'));
call($auth . "SELECT bank.change_password(:o, :p);\nCOMMIT;\n",
	tok => $access, o => $password, p => canary('short'));
call($auth . "SELECT bank.mfa_enroll();\nSELECT bank.mfa_confirm(:c);\nCOMMIT;\n",
	tok => $access, c => canary('mfacode'));
call($auth . "SELECT bank.update_profile(:ph, :nid, :addr);\nCOMMIT;\n",
	tok => $access, ph => canary('phone'), nid => 'X', addr => 'Y');
call($auth . "SELECT bank.update_profile(:ph, :nid, :addr);\nCOMMIT;\n",
	tok => $access, ph => '+1 555 0100', nid => canary('nationalid'),
	addr => canary('address', ' Main Street'));
call($auth . "SELECT bank.export_my_data();\nCOMMIT;\n", tok => $access);

# staff: an API key (shown once: a secret), used from the wrong role and unknown
my $key = $node->safe_psql('postgres',
	"SET ROLE regress_admin; SELECT api_key FROM bank.create_api_key('bank_service', "
	  . "ARRAY['deposit'], now() + interval '1 day', 'canary key')");
ok($key =~ /^pbk_/, 'an API key was created');
push @canaries, $key;
call("BEGIN;\nSET LOCAL ROLE bank_teller;\nSELECT bank.authenticate_api_key(:k);\nCOMMIT;\n",
	k => $key);
call("BEGIN;\nSET LOCAL ROLE bank_service;\nSELECT bank.authenticate_api_key(:k);\nCOMMIT;\n",
	k => canary('apikey'));
call("SET ROLE regress_teller;\nSELECT bank.get_customer(:id);\n", id => $cid);
call("SET ROLE regress_teller;\nSELECT bank.create_customer(:e, 'Bo', 'B');\n",
	e => lc(canary('staffmail')) . '@example.com');
call("SET ROLE regress_teller;\nSELECT bank.create_customer(:e, 'Bo', 'B');\n",
	e => 'bad ' . lc(canary('badmail')));

# the control: a literal canary in a failing statement's text is logged
my $control = 'CANARYCONTROLliteral';
$node->psql('postgres', "SET ROLE bank_anon; SELECT bank.register('$control', 'x', 'y', 'z')");

$node->stop;
my $log = slurp_file($node->logfile);

like($log, qr/CANARYCONTROLliteral/, 'control: failing statement text is logged');
like($log, qr/PB045|PB040|PB043|PB047|28P01|PB042/, 'the failing calls did fail');
for my $c (@canaries)
{
	my $shown = length($c) > 40 ? substr($c, 0, 12) . '...' : $c;
	ok(index($log, $c) < 0, "log does not contain $shown");
}
ok(index($log, $jwt_secret) < 0, 'log does not contain the token signing key');
ok(index($log, $master_key) < 0, 'log does not contain the master key');

done_testing();
