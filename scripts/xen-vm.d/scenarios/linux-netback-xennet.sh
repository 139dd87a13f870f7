#!/bin/bash
# Linux xen-netfront (a domU's kernel, 2 vCPUs) <-> xennet netback (`xennet up --platform
# xenlinux` in dom0's user space; xen-netback unloaded, the vif's script vif-noop),
# xennet's switch reaching dom0's own stack through a TAP uplink on xenbr0. Linux netfront
# sends its TCP frames csum_blank and, as xennet offers feature-gso-tcpv4, as 64 KiB GSO
# frames: netback finishes both before the switch (docs/drivers.md).
# The domU part is ../domu/linux-netback-xennet.sh.
# xenvm-timeout: 480 (32 MiB over TCP under TCG: 2-3 minutes when the host is busy)
. /host/lib.sh
PAIR="Linux xen-netfront <-> xennet netback"
name=linux-netback-xennet
mac=00:16:3e:00:00:08
guest=128.153.144.208
log=/tmp/up-ln.log

rmmod xen-netback 2>/dev/null || true
modprobe tun || { fail "load tun" "modprobe tun failed"; exit 1; }
cat > /tmp/topology-ln.toml <<'T'
[driver_domain]
mode = "bridge"
uplink = "tap:xnet1"
ip = "128.153.144.203/24"
T
# start_up LOG: xennet up in the background (pid in $up; not in a subshell, so $up is
# this shell's), then its TAP uplink on xenbr0 (check-able: it fails if xnet1 never comes).
start_up() {
  xennet up --platform xenlinux --config /tmp/topology-ln.toml > "$1" 2>&1 &
  up=$!
}
uplink_on_bridge() {
  retry 30 ip link show xnet1 >/dev/null || return 1
  brctl addif xenbr0 xnet1 && ip link set xnet1 mtu "$1" && ip link set xnet1 up
}
# snmp FIELD: dom0's IP counter FIELD from /proc/net/snmp
snmp() { awk -v f="$1" '$1=="Ip:" && !n {for (i=1;i<=NF;i++) h[i]=$i; n=1; next}
  $1=="Ip:" {for (i=1;i<=NF;i++) if (h[i]==f) print $i}' /proc/net/snmp; }
# pings N [ARG...]: N pings to the guest, none lost
# (-W 10: a reply late on a loaded TCG machine is not a loss)
pings() { n=$1; shift; ping -q -c "$n" -i 0.05 -W 10 "$@" $guest | grep -q ' 0% packet loss'; }
# fetch PORT FILE: receive what the guest serves on PORT into FILE (nc's stdin is held
# open by a FIFO: busybox nc quits at its stdin's end, cutting a transfer short)
fetch() {
  [ -p /tmp/hold-$name ] || mkfifo /tmp/hold-$name
  exec 7<>/tmp/hold-$name
  timeout 240 nc -w 10 $guest "$1" <&7 > "$2"
  exec 7>&-
}
sha() { sha256sum < "$1" | cut -d' ' -f1; }
bail() {
  sed 's/^/  up| /' $log >&2
  xenstore-ls -f /local/domain/0/backend/vif >&2 2>/dev/null
  kill -9 $up 2>/dev/null; domu_destroy $name; exit 1
}

start_up $log
check "xennet up started (TAP uplink xnet1 on xenbr0)" uplink_on_bridge 1500 ||
  { sed "s/^/  up| /" $log >&2; fail "xennet up" "$(tail -n 1 $log)"; kill $up; exit 1; }
domu_create $name "vif = [ 'script=vif-noop,mac=$mac' ]" "vcpus = 2" \
  xenvm.netfront=kernel xenvm.run=linux-netback-xennet ||
  { fail "xl create" "$(tail -n 1 /tmp/xl-create-$name.log)"; kill $up; exit 1; }
domid=$(domu_domid $name)
be=/local/domain/0/backend/vif/$domid/0
fe=/local/domain/$domid/device/vif/0
if ! check "backend state 4 (Connected)" xs_wait $be/state 4 90; then
  xenstore-ls -f $fe >&2
  fail "backend says" "$(xenstore-read $be/error 2>&1)"
  bail
fi
check "frontend state 4 (Connected)" xs_wait $fe/state 4 60
check "xennet up attached vif$domid.0" retry 30 grep -q "vif$domid.0 connected" $log
offer=$(xenstore-read $be/multi-queue-max-queues)
queues=$(xenstore-read $fe/multi-queue-num-queues 2>/dev/null || echo 1)
check "Linux netfront (2 vCPUs) runs $queues queues (xennet offers $offer)" \
  test "$queues" = "$(( offer < 2 ? offer : 2 ))"
check "dom0 pings Linux netfront" ping_wait $guest 90
ping -q -c 200 -i 0.05 -W 10 $guest > /tmp/ping200-$name 2>&1
check "200 pings from dom0, none lost ($(grep -o 'round-trip.*' /tmp/ping200-$name))" \
  grep -q ' 0% packet loss' /tmp/ping200-$name

# 16 MiB each way over TCP, checked with sha256.
check "the domU made its 16 MiB blob" domu_wait $name "blob sha256 " 120
want=$(grep -a "blob sha256 " "$(domu_log $name)" | tail -n 1 | awk '{print $3}' | tr -d '\r')
t0=$(cut -d' ' -f1 /proc/uptime)
fetch 5001 /tmp/got-$name
t1=$(cut -d' ' -f1 /proc/uptime)
check "16 MiB TCP Linux netfront -> dom0, sha256 matches ($(stat -c %s /tmp/got-$name) bytes, $(awk "BEGIN{print $t1-$t0}") s)" \
  test -n "$want" -a "$(sha /tmp/got-$name)" = "$want"
rm -f /tmp/got-$name
head -c 16777216 /dev/urandom > /tmp/blob-$name
timeout 240 nc -l -p 5002 < /tmp/blob-$name &
check "16 MiB TCP dom0 -> Linux netfront, sha256 matches" \
  domu_wait $name "got sha256 $(sha /tmp/blob-$name) 16777216" 240
rm -f /tmp/blob-$name

# MTU 9000 (Linux netfront allows it with feature-sg; the domU set its eth0 so): jumbo
# frames cross whole both ways, no IP fragment made or reassembled in dom0.
ip link set xnet1 mtu 9000 && ip link set xenbr0 mtu 9000
frag0=$(snmp FragCreates); reasm0=$(snmp ReasmReqds)
check "MTU 9000: 20 pings of 8972 bytes, none lost" pings 20 -s 8972
check "MTU 9000: no IP fragments either way (dom0 made $(( $(snmp FragCreates) - frag0 )), reassembled $(( $(snmp ReasmReqds) - reasm0 )))" \
  test "$(snmp FragCreates)" = "$frag0" -a "$(snmp ReasmReqds)" = "$reasm0"
want4=$(grep -a "blob4 sha256 " "$(domu_log $name)" | tail -n 1 | awk '{print $3}' | tr -d '\r')
fetch 5003 /tmp/got-$name
check "MTU 9000: 4 MiB TCP Linux netfront -> dom0, sha256 matches" \
  test -n "$want4" -a "$(sha /tmp/got-$name)" = "$want4"
rm -f /tmp/got-$name

# xl network-detach, then network-attach: the guest loses eth0 and gets a new one.
check "xl network-detach $domid 0" timeout 60 xl network-detach $domid 0
check "xennet up saw vif$domid.0 go" retry 30 grep -q "vif$domid.0 disconnected" $log
check "backend directory removed" retry 30 sh -c "! xenstore-exists $be"
check "xl network-attach $domid" timeout 60 xl network-attach $domid script=vif-noop mac=$mac
check "re-attached: backend Connected" xs_wait $be/state 4 90
check "re-attached: dom0 pings Linux netfront" ping_wait $guest 90
check "re-attached: 50 pings, none lost" pings 50

# kill -9 of the backend and a restart. Linux netfront has no way back to a backend
# that vanished (it reconnects only from Initialising, and a Closed device stays
# closed): the restarted xennet up leaves the orphaned device alone; the toolstack's
# detach + attach brings the guest back (docs/real-xen.md).
kill -9 $up; wait $up 2>/dev/null
check "after kill -9: the old xennet up is gone" retry 10 sh -c "! kill -0 $up 2>/dev/null"
log=$log.2
start_up $log
check "after kill -9: xennet up restarted" uplink_on_bridge 9000
sleep 2
if ping -q -c 5 -i 0.2 -W 1 $guest >/dev/null 2>&1; then
  fail "after kill -9: Linux netfront" "answered: document this (docs/real-xen.md says it does not)"
else
  ok "after kill -9: Linux netfront gets no answer until the device is re-attached (frontend state $(xenstore-read $fe/state))"
fi
check "after kill -9: xl network-detach" timeout 60 xl network-detach $domid 0
check "after kill -9: xl network-attach" timeout 60 xl network-attach $domid script=vif-noop mac=$mac
check "after kill -9 and re-attach: backend Connected" xs_wait $be/state 4 90
check "after kill -9 and re-attach: dom0 pings Linux netfront" ping_wait $guest 90
check "after kill -9 and re-attach: 50 pings, none lost" pings 50
domu_destroy $name
ip link set xenbr0 mtu 1500  # as the next scenario expects it
kill -TERM $up
check "xennet up stops on SIGTERM" retry 20 sh -c "! kill -0 $up 2>/dev/null"
sed 's/^/  up| /' /tmp/up-ln.log $log >&2
test -n "$up" || fail "scenario" "lost the pid of xennet up"
