"""Kubernetes client helpers shared by the dispatcher and the watcher.

- `api_client(kubeconfig, context)`: one official-client `ApiClient` per (kubeconfig, context),
  in-cluster when no kubeconfig is given. urllib3's own retries are switched off: retrying
  is decided in one place, by `retrying()` (tenacity), so a refused connection surfaces as
  `KubeUnreachableError` at once instead of after urllib3's three silent attempts.
- `api_error(exc)`: THE mapping from whatever a client raised (ApiException of the sync or
  the asyncio client, urllib3/aiohttp/socket errors) to the `KubeApiError` tree in
  kubequeue.errors. Nothing else looks at HTTP status codes.
- `retry_after(headers)`: the server's Retry-After (seconds or HTTP date) in seconds.
- `retrying(...)`: a tenacity policy for 429/5xx/unreachable that waits Retry-After when
  the server sent one, else the next delay of a configurable backoff sequence;
  `retry_call(fn, ...)`: one call under that policy, built only once a retry is needed.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import kubernetes
import tenacity

from kubequeue.errors import (
    ConfigError,
    KubeAlreadyExistsError,
    KubeApiError,
    KubeConflictError,
    KubeForbiddenError,
    KubeGoneError,
    KubeInvalidError,
    KubeNotFoundError,
    KubeRetryableError,
    KubeUnreachableError,
    truncate,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# Seconds between attempts of a retryable call when the server sent no Retry-After; the last
# value repeats. Short first steps because a 503 from an overloaded API server usually clears
# in well under a second; capped so a long outage still gets probed every few seconds.
DEFAULT_BACKOFFS: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0, 2.0, 4.0, 8.0)
# Never sleep longer than this for one Retry-After, whatever the server says.
MAX_RETRY_AFTER = 60.0
# (connect, read) timeouts for one request, seconds.
REQUEST_TIMEOUT = (5.0, 30.0)


def api_client(
    kubeconfig: str | None, context: str | None = None, *, pool_size: int = 16
) -> kubernetes.client.ApiClient:
    """A sync ApiClient for one pool's cluster. `kubeconfig` None = in-cluster service
    account (then `context` must be None too). `pool_size` should be at least the number of
    threads that call through it, or urllib3 discards connections."""
    configuration = kubernetes.client.Configuration()
    try:
        if kubeconfig is None:
            if context is not None:
                raise ConfigError(
                    f"kube context {context!r} is set but no kubeconfig is: set "
                    "KUBEQUEUE_KUBECONFIG (--kubeconfig) or use context: null for in-cluster"
                )
            kubernetes.config.load_incluster_config(client_configuration=configuration)
        else:
            kubernetes.config.load_kube_config(
                config_file=kubeconfig,
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
    except kubernetes.config.ConfigException as e:
        if kubeconfig is None:
            raise ConfigError(
                f"cannot load in-cluster config: {truncate(str(e), 300)} (outside a pod, set "
                "KUBEQUEUE_KUBECONFIG or --kubeconfig)"
            ) from e
        ctx = f" (context {context!r})" if context else ""
        raise ConfigError(
            f"cannot load kubeconfig {kubeconfig}{ctx}: {truncate(str(e), 300)}"
        ) from e
    except OSError as e:
        raise ConfigError(f"cannot read kubeconfig {kubeconfig}: {e.strerror or e}") from e
    configuration.retries = False
    configuration.connection_pool_maxsize = max(pool_size, 4)
    return kubernetes.client.ApiClient(configuration)


async def async_api_client(kubeconfig: str | None, context: str | None = None) -> Any:
    """The same for kubernetes_asyncio (imported here, lazily: it is an optional
    dependency). Returns a kubernetes_asyncio.client.ApiClient."""
    import kubernetes_asyncio

    configuration = kubernetes_asyncio.client.Configuration()
    try:
        if kubeconfig is None:
            if context is not None:
                raise ConfigError(f"kube context {context!r} is set but no kubeconfig is")
            kubernetes_asyncio.config.load_incluster_config(client_configuration=configuration)
        else:
            await kubernetes_asyncio.config.load_kube_config(
                config_file=kubeconfig,
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
    except kubernetes_asyncio.config.ConfigException as e:
        raise ConfigError(f"cannot load kubeconfig {kubeconfig}: {truncate(str(e), 300)}") from e
    except OSError as e:
        raise ConfigError(f"cannot read kubeconfig {kubeconfig}: {e.strerror or e}") from e
    return kubernetes_asyncio.client.ApiClient(configuration)


def _status_body(body: Any) -> tuple[str, str]:
    """(reason, message) from a Kubernetes Status body; the raw text when it is not one."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not body:
        return "", ""
    try:
        status = json.loads(body)
    except (TypeError, ValueError):
        return "", str(body)
    if not isinstance(status, dict):
        return "", str(body)
    return str(status.get("reason") or ""), str(status.get("message") or "")


def _is_transport_error(exc: BaseException) -> bool:
    if isinstance(exc, OSError | TimeoutError):
        return True
    # urllib3 and aiohttp errors, matched by module so neither has to be importable here.
    module = type(exc).__module__ or ""
    return module.startswith(("urllib3", "aiohttp"))


_BY_STATUS: dict[int, type[KubeApiError]] = {
    400: KubeInvalidError,
    401: KubeForbiddenError,
    403: KubeForbiddenError,
    404: KubeNotFoundError,
    410: KubeGoneError,
    422: KubeInvalidError,
    429: KubeRetryableError,
}


def api_error(exc: BaseException) -> KubeApiError:
    """Map an exception from a Kubernetes client call to the kubequeue error tree. Raise the
    result `from exc`. Unknown exception types map to KubeApiError(status=-1) so a caller
    never has to catch anything else around an API call."""
    if isinstance(exc, KubeApiError):
        return exc
    status = getattr(exc, "status", None)
    if isinstance(status, int) and status > 0 and hasattr(exc, "headers"):
        reason, message = _status_body(getattr(exc, "body", None))
        reason = reason or str(getattr(exc, "reason", "") or "")
        wait = retry_after(getattr(exc, "headers", None))
        if status == 409:
            cls: type[KubeApiError] = (
                KubeAlreadyExistsError if reason == "AlreadyExists" else KubeConflictError
            )
        elif status >= 500:
            cls = KubeRetryableError
        else:
            cls = _BY_STATUS.get(status, KubeApiError)
        return cls(status, reason, message, wait)
    if _is_transport_error(exc):
        return KubeUnreachableError(0, type(exc).__name__, str(exc))
    return KubeApiError(-1, type(exc).__name__, str(exc))


def retry_after(headers: Mapping[str, Any] | Any, now: float | None = None) -> float | None:
    """Seconds the server asked us to wait (Retry-After: delta-seconds or HTTP-date), capped
    at MAX_RETRY_AFTER; None when absent or unreadable."""
    if not headers:
        return None
    value = None
    for name, v in headers.items():
        if str(name).lower() == "retry-after":
            value = str(v).strip()
            break
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


class _wait_backoff(tenacity.wait.wait_base):
    """Retry-After when the last error carried one, else backoffs[attempt-1] (last repeats)."""

    def __init__(self, backoffs: Sequence[float]) -> None:
        self.backoffs = tuple(backoffs) or DEFAULT_BACKOFFS

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, KubeApiError) and exc.retry_after is not None:
            return exc.retry_after
        i = min(retry_state.attempt_number - 1, len(self.backoffs) - 1)
        return self.backoffs[i]


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, KubeApiError) and exc.retryable


def retrying(
    *,
    attempts: int | None = 8,
    deadline: float | None = None,
    backoffs: Sequence[float] = DEFAULT_BACKOFFS,
    stop_when: Callable[[], bool] | None = None,
    sleep: Callable[[float], object] | None = None,
    what: str = "Kubernetes API call",
) -> tenacity.Retrying:
    """A tenacity policy for calls that raise KubeApiError (wrap client calls with
    `api_error` first): retries retryable errors only, logs `attempt #n/N`, re-raises the
    last error. `deadline` bounds total seconds; `stop_when` ends early (e.g. on SIGTERM);
    `sleep` replaces time.sleep (e.g. an Event's wait, so a stop cuts a long Retry-After)."""
    return _policy(attempts, deadline, backoffs, stop_when, sleep, what, None)


def retry_call(
    fn: Callable[[], T],
    *,
    attempts: int | None = 8,
    deadline: float | None = None,
    backoffs: Sequence[float] = DEFAULT_BACKOFFS,
    stop_when: Callable[[], bool] | None = None,
    sleep: Callable[[float], object] | None = None,
    what: str = "Kubernetes API call",
) -> T:
    """`retrying(...)(fn)` with the same attempts, waits, stops, log lines and errors, but
    the policy is only built once the first attempt failed with a retryable error: building
    and running a tenacity policy costs more CPU than a pod create's own Python work, and
    nearly every call succeeds (or fails for good) at once."""
    started = time.monotonic()
    try:
        return fn()
    except KubeApiError as e:
        if not e.retryable:
            raise
        first: KubeApiError | None = e

    def attempt() -> T:
        # The policy's attempt #1 is the one already made: it gets that attempt's error,
        # so its waits (Retry-After), stops and attempt numbers are the ones a policy
        # wrapped around fn from the start would have.
        nonlocal first
        if first is not None:
            error, first = first, None
            raise error
        return fn()

    policy = _policy(attempts, deadline, backoffs, stop_when, sleep, what, started)
    return policy(attempt)


def _policy(
    attempts: int | None,
    deadline: float | None,
    backoffs: Sequence[float],
    stop_when: Callable[[], bool] | None,
    sleep: Callable[[float], object] | None,
    what: str,
    started: float | None,
) -> tenacity.Retrying:
    """retrying()'s policy; `deadline` counts from `started` (a time.monotonic()) when given,
    else from the policy's first attempt."""
    stops: list[tenacity.stop.stop_base] = []
    if attempts is not None:
        stops.append(tenacity.stop_after_attempt(attempts))
    if deadline is not None and started is not None:
        stops.append(_StopAfter(deadline, started))
    elif deadline is not None:
        stops.append(tenacity.stop_after_delay(deadline))
    if stop_when is not None:
        stops.append(_StopWhen(stop_when))
    total = "∞" if attempts is None else str(attempts)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "%s failed (attempt #%d/%s), retrying in %.2fs: %s",
            what,
            state.attempt_number,
            total,
            state.next_action.sleep if state.next_action else 0.0,
            exc,
        )

    extra: dict[str, Any] = {} if sleep is None else {"sleep": sleep}
    return tenacity.Retrying(
        **extra,
        retry=tenacity.retry_if_exception(_is_retryable),
        wait=_wait_backoff(backoffs),
        stop=tenacity.stop_any(*stops) if stops else tenacity.stop_never,
        before_sleep=before_sleep,
        reraise=True,
    )


class _StopWhen(tenacity.stop.stop_base):
    def __init__(self, check: Callable[[], bool]) -> None:
        self.check = check

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return self.check()


class _StopAfter(tenacity.stop.stop_base):
    """tenacity.stop_after_delay, counting from `started` instead of the policy's start."""

    def __init__(self, deadline: float, started: float) -> None:
        self.deadline, self.started = deadline, started

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        ended = retry_state.outcome_timestamp
        return (time.monotonic() if ended is None else ended) - self.started >= self.deadline


def check_api(client: kubernetes.client.ApiClient, timeout: float = 3.0) -> None:
    """Raise KubeApiError unless the API server answers GET /version (for /readyz)."""
    try:
        kubernetes.client.VersionApi(client).get_code(_request_timeout=timeout)
    except Exception as e:
        raise api_error(e) from e
