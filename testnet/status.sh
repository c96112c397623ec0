#!/usr/bin/env bash
# A network-wide view: each node's running version, program state and releases.
. "$(dirname "$0")/lib.sh"
printf '%-10s %-10s %-10s %s\n' NODE VERSION PROGRAM RELEASES
for n in bootstrap "${NODES[@]}"; do
  json=$(in_node "$n" status --json 2>/dev/null || echo '{}')
  python3 - "$n" "$json" <<'PY'
import json, sys
name, raw = sys.argv[1], sys.argv[2]
try:
    s = json.loads(raw)
except Exception:
    s = {}
if not s:
    print(f"{name:<10} {'?':<10} {'UNREACHABLE':<10}")
    sys.exit()
m = s.get("managed") or {}
prog = "running" if (m.get("program") or {}).get("running") else ("-" if not m else "down")
rels = ", ".join(f"{r['version']}:{r['download']['state']}" for r in s.get("releases", []))
print(f"{name:<10} {m.get('current') or '-':<10} {prog:<10} {rels}")
PY
done
