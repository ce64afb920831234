#!/usr/bin/env bash
# Provision the headless browser the web tests drive: Debian's chromium (and its driver).
#
#   bash scripts/browser-sandbox.sh
#
# Idempotent: when /usr/bin/chromium is there the script exits at once. The tests launch it
# through Playwright with executable_path (Playwright never downloads a browser of its own).
# Without root privileges it explains why and exits 0: the browser tests then skip
# (or fail, when AGI_DAEMON_REQUIRE_ASTERISK=1, as CI sets it).
set -euo pipefail

CHROMIUM="${AGI_DAEMON_CHROMIUM:-/usr/bin/chromium}"

if [[ -x "$CHROMIUM" ]]; then
    echo "browser-sandbox: $CHROMIUM is ready ($("$CHROMIUM" --version 2>/dev/null || echo version unknown))"
    exit 0
fi

if [[ "$(id -u)" != 0 ]]; then
    echo "browser-sandbox: not root, cannot install chromium; the browser tests will skip"
    exit 0
fi

echo "browser-sandbox: installing Debian's chromium and chromium-driver"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    chromium chromium-driver fonts-dejavu-core >/dev/null
echo "browser-sandbox: $("$CHROMIUM" --version)"
