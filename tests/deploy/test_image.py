"""The dispatcher/watcher image: multi-stage, non-root, and without Airflow — which only
works if nothing the dispatcher and watcher import needs a package outside kubequeue's base
dependencies (the image installs no extras)."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

from tests.deploy.manifests import DEPLOY, ROOT

DOCKERFILE = DEPLOY / "Dockerfile"
# What `kubequeue dispatcher` / `kubequeue watcher` load: every module of both packages.
PROBE = """
import importlib, json, pkgutil, sys
import kubequeue.cli
for package in ("kubequeue", "kubequeue.dispatcher", "kubequeue.watcher"):
    module = importlib.import_module(package)
    for info in pkgutil.iter_modules(module.__path__, package + "."):
        if package == "kubequeue" and info.name.split(".")[-1] in ("embedded_redis",):
            continue
        importlib.import_module(info.name)
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    rows = [line.strip() for line in text.splitlines()]
    return [
        (row.split()[0].upper(), row.partition(" ")[2])
        for row in rows
        if row and not row.startswith("#")
    ]


def test_dockerfile_is_multistage_and_non_root() -> None:
    steps = _instructions()
    stages = [args for op, args in steps if op == "FROM"]
    assert len(stages) >= 2, "build and runtime stages"
    final = steps[max(i for i, (op, _) in enumerate(steps) if op == "FROM") :]
    users = [args for op, args in final if op == "USER"]
    assert users, "the runtime stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "USER must be a numeric non-root uid"
    assert ("ENTRYPOINT", '["kubequeue"]') in final
    installs = " ".join(args for op, args in steps if op == "RUN" and "pip install" in args)
    assert "airflow" not in installs.replace("find_spec('airflow') is None", "")


def test_dockerfile_copies_every_installed_package() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    package_dir = re.search(r"package-dir = \{(.*?)\}", pyproject)
    assert package_dir
    folders = set(re.findall(r'= "([a-z_]+)"', package_dir.group(1)))
    copied = {args.split()[0].rstrip("/") for op, args in _instructions() if op == "COPY"}
    assert folders <= copied, folders - copied


def _base_closure() -> set[str]:
    """Distributions installed by `pip install kubequeue` (no extras), transitively."""
    seen: set[str] = set()
    todo = ["kubequeue"]
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        for raw in metadata.requires(name) or []:
            req = Requirement(raw)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def _imports(path: Path, nested: bool) -> set[str]:
    """Top-level module names a file imports (also those inside functions if `nested`)."""
    tree = ast.parse(path.read_text())
    nodes = ast.walk(tree) if nested else iter(tree.body)
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_dispatcher_and_watcher_import_only_base_dependencies() -> None:
    """Every import in dispatcher/ and watcher/, and every module-level import in the shared
    kubequeue/ package, comes from the stdlib or a package `pip install kubequeue` brings."""
    files = [(f, True) for c in ("dispatcher", "watcher") for f in (ROOT / c).rglob("*.py")]
    files += [(f, False) for f in (ROOT / "kubequeue").rglob("*.py")]
    allowed = _base_closure()
    owners = metadata.packages_distributions()
    for path, nested in files:
        for module in _imports(path, nested) - set(sys.stdlib_module_names) - {"kubequeue"}:
            dists = {d.lower().replace("_", "-") for d in owners.get(module, [module])}
            assert dists & allowed, (
                f"{path.relative_to(ROOT)} imports {module} ({sorted(dists)}), which the "
                "dispatcher/watcher image does not install: add it to [project] dependencies "
                "or import it only where an extra is installed"
            )


def test_dispatcher_and_watcher_load_no_airflow() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "airflow" not in json.loads(done.stdout), "the dispatcher/watcher image has no Airflow"
