"""Process mode: a container is its `command` + `args`, run as a local process.

The image is ignored. The environment is a minimal base (PATH with this Python's bin folder
first, so `python` is the simulator's interpreter; HOME, LANG, TZ, TMPDIR) plus the
container's `env` and `envFrom` (values, `$(VAR)` references, fieldRef, ConfigMap and
Secret keys), as a kubelet builds it. Each container runs in its own process group (its own
session), in `workingDir` when that folder exists here, else in a fresh temporary folder.
stdout and stderr go to the pod's log in the store as they arrive. Deleting the pod sends
SIGTERM to the group and SIGKILL after the grace period; shutdown SIGKILLs every group.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import codecs
import contextlib
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubequeue.sim.store import Store

log = logging.getLogger(__name__)

PodKey = tuple[str, str]
# (pod key, uid, container, exit code, termination message)
ExitHandler = Callable[[PodKey, str, str, int, str], None]
_REF = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")
_BASE_ENV = ("HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER")
_TAIL = 2048  # FallbackToLogsOnError keeps the last 2 KiB of output as the message
_LIVE: set[int] = set()  # process groups still running, for the exit hook


class StartError(Exception):
    """The container cannot start; the message is what a kubelet would report."""


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: known names are replaced, `$$` escapes a `$`,
    unknown references stay as written."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _REF.sub(sub, text)


def _field_ref(pod: Mapping[str, Any], path: str) -> str:
    meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.podIP": status.get("podIP"),
        "status.hostIP": status.get("hostIP"),
    }
    if path in simple:
        return str(simple[path] or "")
    m = re.match(r"^metadata\.(labels|annotations)\['(.+)'\]$", path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    raise StartError(f"unsupported fieldRef {path!r}")


def _lookup(store: Store, pod: Mapping[str, Any], kind: str, ref: Mapping[str, Any]) -> dict:
    """The data of a ConfigMap/Secret (Secret values decoded); {} when optional and absent."""
    resource = "configmaps" if kind == "configMap" else "secrets"
    obj = store.get(resource, pod["metadata"].get("namespace"), ref.get("name", ""))
    if obj is None:
        if ref.get("optional"):
            return {}
        raise StartError(f'{kind.replace("configMap", "configmap")} "{ref.get("name")}" not found')
    if resource == "configmaps":
        return dict(obj.get("data") or {})
    data = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
    return {**data, **(obj.get("stringData") or {})}


def _value_from(store: Store, pod: Mapping[str, Any], source: Mapping[str, Any]) -> str | None:
    if "fieldRef" in source:
        return _field_ref(pod, source["fieldRef"].get("fieldPath", ""))
    for kind in ("configMap", "secret"):
        ref = source.get(f"{kind}KeyRef")
        if ref is not None:
            data = _lookup(store, pod, kind, ref)
            if ref.get("key") not in data and not ref.get("optional"):
                raise StartError(f"couldn't find key {ref.get('key')} in {kind} {ref.get('name')}")
            return data.get(ref.get("key", ""))
    return None  # resourceFieldRef and others: not simulated


def container_env(
    store: Store, pod: Mapping[str, Any], container: Mapping[str, Any]
) -> dict[str, str]:
    """The environment a kubelet would give the container, on a minimal local base."""
    bindir = os.path.dirname(sys.executable)
    env = {k: os.environ[k] for k in _BASE_ENV if k in os.environ}
    env["PATH"] = os.pathsep.join([bindir, os.environ.get("PATH", "/usr/bin:/bin")])
    env["HOSTNAME"] = pod["metadata"]["name"]
    for source in container.get("envFrom") or ():
        for kind in ("configMap", "secret"):
            if f"{kind}Ref" in source:
                data = _lookup(store, pod, kind, source[f"{kind}Ref"])
                env.update({source.get("prefix", "") + k: str(v) for k, v in data.items()})
    for var in container.get("env") or ():
        if "valueFrom" in var:
            value = _value_from(store, pod, var["valueFrom"])
            if value is not None:
                env[var["name"]] = value
        else:
            env[var["name"]] = expand(str(var.get("value", "")), env)
    return env


def argv(container: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    words = [*(container.get("command") or ()), *(container.get("args") or ())]
    if not words:
        raise StartError(
            f'container "{container.get("name")}" has no command: in process mode the image '
            "is not run, so the pod must say what to execute (command and/or args)"
        )
    return [expand(str(w), env) for w in words]


@dataclass
class Running:
    uid: str
    container: str
    proc: asyncio.subprocess.Process
    workdir: str | None  # our temporary folder, removed afterwards
    tail: bytes = b""
    kill_handle: asyncio.TimerHandle | None = None
    terminating: bool = False
    readers: list[asyncio.Task[None]] = field(default_factory=list)


def _signal(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


@atexit.register
def _kill_leftovers() -> None:
    """A last guard: no container outlives the interpreter that started it."""
    for pgid in list(_LIVE):
        _signal(pgid, signal.SIGKILL)


class ProcessRunner:
    """Runs, signals and reaps process-mode containers; reports each exit to `on_exit`."""

    def __init__(self, store: Store, on_exit: ExitHandler) -> None:
        self.store = store
        self.on_exit = on_exit
        self.pods: dict[PodKey, dict[str, Running]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def has(self, key: PodKey) -> bool:
        return bool(self.pods.get(key))

    async def start(self, pod: Mapping[str, Any]) -> dict[str, str]:
        """Start every container of `pod`; returns {container: why it could not start}."""
        meta = pod["metadata"]
        key: PodKey = (meta.get("namespace") or "default", meta["name"])
        failed: dict[str, str] = {}
        for container in pod["spec"].get("containers") or ():
            try:
                running = await self._spawn(pod, container)
            except (StartError, OSError, ValueError) as e:  # ValueError: bad Secret data
                failed[container["name"]] = f"failed to start container: {e}"
                continue
            except Exception as e:  # a spec the API let through but we cannot run
                log.exception("process mode: starting %s/%s failed", *key)
                failed[container["name"]] = f"failed to start container: {e!r}"
                continue
            self.pods.setdefault(key, {})[container["name"]] = running
            task = asyncio.create_task(self._reap(key, running, container))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return failed

    async def _spawn(self, pod: Mapping[str, Any], container: Mapping[str, Any]) -> Running:
        env = container_env(self.store, pod, container)
        words = argv(container, env)
        workdir = container.get("workingDir")
        ours = None
        if not workdir or not os.path.isdir(workdir):
            workdir = ours = tempfile.mkdtemp(prefix=f"kubequeue-sim-{pod['metadata']['name']}-")
        try:
            proc = await asyncio.create_subprocess_exec(
                *words,
                env=env,
                cwd=workdir,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own process group: signals reach its children
            )
        except OSError as e:
            if ours:
                shutil.rmtree(ours, ignore_errors=True)
            if isinstance(e, FileNotFoundError | PermissionError):
                # as containerd words it, so the message reads like a real cluster's
                why = (
                    "executable file not found in $PATH"
                    if isinstance(e, FileNotFoundError)
                    else "permission denied"
                )
                raise StartError(
                    "OCI runtime create failed: unable to start container process: "
                    f'exec: "{words[0]}": {why}: unknown'
                ) from e
            raise
        _LIVE.add(proc.pid)
        return Running(pod["metadata"].get("uid", ""), container["name"], proc, ours)

    async def _pump(self, key: PodKey, running: Running, stream: asyncio.StreamReader) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        while chunk := await stream.read(65536):
            running.tail = (running.tail + chunk)[-_TAIL:]
            text = decoder.decode(chunk)
            if text:
                self.store.append_log(*key, running.container, text)
        rest = decoder.decode(b"", final=True)
        if rest:
            self.store.append_log(*key, running.container, rest)

    async def _reap(self, key: PodKey, running: Running, container: Mapping[str, Any]) -> None:
        proc = running.proc
        assert proc.stdout is not None and proc.stderr is not None
        pumps = [
            asyncio.create_task(self._pump(key, running, proc.stdout)),
            asyncio.create_task(self._pump(key, running, proc.stderr)),
        ]
        try:
            code = await proc.wait()
            # The container ends with its main process: what it left behind goes too.
            _signal(proc.pid, signal.SIGKILL)
            await asyncio.wait(pumps, timeout=5)
        finally:
            for pump in pumps:
                pump.cancel()
            _LIVE.discard(proc.pid)
            if running.kill_handle is not None:
                running.kill_handle.cancel()
            if running.workdir:
                shutil.rmtree(running.workdir, ignore_errors=True)
            pod = self.pods.get(key, {})
            if pod.get(running.container) is running:
                del pod[running.container]
                if not pod:
                    self.pods.pop(key, None)
        exit_code = code if code >= 0 else 128 - code
        message = ""
        if exit_code and container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            message = running.tail.decode(errors="replace")
        if self.store.get("pods", *key) is not None:
            self.store.close_log(*key, running.container)
        self.on_exit(key, running.uid, running.container, exit_code, message)

    def terminate(self, key: PodKey, grace: float) -> list[str]:
        """SIGTERM now, SIGKILL after `grace` seconds; returns the containers newly signalled."""
        signalled = []
        loop = asyncio.get_running_loop()
        for running in (self.pods.get(key) or {}).values():
            if running.terminating:
                continue
            running.terminating = True
            _signal(running.proc.pid, signal.SIGTERM)
            running.kill_handle = loop.call_later(
                max(grace, 0.0), _signal, running.proc.pid, signal.SIGKILL
            )
            signalled.append(running.container)
        return signalled

    def kill(self, key: PodKey, containers: Collection[str] | None = None) -> None:
        """SIGKILL the pod's containers (all by default): node lost, force delete, OOM."""
        for running in (self.pods.get(key) or {}).values():
            if containers is None or running.container in containers:
                running.terminating = True
                _signal(running.proc.pid, signal.SIGKILL)

    async def shutdown(self) -> None:
        for key in list(self.pods):
            self.kill(key)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=10)
