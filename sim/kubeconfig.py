"""Kubeconfig files pointing at running simulators: one cluster/user/context per simulator,
plain http to 127.0.0.1 and no credentials, so kubectl and both Python clients use them as is."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml


def document(entries: Sequence[tuple[str, str]], current: str | None = None) -> dict[str, Any]:
    """A kubeconfig for (context name, server URL) pairs; the first is current by default."""
    if not entries:
        raise ValueError("a kubeconfig needs at least one simulator")
    names = [name for name, _ in entries]
    if len(set(names)) != len(names):
        raise ValueError(f"context names must differ, got {names}")
    if current is not None and current not in names:
        raise ValueError(f"current context {current!r} is none of {names}")
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": name, "cluster": {"server": url}} for name, url in entries],
        "users": [{"name": name, "user": {}} for name, _ in entries],
        "contexts": [
            {"name": name, "context": {"cluster": name, "user": name, "namespace": "default"}}
            for name, _ in entries
        ],
        "current-context": current or names[0],
    }


def write(path: Path, entries: Sequence[tuple[str, str]], current: str | None = None) -> Path:
    """Write atomically (readers never see half a file), mode 0600 like kubectl's own."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(document(entries, current), sort_keys=False)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
