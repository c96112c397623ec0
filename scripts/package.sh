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
#                                      # `man upswarm`, and `systemd-analyze verify` of the unit.
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

deb_tool=$(cargo_tool cargo-deb)
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
