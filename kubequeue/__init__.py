"""kubequeue: an Airflow executor that runs each task in its own Kubernetes pod, with Redis
queues between the scheduler and the dispatchers that create the pods.

This package holds what every part shares: the TaskSpec/event protocol (`messages`), Redis
key names (`keys`), the pools config (`pools`), settings, errors, and the CLI entry.
It never imports `kubequeue.executor`, `.dispatcher`, `.watcher` or Airflow.
"""

__version__ = "0.1.0"
