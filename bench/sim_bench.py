"""Benchmark of the simulated cluster's API server (`kubequeue sim`), run in its own process
as in real use, with load from separate client processes:

1. creates/s: P processes x C concurrent tasks POST pods as fast as the server answers;
2. watch fan-out: W watchers follow all pods while N pods are created (and the kubelets
   move them), each until it has seen every pod ADDED and, with nodes, every pod finish
   (Succeeded/Failed). max_lag_s: how long after the last create returned the last ADDED
   arrived (0: the watchers kept up); finished_after_s: the same for the last pod to
   finish, which includes the pods' simulated run time (about 0 with profile=fast, where
   pods finish at once: then it is the watchers' lag behind every change).

    python -m kubequeue.bench.sim_bench --pods 10000 --procs 2 --concurrency 32 --watchers 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

POD_TEMPLATE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "labels": {"app.kubernetes.io/managed-by": "kubequeue", "kubequeue.io/queue": "default"},
        "annotations": {"kubequeue.io/task-key": "bench/task/run/1"},
    },
    "spec": {
        "restartPolicy": "Never",
        "containers": [
            {
                "name": "base",
                "image": "apache/airflow:3.3.2",
                "command": ["python", "-m", "airflow.sdk.execution_time.execute_workload"],
                "args": ["--json-string", "{}"],
                "env": [{"name": "AIRFLOW_IS_K8S_EXECUTOR_POD", "value": "True"}],
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
            }
        ],
    },
}


@dataclass
class Server:
    process: subprocess.Popen[str]
    url: str

    def cpu_seconds(self) -> float:
        """User + system CPU the server process has used so far (Linux /proc)."""
        with open(f"/proc/{self.process.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def start_server(nodes: list[str], extra: list[str]) -> Server:
    launcher = "from kubequeue.cli import main; main()"
    args = [sys.executable, "-c", launcher, "sim", "--port", "0", "--watch-window", "200000"]
    for spec in nodes:
        args += ["--nodes", spec]
    process = subprocess.Popen(
        [*args, *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.search(r"listening on (http://\S+)", line)
    if not match:
        process.kill()
        raise SystemExit(f"the simulator did not start: {line}{process.stdout.read()}")
    return Server(process, match.group(1))


async def _create_range(url: str, namespace: str, start: int, count: int, concurrency: int) -> int:
    errors = 0
    next_index = start
    end = start + count
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal next_index, errors
            while next_index < end:
                i = next_index
                next_index += 1
                body = dict(POD_TEMPLATE)
                body["metadata"] = {**POD_TEMPLATE["metadata"], "name": f"bench-{i}"}
                async with session.post(
                    f"{url}/api/v1/namespaces/{namespace}/pods",
                    data=json.dumps(body),
                    headers={"Content-Type": "application/json"},
                ) as response:
                    await response.read()
                    if response.status != 201:
                        errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return errors


def _create_process(args: tuple[str, str, int, int, int]) -> int:
    return asyncio.run(_create_range(*args))


def create_pods(
    url: str, namespace: str, total: int, procs: int, concurrency: int
) -> tuple[float, int]:
    """(seconds, errors) to create `total` pods from `procs` processes."""
    share = total // procs
    jobs = [
        (url, namespace, i * share, share if i < procs - 1 else total - i * share, concurrency)
        for i in range(procs)
    ]
    ctx = mp.get_context("spawn")
    with ctx.Pool(procs) as pool:
        pool.map(_noop, range(procs))  # start the workers before the clock
        began = time.perf_counter()
        errors = sum(pool.map(_create_process, jobs))
        return time.perf_counter() - began, errors


def _noop(_: int) -> None:
    return None


_TERMINAL = (b'"phase":"Succeeded"', b'"phase":"Failed"')


async def _watch(url: str, namespace: str, rv: str, expect: int, finish: bool, out: Any) -> None:
    added, finished, events = 0, set(), 0
    last_added = last_finished = 0.0
    timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        params = {"watch": "true", "resourceVersion": rv, "timeoutSeconds": "600"}
        async with session.get(f"{url}/api/v1/namespaces/{namespace}/pods", params=params) as r:
            out.put(("ready", 0, 0.0, 0.0))
            async for line in r.content:
                events += 1
                if b'"ADDED"' in line[:20]:
                    added += 1
                    last_added = time.time()
                elif finish and any(marker in line for marker in _TERMINAL):
                    finished.add(json.loads(line)["object"]["metadata"]["name"])
                    last_finished = time.time()
                if added >= expect and (not finish or len(finished) >= expect):
                    break
    out.put(("done", events, last_added, last_finished))


def _watch_process(url: str, namespace: str, rv: str, expect: int, finish: bool, out: Any) -> None:
    asyncio.run(_watch(url, namespace, rv, expect, finish, out))


def fan_out(
    server: Server,
    namespace: str,
    pods: int,
    watchers: int,
    procs: int,
    concurrency: int,
    finish: bool,
) -> dict[str, Any]:
    """Create `pods` while `watchers` processes follow them (until every pod was ADDED and,
    if `finish`, finished); the module docstring says what the lags mean."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    rv = _current_rv(server.url)
    args = (server.url, namespace, rv, pods, finish, out)
    workers = [ctx.Process(target=_watch_process, args=args) for _ in range(watchers)]
    for w in workers:
        w.start()
    for _ in workers:
        out.get(timeout=60)
    result = timed_creates(server, namespace, pods, procs, concurrency)
    created_at = time.time()
    results = [out.get(timeout=600) for _ in workers]
    for w in workers:
        w.join(30)
    lags = [max(0.0, added - created_at) for _, _, added, _ in results]
    report = {
        **result,
        "watchers": watchers,
        "events_seen": [events for _, events, _, _ in results],
        "max_lag_s": round(max(lags), 3),
    }
    if finish:
        ends = [max(0.0, finished - created_at) for _, _, _, finished in results]
        report["finished_after_s"] = round(max(ends), 3)
    return report


def timed_creates(
    server: Server, namespace: str, pods: int, procs: int, concurrency: int
) -> dict[str, Any]:
    cpu = server.cpu_seconds()
    seconds, errors = create_pods(server.url, namespace, pods, procs, concurrency)
    cpu = server.cpu_seconds() - cpu
    return {
        "pods": pods,
        "seconds": round(seconds, 2),
        "creates_per_s": round(pods / seconds, 1),
        "errors": errors,
        "server_cpu_ms_per_create": round(1000 * cpu / pods, 3),
    }


def _current_rv(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(f"{url}/api/v1/namespaces/default/pods?limit=1") as response:
        return str(json.loads(response.read())["metadata"]["resourceVersion"])


def _create_namespace(url: str, name: str) -> None:
    import urllib.request

    body = json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    request = urllib.request.Request(
        f"{url}/api/v1/namespaces",
        data=body.encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request).close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--pods", type=int, default=10_000, help="pods for the watch run")
    parser.add_argument("--create-pods", type=int, default=5_000, help="pods for the create run")
    parser.add_argument("--procs", type=int, default=2, help="client processes")
    parser.add_argument(
        "--concurrency", type=int, default=32, help="requests in flight per process"
    )
    parser.add_argument("--watchers", type=int, default=4)
    parser.add_argument("--nodes", action="append", help="node pools (default bench=100)")
    parser.add_argument("--api-only", action="store_true", help="no nodes, scheduler, kubelets")
    args = parser.parse_args()
    nodes = [] if args.api_only else (args.nodes or ["bench=100:pods=110"])
    server = start_server(nodes, ["--api-only"] if args.api_only else [])
    setting = {"procs": args.procs, "concurrency": args.concurrency, "nodes": nodes}
    try:
        _create_namespace(server.url, "creates")
        result = timed_creates(server, "creates", args.create_pods, args.procs, args.concurrency)
        print(json.dumps({"run": "creates", **result, **setting, "cpus": os.cpu_count()}))
        _create_namespace(server.url, "watched")
        fan = fan_out(
            server,
            "watched",
            args.pods,
            args.watchers,
            args.procs,
            args.concurrency,
            finish=bool(nodes),
        )
        print(json.dumps({"run": "watch-fan-out", **fan, **setting}))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
