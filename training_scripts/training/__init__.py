"""Continual pre-training of RemoteCLIP: arguments, data, augmentation, model wrapper, optimiser, loop, checkpoints."""
