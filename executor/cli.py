"""`airflow kubequeue ...`: commands an Airflow operator runs where the scheduler runs.

Listed under `cli` in the provider info and returned by the executor's
`get_cli_commands`, so Airflow neither warns about an executor without a CLI nor imports
anything heavy before the command is chosen.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def get_cli_commands() -> list[Any]:
    from airflow.cli.cli_config import ActionCommand, GroupCommand, lazy_load_command

    return [
        GroupCommand(
            name="kubequeue",
            help="Inspect the KubeQueueExecutor's configuration and queues",
            subcommands=(
                ActionCommand(
                    name="check",
                    help="Check the kubequeue config: Redis reachable, pools file valid",
                    func=lazy_load_command("kubequeue.executor.cli.check"),
                    args=(),
                ),
            ),
        )
    ]


def check(args: argparse.Namespace) -> None:
    """Print the effective settings and whether each dependency answers; exit 1 if not."""
    from airflow.configuration import conf

    from kubequeue.errors import KubeQueueError
    from kubequeue.executor import config
    from kubequeue.executor.config import make_client

    try:
        settings = config.read(conf)
        print(f"redis_prefix: {settings.redis_prefix}")
        print(f"pools_file:   {settings.pools_file}")
        client = make_client(settings)
        client.ping()
        print("redis:        reachable")
        print(f"in flight:    {len(client.in_flight())} task(s)")
    except KubeQueueError as e:
        print(f"kubequeue check failed: {e}", file=sys.stderr)
        sys.exit(1)
