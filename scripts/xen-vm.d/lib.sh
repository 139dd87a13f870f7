# Shell library for xen-vm scenarios (sourced by bash in dom0 and in a domU).
# dom0: . /host/lib.sh      domU: . /xenvm/lib.sh
# Check lines go to stdout as "XENVM: ok   NAME" / "XENVM: FAIL NAME: WHY"; the host strips
# the marker.  Set PAIR="A <-> B" to prefix every check name with "A <-> B: ".
# Reference: scripts/xen-vm.d/README.md.

XENVM_CONSOLE_DIR=/var/log/xen/console

# progress notes with the uptime, on stderr (the console): where a slow run spent its time
xenvm_note() { echo "[xenvm $(cut -d' ' -f1 /proc/uptime)] $*" >&2; }

_xenvm_name() { if [ -n "${PAIR:-}" ]; then echo "$PAIR: $1"; else echo "$1"; fi; }

# ok NAME / fail NAME [WHY]: print one check line
ok() { echo "XENVM: ok   $(_xenvm_name "$1")"; }
fail() { echo "XENVM: FAIL $(_xenvm_name "$1"): ${2:-failed}"; }

# check NAME CMD [ARG...]: run CMD; ok if it exits 0, else FAIL with its exit code and last
# output line (its whole output goes to stderr, i.e. the console log).  Returns CMD's status.
check() {
  _c_name=$1; shift
  _c_rc=0
  _c_out=$("$@" 2>&1) || _c_rc=$?
  if [ "$_c_rc" = 0 ]; then
    ok "$_c_name"
  else
    [ -n "$_c_out" ] && printf '%s\n' "$_c_out" | sed 's/^/  | /' >&2
    fail "$_c_name" "exit $_c_rc${_c_out:+: $(printf '%s\n' "$_c_out" | tail -n 1)}"
  fi
  return "$_c_rc"
}

# retry SECONDS CMD [ARG...]: run CMD every 0.5 s until it succeeds or SECONDS pass
retry() {
  _r_end=$(( $(cut -d. -f1 /proc/uptime) + $1 )); shift
  while :; do
    "$@" && return 0
    [ "$(cut -d. -f1 /proc/uptime)" -ge "$_r_end" ] && { echo "still failing after the timeout: $*"; return 1; }
    sleep 0.5
  done
}

# xs_is PATH VALUE: the xenstore node PATH holds VALUE
xs_is() {
  _x_v=$(xenstore-read "$1" 2>/dev/null) || { echo "$1: unreadable"; return 1; }
  [ "$_x_v" = "$2" ] || { echo "$1 = $_x_v, want $2"; return 1; }
}
# xs_wait PATH VALUE SECONDS: wait until PATH holds VALUE
xs_wait() { retry "$3" xs_is "$1" "$2"; }

# ping_wait ADDR SECONDS: wait until ADDR answers one ping
ping_wait() { retry "$2" ping -c 1 -W 1 "$1" >/dev/null; }

# ---- dom0 only ----------------------------------------------------------------------

# domu_create [--nowait] NAME [ARG...]: create PV domain NAME.  An ARG whose key has a dot
# goes on the domU kernel command line: xenvm.netfront=kernel|none (default kernel),
# xenvm.run=SCRIPT (runs the domU part /scenario/SCRIPT), or a module option such as
# xen_gntalloc.limit=4096 (modprobe reads it from there).  Any other ARG is an xl config
# line ("vif = [ 'bridge=xenbr0' ]", "memory = 512", ...) and replaces the default of the
# same key.  Defaults: type pv, kernel /host/kernel, ramdisk /host/domu.cpio,
# memory 256, vcpus 1.  Without --nowait it returns when `xl create` does (xl waits for
# the vifs' hotplug scripts, and for a user-space backend until something sets the
# backend state); with --nowait, `xl create` goes on in the background (its output in
# /tmp/xl-create-NAME.log) and this returns once the domain exists.
domu_create() {
  _d_wait=1
  [ "$1" = --nowait ] && { _d_wait=0; shift; }
  _d_name=$1; shift
  _d_cfg=/tmp/domu-$_d_name.cfg
  _d_extra="console=hvc0 loglevel=4"
  _d_lines=""
  _d_nf=""
  for _d_a in "$@"; do
    _d_k=${_d_a%%=*}
    case $_d_k in
      *" "*|"$_d_a") _d_lines="$_d_lines$_d_a
" ;;                                   # an xl config line
      xenvm.netfront) _d_nf=1; _d_extra="$_d_extra $_d_a" ;;
      *.*) _d_extra="$_d_extra $_d_a" ;; # xenvm.KEY=V or a module option (MODULE.PARAM=V)
      *) _d_lines="$_d_lines$_d_a
" ;;
    esac
  done
  [ -n "$_d_nf" ] || _d_extra="$_d_extra xenvm.netfront=kernel"
  {
    echo "name = \"$_d_name\""
    for _d_kv in 'type = "pv"' 'kernel = "/host/kernel"' 'ramdisk = "/host/domu.cpio"' \
                 'memory = 256' 'vcpus = 1'; do
      printf '%s' "$_d_lines" | grep -q "^ *${_d_kv%% *} *=" || echo "$_d_kv"
    done
    echo "extra = \"$_d_extra\""
    printf '%s' "$_d_lines"
  } > "$_d_cfg"
  rm -f "$XENVM_CONSOLE_DIR/guest-$_d_name.log" "/tmp/domu-$_d_name.fwd"
  xenvm_note "xl create $_d_name"
  if [ "$_d_wait" = 1 ]; then
    xl create "$_d_cfg" > "/tmp/xl-create-$_d_name.log" 2>&1 || {
      echo "xl create $_d_name failed:" >&2; sed 's/^/  | /' "/tmp/xl-create-$_d_name.log" >&2; return 1; }
  else
    xl create "$_d_cfg" > "/tmp/xl-create-$_d_name.log" 2>&1 &
    retry 60 xl domid "$_d_name" >/dev/null 2>&1 || {
      echo "domain $_d_name did not appear:" >&2; sed 's/^/  | /' "/tmp/xl-create-$_d_name.log" >&2; return 1; }
  fi
  xenvm_note "domain $_d_name exists (id $(xl domid "$_d_name"))"
}

# domu_domid NAME: print the domain id
domu_domid() { xl domid "$1"; }

# domu_log NAME: print the path of NAME's console log (xenconsoled writes it)
domu_log() { echo "$XENVM_CONSOLE_DIR/guest-$1.log"; }

# domu_wait NAME PATTERN SECONDS: wait until a line of NAME's console matches PATTERN
# (grep basic regex)
domu_wait() {
  retry "$3" grep -q -- "$2" "$(domu_log "$1")" 2>/dev/null >/dev/null || {
    echo "domu_wait $1: no line matching '$2' after $3 s" >&2; return 1; }
}

# domu_done NAME SECONDS: wait for NAME's domU part to end; returns its exit status
domu_done() {
  domu_wait "$1" 'XENVM: domu-done' "$2" || return 124
  xenvm_note "domU part of $1 done"
  return "$(tr -d '\r' < "$(domu_log "$1")" | sed -n 's/.*XENVM: domu-done .* rc=\([0-9]*\).*/\1/p' | tail -n 1)"
}

# domu_lines NAME: copy NAME's check lines not copied yet into dom0's output (to the host)
domu_lines() {
  _l_log=$(domu_log "$1"); _l_fwd=/tmp/domu-$1.fwd
  _l_seen=$(cat "$_l_fwd" 2>/dev/null || echo 0)
  [ -f "$_l_log" ] || return 0
  tr -d '\r' < "$_l_log" | sed -n 's/^.*\(XENVM: \(ok   \|FAIL \)\)/\1/p' > "/tmp/domu-$1.lines"
  tail -n +$((_l_seen + 1)) "/tmp/domu-$1.lines"
  wc -l < "/tmp/domu-$1.lines" > "$_l_fwd"
}

# domu_destroy NAME: forward its remaining check lines, then destroy it
domu_destroy() {
  domu_lines "$1"
  xenvm_note "xl destroy $1"
  xl destroy "$1" >/dev/null 2>&1 || echo "xl destroy $1 failed" >&2
  xenvm_note "destroyed $1"
}
