#!/usr/bin/env bash
# Builds the Debian package of upswarm with cargo-deb, and with --test installs it in a
# container built here and checks it there.
#
#   scripts/package.sh                 # release build → target/debian/upswarm_<version>_<arch>.deb
#   scripts/package.sh --profile dev   # the same from a debug build (quicker; for tests)
#   scripts/package.sh --test [...]    # then: a Debian root file system made with debootstrap
#                                      # (minbase + systemd + man-db), imported into Docker;
#                                      # dpkg -i the package there; check the user, the
#                                      # config, `upswarm --version`, the completions,
#                                      # `man upswarm`, `systemd-analyze verify` of the unit;
#                                      # then boot systemd in the container, put a trust root
#                                      # in place, start the unit and check the daemon runs
#                                      # under its hardening: as user upswarm, its state in
#                                      # /var/lib/upswarm, answering `upswarm status`.
#
# The package: /usr/bin/upswarm; the hardened unit upswarm.service (its own user, state in
# /var/lib/upswarm, ProtectSystem=strict, …; deploy/systemd/); /etc/upswarm/upswarm.toml
# (a conffile); bash, zsh and fish completions and man pages generated from the command line
# definition. Installs cargo-deb (cargo install) and, with --test, debootstrap (apt-get) when
# missing. Everything it starts is stopped and removed on exit, also on failure.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$UPSWARM_ROOT"

profile=release
test=false
while [ $# -gt 0 ]; do
  case $1 in
    --profile) profile=$2; shift 2 ;;
    --test) test=true; shift ;;
    *) echo "usage: $0 [--profile release|dev] [--test]" >&2; exit 2 ;;
  esac
done
dir=$([ "$profile" = dev ] && echo debug || echo "$profile")

# A pinned cargo-deb: packaging from a dev build (--profile dev) is refused by later ones.
deb_tool=$(cargo_tool cargo-deb@3.8.0 cargo-deb)
echo "== building upswarm ($profile)"
cargo build --locked -q --profile "$profile" -p upswarm
bin=target/$dir/upswarm

echo "== completions and man pages from the command line definition"
rm -rf target/package && mkdir -p target/package/completions target/package/man
"$bin" completions bash > target/package/completions/upswarm.bash
"$bin" completions zsh > target/package/completions/_upswarm
"$bin" completions fish > target/package/completions/upswarm.fish
"$bin" man --out target/package/man >/dev/null
gzip -9n target/package/man/*.1

echo "== cargo deb"
"$deb_tool" deb -p upswarm --no-build --profile "$profile" --fast -o target/debian/ >/dev/null
deb=$(ls -t target/debian/upswarm_*.deb | head -1)
echo "built $deb ($(stat -c %s "$deb") bytes)"
dpkg-deb --contents "$deb" | awk '{print "  " $6}'

$test || exit 0

echo "== a Debian container to install it in (debootstrap, no registry)"
command -v docker >/dev/null && docker info >/dev/null 2>&1 \
  || { echo "package test needs a Docker engine" >&2; exit 1; }
command -v debootstrap >/dev/null || apt-get install -y -q debootstrap >/dev/null
work=$(mktemp -d "${TMPDIR:-/tmp}/upswarm-package.XXXXXX")
image="upswarm-pkgtest:$$"
container="upswarm-pkgtest-$$"
cleanup() {
  docker rm -f "$container" >/dev/null 2>&1 || true
  docker rmi -f "$image" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
cache=target/package-rootfs.tar
if [ ! -s "$cache" ]; then
  debootstrap --variant=minbase --include=systemd,man-db bookworm "$work/rootfs" \
    http://deb.debian.org/debian > "$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  tar -C "$work/rootfs" -cf "$cache" .
  rm -rf "$work/rootfs"
fi
docker import -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  "$cache" "$image" >/dev/null
cp "$deb" "$work/upswarm.deb"
cat > "$work/check.sh" <<'CHECK'
#!/bin/bash
set -euo pipefail
dpkg -i /pkg/upswarm.deb
echo "-- version";        upswarm --version
echo "-- user";           getent passwd upswarm
echo "-- config";         stat -c '%U:%G %a %n' /etc/upswarm/upswarm.toml
upswarm daemon --config /etc/upswarm/upswarm.toml --check-config
echo "-- completions";    bash -c '. /usr/share/bash-completion/completions/upswarm && complete -p upswarm'
test -s /usr/share/zsh/vendor-completions/_upswarm
test -s /usr/share/fish/vendor_completions.d/upswarm.fish
echo "-- man";            MANPAGER=cat man upswarm | grep -m1 -i "upswarm"
MANPAGER=cat man upswarm-daemon >/dev/null
echo "-- unit";           systemd-analyze verify /lib/systemd/system/upswarm.service
systemctl is-enabled upswarm.service
echo "-- security";       systemd-analyze security --offline=true /lib/systemd/system/upswarm.service | tail -1
echo "PACKAGE OK"
CHECK
chmod +x "$work/check.sh"
echo "== installing and checking in the container"
docker run --name "$container" --rm -v "$work:/pkg:ro" "$image" /pkg/check.sh

echo "== the unit under systemd: a trust root in place, start, status"
# A trust root made here with the built binary (1-of-1 keys, for this test only).
(
  cd "$work"
  "$UPSWARM_ROOT/$bin" key gen --out root >/dev/null 2>&1
  "$UPSWARM_ROOT/$bin" key gen --out rel >/dev/null 2>&1
  "$UPSWARM_ROOT/$bin" root init --out root.cbor --root-key root.pub --root-threshold 1 \
    --release-key rel.pub --release-threshold 1 >/dev/null 2>&1
  "$UPSWARM_ROOT/$bin" root sign --key root.key root.cbor >/dev/null 2>&1
  chmod 644 root.cbor
)
cat > "$work/boot.sh" <<'BOOT'
#!/bin/bash
set -e
dpkg -i /pkg/upswarm.deb >/dev/null
install -m 0644 /pkg/root.cbor /etc/upswarm/root.cbor
exec /lib/systemd/systemd
BOOT
chmod +x "$work/boot.sh"
docker run -d --name "$container" --cap-add SYS_ADMIN --cgroupns=host \
  -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /run/lock \
  -v "$work:/pkg:ro" "$image" /pkg/boot.sh >/dev/null
in_box() { docker exec "$container" "$@"; }
for _ in $(seq 60); do
  state=$(in_box systemctl is-system-running 2>/dev/null || true)
  case $state in running|degraded) break ;; esac
  sleep 1
done
echo "systemd in the container: ${state:-not up}"
in_box systemctl start upswarm.service
status=""
for _ in $(seq 60); do
  status=$(in_box upswarm status --api 127.0.0.1:7780 2>&1 || true)
  case $status in *"node id"*|*node_id*|*peer*) ;; *) last=$status; status="" ;; esac
  [ -n "$status" ] && break
  sleep 1
done
if [ -z "$status" ]; then
  in_box systemctl status --no-pager upswarm.service >&2 || true
  in_box journalctl -u upswarm --no-pager -n 40 >&2 || true
  echo "the upswarm unit did not come up under systemd" >&2
  exit 1
fi
echo "$status" | head -5
in_box systemctl is-active upswarm.service
pid=$(in_box systemctl show -p MainPID --value upswarm.service)
user=$(in_box stat -c %U "/proc/$pid")
[ "$user" = upswarm ] || { echo "the daemon (pid $pid) runs as '$user', not as upswarm" >&2; exit 1; }
stat=$(in_box stat -c '%U %a' /var/lib/upswarm)
[ "$stat" = "upswarm 700" ] || { echo "/var/lib/upswarm is '$stat', not 'upswarm 700'" >&2; exit 1; }
in_box systemctl stop upswarm.service
echo "UNIT OK: started by systemd as user upswarm, state in /var/lib/upswarm (0700), stopped"
