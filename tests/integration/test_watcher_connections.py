"""The watcher's API calls reuse their connections (each new one is a TLS handshake on a
real cluster): lease renewals and pod deletes against the simulated API server."""

from __future__ import annotations

import pytest
from kubernetes import client

from kubequeue.sim import Sim
from kubequeue.watcher.leader import Elector
from kubequeue.watcher.podapi import PodApi
from tests.fixtures.sim import kube_client

pytestmark = pytest.mark.integration


def connections(api: client.ApiClient) -> int:
    pool = api.rest_client.pool_manager.connection_from_url(api.configuration.host)
    return int(pool.num_connections)


def test_lease_renewals_reuse_one_connection(api_sim: Sim) -> None:
    for api in kube_client(api_sim):
        elector = Elector(client.CoordinationV1Api(api), "default", "w1", lease_duration=15.0,
                          renew_deadline=10.0, retry_period=0.0)  # fmt: skip
        for _ in range(10):
            assert elector.tick()
        assert connections(api) == 1


def test_pod_deletes_reuse_one_connection(api_sim: Sim) -> None:
    for api in kube_client(api_sim):
        core = client.CoreV1Api(api)
        spec = {"containers": [{"name": "c", "image": "i"}]}
        for i in range(10):
            core.create_namespaced_pod("default", {"metadata": {"name": f"p{i}"}, "spec": spec})
        pods = PodApi(api)
        for i in range(10):
            pods.delete("default", f"p{i}")
        assert core.list_namespaced_pod("default").items == []
        assert connections(api) == 1
