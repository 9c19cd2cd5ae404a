# What test_deb.sh and test_rpm.sh share (sourced by both): the throwaway root they install
# into, and the checks of the installed node that do not depend on the package format.
#
# The throwaway root is an overlayfs over / whose upper layer is a tmpfs, mounted in
# private mount, network and PID namespaces (unshare): the package manager, its scripts
# and the node run in a chroot into it, the node listens on the namespace's own loopback,
# and everything vanishes with the namespace. The host is fingerprinted before and after.
#
# The functions that run inside use $root (set by mount_throwaway_root) and, for the node,
# $node_pid and $root/petchat-test/node.log.

say() { printf '== %s\n' "$*"; }
fail() {
  printf 'FAIL: %s\n' "$*" >&2
  exit 1
}

# Runs "<this script> --inside <tmpfs> <packages dir>" in new mount, network and PID
# namespaces, and fails if the output of the function named $2 (the host's packages,
# users and petchat paths) differs after it.
run_in_throwaway() {
  local script="$1" fingerprint="$2" packages="$3"
  local before after scratch rc=0
  before="$("$fingerprint")"
  scratch="$(mktemp -d /tmp/petchat-pkg-root.XXXXXX)"
  say "throwaway root: overlay over / on a tmpfs at $scratch, in new mount, network and PID namespaces"
  unshare --mount --net --pid --fork --mount-proc --propagation private \
    /bin/bash -c 'mount -t tmpfs -o mode=0755 tmpfs "$1" && mount -t tmpfs tmpfs /run && exec "$2" --inside "$1" "$3"' \
    _ "$scratch" "$(realpath "$script")" "$packages" || rc=$?
  rmdir "$scratch" 2>/dev/null || true
  after="$("$fingerprint")"
  if [ "$before" != "$after" ]; then
    diff <(echo "$before") <(echo "$after") >&2 || true
    fail "the host changed: something leaked out of the throwaway root"
  fi
  echo "   the host's packages, users, groups and petchat paths are as before"
  [ "$rc" = 0 ] || fail "the checks in the throwaway root failed (exit $rc)"
}

# Inside the namespaces: the overlay over / at $1/root ($1 a tmpfs), with /proc, /dev and
# /sys, and a fresh /run (no /run/systemd/system: package scripts see no running systemd
# and start nothing) and /tmp. Sets $root; makes $root/petchat-test.
mount_throwaway_root() {
  local base="$1"
  root="$base/root"
  mkdir -p "$base/upper" "$base/work" "$root"
  mount -t overlay overlay -o "lowerdir=/,upperdir=$base/upper,workdir=$base/work" "$root"
  mount -t proc proc "$root/proc"
  mount --rbind /dev "$root/dev"
  mount --rbind /sys "$root/sys"
  mount -t tmpfs tmpfs "$root/run"
  mount -t tmpfs tmpfs "$root/tmp"
  ip link set lo up
  mkdir "$root/petchat-test"
}

in_root() { chroot "$root" "$@"; }

# systemd-analyze security (offline) of the unit $1 in the root: its exposure must be at
# most $2.
check_exposure() {
  local unit="$1" max="$2" security exposure
  say "systemd-analyze security --offline=true $unit"
  security="$(in_root systemd-analyze security --offline=true "$unit" 2>&1)"
  echo "$security" | grep -E '✗|Overall' | sed 's/^/   /'
  exposure="$(echo "$security" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')"
  [ -n "$exposure" ] || fail "no exposure level in systemd-analyze's output"
  awk -v e="$exposure" -v m="$max" 'BEGIN { exit !(e <= m) }' || fail "exposure $exposure is above $max"
}

# The unit's command line $1 as systemd runs it: the environment file $2 ("" for none),
# user petchat, umask 0077, in /var/lib/petchat. Sets $node_pid; output in node.log.
run_as_unit() {
  # chroot itself, not in_root: a backgrounded function would be a subshell, and $! its
  # PID instead of the node's (chroot, sh and setpriv each exec the next).
  chroot "$root" /bin/sh -c "set -a; [ -z '$2' ] || . '$2'; set +a; umask 0077; cd /var/lib/petchat;
    exec setpriv --reuid=petchat --regid=petchat --init-groups --inh-caps=-all $1" \
    >"$root/petchat-test/node.log" 2>&1 &
  node_pid=$!
}

# The gateway listen address of the installed config.
installed_listen() {
  in_root /usr/bin/python3 -c 'import tomllib; print(tomllib.load(open("/etc/petchat/node.toml", "rb"))["gateway"]["listen"])'
}

# Waits until http://$1/readyz answers 200 (30 s at most, or until the node exits); fails
# with $2 and the node's log otherwise.
wait_ready() {
  local listen="$1" what="$2" readyz=""
  for _ in $(seq 1 300); do
    readyz="$(curl -s -o /dev/null -w '%{http_code}' "http://$listen/readyz" || true)"
    [ "$readyz" = 200 ] && return 0
    kill -0 "$node_pid" 2>/dev/null || break
    sleep 0.1
  done
  cat "$root/petchat-test/node.log" >&2
  fail "$what: GET http://$listen/readyz answered '$readyz', not 200"
}

# The started node of region europe serves: the web client, petchatctl as petchat (socket
# found through the config), the region key 0600 petchat.
check_serving() {
  local listen="$1" page status
  echo "   GET http://$listen/readyz: 200"
  page="$(curl -s -o /dev/null -w '%{http_code}' "http://$listen/" || true)"
  [ "$page" = 200 ] || fail "GET http://$listen/ (the web client from /usr/share/petchat/web) answered '$page', not 200"
  echo "   GET http://$listen/ (the web client): 200"
  status="$(in_root setpriv --reuid=petchat --regid=petchat --init-groups petchatctl --json status)" ||
    fail "petchatctl status failed as petchat"
  echo "$status" | grep -q '"region" *: *"europe"' || fail "petchatctl status does not say region europe: $status"
  echo "   petchatctl status (as petchat, socket found through the config): region europe"
  [ "$(in_root stat -c '%a %U' /var/lib/petchat/region.key)" = "600 petchat" ] ||
    fail "region.key is $(in_root stat -c '%a %U' /var/lib/petchat/region.key)"
}

# SIGTERM to the node: exit 0 and "stopped cleanly" in its log.
stop_cleanly() {
  local rc=0
  kill -TERM "$node_pid"
  wait "$node_pid" || rc=$?
  [ "$rc" = 0 ] || {
    cat "$root/petchat-test/node.log" >&2
    fail "SIGTERM: the node exited $rc, not 0"
  }
  grep -q 'stopped cleanly' "$root/petchat-test/node.log" || fail "no 'stopped cleanly' after SIGTERM"
  echo "   SIGTERM: exit 0, stopped cleanly"
}

# Without a region ($1: the environment file, "" for none) the node exits 2 and says
# where to set it.
check_refuses_without_region() {
  local exec_start="$1" envfile="$2" rc=0
  run_as_unit "$exec_start" "$envfile"
  wait "$node_pid" || rc=$?
  sed 's/^/   node: /' "$root/petchat-test/node.log"
  [ "$rc" = 2 ] || fail "without a region the node exited $rc, not 2"
  grep -q 'PETCHAT_REGION' "$root/petchat-test/node.log" || fail "the refusal does not say where to set the region"
}
