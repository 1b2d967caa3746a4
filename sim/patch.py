"""The three patch types kube-apiserver accepts besides server-side apply: JSON merge patch
(RFC 7386), strategic merge patch (merge keys and `$patch` directives for the core types)
and JSON patch (RFC 6902). Inputs are never changed; results share untouched sub-trees."""

from __future__ import annotations

import copy
from typing import Any

from kubequeue.sim import status

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY = "application/apply-patch+yaml"

# List fields of core/v1 + coordination/v1 merged by key under strategic merge patch (the
# `patchMergeKey` tags of k8s.io/api); any other list is replaced whole.
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
    "conditions": "type",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "addresses": "type",
    "resourceClaims": "name",
}
# Primitive lists merged as sets (`patchStrategy:"merge"` on a list of strings).
MERGED_PRIMITIVE_LISTS = frozenset({"finalizers"})


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return patch
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    if directive == "replace":
        return {k: v for k, v in patch.items() if k != "$patch"}
    out = dict(target) if isinstance(target, dict) else {}
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key.startswith("$setElementOrder/") or key in ("$retainKeys", "$patch"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            out[field] = [v for v in out.get(field) or [] if v not in value]
            continue
        if value is None:
            out.pop(key, None)
        elif isinstance(value, list) and isinstance(out.get(key), list):
            out[key] = _merge_list(key, out[key], value)
        elif isinstance(value, dict):
            merged = strategic_merge_patch(out.get(key), value)
            if merged is None:
                out.pop(key, None)
            else:
                out[key] = merged
        else:
            out[key] = value
    if isinstance(retain, list):
        out = {k: v for k, v in out.items() if k in retain}
    return out


def _merge_list(field: str, current: list, patch: list) -> list:
    if field in MERGED_PRIMITIVE_LISTS:
        return current + [v for v in patch if v not in current]
    key = MERGE_KEYS.get(field)
    if key is None or not all(isinstance(item, dict) for item in patch):
        return [item for item in patch if not _is_directive(item)]
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [item for item in patch if not _is_directive(item)]
    out = list(current)
    for item in patch:
        index = next(
            (
                i
                for i, old in enumerate(out)
                if isinstance(old, dict) and old.get(key) == item.get(key)
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                del out[index]
        elif index is None:
            out.append({k: v for k, v in item.items() if k != "$patch"})
        else:
            out[index] = strategic_merge_patch(out[index], item)
    return out


def _is_directive(item: Any) -> bool:
    return isinstance(item, dict) and "$patch" in item


# -- JSON patch ----------------------------------------------------------------------------------
def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ValueError(f"JSON pointer must start with '/': {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, parts: list[str]) -> tuple[Any, str]:
    node = doc
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node, parts[-1]


def _read(doc: Any, parts: list[str]) -> Any:
    node = doc
    for part in parts:
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def _write(doc: Any, kind: str, parts: list[str], value: Any, path: str) -> Any:
    """add / remove / replace at a pointer (the document itself when `parts` is empty)."""
    if not parts:
        if kind == "remove":
            raise ValueError("cannot remove the whole document")
        return value
    parent, last = _parent(doc, parts)
    if isinstance(parent, list):
        index = len(parent) if (last == "-" and kind == "add") else int(last)
        if kind == "add":
            parent.insert(index, value)
        elif kind == "remove":
            del parent[index]
        else:
            parent[index] = value
    elif kind == "replace" and last not in parent:
        raise ValueError(f"replace operation does not apply: doc is missing key: {path}")
    elif kind == "remove":
        del parent[last]
    else:
        parent[last] = value
    return doc


def _op(doc: Any, op: dict) -> Any:
    kind, path = op.get("op"), op.get("path", "")
    parts = _pointer(path)
    if kind == "test":
        if _read(doc, parts) != op.get("value"):
            raise ValueError(f"testing value {path} failed")
        return doc
    if kind in ("move", "copy"):
        source = _pointer(op.get("from", ""))
        value = copy.deepcopy(_read(doc, source))
        if kind == "move":
            doc = _write(doc, "remove", source, None, op.get("from", ""))
        return _write(doc, "add", parts, value, path)
    if kind not in ("add", "remove", "replace"):
        raise ValueError(f"Unexpected kind: {kind}")
    return _write(doc, kind, parts, op.get("value"), path)


def json_patch(target: Any, ops: Any) -> Any:
    if not isinstance(ops, list):
        raise status.bad_request("json patch must be a list of operations")
    doc = copy.deepcopy(target)
    try:
        for op in ops:
            doc = _op(doc, op)
    except (KeyError, IndexError, ValueError, TypeError, AttributeError) as e:
        raise status.ApiError(422, "Invalid", str(e) or repr(e)) from e
    return doc


def apply(content_type: str, target: dict, patch: Any) -> dict:
    """Apply a patch of the given Content-Type to an object."""
    if content_type == MERGE:
        result = merge_patch(target, patch)
    elif content_type == STRATEGIC:
        result = strategic_merge_patch(target, patch)
    elif content_type == JSON_PATCH:
        result = json_patch(target, patch)
    else:
        raise status.unsupported_media_type(content_type)
    if not isinstance(result, dict):
        raise status.bad_request("the patch did not produce an object")
    return result
