#!/bin/bash
# domU part of scenarios/linux-netback-xennet.sh: Linux's xen-netfront drives eth0.
. /xenvm/lib.sh
PAIR="Linux xen-netfront <-> xennet netback"
retry 60 ip link show eth0 >/dev/null 2>&1 || { fail "domU has eth0" "no eth0 after 60 s"; exit 1; }
ip addr add 128.153.144.208/24 dev eth0
ip link set eth0 up
check "Linux netfront pings dom0" ping_wait 128.153.144.204 60
check "Linux netfront: 20 pings, none lost" \
  sh -c "ping -q -c 20 -i 0.2 -W 2 128.153.144.204 | grep -q ' 0% packet loss'"
