#!/usr/bin/env bash
# Provision the cached Debian sid root holding Asterisk 22 that tests/asterisk runs in.
#
#   bash scripts/asterisk-sandbox.sh [ROOT]      (default /var/cache/agi-daemon/asterisk-root)
#
# Idempotent: a complete root (marker file present) is left alone and the script exits at once.
# The root is built in a temporary directory next to ROOT and moved into place only when
# debootstrap succeeded, so an interrupted build never leaves a half root behind.
# Without root privileges it explains why and exits 0: the Asterisk tests then skip
# (or fail, when AGI_DAEMON_REQUIRE_ASTERISK=1).
set -euo pipefail

ROOT="${1:-${AGI_DAEMON_ASTERISK_ROOT:-/var/cache/agi-daemon/asterisk-root}}"
ROOT="${ROOT%/}"
MARKER="$ROOT/.agi-daemon-asterisk-root"
SUITE="${AGI_DAEMON_ASTERISK_SUITE:-sid}"
MIRROR="${AGI_DAEMON_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if [[ -x "$ROOT/usr/sbin/asterisk" && -f "$MARKER" ]]; then
    echo "asterisk-sandbox: $ROOT is ready ($(head -n1 "$MARKER"))"
    exit 0
fi

if [[ "$(id -u)" != 0 ]]; then
    echo "asterisk-sandbox: not root, cannot build $ROOT (debootstrap, chroot and mount need root);" \
         "the Asterisk tests will skip"
    exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
    echo "asterisk-sandbox: installing debootstrap"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

parent="$(dirname "$ROOT")"
mkdir -p "$parent"
# Leftovers of builds killed hard (--one-file-system: never into a bind mount such as /dev).
find "$parent" -maxdepth 1 -name ".$(basename "$ROOT").build.*" -mmin +120 \
    -exec rm -rf --one-file-system {} + 2>/dev/null || true
tmp="$(mktemp -d "$parent/.$(basename "$ROOT").build.XXXXXX")"
cleanup() { rm -rf --one-file-system "$tmp" "$tmp.log"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "asterisk-sandbox: building $ROOT with debootstrap ($SUITE + asterisk, about a minute)"
started=$SECONDS
if ! debootstrap --variant=minbase --include=asterisk "$SUITE" "$tmp" "$MIRROR" \
        >"$tmp.log" 2>&1; then
    echo "asterisk-sandbox: debootstrap failed, last lines of $tmp.log:" >&2
    tail -n 20 "$tmp.log" >&2
    exit 1
fi
test -x "$tmp/usr/sbin/asterisk"

version="$(chroot "$tmp" asterisk -V 2>/dev/null || echo "asterisk (version unknown)")"
printf '%s\nbuilt %s by scripts/asterisk-sandbox.sh from %s %s\n' \
    "$version" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$SUITE" "$MIRROR" >"$tmp/.agi-daemon-asterisk-root"

# Replace an incomplete previous root (no marker) only now that the new one is whole.
if [[ -e "$ROOT" ]]; then
    rm -rf --one-file-system "$ROOT"
fi
mv "$tmp" "$ROOT"
trap - EXIT
rm -f "$tmp.log"
echo "asterisk-sandbox: $ROOT ready in $((SECONDS - started)) s: $version"
