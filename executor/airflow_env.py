"""Run a real Airflow 3 on this machine: its environment, its processes, its REST API.

Used by `kubequeue demo` and the end-to-end tests. SQLite in a throw-away AIRFLOW_HOME;
`airflow db migrate`, then api-server, scheduler and dag-processor as separate processes
(`airflow standalone` would force the LocalExecutor). The REST API is unauthenticated
(simple auth manager, everyone admin) and listens on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubequeue.executor.procs import Proc, ProcessError, Processes, http_ok, wait_for

EXECUTOR = "kubequeue.executor.KubeQueueExecutor"


@dataclass(frozen=True)
class AirflowSetup:
    home: Path
    dags_folder: Path
    api_port: int
    executor: str = EXECUTOR
    kubequeue: Mapping[str, str] = field(default_factory=dict)  # [kubequeue] option -> value
    extra: Mapping[str, str] = field(default_factory=dict)  # more AIRFLOW__* variables
    jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def log_folder(self) -> Path:
        return self.home / "logs"

    def worker_env(self) -> dict[str, str]:
        """What a task process needs beyond what kubequeue puts in every pod. On a real
        cluster the image's airflow.cfg or the pod template provides it; the simulated
        kubelet starts processes with a bare environment."""
        return {
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.log_folder),
            # A worker idles this long after its task: 1 s instead of 5 s per pod.
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
            # One API server process on a busy 2-core machine can take longer than the
            # default 5 s to answer; a task should not die of that.
            "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
        }

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of every Airflow process (and `airflow` CLI call)."""
        env = {
            k: v for k, v in (base if base is not None else os.environ).items()
            if not k.startswith("AIRFLOW")
        }  # fmt: skip
        env.update(self.worker_env())
        env.update(
            {
                "AIRFLOW__CORE__EXECUTOR": self.executor,
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home}/airflow.db",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
                "AIRFLOW__API__BASE_URL": self.url,
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API_AUTH__JWT_SECRET": self.jwt_secret,
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
                "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "5",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "AIRFLOW__KUBEQUEUE__WORKER_ENV": json.dumps(self.worker_env()),
            }
        )
        for option, value in self.kubequeue.items():
            env[f"AIRFLOW__KUBEQUEUE__{option.upper()}"] = value
        for name, value in self.extra.items():
            env[name] = value
        return env


def airflow_bin() -> str:
    return str(Path(sys.executable).with_name("airflow"))


def migrate(setup: AirflowSetup, timeout: float = 180.0) -> None:
    """`airflow db migrate` into the setup's SQLite database."""
    setup.home.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [airflow_bin(), "db", "migrate"],
        env=setup.env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-25:])
        raise ProcessError(f"airflow db migrate failed ({done.returncode}):\n{tail}")


def start_api_server(procs: Processes, setup: AirflowSetup) -> Proc:
    argv = [airflow_bin(), "api-server", "--port", str(setup.api_port), "--workers", "1"]
    return procs.start("api-server", argv, setup.env())


def start_scheduler(procs: Processes, setup: AirflowSetup, name: str = "scheduler") -> Proc:
    return procs.start(name, [airflow_bin(), "scheduler", "--skip-serve-logs"], setup.env())


def start_dag_processor(procs: Processes, setup: AirflowSetup) -> Proc:
    return procs.start("dag-processor", [airflow_bin(), "dag-processor"], setup.env())


def wait_healthy(api: AirflowApi, watch: list[Proc], timeout: float = 120.0) -> None:
    """API up, scheduler and dag-processor heartbeating."""
    wait_for("the Airflow API server", lambda: http_ok(f"{api.url}/api/v2/monitor/health"),
             timeout, watch)  # fmt: skip

    def components_healthy() -> bool:
        health = api.get("/api/v2/monitor/health")
        return all(
            (health.get(c) or {}).get("status") == "healthy"
            for c in ("metadatabase", "scheduler", "dag_processor")
        )

    wait_for("the Airflow scheduler and dag-processor", components_healthy, timeout, watch)


class ApiError(ProcessError):
    """The Airflow REST API answered with an error."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class AirflowApi:
    url: str

    def request(self, method: str, path: str, body: Any = None, attempts: int = 4) -> Any:
        """One call; a 5xx "Database error" (SQLite busy while the scheduler writes) is
        retried: Airflow rolled the transaction back, so nothing happened twice."""
        for attempt in range(1, attempts + 1):
            try:
                return self._request(method, path, body)
            except ApiError as e:
                if attempt == attempts or not (e.status >= 500 and "Database error" in str(e)):
                    raise
                time.sleep(0.5 * attempt)
        raise AssertionError("unreachable")

    def _request(self, method: str, path: str, body: Any) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")[:500]
            raise ApiError(f"{method} {path}: HTTP {e.code}: {detail}", e.code) from e
        return json.loads(raw) if raw else None

    def get(self, path: str, **params: Any) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        return self.request("GET", path + query)

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> str:
        """Unpause the DAG and start a run now; returns the run id."""
        self.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        run = self.request(
            "POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}}
        )
        return str(run["dag_run_id"])

    def run_state(self, dag_id: str, run_id: str) -> str:
        return str(self.get(f"/api/v2/dags/{dag_id}/dagRuns/{_q(run_id)}")["state"])

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{_q(run_id)}/taskInstances"
        tis: list[dict[str, Any]] = self.get(path, limit=1000)["task_instances"]
        return tis

    def tries(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> list[Any]:
        """Every try of one task instance (history plus the current one)."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{_q(run_id)}/taskInstances/{task_id}/tries"
        tries: list[Any] = self.get(path, map_index=map_index)["task_instances"]
        return tries

    def log(self, dag_id: str, run_id: str, task_id: str, try_number: int,
            map_index: int = -1) -> str:  # fmt: skip
        """A try's log as the UI shows it, one line per entry (structured entries as JSON,
        so an exception's text is there too)."""
        path = (
            f"/api/v2/dags/{dag_id}/dagRuns/{_q(run_id)}/taskInstances/{task_id}/logs/{try_number}"
        )
        content = self.get(path, map_index=map_index, full_content="true").get("content")
        if isinstance(content, list):
            return "\n".join(_line(c) for c in content)
        return str(content or "")

    def set_state(self, dag_id: str, run_id: str, task_id: str, state: str) -> None:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{_q(run_id)}/taskInstances/{task_id}"
        self.request("PATCH", path, {"new_state": state})


def _line(entry: Any) -> str:
    if not isinstance(entry, dict):
        return str(entry)
    event = str(entry.get("event", ""))
    rest = {k: v for k, v in entry.items() if k not in ("event", "timestamp", "level")}
    return f"{event} {json.dumps(rest, default=str)}" if rest else event


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")
