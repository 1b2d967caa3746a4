"""The provider registration and the [kubequeue] config section."""

from __future__ import annotations

import json
from importlib.metadata import entry_points
from importlib.resources import files
from typing import Any

import jsonschema
import pytest

from kubequeue.errors import ConfigError
from kubequeue.executor import config, provider
from kubequeue.messages import Reason


class FakeConf:
    def __init__(self, **values: str) -> None:
        self.values = values

    def get(self, section: str, key: str, **kwargs: Any) -> Any:
        assert section == "kubequeue"
        return self.values.get(key, kwargs.get("fallback"))


def test_provider_info_matches_airflows_schema() -> None:
    schema = json.loads(files("airflow").joinpath("provider_info.schema.json").read_text())
    info = provider.get_provider_info()
    jsonschema.validate(info, schema)
    assert "kubequeue.executor.KubeQueueExecutor" in info["executors"]
    for name, option in info["config"]["kubequeue"]["options"].items():
        assert option["description"], name
        # Airflow str.format()s every default: a brace would break every airflow command.
        assert "{" not in str(option["default"]), name


def test_entry_point_is_registered() -> None:
    (ep,) = [
        e for e in entry_points(group="apache_airflow_provider") if e.value.startswith("kubeq")
    ]
    assert ep.load() is provider.get_provider_info


def test_defaults_read_back_as_the_dataclass_defaults() -> None:
    assert config.read(FakeConf()) == config.ExecutorSettings()


def test_values_are_parsed_and_typed() -> None:
    settings = config.read(
        FakeConf(
            redis_url="redis://r:1/2",
            launch_retries="3",
            launch_retry_reasons="Evicted, ImagePullBackOff",
            worker_env='{"A": "1", "B": 2}',
        )
    )
    assert settings.redis_url == "redis://r:1/2"
    assert settings.launch_retries == 3
    assert settings.launch_retry_reasons == {Reason.EVICTED, Reason.IMAGE_PULL}
    assert settings.worker_env == {"A": "1", "B": "2"}


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("event_batch_size", "many", "event_batch_size must be an integer, got 'many'"),
        ("event_batch_size", "0", "event_batch_size must be >= 1, got 0"),
        ("launch_retries", "-1", "launch_retries must be >= 0"),
        ("launch_retry_reasons", "Evicted,Flaky", "unknown reason 'Flaky'"),
        ("worker_env", "{nope", "worker_env is not valid JSON"),
        ("worker_env", "[1]", "worker_env must be a JSON object"),
    ],
)
def test_bad_values_name_the_option(option: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"\[kubequeue\] ") as err:
        config.read(FakeConf(**{option: value}))
    assert message in str(err.value)


def test_airflow_conf_knows_the_section_and_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.configuration import conf

    assert conf.get("kubequeue", "redis_prefix") == "kubequeue"
    monkeypatch.setenv("AIRFLOW__KUBEQUEUE__REDIS_PREFIX", "other")
    monkeypatch.setenv("AIRFLOW__KUBEQUEUE__LAUNCH_RETRIES", "0")
    settings = config.read(conf)
    assert (settings.redis_prefix, settings.launch_retries) == ("other", 0)
