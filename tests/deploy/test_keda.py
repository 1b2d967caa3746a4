"""KEDA scales the dispatchers on the right Redis lists: one redis trigger per Airflow queue
in the pools file, on the list RQ really uses for that queue, with metadata and auth
parameters KEDA's redis scaler knows (the CRD leaves them a free-form string map)."""

from __future__ import annotations

import json
import time

import fakeredis
import pytest
import rq

from kubequeue import pools, queues
from kubequeue.client import Client
from kubequeue.keys import Keys
from kubequeue.messages import TaskKey, TaskSpec
from tests.deploy.manifests import SCHEMAS, Obj, of_kind, one, render

KEDA_TARGETS = ("overlays/production", "overlays/remote-cluster")
REDIS_SCALER = json.loads((SCHEMAS / "keda-redis-scaler.json").read_text())


def rq_list_key(queue: str) -> str:
    """The Redis list RQ keeps the waiting jobs of an Airflow queue's RQ queue in."""
    return f"rq:queue:{Keys().rq_queue(queue)}"


def test_trigger_list_is_where_submitted_specs_wait() -> None:
    """What KEDA measures is what the client fills: submit specs, LLEN the trigger's list."""
    connection = fakeredis.FakeRedis()
    config = pools.parse("pools:\n  p: {image: img}\nqueues: {default: p}\n")
    now = time.time()
    specs = [
        TaskSpec(
            id=f"id-{i}",
            key=TaskKey(dag_id="d", task_id=f"t{i}", run_id="r", try_number=1),
            queue="default",
            command=["true"],
            queued_at=now,
            expires_at=now + 600,
        )
        for i in range(3)
    ]
    assert not Client(connection, Keys(), config).submit(specs)
    assert rq_list_key("default") == "rq:queue:kubequeue.default"
    assert queues.queue_key(Keys(), "default") == rq_list_key("default")
    assert rq.Queue(Keys().rq_queue("default"), connection=connection).key == rq_list_key("default")
    assert connection.type(rq_list_key("default")) == b"list"
    assert connection.llen(rq_list_key("default")) == 3


def _queues(objs: tuple[Obj, ...]) -> set[str]:
    (cm,) = [o for o in of_kind(objs, "ConfigMap") if "pools.yaml" in o["data"]]
    return set(pools.parse(cm["data"]["pools.yaml"]).queues)


@pytest.mark.parametrize("target", KEDA_TARGETS)
def test_one_trigger_per_queue(target: str) -> None:
    objs = render(target)
    so = one(objs, "ScaledObject", "kubequeue-dispatcher")
    lists = [t["metadata"]["listName"] for t in so["spec"]["triggers"]]
    assert sorted(lists) == sorted(rq_list_key(q) for q in _queues(objs))
    assert all(t["type"] == "redis" for t in so["spec"]["triggers"])


@pytest.mark.parametrize("target", KEDA_TARGETS)
def test_scaling_bounds_and_target(target: str) -> None:
    objs = render(target)
    so = one(objs, "ScaledObject", "kubequeue-dispatcher")["spec"]
    assert so["scaleTargetRef"]["name"] == "kubequeue-dispatcher"
    one(objs, "Deployment", "kubequeue-dispatcher")
    # never to zero: a cold dispatcher would add its own start-up to every task's
    assert 1 <= so["minReplicaCount"] <= so["maxReplicaCount"]
    assert so["cooldownPeriod"] > 0
    scale_down = so["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert scale_down["stabilizationWindowSeconds"] >= 60
    # KEDA's HPA owns the replica count; a `replicas` in the Deployment would fight it
    assert "replicas" not in one(objs, "Deployment", "kubequeue-dispatcher")["spec"]


@pytest.mark.parametrize("target", KEDA_TARGETS)
def test_trigger_metadata_is_what_the_redis_scaler_reads(target: str) -> None:
    objs = render(target)
    allowed = set(REDIS_SCALER["triggerMetadata"])
    allowed |= {f"{name}FromEnv" for name in REDIS_SCALER["resolvedEnv"]}
    auths = {a["metadata"]["name"]: a for a in of_kind(objs, "TriggerAuthentication")}
    for trigger in one(objs, "ScaledObject", "kubequeue-dispatcher")["spec"]["triggers"]:
        assert set(trigger["metadata"]) <= allowed, set(trigger["metadata"]) - allowed
        assert set(REDIS_SCALER["required"]) <= set(trigger["metadata"])
        assert int(trigger["metadata"]["listLength"]) > 0
        auth = auths[trigger["authenticationRef"]["name"]]
        params = {ref["parameter"] for ref in auth["spec"]["secretTargetRef"]}
        assert params <= set(REDIS_SCALER["authParams"]), params
        assert {"address", "addresses", "host", "hosts"} & (params | set(trigger["metadata"]))


def test_production_talks_tls_with_a_password() -> None:
    objs = render("overlays/production")
    auth = one(objs, "TriggerAuthentication", "kubequeue-redis")
    params = {ref["parameter"]: ref for ref in auth["spec"]["secretTargetRef"]}
    assert {"address", "password", "ca"} <= set(params)
    for trigger in one(objs, "ScaledObject", "kubequeue-dispatcher")["spec"]["triggers"]:
        assert trigger["metadata"]["enableTLS"] == "true"
