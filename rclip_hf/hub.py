"""Publish a model folder to the Hugging Face Hub: `rclip-hf push MODEL_DIR --repo-id OWNER/NAME [--private]
[--token T] [--revision BRANCH] [--commit-message M] [--create-pr] [--dry-run]`.

Only an allow-list of files is uploaded (weights as safetensors, config, processor and tokenizer files, the remote
code of ResNet folders, open_clip's config and weights, the card, its plots, the results JSON it quotes and the
Hub's `.eval_results/` files); everything else in the folder is reported as skipped, never uploaded. The upload sends
exactly the planned files, one explicit operation each (no name patterns), in one commit that also deletes the files
of an earlier upload no longer planned (remote paths on the allow-list that this upload does not send). A symlink is
followed only when its target is itself an allowed file inside the folder; the dry run marks each link. A folder
without a card (`README.md`) gets one first: its "How to use" snippets (`rclip_hf.usage`), no results; a card is
never written through a symlink.

`check_write_access` and `commit_files` are the one way anything of ours reaches the Hub: model pushes here, the
dataset builders' `--push-to-hub` (`dataset_builders.publish`) and `train.py --push_to_hub` too, all with the
options of `HubOptions`.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    ModelCard,
    ModelCardData,
    get_token,
    metadata_load,
)
from huggingface_hub.errors import (
    HfHubHTTPError,
    HFValidationError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import validate_repo_id

from .arguments import ArgumentParser
from .benchmark_registry import REMOTECLIP_BIBTEX
from .errors import UserError, entry_point
from .staging import write_new_file
from .usage import CODE_URL, arch_of_model_dir, architecture_summary, usage_kinds, usage_section

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
    ".eval_results/*.yaml": "evaluation results",
}
#: Files a publishable folder must have: a card and a transformers model (weights and config) or open_clip's files.
REQUIRED_KINDS = ("weights", "config", "card")
#: The open_clip files that, with the card, make an open_clip-only folder (`rclip-hf export`) publishable.
OPEN_CLIP_FILES = ("open_clip_config.json", "open_clip_model.safetensors")
#: Roles in an organisation that may write to its repositories.
WRITE_ROLES = ("admin", "write", "contributor")


class PublishError(UserError, ValueError):
    """The folder cannot be published as it is; the message says what is missing."""


@dataclass
class HubOptions:
    """How a push reaches the Hub: the options of `rclip-hf push` and of every `--push-to-hub` (convert, export, the
    dataset builders, `train.py`)."""

    private: bool = field(default=False, metadata={"help": "create the Hub repo as private"})
    token: str | None = field(default=None, metadata={
        "help": "Hugging Face token (default: HF_TOKEN or the one `hf auth login` saved)"})
    revision: str | None = field(default=None, metadata={
        "help": "branch to commit to (created from main when missing; default: main)"})
    commit_message: str | None = field(default=None, metadata={"help": "message of the upload commit"})
    create_pr: bool = field(default=False, metadata={
        "help": "open a pull request with the upload instead of committing to the branch"})


def add_hub_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The `HubOptions` flags on an argparse parser, each as `--a-b` and `--a_b`."""
    types = get_type_hints(HubOptions)  # not `field.type`: HfArgumentParser rewrites it in place
    for option in dataclasses.fields(HubOptions):
        flags = dict.fromkeys([f"--{option.name.replace('_', '-')}", f"--{option.name}"])
        if types[option.name] is bool:
            parser.add_argument(*flags, dest=option.name, action="store_true", help=option.metadata["help"])
        else:
            parser.add_argument(*flags, dest=option.name, default=None, help=option.metadata["help"])
    return parser


def hub_options(args: Any) -> HubOptions:
    """The `HubOptions` of parsed arguments (or of any object with those attributes)."""
    return HubOptions(**{option.name: getattr(args, option.name) for option in dataclasses.fields(HubOptions)})


def matches(relative: str, pattern: str) -> bool:
    """fnmatch where "*" does not cross "/": `plots/*.png` matches `plots/a.png`, not `plots/old/a.png`."""
    return fnmatch.fnmatchcase(relative, pattern) and relative.count("/") == pattern.count("/")


def check_repo_id(repo_id: str, flag: str) -> None:
    """`PublishError` (one line naming `flag`) unless `repo_id` is a valid Hub repo id; dry runs check it too."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise PublishError(f"{flag} {repo_id!r}: not a Hub repo id (OWNER/NAME): {error}") from None


def check_write_access(repo_id: str, flag: str, api: HfApi | None = None, token: str | None = None) -> HfApi:
    """An `HfApi` whose token (`token`, else the saved one) may write to `repo_id`; else `PublishError`, one line
    naming `flag` and what to do."""
    check_repo_id(repo_id, flag)
    if api is None:
        if (token or get_token()) is None:
            raise PublishError(f"{flag} {repo_id}: no Hugging Face token; run `hf auth login`, set HF_TOKEN or pass "
                               "--token (or add --dry-run to see what would be uploaded)")
        api = HfApi(token=token) if token else HfApi()
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


def remote_deletions(api: HfApi, repo_id: str, repo_type: str, keep: Sequence[str], delete_patterns: Sequence[str],
                     revision: str | None = None) -> list[str]:
    """Paths in `repo_id` (at `revision`) that match `delete_patterns` and are not in `keep`: what a push of `keep`
    deletes. A repo or branch that does not exist yet has none."""
    try:
        remote = api.list_repo_files(repo_id=repo_id, repo_type=repo_type, revision=revision)
    except (RepositoryNotFoundError, RevisionNotFoundError):
        return []
    return [path for path in sorted(remote)
            if path not in keep and any(matches(path, pattern) for pattern in delete_patterns)]


def commit_files(api: HfApi, repo_id: str, repo_type: str, files: dict[str, Path | bytes], *, options: HubOptions,
                 commit_message: str, delete_patterns: Sequence[str] = ()) -> list[str]:
    """Create `repo_id` (and the branch `options.revision`) if needed, then one commit (or pull request, with
    `options.create_pr`): each of `files` (path in repo -> file or bytes) added, one explicit operation each, and
    the remote files matching `delete_patterns` that this commit does not add deleted. Returns the deleted paths."""
    api.create_repo(repo_id=repo_id, repo_type=repo_type, private=options.private, exist_ok=True)
    if options.revision is not None:
        api.create_branch(repo_id=repo_id, repo_type=repo_type, branch=options.revision, exist_ok=True)
    operations: list[CommitOperationAdd | CommitOperationDelete] = [
        CommitOperationAdd(path_in_repo=path, path_or_fileobj=source if isinstance(source, bytes) else str(source))
        for path, source in files.items()]
    deleted = remote_deletions(api, repo_id, repo_type, list(files), delete_patterns, options.revision) \
        if delete_patterns else []
    operations += [CommitOperationDelete(path_in_repo=path) for path in deleted]
    commit = api.create_commit(repo_id=repo_id, repo_type=repo_type, operations=operations,
                               commit_message=options.commit_message or commit_message, revision=options.revision,
                               create_pr=options.create_pr)
    if getattr(commit, "pr_url", None):
        logger.info("opened pull request %s", commit.pr_url)
    return deleted


@dataclass
class UploadPlan:
    """What a push would do: files to upload (with their kind and size), skipped files, card metadata, and the
    remote files of an earlier upload it deletes (None: not known, for a dry run that did not read the repo)."""

    model_dir: Path
    files: list[tuple[str, str, int]] = field(default_factory=list)  # (relative path, kind, bytes)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)
    metadata: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, Path] = field(default_factory=dict)  # relative path -> file read (a symlink's target)
    links: dict[str, str] = field(default_factory=dict)  # relative path of a followed symlink -> its target's
    deletions: list[str] | None = None

    @property
    def paths(self) -> list[str]:
        """Relative paths that would be uploaded."""
        return [path for path, _, _ in self.files]


def _kind(relative: str) -> str | None:
    return next((kind for pattern, kind in ALLOWED_FILES.items() if matches(relative, pattern)), None)


def walk_folder(folder: Path, allowed: Callable[[str], bool]) -> tuple[list[tuple[str, Path]], list[tuple[str, str]],
                                                                    dict[str, str]]:
    """(relative path, file to read) of every file under `folder`, the entries refused (with the reason), and the
    symlinks followed (relative path -> target's relative path). A symlink is followed only when its target is a
    file inside the folder whose own relative path is `allowed`; symlinked folders are never followed."""
    root = folder.resolve()
    files, refused, links = [], [], {}
    for directory, folders, names in os.walk(folder):
        for name in sorted(folders):
            if (Path(directory) / name).is_symlink():
                refused.append(((Path(directory) / name).relative_to(folder).as_posix(),
                                "symlinked folder: not followed, never uploaded"))
        for name in names:
            path = Path(directory) / name
            relative = path.relative_to(folder).as_posix()
            target = path.resolve()
            if not path.is_symlink():
                if target.is_file():
                    files.append((relative, target))
            elif not target.is_relative_to(root) or not target.is_file():
                refused.append((relative, "symlink to a file outside the folder (or to nothing): never uploaded"))
            elif not allowed(target.relative_to(root).as_posix()):
                reason = f"symlink to {target.relative_to(root).as_posix()}, not on the upload allow-list: never uploaded"
                refused.append((relative, reason))
            else:
                files.append((relative, target))
                links[relative] = target.relative_to(root).as_posix()
    return sorted(files), refused, links


def plan_upload(model_dir: str | Path) -> UploadPlan:
    """Sort every file under `model_dir` into uploaded (allow-list) and skipped; raises `PublishError` when the
    weights (safetensors), `config.json` or the card `README.md` are missing."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise PublishError(f"model folder {model_dir} does not exist")
    plan = UploadPlan(model_dir=model_dir)
    files, plan.skipped, links = walk_folder(model_dir, lambda relative: _kind(relative) is not None)
    for relative, source in files:
        kind = _kind(relative)
        if kind is None:
            reason = ("pickle weights are never uploaded (safetensors only)" if source.suffix in (".bin", ".pt", ".pth")
                      else "not on the upload allow-list")
            plan.skipped.append((relative, reason))
        else:
            plan.files.append((relative, kind, source.stat().st_size))
            plan.sources[relative] = source
            if relative in links:
                plan.links[relative] = links[relative]
    plan.skipped.sort()
    kinds = {kind for _, kind, _ in plan.files}
    missing = [kind for kind in REQUIRED_KINDS if kind not in kinds]
    if set(OPEN_CLIP_FILES) <= set(plan.paths) and "card" in kinds:
        missing = []
    if missing:
        raise PublishError(f"{model_dir}: cannot publish without {', '.join(missing)} "
                           "(model.safetensors, config.json, README.md: run python -m model_cards.build first)")
    plan.metadata = metadata_load(plan.sources["README.md"]) or {}
    return plan


def describe_plan(plan: UploadPlan, repo_id: str, options: HubOptions) -> str:
    """Human-readable listing of the files and metadata a push would upload and the remote files it would delete."""
    total = sum(size for _, _, size in plan.files)
    where = f" on branch {options.revision}" if options.revision else ""
    how = "as a pull request" if options.create_pr else "in one commit"
    lines = [(f"would create {'private' if options.private else 'public'} model repo {repo_id} and upload "
              f"{len(plan.files)} files ({total / 1e6:.1f} MB){where} {how} from {plan.model_dir}:")]
    lines += [f"  {path:<40} {kind:<20} {size:>12,} bytes"
              + (f"  (link -> {plan.links[path]})" if path in plan.links else "") for path, kind, size in plan.files]
    if plan.deletions is None:
        lines.append("deleting the files of an earlier upload that this one does not send (paths on the allow-list "
                     "only; the repo was not read: no token, or offline)")
    else:
        lines.append(f"deleting {len(plan.deletions)} files of an earlier upload there:")
        lines += [f"  {path}" for path in plan.deletions]
    if plan.skipped:
        lines.append(f"skipped ({len(plan.skipped)}):")
        lines += [f"  {path:<40} {reason}" for path, reason in plan.skipped]
    lines.append("card metadata:")
    for key, value in plan.metadata.items():
        if key == "model-index":
            results = [result for entry in value for result in entry.get("results", [])]
            metrics = sum(len(result.get("metrics", [])) for result in results)
            datasets = ", ".join(dict.fromkeys(result["dataset"]["type"] for result in results))
            lines.append(f"  model-index: {metrics} metrics on {len(results)} task/dataset pairs ({datasets})")
        else:
            lines.append(f"  {key}: {value}")
    return "\n".join(lines)


def push(model_dir: str | Path, repo_id: str, options: HubOptions | None = None, *, dry_run: bool = False,
         api: HfApi | None = None, commit_message: str = "Upload RemoteCLIP model (rclip-hf)",
         flag: str = "--repo-id") -> UploadPlan:
    """Create `repo_id` (if needed) and upload the allow-listed files of `model_dir` (the token's write access to
    it checked first), deleting the files of an earlier upload no longer planned; with `dry_run`, only plan (the
    deletions too, when `api` is given or a token is at hand to read the repo)."""
    options = options or HubOptions()
    check_repo_id(repo_id, flag)
    plan = plan_upload(model_dir)
    delete_patterns = list(ALLOWED_FILES)
    if dry_run:
        if api is not None or (options.token or get_token()) is not None:
            api = api or HfApi(token=options.token)
            try:
                plan.deletions = remote_deletions(api, repo_id, "model", plan.paths, delete_patterns, options.revision)
            except Exception as error:  # noqa: BLE001 -- offline, 401, 5xx: the dry run says the deletions are unknown
                logger.warning("could not read %s to list the deletions (%s)", repo_id, error)
        return plan
    api = check_write_access(repo_id, flag, api, options.token)
    plan.deletions = commit_files(api, repo_id, "model", {path: plan.sources[path] for path in plan.paths},
                                  options=options, commit_message=commit_message, delete_patterns=delete_patterns)
    logger.info("uploaded %d files to %s, deleted %d", len(plan.files), repo_id, len(plan.deletions))
    return plan


def bare_card(model_dir: str | Path, repo_id: str) -> ModelCard:
    """The card of a folder that has none: metadata, what it is (its architecture), how to use it (the snippets
    its files run), a link to the code and the citation; no results (`python -m model_cards.build` adds them)."""
    model_dir = Path(model_dir)
    has_config = (model_dir / "config.json").is_file()
    arch = arch_of_model_dir(model_dir) if has_config else None
    if arch:
        what = (f"RemoteCLIP {arch} in transformers format: the architecture of the remote-sensing CLIP of Liu et al. "
                "(2024); which weights it holds (a conversion, a training run) is not recorded in the folder.")
    elif has_config:
        what = f"A RemoteCLIP-style CLIP model for remote sensing ({architecture_summary(model_dir)})."
    else:
        what = "A CLIP model for remote sensing, exported with rclip-hf for open_clip."
    data = ModelCardData(license="apache-2.0", library_name="transformers" if has_config else "open_clip",
                         pipeline_tag="zero-shot-image-classification",
                         tags=["remote-sensing", "clip", "remoteclip", "vision-language", "rclip-hf"])
    name = repo_id.split("/")[-1]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n# {name}\n\n{what} Written by [rclip-hf]({CODE_URL}); no "
                     "evaluation results yet (`python -m model_cards.build` adds them).\n\n## How to use\n\n"
                     f"{usage_section(repo_id, usage_kinds(model_dir, arch))}\n\n## Citation\n\n```bibtex\n"
                     f"{REMOTECLIP_BIBTEX}\n```\n")


def ensure_card(model_dir: str | Path, repo_id: str) -> Path | None:
    """Write the `bare_card` (its snippets naming `repo_id`) when `model_dir` has no `README.md`; returns the new
    card's path. A `README.md` symlink to nothing is refused: nothing is written through a link."""
    model_dir = Path(model_dir)
    readme = model_dir / "README.md"
    if readme.is_symlink() and not readme.exists():
        raise PublishError(f"{readme} is a symlink to nothing; a card is never written through a link "
                           "(remove it or replace it with the card)")
    if readme.exists() or not model_dir.is_dir():
        return None
    write_new_file(readme, str(bare_card(model_dir, repo_id)).encode())
    logger.info("wrote a card without results to %s", readme)
    return readme


def publish(model_dir: str | Path, repo_id: str, options: HubOptions | None = None, *, dry_run: bool = False,
            api: HfApi | None = None, flag: str = "--repo-id") -> UploadPlan:
    """What `rclip-hf push`, `convert --push-to-hub`, `export --push-to-hub` and `train.py --push_to_hub` do: the
    repo id checked, a card if missing, then [`push`] (`flag` names the repo option in messages)."""
    check_repo_id(repo_id, flag)
    ensure_card(model_dir, repo_id)
    return push(model_dir, repo_id, options, dry_run=dry_run, api=api, flag=flag)


def add_push_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of the `push` subcommand."""
    parser.add_argument("model_dir", help="folder with model.safetensors, config, processor files and README.md")
    parser.add_argument("--repo-id", "--repo_id", dest="repo_id", required=True, help="Hub repository, OWNER/NAME")
    add_hub_arguments(parser)
    parser.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true",
                        help="list the files, deletions and metadata, upload nothing (a missing card is still written)")
    return parser


def run_push(args: argparse.Namespace) -> int:
    """Run a parsed `push` command; returns the exit code (a folder that is not publishable: `PublishError`)."""
    options = hub_options(args)
    plan = publish(args.model_dir, args.repo_id, options, dry_run=args.dry_run)
    print(("dry run: " if args.dry_run else "done: ") + describe_plan(plan, args.repo_id, options))
    return 0


@entry_point
def main(argv: Sequence[str] | None = None) -> int:
    """`python -m rclip_hf.hub MODEL_DIR --repo-id ...` (the same as `rclip-hf push`)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    parser = add_push_arguments(ArgumentParser(prog="rclip-hf push", description=__doc__))
    return run_push(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
