"""`kubequeue bench`: kubequeue against the KubernetesExecutor on the simulated cluster."""
