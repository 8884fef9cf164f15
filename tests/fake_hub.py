"""An in-memory stand-in for `huggingface_hub.HfApi`: the calls our pushes make, applied as the Hub applies them."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import httpx2 as httpx
from huggingface_hub import CommitOperationAdd, CommitOperationDelete
from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

MAIN = "main"


class FakeHub:
    """Repos held in memory: `repos[repo_id][path] = bytes` is the main branch, `refs[(repo_id, ref)]` the other
    branches and pull requests (`refs/pr/N`); every call recorded in `calls` as (name, kwargs)."""

    def __init__(self, name: str = "me", orgs: tuple[tuple[str, str], ...] = (), role: str = "write",
                 token: str | None = None) -> None:
        self.name, self.orgs, self.role, self.token = name, orgs, role, token
        self.calls: list[tuple[str, dict]] = []
        self.repos: dict[str, dict[str, bytes]] = {}
        self.refs: dict[tuple[str, str], dict[str, bytes]] = {}

    def whoami(self) -> dict:
        self.calls.append(("whoami", {}))
        return {"name": self.name, "orgs": [{"name": org, "roleInOrg": role} for org, role in self.orgs],
                "auth": {"accessToken": {"role": self.role}}}

    def create_repo(self, **kwargs) -> None:
        self.calls.append(("create_repo", kwargs))
        self.repos.setdefault(kwargs["repo_id"], {})

    def create_branch(self, **kwargs) -> None:
        self.calls.append(("create_branch", kwargs))
        self.refs.setdefault((kwargs["repo_id"], kwargs["branch"]), dict(self.repos[kwargs["repo_id"]]))

    def _files(self, repo_id: str, revision: str | None, kind: str) -> dict[str, bytes]:
        request = httpx.Request("GET", f"https://huggingface.co/api/{kind}s/{repo_id}")
        if repo_id not in self.repos:
            raise RepositoryNotFoundError(f"{repo_id} not found", response=httpx.Response(404, request=request))
        if revision in (None, MAIN):
            return self.repos[repo_id]
        if (repo_id, revision) not in self.refs:
            raise RevisionNotFoundError(f"{revision} not found", response=httpx.Response(404, request=request))
        return self.refs[(repo_id, revision)]

    def list_repo_files(self, **kwargs) -> list[str]:
        self.calls.append(("list_repo_files", kwargs))
        return sorted(self._files(kwargs["repo_id"], kwargs.get("revision"), kwargs.get("repo_type") or "model"))

    def create_commit(self, **kwargs) -> SimpleNamespace:
        self.calls.append(("create_commit", kwargs))
        files = self._files(kwargs["repo_id"], kwargs.get("revision"), kwargs.get("repo_type") or "model")
        pr_url = None
        if kwargs.get("create_pr"):
            number = 1 + sum(1 for repo, ref in self.refs if repo == kwargs["repo_id"] and ref.startswith("refs/pr/"))
            files = self.refs[(kwargs["repo_id"], f"refs/pr/{number}")] = dict(files)
            pr_url = f"https://huggingface.co/{kwargs['repo_id']}/discussions/{number}"
        for operation in kwargs["operations"]:
            if isinstance(operation, CommitOperationDelete):
                del files[operation.path_in_repo]
            else:
                assert isinstance(operation, CommitOperationAdd)
                source = operation.path_or_fileobj
                files[operation.path_in_repo] = source if isinstance(source, bytes) else Path(source).read_bytes()
        return SimpleNamespace(pr_url=pr_url)

    def commits(self) -> list[dict]:
        """The keyword arguments of every `create_commit` call."""
        return [kwargs for name, kwargs in self.calls if name == "create_commit"]

    def uploaded(self, index: int = -1) -> list[str]:
        """The paths added by the `index`-th commit."""
        return [op.path_in_repo for op in self.commits()[index]["operations"] if isinstance(op, CommitOperationAdd)]

    def deleted(self, index: int = -1) -> list[str]:
        """The paths deleted by the `index`-th commit."""
        return [op.path_in_repo for op in self.commits()[index]["operations"] if isinstance(op, CommitOperationDelete)]
