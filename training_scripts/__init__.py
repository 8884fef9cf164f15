"""The training and evaluation scripts of rclip-hf: `train.py` (continual pre-training with accelerate),
`evaluate.py` (the benchmark runner) and the `training` package they use (importable as
`training_scripts.training`)."""
