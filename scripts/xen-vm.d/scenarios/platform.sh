#!/bin/bash
# The xenlinux platform against the hypervisor: `xennet platform-check` grants pages in
# a domU (gntalloc) and copies through them from dom0 (gntdev); every GNTST status must
# equal the plain-process platform's for the same case; a burst of notifications to the
# domU must coalesce (one or two events for five sends). The domU part is ../domu/platform.sh.
. /host/lib.sh
PAIR="xennet platform (xenlinux) <-> Xen 4.17"
name=platform

domu_create $name "vif = [ ]" xenvm.netfront=none xenvm.run=platform ||
  { fail "xl create" "$(tail -n 1 /tmp/xl-create-$name.log)"; exit 1; }
domid=$(domu_domid $name)
out=$(xennet platform-check --wait 120 copy --domid "$domid" 2>&1)
rc=$?
printf '%s\n' "$out" | sed 's/^/  | /' >&2
n=0
while IFS= read -r line; do
  case "$line" in
    "same  "*) rest=${line#same  }; ok "grant copy, ${rest%%: *}: ${rest#*: }, as on shm"; n=$((n+1)) ;;
    "DIFF  "*) rest=${line#DIFF  }; fail "grant copy, ${rest%%: *}" "${rest#*: }"; n=$((n+1)) ;;
    "events: "*)
      got=$(printf '%s' "$line" | sed -n 's/.*sent, \([0-9]*\) received.*/\1/p')
      # A port holds one pending event: sends while it is pending merge into it, and
      # at most one more can arrive once the first was taken (delivery clears the
      # pending bit, and a send racing with it sets it again). So 1 or 2 of the burst.
      if [ "$got" = 1 ] || [ "$got" = 2 ]; then ok "event channel: ${line#events: } (coalesced)"
      else fail "event channel notifications coalesce" "${line#events: }"; fi ;;
  esac
done <<< "$out"
[ "$n" -gt 0 ] || fail "platform-check ran" "exit $rc: $(printf '%s\n' "$out" | tail -n 1)"
domu_wait $name "granter:" 30 >/dev/null || fail "granter finished" "see $(domu_log $name)"
domu_destroy $name
