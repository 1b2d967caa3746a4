"""`kubequeue sim`: a simulated Kubernetes cluster (API server, scheduler, kubelet)."""
