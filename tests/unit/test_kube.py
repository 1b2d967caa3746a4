"""kubequeue.kube: the one place API exceptions become kubequeue errors."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import tenacity
import urllib3
from kubernetes.client.exceptions import ApiException

from kubequeue import kube
from kubequeue.errors import (
    ConfigError,
    KubeAlreadyExistsError,
    KubeApiError,
    KubeConflictError,
    KubeForbiddenError,
    KubeGoneError,
    KubeInvalidError,
    KubeNotFoundError,
    KubeRetryableError,
    KubeUnreachableError,
)


def _api_exc(status: int, reason: str = "", message: str = "", headers: dict | None = None):
    e = ApiException(status=status, reason="HTTP reason")
    e.body = json.dumps({"kind": "Status", "reason": reason, "message": message}).encode()
    e.headers = headers or {}
    return e


@pytest.mark.parametrize(
    ("status", "reason", "cls"),
    [
        (409, "AlreadyExists", KubeAlreadyExistsError),
        (409, "Conflict", KubeConflictError),
        (400, "BadRequest", KubeInvalidError),
        (422, "Invalid", KubeInvalidError),
        (403, "Forbidden", KubeForbiddenError),
        (401, "Unauthorized", KubeForbiddenError),
        (404, "NotFound", KubeNotFoundError),
        (410, "Expired", KubeGoneError),
        (429, "TooManyRequests", KubeRetryableError),
        (500, "InternalError", KubeRetryableError),
        (503, "ServiceUnavailable", KubeRetryableError),
        (418, "Teapot", KubeApiError),
    ],
)
def test_api_error_maps_status(status: int, reason: str, cls: type) -> None:
    err = kube.api_error(_api_exc(status, reason, "the message"))
    assert type(err) is cls
    assert err.status == status
    assert err.reason == reason
    assert err.message == "the message"
    assert err.retryable == (status in (429, 500, 503))


def test_api_error_transport_and_unknown() -> None:
    err = kube.api_error(urllib3.exceptions.MaxRetryError(None, "/x", "refused"))
    assert isinstance(err, KubeUnreachableError) and err.status == 0 and err.retryable
    assert isinstance(kube.api_error(ConnectionRefusedError()), KubeUnreachableError)
    other = kube.api_error(ValueError("boom"))
    assert type(other) is KubeApiError and other.status == -1 and not other.retryable


def test_api_error_message_is_truncated_and_body_may_be_text() -> None:
    e = ApiException(status=422, reason="Unprocessable")
    e.body = b"x" * 5000
    e.headers = {}
    err = kube.api_error(e)
    assert isinstance(err, KubeInvalidError)
    assert len(err.message) <= 500 and err.reason == "Unprocessable"


def test_retry_after_seconds_date_and_bad() -> None:
    assert kube.retry_after({"Retry-After": "2"}) == 2.0
    assert kube.retry_after({"retry-after": "0.5"}) == 0.5
    assert kube.retry_after({"Retry-After": "100000"}) == kube.MAX_RETRY_AFTER
    assert kube.retry_after({"Retry-After": "-3"}) == 0.0
    assert kube.retry_after({"Retry-After": "soon"}) is None
    assert kube.retry_after({}) is None and kube.retry_after(None) is None
    date = "Wed, 21 Oct 2015 07:28:10 GMT"
    assert kube.retry_after({"Retry-After": date}, now=1445412480.0) == 10.0
    err = kube.api_error(_api_exc(429, "TooManyRequests", "slow down", {"Retry-After": "3"}))
    assert err.retry_after == 3.0


def test_retrying_honours_retry_after_and_stops_on_permanent(monkeypatch) -> None:
    sleeps: list[float] = []
    policy = kube.retrying(attempts=5, backoffs=(0.01, 0.02))
    policy.sleep = sleeps.append  # type: ignore[method-assign]
    calls = iter(
        [
            KubeRetryableError(429, "TooManyRequests", "", 1.5),
            KubeRetryableError(503, "ServiceUnavailable"),
            KubeRetryableError(503, "ServiceUnavailable"),
        ]
    )

    def flaky() -> str:
        err = next(calls, None)
        if err is not None:
            raise err
        return "ok"

    assert policy(flaky) == "ok"
    assert sleeps == [1.5, 0.02, 0.02]

    def invalid() -> None:
        raise KubeInvalidError(422, "Invalid", "bad")

    policy2 = kube.retrying(attempts=5)
    with pytest.raises(KubeInvalidError):
        policy2(invalid)
    assert policy2.statistics["attempt_number"] == 1


def test_retrying_stop_when() -> None:
    policy = kube.retrying(attempts=None, stop_when=lambda: True)
    policy.sleep = lambda s: None  # type: ignore[method-assign]

    def down() -> None:
        raise KubeUnreachableError(0, "ConnectionRefusedError", "refused")

    with pytest.raises(KubeUnreachableError):
        policy(down)
    assert isinstance(policy, tenacity.Retrying)


def test_api_client_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no kubeconfig"):
        kube.api_client(None, "ctx")
    with pytest.raises(ConfigError, match="cannot"):
        kube.api_client(str(tmp_path / "missing"), None)
    cfg = tmp_path / "kubeconfig"
    cfg.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: a\n"
        "clusters: [{name: a, cluster: {server: 'http://127.0.0.1:1'}}]\n"
        "contexts: [{name: a, context: {cluster: a, user: a}}]\nusers: [{name: a, user: {}}]\n"
    )
    with pytest.raises(ConfigError, match="'nope'"):
        kube.api_client(str(cfg), "nope")
    client = kube.api_client(str(cfg), "a", pool_size=32)
    assert client.configuration.host == "http://127.0.0.1:1"
    assert client.configuration.retries is False
    with pytest.raises(KubeUnreachableError):
        kube.check_api(client, timeout=1.0)


def _scripted(*outcomes: BaseException | None):  # type: ignore[no-untyped-def]
    """A call that raises each outcome in turn (None: returns), then returns; counts calls."""
    script = list(outcomes)
    calls: list[int] = []

    def call() -> str:
        calls.append(1)
        err = script.pop(0) if script else None
        if err is not None:
            raise err
        return "ok"

    return call, calls


SCRIPTS: list[list[BaseException | None]] = [
    [],
    [KubeInvalidError(422, "Invalid", "bad")],
    [KubeAlreadyExistsError(409, "AlreadyExists", "there")],
    [ValueError("not an API error")],
    [KubeRetryableError(429, "TooManyRequests", "", 1.5), KubeRetryableError(503, "x")],
    [KubeUnreachableError(0, "ConnectionRefusedError", "refused")] * 3
    + [KubeForbiddenError(403, "Forbidden", "no")],
    [KubeRetryableError(503, "ServiceUnavailable")] * 9,
]


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("attempts", [1, 4, None])
def test_retry_call_behaves_as_retrying(
    script: list[BaseException | None], attempts: int | None, caplog: pytest.LogCaptureFixture
) -> None:
    """Same calls, sleeps, log lines and answer or error as the tenacity policy around fn."""
    seen = []
    for run in ("policy", "retry_call"):
        sleeps: list[float] = []
        call, calls = _scripted(*script)
        kw = {"attempts": attempts, "backoffs": (0.01, 0.02), "sleep": sleeps.append}
        caplog.clear()
        try:
            if run == "policy":
                answer: object = kube.retrying(**kw, what="op")(call)  # type: ignore[arg-type]
            else:
                answer = kube.retry_call(call, **kw, what="op")  # type: ignore[arg-type]
        except Exception as e:
            answer = e
        seen.append((len(calls), sleeps, [r.getMessage() for r in caplog.records], answer))
    assert seen[0] == seen[1]


def test_retry_call_builds_no_policy_unless_it_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_policy(*args: object) -> None:
        raise AssertionError("a policy was built")

    monkeypatch.setattr(kube, "_policy", no_policy)
    assert kube.retry_call(lambda: "ok") == "ok"
    with pytest.raises(KubeInvalidError):
        kube.retry_call(_scripted(KubeInvalidError(422, "Invalid", "bad"))[0])


def test_retry_call_deadline_counts_from_the_first_attempt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The deadline includes the first attempt, as tenacity's stop_after_delay does around
    the whole call: with attempts of 5 s each and a 7 s deadline, two attempts, not three."""
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])

    def slow_503() -> None:
        calls.append(1)
        now[0] += 5.0
        raise KubeRetryableError(503, "ServiceUnavailable")

    for run in (kube.retrying(attempts=None, deadline=7.0, sleep=lambda s: None), None):
        calls: list[int] = []
        with pytest.raises(KubeRetryableError):
            if run is None:
                kube.retry_call(slow_503, attempts=None, deadline=7.0, sleep=lambda s: None)
            else:
                run(slow_503)
        assert len(calls) == 2
