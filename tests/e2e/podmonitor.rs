//! Test infrastructure: the chart's `PodMonitor` turned into Prometheus scrape configuration
//! the way prometheus-operator turns one into its Prometheus's configuration
//! (`generatePodMonitorConfig`, `pkg/prometheus/promcfg.go`), so the end-to-end Prometheus
//! scrapes exactly the pods, ports and labels the chart ships; and a model of what Prometheus
//! then does with it (Kubernetes discovery, role `pod`, and relabelling) for unit tests of the
//! generated rules on label sets, with no cluster and no Prometheus.
//!
//! For endpoint `i` of a `PodMonitor` `ns/name`, in prometheus-operator's order:
//! job `podMonitor/ns/name/i`; `kubernetes_sd_configs` role `pod` over the namespaces of its
//! `namespaceSelector` (`any: true`: all; `matchNames`; neither: its own namespace); then
//! relabelling that drops pods in phase `Failed` or `Succeeded` (unless `filterRunning: false`),
//! keeps pods whose labels match `selector` (`matchLabels`, `matchExpressions`), keeps the
//! container port named as the endpoint's `port`, sets `namespace`, `container`, `pod`,
//! `podTargetLabels`, `job` (`ns/name`, or the `jobLabel`), `endpoint`, and last applies the
//! endpoint's own `relabelings`; `metricRelabelings` become `metric_relabel_configs`.
//! Sharding (prometheus-operator's trailing `hashmod` rules) is left out: one Prometheus, one
//! shard, which keeps every target.
//!
//! A field the translation does not know panics: the tests must never scrape something other
//! than what a prometheus-operator user gets from the chart.
//!
//! Pods that are Running but not Ready are scraped, as a user's `PodMonitor` scrapes them
//! (role `pod` lists every pod with an IP; only the phase filter above applies).

#![allow(
    dead_code,
    reason = "shared test infrastructure: not every scenario uses every helper"
)]

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Map, Value, json};

/// Target labels (discovered or relabelled).
pub type Labels = BTreeMap<String, String>;

/// `helm template movrek charts/movrek-operator --namespace movrek-system --set
/// podMonitor.enabled=true --set podMonitor.interval=1s`, `templates/podmonitor.yaml`,
/// without its metadata labels: the unit tests' `PodMonitor` (helm is not built when they run).
/// Scenario `s01` checks that the chart still renders exactly this `spec`.
pub const CHART_POD_MONITOR: &str = r"
apiVersion: monitoring.coreos.com/v1
kind: PodMonitor
metadata:
  name: movrek-movrek-operator-inference
  namespace: movrek-system
spec:
  selector:
    matchLabels:
      app.kubernetes.io/name: movrek-inference
      app.kubernetes.io/managed-by: movrek-operator
  namespaceSelector:
    any: true
  podMetricsEndpoints:
    - port: http
      path: /metrics
      interval: 1s
      relabelings:
        - targetLabel: job
          replacement: movrek-inference
        - sourceLabels: [__meta_kubernetes_namespace]
          targetLabel: namespace
        - sourceLabels: [__meta_kubernetes_pod_name]
          targetLabel: pod
        - sourceLabels: [__meta_kubernetes_pod_label_movrek_dev_release]
          targetLabel: release
        - sourceLabels: [__meta_kubernetes_pod_label_movrek_dev_track]
          targetLabel: track
";

/// `[^a-zA-Z0-9_]` → `_`, as Prometheus's Kubernetes discovery and prometheus-operator name
/// label-derived meta labels.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).map(|x| {
        x.as_str()
            .unwrap_or_else(|| panic!("PodMonitor field {key} is not a string: {x}"))
    })
}

/// Panics when `obj` has a key outside `known`.
fn only_known(obj: &Value, what: &str, known: &[&str]) {
    let Some(map) = obj.as_object() else {
        panic!("{what} is not an object: {obj}");
    };
    for key in map.keys() {
        assert!(
            known.contains(&key.as_str()),
            "{what}.{key} is not translated into scrape configuration (tests/e2e/podmonitor.rs): extend it"
        );
    }
}

/// A `PodMonitor`'s `relabelings` entry (camel-case keys) as a Prometheus `relabel_config`.
fn relabel_config(rule: &Value) -> Value {
    only_known(
        rule,
        "relabelings[]",
        &[
            "sourceLabels",
            "separator",
            "targetLabel",
            "regex",
            "modulus",
            "replacement",
            "action",
        ],
    );
    let mut out = Map::new();
    for (from, to) in [
        ("sourceLabels", "source_labels"),
        ("separator", "separator"),
        ("targetLabel", "target_label"),
        ("regex", "regex"),
        ("modulus", "modulus"),
        ("replacement", "replacement"),
    ] {
        if let Some(v) = rule.get(from) {
            out.insert(to.to_owned(), v.clone());
        }
    }
    // prometheus-operator writes actions lower-case (the CRD accepts either case).
    if let Some(action) = str_field(rule, "action") {
        out.insert("action".to_owned(), json!(action.to_ascii_lowercase()));
    }
    Value::Object(out)
}

/// The `kubernetes_sd_configs` entry for a `PodMonitor` in `own_namespace` with
/// `namespaceSelector` `selector`, authenticating with `kubeconfig`.
fn pod_discovery(selector: Option<&Value>, own_namespace: &str, kubeconfig: &Path) -> Value {
    let mut sd = json!({"role": "pod", "kubeconfig_file": kubeconfig.display().to_string()});
    let any = selector.is_some_and(|s| s["any"] == true);
    let names = selector.and_then(|s| s.get("matchNames"));
    if let Some(s) = selector {
        only_known(s, "namespaceSelector", &["any", "matchNames"]);
    }
    if !any {
        let names = names.cloned().unwrap_or_else(|| json!([own_namespace]));
        sd["namespaces"] = json!({ "names": names });
    }
    sd
}

/// prometheus-operator's rules keeping the pods a label `selector` selects (`matchLabels` in key
/// order, then `matchExpressions`). Values go into the regexes unescaped, as it writes them.
fn selector_rules(selector: &Value) -> Vec<Value> {
    let mut rules = Vec::new();
    let match_labels: BTreeMap<String, Value> = selector["matchLabels"]
        .as_object()
        .map(|m| m.clone().into_iter().collect())
        .unwrap_or_default();
    for (key, value) in &match_labels {
        let key = sanitize(key);
        let value = value.as_str().expect("matchLabels value");
        rules.push(json!({
            "source_labels": [format!("__meta_kubernetes_pod_label_{key}"), format!("__meta_kubernetes_pod_labelpresent_{key}")],
            "regex": format!("({value});true"),
            "action": "keep",
        }));
    }
    for exp in selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let key = sanitize(str_field(exp, "key").expect("matchExpressions key"));
        let values: Vec<&str> = exp["values"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| v.as_str().expect("matchExpressions value"))
            .collect();
        let both = json!([
            format!("__meta_kubernetes_pod_label_{key}"),
            format!("__meta_kubernetes_pod_labelpresent_{key}")
        ]);
        let present = json!([format!("__meta_kubernetes_pod_labelpresent_{key}")]);
        let alternatives = format!("({});true", values.join("|"));
        rules.push(
            match str_field(exp, "operator").expect("matchExpressions operator") {
                "In" => json!({"source_labels": both, "regex": alternatives, "action": "keep"}),
                "NotIn" => json!({"source_labels": both, "regex": alternatives, "action": "drop"}),
                "Exists" => json!({"source_labels": present, "regex": "true", "action": "keep"}),
                "DoesNotExist" => {
                    json!({"source_labels": present, "regex": "true", "action": "drop"})
                }
                other => {
                    panic!("matchExpressions operator {other} is not a label selector operator")
                }
            },
        );
    }
    rules
}

/// The scrape configurations (one per `podMetricsEndpoints` entry) prometheus-operator makes of
/// `monitor` (a rendered `PodMonitor`, as JSON), with discovery through `kubeconfig`.
pub fn scrape_configs(monitor: &Value, kubeconfig: &Path) -> Vec<Value> {
    assert_eq!(monitor["kind"], "PodMonitor", "not a PodMonitor: {monitor}");
    let namespace = monitor["metadata"]["namespace"]
        .as_str()
        .expect("PodMonitor metadata.namespace");
    let name = monitor["metadata"]["name"]
        .as_str()
        .expect("PodMonitor metadata.name");
    let spec = &monitor["spec"];
    only_known(
        spec,
        "spec",
        &[
            "selector",
            "namespaceSelector",
            "podMetricsEndpoints",
            "podTargetLabels",
            "jobLabel",
        ],
    );
    only_known(
        &spec["selector"],
        "spec.selector",
        &["matchLabels", "matchExpressions"],
    );
    let discovery = pod_discovery(spec.get("namespaceSelector"), namespace, kubeconfig);
    spec["podMetricsEndpoints"]
        .as_array()
        .expect("spec.podMetricsEndpoints")
        .iter()
        .enumerate()
        .map(|(i, ep)| {
            let mut config = endpoint_config(spec, &format!("{namespace}/{name}"), ep);
            config["job_name"] = json!(format!("podMonitor/{namespace}/{name}/{i}"));
            config["kubernetes_sd_configs"] = json!([discovery.clone()]);
            config
        })
        .collect()
}

/// The scrape configuration of endpoint `ep` of the `PodMonitor` `job` (`namespace/name`) with
/// `spec`, but its job name and discovery.
fn endpoint_config(spec: &Value, job: &str, ep: &Value) -> Value {
    only_known(
        ep,
        "podMetricsEndpoints[]",
        &[
            "port",
            "path",
            "scheme",
            "interval",
            "scrapeTimeout",
            "honorLabels",
            "filterRunning",
            "relabelings",
            "metricRelabelings",
        ],
    );
    let mut rules =
        vec![json!({"source_labels": ["job"], "target_label": "__tmp_prometheus_job_name"})];
    if ep.get("filterRunning") != Some(&json!(false)) {
        rules.push(json!({"source_labels": ["__meta_kubernetes_pod_phase"], "regex": "(Failed|Succeeded)", "action": "drop"}));
    }
    rules.extend(selector_rules(&spec["selector"]));
    let port = str_field(ep, "port");
    if let Some(port) = port {
        rules.push(json!({"source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": port, "action": "keep"}));
    }
    for (meta, label) in [
        ("__meta_kubernetes_namespace", "namespace"),
        ("__meta_kubernetes_pod_container_name", "container"),
        ("__meta_kubernetes_pod_name", "pod"),
    ] {
        rules.push(json!({"source_labels": [meta], "target_label": label}));
    }
    for label in spec["podTargetLabels"].as_array().into_iter().flatten() {
        let label = sanitize(label.as_str().expect("podTargetLabels entry"));
        rules.push(json!({"source_labels": [format!("__meta_kubernetes_pod_label_{label}")], "regex": "(.+)", "replacement": "${1}", "target_label": label}));
    }
    rules.push(json!({"target_label": "job", "replacement": job}));
    if let Some(job_label) = str_field(spec, "jobLabel") {
        let job_label = sanitize(job_label);
        rules.push(json!({"source_labels": [format!("__meta_kubernetes_pod_label_{job_label}")], "regex": "(.+)", "replacement": "${1}", "target_label": "job"}));
    }
    if let Some(port) = port {
        rules.push(json!({"target_label": "endpoint", "replacement": port}));
    }
    rules.extend(
        ep["relabelings"]
            .as_array()
            .into_iter()
            .flatten()
            .map(relabel_config),
    );
    let mut config = json!({
        "honor_labels": ep.get("honorLabels").cloned().unwrap_or(json!(false)),
        "relabel_configs": rules,
    });
    for (from, to) in [
        ("interval", "scrape_interval"),
        ("scrapeTimeout", "scrape_timeout"),
        ("path", "metrics_path"),
        ("scheme", "scheme"),
    ] {
        if let Some(v) = ep.get(from) {
            config[to] = v.clone();
        }
    }
    if let Some(rules) = ep["metricRelabelings"].as_array() {
        config["metric_relabel_configs"] = rules.iter().map(relabel_config).collect();
    }
    config
}

/// The targets Prometheus's Kubernetes discovery (role `pod`) makes of `pod`, with their
/// discovered labels: one per container port, one (the pod IP alone) per container with no
/// ports, none when the pod has no IP yet. Init containers are left out (none here).
pub fn pod_targets(pod: &Pod) -> Vec<Labels> {
    let Some(ip) = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .filter(|ip| !ip.is_empty())
    else {
        return Vec::new();
    };
    let mut base = Labels::new();
    let meta = |k: &str| format!("__meta_kubernetes_{k}");
    base.insert(
        meta("namespace"),
        pod.metadata.namespace.clone().unwrap_or_default(),
    );
    base.insert(
        meta("pod_name"),
        pod.metadata.name.clone().unwrap_or_default(),
    );
    base.insert(meta("pod_ip"), ip.clone());
    for (k, v) in pod.metadata.labels.iter().flatten() {
        base.insert(meta(&format!("pod_label_{}", sanitize(k))), v.clone());
        base.insert(
            meta(&format!("pod_labelpresent_{}", sanitize(k))),
            "true".to_owned(),
        );
    }
    let status = pod.status.as_ref();
    base.insert(
        meta("pod_phase"),
        status.and_then(|s| s.phase.clone()).unwrap_or_default(),
    );
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .map_or_else(|| "unknown".to_owned(), |c| c.status.to_ascii_lowercase());
    base.insert(meta("pod_ready"), ready);
    let mut targets = Vec::new();
    for c in pod.spec.iter().flat_map(|s| &s.containers) {
        let mut container = base.clone();
        container.insert(meta("pod_container_name"), c.name.clone());
        container.insert(meta("pod_container_init"), "false".to_owned());
        let ports = c.ports.as_deref().unwrap_or_default();
        if ports.is_empty() {
            container.insert("__address__".to_owned(), ip.clone());
            targets.push(container);
            continue;
        }
        for p in ports {
            let mut t = container.clone();
            t.insert(
                "__address__".to_owned(),
                format!("{ip}:{}", p.container_port),
            );
            t.insert(
                meta("pod_container_port_name"),
                p.name.clone().unwrap_or_default(),
            );
            t.insert(
                meta("pod_container_port_number"),
                p.container_port.to_string(),
            );
            t.insert(
                meta("pod_container_port_protocol"),
                p.protocol.clone().unwrap_or_else(|| "TCP".to_owned()),
            );
            targets.push(t);
        }
    }
    targets
}

/// Prometheus's relabelling (`model/relabel`) of `labels` by `rules`, for the actions the
/// generated configuration uses (`replace`, `keep`, `drop`; others panic): `None` when a rule
/// drops the target. Source label values are joined by `separator` (default `;`), `regex`
/// (default `(.*)`) is anchored at both ends, `replacement` (default `$1`) and `target_label`
/// are expanded with the match's groups, and an empty result deletes the target label.
pub fn relabel(mut labels: Labels, rules: &[Value]) -> Option<Labels> {
    for rule in rules {
        let separator = str_field(rule, "separator").unwrap_or(";");
        let value: Vec<&str> = rule["source_labels"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| {
                labels
                    .get(l.as_str().expect("source label"))
                    .map_or("", String::as_str)
            })
            .collect();
        let value = value.join(separator);
        let pattern = str_field(rule, "regex").unwrap_or("(.*)");
        let re = regex::Regex::new(&format!("^(?s:{pattern})$"))
            .unwrap_or_else(|e| panic!("relabel regex {pattern:?}: {e}"));
        match str_field(rule, "action").unwrap_or("replace") {
            "keep" if !re.is_match(&value) => return None,
            "drop" if re.is_match(&value) => return None,
            "keep" | "drop" => {}
            "replace" => {
                let Some(caps) = re.captures(&value) else {
                    continue;
                };
                let mut target = String::new();
                caps.expand(
                    str_field(rule, "target_label").expect("replace needs target_label"),
                    &mut target,
                );
                let valid = target.chars().enumerate().all(|(i, c)| {
                    c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())
                });
                if target.is_empty() || !valid {
                    continue;
                }
                let mut result = String::new();
                caps.expand(str_field(rule, "replacement").unwrap_or("$1"), &mut result);
                if result.is_empty() {
                    labels.remove(&target);
                } else {
                    labels.insert(target, result);
                }
            }
            other => panic!("relabel action {other} is not modelled here"),
        }
    }
    Some(labels)
}

/// The labels of the target Prometheus scrapes for discovered `labels` under scrape
/// configuration `config` (one of [`scrape_configs`]), or `None` when it drops it: `job` starts
/// as the job name, relabelling runs, labels starting with `__` go and `instance` defaults to
/// the address.
pub fn target(config: &Value, mut labels: Labels) -> Option<Labels> {
    labels.insert(
        "job".to_owned(),
        config["job_name"].as_str().expect("job_name").to_owned(),
    );
    let rules = config["relabel_configs"]
        .as_array()
        .expect("relabel_configs");
    let labels = relabel(labels, rules)?;
    let address = labels.get("__address__").cloned()?;
    let mut out: Labels = labels
        .into_iter()
        .filter(|(k, _)| !k.starts_with("__"))
        .collect();
    out.entry("instance".to_owned()).or_insert(address);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart_config() -> Value {
        let monitor: Value = serde_yaml::from_str(CHART_POD_MONITOR).expect("fixture YAML");
        let mut configs = scrape_configs(&monitor, Path::new("/k/prometheus.kubeconfig"));
        assert_eq!(configs.len(), 1);
        configs.remove(0)
    }

    /// An inference pod as the operator makes it (labels of `src/children.rs`), Running at
    /// 10.244.1.7 and Ready, with the `inference` container's port `http` 8082; `edit` changes
    /// it first.
    fn pod(edit: impl FnOnce(&mut Value)) -> Pod {
        let mut pod = json!({
            "metadata": {
                "name": "movies-canary-7d9f-abcde",
                "namespace": "default",
                "labels": {
                    "app.kubernetes.io/name": "movrek-inference",
                    "app.kubernetes.io/managed-by": "movrek-operator",
                    "movrek.dev/release": "movies",
                    "movrek.dev/track": "canary",
                },
            },
            "spec": {"containers": [{
                "name": "inference",
                "image": "movrek-inference:test",
                "ports": [{"name": "http", "containerPort": 8082}],
            }]},
            "status": {
                "phase": "Running",
                "podIP": "10.244.1.7",
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        });
        edit(&mut pod);
        serde_json::from_value(pod).expect("a Pod")
    }

    /// What Prometheus scrapes of `pod` under the chart's `PodMonitor`.
    fn scraped(pod: &Pod) -> Vec<Labels> {
        let config = chart_config();
        pod_targets(pod)
            .into_iter()
            .filter_map(|t| target(&config, t))
            .collect()
    }

    #[test]
    fn an_operator_managed_inference_pod_is_scraped_on_http_with_the_chart_labels() {
        let targets = scraped(&pod(|_| {}));
        assert_eq!(targets.len(), 1, "{targets:?}");
        let t = &targets[0];
        let get = |k: &str| t.get(k).map(String::as_str);
        assert_eq!(get("instance"), Some("10.244.1.7:8082"));
        assert_eq!(get("job"), Some("movrek-inference"));
        assert_eq!(get("namespace"), Some("default"));
        assert_eq!(get("pod"), Some("movies-canary-7d9f-abcde"));
        assert_eq!(get("release"), Some("movies"));
        assert_eq!(get("track"), Some("canary"));
        // What prometheus-operator adds besides the chart's relabelings.
        assert_eq!(get("container"), Some("inference"));
        assert_eq!(get("endpoint"), Some("http"));
    }

    #[test]
    fn pods_outside_the_selector_are_dropped() {
        let unlabel = |key: &'static str| {
            move |p: &mut Value| {
                p["metadata"]["labels"]
                    .as_object_mut()
                    .expect("labels")
                    .remove(key);
            }
        };
        let set_label = |key: &'static str, value: &'static str| {
            move |p: &mut Value| p["metadata"]["labels"][key] = json!(value)
        };
        assert!(scraped(&pod(unlabel("app.kubernetes.io/managed-by"))).is_empty());
        assert!(scraped(&pod(unlabel("app.kubernetes.io/name"))).is_empty());
        assert!(scraped(&pod(set_label("app.kubernetes.io/managed-by", "Helm"))).is_empty());
        assert!(
            scraped(&pod(set_label(
                "app.kubernetes.io/name",
                "movrek-evaluator"
            )))
            .is_empty()
        );
        // matchLabels values are matched whole, not as a prefix.
        assert!(
            scraped(&pod(set_label(
                "app.kubernetes.io/name",
                "movrek-inference-x"
            )))
            .is_empty()
        );
        // Labels the selector does not name change nothing.
        assert_eq!(scraped(&pod(set_label("team", "ml"))).len(), 1);
    }

    #[test]
    fn only_the_container_port_named_http_is_scraped() {
        let renamed = pod(|p| p["spec"]["containers"][0]["ports"][0]["name"] = json!("metrics"));
        assert!(scraped(&renamed).is_empty());
        let unnamed = pod(|p| {
            p["spec"]["containers"][0]["ports"][0]
                .as_object_mut()
                .expect("port")
                .remove("name");
        });
        assert!(scraped(&unnamed).is_empty());
        let https = pod(|p| p["spec"]["containers"][0]["ports"][0]["name"] = json!("https"));
        assert!(scraped(&https).is_empty(), "the port regex is anchored");
        let two_ports = pod(|p| {
            p["spec"]["containers"][0]["ports"] = json!([
                {"name": "admin", "containerPort": 9000},
                {"name": "http", "containerPort": 8082},
            ]);
        });
        let targets = scraped(&two_ports);
        assert_eq!(targets.len(), 1, "{targets:?}");
        assert_eq!(targets[0]["instance"], "10.244.1.7:8082");
        let sidecar = pod(|p| {
            p["spec"]["containers"]
                .as_array_mut()
                .expect("containers")
                .push(json!({"name": "sidecar", "image": "x", "ports": [{"name": "http", "containerPort": 9090}]}));
        });
        assert_eq!(
            scraped(&sidecar).len(),
            2,
            "prometheus-operator scrapes every container port of that name"
        );
    }

    #[test]
    fn finished_pods_are_dropped_unready_running_pods_are_scraped_pods_without_ip_are_not_seen() {
        for phase in ["Succeeded", "Failed"] {
            assert!(scraped(&pod(|p| p["status"]["phase"] = json!(phase))).is_empty());
        }
        let unready =
            pod(|p| p["status"]["conditions"] = json!([{"type": "Ready", "status": "False"}]));
        assert_eq!(scraped(&unready).len(), 1);
        let no_ip = pod(|p| {
            p["status"] = json!({"phase": "Pending"});
        });
        assert!(pod_targets(&no_ip).is_empty());
    }

    #[test]
    fn any_namespace_watches_all_of_them_match_names_some_and_none_its_own() {
        let config = chart_config();
        let sd = &config["kubernetes_sd_configs"][0];
        assert_eq!(sd["role"], "pod");
        assert!(sd.get("namespaces").is_none(), "{sd}");
        let other = pod(|p| p["metadata"]["namespace"] = json!("team-a"));
        assert_eq!(scraped(&other)[0]["namespace"], "team-a");

        let mut monitor: Value = serde_yaml::from_str(CHART_POD_MONITOR).expect("fixture YAML");
        monitor["spec"]["namespaceSelector"] = json!({"matchNames": ["team-a", "team-b"]});
        let configs = scrape_configs(&monitor, Path::new("/k"));
        let sd = &configs[0]["kubernetes_sd_configs"][0];
        assert_eq!(sd["namespaces"]["names"], json!(["team-a", "team-b"]));
        monitor["spec"]
            .as_object_mut()
            .expect("spec")
            .remove("namespaceSelector");
        let configs = scrape_configs(&monitor, Path::new("/k"));
        let sd = &configs[0]["kubernetes_sd_configs"][0];
        assert_eq!(sd["namespaces"]["names"], json!(["movrek-system"]));
    }

    #[test]
    fn scrape_settings_come_from_the_endpoint() {
        let config = chart_config();
        assert_eq!(
            config["job_name"],
            "podMonitor/movrek-system/movrek-movrek-operator-inference/0"
        );
        assert_eq!(config["scrape_interval"], "1s");
        assert_eq!(config["metrics_path"], "/metrics");
        assert_eq!(config["honor_labels"], false);
        assert_eq!(
            config["kubernetes_sd_configs"][0]["kubeconfig_file"],
            "/k/prometheus.kubeconfig"
        );
    }

    #[test]
    fn match_expressions_translate_like_prometheus_operator() {
        let mut monitor: Value = serde_yaml::from_str(CHART_POD_MONITOR).expect("fixture YAML");
        monitor["spec"]["selector"]["matchExpressions"] = json!([
            {"key": "movrek.dev/track", "operator": "In", "values": ["stable", "canary"]},
            {"key": "movrek.dev/shadow", "operator": "DoesNotExist"},
        ]);
        let config = scrape_configs(&monitor, Path::new("/k")).remove(0);
        let scraped = |p: &Pod| -> usize {
            pod_targets(p)
                .into_iter()
                .filter_map(|t| target(&config, t))
                .count()
        };
        assert_eq!(scraped(&pod(|_| {})), 1);
        assert_eq!(
            scraped(&pod(
                |p| p["metadata"]["labels"]["movrek.dev/track"] = json!("shadow")
            )),
            0
        );
        assert_eq!(
            scraped(&pod(
                |p| p["metadata"]["labels"]["movrek.dev/shadow"] = json!("x")
            )),
            0
        );
    }

    #[test]
    #[should_panic(expected = "is not translated")]
    fn an_unknown_field_is_refused() {
        let mut monitor: Value = serde_yaml::from_str(CHART_POD_MONITOR).expect("fixture YAML");
        monitor["spec"]["podMetricsEndpoints"][0]["tlsConfig"] = json!({});
        let _ = scrape_configs(&monitor, Path::new("/k"));
    }

    #[test]
    fn relabel_follows_prometheus_semantics() {
        let labels: Labels = [("a", "x"), ("b", "y")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        // Joined with ';', anchored.
        let keep = json!([{"source_labels": ["a", "b"], "regex": "x;y", "action": "keep"}]);
        assert!(relabel(labels.clone(), keep.as_array().expect("rules")).is_some());
        let partial = json!([{"source_labels": ["a"], "regex": "", "action": "keep"}]);
        assert!(relabel(labels.clone(), partial.as_array().expect("rules")).is_none());
        // An empty result deletes the target label; $1 is the default replacement.
        let rules = json!([
            {"source_labels": ["missing"], "target_label": "a"},
            {"source_labels": ["b"], "regex": "(.)", "target_label": "c"},
            {"source_labels": ["b"], "regex": "z", "target_label": "d", "replacement": "no"},
        ]);
        let out = relabel(labels, rules.as_array().expect("rules")).expect("kept");
        assert_eq!(out.get("a"), None);
        assert_eq!(out.get("c").map(String::as_str), Some("y"));
        assert_eq!(out.get("d"), None);
    }
}
