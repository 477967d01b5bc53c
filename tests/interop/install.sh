#!/usr/bin/env bash
# Install the interop test peers on a Debian/Ubuntu machine:
#   - Chromium, from the distribution (apt), only if it is missing;
#   - node and npm, from the distribution, only if they are missing;
#   - the pinned npm packages of tests/interop/node (ws, playwright-core),
#     with `npm ci`, only if node_modules is missing or older than the lock.
# Idempotent, and a fraction of a second when everything is in place.
# It never downloads a browser through playwright: playwright-core drives
# the system Chromium. The websockets peer comes with `pip install -e .[test]`.
#
#   tests/interop/install.sh            # as root, or with sudo available
#   TRIO_WS_CHROMIUM=/path/to/chromium tests/interop/install.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
node_dir="$here/node"
chromium="${TRIO_WS_CHROMIUM:-/usr/bin/chromium}"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "install.sh: need root (or sudo) to run: $*" >&2
        return 1
    fi
}

packages=()
[ -x "$chromium" ] || packages+=(chromium)
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)
if [ "${#packages[@]}" -gt 0 ]; then
    echo "install.sh: apt-get install ${packages[*]}"
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${packages[@]}"
fi

node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 18 ]; then
    echo "install.sh: node $(node --version) is too old; the interop tests need node >= 18" >&2
    exit 1
fi

# npm ci when node_modules is missing or was installed from another lock.
stamp="$node_dir/node_modules/.trio-ws-installed"
wanted="$(cat "$node_dir/package.json" "$node_dir/package-lock.json" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
    echo "install.sh: npm ci in $node_dir"
    (cd "$node_dir" && npm ci --no-audit --no-fund)
    echo "$wanted" >"$stamp"
fi

echo "install.sh: ready: node $(node --version)," \
    "ws $(node -p 'require(process.argv[1]).version' "$node_dir/node_modules/ws/package.json")," \
    "playwright-core $(node -p 'require(process.argv[1]).version' "$node_dir/node_modules/playwright-core/package.json")," \
    "$("$chromium" --version 2>/dev/null | head -n 1)"
