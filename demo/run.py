"""The rclip-hf demo, offline, on the real sample shipped in `demo/data/` (the README's main command).

    python demo/run.py --output demo_output                                       # the whole system, trained
    python demo/run.py --output out --checkpoint RemoteCLIP-RN50.pt --arch RN50   # the official weights
    python demo/run.py --output out --checkpoint random --arch RN50               # random weights, converted

Without `--checkpoint` it runs every stage on `demo/data`: benchmarks (RSSCN7 retrieval and zero-shot, RemoteCount
from DOTA), a mini caption corpus (B2C, M2B, p-Hash), a tiny RemoteCLIP trained with accelerate on CPU, its
evaluation against the untrained start, and a model folder with card and plots. With `--checkpoint` it converts
that open_clip file (or a random-weight one of `--arch`) with `rclip_hf.convert` and evaluates it instead of
training. Either way it ends by classifying the authors' demo image zero-shot against their captions; with the
official RN50 file the first caption scores about 100 %. See `demo/pipeline.py` for the stages.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script (demo/ is not an installed package): make `demo` importable
    sys.path.insert(0, str(REPO_ROOT))

from demo.pipeline import main

if __name__ == "__main__":
    sys.exit(main())
