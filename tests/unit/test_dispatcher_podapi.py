"""The lean pod create: what goes over the wire (path, auth, body) and how answers map."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubequeue.dispatcher.podapi import PodApi
from kubequeue.errors import KubeInvalidError, KubeRetryableError, KubeUnreachableError
from tests.fixtures.recording_api import Recorder, client_for, recording_server

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}


@pytest.fixture
def server() -> Iterator[int]:
    with recording_server((201, {}, b"{}")) as port:
        yield port


def api_for(tmp_path: Path, server_url: str) -> PodApi:
    return PodApi(client_for(tmp_path, server_url))


def test_post_carries_auth_path_prefix_and_json(tmp_path: Path, server: int) -> None:
    api = api_for(tmp_path, f"http://127.0.0.1:{server}/prefix")
    api.create("my-ns", POD)
    (req,) = Recorder.seen
    assert req["path"] == "/prefix/api/v1/namespaces/my-ns/pods"
    assert req["headers"]["authorization"] == "Bearer s3cret"
    assert req["headers"]["content-type"] == "application/json"
    assert req["headers"]["user-agent"].startswith("OpenAPI-Generator/")
    assert json.loads(req["body"]) == POD


def test_rejections_map_to_errors_with_the_api_message(tmp_path: Path, server: int) -> None:
    api = api_for(tmp_path, f"http://127.0.0.1:{server}")
    status = {"kind": "Status", "reason": "Invalid", "message": 'Pod "p" is invalid: x'}
    Recorder.answer = (422, {"Content-Type": "application/json"}, json.dumps(status).encode())
    with pytest.raises(KubeInvalidError) as e:
        api.create("ns", POD)
    assert (e.value.status, e.value.reason, e.value.message) == (
        422,
        "Invalid",
        'Pod "p" is invalid: x',
    )
    Recorder.answer = (429, {"Retry-After": "2"}, b'{"kind":"Status","reason":"TooManyRequests"}')
    with pytest.raises(KubeRetryableError) as e2:
        api.create("ns", POD)
    assert e2.value.status == 429 and e2.value.retry_after == 2.0


def test_nobody_listening_is_unreachable(tmp_path: Path) -> None:
    api = api_for(tmp_path, "http://127.0.0.1:1")
    with pytest.raises(KubeUnreachableError):
        api.create("ns", POD)


def test_body_is_the_json_json_dumps_wrote() -> None:
    """orjson writes the body; the JSON it stands for is what json.dumps wrote, and what
    json.dumps refused (a date left unquoted in a YAML template) is still refused."""
    import datetime

    from kubequeue.dispatcher.podapi import _encode

    pod = {
        "metadata": {"name": "p", "annotations": {"note": "é\u2028\x00</", "n": "1"}},
        "spec": {"containers": [{"resources": {"limits": {"cpu": 0.5, "x": 1e16, "y": 2**70}}}]},
        "extra": [True, False, None, -0.0, 1e-7, {1: "int key"}],
    }
    assert json.loads(_encode(pod)) == json.loads(json.dumps(pod))
    with pytest.raises(TypeError, match="date is not JSON serializable"):
        _encode({"metadata": {"annotations": {"day": datetime.date(2026, 11, 25)}}})
