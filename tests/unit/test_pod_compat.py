"""A DAG's `executor_config={"pod_override": k8s.V1Pod(...)}` builds the same pod with
kubequeue as with the KubernetesExecutor.

Both sides start from the same Airflow workload, the same pod template file (the provider's
own examples) and the same image, and end as the JSON the API receives:
- KubernetesExecutor: `PodGenerator.construct_pod(...)` called as its scheduler does
  (`_build_pod_request`), serialized with the kubernetes client;
- kubequeue: `specs.build` in the executor (override serialized there), then the
  dispatcher's `podbuild.build_pod` for a pool that names the image and the template.
Every difference between the two is listed in EXPECTED below with its reason; any other
difference fails the test.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from airflow.executors.workloads import BundleInfo, ExecuteTask, TaskInstanceDTO
from airflow.providers.cncf.kubernetes.kubernetes_helper_functions import create_unique_id
from airflow.providers.cncf.kubernetes.pod_generator import (
    PodGenerator,
    workload_to_command_args,
)
from kubernetes.client import ApiClient
from kubernetes.client import models as k8s

from kubequeue import naming
from kubequeue.dispatcher import podbuild
from kubequeue.executor import specs
from kubequeue.pools import parse

IMAGE = "registry.example.com/airflow:3.3.2"
NAMESPACE = "airflow-tasks"
EXECUTOR = "kubequeue.executor.KubeQueueExecutor"
API_URL = "http://airflow-api-server:8080/execution/"
RUN_ID = "scheduled__2026-11-25T10:00:00+00:00"
TEMPLATES = files("airflow.providers.cncf.kubernetes")
BASIC = str(TEMPLATES / "kubernetes_executor_templates" / "basic_template.yaml")
DAGS_IN_VOLUME = str(TEMPLATES / "pod_template_file_examples" / "dags_in_volume_template.yaml")

# path -> why kubequeue's pod differs there. Paths name dict keys; "~" marks a value that
# exists on one side only.
EXPECTED: dict[str, str] = {
    "metadata.name": "KE appends a random suffix; kubequeue derives the name from the "
    "queueing id, so a duplicated dispatch gets 409 AlreadyExists instead of a second pod",
    "metadata.labels.airflow-worker": "KE labels pods with its scheduler job id to find its "
    "own pods; kubequeue's watcher finds pods by kubequeue.io/* labels instead",
    "metadata.labels.kubernetes_executor": "KE's marker label; kubequeue marks its pods with "
    "app.kubernetes.io/managed-by=kubequeue",
    "metadata.labels.airflow_version": "KE-only label; the image tag carries the version",
    "metadata.labels.run_id": "both make the run id a safe label value, with different "
    "hashes (KE md5, kubequeue sha256); the run_id annotation is identical on both",
    "metadata.labels.app.kubernetes.io/managed-by": "kubequeue's marker (see above)",
    "metadata.labels.kubequeue.io/id": "the queueing id: events and adoption key on it",
    "metadata.labels.kubequeue.io/queue": "Airflow queue, a bounded metrics label",
    "metadata.labels.kubequeue.io/pool": "node pool, a bounded metrics label",
    "metadata.annotations.kubequeue.io/queued-at": "start-up latency is measured from it",
    "metadata.annotations.kubequeue.io/dispatched-at": "start-up latency phase boundary",
    "metadata.annotations.kubequeue.io/expires-at": "the workload token's expiry",
    "metadata.annotations.kubequeue.io/task-key": "the task key as JSON for the watcher",
}
# The task container's env: kubequeue adds these two (KE relies on the image's airflow.cfg
# for both); the pods need the scheduler's exact [core] executor string to re-parse the DAG.
ADDED_ENV = {
    "AIRFLOW__CORE__EXECUTOR": EXECUTOR,
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": API_URL,
}


def overrides() -> Iterator[Any]:
    """pod_overrides as KubernetesExecutor users write them (Airflow docs' examples)."""
    yield pytest.param(None, id="no-override")
    yield pytest.param(
        k8s.V1Pod(
            spec=k8s.V1PodSpec(
                containers=[
                    k8s.V1Container(
                        name="base",
                        volume_mounts=[k8s.V1VolumeMount(mount_path="/shared", name="shared")],
                    ),
                    k8s.V1Container(
                        name="sidecar",
                        image="ubuntu:24.04",
                        args=['echo "retrieved from mount" > /shared/test.txt'],
                        command=["bash", "-cx"],
                        volume_mounts=[k8s.V1VolumeMount(mount_path="/shared", name="shared")],
                    ),
                ],
                volumes=[k8s.V1Volume(name="shared", empty_dir=k8s.V1EmptyDirVolumeSource())],
            )
        ),
        id="sidecar-and-volume",
    )
    yield pytest.param(
        k8s.V1Pod(
            spec=k8s.V1PodSpec(
                containers=[
                    k8s.V1Container(
                        name="base",
                        resources=k8s.V1ResourceRequirements(
                            requests={"cpu": "500m", "memory": "1Gi"},
                            limits={"memory": "2Gi", "nvidia.com/gpu": "1"},
                        ),
                        env=[
                            k8s.V1EnvVar(name="MODEL", value="resnet"),
                            k8s.V1EnvVar(
                                name="TOKEN",
                                value_from=k8s.V1EnvVarSource(
                                    secret_key_ref=k8s.V1SecretKeySelector(name="s", key="t")
                                ),
                            ),
                        ],
                        env_from=[
                            k8s.V1EnvFromSource(
                                config_map_ref=k8s.V1ConfigMapEnvSource(name="settings")
                            )
                        ],
                    )
                ]
            )
        ),
        id="resources-env",
    )
    yield pytest.param(
        k8s.V1Pod(
            metadata=k8s.V1ObjectMeta(
                labels={"team": "ml", "mylabel": "overridden"},
                annotations={"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"},
            ),
            spec=k8s.V1PodSpec(
                containers=[k8s.V1Container(name="base", image="registry.example.com/ml:1.2")],
                node_selector={"kubequeue.io/pool": "gpu", "disktype": "ssd"},
                tolerations=[
                    k8s.V1Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")
                ],
                affinity=k8s.V1Affinity(
                    node_affinity=k8s.V1NodeAffinity(
                        required_during_scheduling_ignored_during_execution=k8s.V1NodeSelector(
                            node_selector_terms=[
                                k8s.V1NodeSelectorTerm(
                                    match_expressions=[
                                        k8s.V1NodeSelectorRequirement(
                                            key="zone", operator="In", values=["a", "b"]
                                        )
                                    ]
                                )
                            ]
                        )
                    )
                ),
            ),
        ),
        id="labels-scheduling-image",
    )
    yield pytest.param(
        k8s.V1Pod(
            spec=k8s.V1PodSpec(
                containers=[k8s.V1Container(name="base")],
                init_containers=[
                    k8s.V1Container(name="fetch", image="busybox", command=["sh", "-c", "true"])
                ],
                service_account_name="etl-runner",
                security_context=k8s.V1PodSecurityContext(run_as_user=1000, fs_group=1000),
                priority_class_name="batch-high",
                termination_grace_period_seconds=120,
            )
        ),
        id="init-container-security",
    )


def workload(executor_config: dict[str, Any]) -> ExecuteTask:
    ti = TaskInstanceDTO(
        id=uuid.uuid4(),
        dag_id="example_kubequeue",
        task_id="train",
        run_id=RUN_ID,
        try_number=2,
        map_index=4,
        dag_version_id=uuid.uuid4(),
        queue="default",
        pool_slots=1,
        priority_weight=3,
        external_executor_id=str(uuid.uuid4()),
        executor_config=executor_config,
    )
    return ExecuteTask(
        ti=ti,
        dag_rel_path=Path("example.py"),
        bundle_info=BundleInfo(name="dags-folder"),
        log_path="x.log",
        token="t",
    )


def ke_pod(w: ExecuteTask, override: k8s.V1Pod | None, template: str) -> dict[str, Any]:
    """The pod the KubernetesExecutor would send, built as its scheduler builds it."""
    ti = w.ti
    pod = PodGenerator.construct_pod(
        namespace=NAMESPACE,
        scheduler_job_id="42",
        pod_id=create_unique_id(ti.dag_id, ti.task_id),
        dag_id=ti.dag_id,
        task_id=ti.task_id,
        kube_image=IMAGE,
        try_number=ti.try_number,
        map_index=ti.map_index,
        date=None,
        run_id=ti.run_id,
        args=workload_to_command_args(w),
        pod_override_object=PodGenerator.from_obj(ti.executor_config),
        base_worker_pod=PodGenerator.deserialize_model_file(template),
    )
    out: dict[str, Any] = ApiClient().sanitize_for_serialization(pod)
    return out


def kubequeue_pod(w: ExecuteTask, template: str) -> dict[str, Any]:
    defaults = specs.SpecDefaults(
        core_executor=EXECUTOR, execution_api_url=API_URL, task_queued_timeout=600
    )
    spec = specs.build(w, str(w.ti.external_executor_id), defaults, now=1_764_064_800.0)
    # The TaskSpec crosses Redis as JSON: build from what a dispatcher would parse.
    spec = type(spec).parse(spec.to_json())
    pools = parse(
        f"pools:\n  default:\n    namespace: {NAMESPACE}\n    image: {IMAGE}\n"
        f"    podTemplateFile: {template}\nqueues: {{default: default}}\n"
    )
    return podbuild.build_pod(spec, pools.pools["default"], dispatched_at=1_764_064_801.0)


def differences(a: Any, b: Any, path: str = "") -> Iterator[str]:
    """Paths where `a` and `b` differ (dict keys joined by '.', list items by [i])."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            sub = f"{path}.{k}" if path else k
            if k not in a or k not in b:
                yield sub
            else:
                yield from differences(a[k], b[k], sub)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from differences(x, y, f"{path}[{i}]")
    elif a != b:
        yield path


def take_added_env(pod: dict[str, Any]) -> dict[str, str]:
    """Remove kubequeue's own entries (a template may set the same names earlier)."""
    base = pod["spec"]["containers"][0]
    ours = [e for e in base["env"] if e.get("value") == ADDED_ENV.get(e["name"], 0)]
    base["env"] = [e for e in base["env"] if e not in ours]
    return {e["name"]: e.get("value") for e in ours}


@pytest.mark.parametrize("template", [BASIC, DAGS_IN_VOLUME], ids=["basic", "dags-in-volume"])
@pytest.mark.parametrize("override", overrides())
def test_same_pod_as_the_kubernetes_executor(override: k8s.V1Pod | None, template: str) -> None:
    w = workload({"pod_override": override} if override is not None else {})
    ke = ke_pod(w, override, template)
    kq = kubequeue_pod(w, template)

    assert take_added_env(kq) == ADDED_ENV
    # The task's env sits after the template's, so Kubernetes (last one wins) gives the
    # container kubequeue's [core] executor even where the template sets another.
    names = [e["name"] for e in kq["spec"]["containers"][0]["env"]]
    assert names == [e["name"] for e in ke["spec"]["containers"][0]["env"]]

    found = set(differences(ke, kq))
    unexplained = found - set(EXPECTED)
    assert not unexplained, json.dumps(
        {p: [_at(ke, p), _at(kq, p)] for p in sorted(unexplained)}, indent=1, default=str
    )
    # The differences are confined to identity and bookkeeping: the task's command,
    # image, resources, volumes, env, scheduling constraints are the same.
    assert kq["spec"] == ke["spec"]
    assert kq["metadata"]["annotations"]["run_id"] == RUN_ID
    assert kq["metadata"]["labels"][naming.LABEL_ID] == w.ti.external_executor_id


def test_every_expected_difference_occurs() -> None:
    """EXPECTED must not list differences that no longer exist."""
    w = workload({})
    ke, kq = ke_pod(w, None, BASIC), kubequeue_pod(w, BASIC)
    take_added_env(kq)
    assert set(differences(ke, kq)) == set(EXPECTED)


@pytest.mark.parametrize("template", [BASIC, DAGS_IN_VOLUME], ids=["basic", "dags-in-volume"])
def test_pool_image_wins_over_template_image(template: str) -> None:
    """KE puts worker_container_repository:tag above the template (whose image is often a
    placeholder); the pool's image must do the same."""
    w = workload({})
    ke, kq = ke_pod(w, None, template), kubequeue_pod(w, template)
    assert ke["spec"]["containers"][0]["image"] == IMAGE
    assert kq["spec"]["containers"][0]["image"] == IMAGE


def test_executor_config_pod_template_file_replaces_the_pools() -> None:
    """executor_config={"pod_template_file": ...} wins over the pool's template, as it wins
    over [kubernetes_executor] pod_template_file with KE."""
    w = workload({"pod_template_file": DAGS_IN_VOLUME})
    ke = ke_pod(w, None, DAGS_IN_VOLUME)  # KE reads the task's template instead of its own
    kq = kubequeue_pod(w, BASIC)  # the pool names the basic one
    take_added_env(kq)
    assert set(differences(ke, kq)) <= set(EXPECTED)
    assert kq["spec"] == ke["spec"]
    assert {
        "name": "airflow-dags",
        "persistentVolumeClaim": {"claimName": "RELEASE-NAME-dags"},
    } in (kq["spec"]["volumes"])


def _at(obj: Any, path: str) -> Any:
    cur = obj
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return "~"
        cur = cur[part]
    return copy.deepcopy(cur)
