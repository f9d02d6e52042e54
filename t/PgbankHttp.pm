# t/PgbankHttp.pm -- what the HTTP TAP tests (t/1xx_http_*.pl) share: a
# cluster with pgbank (and pg_stat_statements, to count the queries the
# server sends), the real pgbank-http in front of it on a loopback port, an
# HTTP client, and helpers to make customers, tokens and API keys.
package PgbankHttp;

use strict;
use warnings;

use Cwd qw(getcwd);
use Digest::SHA qw(hmac_sha256);
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use MIME::Base64 qw(encode_base64);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

our $JSON = JSON::PP->new->canonical;

# the binaries `make` builds
# every server started, for END
my @servers;

# a file of the source tree
sub repo_path
{
	my ($name) = @_;
	return ($ENV{TESTDIR} // getcwd()) . "/$name";
}

sub shim_path
{
	my ($name) = @_;
	my $path = repo_path("shim/$name");
	BAIL_OUT("$path is not built (run make)") unless -x $path;
	return $path;
}

# new(name, allows_streaming => 1 for a primary with standbys): a started
# cluster with the extension, and no server yet
sub new
{
	my ($class, $name, %opt) = @_;
	my $self = bless {}, $class;
	$self->{secret} = 'tapsecret' . join('', map { ('a' .. 'z')[ rand 26 ] } 1 .. 40);
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(allows_streaming => $opt{allows_streaming} ? 1 : 0);
	$node->append_conf(
		'postgresql.conf', qq{
shared_preload_libraries = 'pgbank, pg_stat_statements'
pg_stat_statements.track = all
pgbank.jwt_secret = '$self->{secret}'
pgbank.master_key = 'tapmasterkey0123456789abcdefghijklmnopqrstuv'
pgbank.bcrypt_cost = 4
pgbank.max_failed_logins = 100
max_connections = 60
max_worker_processes = 16
log_min_messages = warning
});
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION pgbank CASCADE');
	$node->safe_psql('postgres', 'CREATE EXTENSION pg_stat_statements');
	$self->{node} = $node;
	return $self;
}

sub node { return $_[0]->{node}; }
sub url { return $_[0]->{url}; }

# start the server; extra flags as a list
sub start_server
{
	my ($self, @flags) = @_;
	my $node = $self->{node};
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $secret_file = $node->basedir . '/jwt_secret';
	open(my $fh, '>', $secret_file) or die $!;
	print $fh $self->{secret};
	close $fh;
	my $log = $node->basedir . '/pgbank-http.log';
	$self->{log} = $log;
	my @cmd = (
		shim_path('pgbank-http'), '--listen', '127.0.0.1', '--port', $port,
		'--dsn', 'host=' . $node->host . ' port=' . $node->port . ' user=bank_gateway dbname=postgres',
		'--jwt-secret-file', $secret_file, '--threads', '2', '--connections', '2',
		# rate limits off unless a test turns them on (t/108, t/109): the
		# other tests log in and read far faster than the defaults allow
		'--rate-limit', '0', @flags);
	# the server names its connections (pgbank-http, pgbank-http read);
	# the TAP framework's PGAPPNAME (the script's name) would override that
	local $ENV{PGAPPNAME};
	delete $ENV{PGAPPNAME};
	$self->{server} = IPC::Run::start(\@cmd, '<', \undef, '>>', $log, '2>>', $log);
	push @servers, $self->{server};
	# with --tls-cert (a self-signed one: it is its own CA) the server
	# speaks HTTPS only; HTTP::Tiny needs IO::Socket::SSL for it, curl not
	my ($tls) = map { $flags[ $_ + 1 ] } grep { $flags[$_] eq '--tls-cert' } 0 .. $#flags;
	$self->{tls_ca} = $tls;
	$self->{url} = ($tls ? 'https' : 'http') . "://127.0.0.1:$port";
	$self->{http} = HTTP::Tiny->new(keep_alive => 1, timeout => 30);
	my $ready = 0;
	for (1 .. 200)
	{
		my $status = $tls
		  ? `curl -s -o /dev/null -w '%{http_code}' --max-time 2 --cacert '$tls' '$self->{url}/readyz'`
		  : HTTP::Tiny->new(timeout => 2)->get("$self->{url}/readyz")->{status};
		if ($status == 200) { $ready = 1; last; }
		usleep(50_000);
	}
	BAIL_OUT("pgbank-http did not become ready: " . slurp_file($log)) unless $ready;
	return $self;
}

sub stop_server
{
	my ($self) = @_;
	return unless $self->{server};
	$self->{server}->signal('TERM');
	$self->{server}->finish;
	my $rc = $? >> 8;
	delete $self->{server};
	return $rc;
}

sub server_log { return slurp_file($_[0]->{log}); }

# request(method, path, headers => {}, body => ref or string) -> (status, decoded body, response)
sub request
{
	my ($self, $method, $path, %o) = @_;
	my %h = %{ $o{headers} // {} };
	my %args = (headers => \%h);
	if (exists $o{body})
	{
		$args{content} = ref $o{body} ? $JSON->encode($o{body}) : $o{body};
		$h{'Content-Type'} //= 'application/json';
	}
	my $r = $self->{http}->request($method, $self->{url} . $path, \%args);
	my $data;
	if (length($r->{content} // '') && ($r->{headers}{'content-type'} // '') =~ /json/)
	{
		$data = eval { $JSON->decode($r->{content}) };
	}
	return ($r->{status}, $data, $r);
}

sub bearer { return { Authorization => "Bearer $_[0]" }; }

# read_answer(socket, t0, wait => seconds, eof => seconds): read one
# HTTP/1.1 answer (head, and a body of its Content-Length) from a raw
# socket within wait seconds (10); with eof, wait that much longer for the
# server to end the connection.  Returns a hash: status (undef when none
# came), headers (lower-case names), body, json (decoded when the type is
# JSON), closed (the server ended the connection), seconds (since t0),
# socket.
sub read_answer
{
	my ($s, $t0, %o) = @_;
	my $buf = '';
	my %r = (closed => 0);
	my $deadline = Time::HiRes::time() + ($o{wait} // 10);
	my $rin = '';
	vec($rin, fileno($s), 1) = 1;
	while (Time::HiRes::time() < $deadline)
	{
		my $left = $deadline - Time::HiRes::time();
		last unless select(my $rout = $rin, undef, undef, $left > 0 ? $left : 0);
		my $n = sysread($s, my $chunk, 65536);
		if (!$n)
		{
			$r{closed} = 1;
			last;
		}
		$buf .= $chunk;
		# a whole answer (with Content-Length) is enough
		if ($buf =~ /^(.*?)\r\n\r\n/s)
		{
			my $head = $1;
			my ($cl) = $head =~ /^content-length:\s*(\d+)/mi;
			last if defined $cl && length($buf) >= length($head) + 4 + $cl;
		}
	}
	# eof => seconds more for the end of the connection after the answer
	if (!$r{closed} && $o{eof})
	{
		if (select(my $rout = $rin, undef, undef, $o{eof}))
		{
			my $n = sysread($s, my $chunk, 65536);
			$r{closed} = 1 unless $n;
		}
	}
	$r{seconds} = Time::HiRes::time() - $t0;
	$r{socket} = $s;
	return \%r unless $buf =~ /^HTTP\/1\.1 (\d{3})[^\r]*\r\n(.*?)\r\n\r\n(.*)$/s;
	$r{status} = $1;
	$r{body} = $3;
	for my $line (split /\r\n/, $2)
	{
		my ($k, $v) = split /:\s*/, $line, 2;
		$r{headers}{ lc $k } = $v;
	}
	$r{json} = eval { $JSON->decode($r{body}) }
	  if ($r{headers}{'content-type'} // '') =~ /json/;
	return \%r;
}

# a registered customer with a session: { id, email, token, refresh }
sub customer
{
	my ($self, $email) = @_;
	my ($st, $d) = $self->request('POST', '/v1/register',
		body => { email => $email, password => 'correct horse battery staple',
			first_name => 'Test', last_name => 'Customer' });
	die "register $email: $st" unless $st == 201;
	my $id = $d->{customer_id};
	($st, $d) = $self->request('POST', '/v1/login',
		body => { email => $email, password => 'correct horse battery staple' });
	die "login $email: $st" unless $st == 200;
	return { id => $id, email => $email, token => $d->{access_token},
		refresh => $d->{refresh_token} };
}

# an API key for a staff role, made in SQL by the superuser
sub api_key
{
	my ($self, $role, $scopes) = @_;
	$scopes //= '{*}';
	return $self->{node}->safe_psql('postgres',
		"SELECT api_key FROM bank.create_api_key('$role', '$scopes', now() + interval '1 day')");
}

# how many requests the server has sent to the database, counted by the
# database itself: executions of the statement every request starts with
# (role switch, credential, request context)
sub db_requests
{
	my ($self) = @_;
	return $self->{node}->safe_psql('postgres',
		"SELECT coalesce(sum(calls), 0) FROM pg_stat_statements"
		  . " WHERE query ~ '^SELECT set_config\\(.*bank.set_request_context\\('");
}

sub b64url
{
	my ($s) = @_;
	my $b = encode_base64($s, '');
	$b =~ tr{+/}{-_};
	$b =~ s/=+$//;
	return $b;
}

# a token signed with key (default: the cluster's secret)
sub make_token
{
	my ($self, %o) = @_;
	my $now = time();
	my $header = $o{header} // { alg => 'HS256', typ => 'JWT' };
	my $claims = {
		iss => 'pgbank', aud => 'pgbank-api', sub => "$o{sub}", sid => "$o{sid}",
		role => 'bank_customer', iat => $now, nbf => $now, exp => $now + 300,
		%{ $o{claims} // {} } };
	for my $k (keys %$claims) { delete $claims->{$k} unless defined $claims->{$k}; }
	my $signing = b64url($JSON->encode($header)) . '.' . b64url($JSON->encode($claims));
	return "$signing." if $o{unsigned};
	return "$signing." . b64url(hmac_sha256($signing, $o{key} // $self->{secret}));
}

# a test that dies leaves no server behind: END runs before global
# destruction, where DESTROY may find the harness already gone
END
{
	for my $server (@servers)
	{
		eval { $server->kill_kill; };
	}
}

sub DESTROY
{
	my ($self) = @_;
	if ($self->{server})
	{
		$self->{server}->kill_kill;
	}
}

1;
