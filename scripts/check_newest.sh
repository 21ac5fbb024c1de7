#!/usr/bin/env bash
# Non-blocking canary: install the newest releases pyproject.toml allows into a fresh virtual
# environment, list every package whose version differs from constraints.txt, and run the
# generation canaries (tests/test_compat.py) and the behaviour tests against them. It reports;
# it never fails the caller (exit 0), so the next upstream break is seen the day it ships
# without blocking a landing. torch stays at the lock (a bare newest torch is a multi-GB CUDA build).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
python3 -m venv "$root/venv"
# shellcheck disable=SC1091
source "$root/venv/bin/activate"
echo "== newest-release check (non-blocking)"
pip install -q -c <(grep '^torch==' constraints.txt) "$(grep '^torch==' constraints.txt)" || { echo "newest check: torch install failed"; exit 0; }
if ! INNERPROBE_UNLOCKED=1 bash scripts/install.sh; then
  echo "newest check: install of the newest releases FAILED (see above)"; exit 0
fi
pip freeze | grep -v '^-e' | grep -v '^innerprobe' | sed 's/+cpu$//' | sort > "$root/newest.txt"
grep -v '^#' constraints.txt | sort > "$root/locked.txt"
echo "== versions that differ from constraints.txt (< locked, > newest)"
diff "$root/locked.txt" "$root/newest.txt" | grep '^[<>]' || echo "(none)"
python3 -m pytest -q -p no:cacheprovider tests/test_compat.py tests/test_behavior.py \
  -W "ignore::UserWarning" 2>&1 | tail -15
rc=${PIPESTATUS[0]}
if [ "$rc" -eq 0 ]; then echo "newest check: canaries PASS on the newest releases"
else echo "newest check: canaries FAIL on the newest releases (rc=$rc): an upstream break to look at"; fi
exit 0
