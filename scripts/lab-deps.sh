#!/bin/sh
# What the NAT lab needs from the system: ip and tc (iproute2), nft (nftables), conntrack.
# As root on Debian/Ubuntu, installs the missing packages; otherwise says what is missing
# (the lab's tests and the demo's lab part then skip, saying why).
missing=""
if ! command -v ip >/dev/null 2>&1 || ! command -v tc >/dev/null 2>&1; then
    missing="$missing iproute2"
fi
command -v nft >/dev/null 2>&1 || missing="$missing nftables"
command -v conntrack >/dev/null 2>&1 || missing="$missing conntrack"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "note: the NAT lab needs the packages:$missing (install them as root)" >&2
    exit 0
fi
echo "installing for the NAT lab:$missing"
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
