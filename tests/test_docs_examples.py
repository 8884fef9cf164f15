"""The README and docs examples run: every ```python block, and every `rclip-hf` line of the ```bash blocks.

Each Markdown file's examples run in order, in a namespace of their own, in a temporary folder that holds what the examples
name: a model folder `remoteclip-vit-b-32/` (a tiny random-weight RemoteCLIP), also given as the variable and
environment variable `MODEL_DIR`, `airport.jpg`, `tiles/` (RSSCN7 images), `dota.png` (a DOTA scene), `scene.tif`
(a NEON GeoTIFF) and `demo/` (a link to the repository's demo folder, for repository-relative paths).
`rclip-hf convert`, `eval`, `push` and `demo` lines are not run (they need real checkpoints, benchmark data or the
network); neither is a block whose first line is `# doc-test: skip`.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from pathlib import Path

import pytest
from inference_models import copy_images, make_tiny_model_dir

from rclip_hf import cli

REPO_ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = sorted([REPO_ROOT / "README.md", *(REPO_ROOT / "docs").glob("*.md")])
FENCE = re.compile(r"^```(?P<lang>\w*)[^\n]*\n(?P<body>.*?)^```", re.MULTILINE | re.DOTALL)
NOT_RUN_COMMANDS = ("convert", "eval", "push", "demo")
SKIP_MARK = "# doc-test: skip"
LINK = re.compile(r"\]\((?!https?:)(?P<path>[^)#\s]*)(?:#(?P<anchor>[^)\s]+))?\)")


def blocks(path: Path) -> list[tuple[str, str, int]]:
    """(language, code, line number) of each fenced block of a Markdown file."""
    text = path.read_text()
    return [(match["lang"], match["body"], text.count("\n", 0, match.start()) + 1) for match in FENCE.finditer(text)]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    root = tmp_path_factory.mktemp("docs")
    make_tiny_model_dir(root / "remoteclip-vit-b-32")
    shutil.copy(shared_data / "remoteclip" / "airport.jpg", root / "airport.jpg")
    shutil.copy(shared_data / "dota" / "images" / "P1888.png", root / "dota.png")
    shutil.copy(shared_data / "neon_trees" / "OSBS_029.tif", root / "scene.tif")
    copy_images(shared_data, root / "tiles", per_class=2, classes=("aGrass", "dRiverLake", "gParking"))
    (root / "demo").symlink_to(REPO_ROOT / "demo", target_is_directory=True)
    return root


def test_docs_have_examples() -> None:
    """The front page has its quickstarts and links every docs page; the pages hold the rest of the examples."""
    front_page = (REPO_ROOT / "README.md").read_text()
    languages = [language for language, _, _ in blocks(REPO_ROOT / "README.md")]
    assert languages.count("python") >= 2 and languages.count("bash") >= 4
    pages = [path for path in DOC_FILES if path.parent.name == "docs"]
    assert [path.name for path in pages if f"](docs/{path.name})" not in front_page] == []
    languages = [language for page in pages for language, _, _ in blocks(page)]
    assert languages.count("python") >= 10 and languages.count("bash") >= 10


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda path: path.relative_to(REPO_ROOT).as_posix())
def test_links_resolve(doc: Path) -> None:
    """Every relative link of the front page and the docs pages names a file that exists, and a heading of it."""
    broken = []
    for match in LINK.finditer(FENCE.sub("", doc.read_text())):
        target = (doc.parent / match["path"]).resolve() if match["path"] else doc
        if not target.exists() or (match["anchor"] and match["anchor"] not in _anchors(target)):
            broken.append(match[0])
    assert broken == []


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", FENCE.sub("", path.read_text()), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda path: path.relative_to(REPO_ROOT).as_posix())
def test_examples_run(doc: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workspace)
    model_dir = str(workspace / "remoteclip-vit-b-32")
    monkeypatch.setenv("MODEL_DIR", model_dir)
    namespace: dict[str, object] = {"__name__": f"docs_example_{doc.stem}", "MODEL_DIR": model_dir}
    ran = 0
    for language, code, line in blocks(doc):
        if code.startswith(SKIP_MARK):
            continue
        where = f"{doc.relative_to(REPO_ROOT)}:{line}"
        if language == "python":
            exec(compile(code, where, "exec"), namespace)  # noqa: S102  (running the documented examples is the test)
            ran += 1
        elif language in ("bash", "sh", "shell"):
            for command in _cli_lines(code):
                assert cli.main(command) == 0, f"{where}: rclip-hf {shlex.join(command)} failed"
                ran += 1
    if doc.name == "README.md":
        assert ran >= 7
        assert (workspace / "quickstart.index" / "items.lance").is_dir() and (workspace / "quickstart-maps").is_dir()
    if doc.name == "inference.md":
        assert ran >= 12
        assert (workspace / "tiles.index" / "items.lance").is_dir() and (workspace / "scene-maps").is_dir()
    assert os.getcwd() == str(workspace)


def _cli_lines(code: str) -> list[list[str]]:
    commands = []
    for line in code.replace("\\\n", " ").splitlines():
        words = shlex.split(os.path.expandvars(line), comments=True)
        if len(words) >= 2 and words[0] == "rclip-hf" and words[1] not in NOT_RUN_COMMANDS:
            commands.append(words[1:])
    return commands
