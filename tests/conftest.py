"""Shared fixtures live in tests/fixtures/, one module per service, registered here."""

pytest_plugins = [
    "tests.fixtures.airflow_home",
    "tests.fixtures.redis_server",
    "tests.fixtures.sim",
]
