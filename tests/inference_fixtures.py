"""Fixtures of the inference, CLI and docs tests (loaded with `pytest_plugins = ("inference_fixtures",)`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from inference_models import make_tiny_model_dir


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A converted random-weight model folder (seed 0)."""
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny-remoteclip") / "model", seed=0)


@pytest.fixture(scope="session")
def other_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Same architecture as `tiny_model_dir`, other random weights (seed 1)."""
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny-remoteclip-other") / "model", seed=1)


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir: Path):
    """(model, processor) loaded from `tiny_model_dir`."""
    from rclip_hf.inference import load_model

    return load_model(tiny_model_dir)
