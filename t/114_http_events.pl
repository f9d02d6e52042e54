# t/114_http_events.pl -- GET /v1/events: account events as Server-Sent
# Events, through LISTEN/NOTIFY, against a real cluster and pgbank-http.
#
# Two customers each follow their stream while money moves: A to B, B to A,
# A between their own accounts, holds captured and voided, a teller freezing
# and unfreezing one of A's accounts.  Each stream gets exactly its own
# customer's events, in feed order, numbered 1, 2, 3, ... and identical to
# the feed in the database; never the other customer's.  Forged, expired and
# misdirected tokens get 401 before any stream starts.  A client that
# disconnects and reconnects with Last-Event-ID gets exactly what it missed.
# A burst of 200 concurrent transfers reaches the stream once each, in feed
# order.  The NOTIFY payload is a pseudonym, not an id.  Per-customer limits,
# token expiry, a PostgreSQL restart (the listener reconnects, nothing is
# lost) and SIGTERM (streams end at once) are checked at the end.
#
# GET /v1/events is a row of the route table like any other: another method
# is a 405 with Allow, OPTIONS and a CORS preflight are answered (one asking
# for Last-Event-ID too), a browser session's cookie opens a stream,
# /metrics counts it under its route, and opening a stream is one read of
# the subject's rate limit.  Seen failing before it was (the stream was
# dispatched ahead of the table): OPTIONS and the preflight got 405, the
# cookie 401, the metrics said "unmatched", and a fourth stream within the
# rate limit's burst of two was opened (200, not 429).

use strict;
use warnings;

use Digest::SHA qw(hmac_sha256_hex);
use HTTP::Tiny;
use IO::Select;
use IO::Socket::INET;
use IO::Socket::UNIX;
use JSON::PP;
use MIME::Base64 qw(decode_base64);
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Socket qw(SOCK_STREAM);
use Time::HiRes qw(time usleep);
use PgbankTest;
use PgbankHttp;

my $JSON = JSON::PP->new->canonical;

# ---------------------------------------------------------------------
# A minimal SSE client over a raw socket: HTTP/1.1, chunked decoding, SSE
# message parsing (id:, data:, retry:, comments).

sub sse_open
{
	my ($url, $token, %o) = @_;
	my ($host, $port) = $url =~ m{^http://([^:/]+):(\d+)};
	my $sock = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port, Proto => 'tcp',
		Timeout => 10) or die "connect: $!";
	my $req = ($o{method} // 'GET') . " " . ($o{path} // '/v1/events') . " HTTP/1.1\r\nHost: $host\r\n"
	  . "Accept: text/event-stream\r\n";
	$req .= "Authorization: Bearer $token\r\n" if defined $token;
	$req .= "Last-Event-ID: $o{last}\r\n" if defined $o{last};
	$req .= "$_: $o{headers}{$_}\r\n" for keys %{ $o{headers} // {} };
	$req .= "\r\n";
	print $sock $req;
	my $s = { sock => $sock, raw => '', text => '', events => [], comments => 0,
		retry => undef, ended => 0, eof => 0 };
	# the status line and headers
	my $deadline = time() + 20;
	while ($s->{raw} !~ /\r\n\r\n/)
	{
		last unless sse_read($s, $deadline - time());
	}
	my $end = index($s->{raw}, "\r\n\r\n");
	die "no response headers" if $end < 0;
	my $head = substr($s->{raw}, 0, $end);
	$s->{raw} = substr($s->{raw}, $end + 4);
	($s->{status}) = $head =~ m{^HTTP/1\.1 (\d+)};
	for my $line (split /\r\n/, $head)
	{
		$s->{headers}{ lc $1 } = $2 if $line =~ /^([^:]+):\s*(.*)$/;
	}
	if ($s->{status} != 200)
	{
		my $len = $s->{headers}{'content-length'} // 0;
		sse_read($s, $deadline - time()) while length($s->{raw}) < $len && !$s->{eof};
		$s->{body} = eval { decode_json(substr($s->{raw}, 0, $len)) };
		close $sock;
	}
	return $s;
}

# read what is there within $timeout seconds; 0 on EOF or timeout
sub sse_read
{
	my ($s, $timeout) = @_;
	return 0 if $s->{eof};
	$timeout = 0 if $timeout < 0;
	return 0 unless IO::Select->new($s->{sock})->can_read($timeout);
	my $n = sysread($s->{sock}, my $buf, 65536);
	if (!$n)
	{
		$s->{eof} = 1;
		return 0;
	}
	$s->{raw} .= $buf;
	return 1;
}

# decode complete chunks, then complete SSE messages
sub sse_parse
{
	my ($s) = @_;
	while ($s->{raw} =~ /^([0-9a-fA-F]+)\r\n/)
	{
		my ($size, $hl) = (hex($1), length($1) + 2);
		if ($size == 0)
		{
			$s->{ended} = 1;
			$s->{raw} = '';
			last;
		}
		last if length($s->{raw}) < $hl + $size + 2;
		$s->{text} .= substr($s->{raw}, $hl, $size);
		$s->{raw} = substr($s->{raw}, $hl + $size + 2);
	}
	while ((my $i = index($s->{text}, "\n\n")) >= 0)
	{
		my $msg = substr($s->{text}, 0, $i);
		$s->{text} = substr($s->{text}, $i + 2);
		my %m;
		for my $line (split /\n/, $msg)
		{
			if ($line =~ /^:/) { $s->{comments}++; next; }
			$m{$1} = $2 if $line =~ /^(\w+): ?(.*)$/;
		}
		$s->{retry} = $m{retry} if defined $m{retry};
		next unless defined $m{data};
		my $d = decode_json($m{data});
		$d->{sse_id} = $m{id};
		push @{ $s->{events} }, $d;
	}
}

# wait until the stream has $n events (or ended, or $timeout passed)
sub sse_wait
{
	my ($s, $n, $timeout) = @_;
	my $deadline = time() + ($timeout // 60);
	sse_parse($s);
	while (@{ $s->{events} } < $n && !$s->{ended} && time() < $deadline)
	{
		sse_read($s, $deadline - time());
		sse_parse($s);
	}
	return scalar @{ $s->{events} };
}

# read for $secs seconds (what else arrives)
sub sse_idle
{
	my ($s, $secs) = @_;
	my $deadline = time() + $secs;
	while (time() < $deadline && !$s->{eof} && !$s->{ended})
	{
		sse_read($s, $deadline - time());
		sse_parse($s);
	}
}

# wait until the stream has sent event $id (the feed's head)
sub sse_until
{
	my ($s, $id) = @_;
	my $deadline = time() + 30;
	sse_parse($s);
	while ((!@{ $s->{events} } || $s->{events}[-1]{sse_id} < $id) && !$s->{ended}
		&& time() < $deadline)
	{
		sse_read($s, $deadline - time());
		sse_parse($s);
	}
}

# take the events read so far
sub sse_take
{
	my ($s) = @_;
	my @e = @{ $s->{events} };
	$s->{events} = [];
	return @e;
}

sub sse_close { close $_[0]->{sock}; }

# the session id of a token (its sid claim)
sub token_claims
{
	my ($token) = @_;
	my (undef, $payload) = split /\./, $token;
	$payload =~ tr{-_}{+/};
	$payload .= '=' x ((4 - length($payload) % 4) % 4);
	return decode_json(decode_base64($payload));
}

# ---------------------------------------------------------------------

my $APP = 'https://app.example';
my $h = PgbankHttp->new('events');
my $node = $h->node;
$h->start_server('--events-heartbeat', '1', '--events-per-customer', '3', '--cors-origins', $APP);
my $url = $h->url;
my $svc = $h->api_key('bank_service');
my $tel = $h->api_key('bank_teller');
my $A = $h->customer('events-a@example.com');
my $B = $h->customer('events-b@example.com');

sub open_account
{
	my ($c, $name) = @_;
	my ($st, $d) = $h->request('POST', '/v1/accounts', headers => PgbankHttp::bearer($c->{token}),
		body => { type => 'checking', name => $name, currency => 'USD' });
	die "open account: $st" unless $st == 201;
	return $d->{id};
}
my $a1 = open_account($A, 'a one');
my $a2 = open_account($A, 'a two');
my $b1 = open_account($B, 'b one');
my $key = 0;

sub move
{
	my ($c, $path, $body) = @_;
	my ($st, $d) = $h->request('POST', $path,
		headers => { %{ PgbankHttp::bearer($c->{token}) }, 'Idempotency-Key' => 'ev-' . ++$key },
		body => $body);
	die "$path: $st " . $JSON->encode($d // {}) unless $st == 201 || $st == 200;
	return $d;
}
for ([ $a1, '5000' ], [ $b1, '100' ])
{
	my ($st) = $h->request('POST', '/v1/deposits',
		headers => { 'X-API-Key' => $svc, 'Idempotency-Key' => 'dep-' . $_->[0] },
		body => { account => $_->[0], amount => $_->[1] });
	die "deposit: $st" unless $st == 201;
}

# the feed of a customer in the database, as (seq, kind, account, amount)
sub db_feed
{
	my ($cust, $after) = @_;
	$after //= 0;
	my $out = $node->safe_psql('postgres',
		"SELECT seq, kind, account_id, coalesce(transfer_id::text, ''),"
		  . " coalesce(bank.minor_to_amount(amount, 2)::text, '')"
		  . " FROM bank.account_events WHERE customer_id = $cust AND seq > $after ORDER BY seq");
	return [ map { [ split /\|/, $_, -1 ] } grep { length } split /\n/, $out ];
}

sub as_rows
{
	return [ map { [ $_->{sse_id}, $_->{kind}, $_->{account_id}, $_->{transfer_id} // '',
		$_->{amount} // '' ] } @_ ];
}

# --- the streams open ---
my $sa = sse_open($url, $A->{token});
is($sa->{status}, 200, "A's stream opens");
like($sa->{headers}{'content-type'}, qr{^text/event-stream}, '... as text/event-stream');
is($sa->{headers}{'cache-control'}, 'no-store', '... not cached');
ok(!defined $sa->{headers}{'content-length'}, '... without a length (a stream)');
my $sb = sse_open($url, $B->{token});
is($sb->{status}, 200, "B's stream opens");
sse_idle($sa, 1.2);
is($sa->{retry}, 2000, 'the stream tells the client how long to wait before reconnecting');
ok($sa->{comments} >= 1, 'heartbeat comments arrive');
is(scalar sse_take($sa), 0, 'a stream without Last-Event-ID starts after the latest event (the deposit is not replayed)');
my ($a_head) = $node->safe_psql('postgres', "SELECT last_seq FROM bank.event_feeds WHERE customer_id = $A->{id}");
is($a_head, 1, "A's feed holds the deposit");

# --- activity of every kind ---
move($A, '/v1/transfers', { from_account => $a1, to_account => $b1, amount => '10' });
move($B, '/v1/transfers', { from_account => $b1, to_account => $a1, amount => '3' });
move($A, '/v1/transfers', { from_account => $a1, to_account => $a2, amount => '7' });
my $hold = move($A, '/v1/holds', { from_account => $a1, to_account => $b1, amount => '20' });
move($A, "/v1/holds/$hold->{id}/capture", { amount => '15' });
my $hold2 = move($B, '/v1/holds', { from_account => $b1, to_account => $a1, amount => '5' });
move($B, "/v1/holds/$hold2->{id}/void", undef);
for my $op ('freeze', 'unfreeze')
{
	my ($st) = $h->request('POST', "/v1/accounts/$a2/$op", headers => { 'X-API-Key' => $tel },
		body => { reason => 'checking' });
	is($st, 200, "a teller can $op A's account");
}

my @want_a = (
	[ 'transfer.debit', $a1, '-10.00' ], [ 'transfer.credit', $a1, '3.00' ],
	[ 'transfer.debit', $a1, '-7.00' ], [ 'transfer.credit', $a2, '7.00' ],
	[ 'hold.created', $a1, '-20.00' ], [ 'hold.captured', $a1, '-15.00' ],
	[ 'hold.created', $a1, '5.00' ], [ 'hold.voided', $a1, '5.00' ],
	[ 'account.frozen', $a2, undef ], [ 'account.unfrozen', $a2, undef ]);
my @want_b = (
	[ 'transfer.credit', $b1, '10.00' ], [ 'transfer.debit', $b1, '-3.00' ],
	[ 'hold.created', $b1, '20.00' ], [ 'hold.captured', $b1, '15.00' ],
	[ 'hold.created', $b1, '-5.00' ], [ 'hold.voided', $b1, '-5.00' ]);
sse_wait($sa, scalar @want_a, 30);
sse_wait($sb, scalar @want_b, 30);
sse_idle($sa, 1.5);
sse_idle($sb, 1.5);
my @ea = sse_take($sa);
my @eb = sse_take($sb);
is_deeply([ map { [ $_->{kind}, $_->{account_id}, $_->{amount} ] } @ea ], \@want_a,
	"A's stream: exactly A's events, in order (both sides of A's own transfer, the teller's freeze)");
is_deeply([ map { [ $_->{kind}, $_->{account_id}, $_->{amount} ] } @eb ], \@want_b,
	"B's stream: exactly B's events, in order");
is_deeply([ map { $_->{sse_id} } @ea ], [ 2 .. 11 ], "A's event ids are A's feed positions, without a gap");
is_deeply([ map { $_->{sse_id} } @eb ], [ 2 .. 7 ], "B's event ids are B's feed positions, without a gap");
is_deeply(as_rows(@ea), db_feed($A->{id}, 1), "A's stream is A's feed in the database");
is_deeply(as_rows(@eb), db_feed($B->{id}, 1), "B's stream is B's feed in the database");
ok(!(grep { $_->{account_id} != $b1 } @eb), "B's stream names none of A's accounts");
ok(!(grep { $_->{account_id} != $a1 && $_->{account_id} != $a2 } @ea), "A's stream names none of B's accounts");

# --- nobody follows E: E's commits do not NOTIFY (a NOTIFY takes a
# database-wide lock through the commit) ---
my $E = $h->customer('events-e@example.com');
my $e1 = open_account($E, 'e one');
my $quiet = $node->safe_psql('postgres',
	"LISTEN pgbank_events; SELECT bank.deposit($e1, 1, 'quiet-probe') IS NOT NULL; SELECT 1;");
unlike($quiet, qr/Asynchronous notification/, 'a customer nobody follows: no NOTIFY');
is($node->safe_psql('postgres', "SELECT count(*) FROM bank.account_events WHERE customer_id = $E->{id}"),
	1, '... but the event is in the feed');

# --- the NOTIFY payload: a pseudonym, not an id or an amount ---
my $notes = $node->safe_psql('postgres',
	"LISTEN pgbank_events; SELECT bank.deposit($b1, 1, 'notify-probe') IS NOT NULL; SELECT 1;");
my ($payload) = $notes =~ /Asynchronous notification "pgbank_events" with payload "([^"]*)"/;
is($payload, substr(hmac_sha256_hex("pgbank-events:$B->{id}", $h->{secret}), 0, 32),
	'the NOTIFY payload is the HMAC pseudonym of the customer');
unlike($notes, qr/payload "[^"]*\b($B->{id}|$b1|1\.00)\b/, '... which names no id and no amount');
sse_wait($sb, 1, 30);
my @probe = sse_take($sb);
is_deeply([ map { [ $_->{kind}, $_->{amount} ] } @probe ], [ [ 'transfer.credit', '1.00' ] ],
	'a deposit made in SQL reaches the stream too');

# --- attackers: no stream, 401 before anything starts ---
my $sid_a = token_claims($A->{token})->{sid};
my %bad = (
	'a token signed with another key' => $h->make_token(sub => $A->{id}, sid => $sid_a, key => 'x' x 40),
	'an expired token' => $h->make_token(sub => $A->{id}, sid => $sid_a,
		claims => { exp => time() - 3600, iat => time() - 7200, nbf => time() - 7200 }),
	"B's id with A's session" => $h->make_token(sub => $B->{id}, sid => $sid_a),
	'an unsigned token' => $h->make_token(sub => $B->{id}, sid => $sid_a, unsigned => 1,
		header => { alg => 'none', typ => 'JWT' }));
for my $what (sort keys %bad)
{
	my $s = sse_open($url, $bad{$what});
	is($s->{status}, 401, "$what: 401");
	is($s->{body}{code}, 'invalid_token', '... invalid_token, as problem+json');
	like($s->{headers}{'www-authenticate'} // '', qr/^Bearer /, '... with WWW-Authenticate');
}
my $s = sse_open($url, undef);
is($s->{status}, 401, 'no credential: 401');
$s = sse_open($url, undef, headers => { 'X-API-Key' => $svc });
is($s->{status}, 403, 'an API key: 403 (streams are for customers)');
$s = sse_open($url, $A->{token}, method => 'POST');
is($s->{status}, 405, 'POST: 405');
$s = sse_open($url, $A->{token}, last => 'abc');
is($s->{status}, 400, 'a Last-Event-ID that is not a number: 400');
is($s->{body}{code}, 'invalid_argument', '... invalid_argument');
$s = sse_open($url, $A->{token}, last => 1000);
is($s->{status}, 400, "a Last-Event-ID past the customer's latest event: 400");
$s = sse_open($url, $A->{token}, path => '/v1/events?after=3');
is($s->{status}, 400, 'a query parameter: 400');
$s = sse_open($url, $A->{token}, last => '-1');
is_deeply([ $s->{status}, $s->{body}{code} ], [ 400, 'invalid_argument' ], 'a negative Last-Event-ID: 400');

# --- a row of the route table: methods, OPTIONS, CORS, cookies ---
$s = sse_open($url, $A->{token}, method => 'PUT');
is_deeply([ $s->{status}, $s->{body}{code}, $s->{headers}{allow} ], [ 405, 'method_not_allowed', 'GET, OPTIONS' ],
	'PUT: 405 method_not_allowed, Allow: GET, OPTIONS');
my ($st, $d, $r) = $h->request('OPTIONS', '/v1/events');
is_deeply([ $st, $r->{headers}{allow} ], [ 204, 'GET, OPTIONS' ], 'OPTIONS: 204 with Allow');
($st, $d, $r) = $h->request('OPTIONS', '/v1/events', headers => { Origin => $APP,
	'Access-Control-Request-Method' => 'GET',
	'Access-Control-Request-Headers' => 'authorization,last-event-id' });
is($st, 204, 'a CORS preflight from an allowed origin: 204');
is_deeply([ map { $r->{headers}{"access-control-allow-$_"} } qw(origin methods headers) ],
	[ $APP, 'GET', 'authorization,last-event-id' ], '... allowing GET with Authorization and Last-Event-ID');
($st, $d, $r) = $h->request('OPTIONS', '/v1/events', headers => { Origin => $APP,
	'Access-Control-Request-Method' => 'POST' });
is_deeply([ $st, $d->{code} ], [ 403, 'cors_method' ], '... and refusing POST');

# a browser session (cookie, no Authorization) opens its customer's stream
$node->safe_psql('postgres', "SELECT bank.deposit($e1, 4, 'cookie-probe')");
($st, $d, $r) = $h->request('POST', '/v1/browser/login', headers => { Origin => $APP },
	body => { email => $E->{email}, password => 'correct horse battery staple' });
is($st, 200, 'a browser session for E');
my ($cookie) = grep { defined } map { /^(__Secure-pgbank-access=[^;]+)/ ? $1 : undef }
  (ref $r->{headers}{'set-cookie'} ? @{ $r->{headers}{'set-cookie'} } : ($r->{headers}{'set-cookie'} // ''));
my $se = sse_open($url, undef, last => 0, headers => { Cookie => $cookie, Origin => $APP });
is($se->{status}, 200, "... opens E's stream with its cookie alone");
is($se->{headers}{'access-control-allow-origin'}, $APP, '... with the CORS headers of its origin');
sse_wait($se, 2, 30);
is_deeply([ map { [ $_->{sse_id}, $_->{kind}, $_->{amount} ] } sse_take($se) ],
	[ [ 1, 'transfer.credit', '1.00' ], [ 2, 'transfer.credit', '4.00' ] ],
	"... and gets E's feed from the start (Last-Event-ID: 0)");
sse_close($se);
$s = sse_open($url, undef, headers => { Cookie => '__Secure-pgbank-access=forged.token.value' });
is_deeply([ $s->{status}, $s->{body}{code} ], [ 401, 'invalid_token' ], 'a forged cookie: 401');

# --- resumption: disconnect, miss events, reconnect with Last-Event-ID ---
my $last = $ea[-1]{sse_id};
sse_close($sa);
my @missed;
for my $i (1 .. 3)
{
	push @missed, move($A, '/v1/transfers', { from_account => $a1, to_account => $b1, amount => "1.0$i" })->{id};
}
$sa = sse_open($url, $A->{token}, last => $last);
is($sa->{status}, 200, "A reconnects with Last-Event-ID: $last");
sse_wait($sa, 3, 30);
sse_idle($sa, 1.5);
@ea = sse_take($sa);
is_deeply([ map { [ $_->{sse_id}, $_->{kind}, $_->{transfer_id}, $_->{amount} ] } @ea ],
	[ map { [ $last + $_, 'transfer.debit', $missed[ $_ - 1 ], "-1.0$_" ] } 1 .. 3 ],
	'exactly the missed events: no gap, no duplicate');
my $mid = sse_open($url, $A->{token}, last => $last - 2);
sse_wait($mid, 5, 30);
sse_idle($mid, 1);
is_deeply([ map { $_->{sse_id} } sse_take($mid) ], [ $last - 1 .. $last + 3 ],
	'resuming from further back replays from there');
sse_close($mid);

# --- a burst of concurrent transfers: each once, in feed order ---
my $b_head = $node->safe_psql('postgres', "SELECT last_seq FROM bank.event_feeds WHERE customer_id = $B->{id}");
sse_until($sb, $b_head);
sse_take($sb);
my @kids;
for my $k (1 .. 4)
{
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		my $http = HTTP::Tiny->new(keep_alive => 1, timeout => 30);
		my $ok = 0;
		for my $i (1 .. 50)
		{
			my $r = $http->request('POST', "$url/v1/transfers", {
				headers => { Authorization => "Bearer $A->{token}", 'Content-Type' => 'application/json',
					'Idempotency-Key' => "burst-$k-$i" },
				content => $JSON->encode({ from_account => $a1, to_account => $b1, amount => '0.01' }) });
			$ok++ if $r->{status} == 201;
		}
		POSIX::_exit($ok == 50 ? 0 : 1);
	}
	push @kids, $pid;
}
my $kids_ok = 1;
for (@kids) { waitpid($_, 0); $kids_ok &&= $? == 0; }
ok($kids_ok, '200 transfers from 4 concurrent clients all posted');
sse_wait($sb, 200, 90);
sse_idle($sb, 2);
my @burst = sse_take($sb);
is(scalar @burst, 200, "B's stream got 200 events");
is_deeply([ map { $_->{sse_id} } @burst ], [ $b_head + 1 .. $b_head + 200 ],
	'... numbered one after the other: none lost, none twice, in feed order');
is_deeply(as_rows(@burst), db_feed($B->{id}, $b_head), "... and exactly B's feed in the database");
my %distinct = map { $_->{transfer_id} => 1 } @burst;
is(scalar keys %distinct, 200, '... one per transfer');

# --- limits: streams per customer ---
my $C = $h->customer('events-c@example.com');
my @cs = map { sse_open($url, $C->{token}) } 1 .. 3;
is_deeply([ map { $_->{status} } @cs ], [ 200, 200, 200 ], 'a customer may open 3 streams (--events-per-customer 3)');
$s = sse_open($url, $C->{token});
is($s->{status}, 429, 'a 4th: 429');
is($s->{body}{code}, 'too_many_streams', '... too_many_streams');
# another customer whose id is C's + 65536 (streams were once counted per
# id modulo 65536: C's three streams then refused this one)
$node->safe_psql('postgres',
	"SELECT setval(pg_get_serial_sequence('bank.customers', 'id'), $C->{id} + 65535)");
my $C2 = $h->customer('events-c2@example.com');
is($C2->{id}, $C->{id} + 65536, "a customer whose id is C's + 65536");
$s = sse_open($url, $C2->{token});
is($s->{status}, 200, '... opens a stream while C has all of its own: counted by the exact customer');
sse_close($s);
sse_close(pop @cs);
my $reopened = 0;
for (1 .. 40)
{
	$s = sse_open($url, $C->{token});
	if ($s->{status} == 200) { $reopened = 1; last; }
	usleep(250_000);
}
ok($reopened, 'a stream the client closed is noticed (heartbeat write fails) and frees its place');
sse_close($_) for @cs, $s;

# --- a revoked session ends the stream; an expiring token ends it ---
my $D = $h->customer('events-d@example.com');
my $sid_d = token_claims($D->{token})->{sid};
my $short = $h->make_token(sub => $D->{id}, sid => $sid_d, claims => { exp => time() + 3 });
my $sd = sse_open($url, $short);
is($sd->{status}, 200, 'a stream with a token that expires in 3 s opens');
my $t0 = time();
sse_idle($sd, 15) until $sd->{ended} || $sd->{eof} || time() - $t0 > 15;
ok($sd->{ended}, 'the stream ends cleanly (final chunk) once the token expires');
cmp_ok(time() - $t0, '<', 12, '... promptly');
sse_close($sd);

# --- /metrics counts the streams under their route ---
($st, $d, $r) = $h->request('GET', '/metrics');
my %by_status = $r->{content} =~ /^pgbank_http_route_responses_total\{route="GET \/v1\/events",status="(\d+)"\} (\d+)$/mg;
cmp_ok($by_status{200} // 0, '>=', 10, "/metrics: route=\"GET /v1/events\" has the streams' 200s");
cmp_ok($by_status{401} // 0, '>=', 6, '... their 401s');
is($by_status{400} // 0, 4, '... their 400s');
cmp_ok($by_status{429} // 0, '>=', 1, '... and 429s (a stream too many)');

# --- PostgreSQL restarts: the listener reconnects, nothing is lost ---
my $b_before = $node->safe_psql('postgres', "SELECT last_seq FROM bank.event_feeds WHERE customer_id = $B->{id}");
sse_until($sb, $b_before);
sse_take($sb);
$node->restart;
# at once, before the server's listener can be back
$node->safe_psql('postgres', "SELECT bank.deposit($b1, 2, 'after-restart-1')");
$node->safe_psql('postgres', "SELECT bank.deposit($b1, 3, 'after-restart-2')");
my $got = 0;
my $sb2;
my $t1 = time();
# the old stream may have ended with the database (its fetch failed) or lived on
sse_wait($sb, 2, 20);
my @after = sse_take($sb);
note(@after < 2 ? 'the old stream ended with the database: reconnecting with Last-Event-ID'
	: 'the old stream lived through the restart');
if (@after < 2)
{
	$sb2 = sse_open($url, $B->{token}, last => $b_before);
	sse_wait($sb2, 2, 30);
	@after = sse_take($sb2);
}
is_deeply([ map { [ $_->{sse_id}, $_->{amount} ] } @after ],
	[ [ $b_before + 1, '2.00' ], [ $b_before + 2, '3.00' ] ],
	'after a PostgreSQL restart the events committed meanwhile arrive, once each');
like($h->server_log, qr/events listener: ready/, 'the listener connected');

# --- SIGTERM: open streams do not hold up the stop ---
my $live = sse_open($url, $A->{token});
is($live->{status}, 200, 'a stream is open');
my $t2 = time();
is($h->stop_server, 0, 'SIGTERM: pgbank-http exits 0');
cmp_ok(time() - $t2, '<', 10, '... promptly, with streams open');
sse_idle($live, 2);
ok($live->{ended} || $live->{eof}, '... and the stream ended');
sse_close($_) for grep { defined } $sa, $sb, $sb2, $live;

# --- streams per thread: one thread allowing two ---
$h->start_server('--threads', '1', '--events-max-streams', '2');
$url = $h->url;
my @two = (sse_open($url, $A->{token}), sse_open($url, $B->{token}));
is_deeply([ map { $_->{status} } @two ], [ 200, 200 ], 'two streams on a thread that allows two');
$s = sse_open($url, $C->{token});
is($s->{status}, 503, 'a third: 503');
is($s->{body}{code}, 'too_many_streams', '... too_many_streams');
is($s->{headers}{'retry-after'}, '5', '... with Retry-After');
sse_close($_) for @two;
is($h->stop_server, 0, 'the server stops');

# --- opening a stream is one read of the subject's rate limit ---
$h->start_server('--threads', '1', '--rate-limit', '1', '--rate-read', '1', '--burst-read', '2');
$url = $h->url;
my @rl = map { sse_open($url, $E->{token}) } 1 .. 3;
is_deeply([ map { $_->{status} } @rl ], [ 200, 200, 429 ],
	'reads limited to a burst of 2: two streams open, a third is refused');
is($rl[2]{body}{code}, 'rate_limited', '... 429 rate_limited');
cmp_ok($rl[2]{headers}{'retry-after'} // 0, '>=', 1, '... with Retry-After');
($st) = $h->request('GET', '/v1/accounts', headers => PgbankHttp::bearer($E->{token}));
is($st, 429, '... and so is any other read of the same customer: one bucket');
sse_close($_) for @rl;
is($h->stop_server, 0, 'the server stops');

# --- the listener connects the pool's way (shim/dbconn.c) ---
# A heartbeat far away (300 s), so that an event reaches the stream only
# through the listener; one thread, so one listener.  Seen failing with the
# listener's own copy of the connection code: its log lines said nothing of
# a next attempt and came once a second (no backoff), and an attempt
# against a database that never answers was never given up.
$h->start_server('--threads', '1', '--events-heartbeat', '300');
$url = $h->url;
open(my $logfh, '<', $h->{log}) or die "$h->{log}: $!";
seek($logfh, 0, 2);		# (the log holds the earlier servers' lines too)

# the server log's lines written since last asked, each with when it was read
sub new_log_lines
{
	my @lines;
	seek($logfh, 0, 1);		# forget the last EOF
	while (my $line = <$logfh>) { push @lines, [ time(), $line ]; }
	return @lines;
}

# wait (up to $secs) for a new log line matching $re; its arrival time, or undef
sub wait_log
{
	my ($re, $secs) = @_;
	my $deadline = time() + $secs;
	while (time() < $deadline)
	{
		for (new_log_lines()) { return $_->[0] if $_->[1] =~ $re; }
		usleep(20_000);
	}
	return undef;
}

my $sl = sse_open($url, $B->{token});
is($sl->{status}, 200, "B's stream opens on a server of one thread");
ok(defined wait_log(qr/events listener: ready/, 10), '... its listener is ready');
$node->safe_psql('postgres', "SELECT bank.deposit($b1, 5, 'listener-1')");
sse_wait($sl, 1, 5);
is_deeply([ map { $_->{amount} } sse_take($sl) ], ['5.00'], '... and a deposit reaches the stream at once');

# 1. PostgreSQL stopped, its socket gone: every attempt is refused
new_log_lines();
$node->stop('immediate');
# [when read, the delay the line names, read as it came (not while pg_ctl ran)]
my @downs;
my $until = time() + 12;
my $first = 1;
while (time() < $until)
{
	for (new_log_lines())
	{
		next unless $_->[1] =~ /events listener: down: (.*)$/;
		my ($why, $when) = ($1, $_->[0]);
		push @downs, [ $when, $why =~ /\(next attempt in (\d+) ms\)$/ ? $1 : undef, !$first ];
	}
	$first = 0;
	usleep(10_000);
}
note(scalar(@downs) . ' failed attempts in 12 s; next attempt in: '
	. join(', ', map { $_->[1] // '?' } @downs) . ' ms');
ok(@downs >= 5, 'PostgreSQL stopped: the listener keeps trying');
my (@off_schedule, @too_soon);
my $gaps = 0;
for my $k (0 .. $#downs)
{
	# the k-th delay: a random point in [b/2, b], b = 100 ms doubling up to 5 s
	my $b = 100 * 2**$k;
	$b = 5000 if $b > 5000;
	my $d = $downs[$k][1];
	push @off_schedule, $k unless defined $d && $d >= $b / 2 && $d <= $b;
	# and the next attempt came no sooner (25 ms tick, 10 ms polling)
	next unless $k < $#downs && $downs[$k][2];
	$gaps++;
	push @too_soon, $k if !defined $d || $downs[ $k + 1 ][0] - $downs[$k][0] < ($d - 40) / 1000;
}
is_deeply(\@off_schedule, [], '... each failure names its next attempt: 50-100 ms, then doubling up to 2.5-5 s');
ok($gaps >= 4 && !@too_soon, "... and no attempt came sooner than its log line said ($gaps gaps timed)")
  or diag('too soon after line(s) ' . join(', ', @too_soon));

# 2. a socket that accepts and never answers in PostgreSQL's place: the
# attempt hangs in the handshake and is given up after 10 s
my $sockpath = $node->host . '/.s.PGSQL.' . $node->port;
unlink $sockpath;
my $silent = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Local => $sockpath, Listen => 64)
  or die "listen on $sockpath: $!";
my $t_silent = time();
my $gave_up = wait_log(qr/events listener: down: timeout connecting or preparing/, 25);
ok(defined $gave_up, sprintf('a database that never answers: the hanging attempt is given up (after %.1f s)',
	defined $gave_up ? $gave_up - $t_silent : -1));
cmp_ok(defined $gave_up ? $gave_up - $t_silent : 0, '>=', 9.5, '... not before the 10 s deadline');

# 3. PostgreSQL back: the listener is ready again and delivers at once
close $silent;
unlink $sockpath;
$node->start;
ok(defined wait_log(qr/events listener: ready/, 15), 'PostgreSQL back: the listener is ready again');
my $ready = 0;
for (1 .. 100)
{
	last if ($ready = HTTP::Tiny->new(timeout => 2)->get("$url/readyz")->{status} == 200);
	usleep(100_000);
}
ok($ready, '... and so is the pool');
sleep 2;		# any fetch the outage left retrying has ended
sse_take($sl);
my $t_dep = time();
$node->safe_psql('postgres', "SELECT bank.deposit($b1, 6, 'listener-2')");
sse_wait($sl, 1, 10);
my @late = sse_take($sl);
is_deeply([ map { $_->{amount} } @late ], ['6.00'],
	sprintf('... a deposit reaches the open stream in %.2f s (the heartbeat is 300 s away)', time() - $t_dep));
sse_close($sl);
close $logfh;
is($h->stop_server, 0, 'the server stops');

done_testing();
