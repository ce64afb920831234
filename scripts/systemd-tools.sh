#!/usr/bin/env bash
# Provision systemd-analyze, with which the tests check contrib/agi-daemon.service
# (`systemd-analyze verify` and the offline security audit). Only the tool is used: nothing
# is started. Idempotent; without root it explains why and exits 0 (those tests then skip).
set -euo pipefail

if command -v systemd-analyze >/dev/null; then
    echo "systemd-tools: $(command -v systemd-analyze) is ready"
    exit 0
fi

if [[ "$(id -u)" != 0 ]]; then
    echo "systemd-tools: not root, cannot install systemd; the unit's systemd-analyze tests will skip"
    exit 0
fi

echo "systemd-tools: installing Debian's systemd (for systemd-analyze)"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null
echo "systemd-tools: $(command -v systemd-analyze) installed"
