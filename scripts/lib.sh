# Shared helpers for the scripts in this directory. Source it; do not run it.

# Repository root.
UPSWARM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export UPSWARM_ROOT

# Seconds since the epoch with nanoseconds.
now() { date +%s.%N; }

# Median of the numbers given as arguments.
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# Builds the release binary and prints its path.
build_release() {
  (cd "$UPSWARM_ROOT" && cargo build --release --locked -q -p upswarm) >&2
  echo "$UPSWARM_ROOT/target/release/upswarm"
}

# Prints the path of a cargo-installable tool, installing it under target/tools if needed.
cargo_tool() {
  local crate=$1 bin=${2:-$1}
  if command -v "$bin" >/dev/null 2>&1; then command -v "$bin"; return; fi
  local root="$UPSWARM_ROOT/target/tools"
  if [ ! -x "$root/bin/$bin" ]; then
    echo "installing $crate into $root ..." >&2
    cargo install -q --locked --root "$root" "$crate" >&2
  fi
  echo "$root/bin/$bin"
}

# Prints the path of a built binary NAME (upswarm, upswarm-demo-app) without building
# anything: $UPSWARM_BIN_DIR/NAME, else NAME on the PATH, else target/release or
# target/debug of this checkout. Fails with a message naming what to build.
find_binary() {
  local name=$1 dir
  if [ -n "${UPSWARM_BIN_DIR:-}" ] && [ -x "$UPSWARM_BIN_DIR/$name" ]; then
    echo "$(cd "$UPSWARM_BIN_DIR" && pwd)/$name"; return
  fi
  if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return; fi
  for dir in "$UPSWARM_ROOT/target/release" "$UPSWARM_ROOT/target/debug"; do
    [ -x "$dir/$name" ] && { echo "$dir/$name"; return; }
  done
  echo "no $name binary: install it, set UPSWARM_BIN_DIR, or build it (cargo build -p $name)" >&2
  return 1
}
