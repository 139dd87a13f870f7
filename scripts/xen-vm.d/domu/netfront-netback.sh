#!/bin/bash
# domU part of scenarios/netfront-netback.sh: netfront in user space against xennet's
# netback in dom0; output is the console, which dom0 reads.
. /xenvm/lib.sh
exec xennet guest --platform xenlinux --ip 128.153.144.206/24 --queues 2 \
  --ping 128.153.144.204 --count 10 --serve --wait 600
