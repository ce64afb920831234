#!/usr/bin/env bash
# Provision the PostgreSQL server the tests start: Debian's `postgresql` package.
#
#   bash scripts/postgresql-sandbox.sh
#
# Idempotent: when a postgres binary is under /usr/lib/postgresql/*/bin the script exits at
# once. The package's own cluster is not used (nor started): the tests run their own, in a
# temporary directory, on 127.0.0.1 and an ephemeral port (tests/postgresql_server.py).
# Without root privileges it explains why and exits 0: the PostgreSQL tests then skip
# (or fail, when AGI_DAEMON_REQUIRE_POSTGRESQL=1, as CI sets it).
set -euo pipefail

installed() {
    compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null
}

if installed; then
    echo "postgresql-sandbox: $(ls -d /usr/lib/postgresql/*/bin/postgres | sort -V | tail -n1) is ready"
    exit 0
fi

if [[ "$(id -u)" != 0 ]]; then
    echo "postgresql-sandbox: not root, cannot install postgresql; the PostgreSQL tests will skip"
    exit 0
fi

echo "postgresql-sandbox: installing Debian's postgresql"
apt-get update -qq
# policy-rc.d: the package's own cluster must not start (the tests start theirs)
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
installed
echo "postgresql-sandbox: $(ls -d /usr/lib/postgresql/*/bin/postgres | sort -V | tail -n1) installed"
