"""Faults on demand: added latency, a fraction of requests answered 429 (with Retry-After) or
500/503, watch connections dropped, forced compaction (410 for old resourceVersions) and
nodes going NotReady. One seeded random generator decides, so a test that sends the same
requests in the same order sees the same faults."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Any, Literal

from kubequeue.errors import ConfigError
from kubequeue.sim import status

Scope = Literal["all", "writes", "pod-creates"]
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class FaultConfig:
    """What goes wrong, and how often. Fractions are probabilities per request (per
    delivered event for `watch_drop`). `scope` picks the requests that latency, 429 and 5xx
    apply to: every API request, writes only, or pod creates only. Discovery, /version and
    the admin endpoints are never faulted."""

    latency: float = 0.0  # seconds added before answering
    latency_jitter: float = 0.0  # plus a uniform 0..jitter
    throttle: float = 0.0  # fraction answered 429 TooManyRequests
    retry_after: int = 1  # seconds, sent in Retry-After and details.retryAfterSeconds
    error: float = 0.0  # fraction answered 500 or 503
    error_codes: tuple[int, ...] = (500, 503)
    watch_drop: float = 0.0  # chance that delivering one watch event ends the watch first
    scope: Scope = "all"

    def __post_init__(self) -> None:
        for name in ("throttle", "error", "watch_drop"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"fault {name}={value}: must be a fraction between 0 and 1")
        if self.latency < 0 or self.latency_jitter < 0 or self.retry_after < 0:
            raise ConfigError("fault latency, latency_jitter and retry_after must be >= 0")
        if self.throttle + self.error > 1.0:
            raise ConfigError("fault throttle + error must not exceed 1")
        if self.scope not in ("all", "writes", "pod-creates"):
            raise ConfigError(f"fault scope {self.scope!r}: use all, writes or pod-creates")
        bad = [c for c in self.error_codes if c not in (500, 502, 503, 504)]
        if bad or not self.error_codes:
            raise ConfigError(f"fault error_codes {self.error_codes}: pick from 500, 502, 503, 504")

    def replace(self, **changes: Any) -> FaultConfig:
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(f"unknown fault setting(s): {', '.join(unknown)}")
        if "error_codes" in changes:
            changes["error_codes"] = tuple(int(c) for c in changes["error_codes"])
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["error_codes"] = list(self.error_codes)
        return data

    @property
    def active(self) -> bool:
        return bool(self.latency or self.latency_jitter or self.throttle or self.error)


class Faults:
    """The live fault state of one simulator."""

    def __init__(self, config: FaultConfig, seed: int | None = None) -> None:
        self.config = config
        self.random = random.Random(seed)
        self.counts = {"throttled": 0, "errors": 0, "watch_drops": 0, "delayed": 0}

    def applies(self, method: str, resource: str | None, is_create: bool) -> bool:
        scope = self.config.scope
        if scope == "all":
            return True
        if scope == "writes":
            return method in WRITE_METHODS
        return is_create and resource == "pods"

    def delay(self) -> float:
        c = self.config
        if not (c.latency or c.latency_jitter):
            return 0.0
        self.counts["delayed"] += 1
        return c.latency + (self.random.uniform(0, c.latency_jitter) if c.latency_jitter else 0)

    def failure(self) -> status.ApiError | None:
        """The injected failure for this request, if any."""
        c = self.config
        if not (c.throttle or c.error):
            return None
        roll = self.random.random()
        if roll < c.throttle:
            self.counts["throttled"] += 1
            return status.too_many_requests(c.retry_after)
        if roll < c.throttle + c.error:
            self.counts["errors"] += 1
            code = self.random.choice(c.error_codes)
            if code == 500:
                return status.internal_error("injected fault (kubequeue sim)")
            return status.ApiError(code, _REASONS[code], "injected fault (kubequeue sim)", {})
        return None

    def drop_watch(self) -> bool:
        if not self.config.watch_drop:
            return False
        if self.random.random() < self.config.watch_drop:
            self.counts["watch_drops"] += 1
            return True
        return False


_REASONS = {502: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}
