#!/bin/bash
# Linux xen-netfront (domU) <-> Linux xen-netback (dom0): proves the fixture itself.
# The domU part is ../domu/linux-linux.sh.
. /host/lib.sh
PAIR="Linux xen-netfront <-> Linux xen-netback"
name=linux-linux

modprobe xen-netback || { fail "load xen-netback" "modprobe xen-netback failed"; exit 1; }
domu_create $name "vif = [ 'bridge=xenbr0,mac=00:16:3e:00:00:05' ]" \
  xenvm.netfront=kernel xenvm.run=linux-linux ||
  { fail "xl create" "$(tail -n 1 /tmp/xl-create-$name.log)"; exit 1; }
domid=$(domu_domid $name)

check "backend state 4" xs_wait /local/domain/0/backend/vif/$domid/0/state 4 90
check "frontend state 4" xs_wait /local/domain/$domid/device/vif/0/state 4 90
check "dom0 pings domU" ping_wait 128.153.144.205 60
# the domU part pings dom0 and prints its own check line
domu_done $name 90 || fail "domU part" "ended with status $? (see $(domu_log $name))"
domu_destroy $name
