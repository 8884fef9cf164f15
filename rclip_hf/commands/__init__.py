"""The `rclip-hf` subcommands that run a model, one module each: `classify`, `index`, `search`, `count` and
`heatmap`. A module holds its command's `HELP` line, its options (a dataclass), its checks and its
`run_<name>(argv) -> exit code`; `options.py` holds the option groups they share (model, device, dtype, output
format, pixel limit, `--bands`, `--storage-option`) and `output.py` the table / JSON / CSV printer.
`rclip_hf/cli.py` only routes to them."""
