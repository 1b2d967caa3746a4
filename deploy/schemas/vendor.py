"""Rebuild the vendored CRD schemas in this folder from the upstream CRD manifests.

Usage: python deploy/schemas/vendor.py CRD.yaml [CRD.yaml ...]

Each file written here, `<group>_<kind>_<version>.json`, is the openAPIV3Schema of one
served version of a CustomResourceDefinition with every `description` removed (they are
most of the bytes and validation never reads them), plus a `source` note. The tests in
tests/deploy/ validate our KEDA and Prometheus Operator objects against these offline.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent


def strip_descriptions(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: strip_descriptions(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [strip_descriptions(v) for v in node]
    return node


def vendor(crd_path: Path) -> list[Path]:
    crd = yaml.safe_load(crd_path.read_text())
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    written = []
    for version in crd["spec"]["versions"]:
        if not version.get("served", False):
            continue
        schema = strip_descriptions(version["schema"]["openAPIV3Schema"])
        out = HERE / f"{group}_{kind.lower()}_{version['name']}.json"
        doc = {"source": f"{crd_path.name} ({group}/{version['name']} {kind})", "schema": schema}
        out.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        written.append(out)
    return written


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        for path in vendor(Path(arg)):
            print(path.name)
