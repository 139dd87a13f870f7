#!/bin/bash
# domU part of scenarios/platform.sh: the granting side of xennet platform-check.
. /xenvm/lib.sh
exec xennet platform-check --wait 120 grant --copier 0
