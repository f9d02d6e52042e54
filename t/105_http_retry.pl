# t/105_http_retry.pl -- serialization failures through pgbank-http: the
# database really raises 40001 (a test-only trigger, installed here by the
# superuser, fails the first N inserts into bank.transfers, counted by a
# sequence, which a rollback does not undo).  With N at most --retries, the
# request succeeds with exactly one transfer; with N above it, the client
# gets 503 problem+json and nothing is written.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgbankTest;
use PgbankHttp;

my $h = PgbankHttp->new('retry');
my $node = $h->node;
$h->start_server('--retries', '3');

my $alice = $h->customer('alice@example.com');
my $bob = $h->customer('bob@example.com');
my $aa = PgbankHttp::bearer($alice->{token});
my ($st, $d, $r) = $h->request('POST', '/v1/accounts', headers => $aa, body => { type => 'checking', name => 'a', currency => 'USD' });
my $a1 = $d->{id};
($st, $d) = $h->request('POST', '/v1/accounts', headers => PgbankHttp::bearer($bob->{token}), body => { type => 'checking', name => 'b', currency => 'USD' });
my $b1 = $d->{id};
$node->safe_psql('postgres', "SELECT bank.deposit($a1, 100, 'fund')");

$node->safe_psql('postgres', q{
CREATE TABLE public.fail_inserts (n int NOT NULL);
INSERT INTO public.fail_inserts VALUES (0);
CREATE SEQUENCE public.insert_attempts;
CREATE FUNCTION public.fail_first_inserts() RETURNS trigger LANGUAGE plpgsql
	SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
	IF nextval('public.insert_attempts') <= (SELECT n FROM public.fail_inserts) THEN
		RAISE EXCEPTION 'test: serialization failure' USING ERRCODE = 'serialization_failure';
	END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER zz_fail_first_inserts BEFORE INSERT ON bank.transfers
	FOR EACH ROW EXECUTE FUNCTION public.fail_first_inserts();
});

sub arm
{
	my ($n) = @_;
	$node->safe_psql('postgres', "UPDATE public.fail_inserts SET n = $n; SELECT setval('public.insert_attempts', 1, false)");
}
sub attempts
{
	return $node->safe_psql('postgres', 'SELECT last_value - CASE WHEN is_called THEN 0 ELSE 1 END FROM public.insert_attempts');
}

# N = 2 < 3 retries: the third try succeeds
arm(2);
($st, $d) = $h->request('POST', '/v1/transfers', headers => { %$aa, 'Idempotency-Key' => 'retry-ok' },
	body => { from_account => $a1, to_account => $b1, amount => '1.00' });
is_deeply([ $st, $d->{status} ], [ 201, 'posted' ], 'two serialization failures, then 201');
is(attempts(), 3, '... after three tries');
is($node->safe_psql('postgres', "SELECT count(*) FROM bank.transfers WHERE idempotency_key = 'retry-ok'"), 1, '... exactly one transfer');

# N = 10 > 3 retries: 503, nothing written
arm(10);
($st, $d, $r) = $h->request('POST', '/v1/transfers', headers => { %$aa, 'Idempotency-Key' => 'retry-fail' },
	body => { from_account => $a1, to_account => $b1, amount => '2.00' });
is_deeply([ $st, $d->{code} ], [ 503, 'serialization_failure' ], 'more failures than retries: 503');
like($r->{headers}{'content-type'}, qr{^application/problem\+json}, '... problem+json');
unlike($r->{content}, qr/test: serialization|trigger|fail_first/, '... without the database\'s message');
is(attempts(), 4, '... after one try and three retries');
is($node->safe_psql('postgres', "SELECT count(*) FROM bank.transfers WHERE idempotency_key = 'retry-fail'"), 0, '... nothing written');
is($node->safe_psql('postgres', "SELECT count(*) FROM bank.audit_events WHERE metadata->>'amount' = '200'"), 0, '... nothing audited');

arm(0);
($st, $d) = $h->request('GET', "/v1/accounts/$a1/balance", headers => $aa);
is_deeply([ $st, $d->{posted} ], [ 200, '99.00' ], 'the balance: one transfer of 1.00 moved');
is($node->safe_psql('postgres', 'SELECT count(*) FROM bank.check_ledger()'), 0, 'the ledger holds');

is($h->stop_server, 0, 'the server stops cleanly');
$node->stop;
done_testing();
