"""The dispatcher's per-job decisions (dispatcher/handle.py) with a fake Kubernetes API."""

from __future__ import annotations

import json
import time
import zlib
from typing import Any

import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from kubequeue import queues
from kubequeue.dispatcher.handle import Handler, Outcome
from kubequeue.messages import Reason, TaskKey, TaskSpec
from kubequeue.pools import parse

POOLS = parse("pools:\n  a: {image: img, namespace: tasks}\nqueues: {qa: a, qb: a}\n")


class FakeCore:
    """Answers create() from a script of outcomes (an exception or None)."""

    def __init__(self, *script: BaseException | None) -> None:
        self.script = list(script)
        self.created: list[dict[str, Any]] = []

    def create(self, namespace: str, body: dict[str, Any]) -> None:
        outcome = self.script.pop(0) if self.script else None
        if outcome is not None:
            raise outcome
        self.created.append(body)


def api_exc(status: int, reason: str, message: str, retry_after: str | None = None) -> Any:
    e = ApiException(status=status, reason=reason)
    e.body = json.dumps({"kind": "Status", "reason": reason, "message": message}).encode()
    e.headers = {"Retry-After": retry_after} if retry_after else {}
    return e


def handler(core: FakeCore, **kw: Any) -> Handler:
    h = Handler(POOLS, {"a": None}, backoffs=(0.001,), **kw)  # type: ignore[dict-item]
    h._pod_apis["a"] = core  # type: ignore[assignment]
    return h


def job(spec: TaskSpec | None = None, *, raw: str | None = None, revoked: bool = False,
        queue: str = "qa", job_id: str = "id-1") -> queues.Claimed:  # fmt: skip
    body = raw if raw is not None else (spec or make_spec()).to_json()
    payload = zlib.compress(json.dumps([queues.JOB_FUNC, None, [body], {}]).encode())
    return queues.Claimed(queue, job_id, f"{job_id}:w", payload, revoked)


def make_spec(**kw: Any) -> TaskSpec:
    now = time.time()
    data = {
        "id": "id-1",
        "key": TaskKey(dag_id="d", task_id="t", run_id="r", try_number=1),
        "queue": "qa",
        "command": ["true"],
        "queued_at": now,
        "expires_at": now + 600,
        **kw,
    }
    return TaskSpec.model_validate(data)


def test_created() -> None:
    core = FakeCore()
    result = handler(core).handle(job(), time.time())
    assert result.outcome is Outcome.CREATED and result.keeps_slot and result.event is None
    assert core.created[0]["metadata"]["namespace"] == "tasks"


def test_409_already_exists_is_done() -> None:
    core = FakeCore(api_exc(409, "AlreadyExists", 'pods "x" already exists'))
    result = handler(core).handle(job(), time.time())
    assert result.outcome is Outcome.EXISTS and result.keeps_slot and result.event is None


@pytest.mark.parametrize(
    ("error", "reason", "message"),
    [
        (api_exc(422, "Invalid", 'Pod "x" is invalid: spec.containers[0].image: Required'),
         Reason.INVALID,
         'the Kubernetes API rejected the pod (422 Invalid): Pod "x" is invalid: '
         "spec.containers[0].image: Required"),
        (api_exc(400, "BadRequest", "json: cannot unmarshal string"), Reason.INVALID,
         "the Kubernetes API rejected the pod (400 BadRequest): json: cannot unmarshal string"),
        (api_exc(403, "Forbidden", 'pods is forbidden: User "x" cannot create'),
         Reason.FORBIDDEN,
         "the Kubernetes API refused creating its pod in pool 'a' (403): pods is forbidden: "
         'User "x" cannot create'),
        (api_exc(404, "NotFound", 'namespaces "tasks" not found'), Reason.INVALID,
         'the Kubernetes API rejected the pod (404 NotFound): namespaces "tasks" not found'),
    ],
)  # fmt: skip
def test_permanent_api_errors_fail_with_the_api_message(
    error: Exception, reason: Reason, message: str
) -> None:
    core = FakeCore(error)
    result = handler(core).handle(job(), time.time())
    assert result.outcome is Outcome.FAILED and not result.keeps_slot
    assert result.event is not None
    assert (result.event.reason, result.event.message) == (reason, message)
    assert result.event.key == make_spec().key and result.event.pool == "a"


def test_throttling_and_5xx_are_retried_then_created() -> None:
    core = FakeCore(
        api_exc(429, "TooManyRequests", "slow down", retry_after="0"),
        api_exc(503, "ServiceUnavailable", "busy"),
        api_exc(500, "InternalError", "oops"),
    )
    result = handler(core).handle(job(), time.time())
    assert result.outcome is Outcome.CREATED and len(core.created) == 1


def test_retries_exhausted_give_the_job_back() -> None:
    refused = urllib3.exceptions.MaxRetryError(None, "/", "refused")  # type: ignore[arg-type]
    core = FakeCore(*[refused] * 1000)
    result = handler(core, retry_for=0.05).handle(job(), time.time())
    assert result.outcome is Outcome.RETRY and result.unreachable and result.event is None
    core = FakeCore(*[api_exc(503, "ServiceUnavailable", "busy")] * 1000)
    result = handler(core, retry_for=0.05).handle(job(), time.time())
    assert result.outcome is Outcome.RETRY and not result.unreachable


def test_stopping_gives_the_job_back_at_once() -> None:
    core = FakeCore(*[api_exc(503, "ServiceUnavailable", "busy")] * 1000)
    h = handler(core, retry_for=3600.0)
    h.stopping = lambda: True
    assert h.handle(job(), time.time()).outcome is Outcome.RETRY


@pytest.mark.parametrize(
    ("kw", "outcome", "reason", "message"),
    [
        ({"raw": "{"}, Outcome.FAILED, Reason.MALFORMED_SPEC, "TaskSpec is not valid JSON: "),
        ({"raw": '{"v": 9}'}, Outcome.FAILED, Reason.MALFORMED_SPEC,
         "TaskSpec has unknown version v=9; this kubequeue reads v=1"),
        ({"raw": '{"v": 1, "id": "id-1"}'}, Outcome.FAILED, Reason.MALFORMED_SPEC,
         "TaskSpec is invalid: key: Field required; queue: Field required; "),
        ({"job_id": "other"}, Outcome.FAILED, Reason.MALFORMED_SPEC,
         "RQ job other carries the TaskSpec of id-1"),
        ({"revoked": True}, Outcome.REVOKED, Reason.REVOKED, "revoked before its pod was created"),
        ({"spec": make_spec(queue="gpu")}, Outcome.FAILED, Reason.UNKNOWN_QUEUE,
         "queue 'gpu' is not in the pools file <string> (known queues: qa, qb)"),
        ({"spec": make_spec(queue="qb")}, Outcome.FAILED, Reason.MALFORMED_SPEC,
         "TaskSpec for queue 'qb' found in RQ queue of 'qa'"),
        ({"spec": make_spec(queued_at=1.0, expires_at=601.0)}, Outcome.EXPIRED, Reason.EXPIRED,
         "waited "),
        ({"spec": make_spec(pod_override={"spec": {"volumes": {"a": 1}}})}, Outcome.FAILED,
         Reason.INVALID, "pod could not be built: `volumes` must be a list, got dict"),
    ],
)  # fmt: skip
def test_specs_that_never_get_a_pod(
    kw: dict[str, Any], outcome: Outcome, reason: Reason, message: str
) -> None:
    core = FakeCore()
    result = handler(core).handle(job(**kw), time.time())
    assert result.outcome is outcome and not result.keeps_slot and core.created == []
    assert result.event is not None and result.event.reason is reason
    assert result.event.message.startswith(message), result.event.message
    assert result.event.id == kw.get("job_id", "id-1")


def test_expired_while_retrying_is_expired_not_requeued() -> None:
    now = time.time()
    spec = make_spec(queued_at=now - 600, expires_at=now + 0.05)
    core = FakeCore(*[api_exc(503, "ServiceUnavailable", "busy")] * 1000)
    result = handler(core, retry_for=3600.0).handle(job(spec), now)
    assert result.outcome is Outcome.EXPIRED and result.event is not None


def test_failed_events_are_stamped_with_the_handlers_clock() -> None:
    h = handler(FakeCore(), clock=lambda: 1_764_000_123.5)
    expired = make_spec(queued_at=1.0, expires_at=601.0)
    for claimed in (job(revoked=True), job(raw="{"), job(expired)):
        event = h.handle(claimed, time.time()).event
        assert event is not None and event.at == 1_764_000_123.5
