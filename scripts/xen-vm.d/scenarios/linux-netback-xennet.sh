#!/bin/bash
# Linux xen-netfront (a domU's kernel) <-> xennet netback (`xennet up --platform xenlinux`
# in dom0's user space; xen-netback unloaded, the vif's script vif-noop), xennet's switch
# reaching dom0's own stack through a TAP uplink on xenbr0. Only what does not depend on
# checksum offload is checked here (Linux netfront leaves TCP checksums blank and sends
# GSO frames; carrying those to a kernel device is the kernel-vif work).
# The domU part is ../domu/linux-netback-xennet.sh.
. /host/lib.sh
PAIR="Linux xen-netfront <-> xennet netback"
name=linux-netback-xennet
mac=00:16:3e:00:00:08
guest=128.153.144.208

rmmod xen-netback 2>/dev/null || true
modprobe tun || { fail "load tun" "modprobe tun failed"; exit 1; }
cat > /tmp/topology-ln.toml <<'T'
[driver_domain]
mode = "bridge"
uplink = "tap:xnet1"
ip = "128.153.144.203/24"
T
xennet up --platform xenlinux --config /tmp/topology-ln.toml > /tmp/up-ln.log 2>&1 &
up=$!
check "xennet up started (TAP uplink xnet1)" retry 30 ip link show xnet1 ||
  { sed "s/^/  up| /" /tmp/up-ln.log >&2; fail "xennet up" "$(tail -n 1 /tmp/up-ln.log)"; exit 1; }
brctl addif xenbr0 xnet1 && ip link set xnet1 up
domu_create $name "vif = [ 'script=vif-noop,mac=$mac' ]" \
  xenvm.netfront=kernel xenvm.run=linux-netback-xennet ||
  { fail "xl create" "$(tail -n 1 /tmp/xl-create-$name.log)"; kill $up; exit 1; }
domid=$(domu_domid $name)
if ! check "backend state 4 (Connected)" xs_wait /local/domain/0/backend/vif/$domid/0/state 4 90; then
  xenstore-ls -f /local/domain/0/backend/vif/$domid >&2
  xenstore-ls -f /local/domain/$domid/device/vif >&2
  sed 's/^/  up| /' /tmp/up-ln.log >&2
  fail "backend says" "$(xenstore-read /local/domain/0/backend/vif/$domid/0/error 2>&1)"
  kill -TERM $up; domu_destroy $name; exit 1
fi
check "frontend state 4 (Connected)" xs_wait /local/domain/$domid/device/vif/0/state 4 60
check "xennet up attached vif$domid.0" retry 30 grep -q "vif$domid.0 connected" /tmp/up-ln.log
check "dom0 pings Linux netfront" ping_wait $guest 90
check "100 pings from dom0, none lost" \
  sh -c "ping -q -c 100 -i 0.1 -W 2 $guest | grep -q ' 0% packet loss'"
domu_done $name 120 || fail "domU part" "ended with status $? (see $(domu_log $name))"
domu_destroy $name
kill -TERM $up
check "xennet up stops on SIGTERM" retry 20 sh -c "! kill -0 $up 2>/dev/null"
sed 's/^/  up| /' /tmp/up-ln.log >&2
