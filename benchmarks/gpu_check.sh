#!/usr/bin/env bash
# One GPU check, under 8 minutes on a CUDA machine: training throughput with MFU (bf16, ViT-B/32 batch 256 and
# ViT-L/14 batch 64), inference throughput (bf16, batch 256) and the training input pipeline with every core.
# Writes one markdown file: a table of the checks (command, exit status, seconds) followed by each benchmark's
# own table. On a machine without CUDA it says so and runs nothing.
#
#   bash benchmarks/gpu_check.sh [OUTPUT.md]        # default gpu_check.md; PYTHON=... picks the interpreter
#   bash benchmarks/gpu_check.sh --dry-run          # print the commands only
set -euo pipefail

PYTHON="${PYTHON:-python}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DRY_RUN=0
OUTPUT="gpu_check.md"
for argument in "$@"; do
  case "$argument" in
    --dry-run) DRY_RUN=1 ;;
    -h|--help) sed -n '2,9p' "${BASH_SOURCE[0]}"; exit 0 ;;
    -*) echo "gpu_check.sh: unknown option $argument (expected --dry-run or an output file)" >&2; exit 2 ;;
    *) OUTPUT="$argument" ;;
  esac
done

CORES="$(nproc)"
# name | seconds allowed | command (each stays well inside its share of the 8 minutes)
CHECKS=(
  "train ViT-B/32 bf16 batch 256|120|$PYTHON $HERE/train_throughput.py --arch ViT-B-32 --batch-size 256 --precision bfloat16 --device cuda --steps 10 --warmup 3"
  "train ViT-L/14 bf16 batch 64|150|$PYTHON $HERE/train_throughput.py --arch ViT-L-14 --batch-size 64 --precision bfloat16 --device cuda --steps 10 --warmup 3"
  "inference bf16 batch 256|60|$PYTHON $HERE/inference_throughput.py --archs ViT-B-32 ViT-L-14 --batch-size 256 --device cuda --dtype bfloat16 --repeats 10"
  "train input, $CORES cores|130|$PYTHON $HERE/train_input.py --samples 128 --epochs 2 --workers 1 $CORES"
)

if [[ "$DRY_RUN" == 1 ]]; then
  for check in "${CHECKS[@]}"; do
    IFS='|' read -r name limit command <<< "$check"
    echo "timeout $limit $command"
  done
  exit 0
fi

if ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check.sh: no CUDA device on this machine (torch.cuda.is_available() is False); nothing was run"
  exit 0
fi

DEVICE="$("$PYTHON" -c "import torch; print(torch.cuda.get_device_name(0))")"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
summary="| check | exit status | seconds | command |"$'\n'"|---|---|---|---|"
details=""
index=0
for check in "${CHECKS[@]}"; do
  IFS='|' read -r name limit command <<< "$check"
  index=$((index + 1))
  echo "gpu_check.sh: $name ..." >&2
  start=$SECONDS
  status=0
  # shellcheck disable=SC2086  # the command is a word list
  timeout "$limit" $command > "$WORK/$index.md" 2> "$WORK/$index.err" || status=$?
  elapsed=$((SECONDS - start))
  [[ "$status" == 124 ]] && status="124 (timed out after ${limit} s)"
  summary+=$'\n'"| $name | $status | $elapsed | \`${command/$PYTHON $HERE\//benchmarks/}\` |"
  details+=$'\n'"## $name"$'\n\n'"$(cat "$WORK/$index.md")"$'\n'
  if [[ "$status" != 0 ]]; then
    details+=$'\n```\n'"$(tail -n 20 "$WORK/$index.err")"$'\n```\n'
  fi
done

{
  echo "# GPU check: $DEVICE, $CORES CPU cores, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "$summary"
  echo "$details"
} > "$OUTPUT"
echo "gpu_check.sh: wrote $OUTPUT" >&2
