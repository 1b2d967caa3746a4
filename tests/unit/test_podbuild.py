"""Pod building: golden pods, and the merge checked against the provider's own PodGenerator."""

from __future__ import annotations

import copy
import math
import os
from functools import reduce
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubequeue import naming
from kubequeue.dispatcher import podbuild
from kubequeue.errors import PodBuildError
from kubequeue.messages import TaskKey, TaskSpec
from kubequeue.pools import parse

POOLS = """\
pools:
  gpu:
    namespace: tasks
    image: apache/airflow:3.3.2
    nodeSelector: {kubequeue.io/pool: gpu}
    tolerations: [{key: gpu, operator: Exists, effect: NoSchedule}]
    resources: {requests: {cpu: 100m}}
queues: {gpu: gpu}
"""
QUEUED, EXPIRES, DISPATCHED = 1_764_000_000.0, 1_764_000_600.0, 1_764_000_000.25


def make_spec(**kw: Any) -> TaskSpec:
    data: dict[str, Any] = {
        "id": "3f2c7a9e-1b2d-4c5e-8f90-123456789abc",
        "key": TaskKey(
            dag_id="etl",
            task_id="load",
            run_id="manual__2026-11-25T10:00:00+00:00",
            try_number=2,
            map_index=3,
        ),
        "queue": "gpu",
        "command": [
            "python",
            "-m",
            "airflow.sdk.execution_time.execute_workload",
            "--json-string",
            "{}",
        ],
        "env": {"AIRFLOW__CORE__EXECUTOR": "kubequeue.executor.KubeQueueExecutor"},
        "queued_at": QUEUED,
        "expires_at": EXPIRES,
    }
    data.update(kw)
    return TaskSpec.model_validate(data)


def pool():  # type: ignore[no-untyped-def]
    return parse(POOLS).pools["gpu"]


GOLDEN = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": naming.pod_name("3f2c7a9e-1b2d-4c5e-8f90-123456789abc", "etl", "load"),
        "namespace": "tasks",
        "labels": {
            "dag_id": "etl",
            "task_id": "load",
            "run_id": naming.safe_label_value("manual__2026-11-25T10:00:00+00:00"),
            "try_number": "2",
            "map_index": "3",
            "app.kubernetes.io/managed-by": "kubequeue",
            "kubequeue.io/id": "3f2c7a9e-1b2d-4c5e-8f90-123456789abc",
            "kubequeue.io/queue": "gpu",
            "kubequeue.io/pool": "gpu",
        },
        "annotations": {
            "dag_id": "etl",
            "task_id": "load",
            "run_id": "manual__2026-11-25T10:00:00+00:00",
            "try_number": "2",
            "map_index": "3",
            "kubequeue.io/queued-at": "2025-11-24T16:00:00.000000Z",
            "kubequeue.io/dispatched-at": "2025-11-24T16:00:00.250000Z",
            "kubequeue.io/expires-at": "2025-11-24T16:10:00.000000Z",
            "kubequeue.io/task-key": '{"dag_id":"etl","task_id":"load","run_id":'
            '"manual__2026-11-25T10:00:00+00:00","try_number":2,"map_index":3}',
        },
    },
    "spec": {
        "restartPolicy": "Never",
        "nodeSelector": {"kubequeue.io/pool": "gpu"},
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "containers": [
            {
                "name": "base",
                "image": "apache/airflow:3.3.2",
                "resources": {"requests": {"cpu": "100m"}},
                "args": [
                    "python",
                    "-m",
                    "airflow.sdk.execution_time.execute_workload",
                    "--json-string",
                    "{}",
                ],
                "env": [
                    {
                        "name": "AIRFLOW__CORE__EXECUTOR",
                        "value": "kubequeue.executor.KubeQueueExecutor",
                    },
                    {"name": "AIRFLOW_IS_K8S_EXECUTOR_POD", "value": "True"},
                ],
            }
        ],
    },
}


def test_golden_pod_without_override() -> None:
    pod = podbuild.build_pod(make_spec(), pool(), dispatched_at=DISPATCHED)
    assert pod == GOLDEN
    assert len(pod["metadata"]["name"]) <= 63


def test_golden_pod_with_template_and_override(tmp_path: Path) -> None:
    tpl = tmp_path / "tpl.yaml"
    tpl.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  labels: {team: data}\n"
        "spec:\n  serviceAccountName: airflow-worker\n  containers:\n"
        "  - name: base\n    image: custom:1\n    env: [{name: FROM_TEMPLATE, value: '1'}]\n"
        "  - name: sidecar\n    image: busybox\n"
        "  volumes: [{name: logs, emptyDir: {}}]\n"
    )
    override = {
        "metadata": {"labels": {"team": "ml", "extra": "x"}, "annotations": {"a": "b"}},
        "spec": {
            "containers": [
                {
                    "name": "base",
                    "resources": {"limits": {"nvidia.com/gpu": 1}},
                    "env": [{"name": "FROM_OVERRIDE", "value": "2"}],
                }
            ],
            "volumes": [{"name": "data", "emptyDir": {}}],
            "nodeSelector": {"disk": "ssd"},
        },
    }
    spec = make_spec(pod_override=override, pod_template_file=str(tpl))
    pod = podbuild.build_pod(spec, pool(), dispatched_at=DISPATCHED)
    meta, pspec = pod["metadata"], pod["spec"]
    assert meta["labels"]["team"] == "ml" and meta["labels"]["extra"] == "x"
    assert meta["annotations"]["a"] == "b" and meta["name"] == GOLDEN["metadata"]["name"]
    assert pspec["serviceAccountName"] == "airflow-worker"
    # a whole field from a later layer replaces the earlier one (not a union)
    assert pspec["nodeSelector"] == {"disk": "ssd"}
    base, sidecar = pspec["containers"]
    # the pool image sits above the template, as KE's worker_container_repository does
    assert base["image"] == pool().image
    assert base["resources"] == {"limits": {"nvidia.com/gpu": 1}}  # override wins whole
    assert [e["name"] for e in base["env"]] == [
        "FROM_TEMPLATE",
        "AIRFLOW__CORE__EXECUTOR",
        "AIRFLOW_IS_K8S_EXECUTOR_POD",
        "FROM_OVERRIDE",
    ]
    assert base["args"] == spec.command
    assert sidecar == {"name": "sidecar", "image": "busybox"}
    assert [v["name"] for v in pspec["volumes"]] == ["logs", "data"]
    # inputs are not mutated (the template is cached, the spec frozen)
    assert spec.pod_override == override and "labels" not in override["spec"]


def test_override_cannot_take_kubequeue_fields() -> None:
    override = {
        "metadata": {"name": "mine", "labels": {"kubequeue.io/id": "other"}, "generateName": "x-"}
    }
    pod = podbuild.build_pod(make_spec(pod_override=override), pool(), dispatched_at=DISPATCHED)
    assert pod["metadata"]["name"] == GOLDEN["metadata"]["name"]
    assert pod["metadata"]["labels"]["kubequeue.io/id"] == make_spec().id
    assert "generateName" not in pod["metadata"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            {"metadata": {"namespace": "elsewhere"}},
            "pod_override sets namespace 'elsewhere', but pool 'gpu' runs its pods in 'tasks'",
        ),
        (
            {"spec": {"containers": [{"name": "base", "env": {"A": "1"}}]}},
            "`env` must be a list, got dict",
        ),
        ({"spec": "nope"}, "`spec` must be a mapping, got str"),
        ({"spec": {"containers": []}, "metadata": {}}, None),
        ({"spec": {"containers": ["x"]}}, "every container must be a mapping"),
    ],
)
def test_bad_overrides(override: dict, message: str | None) -> None:
    spec = make_spec(pod_override=override)
    if message is None:
        podbuild.build_pod(spec, pool(), dispatched_at=DISPATCHED)
        return
    with pytest.raises(PodBuildError) as e:
        podbuild.build_pod(spec, pool(), dispatched_at=DISPATCHED)
    assert message in str(e.value)


def test_missing_task_template_is_a_build_error() -> None:
    spec = make_spec(pod_template_file="/nonexistent/tpl.yaml")
    with pytest.raises(PodBuildError, match=r"cannot read pod template file /nonexistent/tpl\."):
        podbuild.build_pod(spec, pool(), dispatched_at=DISPATCHED)


# --- the same merge as the provider ----------------------------------------------------

CASES: list[list[dict[str, Any]]] = [
    [
        {
            "metadata": {"labels": {"a": "1"}, "finalizers": ["f1"]},
            "spec": {
                "containers": [{"name": "base", "image": "i", "env": [{"name": "A"}]}],
                "automountServiceAccountToken": True,
                "volumes": [{"name": "v1"}],
            },
        },
        {
            "metadata": {"name": "p", "labels": {"b": "2"}, "finalizers": ["f2"]},
            "spec": {
                "containers": [{"name": "base", "args": ["x"], "env": [{"name": "B"}]}],
                "automountServiceAccountToken": False,
            },
        },
        {
            "metadata": {"labels": {"a": "3"}},
            "spec": {
                "containers": [{"name": "base", "image": "j"}, {"name": "side", "image": "s"}],
                "volumes": [{"name": "v2"}],
                "priorityClassName": "high",
            },
        },
    ],
    [
        {
            "spec": {
                "initContainers": [
                    {"name": "init", "image": "a", "env": [{"name": "X"}]},
                    {"name": "keep", "image": "k"},
                ],
                "containers": [
                    {"name": "base", "ports": [{"containerPort": 1}]},
                    {"name": "two", "image": "t"},
                ],
            }
        },
        {
            "spec": {
                "initContainers": [
                    {"name": "init", "image": "b", "env": [{"name": "Y"}]},
                    {"name": "new", "image": "n"},
                ],
                "containers": [{"name": "base", "ports": [{"containerPort": 2}]}],
                "nodeSelector": {"x": "y"},
                "tolerations": [],
            }
        },
    ],
    [
        {
            "metadata": {"annotations": {"k": "v"}},
            "spec": {"containers": [{"name": "base"}], "hostNetwork": True},
        },
        {
            "spec": {
                "containers": [{"name": "base", "image": "x", "resources": {}}],
                "hostNetwork": False,
                "restartPolicy": "Never",
            }
        },
    ],
]


def _provider_merge(pods: list[dict[str, Any]]) -> dict[str, Any]:
    from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator

    models = [PodGenerator.deserialize_model_dict(copy.deepcopy(p)) for p in pods]
    return PodGenerator.serialize_pod(reduce(PodGenerator.reconcile_pods, models))


@pytest.mark.parametrize("pods", CASES)
def test_merge_matches_the_kubernetes_executor(pods: list[dict[str, Any]]) -> None:
    ours = reduce(podbuild.reconcile_pods, copy.deepcopy(pods))
    assert ours == _provider_merge(pods)


def _random_pod(rng: Any) -> dict[str, Any]:
    def maybe(value: Any) -> Any:
        return value if rng.random() < 0.5 else None

    def container(name: str) -> dict[str, Any]:
        c = {
            "name": name,
            "image": maybe(rng.choice(["a", "b", ""])),
            "env": maybe([{"name": rng.choice("XYZ"), "value": "1"}]),
            "ports": maybe([{"containerPort": rng.randint(1, 9)}]),
            "args": maybe(["run"]),
            "workingDir": maybe(rng.choice(["/w", ""])),
        }
        return {k: v for k, v in c.items() if v is not None}

    names = rng.sample(["base", "side", "other"], rng.randint(0, 3))
    spec = {
        "containers": [container(n) for n in names],
        "initContainers": maybe([container(rng.choice(["i1", "i2"]))]),
        "volumes": maybe([{"name": rng.choice(["v1", "v2"])}]),
        "nodeSelector": maybe({rng.choice("ab"): "1"}),
        "hostNetwork": maybe(rng.random() < 0.5),
        "priority": maybe(rng.randint(0, 2)),
    }
    meta = {
        "labels": maybe({rng.choice("ab"): rng.choice("xy")}),
        "annotations": maybe({rng.choice("cd"): "1"}),
        "name": maybe(rng.choice(["n1", "n2"])),
    }
    pod = {
        "metadata": {k: v for k, v in meta.items() if v is not None},
        "spec": {k: v for k, v in spec.items() if v is not None},
    }
    return pod


def test_merge_matches_the_kubernetes_executor_on_random_pods() -> None:
    import random

    rng = random.Random(20261125)
    for _ in range(150):
        pods = [_random_pod(rng) for _ in range(rng.randint(2, 4))]
        for p in pods:  # the provider needs a container list to merge positionally
            p["spec"].setdefault("containers", [])
        ours = reduce(podbuild.reconcile_pods, copy.deepcopy(pods))
        assert ours == _provider_merge(pods), pods


# --- the cached pool ⊕ template layer --------------------------------------------------


def _reference_build(spec: TaskSpec, p: Any, dispatched_at: float) -> dict[str, Any]:
    """build_pod as it was before the bottom layers were cached: every layer deep-copied,
    merged bottom to top."""
    name = naming.pod_name(spec.id, spec.key.dag_id, spec.key.task_id)
    path = spec.pod_template_file or p.pod_template_file
    template = yaml.safe_load(Path(path).read_text()) if path else None
    layers = [podbuild.pool_layer(p), template, podbuild.task_layer(spec, p, name)]
    layers.append(spec.pod_override)
    merged = reduce(podbuild.reconcile_pods, copy.deepcopy([x for x in layers if x is not None]))
    return podbuild._stamp(merged, spec, p, name, dispatched_at)


def _containers(value: Any) -> list[Any]:
    """Every dict and list inside `value`."""
    if isinstance(value, dict):
        return [value, *(c for v in value.values() for c in _containers(v))]
    if isinstance(value, list):
        return [value, *(c for v in value for c in _containers(v))]
    return []


def test_random_templates_and_overrides_build_what_the_uncached_merge_built(
    tmp_path: Path,
) -> None:
    import random

    rng = random.Random(5)
    p = pool()
    for i in range(60):
        template = tmp_path / f"tpl-{i % 3}.yaml"
        template.write_text(yaml.safe_dump(_random_pod(rng)))
        os.utime(template, ns=(i * 10**9, i * 10**9))  # a new version for the cache
        override = _random_pod(rng) if rng.random() < 0.7 else None
        spec = make_spec(pod_template_file=str(template), pod_override=override)
        for _ in range(2):  # built from the cache the second time
            pod = podbuild.build_pod(spec, p, dispatched_at=DISPATCHED + i)
            assert pod == _reference_build(spec, p, DISPATCHED + i), (i, override)


def test_pods_built_in_a_row_share_nothing(tmp_path: Path) -> None:
    """Changing one built pod in place changes neither the next pods nor the cached base,
    and one task's fields never reach another's pod."""
    tpl = tmp_path / "tpl.yaml"
    tpl.write_text(
        "metadata: {labels: {team: data}, annotations: {note: x}}\n"
        "spec:\n  containers:\n  - name: base\n    env: [{name: T, value: '1'}]\n"
        "    resources: {limits: {cpu: '1'}}\n  volumes: [{name: v, emptyDir: {}}]\n"
    )
    config = POOLS.replace("namespace: tasks", f"namespace: tasks\n    podTemplateFile: {tpl}")
    p = parse(config).pools["gpu"]
    override = {"metadata": {"labels": {"only": "first"}}, "spec": {"hostNetwork": True}}
    first_spec = make_spec(pod_override=override, env={"FIRST": "1"})
    second_spec = make_spec(id="second-id", env={"SECOND": "2"})
    expected_second = _reference_build(second_spec, p, DISPATCHED)
    base_before = copy.deepcopy(podbuild.base_layer(p, str(tpl)))

    first = podbuild.build_pod(first_spec, p, dispatched_at=DISPATCHED)
    shared = {id(c) for c in _containers(podbuild.base_layer(p, str(tpl)))}
    shared |= {id(c) for c in _containers(override)}
    assert not shared & {id(c) for c in _containers(first)}
    for c in _containers(first):  # vandalize every dict and list of the first pod
        c.clear()
    second = podbuild.build_pod(second_spec, p, dispatched_at=DISPATCHED)

    assert second == expected_second
    assert "only" not in second["metadata"]["labels"] and "hostNetwork" not in second["spec"]
    assert [e["name"] for e in second["spec"]["containers"][0]["env"]] == [
        "T",
        "SECOND",
        "AIRFLOW_IS_K8S_EXECUTOR_POD",
    ]
    assert podbuild.base_layer(p, str(tpl)) == base_before
    assert first_spec.pod_override == {
        "metadata": {"labels": {"only": "first"}},
        "spec": {"hostNetwork": True},
    }


def test_a_changed_template_file_is_read_again(tmp_path: Path) -> None:
    tpl = tmp_path / "tpl.yaml"
    tpl.write_text("spec:\n  serviceAccountName: one\n  containers: [{name: base}]\n")
    os.utime(tpl, ns=(10**9, 10**9))
    spec = make_spec(pod_template_file=str(tpl))
    pod = podbuild.build_pod(spec, pool(), dispatched_at=DISPATCHED)
    assert pod["spec"]["serviceAccountName"] == "one"
    assert podbuild.build_pod(spec, pool(), dispatched_at=DISPATCHED) == pod

    tpl.write_text("spec:\n  serviceAccountName: two\n  containers: [{name: base}]\n")
    os.utime(tpl, ns=(2 * 10**9, 2 * 10**9))
    pod = podbuild.build_pod(spec, pool(), dispatched_at=DISPATCHED)
    assert pod["spec"]["serviceAccountName"] == "two"

    tpl.unlink()
    with pytest.raises(PodBuildError, match="cannot read pod template file"):
        podbuild.build_pod(spec, pool(), dispatched_at=DISPATCHED)


def test_json_copy_copies_every_dict_and_list() -> None:
    value = {"a": [1, {"b": [None, True, 1.5, "s"]}], "c": {}, "d": (1, 2)}
    copied = podbuild.json_copy(value)
    assert copied == value
    assert not {id(c) for c in _containers(value)} & {id(c) for c in _containers(copied)}


def test_rfc3339_is_what_datetime_strftime_gives() -> None:
    import random
    from datetime import UTC, datetime

    def reference(ts: float) -> str:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    rng = random.Random(1)
    values = [0.0, 1.0, 0.5e-6, 1.5e-6, 2.5e-6, 0.9999995, 0.9999994999, 59.9999996]
    values += [1_764_000_000.0, 1_764_000_599.9999996, 253_402_300_799.0, 951_782_400.5]
    values += [rng.uniform(0, 4e9) for _ in range(5_000)]
    # Half-microsecond ties and their neighbours: datetime rounds half to even.
    for _ in range(5_000):
        ts = rng.randrange(10**9, 2 * 10**9) + rng.randrange(2 * 10**6 + 1) / 2e6
        values += [ts, math.nextafter(ts, 0.0), math.nextafter(ts, math.inf)]
    for ts in values:
        assert podbuild.rfc3339(ts) == reference(ts), repr(ts)
    # Outside 1970..9999 it is datetime's own answer, errors included.
    assert podbuild.rfc3339(-1.25) == reference(-1.25)
    with pytest.raises((ValueError, OverflowError, OSError)):
        podbuild.rfc3339(1e20)
