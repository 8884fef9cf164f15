"""The layers of docs/architecture.md, checked on the source: imports only run downwards."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imported(path: Path) -> set[str]:
    """Absolute names of the modules `path` imports (relative imports resolved against its package)."""
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _offenders(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(f"{path.relative_to(ROOT)} imports {name}" for path in (ROOT / folder).rglob("*.py")
                  for name in _imported(path) if name.startswith(forbidden))


def test_rclip_hf_never_imports_builders_or_scripts() -> None:
    assert _offenders("rclip_hf", ("dataset_builders", "training_scripts", "demo")) == []


def test_inference_and_evaluation_are_siblings() -> None:
    assert _offenders("rclip_hf/inference", ("rclip_hf.evaluation",)) == []
    assert _offenders("rclip_hf/evaluation", ("rclip_hf.inference", "rclip_hf.cli")) == []


def test_ground_floor_imports_nothing_above_it() -> None:
    above = ("rclip_hf.evaluation", "rclip_hf.inference", "rclip_hf.cli", "rclip_hf.embeddings", "rclip_hf.loading",
             "rclip_hf.modeling_remoteclip")
    for name in ("images", "benchmarks", "prompts", "topk", "arguments", "_compat"):
        offenders = [f"{name}.py imports {module}" for module in _imported(ROOT / "rclip_hf" / f"{name}.py")
                     if module.startswith(above)]
        assert offenders == [], offenders
