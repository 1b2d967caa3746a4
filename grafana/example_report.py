"""Regenerate grafana/startup-latency.png, the picture of the start-up latency dashboard
shown in the README: a few minutes of simulated load through the real dispatchers and
watcher, scraped by a real Prometheus, drawn by `kubequeue report`.

    .venv/bin/python grafana/example_report.py [OUT.png] [--minutes 3]

Two queues: `default` on a roomy 3-node pool, `batch` on a single 2-CPU node that fits
four of its pods at a time (and maxInFlight 12), so batch tasks often wait for the
scheduler — the "where did the time go" panels show which phase grows.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kubequeue.bench import report  # noqa: E402
from kubequeue.sim import FaultConfig  # noqa: E402
from kubequeue.sim.cluster import NodePool  # noqa: E402
from tests.deploy.stack import client, running_stack, spec  # noqa: E402

POOLS = {
    "pools": {
        "default": {
            "namespace": "default",
            "image": "apache/airflow:3.3.2",
            "nodeSelector": {"kubequeue.io/pool": "default"},
            "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}},
        },
        "batch": {
            "namespace": "default",
            "image": "apache/airflow:3.3.2",
            "nodeSelector": {"kubequeue.io/pool": "batch"},
            "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}},
            "maxInFlight": 12,
        },
    },
    "queues": {"default": "default", "batch": "batch"},
}
NODES = (NodePool("default", 3), NodePool("batch", 1, cpu="2"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", nargs="?", default=str(ROOT / "grafana" / "startup-latency.png"))
    parser.add_argument("--minutes", type=float, default=3.0)
    args = parser.parse_args()
    faults = FaultConfig(throttle=0.05, retry_after=0, scope="pod-creates")
    with tempfile.TemporaryDirectory() as tmp, running_stack(Path(tmp), POOLS, NODES, faults) as st:
        submitter = client(st)
        start = time.time()
        i = 0
        while time.time() - start < args.minutes * 60:
            specs = [spec("default", i + k, duration="3s") for k in range(6)]
            specs.append(spec("batch", i, duration="7s"))
            submitter.submit(specs)
            i += 6
            time.sleep(2)  # the load's pace, not synchronisation
        time.sleep(20)  # let the last tasks start and the 5m rates settle
        span = time.time() - start + 10
        panels = report.render(
            st.prometheus_url,
            Path(args.out),
            span,
            time.time(),
            report.DASHBOARD / report.DASHBOARD_FILE,
            queue=".*",
            pool=".*",
            rate_interval="15s",
        )
        print(f"wrote {args.out} ({panels} panels with data)")


if __name__ == "__main__":
    main()
