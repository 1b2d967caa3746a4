"""One error tree for kubequeue. Every error a user can see derives from `KubeQueueError`."""

from __future__ import annotations


class KubeQueueError(Exception):
    """Root of every kubequeue error."""


class ConfigError(KubeQueueError):
    """A settings value or the pools file is invalid; the message names the place."""


class SpecError(KubeQueueError):
    """A TaskSpec or event could not be parsed (malformed JSON, unknown version, bad field)."""


class UnknownQueueError(KubeQueueError):
    """A task names an Airflow queue that no pool in the pools file maps."""


class RedisUnavailableError(KubeQueueError):
    """Redis/Valkey could not be reached."""


MAX_MESSAGE = 500


def truncate(text: str, limit: int = MAX_MESSAGE) -> str:
    """Shorten API/error text before it is logged or published: bodies can echo secrets
    (env values of a rejected pod), and a log line should stay one screen wide."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class KubeApiError(KubeQueueError):
    """A Kubernetes API call failed. `status` is the HTTP code (0 = the API could not be
    reached), `reason` the Status reason (AlreadyExists, Invalid, ...), `message` the API's
    own message (truncated), `retry_after` the server's Retry-After in seconds, if any."""

    retryable = False

    def __init__(
        self, status: int, reason: str = "", message: str = "", retry_after: float | None = None
    ) -> None:
        self.status = status
        self.reason = reason
        self.message = truncate(message or reason or f"HTTP {status}")
        self.retry_after = retry_after
        super().__init__(f"Kubernetes API error {status} {reason}: {self.message}".strip())


class KubeRetryableError(KubeApiError):
    """429 Too Many Requests or 5xx: the same call may succeed later."""

    retryable = True


class KubeUnreachableError(KubeRetryableError):
    """No HTTP answer at all: connection refused, reset, timed out, DNS."""


class KubeAlreadyExistsError(KubeApiError):
    """409 AlreadyExists on create (the object's name is taken)."""


class KubeConflictError(KubeApiError):
    """409 Conflict on update: the object changed since it was read (stale resourceVersion)."""


class KubeNotFoundError(KubeApiError):
    """404: the object (or namespace) does not exist."""


class KubeGoneError(KubeApiError):
    """410 Gone: a watch's resourceVersion is too old; list again."""


class KubeInvalidError(KubeApiError):
    """400 Bad Request or 422 Invalid: the object was rejected; retrying will not help."""


class KubeForbiddenError(KubeApiError):
    """401/403: the credentials may not do this."""


class PodBuildError(KubeQueueError):
    """A task's pod could not be built: its override or template cannot be merged, or it
    asks for something kubequeue must control (the pod's namespace)."""
