"""Make the README's heat-map picture: "airplanes" over the bundled DOTA scene, with the model you give.

    python docs/make_heatmap_figure.py --model remoteclip-vit-b-32

Writes docs/assets/heatmap_dota_airplanes.png. With a random-weight model (as the committed picture) the map is
meaningless; run it with the converted RemoteCLIP weights before publishing.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from rclip_hf.arguments import ArgumentParser
from rclip_hf.inference import heatmap, load_model

ASSETS = Path(__file__).resolve().parent / "assets"
SCENE = ASSETS / "dota_P1888.jpg"  # DOTA v1.0 image P1888 (712 x 557), research use
FIGURE = ASSETS / "heatmap_dota_airplanes.png"


def main() -> None:
    """Parse the options, compute the heat map, save the overlay."""
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="converted RemoteCLIP folder")
    parser.add_argument("--query", default="airplanes")
    parser.add_argument("--window", type=int, default=160, help="window side in pixels (1/3 overlap)")
    parser.add_argument("--output", type=Path, default=FIGURE)
    args = parser.parse_args()
    model, processor = load_model(args.model)
    with tempfile.TemporaryDirectory() as folder:
        result = heatmap(SCENE, [args.query], model=model, processor=processor, window=args.window, overlay_size=480,
                         output_dir=folder)
        Path(result.files[f"png:{args.query}"]).replace(args.output)
    print(f"wrote {args.output} ({args.output.stat().st_size // 1024} KiB), windows {result.scores.shape[1:]}")


if __name__ == "__main__":
    main()
