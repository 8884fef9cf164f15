"""Evaluate a RemoteCLIP / CLIP / open_clip model on the paper's benchmarks.

python training_scripts/evaluate.py --model DIR_OR_HUB_ID --benchmarks rsitmd,rsicd,ucm,eurosat,remotecount \
    --data-dir DIR --output results.json [--templates paper|ensemble] [--linear_probe] [--knn] [--few_shot] [--dtype bfloat16]
"""

import sys

from rclip_hf.evaluation.runner import main

if __name__ == "__main__":
    sys.exit(main(prog="training_scripts/evaluate.py"))
