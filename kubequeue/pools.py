"""The pools file: which node pool (namespace, cluster context, node selector, image, limits)
each Airflow queue's tasks run on.

Validated with pydantic; every error names the file and the line it comes from, found by
walking the YAML node tree (each node keeps its source mark) along the error's location:

    pools.yaml:7: pools.gpu.maxInFlight: Input should be greater than or equal to 1

A task naming a queue the file does not map is not a crash: `PoolsConfig.pool_for` raises
UnknownQueueError and the caller publishes a FAILED event with reason UnknownQueue.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kubequeue.errors import ConfigError, UnknownQueueError

_DNS_LABEL = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
# Airflow queue names become part of a Redis key and a metric label value.
_QUEUE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"


class Pool(BaseModel):
    """One node pool. Field names are the YAML's (camelCase, like the Kubernetes API);
    option names and meanings follow the KubernetesExecutor's where they overlap."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    name: str = Field(pattern=_DNS_LABEL)  # the key under `pools:`, filled in by the loader
    namespace: str = Field(default="default", pattern=_DNS_LABEL)
    # A context in KUBEQUEUE_KUBECONFIG (a queue may target another cluster); None = the
    # kubeconfig's current context, or the in-cluster service account without a kubeconfig.
    context: str | None = None
    image: str | None = None
    node_selector: dict[str, str] = Field(default_factory=dict, alias="nodeSelector")
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    affinity: dict[str, Any] | None = None
    resources: dict[str, dict[str, str | int | float]] | None = None
    # A pod YAML merged over the pool's fields and under the task's pod_override (a task's
    # own executor_config pod_template_file replaces it, as with the KubernetesExecutor).
    pod_template_file: str | None = Field(default=None, alias="podTemplateFile")
    # Pods of this pool not yet terminal, across all dispatcher replicas; None = no cap.
    max_in_flight: int | None = Field(default=200, ge=1, alias="maxInFlight")
    default_priority: int = Field(default=0, alias="defaultPriority")
    # Fail fast: a pod Pending this long because it is Unschedulable or cannot pull its
    # image ends the task as failed (the watcher enforces it).
    startup_timeout: float = Field(default=300.0, gt=0, alias="startupTimeout")
    delete_worker_pods: bool = Field(default=True, alias="deleteWorkerPods")
    delete_worker_pods_on_failure: bool = Field(default=False, alias="deleteWorkerPodsOnFailure")

    @model_validator(mode="after")
    def _has_image(self) -> Pool:
        if not self.image and not self.pod_template_file:
            raise ValueError("set `image` or `podTemplateFile` (the task container's image)")
        return self


class PoolsConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    pools: dict[str, Pool] = Field(min_length=1)
    # Airflow queue -> pool name.
    queues: dict[str, str] = Field(min_length=1)
    source: str = "<string>"

    @model_validator(mode="before")
    @classmethod
    def _name_pools(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("pools"), dict):
            pools = {
                k: ({**v, "name": k} if isinstance(v, dict) else v)
                for k, v in data["pools"].items()
            }
            data = {**data, "pools": pools}
        return data

    @model_validator(mode="after")
    def _check_queues(self) -> PoolsConfig:
        for queue, pool in self.queues.items():
            if not re.match(_QUEUE, queue):
                raise _LocatedError(("queues", queue), f"queue name {queue!r} is invalid")
            if pool not in self.pools:
                known = ", ".join(sorted(self.pools))
                raise _LocatedError(
                    ("queues", queue), f"queue {queue!r} maps to unknown pool {pool!r} ({known})"
                )
        return self

    def pool_for(self, queue: str) -> Pool:
        """The pool a queue's tasks run on; UnknownQueueError says which queues exist."""
        try:
            return self.pools[self.queues[queue]]
        except KeyError:
            known = ", ".join(sorted(self.queues))
            raise UnknownQueueError(
                f"queue {queue!r} is not in the pools file {self.source} (known queues: {known})"
            ) from None

    def queues_of(self, pool: str) -> list[str]:
        return [q for q, p in self.queues.items() if p == pool]


class _LocatedError(ValueError):
    """A cross-field error that knows which YAML path it belongs to."""

    def __init__(self, loc: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


def load(path: str | os.PathLike[str]) -> PoolsConfig:
    """Read and validate a pools file; ConfigError names the file and line of each problem."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read pools file {p}: {e.strerror or e}") from e
    return parse(text, source=str(p), base_dir=p.parent)


def parse(text: str, source: str = "<string>", base_dir: Path | None = None) -> PoolsConfig:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError(f"{source}: the pools file is empty")
        lines = dict(_walk(node, (), source))
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{source}{line}: not valid YAML: {e.problem or e}") from e
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise ConfigError(f"{source}:1: the pools file must be a mapping with `pools` and `queues`")
    try:
        config = PoolsConfig.model_validate({**data, "source": source})
    except ValidationError as e:
        raise ConfigError(_describe(e, lines, source)) from None
    return _resolve_templates(config, lines, source, base_dir)


def _walk(node: yaml.Node, path: tuple[str, ...], source: str) -> Iterator[tuple[Any, int]]:
    """(path, 1-based line) of every node; mapping keys are checked for duplicates, which
    PyYAML would otherwise silently let the last one win."""
    yield path, node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(
                    f"{source}:{line}: duplicate key {key!r} ({'.'.join(path) or 'top level'}; "
                    f"first at line {seen[key]})"
                )
            seen[key] = line
            yield (*path, key), line
            children = _walk(value_node, (*path, key), source)
            yield from ((p, n) for p, n in children if len(p) > len(path) + 1)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _walk(item, (*path, str(i)), source)


def _line_of(loc: tuple[Any, ...], lines: dict[tuple[str, ...], int]) -> int:
    """The line of the deepest YAML node on the error's path (a missing field points at its
    parent mapping)."""
    path = tuple(str(p) for p in loc)
    while path and path not in lines:
        path = path[:-1]
    return lines.get(path, 1)


def _describe(e: ValidationError, lines: dict[tuple[str, ...], int], source: str) -> str:
    problems = []
    for err in e.errors():
        ctx_error = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_error, _LocatedError):
            loc: tuple[Any, ...] = ctx_error.loc
            msg = str(ctx_error)
        else:
            loc = tuple(p for p in err["loc"] if p not in ("function-after", "function-before"))
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = f"unknown field {loc[-1]!r}"
            elif err["type"] == "string_pattern_mismatch":
                msg = (
                    f"{err['input']!r} is not a valid Kubernetes name (lowercase letters, "
                    "digits and '-', at most 63 characters)"
                )
        where = ".".join(str(p) for p in loc) or "top level"
        problems.append((_line_of(loc, lines), f"{where}: {msg}"))
    problems.sort()
    body = "\n".join(f"{source}:{line}: {msg}" for line, msg in problems[:20])
    return f"invalid pools file {source}:\n{body}"


def _resolve_templates(
    config: PoolsConfig, lines: dict[tuple[str, ...], int], source: str, base_dir: Path | None
) -> PoolsConfig:
    """Make template paths absolute (relative ones are relative to the pools file) and check
    that each one is a readable pod YAML now, not at the first task."""
    pools = {}
    for name, pool in config.pools.items():
        if pool.pod_template_file:
            path = Path(pool.pod_template_file)
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            try:
                read_pod_template(str(path))
            except ConfigError as err:
                line = _line_of(("pools", name, "podTemplateFile"), lines)
                raise ConfigError(f"{source}:{line}: pools.{name}.podTemplateFile: {err}") from None
            pool = pool.model_copy(update={"pod_template_file": str(path)})
        pools[name] = pool
    return config.model_copy(update={"pools": pools})


def read_pod_template(path: str) -> dict[str, Any]:
    """A pod template file as a dict (the API's JSON shape). Cached per (path, mtime): the
    KubernetesExecutor re-reads and re-parses it for every pod."""
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError as e:
        raise ConfigError(f"cannot read pod template file {path}: {e.strerror or e}") from e
    return _read_template(path, mtime)


@lru_cache(maxsize=64)
def _read_template(path: str, mtime_ns: int) -> dict[str, Any]:
    try:
        with open(path) as f:
            pod = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f"cannot read pod template file {path}: {e.strerror or e}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"pod template file {path} is not valid YAML: {e}") from e
    if not isinstance(pod, dict) or pod.get("kind", "Pod") != "Pod":
        raise ConfigError(f"pod template file {path} must be one Pod object (kind: Pod)")
    if not isinstance(pod.get("spec", {}), dict):
        raise ConfigError(f"pod template file {path}: `spec` must be a mapping")
    return pod
