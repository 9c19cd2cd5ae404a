#!/usr/bin/env bash
# The .rpm, end to end on Debian: builds it from packaging/rpm/petchat.spec with Debian's
# rpmbuild, lints it, installs it with rpm into a throwaway root and runs the installed node
# there.
#
#   tests/packaging/test_rpm.sh               build, lint, install, run (about 10 minutes on
#                                             2 cores, nearly all of it the compile)
#   tests/packaging/test_rpm.sh --rpms DIR    skip the build: test the .rpm files in DIR
#
# Runs as root. What Debian's rpm lacks of Fedora's build macros (meson's, systemd's, the
# sysusers ones) comes from tests/packaging/rpm-macros-debian; the build requirements
# are Debian packages (scripts/setup-deps), not in rpm's database, so rpmbuild runs with
# --nodeps and the package is linked against Debian 12's libraries. So this proves the
# spec (sources, build, install layout, file list, modes, config files, scriptlets) and
# the installed tree working; it does not prove a build on Fedora (packaging/README.md).
#
# The throwaway root is an overlayfs over / on a tmpfs, in private mount, network and PID
# namespaces (as test_deb.sh): rpm installs into it (its scriptlets run chrooted there),
# the node listens on the namespace's own loopback, everything vanishes with it, and the
# host's users, rpm database and petchat paths are checked to be unchanged at the end.
#
# What it checks: rpmlint (no error; warnings shown); the payload's files, modes, owners
# and config flags; after `rpm -i`: the petchat system user (from %pre), /var/lib/petchat
# 0700 petchat, /etc/petchat/node.toml 0640 root:petchat, the unit in /usr/lib/systemd/system
# (systemd-analyze verify, and security <= 1.5) reading /etc/sysconfig/petchat-node; without a region the
# installed ExecStart refuses (exit 2); with PETCHAT_REGION set there it answers /readyz 200
# as petchat, petchatctl reaches it, SIGTERM stops it cleanly; `rpm -e` removes the
# package and keeps the region's data.
#
# Environment: PETCHAT_RPM_WORK (default /var/tmp/petchat-rpmtest) is rpmbuild's top
# directory (sources, build tree, log, packages).
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"

say() { printf '== %s\n' "$*"; }
fail() {
  printf 'FAIL: %s\n' "$*" >&2
  exit 1
}

# ---------------------------------------------------------------------------------------
# Inside the namespaces: $1 is the throwaway root's parent (a tmpfs), $2 the .rpm directory.
# ---------------------------------------------------------------------------------------
inside() {
  local base="$1" rpms="$2"
  local root="$base/root"
  mkdir -p "$base/upper" "$base/work" "$root"
  mount -t overlay overlay -o "lowerdir=/,upperdir=$base/upper,workdir=$base/work" "$root"
  mount -t proc proc "$root/proc"
  mount --rbind /dev "$root/dev"
  mount --rbind /sys "$root/sys"
  mount -t tmpfs tmpfs "$root/run" # no running systemd there: the scriptlets start nothing
  mount -t tmpfs tmpfs "$root/tmp"
  ip link set lo up
  local rpm
  rpm="$(cd "$rpms" && echo petchat-node-[0-9]*.rpm)"
  mkdir "$root/petchat-test"
  cp "$rpms/$rpm" "$root/petchat-test/"
  in_root() { chroot "$root" "$@"; }

  say "rpm -i $rpm (--nodeps: its requirements are Debian packages here)"
  rpm --root "$root" -i --nodeps "$root/petchat-test/$rpm" 2>&1 | sed 's/^/   rpm: /'
  rpm --root "$root" -q petchat-node >/dev/null || fail "petchat-node is not installed"
  rpm --root "$root" -V --nodeps petchat-node || fail "rpm -V: the installed files differ from the package"

  say "user (from %pre), directories, modes"
  local pw uid shell
  pw="$(in_root getent passwd petchat)" || fail "no petchat user"
  uid="$(echo "$pw" | cut -d: -f3)" shell="$(echo "$pw" | cut -d: -f7)"
  [ "$uid" -lt 1000 ] || fail "petchat is not a system user (uid $uid)"
  case "$shell" in */nologin | */false) ;; *) fail "petchat has a login shell: $shell" ;; esac
  [ "$(echo "$pw" | cut -d: -f6)" = /var/lib/petchat ] || fail "petchat's home is not /var/lib/petchat: $pw"
  [ "$(in_root stat -c '%a %U:%G' /var/lib/petchat)" = "700 petchat:petchat" ] ||
    fail "/var/lib/petchat is $(in_root stat -c '%a %U:%G' /var/lib/petchat), not 700 petchat:petchat"
  [ "$(in_root stat -c '%a %U:%G' /etc/petchat/node.toml)" = "640 root:petchat" ] ||
    fail "/etc/petchat/node.toml is $(in_root stat -c '%a %U:%G' /etc/petchat/node.toml), not 640 root:petchat"
  in_root petchat-node --check-config /etc/petchat/node.toml >/dev/null || fail "the installed config does not check"
  [ -f "$root/usr/share/petchat/web/index.html" ] || fail "no web client in /usr/share/petchat/web"

  local unit=/usr/lib/systemd/system/petchat-node.service
  [ -f "$root$unit" ] || fail "no unit at $unit"
  say "systemd-analyze verify $unit"
  in_root systemd-analyze verify "$unit" || fail "systemd-analyze verify failed"
  say "systemd-analyze security --offline=true $unit"
  local security exposure
  security="$(in_root systemd-analyze security --offline=true "$unit" 2>&1)"
  echo "$security" | grep -E 'Overall' | sed 's/^/   /'
  exposure="$(echo "$security" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')"
  [ -n "$exposure" ] || fail "no exposure level in systemd-analyze's output"
  awk -v e="$exposure" 'BEGIN { exit !(e <= 1.5) }' || fail "exposure $exposure is above 1.5"
  local exec_start envfile
  exec_start="$(sed -n 's/^ExecStart=//p' "$root$unit")"
  envfile="$(sed -n 's/^EnvironmentFile=-\{0,1\}//p' "$root$unit")"
  [ "$envfile" = /etc/sysconfig/petchat-node ] || fail "the unit's EnvironmentFile is $envfile"
  case "$exec_start" in /usr/bin/petchat-node*--require-region*) ;; *) fail "ExecStart: $exec_start" ;; esac
  run_as_unit() { # the unit's command line as systemd runs it: its environment file, user, umask
    chroot "$root" /bin/sh -c "set -a; . $envfile; set +a; umask 0077; cd /var/lib/petchat;
      exec setpriv --reuid=petchat --regid=petchat --init-groups --inh-caps=-all $exec_start" \
      >"$root/petchat-test/node.log" 2>&1 &
    node_pid=$!
  }

  say "as installed (no region in $envfile): the node refuses to start"
  local rc=0
  run_as_unit
  wait "$node_pid" || rc=$?
  sed 's/^/   node: /' "$root/petchat-test/node.log"
  [ "$rc" = 2 ] || fail "without a region the node exited $rc, not 2"
  grep -q 'PETCHAT_REGION' "$root/petchat-test/node.log" || fail "the refusal does not say where to set the region"

  say "the operator sets PETCHAT_REGION=europe in $envfile: the node serves"
  echo "PETCHAT_REGION=europe" >>"$root$envfile"
  local listen readyz=""
  listen="$(in_root /usr/bin/python3 -c 'import tomllib; print(tomllib.load(open("/etc/petchat/node.toml", "rb"))["gateway"]["listen"])')"
  run_as_unit
  for _ in $(seq 1 300); do
    readyz="$(curl -s -o /dev/null -w '%{http_code}' "http://$listen/readyz" || true)"
    [ "$readyz" = 200 ] && break
    kill -0 "$node_pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ "$readyz" != 200 ]; then
    cat "$root/petchat-test/node.log" >&2
    fail "GET http://$listen/readyz answered '$readyz', not 200"
  fi
  echo "   GET http://$listen/readyz: 200"
  local page status
  page="$(curl -s -o /dev/null -w '%{http_code}' "http://$listen/" || true)"
  [ "$page" = 200 ] || fail "GET http://$listen/ (the web client) answered '$page', not 200"
  echo "   GET http://$listen/ (the web client): 200"
  status="$(in_root setpriv --reuid=petchat --regid=petchat --init-groups petchatctl --json status)" ||
    fail "petchatctl status failed as petchat"
  echo "$status" | grep -q '"region" *: *"europe"' || fail "petchatctl status does not say region europe: $status"
  echo "   petchatctl status (as petchat): region europe"
  [ "$(in_root stat -c '%a %U' /var/lib/petchat/region.key)" = "600 petchat" ] ||
    fail "region.key is $(in_root stat -c '%a %U' /var/lib/petchat/region.key)"
  kill -TERM "$node_pid"
  rc=0
  wait "$node_pid" || rc=$?
  [ "$rc" = 0 ] || {
    cat "$root/petchat-test/node.log" >&2
    fail "SIGTERM: the node exited $rc, not 0"
  }
  grep -q 'stopped cleanly' "$root/petchat-test/node.log" || fail "no 'stopped cleanly' after SIGTERM"
  echo "   SIGTERM: exit 0, stopped cleanly"

  say "rpm -e: the package goes, the region's data stays"
  rpm --root "$root" -e petchat-node 2>&1 | sed 's/^/   rpm: /'
  ! rpm --root "$root" -q petchat-node >/dev/null 2>&1 || fail "petchat-node is still installed"
  [ ! -e "$root/usr/bin/petchat-node" ] || fail "rpm -e left /usr/bin/petchat-node"
  [ ! -e "$root$unit" ] || fail "rpm -e left the unit"
  [ -f "$root/var/lib/petchat/region.key" ] || fail "rpm -e removed the region's data"
  # The edited sysconfig file is kept as .rpmsave (%config); the untouched node.toml goes.
  [ -f "$root$envfile.rpmsave" ] || fail "rpm -e did not keep the operator's $envfile as .rpmsave"
  [ ! -e "$root/etc/petchat/node.toml" ] || fail "rpm -e left the unchanged /etc/petchat/node.toml"
  echo "   removed; /var/lib/petchat kept; $envfile.rpmsave kept"
}

if [ "${1:-}" = --inside ]; then
  inside "$2" "$3"
  exit 0
fi

[ "$(id -u)" = 0 ] || fail "run as root (rpm installs into a throwaway root in private namespaces)"
for tool in rpmbuild rpmlint rpm2cpio unshare setpriv curl systemd-analyze; do
  command -v "$tool" >/dev/null || fail "$tool is missing: scripts/setup-deps --packaging installs it"
done
started=$(date +%s)
work="${PETCHAT_RPM_WORK:-/var/tmp/petchat-rpmtest}"
spec="$repo/packaging/rpm/petchat.spec"
macros="$repo/tests/packaging/rpm-macros-debian"

if [ "${1:-}" = --rpms ]; then
  rpms="$(cd "$2" && pwd)"
else
  rm -rf "$work"
  mkdir -p "$work"/{SOURCES,BUILD,RPMS,SRPMS,SPECS}
  cp "$repo/packaging/sysusers.d/petchat.conf" "$repo/packaging/rpm/petchat-node.sysconfig" "$work/SOURCES/"
  version="$(rpmspec --load "$macros" --define "_topdir $work" -q --srpm --qf '%{VERSION}' "$spec")"
  say "source tarball petchat-$version.tar.gz (the tree's files, as git lists them)"
  (cd "$repo" && git ls-files -z --cached --others --exclude-standard |
    tar --null -T - --ignore-failed-read --transform "s,^,petchat-$version/," -czf "$work/SOURCES/petchat-$version.tar.gz")
  say "rpmbuild -bb (log: $work/build.log)"
  if ! rpmbuild --load "$macros" --define "_topdir $work" --nodeps -bb "$spec" >"$work/build.log" 2>&1; then
    tail -40 "$work/build.log" >&2
    fail "rpmbuild failed"
  fi
  rpms="$work/RPMS/$(uname -m)"
  echo "   built in $(($(date +%s) - started)) s: $(cd "$rpms" && echo *.rpm)"
fi
pkg="$(echo "$rpms"/petchat-node-[0-9]*.rpm)"
[ -f "$pkg" ] || fail "no petchat-node-*.rpm in $rpms"

say "rpmlint (fails on any error not filtered, with its reason, in packaging/rpm/petchat-node.rpmlintrc)"
lint_rc=0
lint="$(rpmlint -r "$repo/packaging/rpm/petchat-node.rpmlintrc" "$pkg" 2>&1)" || lint_rc=$?
echo "$lint" | sed 's/^/   /'
echo "$lint" | grep -q ' E: ' && fail "rpmlint found errors"

say "the payload: files, modes, owners, config flags"
listing="$(rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILEFLAGS:fflags} %{FILENAMES}\n]' "$pkg")"
echo "$listing" | grep -v '/usr/share/petchat/web/\|/usr/share/doc/' | sed 's/^/   /'
want() { echo "$listing" | grep -qE "$1" || fail "the payload lacks: $1"; }
want '^-rwxr-xr-x root:root +/usr/bin/petchat-node$'
want '^-rwxr-xr-x root:root +/usr/bin/petchatctl$'
want '^-rw-r--r-- root:root +/usr/lib/systemd/system/petchat-node.service$'
want '^-rw-r--r-- root:root +/usr/lib/sysusers.d/petchat.conf$'
want '^-rw-r----- root:petchat cn /etc/petchat/node.toml$'
want '^-rw-r--r-- root:root cn /etc/sysconfig/petchat-node$'
want '^drwx------ petchat:petchat +/var/lib/petchat$'
want ' /usr/share/petchat/web/index.html$'
want ' /usr/share/man/man8/petchat-node.8'
want ' /usr/share/man/man8/petchatctl.8'
scripts="$(rpm -qp --scripts "$pkg")"
echo "$scripts" | grep -q 'useradd -r -g petchat -d /var/lib/petchat' || fail "%pre does not create the petchat user: $scripts"

# What the host has before, to prove afterwards that nothing leaked out.
fingerprint() {
  {
    rpm -qa 2>/dev/null | sort
    getent passwd petchat || echo "no petchat user"
    getent group petchat || echo "no petchat group"
    ls -ld /var/lib/petchat /etc/petchat /etc/sysconfig/petchat-node /usr/lib/systemd/system/petchat-node.service 2>&1 || true
    md5sum /etc/passwd /etc/group /etc/shadow
  } | sort
}
before="$(fingerprint)"

scratch="$(mktemp -d /tmp/petchat-rpm-root.XXXXXX)"
say "throwaway root: overlay over / on a tmpfs at $scratch, in new mount, network and PID namespaces"
rc=0
unshare --mount --net --pid --fork --mount-proc --propagation private \
  /bin/bash -c 'mount -t tmpfs -o mode=0755 tmpfs "$1" && mount -t tmpfs tmpfs /run && exec "$2" --inside "$1" "$3"' \
  _ "$scratch" "$(realpath "$0")" "$rpms" || rc=$?
rmdir "$scratch" 2>/dev/null || true

after="$(fingerprint)"
if [ "$before" != "$after" ]; then
  diff <(echo "$before") <(echo "$after") >&2 || true
  fail "the host changed: something leaked out of the throwaway root"
fi
echo "   the host's rpm database, users, groups and petchat paths are as before"
[ "$rc" = 0 ] || fail "the checks in the throwaway root failed (exit $rc)"
echo "1 passed, 0 failed (test_rpm, $(($(date +%s) - started)) s)"
