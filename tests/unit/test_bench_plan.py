from __future__ import annotations

import pytest

from kubequeue.bench import plan
from kubequeue.bench.plan import LADDER_BUSY, Phase, Settings
from kubequeue.errors import ConfigError


def test_mix_is_parsed_and_normalised() -> None:
    assert plan.parse_mix("default=1,highmem=3") == (("default", 0.25), ("highmem", 0.75))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gpu=1", "QUEUE one of default, highmem"),
        ("default", "expected QUEUE=WEIGHT"),
        ("default=x", "is not a number"),
        ("default=-1", "must be >= 0"),
        ("default=0", "at least one queue with a positive weight"),
        ("", "at least one queue"),
    ],
)
def test_bad_mix_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        plan.parse_mix(text)


def test_ints_are_parsed() -> None:
    assert plan.parse_ints("1, 2,4", "--replicas") == (1, 2, 4)
    with pytest.raises(ConfigError, match="--replicas '1,x'"):
        plan.parse_ints("1,x", "--replicas")
    with pytest.raises(ConfigError, match="positive"):
        plan.parse_ints("0", "--levels")


def test_queues_follow_the_mix_in_every_prefix() -> None:
    mix = (("default", 0.25), ("highmem", 0.75))
    queues = plan.assign_queues(400, mix)
    assert queues.count("default") == 100
    for k in range(1, 401):
        assert abs(queues[:k].count("default") - k * 0.25) <= 1


def test_one_queue_mix_sends_everything_there() -> None:
    assert set(plan.assign_queues(10, (("highmem", 1.0),))) == {"highmem"}


def test_arrivals_burst_and_rate() -> None:
    assert plan.arrival_offsets(Phase("burst", 3)) == [0.0, 0.0, 0.0]
    assert plan.arrival_offsets(Phase("rate", 3, rate=10.0)) == [0.0, 0.1, 0.2]


def test_ladder_adds_short_busy_tasks_after_the_long_ones() -> None:
    ladder = Phase("ladder", 1000, task_seconds=3600.0, levels=(10, 1000))
    assert ladder.total == 1000 + 10 + LADDER_BUSY
    assert ladder.seconds_of(999) == 3600.0
    assert ladder.seconds_of(1000) == plan.BUSY_SECONDS
    assert Phase("burst", 10).total == 10


def test_systems_cover_every_baseline_and_replica_count() -> None:
    systems = {s.name: s for s in plan.systems(Settings(replicas=(1, 4)))}
    assert list(systems) == ["limit", "ke-default", "ke-tuned", "kubequeue-1", "kubequeue-4"]
    assert [p.name for p in systems["limit"].phases] == ["warmup", "burst", "rate"]
    assert [p.name for p in systems["ke-default"].phases] == ["warmup", "burst", "paced", "rate"]
    # The ladder (10,000 in flight) runs once per kind, on the tuned KE and the top replicas.
    assert systems["ke-tuned"].phases[-1].name == "ladder"
    assert systems["kubequeue-4"].phases[-1].name == "ladder"
    assert [p.name for p in systems["kubequeue-1"].phases] == ["warmup", "burst", "paced", "rate"]
    assert systems["ke-tuned"].ke_async and systems["ke-tuned"].ke_batch == 128
    assert not systems["ke-default"].ke_async and systems["ke-default"].ke_batch == 1


def test_systems_subset_and_skipped_phases() -> None:
    chosen = plan.systems(Settings(systems=("ke-tuned",), skip=("ladder", "paced")))
    assert [s.name for s in chosen] == ["ke-tuned"]
    assert [p.name for p in chosen[0].phases] == ["warmup", "burst", "rate"]


def test_unknown_system_is_named() -> None:
    with pytest.raises(ConfigError, match="unknown kubequeue-9; choose from limit, ke-default"):
        plan.systems(Settings(systems=("kubequeue-9",)))
