#!/usr/bin/env bash
# Make sure PostgreSQL (127.0.0.1:5432, user postgres, database test, trust on loopback)
# and Redis (127.0.0.1:6379) run: install them from Debian's packages when missing, start
# them when stopped. The store's contract suite runs against the real PostgreSQL.
set -uo pipefail
export DEBIAN_FRONTEND=noninteractive
apt_install() {
    command -v apt-get >/dev/null || return 1
    apt-get update -qq >/dev/null && apt-get install -y -qq "$@" >/dev/null
}

if ! command -v pg_isready >/dev/null; then
    apt_install postgresql postgresql-client || echo "services: cannot install PostgreSQL" >&2
fi
if command -v pg_isready >/dev/null && ! pg_isready -h 127.0.0.1 -p 5432 -q; then
    version="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
if command -v psql >/dev/null && ! psql -h 127.0.0.1 -U postgres -d postgres -tAc 'select 1' >/dev/null 2>&1; then
    # A fresh Debian cluster asks loopback clients for passwords: trust them, as CI expects.
    for hba in /etc/postgresql/*/main/pg_hba.conf; do
        sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
    done
    version="$(ls /etc/postgresql | sort -V | tail -1)"
    pg_ctlcluster --skip-systemctl-redirect "$version" main reload || true
fi
if command -v psql >/dev/null; then
    psql -h 127.0.0.1 -U postgres -d postgres -tAc "select 1 from pg_database where datname='test'" \
        | grep -q 1 || psql -h 127.0.0.1 -U postgres -d postgres -qc 'CREATE DATABASE test' || true
fi

if ! command -v redis-server >/dev/null; then
    apt_install redis-server || echo "services: cannot install Redis" >&2
fi
if command -v redis-cli >/dev/null && ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
        --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
fi
exit 0
