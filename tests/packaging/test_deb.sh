#!/usr/bin/env bash
# The .deb, end to end: builds it with dpkg-buildpackage (in a copy of the tree, never in
# ./build), lints it, installs it into a throwaway root and runs the installed node there.
#
#   tests/packaging/test_deb.sh               build, lint, install, run (about 15 minutes on
#                                             2 cores, nearly all of it the compile)
#   tests/packaging/test_deb.sh --debs DIR    skip the build: test the .deb files in DIR
#
# Runs as root. The throwaway root is an overlayfs over / (its upper layer on a tmpfs),
# mounted in a private mount, network and PID namespace (unshare): dpkg, the maintainer
# scripts, debconf, systemd-sysusers and the node all run in a chroot into it, the node
# listens on the namespace's own loopback, and everything vanishes with the namespace.
# The host's package database, users, /etc and /var are checked to be unchanged at the end.
#
# What it checks: lintian (no error, no warning that is not overridden with a reason);
# the region preseeded with debconf ends up in /etc/default/petchat-node; the petchat
# user, /var/lib/petchat 0700 petchat, /etc/petchat/node.toml 0640 root:petchat, the unit
# enabled; systemd-analyze verify and security (<= 1.5) on the installed unit; the unit's
# ExecStart, run as petchat with the unit's environment file, answers /readyz 200 and
# petchatctl reaches it; SIGTERM stops it cleanly; then the unit itself under a real
# systemd (the root booted with systemd-nspawn: readiness, the watchdog, reload, an image
# upload under the unit's sandbox, stop, no restart after a refusal); without a region it
# refuses (exit 2, naming PETCHAT_REGION); purge keeps /var/lib/petchat unless
# petchat-node/purge-data is true, and removes the debconf answers and
# /etc/default/petchat-node; a reinstall over the kept data with the region set by hand
# and dpkg-reconfigure keeps the operator's other lines and the region key.
#
# Environment: PETCHAT_PKG_WORK (default /var/tmp/petchat-pkgtest) holds the copy of the
# tree, the build log and the packages; PETCHAT_PKG_JOBS (default auto: one per core) the
# compile jobs; CCACHE_DIR (default ~/.cache/petchat-ccache, as CI's) is passed to the
# build: meson uses ccache when it is installed, and the fixed work path lets a second run
# reuse it.
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
max_exposure=1.5

# shellcheck source=tests/packaging/throwaway.sh
. "$repo/tests/packaging/throwaway.sh"

# ---------------------------------------------------------------------------------------
# Inside the namespaces: $2 is the throwaway root's parent (a tmpfs), $3 the .deb directory.
# ---------------------------------------------------------------------------------------
inside() {
  local base="$1" debs="$2"
  mount_throwaway_root "$base"  # the maintainer scripts see no running systemd: the node is started by hand
  local deb
  deb="$(cd "$debs" && echo petchat-node_*.deb)"
  cp "$debs/$deb" "$root/petchat-test/"
  export DEBIAN_FRONTEND=noninteractive

  say "install with the region preseeded (europe)"
  echo "petchat-node petchat-node/region string europe" | in_root debconf-set-selections
  in_root dpkg -i "/petchat-test/$deb" 2>&1 | sed 's/^/   dpkg: /' || fail "dpkg -i failed"
  [ "$(in_root dpkg-query -W -f='${Status}' petchat-node)" = "install ok installed" ] ||
    fail "petchat-node is not installed"

  say "user, directories, modes"
  local pw
  pw="$(in_root getent passwd petchat)" || fail "no petchat user"
  local uid shell
  uid="$(echo "$pw" | cut -d: -f3)" shell="$(echo "$pw" | cut -d: -f7)"
  [ "$uid" -lt 1000 ] || fail "petchat is not a system user (uid $uid)"
  case "$shell" in */nologin | */false) ;; *) fail "petchat has a login shell: $shell" ;; esac
  [ "$(in_root stat -c '%a %U:%G' /var/lib/petchat)" = "700 petchat:petchat" ] ||
    fail "/var/lib/petchat is $(in_root stat -c '%a %U:%G' /var/lib/petchat), not 700 petchat:petchat"
  [ "$(in_root stat -c '%a %U:%G' /etc/petchat/node.toml)" = "640 root:petchat" ] ||
    fail "/etc/petchat/node.toml is $(in_root stat -c '%a %U:%G' /etc/petchat/node.toml), not 640 root:petchat"
  in_root dpkg-query --showformat='${Conffiles}\n' --show petchat-node | grep -q ' /etc/petchat/node.toml ' ||
    fail "/etc/petchat/node.toml is not a conffile"
  grep -qx 'PETCHAT_REGION=europe' "$root/etc/default/petchat-node" ||
    fail "/etc/default/petchat-node has no PETCHAT_REGION=europe: $(cat "$root/etc/default/petchat-node")"
  [ -L "$root/etc/systemd/system/multi-user.target.wants/petchat-node.service" ] ||
    fail "the unit is not enabled"
  in_root petchat-node --check-config /etc/petchat/node.toml >/dev/null || fail "the installed config does not check"
  for page in petchat-node petchatctl; do
    [ -f "$root/usr/share/man/man8/$page.8.gz" ] || fail "no man page $page(8)"
  done
  [ -f "$root/usr/share/petchat/web/index.html" ] || fail "no web client in /usr/share/petchat/web"

  local unit=/lib/systemd/system/petchat-node.service
  say "systemd-analyze verify $unit"
  in_root systemd-analyze verify "$unit" || fail "systemd-analyze verify failed"
  check_exposure "$unit" "$max_exposure"

  # The unit's command line, as systemd would run it: its EnvironmentFile, user and umask.
  local exec_start envfile
  exec_start="$(sed -n 's/^ExecStart=//p' "$root$unit")"
  envfile="$(sed -n 's/^EnvironmentFile=-\{0,1\}//p' "$root$unit")"
  [ "$envfile" = /etc/default/petchat-node ] || fail "the unit's EnvironmentFile is $envfile"
  echo "$exec_start" | grep -q -- '--require-region' || fail "ExecStart lacks --require-region: $exec_start"

  say "the installed node, as the unit runs it: $exec_start"
  local listen
  listen="$(installed_listen)"
  run_as_unit "$exec_start" "$envfile"
  wait_ready "$listen" "the installed node"
  check_serving "$listen"
  [ -S "$root/var/lib/petchat/admin.sock" ] || fail "no admin socket in /var/lib/petchat"
  stop_cleanly

  if command -v systemd-nspawn >/dev/null; then
    under_systemd
  else
    say "SKIPPED: the unit under systemd (no systemd-nspawn: apt-get install systemd-container)"
  fi

  say "no region: the node refuses to start"
  check_refuses_without_region "$exec_start" ""

  say "purge (petchat-node/purge-data unset: false): the region's data stays"
  in_root dpkg --purge petchat-node 2>&1 | sed 's/^/   dpkg: /' || fail "dpkg --purge failed"
  [ -f "$root/var/lib/petchat/region.key" ] || fail "purge removed /var/lib/petchat without being asked"
  [ ! -e "$root/etc/default/petchat-node" ] || fail "purge left /etc/default/petchat-node"
  [ ! -e "$root/etc/petchat/node.toml" ] || fail "purge left /etc/petchat/node.toml"
  ! in_root dpkg-statoverride --list /etc/petchat/node.toml >/dev/null || fail "purge left the statoverride"
  [ ! -e "$root/etc/systemd/system/multi-user.target.wants/petchat-node.service" ] ||
    fail "purge left the unit enabled"
  ! in_root debconf-get-selections 2>/dev/null | grep -q '^petchat-node' || fail "purge left debconf answers"

  say "install with no region (noninteractive): enabled, but the node refuses to start"
  in_root dpkg -i "/petchat-test/$deb" 2>&1 | sed 's/^/   dpkg: /' | tee "$root/petchat-test/dpkg.log" ||
    fail "dpkg -i failed"
  grep -q 'no region is configured' "$root/petchat-test/dpkg.log" || fail "the postinst did not say that no region is configured"
  ! grep -q '^PETCHAT_REGION=' "$root/etc/default/petchat-node" || fail "a region was written without an answer"
  [ -L "$root/etc/systemd/system/multi-user.target.wants/petchat-node.service" ] || fail "the unit is not enabled"
  check_refuses_without_region "$exec_start" "$envfile"

  say "the operator sets the region by hand, then dpkg-reconfigure: other lines kept, the node starts on the kept data"
  local key_before
  key_before="$(cat "$root/var/lib/petchat/region.pub")"
  printf 'PETCHAT_REGION="europe"\nOPERATOR_LINE=kept\n' >>"$root/etc/default/petchat-node"
  in_root dpkg-reconfigure -fnoninteractive petchat-node 2>&1 | sed 's/^/   dpkg-reconfigure: /' ||
    fail "dpkg-reconfigure failed"
  if ! grep -qx 'PETCHAT_REGION=europe' "$root/etc/default/petchat-node" ||
    ! grep -qx 'OPERATOR_LINE=kept' "$root/etc/default/petchat-node"; then
    fail "after dpkg-reconfigure /etc/default/petchat-node is: $(cat "$root/etc/default/petchat-node")"
  fi
  [ "$(in_root debconf-show petchat-node | sed -n 's/^[* ] petchat-node\/region: //p')" = europe ] ||
    fail "debconf did not take the region from /etc/default/petchat-node"
  run_as_unit "$exec_start" "$envfile"
  wait_ready "$listen" "after reinstalling over the kept data"
  [ "$(cat "$root/var/lib/petchat/region.pub")" = "$key_before" ] || fail "the region key changed"
  kill -TERM "$node_pid"
  wait "$node_pid" || fail "the node did not stop cleanly"
  echo "   /readyz 200 with the region key kept from before the purge"

  say "purge with petchat-node/purge-data true: the region's data goes"
  echo "petchat-node petchat-node/purge-data boolean true" | in_root debconf-set-selections
  in_root dpkg --purge petchat-node 2>&1 | sed 's/^/   dpkg: /' || fail "dpkg --purge failed"
  [ ! -e "$root/var/lib/petchat" ] || fail "purge-data true, but /var/lib/petchat is still there"
  say "inside the throwaway root: all checks passed"
}

# The installed unit under a real systemd: the throwaway root booted with systemd-nspawn
# (systemd as its PID 1, its own loopback). A probe unit starts petchat-node.service as
# enabled by the package, checks Type=notify readiness, /readyz, the user, a reload, the
# watchdog (shortened to 4 s by a drop-in, so a node that stops pinging is killed within
# the test) and a clean stop, then a start without a region (exit 2, not restarted), and
# powers the container off. Its findings are read from $root/probe.out.
under_systemd() {
  say "the unit under systemd (systemd-nspawn boots the throwaway root)"
  mkdir -p "$root/etc/systemd/system/petchat-node.service.d"
  printf '[Service]\nWatchdogSec=4s\n' >"$root/etc/systemd/system/petchat-node.service.d/test-watchdog.conf"
  cat >"$root/usr/local/sbin/petchat-probe" <<'EOS'
#!/bin/sh
# Runs inside the container once it has booted; every line of /probe.out is "ok ..." or "FAIL ...".
out=/probe.out
ok() { echo "ok   $*" >>$out; }
bad() { echo "FAIL $*" >>$out; }
prop() { systemctl show -P "$1" petchat-node.service; }
listen=127.0.0.1:8080
: >$out
systemctl start petchat-node.service && ok "systemctl start returned once the node said READY=1" ||
  bad "systemctl start petchat-node: $(prop Result)"
[ "$(prop ActiveState)/$(prop SubState)" = active/running ] && ok "active/running" || bad "state $(prop ActiveState)/$(prop SubState)"
[ "$(prop Type)" = notify ] && ok "Type=notify" || bad "Type=$(prop Type)"
pid=$(prop MainPID)
user=$(ps -o user= -p "$pid" | tr -d ' ')
[ "$user" = petchat ] && ok "runs as petchat (pid $pid)" || bad "runs as '$user'"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://$listen/readyz")
[ "$code" = 200 ] && ok "GET /readyz 200" || bad "GET /readyz: $code"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://$listen/")
[ "$code" = 200 ] && ok "GET / (web client) 200" || bad "GET /: $code"
# An image upload: libvips decodes, thumbnails and re-encodes it (with ORC's generated
# code) under the unit's seccomp filter, MemoryDenyWriteExecute and PrivateTmp.
/usr/bin/python3 - "$listen" >>$out 2>&1 <<'EOP'
import json, struct, sys, urllib.request, zlib
base = "http://" + sys.argv[1]
def call(path, body, token=None, ctype="application/json"):
    req = urllib.request.Request(base + path, data=body, method="POST", headers={"Content-Type": ctype})
    if token:
        req.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, json.load(r)
def png(w, h):
    raw = b"".join(b"\0" + bytes((x * 7 + y * 3) % 256 for x in range(w) for _ in range(3)) for y in range(h))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
try:
    call("/v1/users", json.dumps({"name": "probe", "password": "correct horse"}).encode())
    _, s = call("/v1/sessions", json.dumps({"name": "probe", "password": "correct horse", "device_name": "probe"}).encode())
    status, asset = call("/v1/assets?name=probe.png", png(800, 600), s["access_token"], "image/png")
    ok = status == 201 and asset.get("width") == 800 and asset.get("thumbnail_id")
    print(("ok   " if ok else "FAIL ") + "image upload: %s %s" % (status, {k: asset.get(k) for k in ("width", "height", "thumbnail_id")}))
except Exception as e:
    print("FAIL image upload: %r" % e)
EOP
runuser -u petchat -- petchatctl status >/dev/null 2>&1 && ok "petchatctl status as petchat" || bad "petchatctl status as petchat"
petchatctl status >/dev/null 2>&1 && ok "petchatctl status as root" || bad "petchatctl status as root"
systemctl reload petchat-node.service && ok "systemctl reload (SIGHUP)" || bad "systemctl reload: $(prop Result)"
sleep 10
[ "$(prop NRestarts)" = 0 ] && [ "$(prop MainPID)" = "$pid" ] && [ "$(prop ActiveState)" = active ] &&
  ok "still the same process after 10 s with WatchdogSec=4s (the watchdog is pinged)" ||
  bad "watchdog: NRestarts=$(prop NRestarts) MainPID=$(prop MainPID) (was $pid) $(prop ActiveState) $(prop Result)"
systemctl stop petchat-node.service
[ "$(prop Result)" = success ] && [ "$(prop ExecMainStatus)" = 0 ] && ok "systemctl stop: exit 0" ||
  bad "stop: Result=$(prop Result) ExecMainStatus=$(prop ExecMainStatus)"
journalctl -q -u petchat-node.service -o cat >/probe.journal 2>&1
cp /probe.journal /probe.journal.run
grep -q 'stopped cleanly' /probe.journal && ok "'stopped cleanly' in the journal" || bad "no 'stopped cleanly' in the journal"
cp /etc/default/petchat-node /etc/default/petchat-node.keep
sed -i '/^PETCHAT_REGION=/d' /etc/default/petchat-node
systemctl reset-failed petchat-node.service 2>/dev/null
systemctl start petchat-node.service && bad "started without a region"
sleep 3
[ "$(prop ExecMainStatus)" = 2 ] && [ "$(prop NRestarts)" = 0 ] && [ "$(prop ActiveState)" = failed ] &&
  ok "no region: exit 2, failed, not restarted" ||
  bad "no region: ExecMainStatus=$(prop ExecMainStatus) NRestarts=$(prop NRestarts) $(prop ActiveState)"
journalctl -q -u petchat-node.service -o cat >/probe.journal 2>&1
grep -q 'PETCHAT_REGION' /probe.journal && ok "the refusal, naming PETCHAT_REGION, is in the journal" ||
  bad "the refusal is not in the journal"
mv /etc/default/petchat-node.keep /etc/default/petchat-node
echo done >>$out
systemctl poweroff
EOS
  chmod 0755 "$root/usr/local/sbin/petchat-probe"
  # Booted into a target of its own: basic.target and the probe, not the host's services
  # (the overlay holds everything installed on the host). The probe starts the node itself.
  cat >"$root/etc/systemd/system/petchat-probe.target" <<'EOS'
[Unit]
Description=petchat package test
Requires=basic.target petchat-probe.service
After=basic.target
EOS
  cat >"$root/etc/systemd/system/petchat-probe.service" <<'EOS'
[Unit]
Description=petchat package test probe
After=basic.target
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/petchat-probe
EOS
  # The container has a loopback only: network-online.target (the unit wants it) is reached
  # at once rather than after systemd-networkd-wait-online's 2 minutes.
  ln -sf /dev/null "$root/etc/systemd/system/systemd-networkd-wait-online.service"
  rm -f "$root/etc/machine-id"
  # systemd-nspawn brings its own /dev, /proc and /sys.
  umount -R "$root/dev" "$root/proc" "$root/sys"
  timeout 180 systemd-nspawn --quiet --directory="$root" --boot --private-network --register=no \
    --keep-unit --link-journal=no systemd.unit=petchat-probe.target >"$base/nspawn.log" 2>&1 </dev/null || true
  # What the container's systemd left in /run would tell the maintainer scripts below that
  # systemd runs: a fresh /run again.
  umount "$root/run" && mount -t tmpfs tmpfs "$root/run"
  mount -t proc proc "$root/proc"
  mount --rbind /dev "$root/dev"
  mount --rbind /sys "$root/sys"
  rm -rf "$root/etc/systemd/system/petchat-node.service.d" "$root/etc/systemd/system/petchat-probe".* \
    "$root/etc/systemd/system/systemd-networkd-wait-online.service"
  if [ ! -s "$root/probe.out" ]; then
    tail -n 40 "$base/nspawn.log" >&2
    fail "the container did not run the probe"
  fi
  sed 's/^/   /' "$root/probe.out"
  echo "   the node's journal under the unit (start to stop):"
  sed 's/^/     /' "$root/probe.journal.run"
  if grep -q '^FAIL' "$root/probe.out" || ! grep -qx 'done' "$root/probe.out"; then
    sed 's/^/   journal: /' "$root/probe.journal" >&2 || true
    fail "the unit under systemd"
  fi
}

if [ "${1:-}" = --inside ]; then
  inside "$2" "$3"
  exit 0
fi

# ---------------------------------------------------------------------------------------
# Outside: build, lint, then the throwaway root in its namespaces.
# ---------------------------------------------------------------------------------------
debs=""
while [ $# -gt 0 ]; do
  case "$1" in
    --debs) debs="$(realpath "$2")"; shift 2 ;;
    *) echo "usage: $0 [--debs DIR]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || fail "run as root (the throwaway root needs mount namespaces and chroot)"
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || fail "no overlayfs in this kernel"

started=$(date +%s)
if [ -z "$debs" ]; then
  "$repo/scripts/setup-deps"
  work="${PETCHAT_PKG_WORK:-/var/tmp/petchat-pkgtest}"
  version="$(dpkg-parsechangelog -l "$repo/debian/changelog" -S Version)"
  src="$work/src/petchat-$version"
  say "copying the tree (tracked and untracked, not ignored) to $src"
  rm -rf "$work/src"
  mkdir -p "$src"
  (cd "$repo" && git ls-files -z --cached --others --exclude-standard |
    tar --null -T - --ignore-failed-read -cf - 2>/dev/null) | tar -xf - -C "$src"
  # The web client's npm packages, when present: without them the build runs npm ci,
  # which needs the npm registry.
  if [ -d "$repo/web/node_modules" ]; then cp -a "$repo/web/node_modules" "$src/web/"; fi
  # -J: as many compile jobs as cores (debhelper would run ninja -j1 otherwise).
  jobs="${PETCHAT_PKG_JOBS:-auto}"
  export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/petchat-ccache}"
  say "dpkg-buildpackage -b -us -uc -J$jobs (log: $work/build.log)"
  if ! (cd "$src" && dpkg-buildpackage -b -us -uc -J"$jobs" >"$work/build.log" 2>&1); then
    tail -n 60 "$work/build.log" >&2
    fail "dpkg-buildpackage failed (whole log: $work/build.log)"
  fi
  debs="$work/src"
  echo "   built in $(($(date +%s) - started)) s: $(cd "$debs" && ls ./*.deb | tr '\n' ' ')"
fi
ls "$debs"/petchat-node_*.deb >/dev/null 2>&1 || fail "no petchat-node_*.deb in $debs"

say "lintian (fails on any error or warning that is not overridden with a reason)"
lint_targets=("$debs"/*.changes)
[ -e "${lint_targets[0]}" ] || lint_targets=("$debs"/*.deb)
lint_rc=0
lint="$(lintian --fail-on error,warning --display-info --show-overrides "${lint_targets[@]}" 2>&1)" || lint_rc=$?
echo "$lint" | { grep -v 'running with root privileges' || true; } | sed 's/^/   /'
[ "$lint_rc" = 0 ] || fail "lintian found errors or warnings (exit $lint_rc)"

# What the host has before, to prove afterwards that nothing leaked out.
fingerprint() {
  {
    dpkg-query -W -f='${Package} ${Status}\n' petchat-node 2>/dev/null || echo "petchat-node absent"
    getent passwd petchat || echo "no petchat user"
    getent group petchat || echo "no petchat group"
    ls -ld /var/lib/petchat /etc/petchat /etc/default/petchat-node /run/systemd/nspawn 2>&1 || true
    debconf-show petchat-node 2>/dev/null || true
    md5sum /var/lib/dpkg/status /etc/passwd /etc/group /etc/shadow
  } | sort
}
run_in_throwaway "$0" fingerprint "$debs"
echo "1 passed, 0 failed (test_deb, $(($(date +%s) - started)) s)"
