"""The stages engine itself: selectors, delays, choice by priority and weight, and the
errors a broken profile file gives."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from kubequeue.sim.podstatus import Context, apply, go_duration, pod_phase
from kubequeue.sim.stages import (
    StageError,
    container_summary,
    load_profile,
    parse_delay,
    parse_duration,
    parse_match,
)
from tests.unit.test_sim_stages import base_pod


def running_pod(**meta: object) -> dict:
    pod = base_pod(**meta)
    profile = load_profile("fast")
    new, _ = apply(pod, profile.stage("start").next, Context("n", "10.0.0.2", lambda: "1.1.1.1"))
    assert new is not None
    return new


def test_container_summary_follows_the_containers() -> None:
    pod = base_pod()
    assert container_summary(pod) == "none"
    assert container_summary(running_pod()) == "running"
    pod["status"]["containerStatuses"] = [
        {"name": "a", "state": {"running": {}}},
        {"name": "b", "state": {"waiting": {"reason": "ErrImagePull"}}},
    ]
    assert container_summary(pod) == "waiting:ErrImagePull"


@pytest.mark.parametrize(
    ("path", "spec", "expected"),
    [
        ("phase", "Pending", True),
        ("phase", ["Running", "Failed"], False),
        ("deleting", False, True),
        ("labels.team", None, True),  # null: absent
        ("labels.team", {"exists": True}, False),
        ("annotations.kubequeue.io/sim-exit-code", [None, "0"], True),
        ("annotations.kubequeue.io/sim-exit-code", {"not_in": [None, "0"]}, False),
        ("image", {"matches": "^busybox"}, True),
        ("image", {"not_matches": "missing"}, True),
        ("condition.PodScheduled", "True", True),
        ("condition.Ready", {"exists": False}, True),
    ],
)
def test_matchers(path: str, spec: object, expected: bool) -> None:
    assert parse_match(path, spec, {})(base_pod()) is expected


def test_selector_variables_and_bad_fields() -> None:
    match = parse_match("image", {"matches": "$bad"}, {"bad": ":missing$"})
    assert match(base_pod(image="busybox:missing"))
    with pytest.raises(ValueError, match="unknown variable \\$nope"):
        parse_match("image", {"matches": "$nope"}, {})
    with pytest.raises(ValueError, match="unknown selector field 'labels'"):
        parse_match("labels", "x", {})
    with pytest.raises(ValueError, match="a matcher is a value, a list or one of"):
        parse_match("phase", {"equals": "x"}, {})


def test_durations() -> None:
    assert parse_duration("150ms") == pytest.approx(0.15)
    assert parse_duration("2s") == 2.0
    assert parse_duration("1.5m") == 90.0
    assert parse_duration(3) == 3.0
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")
    assert go_duration(0.8414) == "841ms"
    assert go_duration(3.0891) == "3.089s"
    assert go_duration(62.5) == "1m2.5s"


def test_delays_sum_jitter_annotation_backoff_and_cap() -> None:
    rng = random.Random(1)
    (jittered,) = parse_delay({"base": "1s", "jitter": "500ms"})
    assert all(1.0 <= jittered.seconds({}, rng) <= 1.5 for _ in range(100))
    (from_pod,) = parse_delay({"annotation": "kubequeue.io/sim-duration", "default": "2s"})
    pod = base_pod(annotations={"kubequeue.io/sim-duration": "250ms"})
    assert from_pod.seconds(pod, rng) == pytest.approx(0.25)
    assert from_pod.seconds(base_pod(), rng) == 2.0
    bad = base_pod(annotations={"kubequeue.io/sim-duration": "later"})
    assert from_pod.seconds(bad, rng) == 2.0  # unreadable: the default
    (backoff,) = parse_delay({"backoff": "10s", "max": "300s"})
    assert [backoff.seconds({}, rng, n) for n in range(7)] == [10, 20, 40, 80, 160, 300, 300]
    (lognormal,) = parse_delay({"median": "1s", "sigma": 0.5, "max": "3s"})
    samples = sorted(lognormal.seconds({}, rng) for _ in range(1001))
    assert 0.8 < samples[500] < 1.25 and samples[-1] <= 3.0
    with pytest.raises(ValueError, match="unknown delay keys \\['mean'\\]"):
        parse_delay({"mean": "1s"})


def test_priority_wins_and_weights_share() -> None:
    profile = load_profile("general")
    chaos = running_pod(labels={"kubequeue.io/sim-chaos": "oom"})
    assert [s.name for s in profile.matching(chaos, "timed")] == ["oom"]
    randomly = running_pod(labels={"kubequeue.io/sim-chaos": "random"})
    rng = random.Random(7)
    picked = Counter(profile.choose(randomly, "timed", rng).name for _ in range(400))
    assert set(picked) == {"oom", "evict"} and min(picked.values()) > 150
    ready = base_pod()
    ready, _ = apply(ready, profile.stage("admit").next, Context("n", "h", lambda: "i"))
    ready, _ = apply(ready, profile.stage("sandbox").next, Context("n", "h", lambda: "i"))
    assert ready is not None
    picked = Counter(profile.choose(ready, "timed", rng).name for _ in range(400))
    assert picked["start-cached"] > 2 * picked["start-pulled"] > 0  # weights 3 : 1


def test_process_mode_skips_the_timed_stages() -> None:
    profile = load_profile("general")
    assert [s.name for s in profile.matching(running_pod(), "timed")] == ["complete"]
    assert profile.matching(running_pod(), "process") == []


def test_kubelet_phase_rules() -> None:
    run: dict = {"running": {}}
    wait: dict = {"waiting": {}}
    ok, bad = {"terminated": {"exitCode": 0}}, {"terminated": {"exitCode": 1}}
    assert pod_phase([], 1) == "Pending"
    assert pod_phase([{"state": run}, {"state": wait}], 2) == "Pending"
    assert pod_phase([{"state": run}, {"state": ok}], 2) == "Running"
    assert pod_phase([{"state": ok}, {"state": ok}], 2) == "Succeeded"
    assert pod_phase([{"state": ok}, {"state": bad}], 2) == "Failed"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "stages: [{name: a, selector: {colour: red}}]",
            "stage a: unknown selector field 'colour'",
        ),
        ("stages: [{name: a, delay: soon}]", "stage a: not a duration: 'soon'"),
        ("stages: [{name: a, next: {explode: true}}]", "stage a: next: unknown keys"),
        ("stages: [{name: a, next: {containers: {state: sleeping}}}]", "state must be waiting"),
        (
            "stages: [{name: a, next: {events: [{reason: X, message: '{colour}'}]}}]",
            "bad template '{colour}'",
        ),
        ("stages: [{name: a, kubelet: docker}]", "kubelet must be any, timed or process"),
        ("stages: [{name: a, selector: {image: {matches: '('}}}]", "stage a: missing \\)"),
        ("stages: {a: 1}", "expected a mapping with a `stages` list"),
        ("stages: [a: b: c]", "not valid YAML"),
    ],
)
def test_profile_errors_name_the_file_and_stage(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with pytest.raises(StageError, match=error) as info:
        load_profile(str(path))
    assert f"profile {path}" in str(info.value)


def test_unknown_profile_lists_the_builtin_ones() -> None:
    with pytest.raises(
        StageError, match="unknown profile 'slow' \\(built-in: chaos, fast, general\\)"
    ):
        load_profile("slow")
    with pytest.raises(StageError, match=r"profile file /nowhere\.yaml does not exist"):
        load_profile("/nowhere.yaml")


def test_a_pod_bound_by_its_spec_gets_pod_scheduled_on_admission() -> None:
    pod = base_pod()
    pod["status"] = {}
    admitted, _ = apply(pod, {"admit": True}, Context("n", "10.0.0.2"))
    assert admitted is not None
    kinds = [(c["type"], c["status"]) for c in admitted["status"]["conditions"]]
    assert kinds == [
        ("Initialized", "True"),
        ("Ready", "False"),
        ("ContainersReady", "False"),
        ("PodScheduled", "True"),
    ]
    assert admitted["status"]["phase"] == "Pending"
