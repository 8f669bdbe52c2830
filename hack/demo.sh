#!/usr/bin/env bash
# The local rollout demo: brings up a real Kubernetes control plane on 127.0.0.1 (built
# from the Go module proxy on first use, then cached), installs the Helm chart, runs the
# operator under the chart's ServiceAccount, and shows whole rollouts with real traffic
# through nginx and real Prometheus analysis, printing a timeline for each:
#
#   1. install: first apply goes straight to stable, `kubectl wait --for=condition=Ready`
#   2. a good model version: canary at 20% → soak → analysis passes → promoted
#   3. a slow model version: analysis fails → rolled back, webhook notified, 0 failed requests
#
# Everything it starts is stopped by pid when it ends. Usage: hack/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
exec ./hack/e2e.sh s01_install s02_good s03_slow
