"""`training_scripts/train.py` under FSDP on CPU processes (gloo), for the tests.

accelerate (1.15) only turns an FSDP launch into `DistributedType.FSDP` for GPU-like process types: with
`ACCELERATE_USE_CPU` it silently trains with plain MULTI_CPU data parallelism instead. torch's FSDP2 itself
(`fully_shard`) runs on gloo, so this driver keeps the FSDP plugin that accelerate built from the launch config
and then runs the unchanged training script:

    ACCELERATE_USE_CPU=true accelerate launch --config_file training_scripts/accelerate_configs/fsdp.yaml \\
        --num_processes 2 --mixed_precision no tests/fsdp_cpu_train.py --config ... [train.py flags]
"""

from __future__ import annotations

import sys
from pathlib import Path

from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedType

REPO_ROOT = Path(__file__).resolve().parents[1]
from training_scripts import train

_accelerator_state_init = AcceleratorState.__init__


def _keep_fsdp_on_cpu(self, *args, fsdp_plugin=None, **kwargs) -> None:
    _accelerator_state_init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
    if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
        self.distributed_type = DistributedType.FSDP
        self.fsdp_plugin = fsdp_plugin
        PartialState._shared_state["distributed_type"] = DistributedType.FSDP  # as AcceleratorState does on GPUs


if __name__ == "__main__":
    AcceleratorState.__init__ = _keep_fsdp_on_cpu
    train.main(sys.argv[1:])
