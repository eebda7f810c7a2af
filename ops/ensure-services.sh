#!/usr/bin/env bash
# Make sure the services the test suite needs are up on this machine:
#   - PostgreSQL on 127.0.0.1:5432, trust auth for user postgres, database rundruf_test
#   - Redis on 127.0.0.1:6379
#   - the Lua interpreter (lua5.4) that runs the SwyxWare call-routing script's tests
#   - SIPp (Debian package sip-tester) and baresip, the SIP peers of tests/sip
#   - Kamailio with its presence and TLS modules, the PBX of tests/sip/kamailio.py
#     (started by the tests themselves; the package's own service is not used)
#   - chromium, the headless browser of the website's tests (tests/web)
# Fast when all are already there; otherwise starts them, and installs them with
# apt-get (Debian) when they are missing. Idempotent. Meant for dev boxes and CI,
# not for production hosts (it sets PostgreSQL to trust local connections).
#
# Prints one line per service saying what it did; exits non-zero with a message
# if a service cannot be brought up.
set -euo pipefail

PG_HOST=127.0.0.1
PG_PORT=5432
PG_USER=postgres
PG_TEST_DB=rundruf_test
PG_WAIT=30

REDIS_HOST=127.0.0.1
REDIS_PORT=6379
REDIS_WAIT=15

LUA_BIN=lua5.4
LUA_PKG=lua5.4

PROG=ensure-services
APT_UPDATED=

die() {
    echo "$PROG: ERROR: $*" >&2
    exit 1
}

note() {
    echo "$PROG: $*" >&2
}

# Run a command as root (sudo when we are not root and sudo exists).
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        die "need root to run: $*"
    fi
}

# apt-get install, quietly; shows the log if it fails.
apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install $* by hand"
    local log
    log=$(mktemp /tmp/ensure-services-apt.XXXXXX)
    note "installing $* with apt-get (log: $log)"
    if [ -z "$APT_UPDATED" ]; then
        if ! as_root apt-get update >"$log" 2>&1; then
            cat "$log" >&2
            die "apt-get update failed"
        fi
        APT_UPDATED=1
    fi
    if ! as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "$@" </dev/null >>"$log" 2>&1; then
        tail -n 50 "$log" >&2
        die "apt-get install $* failed"
    fi
    rm -f "$log"
}

# ---------------------------------------------------------------- PostgreSQL

# 0 accepting, 1 rejecting (starting up), 2 no response, 3 no attempt / no client
pg_status() {
    command -v pg_isready >/dev/null 2>&1 || return 3
    local rc=0
    pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 2 || rc=$?
    return "$rc"
}

pg_wait() {
    local deadline=$((SECONDS + PG_WAIT))
    while ! pg_status; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            return 1
        fi
        sleep 1
    done
}

pg_version() {
    # Newest installed major version with a cluster config directory.
    # shellcheck disable=SC2012  # version dirs are plain numbers
    ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1
}

pg_installed() {
    [ -d /etc/postgresql ] && [ -n "$(ls -A /etc/postgresql 2>/dev/null)" ]
}

pg_cluster_online() {
    local ver=$1
    pg_lsclusters -h 2>/dev/null | awk -v v="$ver" '$1 == v && $2 == "main" && $4 == "online" { f = 1 } END { exit !f }'
}

pg_start_cluster() {
    local ver=$1
    # The socket directory lives on tmpfs on many systems and can be missing after a reboot.
    as_root install -d -o postgres -g postgres -m 2775 /var/run/postgresql
    if [ ! -d "/etc/postgresql/$ver/main" ]; then
        note "creating PostgreSQL cluster $ver/main"
        as_root pg_createcluster "$ver" main >/dev/null
    fi
    if ! as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start; then
        echo "--- last lines of /var/log/postgresql/postgresql-$ver-main.log:" >&2
        tail -n 20 "/var/log/postgresql/postgresql-$ver-main.log" >&2 2>/dev/null || true
        die "could not start PostgreSQL cluster $ver/main"
    fi
}

# Trust auth for local socket and loopback TCP, listening on localhost.
# Only touches files when the settings are not there yet.
pg_configure_trust() {
    local ver=$1 hba conf_d marker="# rundruf ensure-services: trust local connections"
    hba="/etc/postgresql/$ver/main/pg_hba.conf"
    conf_d="/etc/postgresql/$ver/main/conf.d"
    [ -f "$hba" ] || die "$hba not found"

    # pg_hba.conf is first-match, so the trust lines go on top of Debian's
    # default peer / scram-sha-256 lines.
    if ! grep -qF "$marker" "$hba"; then
        local tmp
        tmp=$(mktemp)
        {
            echo "$marker (dev/CI only)"
            echo "local   all             all                                     trust"
            echo "host    all             all             127.0.0.1/32            trust"
            echo "host    all             all             ::1/128                 trust"
            echo
            cat "$hba"
        } >"$tmp"
        as_root cp "$tmp" "$hba"
        rm -f "$tmp"
        as_root chown postgres:postgres "$hba"
        as_root chmod 640 "$hba"
    fi

    # Listen on loopback only. Leave an explicit setting somebody made alone.
    if ! grep -hqE '^[[:space:]]*listen_addresses[[:space:]]*=' \
        "/etc/postgresql/$ver/main/postgresql.conf" "$conf_d"/*.conf 2>/dev/null; then
        as_root install -d -o postgres -g postgres "$conf_d"
        echo "listen_addresses = 'localhost'" | as_root tee "$conf_d/90-rundruf.conf" >/dev/null
    fi
}

ensure_postgres() {
    local action ver rc=0
    pg_status || rc=$?
    if [ "$rc" -eq 0 ]; then
        action="already running"
    elif [ "$rc" -eq 1 ]; then
        # Server answers but is still starting up (or shutting down).
        pg_wait || die "PostgreSQL on $PG_HOST:$PG_PORT did not accept connections within ${PG_WAIT}s"
        action="was starting up, now ready"
    elif pg_installed; then
        ver=$(pg_version)
        if pg_cluster_online "$ver"; then
            die "PostgreSQL cluster $ver/main is running but does not answer on $PG_HOST:$PG_PORT (check port and listen_addresses in /etc/postgresql/$ver/main)"
        fi
        pg_start_cluster "$ver"
        pg_wait || die "PostgreSQL $ver/main started but does not answer on $PG_HOST:$PG_PORT within ${PG_WAIT}s (check port/listen_addresses in /etc/postgresql/$ver/main)"
        action="started cluster $ver/main"
    else
        apt_install postgresql
        pg_installed || die "postgresql installed but /etc/postgresql is empty"
        ver=$(pg_version)
        if [ ! -d "/etc/postgresql/$ver/main" ]; then
            as_root pg_createcluster "$ver" main >/dev/null
        fi
        pg_configure_trust "$ver"
        # The package may have started the cluster already, with the old config.
        if pg_cluster_online "$ver"; then
            as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main restart \
                || die "could not restart PostgreSQL cluster $ver/main"
        else
            pg_start_cluster "$ver"
        fi
        pg_wait || die "PostgreSQL $ver/main installed but does not answer on $PG_HOST:$PG_PORT within ${PG_WAIT}s"
        action="installed and started cluster $ver/main"
    fi

    # Trust auth for postgres over TCP is what the tests rely on; say so clearly if not.
    local exists
    if ! exists=$(psql -X -w -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$PG_TEST_DB'" 2>&1); then
        die "PostgreSQL is up but 'psql -h $PG_HOST -U $PG_USER' without a password fails: $exists
  (the tests need trust auth for host connections from 127.0.0.1/32 in pg_hba.conf)"
    fi
    if [ "$exists" = "1" ]; then
        action="$action; database $PG_TEST_DB exists"
    else
        createdb -w -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" "$PG_TEST_DB" \
            || die "could not create database $PG_TEST_DB"
        action="$action; created database $PG_TEST_DB"
    fi
    echo "postgres: $action ($PG_HOST:$PG_PORT)"
}

# --------------------------------------------------------------------- Redis

redis_ping() {
    command -v redis-cli >/dev/null 2>&1 || return 2
    local out
    out=$(timeout 3 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null) || true
    [ "$out" = "PONG" ]
}

redis_wait() {
    local secs=$1
    local deadline=$((SECONDS + secs))
    while ! redis_ping; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            return 1
        fi
        sleep 0.5
    done
}

# Something other than a working Redis holds the port (e.g. Redis with a password).
redis_port_busy() {
    (exec 3<>"/dev/tcp/$REDIS_HOST/$REDIS_PORT") 2>/dev/null
}

ipv6_loopback() {
    [ -r /proc/net/if_inet6 ] && grep -q '^00000000000000000000000000000001 ' /proc/net/if_inet6
}

REDIS_LOG=/var/log/redis/ci.log

redis_start() {
    local bind=$1
    as_root mkdir -p /var/lib/redis /var/log/redis
    # shellcheck disable=SC2086  # $bind is one or two addresses
    as_root redis-server --daemonize yes --bind $bind --port "$REDIS_PORT" \
        --save "" --appendonly no --dir /var/lib/redis --logfile "$REDIS_LOG"
}

# Start redis-server, with IPv6 loopback when the machine has it.
redis_bring_up() {
    if ipv6_loopback; then
        redis_start "127.0.0.1 -::1" || true
        if redis_wait 5; then
            return 0
        fi
        note "redis-server did not answer with --bind 127.0.0.1 -::1; retrying with --bind 127.0.0.1"
    fi
    redis_start "127.0.0.1" || true
    if ! redis_wait "$REDIS_WAIT"; then
        echo "--- last lines of $REDIS_LOG:" >&2
        tail -n 20 "$REDIS_LOG" >&2 2>/dev/null || true
        die "Redis did not answer PONG on $REDIS_HOST:$REDIS_PORT within ${REDIS_WAIT}s"
    fi
}

ensure_redis() {
    local action
    if redis_ping; then
        action="already running"
    elif command -v redis-server >/dev/null 2>&1; then
        if redis_port_busy; then
            die "something listens on $REDIS_HOST:$REDIS_PORT but does not answer PING with PONG (Redis with a password? another service?)"
        fi
        redis_bring_up
        action="started redis-server"
    else
        apt_install redis-server
        # The package may have started its own redis-server already.
        if redis_wait 3; then
            action="installed redis-server (started by the package)"
        else
            redis_bring_up
            action="installed and started redis-server"
        fi
    fi
    echo "redis: $action ($REDIS_HOST:$REDIS_PORT)"
}

# --------------------------------------------------- Lua, speech, SIP peers

# A command the tests run, from its Debian package when it is missing.
ensure_command() {
    local label=$1 bin=$2 pkg=$3 action
    if command -v "$bin" >/dev/null 2>&1; then
        action="already installed"
    else
        apt_install "$pkg"
        command -v "$bin" >/dev/null 2>&1 || die "$pkg installed but $bin is not on PATH"
        action="installed $pkg"
    fi
    echo "$label: $action ($(command -v "$bin"))"
}

ensure_postgres
ensure_redis
ensure_command lua "$LUA_BIN" "$LUA_PKG"
# Speech for prompts and announcements (text-to-speech default engine).
ensure_command espeak-ng espeak-ng espeak-ng
# SIP test peers (tests/sip/bed.py): SIPp as UAS/UAC, baresip as a real softphone.
ensure_command sipp sipp sip-tester
ensure_command baresip baresip baresip

# Kamailio as the PBX of the end-to-end tests (tests/sip/kamailio.py): the server
# (registrar, usrloc, dialog, diversion, db_text) and its presence modules
# (presence, presence_dialoginfo, pua, pua_dialoginfo: RFC 4235 dialog state) and
# its TLS module (SIP over TLS to the agent).
ensure_kamailio() {
    local action
    local pkg missing=()
    for pkg in kamailio kamailio-presence-modules kamailio-tls-modules; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -eq 0 ] && command -v kamailio >/dev/null 2>&1; then
        action="already installed"
    else
        apt_install kamailio "${missing[@]}"
        command -v kamailio >/dev/null 2>&1 || die "kamailio installed but not on PATH"
        action="installed ${missing[*]}"
    fi
    # The package's own service (port 5060) is not used: the tests start their
    # own kamailio on free loopback ports.
    echo "kamailio: $action ($(command -v kamailio))"
}
ensure_kamailio

# The website's tests drive Debian's chromium through Playwright (never `playwright install`).
ensure_command chromium chromium chromium
