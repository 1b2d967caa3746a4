"""Event -> Airflow action, the table and its two rules, on their own."""

from __future__ import annotations

import pytest

from kubequeue.executor import specs
from kubequeue.executor.states import NEVER_RELAUNCH, TABLE, Action, decide, describe
from kubequeue.messages import EventType, Reason

RELAUNCHABLE = frozenset({Reason.EVICTED, Reason.NODE_LOST, Reason.DELETED})


def act(
    type_: EventType,
    reason: Reason | None = None,
    *,
    started: bool = False,
    can_relaunch: bool = True,
) -> Action:
    return decide(
        type_, reason, started=started, can_relaunch=can_relaunch, relaunch_reasons=RELAUNCHABLE
    )


def test_every_event_type_has_an_action() -> None:
    assert set(TABLE) == set(EventType)


@pytest.mark.parametrize(
    ("type_", "expected"),
    [
        (EventType.DISPATCHED, Action.NOTE),
        (EventType.POD_CREATED, Action.NOTE),
        (EventType.SCHEDULED, Action.NOTE),
        (EventType.STARTED, Action.NOTE),
        (EventType.RUNNING, Action.RUNNING),
        (EventType.SUCCEEDED, Action.SUCCESS),
        (EventType.FAILED, Action.FAIL),
        (EventType.REQUEUED, Action.RELAUNCH),
    ],
)
def test_table(type_: EventType, expected: Action) -> None:
    assert act(type_) is expected


@pytest.mark.parametrize("reason", sorted(RELAUNCHABLE))
def test_transient_failure_before_start_relaunches(reason: Reason) -> None:
    assert act(EventType.FAILED, reason) is Action.RELAUNCH


@pytest.mark.parametrize("reason", sorted(RELAUNCHABLE))
def test_transient_failure_after_start_uses_the_try(reason: Reason) -> None:
    assert act(EventType.FAILED, reason, started=True) is Action.FAIL


def test_no_launch_left_means_fail() -> None:
    assert act(EventType.FAILED, Reason.EVICTED, can_relaunch=False) is Action.FAIL
    assert act(EventType.REQUEUED, Reason.EVICTED, can_relaunch=False) is Action.FAIL


@pytest.mark.parametrize(
    "reason", [Reason.UNSCHEDULABLE, Reason.IMAGE_PULL, Reason.EXIT_CODE, Reason.OOM_KILLED]
)
def test_other_failures_are_not_relaunched_by_default(reason: Reason) -> None:
    assert act(EventType.FAILED, reason) is Action.FAIL


@pytest.mark.parametrize("reason", sorted(NEVER_RELAUNCH))
def test_input_errors_are_never_relaunched_even_if_configured(reason: Reason) -> None:
    assert (
        decide(
            EventType.FAILED, reason, started=False, can_relaunch=True, relaunch_reasons=set(Reason)
        )
        is Action.FAIL
    )
    assert act(EventType.REQUEUED, reason) is Action.FAIL


def test_describe() -> None:
    text = describe(EventType.FAILED, Reason.IMAGE_PULL, "Back-off pulling x", "p", "ns", "n1")
    assert text == "pod ns/p on node n1: ImagePullBackOff: Back-off pulling x"
    assert describe(EventType.FAILED, Reason.EXIT_CODE, "", "p", "ns", exit_code=2) == (
        "pod ns/p: ExitCode (exit code 2)"
    )
    assert describe(EventType.FAILED, Reason.UNKNOWN_QUEUE, "no pool") == (
        "no pod: UnknownQueue: no pool"
    )


def test_relaunch_ids_are_deterministic_and_counted() -> None:
    base = "0b8a3c1e-5d2f-4e6a-9b7c-1d2e3f4a5b6c"
    assert specs.relaunch_id(base) == (f"{base}-r1", 1)
    assert specs.relaunch_id(f"{base}-r1") == (f"{base}-r2", 2)
    assert specs.relaunches(base) == 0 and specs.relaunches(f"{base}-r2") == 2
