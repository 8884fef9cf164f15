"""The rclip-hf demo, offline, on the real sample shipped in `demo/data/` (the README's main command).

    python demo/run.py --output demo_output                                  # random-weight RN50, classify airport.jpg
    python demo/run.py --output out --checkpoint RemoteCLIP-RN50.pt --arch RN50   # the official weights

Without `--checkpoint` it builds an official-architecture open_clip checkpoint with random weights on the spot,
converts it with `rclip_hf.convert` and classifies the authors' demo image zero-shot against their captions:
with random weights the scores are near-uniform, which is the honest result. With the official RN50 file the
first caption scores about 100 %.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script: make `demo`, `training_scripts` importable
    sys.path.insert(0, str(REPO_ROOT))

from demo.pipeline import main

if __name__ == "__main__":
    sys.exit(main())
