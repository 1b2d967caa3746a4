"""The watcher: list+watch of task pods, task events to Redis, Prometheus metrics."""
