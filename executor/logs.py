"""Task logs: notes the executor adds to a try's log, and a running pod's log for the UI.

Airflow's log reader shows, for a finished or queued try, the file
`<[logging] base_log_folder>/<log path>` (or remote logs), and asks the executor's
`get_task_log` only while the try is RUNNING. A pod that never ran its task therefore has
no log at all unless someone writes one: the executor appends its reason (Unschedulable,
ImagePullBackOff, an invalid pod_override, ...) to that file, as a structured line the UI
renders like the task's own. It reaches the UI wherever the scheduler and the API server
share the log folder (the usual volume, or one machine as in the demo); the same line is
always in the scheduler's log and in the task's audit log.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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


def read_task_log(settings: Any, ti: Any, try_number: int) -> tuple[list[str], list[str]]:
    """Filled in with get_task_log; until then the UI shows the shared log folder only."""
    return [], []
