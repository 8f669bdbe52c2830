#!/usr/bin/env bash
# Operator scale and leadership figures on the local control plane (hack/cluster/up, kwok):
#   1. N RecommenderReleases (default 1,000) exist before the operator starts: time from its
#      start to every release reconciled (status.observedGeneration == generation) and to every
#      release Stable; operator RSS.
#   2. One idle minute: API requests of the operator (by its own FlowSchemas: everything but
#      the Lease, and the Lease apart) and its CPU seconds.
#   3. M releases (default 100) roll out at once against a stub Prometheus that passes every
#      check: all reach a final phase; Events per release (none lost: CanaryStarted, Promoting,
#      Promoted each present; none duplicated: each reason once, series counts included).
#   4. Leadership: hand-over on SIGTERM (rolling update) and on SIGKILL, and the writes of a
#      frozen leader (SIGSTOP past its Lease, then SIGCONT) after it lost the Lease.
#
#   bench/operator-scale.sh [N] [M]        e.g. bench/operator-scale.sh 1000 100
#
#   MOVREK_BENCH_STOP_AFTER=startup   stop after part 1 (start-up figures only)
#   MOVREK_BENCH_OBSERVE=poll         observe releases by a LIST every 0.5 s (before 2026-12-04:
#                                     the observer then cost more API-server CPU than the operator)
#
# Needs hack/cluster/build.sh to have run. Builds the operator with the `operator` profile
# (or uses $MOVREK_OPERATOR_BIN). Everything listens on 127.0.0.1; every process started here is
# stopped by pid at the end. Output: /var/tmp/movrek/operator-scale-N.txt (and stdout).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
N=${1:-1000}
M=${2:-100}
[ "$M" -le "$N" ] || { echo "M ($M) must not exceed N ($N)" >&2; exit 2; }
export MOVREK_CACHE="${MOVREK_CACHE:-/var/cache/movrek}"
BIN="$MOVREK_CACHE/k8s/bin"
[ -x "$BIN/kubectl" ] || { echo "no $BIN/kubectl: run hack/cluster/build.sh first" >&2; exit 2; }
mkdir -p /var/tmp/movrek
OUT=/var/tmp/movrek/operator-scale-$N.txt
WORK=$(mktemp -d /var/tmp/movrek-opscale.XXXXXX)
DIR=$WORK/cluster
NS=movrek-system
LEASE_SECONDS=15
PIDS=()
T0=$EPOCHREALTIME

say() { awk -v a="$T0" -v b="$EPOCHREALTIME" -v m="$*" 'BEGIN { printf "[%7.1fs] %s\n", b - a, m }' | tee -a "$OUT"; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'; }
cleanup() {
  for pid in "${PIDS[@]}"; do kill -CONT "$pid" 2>/dev/null || true; kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  [ -d "$DIR" ] && "$ROOT/hack/cluster/down" "$DIR" >/dev/null 2>&1 || true
  echo "logs kept in $WORK"
}
trap cleanup EXIT
: >"$OUT"

OP="${MOVREK_OPERATOR_BIN:-}"
if [ -z "$OP" ]; then
  # The `operator` profile (Cargo.toml: opt-level "s", fat LTO) is what the figures assume.
  cargo build --profile operator --locked -p movrek-operator --bin movrek-operator
  OP="${CARGO_TARGET_DIR:-$ROOT/target}/operator/movrek-operator"
fi
cp "$OP" "$WORK/movrek-operator"
if [ -n "${MOVREK_OPERATOR_BIN:-}" ]; then
  built="binary $MOVREK_OPERATOR_BIN"
else
  built="commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml || echo ' (+ uncommitted src changes)')"
fi
say "$built, N=$N releases, M=$M rollouts, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), releases observed by ${MOVREK_BENCH_OBSERVE:-watch}"

eval "$("$ROOT/hack/cluster/up" "$DIR" 2>"$WORK/up.log")"
say "control plane up"

# Enough kwok nodes for one stable pod per release plus the canaries, each with its own pod CIDR.
nodes=$(( (N + M) / 100 + 1 ))
for i in $(seq 1 "$nodes"); do
  cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-bench-$i
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels: {kubernetes.io/hostname: kwok-bench-$i, kubernetes.io/os: linux, type: kwok}
spec:
  podCIDR: 10.$(( 100 + i / 250 )).$(( i % 250 )).0/24
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "110"}
  capacity: {cpu: "32", memory: 256Gi, pods: "110"}
EOF
done | kubectl apply -f - >/dev/null
"$WORK/movrek-operator" crd | kubectl apply --server-side -f - >/dev/null   # the CRD of the binary measured
# (Retried: right after the apply the CRD may have no conditions yet, and `kubectl wait` then
# fails at once instead of waiting.)
for _ in $(seq 30); do
  kubectl wait --for=condition=Established crd/recommenderreleases.movrek.dev --timeout=30s >/dev/null 2>&1 && break
  sleep 1
done

# The operator's identity: a ServiceAccount (cluster-admin: RBAC is not what is measured) whose
# requests two FlowSchemas count apart: the Lease, and everything else.
kubectl create namespace "$NS" >/dev/null
kubectl -n "$NS" create serviceaccount movrek-bench >/dev/null
kubectl create clusterrolebinding movrek-bench --clusterrole=cluster-admin --serviceaccount="$NS:movrek-bench" >/dev/null
kubectl apply -f - >/dev/null <<EOF
apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: FlowSchema
metadata: {name: movrek-bench-lease}
spec:
  matchingPrecedence: 100
  # As for the controllers of kube-system: Lease calls do not queue behind the reconciles.
  priorityLevelConfiguration: {name: leader-election}
  rules:
    - subjects: [{kind: ServiceAccount, serviceAccount: {name: movrek-bench, namespace: $NS}}]
      resourceRules: [{verbs: ["*"], apiGroups: [coordination.k8s.io], resources: [leases], namespaces: ["*"]}]
---
apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: FlowSchema
metadata: {name: movrek-bench}
spec:
  matchingPrecedence: 101
  priorityLevelConfiguration: {name: workload-low}
  rules:
    - subjects: [{kind: ServiceAccount, serviceAccount: {name: movrek-bench, namespace: $NS}}]
      resourceRules: [{verbs: ["*"], apiGroups: ["*"], resources: ["*"], clusterScope: true, namespaces: ["*"]}]
      nonResourceRules: [{verbs: ["*"], nonResourceURLs: ["*"]}]
EOF
token=$(kubectl -n "$NS" create token movrek-bench --duration=2h)
api=$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')
cat >"$WORK/sa.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "$api", certificate-authority: "$DIR/pki/ca.crt"}}]
users: [{name: operator, user: {token: "$token"}}]
contexts: [{name: local, context: {cluster: local, user: operator}}]
current-context: local
EOF

# A stub Prometheus that passes every check (20 ms average, 40 ms p99, no errors, 1,000 requests).
cat >"$WORK/prom.py" <<'EOF'
import http.server, json, urllib.parse
class Prom(http.server.BaseHTTPRequestHandler):
    def answer(self, query):
        value = "0.02"
        if "histogram_quantile" in query: value = "0.04"
        elif "5.." in query: value = "0"
        elif "increase(" in query: value = "1000"
        body = json.dumps({"status": "success", "data": {"resultType": "vector",
            "result": [{"metric": {}, "value": [0, value]}]}}).encode()
        self.send_response(200); self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def do_GET(self):
        self.answer(urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query).get("query", [""])[0])
    def do_POST(self):
        data = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
        self.answer(urllib.parse.parse_qs(data).get("query", [""])[0])
    def log_message(self, *args): pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Prom)
print("PORT", server.server_address[1], flush=True)
server.serve_forever()
EOF
python3 "$WORK/prom.py" >"$WORK/prom.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do grep -q PORT "$WORK/prom.log" && break; sleep 0.1; done
PROM="http://127.0.0.1:$(awk '/^PORT/ {print $2}' "$WORK/prom.log")"

release() { # NAME VERSION
  cat <<EOF
---
apiVersion: movrek.dev/v1alpha1
kind: RecommenderRelease
metadata: {name: $1, namespace: default}
spec:
  image: registry.example/movrek-inference:0.1.0
  model: {version: "$2", uri: "file:///models/$2.movrek", sha256: "$(printf '%064d' 0)"}
  replicas: 1
  traffic: {provider: replicas}
  canary:
    weight: 20
    soakDuration: 2s
    interval: 2s
    minRequests: 10
    failureLimit: 2
    progressDeadline: 120s
    prometheus: {address: "$PROM"}
EOF
}
for i in $(seq 1 "$N"); do release "rr-$i" v1; done >"$WORK/releases.yaml"
t=$EPOCHREALTIME
kubectl apply --server-side --field-manager=bench -f "$WORK/releases.yaml" >/dev/null
say "$N releases created in $(since "$t") s (before the operator starts)"

# counts: reconciled Stable Succeeded final (over every release).
# Observed through one watch of the releases (started before the operator, so every release
# it touches appears), whose lines (name generation observedGeneration phase, one per change)
# go to a file that counts() reads: a LIST of 1,000 releases every
# 0.5 s cost ~0.9 s of API-server CPU and ~0.5 s of kubectl CPU each, the better part of
# what the API server spent during the start-up, so the observer slowed what it measured.
# MOVREK_BENCH_OBSERVE=poll keeps the old polling (to compare with earlier figures).
OBSERVE=${MOVREK_BENCH_OBSERVE:-watch}
if [ "$OBSERVE" = watch ]; then
  (
    kpid=
    trap '[ -n "$kpid" ] && kill "$kpid" 2>/dev/null; exit 0' TERM
    while :; do
      kubectl get rr --watch-only -o jsonpath='{.metadata.name} {.metadata.generation} {.status.observedGeneration} {.status.phase}{"\n"}' 2>>"$WORK/rr-watch.err" &
      kpid=$!
      wait "$kpid" || true
      sleep 0.2
    done
  ) >>"$WORK/rr-watch.log" &
  PIDS+=($!)
  # The watch is live once it reports a change (a label nothing in the operator reads; set
  # again until seen, since a change made before the watch is established is not reported).
  for i in $(seq 60); do
    kubectl label rr rr-1 "bench.movrek.dev/watch-probe=$i" --overwrite >/dev/null
    sleep 0.5
    grep -q '^rr-1 ' "$WORK/rr-watch.log" && break
  done
  grep -q '^rr-1 ' "$WORK/rr-watch.log" || { say "the release watch reported nothing"; exit 1; }
fi
counts() {
  if [ "$OBSERVE" = watch ]; then
    awk 'NF >= 2 {g[$1] = $2; o[$1] = $3; p[$1] = $4}
         END {for (n in g) {if (g[n] == o[n]) r++; if (p[n] == "Stable") s++; if (p[n] == "Succeeded") d++;
                            if (p[n] ~ /^(Succeeded|RolledBack|Rejected|Failed)$/) f++}
              printf "%d %d %d %d\n", r, s, d, f}' "$WORK/rr-watch.log"
  else
    kubectl get rr -o jsonpath='{range .items[*]}{.metadata.generation} {.status.observedGeneration} {.status.phase}{"\n"}{end}' |
      awk '$1 == $2 {r++} $3 == "Stable" {s++} $3 == "Succeeded" {d++} $3 ~ /^(Succeeded|RolledBack|Rejected|Failed)$/ {f++}
           END {printf "%d %d %d %d\n", r, s, d, f}'
  fi
}
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
declare -A HTTP
start_operator() { # IDENTITY
  local port; port=$(free_port)
  KUBECONFIG="$WORK/sa.kubeconfig" POD_NAMESPACE="$NS" POD_NAME="$1" RUST_LOG=info \
    "$WORK/movrek-operator" run --http "127.0.0.1:$port" --lease-seconds "$LEASE_SECONDS" >"$WORK/$1.log" 2>&1 &
  PIDS+=($!)
  HTTP[$1]=$port
  LAST_PID=$!
}
metric() { # IDENTITY NAME: value of an unlabelled sample of the operator's /metrics
  curl -fsS --max-time 3 "http://127.0.0.1:${HTTP[$1]}/metrics" 2>/dev/null | awk -v n="$2" '$1 == n {print $2; exit}'
}
holder() { kubectl -n "$NS" get lease movrek-operator -o jsonpath='{.spec.holderIdentity}' 2>/dev/null; }
wait_holder() { # IDENTITY LIMIT_S: polls the Lease every 50 ms
  local start=$EPOCHREALTIME
  until [ "$(holder)" = "$1" ]; do
    awk -v a="$start" -v b="$EPOCHREALTIME" -v l="$2" 'BEGIN { exit !(b - a > l) }' &&
      { say "TIMEOUT: $1 did not take the Lease within $2 s (holder $(holder))"; exit 1; }
    sleep 0.05
  done
}
fs_count() { # FLOWSCHEMA: requests dispatched so far
  kubectl get --raw /metrics | awk -v fs="flow_schema=\"$1\"" '/^apiserver_flowcontrol_dispatched_requests_total/ && index($0, fs) {s += $2} END {printf "%d\n", s}'
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_mib() { awk -v f="$2" '$1 == f {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
wait_counts() { # LIMIT_S FIELD(1..4) WANT LABEL: polls counts every 0.5 s
  local limit=$1 field=$2 want=$3 label=$4 start=$EPOCHREALTIME c
  while :; do
    c=$(counts)
    [ "$(echo "$c" | cut -d' ' -f"$field")" -ge "$want" ] && { WAITED=$(since "$start"); return 0; }
    awk -v a="$start" -v b="$EPOCHREALTIME" -v l="$limit" 'BEGIN { exit !(b - a > l) }' &&
      { say "TIMEOUT after ${limit} s waiting for $label: counts (reconciled Stable Succeeded final) = $c"; return 1; }
    sleep 0.5
  done
}

writes_by_kind() { # IDENTITY: the operator's write counters, e.g. "status 1000, Service 3000"
  curl -fsS --max-time 3 "http://127.0.0.1:${HTTP[$1]}/metrics" 2>/dev/null |
    awk -F'[{}" ]+' '/^movrek_operator_api_writes_total/ {printf "%s%s %d", sep, $3, $NF; sep = ", "} END {print ""}'
}
cluster_cpu() { # CPU seconds so far of each control-plane process (from the cluster's pid file)
  local tick; tick=$(getconf CLK_TCK)
  while read -r pid name; do
    [ -r "/proc/$pid/stat" ] && awk -v n="$name" -v t="$tick" '{printf "%s %.1f\n", n, ($14 + $15) / t}' "/proc/$pid/stat" || true
  done <"$DIR/pids"
}

# 1. Start-up with N releases.
cpu0=$(cluster_cpu)
start_operator bench-a
A=$LAST_PID
started=$EPOCHREALTIME
oc0=$(cpu_ticks "$A")
wait_counts 300 1 "$N" "every release reconciled" && say "FIGURE start → all $N releases reconciled (observedGeneration): $(awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"
say "by then: writes $(writes_by_kind bench-a); stale reads $(metric bench-a movrek_operator_stale_reads_total); reconciles $(metric bench-a movrek_operator_reconcile_duration_seconds_count); load $(cut -d' ' -f1-3 /proc/loadavg)"
say "CPU seconds since the start: operator $(awk -v a="$oc0" -v b="$(cpu_ticks "$A")" -v t="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", (b - a) / t }'), $(join -a1 <(echo "$cpu0" | sort) <(cluster_cpu | sort) | awk '{printf "%s%s %.1f", sep, $1, $3 - $2; sep = ", "}')"
wait_counts 300 2 "$N" "every release Stable" && say "FIGURE start → all $N releases Stable: $(awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"
say "FIGURE operator RSS after start-up: $(rss_mib "$A" VmRSS:) MiB (peak $(rss_mib "$A" VmHWM:) MiB)"
say "writes by then: $(writes_by_kind bench-a); reconciles $(metric bench-a movrek_operator_reconcile_duration_seconds_count)"
if [ "${MOVREK_BENCH_STOP_AFTER:-}" = startup ]; then
  say "done (MOVREK_BENCH_STOP_AFTER=startup); figures in $OUT"
  exit 0
fi

# 2. One idle minute.
sleep 15
r0=$(fs_count movrek-bench); l0=$(fs_count movrek-bench-lease); c0=$(cpu_ticks "$A"); w0=$(metric bench-a movrek_operator_leader_writes_total)
sleep 60
r1=$(fs_count movrek-bench); l1=$(fs_count movrek-bench-lease); c1=$(cpu_ticks "$A"); w1=$(metric bench-a movrek_operator_leader_writes_total)
tick=$(getconf CLK_TCK)
say "FIGURE idle minute with $N releases: $((r1 - r0)) API requests beyond the Lease (watches included), $((l1 - l0)) Lease requests, $(awk -v w0="$w0" -v w1="$w1" 'BEGIN {print w1 - w0}') writes, CPU $(awk -v a="$c0" -v b="$c1" -v t="$tick" 'BEGIN { printf "%.2f", (b - a) / t }') s"

# 3. M rollouts at once.
for i in $(seq 1 "$M"); do release "rr-$i" v2; done >"$WORK/rollout.yaml"
t=$EPOCHREALTIME
kubectl apply --server-side --field-manager=bench -f "$WORK/rollout.yaml" >/dev/null
wait_counts 600 4 "$M" "$M rollouts final" && say "FIGURE $M rollouts at once: all final $WAITED s after the apply"
final=$(kubectl get rr -o jsonpath='{range .items[*]}{.metadata.name} {.status.phase}{"\n"}{end}' | awk '$2 !~ /^(Stable)$/ {print $2}' | sort | uniq -c | tr '\n' ' ')
say "phases of the rolled-out releases: $final"
kubectl get events.events.k8s.io -n default -o json >"$WORK/events.json"
python3 - "$WORK/events.json" "$M" <<'EOF' | tee -a "$OUT"
import collections, json, sys
events, m = json.load(open(sys.argv[1]))["items"], int(sys.argv[2])
count = collections.defaultdict(collections.Counter)
for e in events:
    name = e.get("regarding", {}).get("name", "")
    if e.get("regarding", {}).get("kind") != "RecommenderRelease":
        continue
    n = (e.get("series") or {}).get("count") or e.get("deprecatedCount") or 1
    count[name][e.get("reason")] += n
want = ["CanaryStarted", "Promoting", "Promoted"]
lost = [(f"rr-{i}", r) for i in range(1, m + 1) for r in want if count[f"rr-{i}"][r] == 0]
dup = [(f"rr-{i}", r, n) for i in range(1, m + 1) for r, n in count[f"rr-{i}"].items() if n > 1]
total = collections.Counter()
for i in range(1, m + 1):
    total.update(count[f"rr-{i}"])
print(f"FIGURE Events of the {m} rollouts: lost {len(lost)}, duplicated {len(dup)}; by reason: "
      + ", ".join(f"{r} {n}" for r, n in sorted(total.items())))
for x in (lost + dup)[:10]:
    print("  ", x)
EOF
say "FIGURE operator RSS after the rollouts: $(rss_mib "$A" VmRSS:) MiB (peak $(rss_mib "$A" VmHWM:) MiB)"

# 4. Leadership with N releases.
start_operator bench-b
B=$LAST_PID
sleep 3
[ "$(holder)" = bench-a ] || say "unexpected Lease holder $(holder)"
t=$EPOCHREALTIME
kill -TERM "$A"
wait_holder bench-b 60
say "FIGURE rolling update (SIGTERM to the leader): bench-b leads $(since "$t") s later (Lease ${LEASE_SECONDS} s)"
# The new leader over N settled releases: every release is reconciled once at its start, from
# its watch caches (a restart, unlike the first deployment above, has nothing to write).
for _ in $(seq 1200); do
  n=$(metric bench-b movrek_operator_reconcile_duration_seconds_count || true)
  [ "${n:-0}" -ge "$N" ] && break
  sleep 0.1
done
say "FIGURE new leader over $N settled releases: ${n:-0} reconciles done $(since "$t") s after the SIGTERM; RSS $(rss_mib "$B" VmRSS:) MiB"
for _ in $(seq 100); do kill -0 "$A" 2>/dev/null || break; sleep 0.1; done
start_operator bench-c
C=$LAST_PID
sleep 3
t=$EPOCHREALTIME
kill -KILL "$B"
wait_holder bench-c 60
say "FIGURE SIGKILL of the leader: bench-c leads $(since "$t") s later (Lease ${LEASE_SECONDS} s)"
start_operator bench-d
sleep 3
wc0=$(metric bench-c movrek_operator_leader_writes_total)
kill -STOP "$C"
t=$EPOCHREALTIME
wait_holder bench-d 60
say "bench-c frozen (SIGSTOP); bench-d leads $(since "$t") s later"
# Work is due when bench-c wakes up: ten new versions.
for i in $(seq 1 10); do release "rr-$i" v3; done | kubectl apply --server-side --field-manager=bench -f - >/dev/null
sleep 2
kill -CONT "$C"
sleep 5
wc1=$(metric bench-c movrek_operator_leader_writes_total)
refused=$(metric bench-c movrek_operator_leader_writes_refused_total)
say "FIGURE writes of bench-c after it lost the Lease (SIGSTOP past the Lease, SIGCONT with work due): $(awk -v a="$wc0" -v b="$wc1" 'BEGIN {print b - a}') (refused: ${refused:-0}; leader gauge now $(metric bench-c movrek_operator_leader))"
say "done; figures in $OUT"
