"""Build a task's pod: pool ⊕ pod template file ⊕ task ⊕ the task's pod_override.

The merge is the KubernetesExecutor's (`PodGenerator.reconcile_pods` and friends in the
cncf-kubernetes provider), re-done on plain dicts in the API's JSON shape, so a DAG's
`executor_config={"pod_override": ...}` means exactly what it meant there:
- metadata: labels and annotations are unions (the later layer wins per key); finalizers,
  ownerReferences, managedFields are replaced whole (the provider means to concatenate
  them but discards the result; we keep what it does, not what it meant);
- spec: containers are merged by POSITION (the first with the first, ...); per container
  volumeMounts, env, envFrom, ports, volumeDevices are concatenated (earlier layer first);
  initContainers are merged by name, volumes concatenated;
- every other field: the later layer's value wins unless it is empty ("falsy"), in which case
  the earlier one stays. Like the provider, an override cannot turn a field off by setting it
  to false, 0, "" or [] (e.g. `automountServiceAccountToken: false` over a template's true).
Then kubequeue's own parts are set last, so no override can break them: the deterministic
name, the pool's namespace, and the labels/annotations the watcher and metrics rely on.

The two bottom layers are the same for every pod of a pool and template file: they are
merged once per (pool, template file version) by `base_layer`, and each pod merges its task
layer and override over a copy of that.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from kubequeue import naming
from kubequeue.errors import ConfigError, PodBuildError
from kubequeue.messages import TaskSpec
from kubequeue.pools import Pool, read_pod_template

Obj = dict[str, Any]
CONTAINER = "base"
K8S_EXECUTOR_ENV = {"name": "AIRFLOW_IS_K8S_EXECUTOR_POD", "value": "True"}
_CONTAINER_LISTS = ("volumeMounts", "env", "envFrom", "ports", "volumeDevices")


# --- the provider's merge rules, on dicts ---------------------------------------------


def merge_objects(base: Any, client: Any) -> Any:
    """An object merge: the client's non-empty fields win, the base fills the empty ones."""
    if not base:
        return client
    if not client:
        return base
    out = dict(client)
    for key, value in base.items():
        if not out.get(key) and value is not None:
            out[key] = value
    return out


def merge_maps(base: Any, client: Any) -> Any:
    """A map merge (labels, annotations): the union, the client winning per key."""
    if not base:
        return client
    if not client:
        return base
    return {**base, **client}


def extend_field(base: Obj | None, client: Obj, field: str) -> Obj:
    """client with `field` = base's list + client's list."""
    base_list = (base or {}).get(field)
    client_list = client.get(field)
    for value in (base_list, client_list):
        if value is not None and not isinstance(value, list):
            raise PodBuildError(f"`{field}` must be a list, got {type(value).__name__}")
    if not base_list:
        return client
    out = dict(client)
    out[field] = list(base_list) + list(client_list or [])
    return out


def reconcile_pods(base: Obj | None, client: Obj | None) -> Obj | None:
    if client is None:
        return base
    if base is None:
        return client
    out = dict(client)
    _set(out, "spec", reconcile_specs(_obj(base, "spec"), _obj(client, "spec")))
    _set(out, "metadata", reconcile_metadata(_obj(base, "metadata"), _obj(client, "metadata")))
    merged: Obj = merge_objects(base, out)
    return merged


def reconcile_metadata(base: Obj | None, client: Obj | None) -> Obj | None:
    if not client:
        return base
    if not base:
        return client
    out = dict(client)
    _set(out, "labels", merge_maps(base.get("labels"), client.get("labels")))
    _set(out, "annotations", merge_maps(base.get("annotations"), client.get("annotations")))
    for field in ("managedFields", "finalizers", "ownerReferences"):
        # The provider computes the concatenation and drops the result (its return value
        # is unused), so only the type check has an effect: the later list replaces.
        extend_field(base, out, field)
    merged: Obj = merge_objects(base, out)
    return merged


def reconcile_specs(base: Obj | None, client: Obj | None) -> Obj | None:
    if not client:
        return base
    if not base:
        return client
    out = dict(client)
    _set(out, "containers", reconcile_containers(base.get("containers"), client.get("containers")))
    out = extend_field(base, out, "initContainers")
    if base.get("initContainers") and client.get("initContainers"):
        out["initContainers"] = reconcile_init_containers(
            base["initContainers"], client["initContainers"]
        )
    out = extend_field(base, out, "volumes")
    merged: Obj = merge_objects(base, out)
    return merged


def _merge_container(base: Obj, client: Obj) -> Obj:
    if not isinstance(base, dict) or not isinstance(client, dict):
        raise PodBuildError("every container must be a mapping")
    for field in _CONTAINER_LISTS:
        client = extend_field(base, client, field)
    merged: Obj = merge_objects(base, client)
    return merged


def reconcile_containers(base: list[Obj] | None, client: list[Obj] | None) -> list[Obj] | None:
    """By position, as the provider does (its recursion, written as a loop)."""
    if not base:
        return client
    if not client:
        return base
    if not isinstance(base, list) or not isinstance(client, list):
        raise PodBuildError("`containers` must be a list")
    merged = [_merge_container(b, c) for b, c in zip(base, client, strict=False)]
    longer = base if len(base) > len(client) else client
    return merged + longer[len(merged) :]


def reconcile_init_containers(base: list[Obj], client: list[Obj]) -> list[Obj]:
    """By name: same-named ones merge, the others are kept (base first, then new client)."""
    by_name = {c.get("name"): c for c in client}
    merged, matched = [], set()
    for b in base:
        name = b.get("name")
        if name in by_name:
            merged.append(_merge_container(b, by_name[name]))
            matched.add(name)
        else:
            merged.append(b)
    return merged + [c for c in client if c.get("name") not in matched]


def _obj(parent: Obj, field: str) -> Obj | None:
    value = parent.get(field)
    if value is not None and not isinstance(value, dict):
        raise PodBuildError(f"`{field}` must be a mapping, got {type(value).__name__}")
    return value


def _set(obj: Obj, field: str, value: Any) -> None:
    if value is None:
        obj.pop(field, None)
    else:
        obj[field] = value


# --- kubequeue's layers -------------------------------------------------------------------


# rfc3339 below builds its text by hand for timestamps from 1970 up to this (the first second
# of year 10000); others (negative, NaN, out of range) take datetime's path, errors included.
_RFC3339_FAST_BELOW = 253_402_300_800


def rfc3339(ts: float) -> str:
    """`2026-11-25T10:00:00.123456Z`: exactly what
    `datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")` gives (microseconds
    rounded half to even, as datetime rounds them), at about a third of its cost."""
    if not 0 <= ts < _RFC3339_FAST_BELOW:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    fraction, whole = math.modf(ts)
    micros = round(fraction * 1e6)
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    t = time.gmtime(int(whole))
    return (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"
        f"T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{micros:06d}Z"
    )


def pool_layer(pool: Pool) -> Obj:
    """What the pools file says about every pod of the pool (the bottom layer). The pool's
    image is not here but in the task layer: see `task_layer`."""
    container: Obj = {"name": CONTAINER}
    if pool.resources:
        container["resources"] = copy.deepcopy(pool.resources)
    spec: Obj = {"restartPolicy": "Never", "containers": [container]}
    if pool.node_selector:
        spec["nodeSelector"] = dict(pool.node_selector)
    if pool.tolerations:
        spec["tolerations"] = copy.deepcopy(pool.tolerations)
    if pool.affinity:
        spec["affinity"] = copy.deepcopy(pool.affinity)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": spec}


def task_layer(spec: TaskSpec, pool: Pool, name: str) -> Obj:
    """The KubernetesExecutor's "dynamic pod": what this task runs, and its identity in the
    labels and annotations KE users' tooling knows (dag_id, task_id, run_id, try_number,
    map_index; label values made safe)."""
    key = spec.key
    ids = {"dag_id": key.dag_id, "task_id": key.task_id, "run_id": key.run_id}
    labels = {k: naming.safe_label_value(v) for k, v in ids.items()}
    annotations = {**ids, "try_number": str(key.try_number)}
    labels["try_number"] = str(key.try_number)
    if key.map_index >= 0:
        labels["map_index"] = annotations["map_index"] = str(key.map_index)
    env = [{"name": k, "value": v} for k, v in spec.env.items()]
    container: Obj = {
        "name": CONTAINER,
        "args": list(spec.command),
        "env": [*env, dict(K8S_EXECUTOR_ENV)],  # a copy: pods share nothing
    }
    # The pool's image sits above the pod template, as KE's worker_container_repository:tag
    # does in its dynamic pod: templates carry placeholder images (KE's own say
    # `placeholder-name-dont-delete`). A pod_override's image still wins over both.
    if pool.image:
        container["image"] = pool.image
    return {
        "metadata": {
            "name": name,
            "namespace": pool.namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {"containers": [container]},
    }


def _read_template(path: str | None) -> Obj | None:
    if not path:
        return None
    try:
        return read_pod_template(path)
    except ConfigError as e:
        raise PodBuildError(str(e)) from e


@dataclass(frozen=True)
class _Base:
    pool: Pool
    template: Obj | None  # the read_pod_template answer it was merged from
    pod: Obj  # pool layer ⊕ template: private, never handed out, never mutated


# (id(pool), template path) -> the merge of the two bottom layers, the same for every pod of
# the pair. An entry holds its pool, so the id cannot be reused while it is here.
_BASES: dict[tuple[int, str | None], _Base] = {}
_BASES_MAX = 64


def base_layer(pool: Pool, template_path: str | None) -> Obj:
    """pool_layer(pool) ⊕ the template, merged once per (pool, template file version).
    read_pod_template answers the same object until the file changes (it re-reads on a new
    mtime), so a changed template is a different object and the merge is redone."""
    template = _read_template(template_path)
    key = (id(pool), template_path)
    entry = _BASES.get(key)
    if entry is None or entry.template is not template:
        # A private deep copy: the result shares nothing with the pool or the template.
        pod = cast(Obj, copy.deepcopy(reconcile_pods(pool_layer(pool), template)))
        entry = _Base(pool, template, pod)
        if len(_BASES) >= _BASES_MAX:
            _BASES.clear()
        _BASES[key] = entry
    return entry.pod


def build_pod(spec: TaskSpec, pool: Pool, *, dispatched_at: float) -> Obj:
    """The pod to create for `spec` on `pool`; PodBuildError when it cannot be built."""
    name = naming.pod_name(spec.id, spec.key.dag_id, spec.key.task_id)
    override = spec.pod_override
    if override is not None:
        if not isinstance(override, dict):
            raise PodBuildError("pod_override must be a Pod object (a mapping)")
        asked = (override.get("metadata") or {}).get("namespace")
        if asked and asked != pool.namespace:
            raise PodBuildError(
                f"pod_override sets namespace {asked!r}, but pool {pool.name!r} runs its pods "
                f"in {pool.namespace!r}: choose the namespace with the task's queue"
            )
    # The task's own pod_template_file replaces the pool's, as executor_config's does the
    # configured one with the KubernetesExecutor.
    base = base_layer(pool, spec.pod_template_file or pool.pod_template_file)
    # The merge never mutates its inputs, but its result shares what it did not change with
    # them: merge copies of the cached base and of the spec's override, so that no change
    # to this pod can reach the cache, the spec or another pod. (The task layer is new.)
    pod = cast(Obj, reconcile_pods(json_copy(base), task_layer(spec, pool, name)))
    if override is not None:
        pod = cast(Obj, reconcile_pods(pod, json_copy(override)))
    return _stamp(pod, spec, pool, name, dispatched_at)


def json_copy(value: Any) -> Any:
    """A deep copy of JSON-shaped data (what YAML and JSON parsers give): dicts and lists are
    rebuilt, immutable leaves shared, anything else deep-copied. Several times cheaper than
    copy.deepcopy, which keeps a memo of every object it visits."""
    kind = type(value)
    if kind is dict:
        return {k: json_copy(v) for k, v in value.items()}
    if kind is list:
        return [json_copy(v) for v in value]
    if kind in _IMMUTABLE:
        return value
    return copy.deepcopy(value)


_IMMUTABLE = frozenset({str, int, float, bool, type(None)})


def _stamp(pod: Obj, spec: TaskSpec, pool: Pool, name: str, dispatched_at: float) -> Obj:
    """Set what no layer may change."""
    pod.pop("status", None)
    pod["apiVersion"], pod["kind"] = "v1", "Pod"
    meta = dict(pod.get("metadata") or {})
    meta.pop("generateName", None)
    meta["name"], meta["namespace"] = name, pool.namespace
    meta["labels"] = {
        **(meta.get("labels") or {}),
        naming.LABEL_MANAGED: naming.MANAGED_BY,
        naming.LABEL_ID: spec.id,
        naming.LABEL_QUEUE: naming.safe_label_value(spec.queue),
        naming.LABEL_POOL: pool.name,
    }
    meta["annotations"] = {
        **(meta.get("annotations") or {}),
        naming.ANN_QUEUED_AT: rfc3339(spec.queued_at),
        naming.ANN_DISPATCHED_AT: rfc3339(dispatched_at),
        naming.ANN_EXPIRES_AT: rfc3339(spec.expires_at),
        naming.ANN_KEY: spec.key.model_dump_json(),
    }
    pod["metadata"] = meta
    containers = (pod.get("spec") or {}).get("containers")
    if not containers or not all(isinstance(c, dict) and c.get("name") for c in containers):
        raise PodBuildError("the pod has no containers, or a container without a name")
    return pod
