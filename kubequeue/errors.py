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
