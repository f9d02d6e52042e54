# t/104_http_minor_batch_keys.pl -- amounts as integers of minor units,
# POST /v1/transfers/batch, transfers read through the extension's
# functions (another customer's id is 404), API keys acting as their own
# role (a revoked key, a key on another role's route), and a second server
# on the same port refusing to start.

use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgbankTest;
use PgbankHttp;

my $h = PgbankHttp->new('minor');
my $node = $h->node;
$h->start_server;
my ($st, $d, $r);

my $alice = $h->customer('alice@example.com');
my $bob = $h->customer('bob@example.com');
my $aa = PgbankHttp::bearer($alice->{token});
my $ba = PgbankHttp::bearer($bob->{token});
($st, $d) = $h->request('POST', '/v1/accounts', headers => $aa, body => { type => 'checking', name => 'a', currency => 'USD' });
my $a1 = $d->{id};
($st, $d) = $h->request('POST', '/v1/accounts', headers => $ba, body => { type => 'checking', name => 'b', currency => 'USD' });
my $b1 = $d->{id};
($st, $d) = $h->request('POST', '/v1/accounts', headers => $ba, body => { type => 'checking', name => 'y', currency => 'JPY' });
my $bj = $d->{id};
my $svc = { 'X-API-Key' => $h->api_key('bank_service') };

# --- amounts as integers of minor units
($st, $d) = $h->request('POST', '/v1/deposits', headers => { %$svc, 'Idempotency-Key' => 'm-1' }, body => '{"account": ' . $a1 . ', "amount": 10050}');
is_deeply([ $st, $d->{amount} ], [ 201, '100.50' ], 'a deposit of 10050 minor units is 100.50 USD');
($st, $d) = $h->request('POST', '/v1/deposits', headers => { %$svc, 'Idempotency-Key' => 'm-2' }, body => '{"account": ' . $bj . ', "amount": 500}');
is_deeply([ $st, $d->{amount} ], [ 201, '500' ], '... and 500 minor units of yen are 500 yen');
($st, $d) = $h->request('POST', '/v1/transfers', headers => { %$aa, 'Idempotency-Key' => 'm-3' }, body => '{"from_account": ' . $a1 . ', "to_account": ' . $b1 . ', "amount": 1999}');
is_deeply([ $st, $d->{amount} ], [ 201, '19.99' ], 'a transfer of 1999 minor units');
my $t1 = $d->{id};
($st, $d) = $h->request('POST', '/v1/transfers', headers => { %$aa, 'Idempotency-Key' => 'm-3' }, body => { from_account => $a1, to_account => $b1, amount => '19.99' });
is_deeply([ $st, $d->{id} ], [ 201, $t1 ], '... the same transfer as "19.99" (one fingerprint)');
my %bad = (
	'a float' => [ '10.5', 'invalid_amount' ],
	'an exponent' => [ '1e3', 'invalid_amount' ],
	'an integer with an exponent' => [ '1E2', 'invalid_amount' ],
	'zero' => [ '0', 'invalid_amount' ],
	'negative' => [ '-100', 'invalid_amount' ],
	'above 10^15' => [ '1000000000000001', 'amount_out_of_range' ],
	'far too large' => [ '123456789012345678901234567890', 'amount_out_of_range' ],
	'a string with an exponent' => [ '"1e3"', 'invalid_amount' ],
	'true' => [ 'true', 'invalid_amount' ]);
for my $name (sort keys %bad)
{
	($st, $d) = $h->request('POST', '/v1/transfers', headers => { %$aa, 'Idempotency-Key' => "bad-$name" },
		body => '{"from_account": ' . $a1 . ', "to_account": ' . $b1 . ', "amount": ' . $bad{$name}[0] . '}');
	is_deeply([ $st, $d->{code} ], [ 400, $bad{$name}[1] ], "amount $name: 400 $bad{$name}[1]");
}
is($node->safe_psql('postgres', "SELECT count(*) FROM bank.transfers WHERE idempotency_key LIKE 'bad-%'"), 0, '... and nothing written');
($st, $d) = $h->request('POST', '/v1/transfers', headers => { %$aa, 'Idempotency-Key' => 'm-4' }, body => '{"from_account": ' . $b1 . ', "to_account": ' . $a1 . ', "amount": 100}');
is($st, 404, "minor units out of another customer's account: 404");
($st, $d) = $h->request('POST', '/v1/holds', headers => { %$aa, 'Idempotency-Key' => 'm-5' }, body => '{"from_account": ' . $a1 . ', "to_account": ' . $b1 . ', "amount": 1000}');
my $hold = $d->{id};
($st, $d) = $h->request('POST', "/v1/holds/$hold/capture", headers => $aa, body => '{"amount": 250}');
is_deeply([ $st, $d->{posted_amount} ], [ 200, '2.50' ], 'a partial capture of 250 minor units');

# --- transfers through bank.get_transfer and bank.list_transfers
($st, $d) = $h->request('POST', '/v1/transfers', headers => { %$aa, 'Idempotency-Key' => 'm-6' }, body => { from_account => $a1, to_account => $b1, amount => '900.00' });
is_deeply([ $st, $d->{code} ], [ 422, 'insufficient_funds' ], 'a declined transfer');
($st, $d) = $h->request('GET', "/v1/transfers?account=$a1", headers => $aa);
is_deeply([ $st, $d->{data}[0]{status}, $d->{data}[0]{failure_code} ], [ 200, 'failed', 'PB001' ], '... is listed for the account that attempted it, newest first');
my $failed = $d->{data}[0]{id};
($st, $d) = $h->request('GET', "/v1/transfers/$failed", headers => $aa);
is_deeply([ $st, $d->{status} ], [ 200, 'failed' ], '... and read by id');
($st, $d) = $h->request('GET', "/v1/transfers?account=$a1&limit=1&after=$failed", headers => $aa);
is_deeply([ $st, scalar @{ $d->{data} }, $d->{data}[0]{id} < $failed ? 1 : 0 ], [ 200, 1, 1 ], '... pages go on below it');
($st, $d) = $h->request('POST', '/v1/transfers', headers => { %$ba, 'Idempotency-Key' => 'b-1' }, body => { from_account => $b1, to_account => $bj, amount => '1.00' });
($st, $d) = $h->request('POST', '/v1/accounts', headers => $ba, body => { type => 'savings', name => 'b2', currency => 'USD' });
my $b2 = $d->{id};
($st, $d) = $h->request('POST', '/v1/transfers', headers => { %$ba, 'Idempotency-Key' => 'b-2' }, body => { from_account => $b1, to_account => $b2, amount => '1.00' });
my $bt = $d->{id};
ok($bt, "bob's own transfer");
($st, $d) = $h->request('GET', "/v1/transfers/$bt", headers => $aa);
my ($st_none, $d_none) = $h->request('GET', '/v1/transfers/99999999', headers => $aa);
is_deeply([ $st, $d->{code}, $d->{detail} =~ s/\d+/N/gr ], [ $st_none, $d_none->{code}, $d_none->{detail} =~ s/\d+/N/gr ],
	"alice on bob's transfer: exactly like a transfer that does not exist");
is($st, 404, '... 404');
($st, $d) = $h->request('GET', "/v1/transfers?account=$b2", headers => $aa);
is_deeply([ $st, $d->{code} ], [ 404, 'account_not_found' ], "alice listing bob's account: 404");

# --- a batch from the payment rail
my @items = (
	{ from_account => $a1, to_account => $b1, amount => '1.00', idempotency_key => 'bt-1' },
	{ from_account => $a1, to_account => $b1, amount => 250, idempotency_key => 'bt-2', description => 'minor' },
	{ from_account => $a1, to_account => $b1, amount => '900.00', idempotency_key => 'bt-3' },
	{ from_account => $a1, to_account => 99999999, amount => '1.00', idempotency_key => 'bt-4' });
($st, $d) = $h->request('POST', '/v1/transfers/batch', headers => $svc, body => { items => \@items });
is($st, 200, 'a batch: 200');
is_deeply([ map { join ':', $_->{item}, $_->{status} // '-', $_->{code} // '-' } @{ $d->{data} } ],
	[ '1:posted:-', '2:posted:-', '3:failed:PB001', '4:-:PB009' ], '... one result per item, in item order');
my @ids = map { $_->{transfer_id} } @{ $d->{data} };
($st, $d) = $h->request('POST', '/v1/transfers/batch', headers => $svc, body => { items => \@items });
is_deeply([ map { $_->{transfer_id} } @{ $d->{data} } ], \@ids, 'the same batch again: the same transfers');
ok(!(grep { $_->{replayed} ne ($_->{transfer_id} ? 1 : 0) } @{ $d->{data} }), '... replayed');
($st, $d) = $h->request('POST', '/v1/transfers/batch', headers => $svc, body => { items => [] });
is_deeply([ $st, $d->{code} ], [ 400, 'invalid_batch' ], 'an empty batch: 400 invalid_batch');
($st, $d) = $h->request('POST', '/v1/transfers/batch', headers => $svc, body => { items => [ { %{ $items[0] }, idempotency_key => 'bt-9', colour => 'red' } ] });
is_deeply([ $st, $d->{code}, $d->{detail} ], [ 400, 'invalid_batch', 'item 1: unknown field colour' ], 'an unknown field in an item: 400 naming it');
($st, $d) = $h->request('POST', '/v1/transfers/batch', headers => $svc,
	body => '{"items": [{"from_account": ' . $a1 . ', "to_account": ' . $b1 . ', "amount": 1e2, "idempotency_key": "bt-10"}]}');
is_deeply([ $st, $d->{code} ], [ 400, 'invalid_amount' ], 'an amount in exponent form in an item: 400');
($st, $d) = $h->request('POST', '/v1/transfers/batch', headers => $svc,
	body => '{"items": [{"from_account": ' . $a1 . ', "to_account": ' . $b1 . ', "amount": 1.5, "idempotency_key": "bt-11"}]}');
is_deeply([ $st, $d->{code} ], [ 400, 'invalid_batch' ], 'a float amount in an item: 400');
($st, $d) = $h->request('POST', '/v1/transfers/batch', headers => $svc, body => { items => [ map { { %{ $items[0] }, idempotency_key => "many-$_" } } 1 .. 1001 ] });
ok($st == 413, 'a batch of 1001 items: 413');
is($node->safe_psql('postgres', "SELECT count(*) FROM bank.transfers WHERE idempotency_key ~ '^(bt-(9|1[01])|many-)'"), 0, '... the refused batches wrote nothing');
($st) = $h->request('POST', '/v1/transfers/batch', headers => $aa, body => { items => \@items });
is($st, 403, 'a customer may not send a batch: 403');
my $admin = { 'X-API-Key' => $h->api_key('bank_admin') };
($st) = $h->request('POST', '/v1/transfers/batch', headers => $admin, body => { items => \@items });
is($st, 403, 'nor an admin key: 403');
is($node->safe_psql('postgres', 'SELECT count(*) FROM bank.check_ledger()'), 0, 'the ledger holds');

# --- API keys act as their own role
my $db0 = $h->db_requests;
my $teller = $h->api_key('bank_teller');
($st) = $h->request('GET', "/v1/accounts/$a1", headers => { 'X-API-Key' => $teller });
is($st, 200, 'a new teller key reads an account');
($st) = $h->request('GET', "/v1/accounts/$a1", headers => { 'X-API-Key' => $teller });
is($st, 200, '... again');
is($h->db_requests, $db0 + 2, '... each request one pipeline (the role lookup is not one)');
($st, $d) = $h->request('POST', '/v1/deposits', headers => { 'X-API-Key' => $teller, 'Idempotency-Key' => 'tel-1' }, body => { account => $a1, amount => '1.00' });
is($st, 403, "a teller key on a service route: 403");
($st, $d) = $h->request('POST', '/v1/transfers/batch', headers => { 'X-API-Key' => $teller }, body => { items => \@items });
is($st, 403, '... and on the batch route: 403');
is($node->safe_psql('postgres', "SELECT count(*) FROM bank.transfers WHERE idempotency_key = 'tel-1'"), 0, '... nothing written');
my $db1 = $h->db_requests;
($st, $d) = $h->request('POST', '/v1/deposits', headers => { 'X-API-Key' => $teller, 'Idempotency-Key' => 'tel-2' }, body => { account => $a1, amount => '1.00' });
is($st, 403, 'the role is cached: refused again');
is($h->db_requests, $db1, '... without a request pipeline');
$node->safe_psql('postgres', "SELECT bank.revoke_api_key(id) FROM bank.api_keys WHERE role = 'bank_teller'");
($st, $d, $r) = $h->request('GET', "/v1/accounts/$a1", headers => { 'X-API-Key' => $teller });
is_deeply([ $st, $d->{code} ], [ 401, 'invalid_api_key' ], 'a revoked key is refused at once, though its role is cached');
like($r->{headers}{'www-authenticate'} // '', qr/^ApiKey/, '... with WWW-Authenticate');
($st, $d) = $h->request('GET', "/v1/accounts/$a1", headers => { 'X-API-Key' => $teller });
is_deeply([ $st, $d->{code} ], [ 401, 'invalid_api_key' ], '... and stays refused');
($st, $d) = $h->request('GET', "/v1/accounts/$a1", headers => { 'X-API-Key' => $teller, 'X-Pgbank-Role' => 'bank_admin' });
is($st, 401, '... whatever role a client names');

# --- a second pgbank-http on the same port refuses to start
my ($port) = $h->url =~ /:(\d+)$/;
my ($out, $err) = ('', '');
my $second = IPC::Run::start(
	[ PgbankHttp::shim_path('pgbank-http'), '--listen', '127.0.0.1', '--port', $port,
		'--dsn', 'host=' . $node->host . ' port=' . $node->port . ' user=bank_gateway dbname=postgres',
		'--jwt-secret-file', $node->basedir . '/jwt_secret', '--threads', '2' ],
	'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(20));
$second->finish;
isnt($? >> 8, 0, 'a second server on the same port exits non-zero');
like($err, qr/port $port: another pgbank-http is already listening there/, '... saying why');
my $ok = 0;
for (1 .. 20)
{
	my $c = HTTP::Tiny->new(keep_alive => 0, timeout => 5);
	$ok++ if $c->get($h->url . '/readyz')->{status} == 200;
}
is($ok, 20, 'the first still answers every new connection');

is($h->stop_server, 0, 'the server stops cleanly');
$node->stop;
done_testing();
