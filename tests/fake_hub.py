"""An in-memory stand-in for `huggingface_hub.HfApi`: the calls our pushes make, applied as the Hub applies them."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import CommitOperationAdd, CommitOperationDelete


class FakeHub:
    """Repos held in memory (`repos[repo_id][path] = bytes`); every call recorded in `calls` as (name, kwargs)."""

    def __init__(self, name: str = "me", orgs: tuple[tuple[str, str], ...] = (), role: str = "write") -> None:
        self.name, self.orgs, self.role = name, orgs, role
        self.calls: list[tuple[str, dict]] = []
        self.repos: dict[str, dict[str, bytes]] = {}

    def whoami(self) -> dict:
        self.calls.append(("whoami", {}))
        return {"name": self.name, "orgs": [{"name": org, "roleInOrg": role} for org, role in self.orgs],
                "auth": {"accessToken": {"role": self.role}}}

    def create_repo(self, **kwargs) -> None:
        self.calls.append(("create_repo", kwargs))
        self.repos.setdefault(kwargs["repo_id"], {})

    def list_repo_files(self, **kwargs) -> list[str]:
        self.calls.append(("list_repo_files", kwargs))
        return sorted(self.repos[kwargs["repo_id"]])

    def create_commit(self, **kwargs) -> None:
        self.calls.append(("create_commit", kwargs))
        files = self.repos[kwargs["repo_id"]]
        for operation in kwargs["operations"]:
            if isinstance(operation, CommitOperationDelete):
                del files[operation.path_in_repo]
            else:
                assert isinstance(operation, CommitOperationAdd)
                source = operation.path_or_fileobj
                files[operation.path_in_repo] = source if isinstance(source, bytes) else Path(source).read_bytes()

    def uploaded(self, index: int = -1) -> list[str]:
        """The paths added by the `index`-th commit."""
        commits = [kwargs for name, kwargs in self.calls if name == "create_commit"]
        return [op.path_in_repo for op in commits[index]["operations"] if isinstance(op, CommitOperationAdd)]
