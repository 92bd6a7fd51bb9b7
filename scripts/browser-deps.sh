#!/bin/sh
# What the browser check of the notebook widgets needs from the system: Debian's Chromium
# (/usr/bin/chromium; Playwright drives it, it never downloads a browser). As root on
# Debian/Ubuntu, installs it when missing; otherwise says so (the browser test then skips,
# saying why, unless UCSDK_REQUIRE_BROWSER=1).
[ -x /usr/bin/chromium ] && exit 0
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "note: the browser check needs the packages chromium chromium-driver (install them as root)" >&2
    exit 0
fi
echo "installing for the browser check: chromium chromium-driver"
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
