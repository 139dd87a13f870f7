#!/bin/bash
# domU part of scenarios/kernel-vif.sh: Linux's xen-netfront drives eth0.
. /xenvm/lib.sh
PAIR="Linux xen-netfront <-> xennet netback (kernel vif)"
retry 60 ip link show eth0 >/dev/null 2>&1 || { fail "domU has eth0" "no eth0 after 60 s"; exit 1; }
ip addr add 128.153.144.209/24 dev eth0
ip link set eth0 up
check "Linux netfront pings dom0" ping_wait 128.153.144.204 60
head -c 4194304 /dev/urandom > /tmp/blob
echo "blob sha256 $(sha256sum < /tmp/blob | cut -d' ' -f1)"
nc -l -p 5001 < /tmp/blob
wait
