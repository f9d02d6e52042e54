# scripts/lib.sh — shell functions shared by scripts/test, scripts/demo and
# shellcheck shell=bash
# bench/run.sh.  Source it from bash: it defines functions and a few PGB_*
# variables, puts PostgreSQL 15's bindir first in PATH, and does nothing else
# until a function is called.
#
#   pgb_install_deps           install the Debian packages the project needs
#                              (only those missing; no apt work otherwise)
#   pgb_build_install          make, then make install (sudo when not root)
#   pgb_ensure_user            create the unprivileged `pgbank` system user
#   pgb_as_user CMD...         run CMD as that user when root, else directly
#   pgb_superuser              name of the superuser initdb creates
#   pgb_free_port              print a free TCP port on 127.0.0.1
#   pgb_cluster_start DATADIR PORT [SOCKDIR] [CONF_LINE...]
#   pgb_cluster_stop DATADIR
#   pgb_cluster_running DATADIR, pgb_cluster_port DATADIR, pgb_cluster_sockdir DATADIR
#   pgb_pg CMD...              pgb_as_user from / (for initdb, pg_ctl)
#
# initdb (and so every PostgreSQL TAP test) refuses to run as root, so when the
# caller is root the server-side commands run as the system user `pgbank`.
# Clusters started here trust local and loopback connections only: they are
# for tests and demos on this machine, never for a shared host.

# Guard against being sourced twice.
if [[ -n "${PGB_LIB_LOADED:-}" ]]; then
    return 0
fi
PGB_LIB_LOADED=1

PGB_PG_MAJOR=15
# PGB_BINDIR may name another PostgreSQL 15 installation (a relocated copy,
# so that a developer's tests do not install into the system's).
PGB_BINDIR=${PGB_BINDIR:-/usr/lib/postgresql/$PGB_PG_MAJOR/bin}
export PGB_BINDIR
PGB_PG_CONFIG=$PGB_BINDIR/pg_config
PGB_OS_USER=pgbank

# Every script that sources this wants the PostgreSQL 15 binaries first.
case ":$PATH:" in
    *":$PGB_BINDIR:"*) ;;
    *) PATH="$PGB_BINDIR:$PATH" ;;
esac
export PATH

# The packages a build, the tests, the HTTP server and the benchmarks need.
PGB_DEPS=(
    build-essential pkg-config
    postgresql-15 postgresql-client-15 postgresql-contrib postgresql-server-dev-15
    libipc-run-perl
    libh2o-evloop-dev libssl-dev libpq-dev
    wrk curl openssl
    clang libclang-rt-14-dev
)

pgb_log() {
    printf '==> %s\n' "$*" >&2
}

pgb_die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

pgb_is_root() {
    [[ "$(id -u)" -eq 0 ]]
}

# Run a command as root: directly when root, through sudo otherwise.
pgb_sudo() {
    if pgb_is_root; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        pgb_die "need root for: $* (install sudo or run as root)"
    fi
}

# Install exactly the missing packages of PGB_DEPS.  A machine that has them
# all does a single dpkg-query and nothing else.
pgb_install_deps() {
    local status pkg missing=()

    if ! command -v dpkg-query >/dev/null 2>&1; then
        pgb_log "not a Debian system: skipping package installation (need: ${PGB_DEPS[*]})"
        return 0
    fi
    # One line per known package: "name ii " when installed.  Unknown names
    # print nothing to stdout, which counts as missing too.
    status=$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${PGB_DEPS[@]}" 2>/dev/null || true)
    for pkg in "${PGB_DEPS[@]}"; do
        if ! grep -q "^$pkg ii" <<<"$status"; then
            missing+=("$pkg")
        fi
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        return 0
    fi

    pgb_log "installing missing packages: ${missing[*]}"
    pgb_sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null
    pgb_sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends "${missing[@]}" </dev/null
}

# Build the extension in the current directory and install it into the
# PostgreSQL 15 installation.  sudo only when the install directories are not
# writable by the caller.
pgb_build_install() {
    local jobs
    jobs=$(nproc 2>/dev/null || echo 2)

    # Each step returns on failure by itself, so that a caller may test the
    # result with `if` (where errexit does not apply).
    pgb_log "building (make -j$jobs)"
    make -j"$jobs" PG_CONFIG="$PGB_PG_CONFIG" </dev/null || return 1

    pgb_log "installing (make install)"
    if [[ -w "$("$PGB_PG_CONFIG" --pkglibdir)" && -w "$("$PGB_PG_CONFIG" --sharedir)/extension" ]]; then
        make install PG_CONFIG="$PGB_PG_CONFIG" </dev/null || return 1
    else
        pgb_sudo make install PG_CONFIG="$PGB_PG_CONFIG" </dev/null || return 1
    fi
}

# Create the unprivileged system user that owns clusters when we are root.
# No-op for a normal user.
pgb_ensure_user() {
    pgb_is_root || return 0
    if ! id -u "$PGB_OS_USER" >/dev/null 2>&1; then
        pgb_log "creating system user $PGB_OS_USER (initdb refuses to run as root)"
        useradd --system --user-group --create-home --home-dir "/var/lib/$PGB_OS_USER" \
            --shell /usr/sbin/nologin --comment "pgbank tests and demo" "$PGB_OS_USER"
    fi
}

# Run a command as the unprivileged user when root, directly otherwise.  The
# environment (PATH, PG*, ...) is kept; HOME becomes that user's.  The current
# directory is kept too, so it must be one the user can enter.
pgb_as_user() {
    if pgb_is_root; then
        pgb_ensure_user
        runuser -u "$PGB_OS_USER" -- env PATH="$PATH" "$@"
    else
        "$@"
    fi
}

# The superuser initdb creates: the OS user that runs it.
pgb_superuser() {
    if pgb_is_root; then
        echo "$PGB_OS_USER"
    else
        id -un
    fi
}

# Print a TCP port on 127.0.0.1 that nothing is bound to.  Ports are tried
# from a random start below the kernel's ephemeral range (32768+), so that an
# outgoing connection is unlikely to take the port before the server binds it.
pgb_free_port() {
    perl -MIO::Socket::INET -e '
        my ($lo, $hi) = (20000, 32000);
        my $start = $lo + int(rand($hi - $lo));
        for my $i (0 .. $hi - $lo - 1) {
            my $port = $lo + ($start - $lo + $i) % ($hi - $lo);
            my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $port,
                                          Proto => "tcp", Listen => 1, ReuseAddr => 0);
            next unless $s;
            close $s;
            # A unix socket of a server on that port would clash too.
            next if -e "/tmp/.s.PGSQL.$port";
            print "$port\n";
            exit 0;
        }
        exit 1;
    ' || pgb_die "no free TCP port found on 127.0.0.1"
}

# Run a server-side command (initdb, pg_ctl) as the cluster owner, from /
# so that a current directory the owner cannot enter does not matter.
pgb_pg() {
    (cd / && pgb_as_user "$@")
}

# True when a postmaster runs on DATADIR.
pgb_cluster_running() {
    [[ -f "$1/postmaster.pid" ]] && pgb_pg pg_ctl -D "$1" status >/dev/null 2>&1
}

# Port of the postmaster running on DATADIR (4th line of postmaster.pid).
pgb_cluster_port() {
    sed -n 4p "$1/postmaster.pid"
}

# Unix socket directory of the postmaster running on DATADIR (5th line).
pgb_cluster_sockdir() {
    sed -n 5p "$1/postmaster.pid"
}

# pgb_cluster_start DATADIR PORT [SOCKDIR] [CONF_LINE...]
#
# Create DATADIR with initdb if it holds no cluster, write our settings, and
# start the server (pg_ctl -w).  SOCKDIR (default, or when ""): DATADIR's
# parent, or /tmp when that path is too long for a unix socket.  CONF_LINEs
# are extra postgresql.conf lines ("name = value").  With PGB_NOSYNC=1 initdb
# skips fsync (tests; the server itself always runs with fsync on).  A cluster
# that already runs is left as it is.
pgb_cluster_start() {
    local datadir=$1 port=$2 sockdir=${3:-} locale out line
    local initdb_opts
    shift 2
    if [[ $# -gt 0 ]]; then
        shift
    fi
    if [[ -z "$sockdir" ]]; then
        sockdir=$(dirname "$datadir")
    fi
    # A unix socket path ("$sockdir/.s.PGSQL.$port") is limited to 107 bytes.
    if (( ${#sockdir} + 18 > 107 )); then
        sockdir=/tmp
    fi

    if pgb_cluster_running "$datadir"; then
        pgb_log "cluster in $datadir already runs on port $(pgb_cluster_port "$datadir")"
        return 0
    fi

    if [[ ! -f "$datadir/PG_VERSION" ]]; then
        # C.UTF-8: UTF8 with code-point collation, the same on every Debian
        # machine, so that sorted output is stable.
        locale=C
        if locale -a 2>/dev/null | grep -qix 'c\.utf-\{0,1\}8'; then
            locale=C.UTF-8
        fi
        mkdir -p "$datadir"
        if pgb_is_root; then
            pgb_ensure_user
            chown "$PGB_OS_USER:" "$datadir"
        fi
        chmod 700 "$datadir"
        initdb_opts=(-D "$datadir" -A trust -E UTF8 --locale="$locale")
        if [[ "${PGB_NOSYNC:-0}" = 1 ]]; then
            initdb_opts+=(--no-sync)
        fi
        pgb_log "initdb $datadir"
        if ! out=$(pgb_pg initdb "${initdb_opts[@]}" 2>&1); then
            printf '%s\n' "$out" >&2
            pgb_die "initdb failed"
        fi
        # Our settings live in a file of their own, rewritten at every start.
        printf '\n# added by scripts/lib.sh\ninclude_if_exists = '\''pgbank.conf'\''\n' |
            pgb_pg tee -a "$datadir/postgresql.conf" >/dev/null
    fi

    # The cluster's own secrets, made once (clusters made before them get them
    # now): the access-token signing key, the master key of personal data and
    # the key of the card vault, readable by the server's OS user only, like
    # the rest of the data directory.  A secret added in a later version is
    # appended to an existing file.
    if [[ ! -f "$datadir/pgbank-secrets.conf" ]]; then
        echo "# Written once by scripts/lib.sh: keep it secret, keep it safe." |
            pgb_pg tee "$datadir/pgbank-secrets.conf" >/dev/null
        pgb_pg chmod 600 "$datadir/pgbank-secrets.conf"
        printf "include_if_exists = 'pgbank-secrets.conf'\n" |
            pgb_pg tee -a "$datadir/postgresql.conf" >/dev/null
    fi
    for line in jwt_secret master_key card_key; do
        if ! pgb_pg grep -q "^pgbank\.$line = " "$datadir/pgbank-secrets.conf"; then
            echo "pgbank.$line = '$(pgb_random_secret)'" |
                pgb_pg tee -a "$datadir/pgbank-secrets.conf" >/dev/null
        fi
    done

    {
        echo "# Written by scripts/lib.sh at every start: edits here are lost."
        echo "listen_addresses = '127.0.0.1'"
        echo "port = $port"
        echo "unix_socket_directories = '$sockdir'"
        echo "fsync = on"
        echo "shared_buffers = 256MB"
        echo "max_connections = 120"
        echo "max_worker_processes = 16"
        echo "max_parallel_workers = 2"
        echo "max_parallel_workers_per_gather = 1"
        echo "log_line_prefix = '%m [%p] %q%u@%d '"
        # bind parameters (a card number, a password) stay out of the log
        echo "log_parameter_max_length = 0"
        # pgbank defines its secret settings (superuser-only) at preload
        echo "shared_preload_libraries = 'pgbank'"
        for line in "$@"; do
            printf '%s\n' "$line"
        done
    } | pgb_pg tee "$datadir/pgbank.conf" >/dev/null

    pgb_log "starting PostgreSQL on 127.0.0.1:$port (socket in $sockdir, log in $datadir/postgresql.log)"
    if ! pgb_pg pg_ctl -D "$datadir" -l "$datadir/postgresql.log" -w -t 120 start >/dev/null; then
        tail -n 40 "$datadir/postgresql.log" >&2 || true
        pgb_die "could not start the cluster in $datadir"
    fi
}

# 48 random characters from [A-Za-z0-9]
pgb_random_secret() {
    head -c 256 /dev/urandom | base64 -w0 | tr -dc 'A-Za-z0-9' | head -c 48
}

# Stop the cluster in DATADIR if it runs (fast shutdown: sessions are ended).
pgb_cluster_stop() {
    local datadir=$1
    if pgb_cluster_running "$datadir"; then
        pgb_log "stopping PostgreSQL ($datadir)"
        pgb_pg pg_ctl -D "$datadir" -m fast -w -t 120 stop >/dev/null
    fi
}
