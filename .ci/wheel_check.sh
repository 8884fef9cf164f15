#!/usr/bin/env bash
# The package as a user gets it: build the sdist and the wheel (`python -m build`), check them with `twine check`,
# check that every data file of the packages is in the wheel, install the wheel (not editable, with its
# dependencies resolved against requirements/constraints.txt, from pip's cache after the first run) in a clean venv,
# and run it from outside the checkout: `rclip-hf --help`, the conversion of a random-weight RN50 checkpoint,
# `push --dry-run` (which writes the model card from its packaged template) and a builder's `--help`.
# Usage: bash .ci/wheel_check.sh [PYTHON]   (PYTHON: an interpreter with build and twine; default .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
python=${1:-.venv/bin/python}
work=$(mktemp -d "${TMPDIR:-/tmp}/rclip-hf-wheel.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Build from a copy of the tracked files, so that nothing untracked (or built before) can slip into the wheel.
git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$work" --one-top-level=src
"$python" -m build --no-isolation --outdir "$work/dist" "$work/src" >"$work/build.log" 2>&1 \
    || { cat "$work/build.log" >&2; exit 1; }
"$python" -m twine check --strict "$work"/dist/*
wheel=$(ls "$work"/dist/*.whl)

# Every tracked file inside the packages must be in the wheel: Python files and package data alike.
"$python" - "$wheel" <<'PY'
import subprocess, sys, zipfile
packages = ("rclip_hf", "dataset_builders", "model_cards", "training_scripts")
tracked = set(subprocess.run(["git", "ls-files", *packages], capture_output=True, text=True, check=True).stdout.split())
packaged = set(zipfile.ZipFile(sys.argv[1]).namelist())
missing = sorted(tracked - packaged)
if missing:
    sys.exit(f"wheel check: {len(missing)} file(s) of the packages are not in the wheel: {', '.join(missing)}")
print(f"wheel check: {len(tracked)} package files, all in {sys.argv[1].rsplit('/', 1)[-1]}")
PY

"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet -c requirements/constraints.txt "$wheel[data]"
"$work/venv/bin/python" -m pip check

# From an empty folder, so that only the installed wheel can be imported.
mkdir "$work/run"
cd "$work/run"
export PATH="$work/venv/bin:$PATH" HF_HUB_OFFLINE=1 PYTHONPATH=
rclip-hf --help >/dev/null
python - <<'PY'
import rclip_hf, torch
from rclip_hf import RemoteCLIPConfig, RemoteCLIPModel
from rclip_hf.convert import to_open_clip_state_dict

assert "site-packages" in rclip_hf.__file__, rclip_hf.__file__
torch.manual_seed(0)
torch.save(to_open_clip_state_dict(RemoteCLIPModel(RemoteCLIPConfig.from_preset("RN50"))), "rn50.pt")
PY
rclip-hf convert --checkpoint rn50.pt --arch RN50 --output rn50 --no-verify
test -f rn50/modeling_remoteclip.py  # the ResNet's remote code, copied from the installed package
rclip-hf push rn50 --repo-id rclip-hf/wheel-check --dry-run
grep -q "RN50" rn50/README.md  # the card, written from the packaged template
python -m dataset_builders.build_corpus --help >/dev/null
echo "wheel check: $(basename "$wheel") installs and runs outside the checkout"
