"""Task logs: what the UI shows for a try, during and after the run.

- During the run, Airflow asks the executor (`get_task_log`, only while the try is
  RUNNING): kubequeue answers with a status line from the tasks hash and the tail of the
  pod's log, read through the pool's kube context, as the KubernetesExecutor does — unless
  the try's log file is already readable here (a log folder shared with the pods, as in the
  demo), which Airflow shows by itself; reading both would show every line twice.
- After the run, Airflow reads `<[logging] base_log_folder>/<log path>` or remote logging,
  which the task pods must write to, exactly as with the KubernetesExecutor (remote logging,
  or a log volume shared with the API server). The demo runs task processes on the same
  machine, so its pods simply write into the shared AIRFLOW_HOME/logs.
- A try that never ran its task (Unschedulable, ImagePullBackOff, invalid override, unknown
  queue, ...) has no log of its own and is never RUNNING: the executor appends the reason to
  that same file, as a structured line the UI renders like the task's own. It reaches the
  UI wherever the scheduler and the API server share the log folder; the same line is always
  in the scheduler's log and in the task's audit log.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis

from kubequeue import kube, tasks
from kubequeue.errors import KubeQueueError, truncate
from kubequeue.executor.config import ExecutorSettings, make_client
from kubequeue.messages import EventType, TaskRecord

if TYPE_CHECKING:
    from kubequeue.client import Client

log = logging.getLogger(__name__)


def note_path(base_log_folder: str, log_path: str) -> Path | None:
    """The try's log file, or None when the relative path would leave the folder."""
    base = Path(base_log_folder).resolve()
    path = (base / log_path).resolve()
    return path if path.is_relative_to(base) else None


def write_note(base_log_folder: str, log_path: str | None, message: str) -> Path | None:
    """Append `message` as an error line to the try's log file; never raises."""
    if not log_path or not base_log_folder:
        return None
    path = note_path(base_log_folder, log_path)
    if path is None:
        return None
    line = {
        "timestamp": datetime.now(UTC).isoformat(),
        "level": "error",
        "logger": "kubequeue.executor",
        "event": message,
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")
        os.chmod(path, 0o664)
    except OSError as e:
        log.warning("cannot write the kubequeue note to task log %s: %s", path, e)
        return None
    return path


def read_task_log(
    settings: ExecutorSettings, ti: Any, try_number: int
) -> tuple[list[str], list[str]]:
    """What `get_task_log` returns for a RUNNING try: (messages, [log text]).

    Where the try is comes from the tasks hash (Redis), never from a pod list: its pod,
    namespace and pool. The log itself is read through the pool's kube context, the last
    `running_pod_log_lines` lines of the `base` container. Never raises: the UI shows the
    messages instead. Always returns at least one message, which also tells Airflow not to
    try the worker's log server (a pod's hostname is not reachable from the API server)."""
    qid = str(getattr(ti, "external_executor_id", "") or "")
    if not qid:
        return ["kubequeue: this try has no queueing id yet"], []
    if try_number != ti.try_number:
        return [f"kubequeue: pods of earlier tries are gone (try {try_number})"], []
    try:
        client = make_client(settings)
    except KubeQueueError as e:
        return [f"kubequeue: {truncate(str(e), 300)}"], []
    try:
        record = tasks.get(client.redis, client.keys, [qid]).get(qid)
    except (KubeQueueError, redis.RedisError, OSError) as e:
        client.close()
        return [f"kubequeue: cannot read the task's record: {truncate(str(e), 300)}"], []
    try:
        if record is None:
            return [f"kubequeue: no record of {qid} (finished and forgotten, or lost)"], []
        messages = [status_line(record)]
        if not record.pod or record.state in _NO_LOG_YET:
            return messages, []
        if shared_log_file(ti, try_number):
            # Airflow reads that file itself; the pod's log would show every line twice.
            return messages, []
        text = _pod_log(settings, client, record)
        messages.append(
            f"kubequeue: last {settings.running_pod_log_lines} lines of the log of "
            f"pod {record.namespace}/{record.pod}"
        )
        return messages, [text]
    except Exception as e:  # the UI must get an answer, whatever the cluster says
        return [
            status_line(record) if record else "",
            f"kubequeue: cannot read the pod's log: {truncate(str(e), 300)}",
        ], []
    finally:
        client.close()


_NO_LOG_YET = frozenset(
    {"queued", EventType.DISPATCHED.value, EventType.POD_CREATED.value, EventType.SCHEDULED.value}
)


def shared_log_file(ti: Any, try_number: int) -> Path | None:
    """The try's log file when this process (the API server) can read it, i.e. when the
    task pods write into a log folder shared with it."""
    try:
        from airflow.configuration import conf
        from airflow.utils.log.file_task_handler import FileTaskHandler

        base = conf.get("logging", "base_log_folder")
        relative = FileTaskHandler(base)._render_filename(ti, try_number)
        path = note_path(base, relative)
    except Exception:  # no database session, odd template: fall back to the pod's log
        return None
    return path if path is not None and path.is_file() and path.stat().st_size else None


def status_line(record: TaskRecord) -> str:
    """Where the try stands, e.g. `kubequeue: pod ns/p on pool gpu: scheduled` or, for a
    pod that cannot start, `...: failed: ImagePullBackOff: Back-off pulling image x`."""
    where = f"pod {record.namespace}/{record.pod}" if record.pod else f"queue {record.queue!r}"
    pool = f" on pool {record.pool}" if record.pool else ""
    why = f": {record.reason.value}" if record.reason else ""
    message = f": {truncate(record.message, 300)}" if record.message else ""
    return f"kubequeue: {where}{pool}: {record.state}{why}{message}"


def _pod_log(settings: ExecutorSettings, client: Client, record: TaskRecord) -> str:
    from kubernetes.client import CoreV1Api

    pool = client.pools.pools.get(record.pool)
    context = pool.context if pool is not None else None
    api = kube.api_client(settings.kubeconfig or None, context, pool_size=1)
    try:
        # Raw bytes, decoded here: the client's own decoding depends on the content type.
        response = CoreV1Api(api).read_namespaced_pod_log(
            record.pod,
            record.namespace,
            container="base",
            tail_lines=settings.running_pod_log_lines,
            _request_timeout=kube.REQUEST_TIMEOUT,
            _preload_content=False,
        )
        raw: bytes = response.data
    except Exception as e:
        raise kube.api_error(e) from e
    finally:
        api.close()
    return raw.decode("utf-8", "replace")
