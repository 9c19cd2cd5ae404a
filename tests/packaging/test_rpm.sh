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

# shellcheck source=tests/packaging/throwaway.sh
. "$repo/tests/packaging/throwaway.sh"

# ---------------------------------------------------------------------------------------
# Inside the namespaces: $1 is the throwaway root's parent (a tmpfs), $2 the .rpm directory.
# ---------------------------------------------------------------------------------------
inside() {
  local base="$1" rpms="$2"
  mount_throwaway_root "$base"  # no running systemd there: the scriptlets start nothing
  local rpm
  rpm="$(cd "$rpms" && echo petchat-node-[0-9]*.rpm)"
  cp "$rpms/$rpm" "$root/petchat-test/"

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
  check_exposure "$unit" 1.5
  local exec_start envfile
  exec_start="$(sed -n 's/^ExecStart=//p' "$root$unit")"
  envfile="$(sed -n 's/^EnvironmentFile=-\{0,1\}//p' "$root$unit")"
  [ "$envfile" = /etc/sysconfig/petchat-node ] || fail "the unit's EnvironmentFile is $envfile"
  case "$exec_start" in /usr/bin/petchat-node*--require-region*) ;; *) fail "ExecStart: $exec_start" ;; esac

  say "as installed (no region in $envfile): the node refuses to start"
  check_refuses_without_region "$exec_start" "$envfile"

  say "the operator sets PETCHAT_REGION=europe in $envfile: the node serves"
  echo "PETCHAT_REGION=europe" >>"$root$envfile"
  local listen
  listen="$(installed_listen)"
  run_as_unit "$exec_start" "$envfile"
  wait_ready "$listen" "the installed node"
  check_serving "$listen"
  stop_cleanly

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
run_in_throwaway "$0" fingerprint "$rpms"
echo "1 passed, 0 failed (test_rpm, $(($(date +%s) - started)) s)"
