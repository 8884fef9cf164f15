"""Publish a model folder to the Hugging Face Hub: `rclip-hf push MODEL_DIR --repo-id OWNER/NAME [--private] [--dry-run]`.

Only an allow-list of files is uploaded (weights as safetensors, config, processor and tokenizer files, the remote
code of ResNet folders, open_clip's config and weights, the card, its plots and the results JSON it quotes);
everything else in the folder is reported as skipped, never uploaded. The upload sends exactly the planned files, one
explicit operation each (no name patterns); a symlink is followed only when its target lies inside the folder. A
folder without a card (`README.md`) gets one first (`model_cards`, "How to use" snippets for this folder's kind).

`check_write_access` and `commit_files` are the one way anything of ours reaches the Hub: model pushes here, the
dataset builders' `--push-to-hub` (`dataset_builders.publish`) too.
"""

from __future__ import annotations

import argparse
import fnmatch
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, get_token, metadata_load
from huggingface_hub.errors import HfHubHTTPError, HFValidationError
from huggingface_hub.utils import validate_repo_id

from .arguments import ArgumentParser
from .errors import entry_point

logger = logging.getLogger(__name__)

#: Upload allow-list (paths relative to the model folder, fnmatch patterns; "*" does not cross "/").
ALLOWED_FILES: dict[str, str] = {
    "model.safetensors": "weights",
    "model-*-of-*.safetensors": "weights",
    "model.safetensors.index.json": "weights",
    "config.json": "config",
    "processor_config.json": "processor",
    "preprocessor_config.json": "processor",
    "tokenizer.json": "tokenizer",
    "tokenizer_config.json": "tokenizer",
    "special_tokens_map.json": "tokenizer",
    "vocab.json": "tokenizer",
    "merges.txt": "tokenizer",
    "configuration_remoteclip.py": "remote code",
    "modeling_remoteclip.py": "remote code",
    "processing_remoteclip.py": "remote code",
    "open_clip_config.json": "open_clip",
    "open_clip_model.safetensors": "open_clip",
    "README.md": "card",
    "plots/*.png": "plot",
    "results.json": "evaluation results",
}
#: Files a publishable folder must have: a card and a transformers model (weights and config) or open_clip's files.
REQUIRED_KINDS = ("weights", "config", "card")
#: The open_clip files that, with the card, make an open_clip-only folder (`rclip-hf export`) publishable.
OPEN_CLIP_FILES = ("open_clip_config.json", "open_clip_model.safetensors")
#: Roles in an organisation that may write to its repositories.
WRITE_ROLES = ("admin", "write", "contributor")


class PublishError(ValueError):
    """The folder cannot be published as it is; the message says what is missing."""


def matches(relative: str, pattern: str) -> bool:
    """fnmatch where "*" does not cross "/": `plots/*.png` matches `plots/a.png`, not `plots/old/a.png`."""
    return fnmatch.fnmatchcase(relative, pattern) and relative.count("/") == pattern.count("/")


def check_write_access(repo_id: str, flag: str, api: HfApi | None = None) -> HfApi:
    """An `HfApi` whose token may write to `repo_id`; else `PublishError`, one line naming `flag` and what to do."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise PublishError(f"{flag} {repo_id!r}: not a Hub repo id (OWNER/NAME): {error}") from None
    if api is None:
        if get_token() is None:
            raise PublishError(f"{flag} {repo_id}: no Hugging Face token; run `hf auth login` or set HF_TOKEN "
                               "(or add --dry-run to see what would be uploaded)")
        api = HfApi()
    try:
        whoami = api.whoami()
    except HfHubHTTPError as error:
        raise PublishError(f"{flag} {repo_id}: the Hub rejected the token ({error}); run `hf auth login` "
                           "with a valid token") from None
    if whoami.get("auth", {}).get("accessToken", {}).get("role") == "read":
        raise PublishError(f"{flag} {repo_id}: the token is read-only; log in with a write token "
                           "(https://huggingface.co/settings/tokens)")
    namespace = repo_id.split("/")[0] if "/" in repo_id else whoami["name"]
    writable = [whoami["name"]] + [org["name"] for org in whoami.get("orgs", []) if org.get("roleInOrg") in WRITE_ROLES]
    if namespace not in writable:
        raise PublishError(f"{flag} {repo_id}: {whoami['name']} cannot write to {namespace!r} "
                           f"(writable: {', '.join(writable)}); choose a repo under one of these")
    return api


def commit_files(api: HfApi, repo_id: str, repo_type: str, files: dict[str, Path | bytes], *, private: bool,
                 commit_message: str, delete_patterns: Sequence[str] = ()) -> None:
    """Create `repo_id` if needed, then one commit: each of `files` (path in repo -> file or bytes) added, one
    explicit operation each, and the remote files matching `delete_patterns` that this commit does not add deleted."""
    api.create_repo(repo_id=repo_id, repo_type=repo_type, private=private, exist_ok=True)
    operations: list[CommitOperationAdd | CommitOperationDelete] = [
        CommitOperationAdd(path_in_repo=path, path_or_fileobj=source if isinstance(source, bytes) else str(source))
        for path, source in files.items()]
    if delete_patterns:
        remote = api.list_repo_files(repo_id=repo_id, repo_type=repo_type)
        operations += [CommitOperationDelete(path_in_repo=path) for path in sorted(remote)
                       if path not in files and any(matches(path, pattern) for pattern in delete_patterns)]
    api.create_commit(repo_id=repo_id, repo_type=repo_type, operations=operations, commit_message=commit_message)


@dataclass
class UploadPlan:
    """What a push would do: files to upload (with their kind and size), skipped files, card metadata."""

    model_dir: Path
    files: list[tuple[str, str, int]] = field(default_factory=list)  # (relative path, kind, bytes)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)
    metadata: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, Path] = field(default_factory=dict)  # relative path -> file read (a symlink's target)

    @property
    def paths(self) -> list[str]:
        """Relative paths that would be uploaded."""
        return [path for path, _, _ in self.files]


def _kind(relative: str) -> str | None:
    return next((kind for pattern, kind in ALLOWED_FILES.items() if matches(relative, pattern)), None)


def _walk(model_dir: Path) -> tuple[list[tuple[str, Path]], list[tuple[str, str]]]:
    """(relative path, file to read) of every file under `model_dir`, and the entries refused: symlinks whose
    target is outside the folder (or missing) and symlinked folders, which are not followed."""
    root = model_dir.resolve()
    files, refused = [], []
    for directory, folders, names in os.walk(model_dir):
        for name in sorted(folders):
            if (Path(directory) / name).is_symlink():
                refused.append(((Path(directory) / name).relative_to(model_dir).as_posix(),
                                "symlinked folder: not followed, never uploaded"))
        for name in names:
            path = Path(directory) / name
            relative = path.relative_to(model_dir).as_posix()
            target = path.resolve()
            if path.is_symlink() and (not target.is_relative_to(root) or not target.is_file()):
                refused.append((relative, "symlink to a file outside the folder (or to nothing): never uploaded"))
            elif target.is_file():
                files.append((relative, target))
    return sorted(files), refused


def plan_upload(model_dir: str | Path) -> UploadPlan:
    """Sort every file under `model_dir` into uploaded (allow-list) and skipped; raises `PublishError` when the
    weights (safetensors), `config.json` or the card `README.md` are missing."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise PublishError(f"model folder {model_dir} does not exist")
    plan = UploadPlan(model_dir=model_dir)
    files, plan.skipped = _walk(model_dir)
    for relative, source in files:
        kind = _kind(relative)
        if kind is None:
            reason = ("pickle weights are never uploaded (safetensors only)" if source.suffix in (".bin", ".pt", ".pth")
                      else "not on the upload allow-list")
            plan.skipped.append((relative, reason))
        else:
            plan.files.append((relative, kind, source.stat().st_size))
            plan.sources[relative] = source
    plan.skipped.sort()
    kinds = {kind for _, kind, _ in plan.files}
    missing = [kind for kind in REQUIRED_KINDS if kind not in kinds]
    if set(OPEN_CLIP_FILES) <= set(plan.paths) and "card" in kinds:
        missing = []
    if missing:
        raise PublishError(f"{model_dir}: cannot publish without {', '.join(missing)} "
                           "(model.safetensors, config.json, README.md: run python -m model_cards.build first)")
    plan.metadata = metadata_load(model_dir / "README.md") or {}
    return plan


def describe_plan(plan: UploadPlan, repo_id: str, private: bool) -> str:
    """Human-readable listing of the files and metadata a push would upload."""
    total = sum(size for _, _, size in plan.files)
    lines = [(f"would create {'private' if private else 'public'} model repo {repo_id} and upload "
              f"{len(plan.files)} files ({total / 1e6:.1f} MB) from {plan.model_dir}:")]
    lines += [f"  {path:<40} {kind:<20} {size:>12,} bytes" for path, kind, size in plan.files]
    if plan.skipped:
        lines.append(f"skipped ({len(plan.skipped)}):")
        lines += [f"  {path:<40} {reason}" for path, reason in plan.skipped]
    lines.append("card metadata:")
    for key, value in plan.metadata.items():
        if key == "model-index":
            results = [result for entry in value for result in entry.get("results", [])]
            metrics = sum(len(result.get("metrics", [])) for result in results)
            datasets = ", ".join(result["dataset"]["type"] for result in results)
            lines.append(f"  model-index: {metrics} metrics on {len(results)} task/dataset pairs ({datasets})")
        else:
            lines.append(f"  {key}: {value}")
    return "\n".join(lines)


def push(model_dir: str | Path, repo_id: str, *, private: bool = False, dry_run: bool = False,
         api: HfApi | None = None, commit_message: str = "Upload RemoteCLIP model (rclip-hf)",
         flag: str = "--repo-id") -> UploadPlan:
    """Create `repo_id` (if needed) and upload the allow-listed files of `model_dir` (the token's write access to
    it checked first); with `dry_run`, only plan."""
    plan = plan_upload(model_dir)
    if dry_run:
        return plan
    api = check_write_access(repo_id, flag, api)
    commit_files(api, repo_id, "model", {path: plan.sources[path] for path in plan.paths}, private=private,
                 commit_message=commit_message)
    logger.info("uploaded %d files to %s", len(plan.files), repo_id)
    return plan


def ensure_card(model_dir: str | Path, repo_id: str) -> Path | None:
    """Write a card without results (`model_cards`, its snippets naming `repo_id`) when `model_dir` has no
    `README.md`; returns the new card's path."""
    model_dir = Path(model_dir)
    readme = model_dir / "README.md"
    if readme.is_file() or not model_dir.is_dir():
        return None
    try:
        from model_cards.card import CardInputs, arch_of_model_dir, build_model_card
    except ImportError as error:
        raise PublishError(f"{model_dir} has no README.md and model_cards is not importable ({error}): install "
                           "rclip-hf[cards] or write the card with python -m model_cards.build") from None
    arch = arch_of_model_dir(model_dir) if (model_dir / "config.json").is_file() else None
    inputs = CardInputs(arch=arch, repo_id=repo_id, model_name=repo_id.split("/")[-1], model_dir=str(model_dir),
                        summary=None if arch else "A CLIP model for remote sensing, exported with rclip-hf.")
    build_model_card({"benchmarks": {}}, inputs).save(readme)
    logger.info("wrote a card without results to %s", readme)
    return readme


def publish(model_dir: str | Path, repo_id: str, *, private: bool = False, dry_run: bool = False,
            api: HfApi | None = None, flag: str = "--repo-id") -> UploadPlan:
    """What `rclip-hf push`, `convert --push-to-hub` and `export --push-to-hub` do: a card if missing, then [`push`]
    (`flag` names the repo option in messages)."""
    ensure_card(model_dir, repo_id)
    return push(model_dir, repo_id, private=private, dry_run=dry_run, api=api, flag=flag)


def add_push_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of the `push` subcommand (also used by `rclip_hf.cli`)."""
    parser.add_argument("model_dir", help="folder with model.safetensors, config, processor files and README.md")
    parser.add_argument("--repo-id", "--repo_id", dest="repo_id", required=True, help="Hub repository, OWNER/NAME")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true",
                        help="list the files and metadata, upload nothing (a missing card is still written)")
    return parser


def run_push(args: argparse.Namespace) -> int:
    """Run a parsed `push` command; returns the exit code (2 with a message when the folder is not publishable)."""
    try:
        plan = publish(args.model_dir, args.repo_id, private=args.private, dry_run=args.dry_run)
    except PublishError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(("dry run: " if args.dry_run else "done: ") + describe_plan(plan, args.repo_id, args.private))
    return 0


@entry_point
def main(argv: Sequence[str] | None = None) -> int:
    """`python -m rclip_hf.hub MODEL_DIR --repo-id ...` (the same as `rclip-hf push`)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    parser = add_push_arguments(ArgumentParser(prog="rclip-hf push", description=__doc__))
    return run_push(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
