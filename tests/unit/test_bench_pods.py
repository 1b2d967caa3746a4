from __future__ import annotations

import json
from pathlib import Path

import yaml

from kubequeue.bench import pods
from kubequeue.bench.simproc import task_ref
from kubequeue.pools import load


def test_pools_file_is_accepted_by_kubequeue_and_maps_each_queue(tmp_path: Path) -> None:
    config = load(str(pods.write_pools_file(tmp_path, 2.0, max_in_flight=5000)))
    for queue, pool_name in (("default", "default"), ("highmem", "highmem")):
        pool = config.pool_for(queue)
        assert pool.name == pool_name
        assert pool.node_selector == {pods.POOL_LABEL: pool_name}
        assert pool.max_in_flight == 5000
        template = yaml.safe_load(Path(str(pool.pod_template_file)).read_text())
        assert template["metadata"]["annotations"] == {pods.DURATION_ANNOTATION: "2s"}


def test_templates_are_the_same_pod_per_pool_and_run_time(tmp_path: Path) -> None:
    paths = pods.write_templates(tmp_path, (2.0, 3600.0))
    assert set(paths) == {(p, s) for p in ("default", "highmem") for s in (2.0, 3600.0)}
    long = yaml.safe_load(paths[("highmem", 3600.0)].read_text())
    assert long["spec"]["nodeSelector"] == {pods.POOL_LABEL: "highmem"}
    assert long["spec"]["containers"][0]["name"] == "base"  # KE's container name
    assert long["metadata"]["annotations"][pods.DURATION_ANNOTATION] == "3600s"


def test_limit_pod_carries_the_task_identity_the_recorder_reads() -> None:
    arg = pods.workload_json_stub("bench_burst", "t_highmem", 7)
    pod = pods.limit_pod("bench_burst", "highmem", 7, 2.0, arg)
    meta = pod["metadata"]
    assert task_ref(meta["labels"], meta["annotations"]) == ("bench_burst", 7)
    assert meta["name"] == "bench-burst-highmem-7"
    assert pod["spec"]["nodeSelector"] == {pods.POOL_LABEL: "highmem"}
    assert pod["spec"]["containers"][0]["args"][-1] == arg
    assert len(json.dumps(pod)) > 1000  # about the size of a real task pod
