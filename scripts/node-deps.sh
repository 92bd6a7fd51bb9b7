#!/bin/sh
# What the js-libp2p interop tests, notebook 05 and bench/pubsub.py need from the system:
# Node.js >= 20 and npm (the npm packages themselves are pinned in tests/interop/js and
# installed with `npm ci` on first use). As root on Debian/Ubuntu, installs Debian's nodejs
# and npm when missing; otherwise says so (the interop tests then skip, saying why, unless
# UCSDK_REQUIRE_NODE=1).
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "note: the js-libp2p interop tests need Node.js >= 20 and npm (install nodejs npm as root)" >&2
    exit 0
fi
echo "installing for the js-libp2p interop tests: nodejs npm"
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
