"""The `rclip-hf` subcommands that run a model, one module each: `classify`, `index`, `search`, `count` and
`heatmap`. A module holds its command's options (a dataclass), its checks and its `run_<name>(argv)`; `options.py`
the option groups they share (model, precision, device, output format, bands, object storage) and `output.py` the
table / JSON / CSV printer. `rclip_hf/cli.py` only routes to them."""
