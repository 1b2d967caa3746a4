"""Watch fan-out inside the simulator: one encoding per change shared by every watcher, and
selection changes reported per object."""

from __future__ import annotations

import json

from kubequeue.sim import selectors
from kubequeue.sim.faults import FaultConfig, Faults
from kubequeue.sim.store import Store
from kubequeue.sim.watch import Watcher, WatchHub, json_line


def _events(w: Watcher) -> list[tuple[str, str, str]]:
    lines = [line for chunk in w.chunks for line in chunk.splitlines()]
    return [
        (e["type"], e["object"]["metadata"]["name"], e["object"]["metadata"]["resourceVersion"])
        for e in map(json.loads, lines)
    ]


def _relabel(store: Store, name: str, app: str) -> None:
    pod = store.get("pods", "default", name)
    assert pod is not None
    store.update("pods", {**pod, "metadata": {**pod["metadata"], "labels": {"app": app}}})


def test_resumed_watch_reports_each_object_that_left_its_selection() -> None:
    store = Store()
    hub = WatchHub(store, Faults(FaultConfig(), None))
    for name in ("a", "b", "c"):
        store.create("pods", {"metadata": {"name": name, "labels": {"app": "x"}}})
    rv = store.resource_version
    for name in ("a", "b", "c"):
        _relabel(store, name, "y")
    w = Watcher("pods", "default", selectors.label_matcher("app=x"), json_line)
    hub.open(w, rv)
    assert _events(w) == [("DELETED", "a", "4"), ("DELETED", "b", "5"), ("DELETED", "c", "6")]


def test_every_watcher_gets_the_same_line_for_a_change() -> None:
    store = Store()
    hub = WatchHub(store, Faults(FaultConfig(), None))
    everything = Watcher("pods", None, None, json_line)
    selected = Watcher("pods", "default", selectors.label_matcher("app=x"), json_line)
    for w in (everything, selected):
        hub.open(w, store.resource_version)
    store.create("pods", {"metadata": {"name": "a", "labels": {"app": "x"}}})
    _relabel(store, "a", "y")
    assert everything.chunks[0] is selected.chunks[0]  # encoded once
    assert _events(everything) == [("ADDED", "a", "1"), ("MODIFIED", "a", "2")]
    assert _events(selected) == [("ADDED", "a", "1"), ("DELETED", "a", "2")]
