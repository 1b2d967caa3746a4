"""The pools file: valid files load, every invalid one says file:line: what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubequeue import pools
from kubequeue.errors import ConfigError, UnknownQueueError

EXAMPLE = Path(__file__).parents[2] / "examples" / "pools.yaml"


def test_example_file_loads() -> None:
    config = pools.load(EXAMPLE)
    assert set(config.pools) == {"default", "gpu"}
    gpu = config.pool_for("gpu")
    assert gpu.name == "gpu" and gpu.max_in_flight == 16
    assert gpu.tolerations[0]["key"] == "gpu"
    assert config.pool_for("etl").name == "default"
    assert sorted(config.queues_of("default")) == ["default", "etl"]
    assert config.pool_for("default").delete_worker_pods is True


def test_defaults() -> None:
    config = pools.parse("pools:\n  p: {image: img}\nqueues: {q: p}\n")
    p = config.pools["p"]
    assert (p.namespace, p.context, p.max_in_flight, p.startup_timeout) == (
        "default",
        None,
        200,
        300.0,
    )
    assert p.node_selector == {} and p.tolerations == [] and p.affinity is None


def test_unknown_queue_is_an_error_value_not_a_crash() -> None:
    config = pools.parse("pools:\n  p: {image: img}\nqueues: {a: p, b: p}\n", "f.yaml")
    with pytest.raises(UnknownQueueError) as e:
        config.pool_for("gpu")
    assert str(e.value) == "queue 'gpu' is not in the pools file f.yaml (known queues: a, b)"


BAD = """\
pools:
  default:
    namespace: airflow-tasks
    image: apache/airflow:3.3.2
    maxInFlight: 0
    nodeSelectr: {a: b}
  gpu:
    namespace: Bad_NS
    image: x
    startupTimeout: soon
queues:
  default: default
"""


def test_errors_carry_line_numbers() -> None:
    with pytest.raises(ConfigError) as e:
        pools.parse(BAD, "pools.yaml")
    assert str(e.value).splitlines() == [
        "invalid pools file pools.yaml:",
        "pools.yaml:5: pools.default.maxInFlight: Input should be greater than or equal to 1",
        "pools.yaml:6: pools.default.nodeSelectr: unknown field 'nodeSelectr'",
        "pools.yaml:8: pools.gpu.namespace: 'Bad_NS' is not a valid Kubernetes name "
        "(lowercase letters, digits and '-', at most 63 characters)",
        "pools.yaml:10: pools.gpu.startupTimeout: Input should be a valid number, "
        "unable to parse string as a number",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "pools:\n  p:\n    namespace: ns\nqueues:\n  q: p\n",
            "pools.yaml:2: pools.p: set `image` or `podTemplateFile` (the task container's image)",
        ),
        (
            "pools:\n  p: {image: x}\nqueues:\n  q: p\n  gpu: gpux\n",
            "pools.yaml:5: queues.gpu: queue 'gpu' maps to unknown pool 'gpux' (p)",
        ),
        (
            "pools:\n  p: {image: x}\n  p: {image: y}\nqueues: {q: p}\n",
            "pools.yaml:3: duplicate key 'p' (pools; first at line 2)",
        ),
        (
            "pools:\n  p: {image: x\nqueues: {q: p}\n",
            "pools.yaml:3: not valid YAML: expected ',' or '}', but got ':'",
        ),
        ("", "pools.yaml: the pools file is empty"),
        ("- a\n", "pools.yaml:1: the pools file must be a mapping with `pools` and `queues`"),
        (
            "pools: {}\nqueues: {q: p}\n",
            "pools.yaml:1: pools: Dictionary should have at least 1 item after validation, not 0",
        ),
        (
            "pools:\n  p: {image: x}\nqueues: {q: p}\nextra: 1\n",
            "pools.yaml:4: extra: unknown field 'extra'",
        ),
        (
            "pools:\n  p: {image: x}\nqueues:\n  'bad queue': p\n",
            "pools.yaml:4: queues.bad queue: queue name 'bad queue' is invalid",
        ),
        (
            "pools:\n  p:\n    image: x\n    tolerations: {key: a}\nqueues: {q: p}\n",
            "pools.yaml:4: pools.p.tolerations: Input should be a valid list",
        ),
    ],
)
def test_each_bad_input_message(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        pools.parse(text, "pools.yaml")
    assert message in str(e.value)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match=r"cannot read pools file /nonexistent/pools.yaml: No"):
        pools.load("/nonexistent/pools.yaml")


def test_pod_template_file_is_checked_and_resolved(tmp_path: Path) -> None:
    (tmp_path / "tpl.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nspec:\n  containers: [{name: base, image: tpl}]\n"
    )
    (tmp_path / "pools.yaml").write_text(
        "pools:\n  p:\n    podTemplateFile: tpl.yaml\nqueues: {q: p}\n"
    )
    config = pools.load(tmp_path / "pools.yaml")
    path = config.pools["p"].pod_template_file
    assert path == str(tmp_path / "tpl.yaml")
    assert pools.read_pod_template(path)["spec"]["containers"][0]["image"] == "tpl"

    (tmp_path / "pools.yaml").write_text(
        "pools:\n  p:\n    image: x\n    podTemplateFile: missing.yaml\nqueues: {q: p}\n"
    )
    with pytest.raises(ConfigError) as e:
        pools.load(tmp_path / "pools.yaml")
    assert str(e.value).startswith(
        f"{tmp_path}/pools.yaml:4: pools.p.podTemplateFile: cannot read pod template file "
    )

    (tmp_path / "tpl.yaml").write_text("kind: Deployment\n")
    (tmp_path / "pools.yaml").write_text(
        "pools:\n  p:\n    podTemplateFile: tpl.yaml\nqueues: {q: p}\n"
    )
    with pytest.raises(ConfigError, match=r"must be one Pod object"):
        pools.load(tmp_path / "pools.yaml")
