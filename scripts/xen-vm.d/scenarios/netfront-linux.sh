#!/bin/bash
# xennet netfront (user space in a domU: gntalloc, evtchn, xenbus) <-> Linux xen-netback
# (dom0's kernel), dom0's vif on xenbr0 (128.153.144.204). The domU part
# (../domu/netfront-linux.sh) runs `xennet guest --platform xenlinux` with its smoltcp
# stack at 128.153.144.205: it pings dom0 and serves ping and TCP echo (port 7).
. /host/lib.sh
PAIR="xennet netfront <-> Linux xen-netback"
name=netfront-linux
mac=00:16:3e:00:00:05
guest=128.153.144.205

modprobe xen-netback || { fail "load xen-netback" "modprobe xen-netback failed"; exit 1; }
# Two queues need ~1040 grants: above gntalloc's default limit of 1024.
domu_create $name "vif = [ 'bridge=xenbr0,mac=$mac' ]" "vcpus = 2" \
  xenvm.netfront=none xenvm.run=netfront-linux xen_gntalloc.limit=8192 ||
  { fail "xl create" "$(tail -n 1 /tmp/xl-create-$name.log)"; exit 1; }
domid=$(domu_domid $name)
be=/local/domain/0/backend/vif/$domid/0
fe=/local/domain/$domid/device/vif/0

check "backend state 4 (Connected)" xs_wait $be/state 4 120
check "frontend state 4 (Connected)" xs_wait $fe/state 4 60
check "frontend asked for rx copy" xs_is $fe/request-rx-copy 1
offered=$(xenstore-read $be/multi-queue-max-queues 2>/dev/null || echo 1)
asked=$(xenstore-read $fe/multi-queue-num-queues 2>/dev/null || echo 1)
check "queues: backend offers $offered, frontend uses $asked" test "$asked" = "$offered"
check "control ring: Linux refuses GREF mapping, netfront stays on grant copy" \
  domu_wait $name "no staging grants (the backend refused GREF mapping)" 120
check "domU pings dom0, none lost" \
  domu_wait $name "10 packets transmitted, 10 received, 0% packet loss" 120
check "dom0 pings domU" ping_wait $guest 60
loss() { ping -q -c "$1" -i 0.1 -W 10 ${2:+-s $2} $guest | grep -q " 0% packet loss"; }
check "200 pings from dom0, none lost" loss 200

# 16 MiB through the guest's TCP echo service and back: sha256 must match.
head -c 16777216 /dev/urandom > /tmp/blob
want=$(sha256sum < /tmp/blob | cut -d' ' -f1)
timeout 240 nc -w 10 $guest 7 < /tmp/blob > /tmp/echoed
got=$(sha256sum < /tmp/echoed | cut -d' ' -f1)
check "16 MiB TCP echo, sha256 matches ($(stat -c %s /tmp/echoed) bytes back)" test "$got" = "$want"

# Jumbo frames: with feature-sg the vif takes MTU 9000; an 8000-byte echo spans 2 pages.
ip link set vif$domid.0 mtu 9000 && ip link set xenbr0 mtu 9000
check "MTU 9000 with feature-sg: 8000-byte pings" loss 20 8000
ip link set xenbr0 mtu 1500; ip link set vif$domid.0 mtu 1500 2>/dev/null

# xl network-detach: the guest sees its backend go and closes its side; attach again.
check "xl network-detach" xl network-detach $domid 0
check "frontend let go after detach" \
  domu_wait $name "backend gone" 60
check "device gone from xenstore" retry 60 sh -c "! xenstore-exists $be"
check "xl network-attach" xl network-attach $domid bridge=xenbr0 mac=$mac
check "reconnected after attach" domu_wait $name "reconnected to domain 0" 120
check "pings after re-attach, none lost" loss 20
domu_destroy $name
