#!/bin/bash
# domU part of scenarios/netfront-tap.sh: the kernel's stack on a TAP behind netfront.
. /xenvm/lib.sh
modprobe tun || { echo "modprobe tun failed"; exit 1; }
xennet guest --platform xenlinux --stack tap:xt0 --ip 128.153.144.207/24 --serve --wait 600 &
retry 60 ip link show xt0 >/dev/null 2>&1 || { echo "no xt0"; exit 1; }
ip link set xt0 address 00:16:3e:00:00:07
ip addr add 128.153.144.207/24 dev xt0
ip link set xt0 up
retry 60 ping -c 1 -W 1 128.153.144.204 >/dev/null
out=$(ping -q -c 20 -i 0.1 -W 10 128.153.144.204 2>&1)
case "$out" in *" 0% packet loss"*) echo "kernel ping: ok" ;; *) echo "kernel ping: failed: $out" ;; esac
for s in 1000 1400 1472; do
  out=$(ping -q -c 5 -i 0.2 -W 10 -s $s 128.153.144.204 2>&1)
  case "$out" in *" 0% packet loss"*) echo "kernel ping -s $s: ok" ;; *) echo "kernel ping -s $s: failed" ;; esac
done
head -c 4194304 /dev/urandom > /tmp/blob
echo "blob sha256 $(sha256sum < /tmp/blob | cut -d' ' -f1)"
nc -l -p 5001 < /tmp/blob
wait
