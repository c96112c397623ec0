#!/usr/bin/env bash
# Builds the image `upswarm:local` from the binaries built here — no registry needed: a root
# file system holding the two binaries and the shared libraries they load, imported with
# `docker import`.
. "$(dirname "$0")/lib.sh"
(cd "$ROOT_DIR" && cargo build --locked $([ "$PROFILE" = release ] && echo --release) -q -p upswarm -p upswarm-demo-app)
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs/usr/local/bin" "$rootfs/tmp" "$rootfs/etc"
chmod 1777 "$rootfs/tmp"
for b in upswarm upswarm-demo-app; do
  objcopy --strip-debug "$ROOT_DIR/target/$PROFILE/$b" "$rootfs/usr/local/bin/$b"
  # Every shared library the binary loads, at the same path, plus the dynamic loader.
  for lib in $(ldd "$ROOT_DIR/target/$PROFILE/$b" | grep -oE '/[^ ]+'); do
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
  done
done
echo "root:x:0:0:root:/:/usr/local/bin/upswarm" > "$rootfs/etc/passwd"
tar -C "$rootfs" -c . | docker import -c 'ENV PATH=/usr/local/bin' - "$IMAGE" >/dev/null
echo "built image $IMAGE ($(docker image inspect "$IMAGE" --format '{{.Size}}') bytes)"
