"""`kubequeue demo`: the whole pipeline on this machine, with a real Airflow.

Starts embedded Redis, the simulated cluster (two node pools, process kubelets that run the
real task processes), two dispatchers and a watcher, then Airflow (SQLite, api-server,
scheduler, dag-processor) with the KubeQueueExecutor; triggers examples/dags/kubequeue_demo
through the REST API, shows progress, prints one row per try with its start-up phases, and
stops everything it started — also on Ctrl-C.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kubequeue import embedded_redis
from kubequeue.errors import KubeQueueError
from kubequeue.executor import airflow_env as af
from kubequeue.executor import demo_report
from kubequeue.executor import stack as st
from kubequeue.executor.procs import Processes, wait_for
from kubequeue.keys import Keys

DAG_ID = "kubequeue_demo"
FINISHED = {"success", "failed", "skipped", "upstream_failed", "removed"}


def dags_folder() -> Path:
    """examples/dags of the source tree (the demo runs from a checkout: `make demo`)."""
    here = Path(__file__).resolve().parent.parent / "examples" / "dags"
    if not (here / f"{DAG_ID}.py").exists():
        raise click.ClickException(f"the demo DAG is missing: {here / DAG_ID}.py")
    return here


@click.command()
@click.option("--timeout", default=600.0, show_default=True, help="Give up after this many s.")
@click.option("--hold", is_flag=True, help="Keep everything running after the DAG finishes "
              "(Airflow UI, metrics) until Ctrl-C.")  # fmt: skip
@click.option("--keep", is_flag=True, help="Keep the work folder (logs, database) afterwards.")
def demo(timeout: float, hold: bool, keep: bool) -> None:
    """Run a real Airflow DAG through the whole pipeline."""
    # Wide enough for the closing table when the output is not a terminal (make, CI logs).
    console = Console(width=None if sys.stdout.isatty() else 150)
    workdir = Path(tempfile.mkdtemp(prefix="kubequeue-demo-"))
    ok = False
    try:
        with Processes(workdir / "logs") as group:
            ok = run(console, group, workdir, timeout, hold)
    except KeyboardInterrupt:
        console.print("[yellow]Interrupted: everything the demo started has been stopped.[/]")
        keep = True
    except (KubeQueueError, OSError) as e:
        console.print(f"[red]The demo failed:[/] {type(e).__name__}: {e}")
    finally:
        if ok and not keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            console.print(f"Logs and database kept in {workdir}")
    sys.exit(0 if ok else 1)


def run(console: Console, group: Processes, workdir: Path, timeout: float, hold: bool) -> bool:
    started = time.monotonic()
    with console.status("Starting Redis, the simulated cluster, 2 dispatchers and a watcher"):
        stack = st.start_stack(group, st.StackSetup(workdir / "kubequeue"))
    console.print(f"✓ kubequeue up: cluster {stack.sim_url}, Redis {stack.redis_url}")
    setup = af.AirflowSetup(
        home=workdir / "airflow",
        dags_folder=dags_folder(),
        api_port=embedded_redis.free_port(),
        kubequeue=st.kubequeue_options(stack),
    )
    api = af.AirflowApi(setup.url)
    with console.status("Starting Airflow (db migrate, api-server, scheduler, dag-processor)"):
        af.migrate(setup)
        airflow = [
            af.start_api_server(group, setup),
            af.start_scheduler(group, setup),
            af.start_dag_processor(group, setup),
        ]
        af.wait_healthy(api, airflow)
        wait_for(f"DAG {DAG_ID} parsed", lambda: bool(api.get(f"/api/v2/dags/{DAG_ID}")),
                 120, airflow)  # fmt: skip
    console.print(f"✓ Airflow up in {time.monotonic() - started:.0f}s: UI {setup.url}")
    run_id = api.trigger(DAG_ID)
    console.print(f"✓ triggered {DAG_ID} (run {run_id})")
    state = follow(console, api, run_id, airflow, timeout)
    tries = tries_of(api, run_id, api.task_instances(DAG_ID, run_id))
    # A worker reports success through the API ~1 s before its pod ends: give the watcher
    # a moment to see the last pods finish.
    deadline = time.monotonic() + 15
    while True:
        rows = demo_report.build_rows(demo_report.all_events(stack.redis(), Keys()), tries)
        if all(r.run is not None for r in rows) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    console.print(demo_report.render(rows))
    for line in demo_report.summary(rows):
        console.print(f"  {line}")
    print_where(console, stack, setup, workdir)
    colour = "green" if state == "success" else "red"
    console.print(f"[{colour}]DAG run {state}[/] in {time.monotonic() - started:.0f}s overall")
    if hold:
        console.print("Everything keeps running; Ctrl-C stops it all.")
        while all(p.alive for p in airflow):
            time.sleep(1)
    return state == "success"


def follow(console: Console, api: af.AirflowApi, run_id: str, watch: list[Any],
           timeout: float) -> str:  # fmt: skip
    """Show progress until the run ends; returns its state."""
    deadline = time.monotonic() + timeout
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("{task.fields[states]}"))  # fmt: skip
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task("tasks", total=None, states="")
        shown = ""
        while True:
            if time.monotonic() > deadline:
                raise KubeQueueError(f"the DAG run did not finish in {timeout:.0f}s ({shown})")
            for proc in watch:
                proc.check_alive()
            try:
                tis = api.task_instances(DAG_ID, run_id)
                state = api.run_state(DAG_ID, run_id)
            except (af.ApiError, OSError):  # a busy API server: ask again next second
                time.sleep(1)
                continue
            states = Counter(str(ti["state"] or "none") for ti in tis)
            done = sum(n for s, n in states.items() if s in FINISHED)
            shown = ", ".join(f"{s} {n}" for s, n in sorted(states.items()))
            progress.update(bar, total=len(tis), completed=done, states=shown)
            if state in ("success", "failed"):
                return state
            time.sleep(1)


def tries_of(api: af.AirflowApi, run_id: str, tis: list[dict[str, Any]]) -> dict[Any, Any]:
    """(task_id, map_index, try) -> Airflow's record of that try; history only where retried."""
    out: dict[Any, Any] = {}
    for ti in tis:
        key = (ti["task_id"], ti["map_index"])
        if ti["try_number"] > 1:
            for t in api.tries(DAG_ID, run_id, ti["task_id"], ti["map_index"]):
                out[(*key, t["try_number"])] = t
        out[(*key, ti["try_number"])] = ti
    return out


def print_where(console: Console, stack: st.Stack, setup: af.AirflowSetup, work: Path) -> None:
    ports = stack.metrics
    console.print(
        f"Metrics (Prometheus text) while this runs: watcher http://127.0.0.1:{ports['watcher']}"
        "/metrics (start-up latency per phase, queue and pool: kubequeue_task_startup_seconds, "
        "kubequeue_queued_to_dispatched_seconds, ...), dispatchers "
        + ", ".join(f"http://127.0.0.1:{p}/metrics" for n, p in ports.items() if n != "watcher")
        + ". In a cluster, grafana/ has dashboards for them."
    )
    console.print(
        f"Task logs: {setup.log_folder} (and the UI); processes' logs: {work / 'logs'}; "
        f"try: KUBECONFIG={stack.kubeconfig} kubectl get pods,nodes"
    )
