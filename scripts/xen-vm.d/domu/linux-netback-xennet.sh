#!/bin/bash
# domU part of scenarios/linux-netback-xennet.sh: Linux's xen-netfront drives eth0.
. /xenvm/lib.sh
PAIR="Linux xen-netfront <-> xennet netback"
me=128.153.144.208
dom0=128.153.144.204
# eth0 comes back as a new device after xl network-detach / network-attach: keep it
# configured (MTU 9000: netfront allows it with the backend's feature-sg).
keep_eth0() {
  while :; do
    if ip link show eth0 >/dev/null 2>&1 && ! ip addr show eth0 | grep -q "$me/"; then
      ip link set eth0 mtu 9000 && ip addr add $me/24 dev eth0 && ip link set eth0 up &&
        echo "eth0 configured (mtu $(cat /sys/class/net/eth0/mtu))"
    fi
    sleep 0.5
  done
}
retry 60 ip link show eth0 >/dev/null 2>&1 || { fail "domU has eth0" "no eth0 after 60 s"; exit 1; }
keep_eth0 &
check "Linux netfront pings dom0" ping_wait $dom0 60
# 20 pings none lost; on failure, ping's summary and eth0's counters say more.
pings20() {
  out=$(ping -c 20 -i 0.2 -W 10 $dom0 2>&1)
  case "$out" in *" 0% packet loss"*) return 0 ;; esac
  printf '%s\n' "$out"; ip -s link show eth0; grep -a "^Icmp:" /proc/net/snmp
  echo "$out" | grep "packet loss"
  return 1
}
check "Linux netfront: 20 pings, none lost" pings20
head -c 16777216 /dev/urandom > /tmp/blob
head -c 4194304 /tmp/blob > /tmp/blob4
echo "blob4 sha256 $(sha256sum < /tmp/blob4 | cut -d' ' -f1)"
echo "blob sha256 $(sha256sum < /tmp/blob | cut -d' ' -f1)"
# Serve the blob to dom0 on port 5001 and its first 4 MiB on 5003, as often as asked.
( while :; do nc -l -p 5001 < /tmp/blob; done ) &
( while :; do nc -l -p 5003 < /tmp/blob4; done ) &
# Take one 16 MiB blob from dom0's port 5002 (nc's stdin held open by a FIFO).
mkfifo /tmp/hold && exec 7<>/tmp/hold
while :; do
  nc -w 10 $dom0 5002 <&7 > /tmp/got 2>/dev/null
  [ -s /tmp/got ] && break
  sleep 1
done
echo "got sha256 $(sha256sum < /tmp/got | cut -d' ' -f1) $(stat -c %s /tmp/got)"
rm -f /tmp/got
wait
