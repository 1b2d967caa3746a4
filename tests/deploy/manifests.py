"""Render the kustomize targets in deploy/ and validate what they produce.

Shared by the tests in this folder: `render(target)` runs `kubectl kustomize` once per
target and test session; `validate(obj)` checks one object offline against the Kubernetes
1.32 schemas (kubernetes-validate) or, for KEDA and Prometheus Operator kinds, against the
CRD schemas vendored in deploy/schemas/.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SCHEMAS = DEPLOY / "schemas"
KUBERNETES_VERSION = "1.32.0"

# Every kustomize target, and the cluster it is applied to.
HOME_TARGETS = ("base", "overlays/dev", "overlays/production", "overlays/remote-cluster")
REMOTE_TARGETS = ("overlays/remote-cluster/remote",)
TARGETS = HOME_TARGETS + REMOTE_TARGETS

Obj = dict[str, Any]


@functools.cache
def render(target: str) -> tuple[Obj, ...]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is not on PATH: the deploy checks render with `kubectl kustomize`"
    done = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / target)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"kubectl kustomize deploy/{target} failed:\n{done.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def of_kind(objs: tuple[Obj, ...], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: tuple[Obj, ...], kind: str, name: str) -> Obj:
    found = [o for o in of_kind(objs, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def container(deployment: Obj) -> Obj:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, f"{deployment['metadata']['name']}: expected one container"
    result: Obj = containers[0]
    return result


def _strict(node: Any) -> Any:
    """Reject unknown fields the way `kubectl apply --validate=strict` does: every object
    schema that lists its properties gets additionalProperties: false, unless it says it
    keeps unknown fields."""
    if isinstance(node, list):
        return [_strict(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def crd_schemas() -> dict[tuple[str, str], Obj]:
    """(apiVersion, kind) -> strict JSON schema, from deploy/schemas/*.json."""
    schemas = {}
    for path in sorted(SCHEMAS.glob("*_*_*.json")):
        group, kind, version = path.stem.split("_")
        doc = json.loads(path.read_text())
        schemas[(f"{group}/{version}", kind)] = _strict(doc["schema"])
    return schemas


def validation_errors(obj: Obj) -> Iterator[str]:
    """Every schema violation of one rendered object, as readable lines."""
    name = f"{obj['kind']}/{obj['metadata']['name']}"
    key = (obj["apiVersion"], obj["kind"].lower())
    if key in crd_schemas():
        validator = jsonschema.Draft7Validator(crd_schemas()[key])
        for error in validator.iter_errors(obj):
            where = ".".join(str(p) for p in error.absolute_path)
            yield f"{name}: {where}: {error.message}"
        return
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        where = ".".join(str(p) for p in error.path)
        yield f"{name}: {where}: {error.message}"
    except kubernetes_validate.SchemaNotFoundError:
        yield f"{name}: no schema for {obj['apiVersion']}; vendor its CRD in deploy/schemas"


def selects(selector: Obj | None, labels: dict[str, str]) -> bool:
    """Whether a Kubernetes label selector (matchLabels + matchExpressions) matches."""
    if not selector:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def pod_labels(deployment: Obj) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels
