"""watcher.watch: the list-then-watch loop against a scripted API (no server)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from prometheus_client import REGISTRY

from kubequeue.watcher.watch import Observation, WatchLoop


class Response:
    def __init__(self, data: Any = None, lines: list[dict[str, Any]] | None = None) -> None:
        self.data = json.dumps(data).encode() if data is not None else b""
        self.lines = lines or []

    def stream(self, amt: int, decode_content: bool = True) -> Iterator[bytes]:
        for line in self.lines:
            yield json.dumps(line).encode() + b"\n"

    def release_conn(self) -> None:
        pass

    def shutdown(self) -> None:
        pass


def pod(name: str, rv: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": rv}}


class ScriptedApi:
    """Answers list and watch calls from two scripts; records the watches' RVs."""

    def __init__(self, lists: list[Any], watches: list[Any]) -> None:
        self.lists, self.watches = lists, watches
        self.watched_from: list[str] = []
        self.list_calls: list[dict[str, Any]] = []

    def list_namespaced_pod(self, namespace: str, **kw: Any) -> Response:
        if kw.get("watch"):
            self.watched_from.append(kw["resource_version"])
            assert kw["allow_watch_bookmarks"] is True
            step = self.watches.pop(0)
        else:
            self.list_calls.append(kw)
            step = self.lists.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


def gone_event(rv: str) -> dict[str, Any]:
    return {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired",
                                        "message": f"too old resource version: {rv}"}}  # fmt: skip


BOOKMARK_15 = {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "15"}}}


def restarts(reason: str) -> float:
    return REGISTRY.get_sample_value("kubequeue_watch_restarts_total", {"reason": reason}) or 0.0


def run(api: ScriptedApi, iterations: int) -> tuple[list[Observation], str]:
    got: list[Observation] = []
    loop = WatchLoop(api, (None, "tasks"), got.append, backoffs=(0.0,))
    why = loop.watch_forever(iterations=iterations)
    return got, why


def test_resumes_from_every_events_rv_bookmarks_included_and_relists_on_410(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gone = restarts("gone")
    api = ScriptedApi(
        lists=[
            Response({"metadata": {"resourceVersion": "10"}, "items": [pod("a", "9")]}),
            Response({"metadata": {"resourceVersion": "30"}, "items": []}),
        ],
        watches=[
            Response(lines=[{"type": "ADDED", "object": pod("b", "11")}, BOOKMARK_15]),
            Response(lines=[{"type": "MODIFIED", "object": pod("b", "16")}]),
            Response(lines=[gone_event("16")]),
            ApiException(status=500, reason="boom"),  # second round: an error ends it
        ],
    )  # fmt: skip
    caplog.set_level(logging.INFO)
    got, why = run(api, iterations=2)
    assert api.watched_from == ["10", "15", "16", "30"]
    assert [(o.kind, o.type, [p["metadata"]["name"] for p in o.pods]) for o in got] == [
        ("list", "", ["a"]),
        ("event", "ADDED", ["b"]),
        ("event", "MODIFIED", ["b"]),
        ("list", "", []),
    ]
    assert restarts("gone") == gone + 1
    assert why == "iteration bound 2 reached"
    assert "watch loop default/tasks ended: iteration bound 2 reached" in caplog.text


def test_paged_lists_follow_continue_tokens_and_a_stale_token_relists() -> None:
    api = ScriptedApi(
        lists=[
            Response({"metadata": {"continue": "t1"}, "items": [pod("a", "1")]}),
            ApiException(status=410, reason="Expired"),  # the continue token expired
            Response({"metadata": {"continue": "t2"}, "items": [pod("a", "1")]}),
            Response({"metadata": {"resourceVersion": "7"}, "items": [pod("b", "2")]}),
        ],
        watches=[ApiException(status=503, reason="unavailable")],
    )
    got, _ = run(api, iterations=2)
    assert [c.get("_continue") for c in api.list_calls] == [None, "t1", None, "t2"]
    assert [[p["metadata"]["name"] for p in o.pods] for o in got] == [["a", "b"]]
    assert api.watched_from == ["7"]


def test_a_stopped_loop_exits_at_once() -> None:
    loop = WatchLoop(ScriptedApi([], []), (None, "tasks"), lambda o: None)
    loop.stop()
    assert loop.watch_forever() == "stopped"
