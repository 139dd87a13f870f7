#!/bin/bash
# domU part of scenarios/linux-linux.sh: Linux's xen-netfront drives eth0.
. /xenvm/lib.sh
PAIR="Linux xen-netfront <-> Linux xen-netback"

retry 60 ip link show eth0 >/dev/null 2>&1 || { fail "domU has eth0" "no eth0 after 60 s"; exit 1; }
ip addr add 128.153.144.205/24 dev eth0
ip link set eth0 up
check "domU pings dom0" ping_wait 128.153.144.204 60
