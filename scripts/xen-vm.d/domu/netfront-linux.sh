#!/bin/bash
# domU part of scenarios/netfront-linux.sh: netfront in user space (no xen-netfront in
# this kernel); its output is the console, which dom0 reads.
. /xenvm/lib.sh
exec xennet guest --platform xenlinux --ip 128.153.144.205/24 --queues 2 \
  --ping 128.153.144.204 --count 10 --serve --wait 600
