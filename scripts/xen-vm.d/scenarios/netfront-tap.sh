#!/bin/bash
# The domU's own kernel stack over xennet's netfront: `xennet guest --platform xenlinux
# --stack tap:xt0` moves frames between netfront and a TAP device, and the domU's kernel
# (ping, nc) is the guest, against Linux xen-netback in dom0. The domU part is
# ../domu/netfront-tap.sh.
. /host/lib.sh
PAIR="xennet netfront + domU kernel (TAP) <-> Linux xen-netback"
name=netfront-tap
mac=00:16:3e:00:00:07
guest=128.153.144.207

modprobe xen-netback || { fail "load xen-netback" "modprobe xen-netback failed"; exit 1; }
domu_create $name "vif = [ 'bridge=xenbr0,mac=$mac' ]" \
  xenvm.netfront=none xenvm.run=netfront-tap xen_gntalloc.limit=8192 ||
  { fail "xl create" "$(tail -n 1 /tmp/xl-create-$name.log)"; exit 1; }
domid=$(domu_domid $name)
check "backend state 4 (Connected)" xs_wait /local/domain/0/backend/vif/$domid/0/state 4 120
check "the domU's kernel pings dom0, none lost" domu_wait $name "kernel ping: ok" 120
check "dom0 pings the domU's kernel, 50 none lost" \
  sh -c "ping -q -c 50 -i 0.1 -W 10 $guest | grep -q ' 0% packet loss'"
for sz in 1000 1400 1472; do
  check "the domU's kernel pings dom0 with $sz bytes" domu_wait $name "kernel ping -s $sz: ok" 30
done
domu_wait $name "blob sha256 " 60 >/dev/null
want=$(grep -a "blob sha256 " "$(domu_log $name)" | tail -n 1 | awk '{print $3}' | tr -d '\r')
# nc's stdin must stay open (busybox nc quits at its stdin's end, cutting the transfer
# short): a FIFO held open read-write never ends.
mkfifo /tmp/hold-$name && exec 7<>/tmp/hold-$name
timeout 120 nc -w 10 $guest 5001 <&7 > /tmp/got-$name
exec 7>&-
got=$(sha256sum < /tmp/got-$name | cut -d' ' -f1)
check "4 MiB TCP from the domU's kernel, sha256 matches ($(stat -c %s /tmp/got-$name) bytes)" \
  test -n "$want" -a "$got" = "$want"
domu_destroy $name
