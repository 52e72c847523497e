#!/usr/bin/env bash
# Removes the test and bench executables of earlier builds from a persistent target directory:
# each build of a changed crate links new ones (about 450 MB each) under a new hash and keeps
# the old, so a target directory shared by many runs grows by gigabytes a day. For each name
# only the newest executable is kept; a removed one that is needed again is linked again.
# Usage: scripts/prune-target.sh [TARGET_DIR]   (default $CARGO_TARGET_DIR, else target)
set -euo pipefail
deps="${1:-${CARGO_TARGET_DIR:-target}}/release/deps"
[ -d "$deps" ] || exit 0
python3 - "$deps" <<'PY'
import os, re, sys
deps = sys.argv[1]
newest = {}
for f in os.listdir(deps):
    m = re.fullmatch(r"(.+)-([0-9a-f]{16})", f)
    path = os.path.join(deps, f)
    if not m or not os.path.isfile(path) or not os.access(path, os.X_OK):
        continue
    newest.setdefault(m.group(1), []).append((os.path.getmtime(path), path))
freed = 0
for name, files in newest.items():
    files.sort()
    for _, path in files[:-1]:
        freed += os.path.getsize(path)
        os.remove(path)
if freed:
    print(f"pruned {freed / 1e9:.1f} GB of older test executables from {deps}")
PY
