#!/bin/bash
# Linux xen-netfront <-> xennet netback with kernel vifs (`xennet up --platform xenlinux
# --vifs tap`): the vif is a TAP device `vif<domid>.0` in dom0, which xl's own hotplug
# script (vif-bridge, unmodified) puts on xenbr0, as it does a Linux netback vif; dom0's
# kernel bridges it. The domU part is ../domu/kernel-vif.sh.
. /host/lib.sh
PAIR="Linux xen-netfront <-> xennet netback (kernel vif)"
name=kernel-vif
mac=00:16:3e:00:00:09
guest=128.153.144.209
log=/tmp/up-kv.log

rmmod xen-netback 2>/dev/null || true
modprobe tun || { fail "load tun" "modprobe tun failed"; exit 1; }
xennet up --platform xenlinux --vifs tap > $log 2>&1 &
up=$!
check "xennet up --vifs tap started" retry 30 grep -q "driver domain running" $log ||
  { sed "s/^/  up| /" $log >&2; kill $up; exit 1; }
domu_create $name "vif = [ 'bridge=xenbr0,mac=$mac' ]" \
  xenvm.netfront=kernel xenvm.run=kernel-vif ||
  { fail "xl create" "$(tail -n 1 /tmp/xl-create-$name.log)"; sed "s/^/  up| /" $log >&2; kill $up; exit 1; }
domid=$(domu_domid $name)
vif=vif$domid.0
be=/local/domain/0/backend/vif/$domid/0
if ! check "backend state 4 (Connected)" xs_wait $be/state 4 90; then
  fail "backend says" "$(xenstore-read $be/error 2>&1)"
  sed "s/^/  up| /" $log >&2; kill $up; domu_destroy $name; exit 1
fi
check "the kernel vif $vif exists" ip link show $vif
check "vif-bridge put $vif on xenbr0 ($(ls /sys/class/net/xenbr0/brif | tr '\n' ' '))" \
  test -e /sys/class/net/xenbr0/brif/$vif
check "hotplug-status connected" xs_is $be/hotplug-status connected
check "dom0 pings Linux netfront through $vif" ping_wait $guest 90
check "100 pings from dom0, none lost" \
  sh -c "ping -q -c 100 -i 0.05 -W 10 $guest | grep -q ' 0% packet loss'"
check "the domU made its 4 MiB blob" domu_wait $name "blob sha256 " 120
want=$(grep -a "blob sha256 " "$(domu_log $name)" | tail -n 1 | awk '{print $3}' | tr -d '\r')
mkfifo /tmp/hold-$name && exec 7<>/tmp/hold-$name
timeout 240 nc -w 10 $guest 5001 <&7 > /tmp/got-$name
exec 7>&-
check "4 MiB TCP Linux netfront -> dom0 through $vif, sha256 matches" \
  test -n "$want" -a "$(sha256sum < /tmp/got-$name | cut -d' ' -f1)" = "$want"
rx=$(cat /sys/class/net/$vif/statistics/rx_packets)
check "$vif counted the guest's frames ($rx received)" test "$rx" -gt 100
check "xl network-detach $domid 0" timeout 60 xl network-detach $domid 0
check "the kernel vif $vif is gone" retry 30 sh -c "! ip link show $vif 2>/dev/null"
domu_destroy $name
kill -TERM $up
check "xennet up stops on SIGTERM" retry 20 sh -c "! kill -0 $up 2>/dev/null"
sed 's/^/  up| /' $log >&2
