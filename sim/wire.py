"""The wire format shared by the handlers: API paths, content negotiation (JSON, Table,
PartialObjectMetadata), JSON bodies in and out, and Status errors."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from kubequeue.sim import discovery, status
from kubequeue.sim.discovery import ResourceInfo

_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})


@dataclass(frozen=True, slots=True)
class Target:
    """What an API path names."""

    info: ResourceInfo
    namespace: str | None
    name: str | None
    sub: str | None


def parse_path(path: str) -> Target | None:
    parts = path.strip("/").split("/")
    if parts[0] == "api" and len(parts) >= 3:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[0] == "apis" and len(parts) >= 4:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in _NAMESPACE_SUBRESOURCES:
        namespace, rest = rest[1], rest[2:]
    if not 1 <= len(rest) <= 3 or "" in rest:
        return None
    info = discovery.BY_PATH.get((group, version, rest[0]))
    if info is None or (namespace is not None and not info.namespaced):
        return None
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if sub is not None and sub not in info.subresources:
        return None
    return Target(info, namespace, name, sub)


def json_response(obj: Any, code: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=dumps(obj), status=code, content_type="application/json", headers=headers
    )


def error_response(error: status.ApiError) -> web.Response:
    return json_response(error.status(), error.code, error.headers or None)


try:  # orjson is several times faster on the hot path (every body in and out)
    import orjson

    def dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

    def loads(raw: bytes) -> Any:
        return orjson.loads(raw)

except ImportError:  # pragma: no cover - the stdlib does the same, slower

    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()

    def loads(raw: bytes) -> Any:
        return json.loads(raw)


# The last stored object encoded, with its JSON: a create's answer and the ADDED event of
# its watch fan-out send the same bytes. One tuple, rebound whole, so simulators in other
# threads of the process never see an object paired with another's bytes; holding the
# object keeps its id from being reused.
_last_encoded: tuple[Any, bytes] = (None, b"")


def encode_stored(obj: dict) -> bytes:
    """`dumps(obj)` for an object the store holds (never changed in place), reusing the
    encoding when the same object was the last one encoded."""
    global _last_encoded
    last = _last_encoded
    if last[0] is obj:
        return last[1]
    data = dumps(obj)
    _last_encoded = (obj, data)
    return data


MAX_BODY = 3 * 1024 * 1024  # kube-apiserver's request size limit


async def read_body(request: web.BaseRequest) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise status.ApiError(413, "RequestEntityTooLarge", f"limit is {MAX_BODY}", {})
    body = await request.content.read()
    if len(body) > MAX_BODY:
        raise status.ApiError(413, "RequestEntityTooLarge", f"limit is {MAX_BODY}", {})
    return body


@dataclass(frozen=True, slots=True)
class Format:
    """How to answer: "json" (the objects), "table" (meta.k8s.io Table) or "meta"
    (PartialObjectMetadata[List]); `version` is the meta.k8s.io version asked for."""

    kind: str = "json"
    version: str = "v1"


JSON = Format()
_FORMATS: dict[str, Format] = {}


def negotiate(accept: str | None) -> Format:
    """Pick the first acceptable media type of an Accept header (cached per header)."""
    if not accept:
        return JSON
    cached = _FORMATS.get(accept)
    if cached is None:
        cached = _FORMATS[accept] = _negotiate(accept)
    return cached


def _negotiate(accept: str) -> Format:
    for clause in accept.split(","):
        pieces = [p.strip() for p in clause.split(";")]
        media, params = pieces[0].lower(), dict(p.split("=", 1) for p in pieces[1:] if "=" in p)
        if media not in ("application/json", "*/*", "application/*"):
            continue
        as_, group, version = params.get("as"), params.get("g"), params.get("v", "v1")
        if as_ is None:
            return JSON
        if group != "meta.k8s.io" or version not in ("v1", "v1beta1"):
            continue
        if as_ == "Table":
            return Format("table", version)
        if as_ in ("PartialObjectMetadata", "PartialObjectMetadataList"):
            return Format("meta", version)
    return JSON


def parse_json(body: bytes, kind: str) -> Any:
    """Decode a request body; a malformed one is the 400 kube-apiserver sends."""
    try:
        return loads(body)
    except ValueError:
        pass  # orjson is stricter than the stdlib (NaN, huge ints): let the stdlib decide
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise status.bad_request(
            f"the object provided is unrecognized (must be of type {kind}): couldn't get "
            f"version/kind; json parse error: {go_json_error(body, e)} ({summarize(body)})"
        ) from e


def go_json_error(body: bytes, error: Exception) -> str:
    """Python's JSON error in the words of Go's encoding/json, which clients may match."""
    if not isinstance(error, json.JSONDecodeError):
        return "invalid UTF-8 in string"
    text, pos = error.doc, error.pos
    if pos >= len(text.rstrip()):
        return "unexpected end of JSON input"
    char = text[pos]
    if error.msg.startswith("Expecting property name"):
        return f"invalid character '{char}' looking for beginning of object key string"
    if error.msg.startswith("Expecting ',' delimiter") or error.msg.startswith("Expecting ':'"):
        where = "after object key" if "':'" in error.msg else "after object key:value pair"
        return f"invalid character '{char}' {where}"
    return f"invalid character '{char}' looking for beginning of value"


def summarize(body: bytes, limit: int = 30) -> str:
    if not body:
        return "<empty>"
    if body[:1] == b"{":
        text = body.decode(errors="replace")
        return text[:limit] + " ..." if len(text) > limit else text
    return body[:limit].hex() + (" ..." if len(body) > limit else "")
