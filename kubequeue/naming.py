"""Names and labels that identify a task's pod, derived deterministically from its spec.

The pod name comes from the queueing's identity, so a duplicated dispatch of one queueing
gets 409 AlreadyExists (and counts as done) while a reschedule, which Airflow gives a new
identity, gets a new pod. Label values are made safe (<= 63 chars, [A-Za-z0-9._-], starting
and ending alphanumeric); long values are cut and suffixed with a hash so they stay unique.
"""

from __future__ import annotations

import hashlib
import re

# Labels/annotations kubequeue owns.
GROUP = "kubequeue.io"
LABEL_ID = f"{GROUP}/id"
LABEL_QUEUE = f"{GROUP}/queue"
LABEL_POOL = f"{GROUP}/pool"
LABEL_MANAGED = "app.kubernetes.io/managed-by"
MANAGED_BY = "kubequeue"
ANN_QUEUED_AT = f"{GROUP}/queued-at"
ANN_DISPATCHED_AT = f"{GROUP}/dispatched-at"
ANN_EXPIRES_AT = f"{GROUP}/expires-at"
ANN_KEY = f"{GROUP}/task-key"

# The selector that finds every pod kubequeue created.
POD_SELECTOR = f"{LABEL_MANAGED}={MANAGED_BY}"

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_DNS_UNSAFE = re.compile(r"[^a-z0-9-]+")


def _digest(value: str, n: int = 8) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:n]


def safe_label_value(value: str, limit: int = 63) -> str:
    """A label value Kubernetes accepts; values that had to change get a hash suffix."""
    cleaned = _UNSAFE.sub("_", value).strip("._-")
    if cleaned == value and len(value) <= limit:
        return value
    suffix = _digest(value)
    return f"{cleaned[: limit - len(suffix) - 1].rstrip('._-')}-{suffix}".lstrip("-")


def pod_name(queueing_id: str, dag_id: str, task_id: str) -> str:
    """`<dag>-<task>-<id digest>`: readable in kubectl, unique per queueing, <= 63 chars
    (a DNS-1123 label, so it also works as the pod's hostname)."""
    slug = _DNS_UNSAFE.sub("-", f"{dag_id}-{task_id}".lower()).strip("-")[:42].rstrip("-")
    return f"{slug or 'task'}-{_digest(queueing_id, 20)}"
