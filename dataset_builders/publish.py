"""Publishing a built dataset folder to the Hub: ``--push-to-hub REPO_ID [--private] [--dry-run]`` of every builder.

A push uploads exactly the files of ``PUBLISHED_FILES`` (the card, the licence file, the Parquet shards and
the build report), in one commit that also deletes the previous build's shards (``delete_patterns``: shard
names carry a content digest, so a rebuild's shards never overwrite the old ones). The build report goes up
with every local path made relative to its ``--source`` root. A symlink in the folder is followed only to a
published file inside it (as for models; the listing marks it). The token and its write access to the repo are
checked before anything is built; a dry run needs no token, checks the repo id, builds, lists files, sizes and card
metadata and uploads nothing. The token check, the commit and the options (``--token``, ``--revision``,
``--commit-message``, ``--create-pr``, ``--private``) are the model push's (`rclip_hf.hub`).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import HfApi, metadata_load

from dataset_builders.hf_folder import LICENSE_NAME, REPORT_NAME
from rclip_hf.hub import (
    HubOptions,
    PublishError,
    check_repo_id,
    check_write_access,
    commit_files,
    matches,
    walk_folder,
)

logger = logging.getLogger(__name__)

#: Files a push uploads (paths relative to the dataset folder; "*" does not cross "/").
PUBLISHED_FILES = ("README.md", LICENSE_NAME, REPORT_NAME, "data/*.parquet")
#: Remote files a push deletes unless this build uploads them: the previous build's shards.
DELETE_PATTERNS = ["data/*.parquet"]
_ABSOLUTE = re.compile(r"(?:^|[\s'\"(=])(/[^\s'\"]+)")


@dataclass
class PushConfig(HubOptions):
    """Hub options shared by the dataset builders: the repo, a dry run, and the model push's `HubOptions`."""

    push_to_hub: str | None = field(default=None, metadata={
        "help": "Hub dataset repo (OWNER/NAME) to upload the built folder to (token checked before building)"})
    dry_run: bool = field(default=False, metadata={
        "help": "with --push-to-hub: build, then list the files, sizes and card metadata a push would upload; "
                "upload nothing (no token needed)"})


#: Options that change where a build goes, not what it is (never in a fingerprint or a published report).
PUSH_KEYS = tuple(option.name for option in fields(PushConfig))


@dataclass
class DatasetUpload:
    """What a push of one folder sends: files (relative path, bytes), the relativised report, card metadata."""

    folder: Path
    repo_id: str
    files: list[tuple[str, int]] = field(default_factory=list)
    report: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, Path] = field(default_factory=dict)  # relative path -> file read (a symlink's target)
    links: dict[str, str] = field(default_factory=dict)  # relative path of a followed symlink -> its target's
    refused: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason): links never followed

    @property
    def paths(self) -> list[str]:
        """Relative paths of the uploaded files."""
        return [path for path, _ in self.files]


def published(relative: str) -> bool:
    """Whether a dataset folder's file (path relative to the folder) is one a push uploads."""
    return any(matches(relative, pattern) for pattern in PUBLISHED_FILES)


def check_push(config: PushConfig, api: HfApi | None = None) -> HfApi | None:
    """Before building: None when nothing is pushed or for a dry run; otherwise an ``HfApi`` whose token may
    write to ``config.push_to_hub``. Raises ``PublishError`` with one line saying what to do."""
    if config.dry_run and not config.push_to_hub:
        raise PublishError("--dry-run needs --push-to-hub REPO_ID (the repo the dry run plans a push to)")
    if not config.push_to_hub:
        return None
    if config.dry_run:
        check_repo_id(config.push_to_hub, "--push-to-hub")
        return None
    return check_write_access(config.push_to_hub, "--push-to-hub", api, config.token)


def relative_report(report: Any, roots: Mapping[str, Path]) -> Any:
    """``report`` with each local root replaced by its label (``dota/images/a.png``, not ``/data/dota/images/
    a.png``); ``PublishError`` naming the key when an absolute path outside every root is left."""
    # A root as given and resolved; a bare relative name ("DOTA") only where a path follows it ("DOTA/a.png").
    replacements = sorted({(str(Path(path).resolve()), label, r"(?=[/#:\s'\"]|$)") for label, path in roots.items()}
                          | {(str(path), label, r"(?=[/#:\s'\"]|$)" if "/" in str(path) else "(?=/)")
                             for label, path in roots.items()}, key=lambda entry: -len(entry[0]))

    def clean(value: Any, where: str) -> Any:
        if isinstance(value, dict):
            return {key: clean(item, f"{where}.{key}") for key, item in value.items()}
        if isinstance(value, list):
            return [clean(item, f"{where}[{index}]") for index, item in enumerate(value)]
        if not isinstance(value, str):
            return value
        for path, label, after in replacements:
            value = re.sub(rf"(?<![\w.]){re.escape(path)}{after}", label, value)
        leak = _ABSOLUTE.search(value)
        if leak:
            raise PublishError(f"{REPORT_NAME} {where}: local path {leak.group(1)!r} outside the --source roots; "
                               "it would be published")
        return value

    return clean(report, "report")


def plan_push(folder: Path, repo_id: str, roots: Mapping[str, Path]) -> DatasetUpload:
    """The files of ``folder`` a push uploads (``PUBLISHED_FILES``), its card metadata and relativised report."""
    folder = Path(folder)
    upload = DatasetUpload(folder=folder, repo_id=repo_id)
    files, upload.refused, upload.links = walk_folder(folder, published)
    for relative, source in files:
        if published(relative):
            upload.files.append((relative, source.stat().st_size))
            upload.sources[relative] = source
    if "README.md" not in upload.sources:
        raise PublishError(f"{folder}: no README.md card; not a dataset folder built by these builders")
    upload.metadata = metadata_load(upload.sources["README.md"]) or {}
    if REPORT_NAME in upload.sources:
        report = relative_report(json.loads(upload.sources[REPORT_NAME].read_text(encoding="utf-8")),
                                 {".": folder, **roots})
        upload.report = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
        upload.files = [(path, len(upload.report.encode()) if path == REPORT_NAME else size)
                        for path, size in upload.files]
    return upload


def describe_push(upload: DatasetUpload, private: bool) -> str:
    """Human-readable listing of the files and card metadata a push uploads."""
    total = sum(size for _, size in upload.files)
    lines = [(f"{'private' if private else 'public'} dataset repo {upload.repo_id}: {len(upload.files)} files "
             f"({total / 1e6:.1f} MB) from {upload.folder}, deleting other data/*.parquet there:")]
    lines += [f"  {path:<50} {size:>14,} bytes" + (f"  (link -> {upload.links[path]})" if path in upload.links else "")
              for path, size in upload.files]
    if upload.refused:
        lines.append(f"refused ({len(upload.refused)}):")
        lines += [f"  {path:<50} {reason}" for path, reason in upload.refused]
    lines.append("card metadata:")
    lines += [f"  {line}" for line in yaml.safe_dump(upload.metadata, sort_keys=False, allow_unicode=True).splitlines()]
    return "\n".join(lines)


def push_dataset(folder: Path, config: PushConfig, roots: Mapping[str, Path], api: HfApi | None,
                 commit_message: str) -> DatasetUpload:
    """Upload ``folder`` to ``config.push_to_hub`` (``api`` from ``check_push``) or, for a dry run, log the plan."""
    upload = plan_push(folder, config.push_to_hub, roots)
    if config.dry_run:
        logger.info("dry run, nothing uploaded: %s", describe_push(upload, config.private))
        return upload
    if api is None:
        raise PublishError("push_dataset: call check_push before building (it checks the token)")
    files = {path: upload.report.encode() if path == REPORT_NAME else upload.sources[path] for path in upload.paths}
    commit_files(api, upload.repo_id, "dataset", files, options=config, commit_message=commit_message,
                 delete_patterns=DELETE_PATTERNS)
    logger.info("uploaded %d files to dataset repo %s", len(upload.files), upload.repo_id)
    return upload

