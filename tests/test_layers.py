"""The layers of docs/architecture.md, checked on the source: imports only run downwards, and never in a circle.

Every top-level package is covered: `rclip_hf` (the library, in its own layers), `dataset_builders`, `model_cards`
and `training_scripts` (which may import `rclip_hf`, never the reverse), and `metrics` (Spaces that import no
project code). Lazy imports inside functions count as much as those at the top of a file.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rclip_hf", "dataset_builders", "model_cards", "training_scripts", "metrics")
#: What each top-level package must not import (demo and benchmarks are scripts: nothing imports them).
FORBIDDEN = {
    "rclip_hf": ("dataset_builders", "training_scripts", "model_cards", "metrics", "demo", "benchmarks"),
    "dataset_builders": ("training_scripts", "model_cards", "metrics", "demo", "benchmarks"),
    "model_cards": ("dataset_builders", "training_scripts", "metrics", "demo", "benchmarks"),
    "training_scripts": ("dataset_builders", "metrics", "demo", "benchmarks"),
    "metrics": ("rclip_hf", "dataset_builders", "model_cards", "training_scripts", "demo", "benchmarks"),
}
#: The top layer of `rclip_hf`: the `rclip-hf` router, the subcommands it routes to, and the explore app.
CLI_LAYER = ("rclip_hf.cli", "rclip_hf.commands", "rclip_hf.explore")
#: What `rclip_hf/cli.py` may define: the routing itself (the table, the delegation, the usage text) and `main`.
ROUTER_FUNCTIONS = {"main", "available_commands", "_delegate", "_dash_spelling", "_usage"}


def _sources(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


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


def _module_name(path: Path) -> str:
    """The dotted module name of project file `path` (a package's `__init__.py`: the package)."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_file(name: str, near: Path, exact: bool = False) -> Path | None:
    """The project file of module `name`, or (unless `exact`) of its longest prefix that is one; a name that does
    not resolve from the root is tried from `near`'s folder, as a script run from there sees it (`training.loop`)."""
    for base in (ROOT, near.parent):
        parts = name.split(".")
        while parts:
            stem = base.joinpath(*parts)
            for candidate in (stem.with_suffix(".py"), stem / "__init__.py"):
                if candidate.is_file():
                    return candidate if candidate != near else None
            if exact:
                break
            parts.pop()
    return None


def _imported_files(path: Path) -> set[Path]:
    """The project files `path` imports: for `from a import b`, a/b.py when b is a module, else a's file."""
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    files = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            files.update(_module_file(alias.name, path) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            for alias in node.names:
                files.add(_module_file(f"{module}.{alias.name}", path, exact=True) or _module_file(module, path))
    return files - {None}


def _edges() -> Iterator[tuple[Path, Path]]:
    """(importer, imported) for every import between two project files."""
    for package in PACKAGES:
        for path in _sources(package):
            for target in _imported_files(path):
                yield path, target


def _circles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one node (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for successor in graph.get(node, ()):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    """Whether module `name` is one of `prefixes` or inside one of them."""
    return any(name == prefix or name.startswith(f"{prefix}.") for prefix in prefixes)


def _offenders(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    """"FILE imports PREFIX" for each file under `folder` importing a module of a `forbidden` prefix."""
    return sorted({f"{path.relative_to(ROOT)} imports {prefix}" for path in _sources(folder)
                   for name in _imported(path) for prefix in forbidden if _within(name, (prefix,))})


def _named(circles: list[frozenset[str]]) -> list[str]:
    return sorted(" <-> ".join(sorted(circle)) for circle in circles)


@pytest.mark.parametrize("package", PACKAGES)
def test_top_level_packages_import_only_what_they_may(package: str) -> None:
    assert _offenders(package, FORBIDDEN[package]) == []


def test_inference_and_evaluation_are_siblings() -> None:
    assert _offenders("rclip_hf/inference", ("rclip_hf.evaluation",)) == []
    assert _offenders("rclip_hf/evaluation", ("rclip_hf.inference",)) == []


def test_only_the_cli_layer_imports_the_cli_layer() -> None:
    below = [path for path in _sources("rclip_hf") if not _within(_module_name(path), CLI_LAYER)]
    assert below and len(below) < len(_sources("rclip_hf"))
    offenders = sorted({f"{path.relative_to(ROOT)} imports {name}" for path in below for name in _imported(path)
                        if _within(name, CLI_LAYER)})
    assert offenders == []
    assert _offenders("rclip_hf/commands", ("rclip_hf.cli",)) == []  # the router imports the commands, not back


def test_cli_only_routes() -> None:
    """`rclip_hf/cli.py` holds the subcommand table and the routing; each command's options, checks and run
    function live with the command (`rclip_hf/commands/`, or its feature's module, as `explore/cli.py`)."""
    path = ROOT / "rclip_hf" / "cli.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assert [node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)] == []
    functions = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    assert functions <= ROUTER_FUNCTIONS, functions - ROUTER_FUNCTIONS
    project = {name for name in _imported(path) if name.startswith("rclip_hf")}
    assert project <= {"rclip_hf", "rclip_hf.__version__", "rclip_hf.errors", "rclip_hf.errors.EXIT_BAD_INPUT",
                       "rclip_hf.errors.UserError", "rclip_hf.errors.entry_point"}, project
    (table,) = [node.value for node in tree.body if isinstance(node, ast.AnnAssign) and node.target.id == "COMMANDS"]
    for name, target in ast.literal_eval(table).items():
        module, _, function = target.partition(":")
        file = _module_file(module, path, exact=True)
        assert _within(module, CLI_LAYER) and file is not None, name
        assert function in {node.name for node in ast.parse(file.read_text(encoding="utf-8")).body
                            if isinstance(node, ast.FunctionDef)}, target


def test_ground_floor_imports_nothing_above_it() -> None:
    above = ("rclip_hf.evaluation", "rclip_hf.inference", *CLI_LAYER, "rclip_hf.embeddings", "rclip_hf.loading",
             "rclip_hf.modeling_remoteclip")
    for name in ("images", "benchmark_registry", "prompts", "topk", "arguments", "_compat", "progress", "precision"):
        path = ROOT / "rclip_hf" / f"{name}.py"
        assert path.is_file(), f"{path} is gone: update the ground floor here and in docs/architecture.md"
        offenders = [f"{name}.py imports {module}" for module in _imported(path) if module.startswith(above)]
        assert offenders == [], offenders


def test_no_import_circle_among_files() -> None:
    graph: dict[str, set[str]] = {}
    for importer, imported in _edges():
        graph.setdefault(str(importer.relative_to(ROOT)), set()).add(str(imported.relative_to(ROOT)))
    assert _named(_circles(graph)) == []


def test_no_import_circle_among_packages() -> None:
    graph: dict[str, set[str]] = {}
    for importer, imported in _edges():
        source, target = importer.relative_to(ROOT).parts[0], imported.relative_to(ROOT).parts[0]
        if source != target:
            graph.setdefault(source, set()).add(target)
    assert _named(_circles(graph)) == []


def test_one_name_one_meaning() -> None:
    """A public function or class name is defined once across the project's packages, so a name found in a
    traceback or an import means one thing (each entry point has its own `main` and `parse_args`; the metric
    Spaces hold copies on purpose, as they import no project code)."""
    defined: dict[str, list[str]] = {}
    for package in PACKAGES:
        if package == "metrics":
            continue
        for path in _sources(package):
            for node in ast.parse(path.read_text(encoding="utf-8")).body:
                if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                    defined.setdefault(node.name, []).append(str(path.relative_to(ROOT)))
    twins = {name: paths for name, paths in defined.items() if len(paths) > 1 and name not in ("main", "parse_args")}
    assert twins == {}


def test_the_circle_finder_finds_circles_and_only_those() -> None:
    graph = {"a.py": {"b.py"}, "b.py": {"c.py"}, "c.py": {"a.py"}, "d.py": {"a.py", "e.py"}, "e.py": {"f.py"}}
    assert _circles(graph) == [frozenset({"a.py", "b.py", "c.py"})]
    assert _circles({"a.py": {"b.py"}, "b.py": set()}) == []
