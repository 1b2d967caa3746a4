"""Golden tests of the stage profiles: each scenario walks a pod through a profile, one
stage at a time (each step's input is the previous step's output), and the resulting
status and events must equal tests/unit/golden/sim_stages_<profile>.yaml. Every stage of
every built-in profile appears in some scenario.

After an intended change, regenerate with `KUBEQUEUE_UPDATE_GOLDEN=1 pytest <this file>`
and review the diff of the golden files.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubequeue.sim.podstatus import Context, apply
from kubequeue.sim.stages import Profile, load_profile

GOLDEN = Path(__file__).parent / "golden"
T0 = 1_764_000_000.0  # 2025-11-24T16:00:00Z: the clock every step starts from
UPDATE = os.environ.get("KUBEQUEUE_UPDATE_GOLDEN") == "1"


def base_pod(**meta: Any) -> dict[str, Any]:
    image = meta.pop("image", "busybox:1.36")
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "task-1",
            "namespace": "airflow",
            "uid": "00000000-0000-0000-0000-000000000001",
            "resourceVersion": "7",
            **meta,
        },
        "spec": {
            "nodeName": "default-0",
            "restartPolicy": "Never",
            "containers": [{"name": "base", "image": image}],
        },
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "True",
                    "lastProbeTime": None,
                    "lastTransitionTime": "2025-11-24T15:59:59Z",
                }
            ],
        },
    }


def _deleting(pod: dict) -> dict:
    pod = copy.deepcopy(pod)
    pod["metadata"]["deletionTimestamp"] = "2025-11-24T16:00:30Z"
    pod["metadata"]["deletionGracePeriodSeconds"] = 30
    return pod


# name -> (pod metadata, stage names in order; "delete" marks the pod for deletion there)
SCENARIOS: dict[str, dict[str, tuple[dict, list[str]]]] = {
    "general": {
        "succeeds-cached-image": ({}, ["admit", "sandbox", "start-cached", "complete"]),
        "fails-pulled-image": (
            {"annotations": {"kubequeue.io/sim-exit-code": "3"}},
            ["admit", "sandbox", "start-pulled", "fail"],
        ),
        "image-pull-backoff": (
            {"image": "registry.local/doesnotexist:1"},
            ["admit", "sandbox", "pull-failed", "pull-backoff", "pull-retry", "pull-backoff"],
        ),
        "deleted-while-running": (
            {},
            ["admit", "sandbox", "start-cached", "delete", "kill", "remove"],
        ),
        "deleted-before-start": ({}, ["admit", "delete", "kill-waiting", "remove"]),
        "oom-killed": (
            {"labels": {"kubequeue.io/sim-chaos": "oom"}},
            ["admit", "sandbox", "start-cached", "oom"],
        ),
        "evicted": (
            {"labels": {"kubequeue.io/sim-chaos": "evict"}},
            ["admit", "sandbox", "start-cached", "evict", "delete", "remove"],
        ),
    },
    "fast": {
        "succeeds": ({}, ["start", "complete"]),
        "fails": ({"annotations": {"kubequeue.io/sim-exit-code": "2"}}, ["start", "fail"]),
        "image-pull-backoff": (
            {"image": "busybox:missing"},
            ["pull-failed", "pull-backoff", "pull-retry"],
        ),
        "deleted-while-running": ({}, ["start", "delete", "kill", "remove"]),
        "deleted-before-start": ({}, ["delete", "kill-waiting", "remove"]),
        "oom-with-annotations": (
            {
                "labels": {"kubequeue.io/sim-chaos": "oom"},
                "annotations": {
                    "kubequeue.io/sim-chaos-exit-code": "9",
                    "kubequeue.io/sim-chaos-reason": "Killed",
                },
            },
            ["start", "oom"],
        ),
        "evicted": ({"labels": {"kubequeue.io/sim-chaos": "evict"}}, ["start", "evict"]),
    },
}


class _Plain(yaml.SafeDumper):
    """No &anchors/*aliases: every step of a golden file reads on its own."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _event(event: dict) -> dict:
    """The parts of an event that do not depend on the wall clock's nanoseconds."""
    keep = ("type", "reason", "message", "firstTimestamp", "source")
    out = {k: event[k] for k in keep}
    out["fieldPath"] = event["involvedObject"].get("fieldPath", "")
    return out


def walk(profile: Profile, meta: dict, steps: list[str]) -> list[dict]:
    """Apply the named stages in order; each must be among those that match the pod."""
    pod: dict | None = base_pod(**copy.deepcopy(meta))
    record = []
    for n, name in enumerate(steps):
        assert pod is not None, f"step {name}: the pod was already removed"
        if name == "delete":
            pod = _deleting(pod)
            continue
        matching = [s.name for s in profile.matching(pod, "timed")]
        assert name in matching, f"step {n} {name}: matching stages are {matching}"
        ctx = Context("default-0", "10.0.0.2", lambda: "10.64.0.9", now=T0 + n, delay=1.5)
        pod, events = apply(pod, profile.stage(name).next, ctx)
        record.append(
            {
                "stage": name,
                "status": None if pod is None else pod["status"],
                "events": [_event(e) for e in events],
            }
        )
    return record


@pytest.mark.parametrize("profile_name", sorted(SCENARIOS))
def test_profile_matches_golden(profile_name: str) -> None:
    profile = load_profile(profile_name)
    got = {
        name: {"pod": meta, "steps": walk(profile, meta, steps)}
        for name, (meta, steps) in SCENARIOS[profile_name].items()
    }
    path = GOLDEN / f"sim_stages_{profile_name}.yaml"
    if UPDATE:
        path.write_text(yaml.dump(got, Dumper=_Plain, sort_keys=False, width=100))
    assert path.exists(), f"{path} missing: run with KUBEQUEUE_UPDATE_GOLDEN=1"
    assert got == yaml.safe_load(path.read_text())


@pytest.mark.parametrize("profile_name", sorted(SCENARIOS))
def test_every_stage_has_a_golden_step(profile_name: str) -> None:
    covered = {s for _, steps in SCENARIOS[profile_name].values() for s in steps}
    stages = {s.name for s in load_profile(profile_name).stages}
    assert stages - covered == set()


@pytest.mark.parametrize("profile_name", ["general", "fast"])
def test_stages_chain_to_removal_on_their_own(profile_name: str) -> None:
    """Choosing among the matches as the kubelet does always reaches an end: a terminal
    phase, and after a delete the pod's removal."""
    import random

    profile = load_profile(profile_name)
    rng = random.Random(3)
    for _ in range(30):
        pod: dict | None = base_pod()
        delete_at = rng.randrange(8)  # deleted at some step, or once it has ended
        names: list[str] = []
        for n in range(20):
            assert pod is not None
            stage = profile.choose(pod, "timed", rng)
            if n == delete_at or (stage is None and "deletionTimestamp" not in pod["metadata"]):
                pod = _deleting(pod)
                stage = profile.choose(pod, "timed", rng)
            assert stage is not None, f"stuck after {names}"
            names.append(stage.name)
            pod, _ = apply(pod, stage.next, Context("n", "10.0.0.2", lambda: "10.64.0.9"))
            if pod is None:
                break
        assert pod is None, f"not removed after {names}"
        assert names[-1] == "remove"
