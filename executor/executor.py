"""KubeQueueExecutor: Airflow 3 workloads in, TaskSpecs to Redis, task events back.

Per heartbeat the base class calls `_process_workloads` (which only builds specs) and then
`sync()`, which is four steps: read new events from the stream cursor, act on them, submit
every pending spec in one pipeline, and forget finished tasks. Nothing here calls Kubernetes
or scans the running tasks: each step costs O(new events + new specs).

Redis being unreachable (at start or later) is logged, not raised: specs wait in memory and
go out on the first heartbeat after it answers again, so the scheduler keeps scheduling.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import redis
from airflow.configuration import conf
from airflow.executors.base_executor import BaseExecutor, get_execution_api_server_url
from airflow.utils.state import TaskInstanceState

from kubequeue.errors import KubeQueueError, RedisUnavailableError, SpecError
from kubequeue.executor import config, logs, specs, states
from kubequeue.executor.ledger import Entry, Ledger
from kubequeue.executor.outage import OutageLog
from kubequeue.messages import TaskEvent, TaskRecord, TaskSpec

if TYPE_CHECKING:
    from airflow.executors.workloads import ExecutorWorkload
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.taskinstancekey import TaskInstanceKey

    from kubequeue.client import Client

OUTAGE = (redis.RedisError, RedisUnavailableError, OSError)


class KubeQueueExecutor(BaseExecutor):
    """Runs each task in its own Kubernetes pod through kubequeue's Redis queues."""

    pre_assigns_external_executor_id = True  # a fresh id per queueing: pod name, spec id
    supports_ad_hoc_ti_run = True
    is_local = False
    serve_logs = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Cheap on purpose: the API server constructs executors just to call get_task_log.
        super().__init__(*args, **kwargs)
        self.settings = config.read(self.conf)
        if self.settings.parallelism:
            self.parallelism = self.settings.parallelism
        self._client: Client | None = None
        self._cursor: str | None = None  # None until Redis answered once
        self._ledger = Ledger()
        self._pending: list[TaskSpec] = []  # built, not yet submitted (incl. relaunches)
        self._finished: list[str] = []  # handled terminal ids to forget in the tasks hash
        self._revoked: set[str] = set()
        self._defaults: specs.SpecDefaults | None = None
        self._outage = OutageLog(self.log)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self.log.info(
            "KubeQueueExecutor starting: redis %s (prefix %r), pools file %s",
            config.redact(self.settings.redis_url),
            self.settings.redis_prefix,
            self.settings.pools_file,
        )
        self._connect()

    def end(self) -> None:
        """Submit what is pending and close; running pods carry on (and are adopted)."""
        if self._connect():
            try:
                self._submit_pending()
                self._forget_finished()
            except OUTAGE as e:
                self._outage.report("could not flush pending specs at shutdown", e)
        if self._pending:
            self.log.warning(
                "%d task(s) were never submitted; the scheduler re-queues them after "
                "[scheduler] task_queued_timeout",
                len(self._pending),
            )
        if self._client is not None:
            self._client.close()
            self._client = None

    def terminate(self) -> None:
        self.end()

    def _connect(self) -> bool:
        """Make sure the client exists and the stream cursor is known; False while Redis or
        the pools file is unavailable (the reason is logged, rate-limited)."""
        if self._cursor is not None:
            return True
        try:
            if self._client is None:
                self._client = config.make_client(self.settings)
            self._client.ping()
            self._cursor = self._client.latest_cursor()
            if len(self._ledger):  # tasks adopted or queued while Redis was away
                self._handle(self._recorded_events())
        except (KubeQueueError, *OUTAGE) as e:
            self._outage.report("cannot reach kubequeue", e)
            return False
        self._outage.recovered()
        return True

    # -- queueing --------------------------------------------------------------------------

    def _process_workloads(self, workloads: Sequence[ExecutorWorkload]) -> None:
        from airflow.executors.workloads import ExecuteTask

        now = time.time()
        for workload in workloads:
            if not isinstance(workload, ExecuteTask):
                raise RuntimeError(f"{type(self).__name__} cannot run {type(workload).__name__}")
            key = workload.ti.key
            self.queued_tasks.pop(key, None)
            self.running.add(key)
            qid = workload.ti.external_executor_id or self._assign_id(key)
            try:
                spec = specs.build(workload, qid, self._spec_defaults(), now)
            except SpecError as e:
                self._fail_unstarted(key, workload.log_path, f"task not submitted: {e}")
                continue
            self._ledger.add(qid, Entry(key=key, spec=spec, log_path=workload.log_path))
            self._pending.append(spec)

    def _assign_id(self, key: TaskInstanceKey) -> str:
        """Only `airflow dags test` queues without an id; give one and tell Airflow."""
        qid = str(uuid.uuid4())
        self.change_state(key, TaskInstanceState.QUEUED, info=qid, remove_running=False)
        return qid

    def _spec_defaults(self) -> specs.SpecDefaults:
        if self._defaults is None:
            self._defaults = specs.SpecDefaults(
                core_executor=conf.get("core", "executor"),
                execution_api_url=self.settings.execution_api_server_url
                or get_execution_api_server_url(self.conf),
                task_queued_timeout=conf.getfloat("scheduler", "task_queued_timeout"),
                worker_env=self.settings.worker_env,
            )
        return self._defaults

    # -- sync: read, act, submit, forget -----------------------------------------------------

    def sync(self) -> None:
        if not self._connect():
            return
        try:
            self._handle(self._read_events())
            self._submit_pending()
            self._forget_finished()
        except OUTAGE as e:
            self._outage.report("lost kubequeue's Redis", e)
        else:
            self._outage.recovered()

    def _read_events(self) -> list[TaskEvent]:
        """New events since the cursor, at most max_event_batches batches. If the stream was
        trimmed past the cursor (this scheduler fell ~maxlen events behind), the tasks hash
        supplies the last state of every tracked task first."""
        assert self._client is not None and self._cursor is not None
        events: list[TaskEvent] = []
        size = self.settings.event_batch_size
        for i in range(self.settings.max_event_batches):
            cursor = self._cursor
            page = self._client.events_page(cursor, size, skip=states.IGNORED_TYPES)
            self._cursor = page.cursor
            if i == 0 and page.behind and self._client.trimmed_past(cursor):
                self.log.warning("kubequeue events were trimmed unread; reconciling from records")
                events.extend(self._recorded_events())
            events.extend(page.events)
            if not page.full:
                break
        return events

    def _recorded_events(self) -> list[TaskEvent]:
        """The last state of each tracked queueing, from the tasks hash, as events."""
        assert self._client is not None
        records = self._client.in_flight()
        return [
            e for qid in self._ledger if (e := states.record_event(records.get(qid))) is not None
        ]

    def _handle(self, events: Sequence[TaskEvent]) -> None:
        for event in events:
            entry = self._ledger.get(event.id)
            if entry is None:
                if event.terminal and event.id in self._revoked:
                    self._revoked.discard(event.id)
                    self._finished.append(event.id)
                continue  # another scheduler's task, or one already handled
            can_relaunch = (
                entry.spec is not None
                and entry.relaunches < self.settings.launch_retries
                and not entry.spec.expired()
            )
            action = states.decide(
                event.type,
                event.reason,
                started=entry.started,
                can_relaunch=can_relaunch,
                relaunch_reasons=self.settings.launch_retry_reasons,
            )
            self._act(action, event, entry)

    def _act(self, action: states.Action, event: TaskEvent, entry: Entry) -> None:
        if action is states.Action.NOTE:
            if event.type in states.STARTED_TYPES:
                self._ledger.mark_started(event.id)
        elif action is states.Action.RUNNING:
            self._ledger.mark_started(event.id)
            self.running_state(entry.key, info=event.id)
        elif action is states.Action.SUCCESS:
            self._ledger.pop(event.id)
            self._finished.append(event.id)
            self.success(entry.key)
        elif action is states.Action.RELAUNCH:
            self._relaunch(event, entry)
        else:
            self._ledger.pop(event.id)
            self._finished.append(event.id)
            message = states.describe_event(event)
            if entry.started:
                self.log.warning("Task %s failed: %s", entry.key, message)
                self.fail(entry.key, info=message)
            else:
                self._fail_unstarted(entry.key, entry.log_path, message)

    def _relaunch(self, event: TaskEvent, entry: Entry) -> None:
        assert entry.spec is not None
        new_id, n = specs.relaunch_id(event.id)
        spec = entry.spec.model_copy(update={"id": new_id, "queued_at": time.time()})
        self._ledger.pop(event.id)
        self._finished.append(event.id)
        self._ledger.add(new_id, Entry(entry.key, spec, entry.log_path, relaunches=n))
        self._pending.append(spec)
        # QUEUED with the new id: Airflow stores it as external_executor_id (for adoption).
        self.change_state(entry.key, TaskInstanceState.QUEUED, info=new_id, remove_running=False)
        self.log.warning(
            "[launch %d of %d] %s for task %s ended before the task started; launching it "
            "again as %s without using a try",
            n,
            self.settings.launch_retries,
            states.describe_event(event),
            entry.key,
            new_id,
        )

    def _fail_unstarted(self, key: TaskInstanceKey, log_path: str | None, message: str) -> None:
        """A try that never ran its task: say why wherever an operator looks."""
        text = f"kubequeue: the task did not start: {message}"
        self.log.error("Task %s: %s", key, text)
        self.log_task_event(event="kubequeue task did not start", extra=text, ti_key=key)
        logs.write_note(conf.get("logging", "base_log_folder"), log_path, text)
        self.fail(key, info=text)

    def _submit_pending(self) -> None:
        if not self._pending:
            return
        assert self._client is not None
        batch, self._pending = self._pending, []
        try:
            rejected = self._client.submit(batch)
        except BaseException:
            self._pending = batch + self._pending
            raise
        self._handle(rejected)

    def _forget_finished(self) -> None:
        if self._finished:
            assert self._client is not None
            self._client.forget(self._finished)
            self._finished = []

    # -- adoption and revocation -----------------------------------------------------------

    def try_adopt_task_instances(self, tis: Sequence[TaskInstance]) -> Sequence[TaskInstance]:
        """Adopt every task whose queueing kubequeue still knows (queued in Redis, pod pending
        or running, or already finished and not yet reported); nothing is submitted again.
        The rest never reached Redis: Airflow resets and re-queues them."""
        if not tis:  # Airflow asks every orphaned_tasks_check_interval, mostly with none
            return tis
        with_id = [ti for ti in tis if ti.external_executor_id]
        not_adopted = [ti for ti in tis if not ti.external_executor_id]
        try:
            if not self._connect():
                raise RedisUnavailableError("kubequeue is unreachable")
            assert self._client is not None
            records: dict[str, TaskRecord] | None = self._client.in_flight()
        except (KubeQueueError, *OUTAGE) as e:
            # Resetting would start a second pod beside one that may be running: adopt
            # blindly instead; Airflow's own timeouts catch what was really lost.
            self.log.warning("adopting %d task(s) without checking them: %s", len(with_id), e)
            records = None
        adopted_events: list[TaskEvent] = []
        for ti in with_id:
            qid = str(ti.external_executor_id)
            record = None if records is None else records.get(qid)
            if records is not None and record is None:
                not_adopted.append(ti)
                continue
            started = record is not None and record.state in states.STARTED_TYPES
            self._ledger.add(qid, Entry(ti.key, None, None, started, specs.relaunches(qid)))
            self.running.add(ti.key)
            if (event := states.record_event(record)) is not None:
                adopted_events.append(event)
        self._handle(adopted_events)
        self.log.info(
            "Adopted %d task(s), %d not adoptable", len(tis) - len(not_adopted), len(not_adopted)
        )
        return not_adopted

    def revoke_task(self, *, ti: TaskInstance) -> None:
        """Drop the task's queued spec or delete its pod (the watcher does, on revoke);
        Airflow decides the task's state, so no event is reported here."""
        try:
            # Its own id, plus a relaunch's id Airflow may not have stored yet.
            qid = str(ti.external_executor_id or "")
            ids = sorted({qid, *self._ledger.ids_for(ti.key)} - {""})
            for i in ids:
                self._ledger.pop(i)
                self._pending = [s for s in self._pending if s.id != i]
                if self._client is not None:
                    self._client.revoke(i)
                    self._revoked.add(i)
            self.running.discard(ti.key)
            self.log.info("Revoked task %s (%s)", ti.key, ", ".join(ids) or "not tracked")
        except Exception:
            self.log.exception("could not revoke task %s", ti.key)

    # -- logs and CLI ----------------------------------------------------------------------

    def get_task_log(self, ti: TaskInstance, try_number: int) -> tuple[list[str], list[str]]:
        return logs.read_task_log(self.settings, ti, try_number)

    @staticmethod
    def get_cli_commands() -> list[Any]:
        from kubequeue.executor.cli import get_cli_commands

        return get_cli_commands()
