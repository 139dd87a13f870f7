#!/bin/bash
# xennet netfront (domU user space) <-> xennet netback (`xennet up --platform xenlinux`
# in dom0's user space: gntdev, evtchn, xenstored). xen-netback stays unloaded and the vif
# gets the no-op hotplug script, so xennet serves it. xennet's switch reaches dom0's own
# stack through a TAP uplink (xnet0) on dom0's kernel bridge xenbr0 (128.153.144.204).
# The domU part is ../domu/netfront-netback.sh (smoltcp at 128.153.144.206).
. /host/lib.sh
PAIR="xennet netfront <-> xennet netback"
name=netfront-netback
mac=00:16:3e:00:00:06
guest=128.153.144.206

rmmod xen-netback 2>/dev/null || true
modprobe tun || { fail "load tun" "modprobe tun failed"; exit 1; }
cat > /tmp/topology.toml <<'T'
[driver_domain]
mode = "bridge"
uplink = "tap:xnet0"
ip = "128.153.144.203/24"
T
xennet up --platform xenlinux --config /tmp/topology.toml > /tmp/up.log 2>&1 &
up=$!
check "xennet up started (TAP uplink xnet0)" retry 30 ip link show xnet0 ||
  { sed "s/^/  up| /" /tmp/up.log >&2; fail "xennet up" "$(tail -n 1 /tmp/up.log)"; exit 1; }
brctl addif xenbr0 xnet0 && ip link set xnet0 up
domu_create $name "vif = [ 'script=vif-noop,mac=$mac' ]" "vcpus = 2" \
  xenvm.netfront=none xenvm.run=netfront-netback xen_gntalloc.limit=8192 ||
  { fail "xl create" "$(tail -n 1 /tmp/xl-create-$name.log)"; cat /tmp/up.log >&2; kill $up; exit 1; }
domid=$(domu_domid $name)
be=/local/domain/0/backend/vif/$domid/0
fe=/local/domain/$domid/device/vif/0

check "backend state 4 (Connected)" xs_wait $be/state 4 120
check "frontend state 4 (Connected)" xs_wait $fe/state 4 60
check "xennet up attached vif$domid.0" retry 30 grep -q "vif$domid.0 connected" /tmp/up.log
offered=$(xenstore-read $be/multi-queue-max-queues 2>/dev/null || echo 1)
asked=$(xenstore-read $fe/multi-queue-num-queues 2>/dev/null || echo 1)
check "queues: backend offers $offered, frontend uses $asked" test "$asked" -gt 1
check "staging grants in use" domu_wait $name "staging grants mapped by the backend" 120
check "domU pings dom0, none lost" \
  domu_wait $name "10 packets transmitted, 10 received, 0% packet loss" 120
check "dom0 pings domU" ping_wait $guest 60
loss() { ping -q -c "$1" -i 0.1 -W 10 ${2:+-s $2} $guest | grep -q " 0% packet loss"; }
check "200 pings from dom0, none lost" loss 200

head -c 16777216 /dev/urandom > /tmp/blob
want=$(sha256sum < /tmp/blob | cut -d' ' -f1)
timeout 240 nc -w 10 $guest 7 < /tmp/blob > /tmp/echoed
got=$(sha256sum < /tmp/echoed | cut -d' ' -f1)
check "16 MiB TCP echo, sha256 matches ($(stat -c %s /tmp/echoed) bytes back)" test "$got" = "$want"

ip link set xnet0 mtu 9000 && ip link set xenbr0 mtu 9000
check "MTU 9000 with feature-sg: 8000-byte pings" loss 20 8000
ip link set xenbr0 mtu 1500; ip link set xnet0 mtu 1500

check "xl network-detach" xl network-detach $domid 0
check "frontend let go after detach" domu_wait $name "backend gone" 60
check "xennet up detached the vif" retry 30 grep -q "vif$domid.0 disconnected" /tmp/up.log
check "xl network-attach" xl network-attach $domid script=vif-noop mac=$mac
check "reconnected after attach" domu_wait $name "reconnected to domain 0" 120
check "pings after re-attach, none lost" loss 20
domu_destroy $name
kill -TERM $up
check "xennet up stops on SIGTERM" retry 20 sh -c "! kill -0 $up 2>/dev/null"
sed 's/^/  up| /' /tmp/up.log >&2
