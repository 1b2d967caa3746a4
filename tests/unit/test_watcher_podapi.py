"""The watcher's lean pod calls: the same requests CoreV1Api sends, errors mapped, one
connection reused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from kubequeue.errors import KubeNotFoundError, KubeRetryableError, KubeUnreachableError
from kubequeue.watcher.podapi import PodApi
from tests.fixtures.recording_api import Recorder, client_for, recording_server

PATCH = {"metadata": {"labels": {"kubequeue.io/done": "true"}}}


@pytest.fixture
def server() -> Iterator[int]:
    with recording_server((200, {}, b'{"kind":"Pod"}')) as port:
        yield port


def wire(request: dict[str, Any]) -> tuple[Any, ...]:
    headers = {k: v for k, v in request["headers"].items() if k not in ("accept-encoding",)}
    return request["method"], request["path"], headers, request["body"]


def test_delete_and_patch_send_what_corev1api_sends(tmp_path: Path, server: int) -> None:
    api = client_for(tmp_path, f"http://127.0.0.1:{server}/prefix")
    core = kubernetes.client.CoreV1Api(api)
    core.delete_namespaced_pod("pod-1", "my-ns")
    core.patch_namespaced_pod("pod-1", "my-ns", PATCH)
    pods = PodApi(api)
    pods.delete("my-ns", "pod-1")
    pods.patch("my-ns", "pod-1", PATCH)
    generated, lean = Recorder.seen[:2], Recorder.seen[2:]
    assert [wire(r) for r in lean] == [wire(r) for r in generated]
    delete, patch = lean
    assert delete["path"] == "/prefix/api/v1/namespaces/my-ns/pods/pod-1"
    assert delete["headers"]["authorization"] == "Bearer s3cret"
    assert patch["headers"]["content-type"] == "application/strategic-merge-patch+json"
    assert json.loads(patch["body"]) == PATCH


def test_answers_are_read_so_one_connection_serves_every_call(tmp_path: Path, server: int) -> None:
    pods = PodApi(client_for(tmp_path, f"http://127.0.0.1:{server}"))
    for i in range(5):
        pods.delete("ns", f"pod-{i}")
    assert len({r["client"] for r in Recorder.seen}) == 1


def test_answers_map_to_errors_with_the_api_message(tmp_path: Path, server: int) -> None:
    pods = PodApi(client_for(tmp_path, f"http://127.0.0.1:{server}"))
    status = {"kind": "Status", "reason": "NotFound", "message": 'pods "p" not found'}
    Recorder.answer = (404, {"Content-Type": "application/json"}, json.dumps(status).encode())
    with pytest.raises(KubeNotFoundError) as e:
        pods.delete("ns", "p")
    assert (e.value.status, e.value.message) == (404, 'pods "p" not found')
    Recorder.answer = (429, {"Retry-After": "2"}, b'{"kind":"Status","reason":"TooManyRequests"}')
    with pytest.raises(KubeRetryableError) as e2:
        pods.patch("ns", "p", PATCH)
    assert e2.value.retry_after == 2.0


def test_nobody_listening_is_unreachable(tmp_path: Path) -> None:
    pods = PodApi(client_for(tmp_path, "http://127.0.0.1:1"))
    with pytest.raises(KubeUnreachableError):
        pods.delete("ns", "p")
