#!/usr/bin/env bash
# Builds .venv from requirements/lock.txt, exactly, and installs the system tools the project calls.
# Idempotent: when the lock, the no-deps list and pyproject.toml are unchanged and the environment
# imports, it returns in about a second.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PY="$VENV/bin/python"
hash=$(cat requirements/lock.txt requirements/nodeps.in pyproject.toml | sha256sum | cut -c1-16)

bash scripts/install-system.sh

if [[ -f "$VENV/.install-hash" && "$(cat "$VENV/.install-hash")" == "$hash" ]] \
   && "$PY" -c "import asr_peft, espnet2, torchaudio, lightning" 2>/dev/null; then
  echo "environment up to date ($VENV)"
  exit 0
fi

echo "building $VENV from requirements/lock.txt (first time: several minutes)"
python3 -m venv "$VENV"
# --no-deps everywhere: the lock is complete, and no resolver may choose a torch (or a setuptools) itself.
"$PY" -m pip install -q --no-deps -r requirements/lock.txt
# ESPnet pins setuptools<74 while torch 2.14 needs >=77; its runtime needs are in the lock instead.
"$PY" -m pip install -q --no-deps -r requirements/nodeps.in
"$PY" -m pip install -q --no-deps --no-build-isolation -e .
"$PY" - <<'PY'
import torch, torchaudio
from torchaudio._extension import _IS_TORCHAUDIO_EXT_AVAILABLE
assert torch.__version__.startswith("2.14.1"), torch.__version__
assert _IS_TORCHAUDIO_EXT_AVAILABLE, "torchaudio's compiled extension did not load"
print(f"torch {torch.__version__}, torchaudio {torchaudio.__version__} (extension loaded)")
PY
echo "$hash" > "$VENV/.install-hash"
