"""What one benchmark run does: the settings, the systems compared and the phases each runs.

Everything here is plain data shared by the orchestrator (the `bench` command) and the driver
processes, so it must stay picklable and free of Airflow imports. A task's identity on its pod
is `dag_id = bench_<phase>` plus `map_index = <index>`: every system under test puts both on
the pods it creates (the KubernetesExecutor does it itself), which is how the simulator-side
recorder matches a pod to the moment its task was queued.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from kubequeue.errors import ConfigError

SystemKind = Literal["limit", "ke", "kubequeue"]

# Two Airflow queues, each mapped to its own node pool, as the issue asks.
DEFAULT_MIX: tuple[tuple[str, float], ...] = (("default", 0.5), ("highmem", 0.5))
POOL_OF_QUEUE = {"default": "default", "highmem": "highmem"}

DAG_PREFIX = "bench_"
RUN_ID = "bench"
LADDER_BUSY = 100  # short tasks started at each ladder level while its heartbeats are timed
BUSY_SECONDS = 2.0  # how long those short tasks run
WARMUP = "warmup"  # the unmeasured phase every system runs first


@dataclass(frozen=True)
class Phase:
    """One measured workload. `rate=None` queues every task at once (a burst); otherwise
    tasks arrive open-loop at `rate` per second. `loop_ms=0` heartbeats as fast as possible;
    otherwise one heartbeat starts every `loop_ms` (a scheduler loop of that length).
    `levels` makes it the in-flight ladder: long-running tasks are added until each level
    is running, and heartbeats are timed at each level."""

    name: str
    tasks: int
    rate: float | None = None
    loop_ms: float = 0.0
    task_seconds: float = 2.0
    levels: tuple[int, ...] = ()

    @property
    def dag_id(self) -> str:
        return f"{DAG_PREFIX}{self.name}"

    @property
    def ladder(self) -> bool:
        return bool(self.levels)

    @property
    def total(self) -> int:
        """Every task the phase queues (the ladder adds short tasks at each level)."""
        return self.tasks + sum(self.busy_at(level) for level in self.levels)

    def busy_at(self, level: int) -> int:
        """Short tasks started while a ladder level's heartbeats are timed."""
        return min(LADDER_BUSY, level)

    def seconds_of(self, index: int) -> float:
        """How long task `index` runs: ladder tasks past the top level are the short ones."""
        return BUSY_SECONDS if self.ladder and index >= self.tasks else self.task_seconds


@dataclass(frozen=True)
class System:
    """One system under test, e.g. `kubequeue-4` or `ke-tuned`."""

    name: str
    kind: SystemKind
    replicas: int = 0  # kubequeue dispatcher processes
    ke_async: bool = False  # KubernetesExecutor async pod creation
    ke_batch: int = 1  # worker_pods_creation_batch_size
    ke_concurrency: int = 0  # pod_creation_max_concurrency (0 = batch size)
    phases: tuple[Phase, ...] = ()


@dataclass(frozen=True)
class Settings:
    n: int = 2000
    mix: tuple[tuple[str, float], ...] = DEFAULT_MIX
    replicas: tuple[int, ...] = (1, 2, 4)
    rate: float = 200.0
    rate_seconds: float = 3.0
    paced_n: int = 500
    loop_ms: float = 50.0
    levels: tuple[int, ...] = (100, 1000, 10000)
    ke_tuned_batch: int = 128
    ke_tuned_concurrency: int = 64
    dispatcher_concurrency: int = 16
    api_latency_ms: float = 20.0
    task_seconds: float = 2.0
    nodes_per_pool: int = 20
    max_pods_per_node: int = 300
    phase_timeout: float = 300.0
    systems: tuple[str, ...] = ()  # empty = all
    skip: tuple[str, ...] = ()  # phase names to skip
    soak: int = 0  # tasks for the dispatcher RSS soak (0 = no soak)
    soak_rate: float = 200.0
    name: str = "bench"
    extra: dict[str, str] = field(default_factory=dict)


def parse_mix(text: str) -> tuple[tuple[str, float], ...]:
    """`default=0.5,highmem=0.5` -> (("default", 0.5), ("highmem", 0.5)), weights normalised."""
    pairs: list[tuple[str, float]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        queue, sep, weight = part.partition("=")
        if not sep or queue not in POOL_OF_QUEUE:
            raise ConfigError(
                f"--mix entry {part!r}: expected QUEUE=WEIGHT with QUEUE one of "
                f"{', '.join(POOL_OF_QUEUE)}"
            )
        try:
            value = float(weight)
        except ValueError:
            raise ConfigError(f"--mix entry {part!r}: weight {weight!r} is not a number") from None
        if value < 0:
            raise ConfigError(f"--mix entry {part!r}: weight must be >= 0")
        pairs.append((queue, value))
    total = sum(w for _, w in pairs)
    if not pairs or total <= 0:
        raise ConfigError(f"--mix {text!r}: give at least one queue with a positive weight")
    return tuple((q, w / total) for q, w in pairs)


def parse_ints(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in re.split(r"[,\s]+", text.strip()) if v)
    except ValueError:
        raise ConfigError(f"{what} {text!r}: expected comma-separated integers") from None
    if not values or any(v <= 0 for v in values):
        raise ConfigError(f"{what} {text!r}: expected positive integers")
    return values


def assign_queues(n: int, mix: Sequence[tuple[str, float]]) -> list[str]:
    """Deterministic, evenly interleaved queues for tasks 0..n-1: each next task goes to the
    queue furthest behind its share, so any prefix of the workload has the mix's proportions."""
    counts = dict.fromkeys((q for q, _ in mix), 0)
    out: list[str] = []
    for i in range(n):
        queue = max(mix, key=lambda qw: (i + 1) * qw[1] - counts[qw[0]])[0]
        counts[queue] += 1
        out.append(queue)
    return out


def phase_plan(settings: Settings) -> dict[str, Phase]:
    s = settings
    rate_tasks = max(1, int(s.rate * s.rate_seconds))
    phases = {
        "burst": Phase("burst", s.n, task_seconds=s.task_seconds),
        "paced": Phase(
            "paced", min(s.n, s.paced_n), loop_ms=s.loop_ms, task_seconds=s.task_seconds
        ),
        # Paced, as a scheduler loop is: each loop hands over what arrived since the last one
        # and heartbeats at once, so the queued stamp (the handover) adds no loop delay.
        "rate": Phase(
            "rate", rate_tasks, rate=s.rate, loop_ms=s.loop_ms, task_seconds=s.task_seconds
        ),
        "ladder": Phase("ladder", max(s.levels), task_seconds=3600.0, levels=s.levels),
    }
    return {k: v for k, v in phases.items() if k not in s.skip}


def systems(settings: Settings) -> list[System]:
    """Every system of the run with the phases it takes part in, in the order they run."""
    p = phase_plan(settings)
    flow = tuple(p[k] for k in ("burst", "paced", "rate") if k in p)
    ladder = (p["ladder"],) if "ladder" in p else ()
    out = [
        System("limit", "limit", phases=tuple(p[k] for k in ("burst", "rate") if k in p)),
        System("ke-default", "ke", phases=flow),
        System(
            "ke-tuned",
            "ke",
            ke_async=True,
            ke_batch=settings.ke_tuned_batch,
            ke_concurrency=settings.ke_tuned_concurrency,
            phases=flow + ladder,
        ),
    ]
    top = max(settings.replicas)
    for r in settings.replicas:
        phases = flow + ladder if r == top else flow
        out.append(System(f"kubequeue-{r}", "kubequeue", replicas=r, phases=phases))
    if settings.systems:
        unknown = set(settings.systems) - {x.name for x in out}
        if unknown:
            raise ConfigError(
                f"--systems: unknown {', '.join(sorted(unknown))}; "
                f"choose from {', '.join(x.name for x in out)}"
            )
        out = [x for x in out if x.name in settings.systems]
    # Every system first runs a few unmeasured tasks: first-use costs (KE's discovery and
    # async client, connection pools, imports) belong to start-up, not to the figures.
    warmup = Phase(WARMUP, min(settings.n, 20), task_seconds=settings.task_seconds)
    return [replace(x, phases=(warmup, *x.phases)) for x in out if x.phases]


def arrival_offsets(phase: Phase) -> list[float]:
    """Seconds after the phase starts at which each task is queued."""
    if phase.rate is None:
        return [0.0] * phase.tasks
    return [i / phase.rate for i in range(phase.tasks)]
