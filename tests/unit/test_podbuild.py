"""Pod building: golden pods, and the merge checked against the provider's own PodGenerator."""

from __future__ import annotations

import copy
from functools import reduce
from pathlib import Path
from typing import Any

import pytest

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
