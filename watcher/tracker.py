"""What the watcher knows about each task pod, and the decisions it takes from it.

The tracker is the one owner of per-task state in a leadership term. It does no I/O: each
call takes observations (a pod seen through the watch, a relist, the revoked ids, the
clock) and returns a `Batch`: the events to publish, the `published` hash entries to write,
the in-flight slots to release and the pod deletions/labels to perform. The caller writes
the Redis part in one transaction, and only then acts on the pods and updates metrics.

The `published` hash (queueing id → `Tracked` JSON) is its memory across restarts and
leaders: it records the last milestone published per queueing, so a relist reports each
missed transition exactly once and never a second terminal event.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import orjson

from kubequeue import naming
from kubequeue.errors import SpecError
from kubequeue.messages import TERMINAL, EventType, Reason, TaskEvent, TaskKey
from kubequeue.watcher import transitions as tr

log = logging.getLogger(__name__)

Target = tuple[str | None, str]  # (kube context, namespace): one list+watch loop each

# Seconds a finished queueing whose pod is gone is remembered. A pod created again for it
# (a duplicate dispatch racing the cleanup) is then deleted without a second terminal event.
# Its spec expires [scheduler] task_queued_timeout (600 s by default) after queueing, after
# which no dispatcher creates its pod any more.
TOMBSTONE = 900.0


@dataclass(frozen=True)
class PoolPolicy:
    """The parts of a pool's config the watcher acts on."""

    name: str
    namespace: str
    context: str | None = None
    startup_timeout: float = 300.0
    delete_worker_pods: bool = True
    delete_worker_pods_on_failure: bool = False

    @property
    def target(self) -> Target:
        return (self.context, self.namespace)


@dataclass
class Tracked:
    """One queueing whose pod the watcher has seen. Serialized into the published hash."""

    id: str
    queue: str
    pool: str
    namespace: str
    pod: str
    key: dict[str, Any] | None = None
    node: str = ""
    last: EventType | None = None
    last_at: float = 0.0
    queued_at: float | None = None
    created_at: float | None = None
    gone: bool = False  # terminal and its pod is gone: kept a while as a tombstone
    # In memory only: why the pod is stuck Pending, and whether cleanup was requested.
    block: tr.Block | None = field(default=None, compare=False)
    cleanup_sent: bool = field(default=False, compare=False)
    # In memory only: `key` as the model every event carries, validated once per task.
    task_key: TaskKey | None = field(default=None, compare=False, repr=False)

    @property
    def terminal(self) -> bool:
        return self.last in TERMINAL

    def key_model(self) -> TaskKey | None:
        if self.task_key is None and self.key:
            self.task_key = TaskKey.model_validate(self.key)
        return self.task_key

    def to_json(self) -> str:
        # Spelled out rather than dataclasses.asdict, which deep-copies every field, and
        # encoded by orjson (a tenth of json.dumps's time): one of these per published event.
        # The same JSON as json.dumps for every value a task pod can give (non-ASCII text is
        # written as UTF-8 rather than escaped; json.loads reads both alike).
        return orjson.dumps({name: getattr(self, name) for name in _PERSISTED}).decode()

    @classmethod
    def from_json(cls, raw: str | bytes) -> Tracked:
        try:
            data = json.loads(raw)
            data["last"] = EventType(data["last"]) if data.get("last") else None
            return cls(**data)
        except (ValueError, TypeError, KeyError) as e:
            raise SpecError(f"unreadable published entry: {e}") from e


_PERSISTED = tuple(f.name for f in fields(Tracked) if f.compare)


@dataclass(frozen=True)
class Action:
    """A change to a pod, made after the batch's Redis writes succeeded."""

    kind: Literal["delete", "mark_done"]
    id: str
    pool: str
    namespace: str
    pod: str
    why: str


@dataclass(frozen=True)
class Emitted:
    """An event plus what metrics need: the previous milestone's time and queued-at."""

    event: TaskEvent
    prev_at: float | None
    queued_at: float | None


@dataclass
class Batch:
    events: list[Emitted] = field(default_factory=list)
    published: dict[str, str | None] = field(default_factory=dict)  # None = HDEL
    releases: list[tuple[str, str]] = field(default_factory=list)  # (pool, id)
    actions: list[Action] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.events or self.published or self.releases or self.actions)

    def extend(self, other: Batch) -> None:
        self.events += other.events
        self.published.update(other.published)
        self.releases += other.releases
        self.actions += other.actions


def task_id(pod: tr.Pod) -> str | None:
    """The queueing id of a task pod; None if it is not one."""
    meta = pod.get("metadata") or {}
    qid = (meta.get("labels") or {}).get(naming.LABEL_ID)
    return str(qid) if qid and meta.get("name") else None


def identity(qid: str, meta: dict[str, Any]) -> Tracked:
    """A fresh `Tracked` from a task pod's metadata (labels and annotations)."""
    labels = meta["labels"]
    ann = meta.get("annotations") or {}
    key: TaskKey | None = None
    if ann.get(naming.ANN_KEY):
        try:
            key = TaskKey.model_validate_json(ann[naming.ANN_KEY])
        except ValueError:
            log.warning("pod %s has an unreadable %s annotation", meta["name"], naming.ANN_KEY)
    return Tracked(
        id=qid,
        queue=str(labels.get(naming.LABEL_QUEUE) or ""),
        pool=str(labels.get(naming.LABEL_POOL) or ""),
        namespace=str(meta.get("namespace") or ""),
        pod=str(meta["name"]),
        key=key.model_dump() if key else None,
        queued_at=tr.parse_time(ann.get(naming.ANN_QUEUED_AT)),
        task_key=key,
    )


class Tracker:
    def __init__(self, pools: Mapping[str, PoolPolicy], tombstone: float = TOMBSTONE) -> None:
        self.pools = dict(pools)
        self.tasks: dict[str, Tracked] = {}  # pods that exist (or did at the last look)
        self.tombstones: dict[str, float] = {}  # finished queueings whose pod is gone → when
        self.tombstone = tombstone
        self.revoked: set[str] = set()

    # --- loading -------------------------------------------------------------------------

    def load(self, published: Mapping[Any, Any]) -> None:
        """Start a term from the published hash (raw HGETALL reply)."""
        self.tasks.clear()
        for qid, raw in published.items():
            try:
                t = Tracked.from_json(raw)
            except SpecError as e:
                log.warning("ignoring published entry %r: %s", qid, e)
                continue
            if t.gone:
                self.tombstones[t.id] = t.last_at
            else:
                self.tasks[t.id] = t

    # --- observations --------------------------------------------------------------------

    def seen(self, pod: tr.Pod, now: float, *, deleted: bool = False, live: bool = True) -> Batch:
        """One pod as the watch (live) or a list (not live) shows it."""
        qid = task_id(pod)
        if qid is None:
            return Batch()
        if qid in self.tombstones:
            going = deleted or bool(pod["metadata"].get("deletionTimestamp"))
            return self._duplicate(identity(qid, pod["metadata"]), going)
        # Only a pod seen for the first time is read whole: the labels and annotations of a
        # known one do not change what the tracker already holds.
        t = self.tasks.get(qid)
        if t is None:
            t = self.tasks[qid] = identity(qid, pod["metadata"])
        t.node = str((pod.get("spec") or {}).get("nodeName") or t.node)
        batch = Batch()
        if t.terminal:
            self._after_terminal(t, batch, deleted)
            return batch
        if t.id in self.revoked:
            return self._revoke(t, now)
        t.block = tr.pending_block(pod)
        for step in tr.steps(pod, t.last, deleted):
            self._emit(t, step, self._stamp(step, live, now), batch)
        if t.created_at is None:
            t.created_at = tr.parse_time((pod.get("metadata") or {}).get("creationTimestamp"))
        if t.terminal:
            self._after_terminal(t, batch, deleted, first=True)
        elif batch.events:
            batch.published[t.id] = t.to_json()
        return batch

    def relisted(self, target: Target, pods: Iterable[tr.Pod], now: float) -> Batch:
        """A full list of one (context, namespace): report what changed, and end the tasks
        whose pods vanished while nobody was watching."""
        batch = Batch()
        listed: set[str] = set()
        for pod in pods:
            batch.extend(self.seen(pod, now, live=False))
            qid = ((pod.get("metadata") or {}).get("labels") or {}).get(naming.LABEL_ID)
            listed.add(str(qid))
        for t in list(self.tasks.values()):
            pool = self.pools.get(t.pool)
            if pool is None or pool.target != target or t.id in listed:
                continue
            if not t.terminal:
                msg = (
                    f"pod {t.namespace}/{t.pod} was deleted while the watcher was not "
                    "watching (found missing on relist) before the task finished"
                )
                self._emit(t, tr.Step(EventType.FAILED, None, Reason.DELETED, msg), now, batch)
            self._after_terminal(t, batch, deleted=True)
        return batch

    def revoke(self, ids: Iterable[str], now: float) -> Batch:
        """Queueing ids the client revoked: end the ones with a live pod."""
        batch = Batch()
        for qid in ids:
            if qid in self.revoked:
                continue
            self.revoked.add(qid)
            t = self.tasks.get(qid)
            if t is not None and not t.terminal:
                batch.extend(self._revoke(t, now))
        return batch

    def sweep(self, now: float) -> Batch:
        """Fail fast: end tasks whose pod has been stuck Pending (Unschedulable or image
        pull) longer than its pool's startupTimeout, and delete the pod."""
        batch = Batch()
        for t in self.tasks.values():
            pool = self.pools.get(t.pool)
            if t.terminal or t.block is None or pool is None or t.created_at is None:
                continue
            waited = now - t.created_at
            if waited < pool.startup_timeout:
                continue
            msg = (
                f"pod {t.namespace}/{t.pod} stayed Pending for {waited:.0f}s "
                f"(pool {pool.name} startupTimeout {pool.startup_timeout:g}s): "
                f"{t.block.message}"
            )
            self._emit(t, tr.Step(EventType.FAILED, None, t.block.reason, msg), now, batch)
            self._finish(t, batch, delete_why=f"fail fast: {t.block.reason.value}")
        return batch

    def marked_done(self, qid: str) -> Batch:
        """The pod of a finished task was labelled done: it left the watch, forget it."""
        batch = Batch()
        t = self.tasks.get(qid)
        if t is not None and t.terminal:
            self._bury(t, batch)
        return batch

    def expire(self, now: float) -> Batch:
        """Drop tombstones older than `tombstone` seconds."""
        batch = Batch()
        for qid, since in list(self.tombstones.items()):
            if now - since >= self.tombstone:
                del self.tombstones[qid]
                batch.published[qid] = None
        return batch

    def in_flight(self) -> dict[tuple[str, str], int]:
        """Pods not yet terminal per (queue, pool)."""
        out: dict[tuple[str, str], int] = {}
        for t in self.tasks.values():
            if not t.terminal:
                out[(t.queue, t.pool)] = out.get((t.queue, t.pool), 0) + 1
        return out

    # --- internals -----------------------------------------------------------------------

    @staticmethod
    def _stamp(step: tr.Step, live: bool, now: float) -> float:
        """Seen live: the watch's clock. Caught up on (relist): the pod's own timestamp."""
        if step.type is EventType.DISPATCHED or not live:
            return step.at if step.at is not None else now
        return now

    def _emit(self, t: Tracked, step: tr.Step, at: float, batch: Batch) -> None:
        event = TaskEvent(
            type=step.type,
            id=t.id,
            key=t.key_model(),
            queue=t.queue,
            pool=t.pool,
            at=at,
            pod=t.pod,
            namespace=t.namespace,
            node=t.node,
            reason=step.reason,
            message=step.message,
            exit_code=step.exit_code,
        )
        prev = t.last_at if t.last is not None else None
        batch.events.append(Emitted(event, prev, t.queued_at))
        if step.type is EventType.POD_CREATED:
            t.created_at = at
        t.last, t.last_at = step.type, at

    def _revoke(self, t: Tracked, now: float) -> Batch:
        batch = Batch()
        msg = f"revoked by the executor; pod {t.namespace}/{t.pod} deleted"
        self._emit(t, tr.Step(EventType.FAILED, None, Reason.REVOKED, msg), now, batch)
        self._finish(t, batch, delete_why="revoked")
        return batch

    def _finish(self, t: Tracked, batch: Batch, delete_why: str) -> None:
        """The watcher itself ended the task: release its slot and delete its pod."""
        batch.published[t.id] = t.to_json()
        batch.releases.append((t.pool, t.id))
        batch.actions.append(Action("delete", t.id, t.pool, t.namespace, t.pod, delete_why))
        t.cleanup_sent = True

    def _after_terminal(self, t: Tracked, batch: Batch, deleted: bool, first: bool = False) -> None:
        """A terminal task: forget it once its pod is gone, else clean the pod up once."""
        if first:
            batch.releases.append((t.pool, t.id))
        if deleted:
            if not first:
                batch.releases.append((t.pool, t.id))  # idempotent; covers a crash before
            self._bury(t, batch)
            return
        if first:
            batch.published[t.id] = t.to_json()
        if not t.cleanup_sent:
            t.cleanup_sent = True
            batch.actions.append(self._cleanup(t))

    def _bury(self, t: Tracked, batch: Batch) -> None:
        """The finished task's pod is gone (or left the watch): keep only a tombstone."""
        del self.tasks[t.id]
        t.gone = True
        self.tombstones[t.id] = t.last_at
        batch.published[t.id] = t.to_json()

    def _duplicate(self, fresh: Tracked, going: bool) -> Batch:
        """A pod for a queueing that already finished and whose pod was cleaned up."""
        batch = Batch()
        if not going:
            log.warning(
                "pod %s/%s belongs to queueing %s, which already finished: deleting it",
                fresh.namespace,
                fresh.pod,
                fresh.id,
            )
            why = "duplicate pod of a finished queueing"
            batch.actions.append(
                Action("delete", fresh.id, fresh.pool, fresh.namespace, fresh.pod, why)
            )
        return batch

    def _cleanup(self, t: Tracked) -> Action:
        """KubernetesExecutor semantics: delete_worker_pods deletes finished pods;
        failed ones only with delete_worker_pods_on_failure too. Kept pods are labelled
        done so that they leave the watch."""
        pool = self.pools.get(t.pool) or PoolPolicy(t.pool, t.namespace)
        ok = t.last is EventType.SUCCEEDED
        delete = pool.delete_worker_pods and (ok or pool.delete_worker_pods_on_failure)
        kind: Literal["delete", "mark_done"] = "delete" if delete else "mark_done"
        return Action(kind, t.id, t.pool, t.namespace, t.pod, f"finished ({t.last})")
