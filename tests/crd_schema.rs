//! The generated CRD file is current, and its CEL rules accept the examples and refuse
//! bad specs with the intended message (evaluated client-side with kube's CEL validator).

use kube::CustomResourceExt;
use movrek_operator::crd::{RecommenderRelease, RecommenderReleaseSpec, crd_yaml};
use serde_json::{Value, json};

const CRD_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/crds/recommenderreleases.movrek.dev.yaml"
);

#[test]
fn crd_file_matches_the_rust_types() {
    let on_disk = std::fs::read_to_string(CRD_FILE).expect("crds/ file exists");
    let generated = crd_yaml().expect("CRD renders");
    assert!(
        on_disk == generated,
        "crds/recommenderreleases.movrek.dev.yaml is stale; regenerate with \
         `cargo run -p movrek-operator -- crd > crds/recommenderreleases.movrek.dev.yaml`"
    );
}

#[test]
fn crd_file_parses_back_to_the_same_definition() {
    let on_disk: Value = serde_yaml::from_str(&std::fs::read_to_string(CRD_FILE).unwrap()).unwrap();
    assert_eq!(
        on_disk,
        serde_json::to_value(RecommenderRelease::crd()).unwrap()
    );
}

fn valid_spec() -> Value {
    json!({
        "image": "registry.example/movrek-inference:0.1.0",
        "model": {
            "version": "v7",
            "uri": "http://models.internal/movies/v7.movrek",
            "sha256": "a".repeat(64),
            "offlineRmse": 0.91,
            "credentialsSecret": "model-store"
        },
        "replicas": 2,
        "port": 8082,
        "traffic": {"provider": "ingress-nginx", "host": "movies.example"},
        "canary": {
            "weight": 20,
            "stepWeights": [5, 20, 50],
            "soakDuration": "12h",
            "interval": "1m",
            "maxAverageLatency": "500ms",
            "maxErrorRate": 0.01,
            "minRequests": 100,
            "failureLimit": 3,
            "progressDeadline": "10m",
            "maxRmse": 1.0,
            "prometheus": {"address": "http://prometheus.monitoring:9090"},
            "judge": {"alpha": 0.05}
        },
        "notify": {"webhookUrl": "https://hooks.example/T000"},
        "impressions": {"brokers": "kafka:9092"}
    })
}

/// Sets `pointer` (a JSON pointer) in a valid spec and returns the CEL messages.
fn messages_with(pointer: &str, value: Value) -> Vec<String> {
    let mut spec = valid_spec();
    *spec
        .pointer_mut(pointer)
        .expect("pointer exists in the valid spec") = value;
    match RecommenderReleaseSpec::validate_cel(&spec, None) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn assert_refused(pointer: &str, value: Value, expected: &str) {
    let shown = value.to_string();
    let messages = messages_with(pointer, value);
    assert!(
        messages.iter().any(|m| m.contains(expected)),
        "{pointer} = {shown}: expected a message containing {expected:?}, got {messages:?}"
    );
}

#[test]
fn the_design_example_is_accepted() {
    let result = RecommenderReleaseSpec::validate_cel(&valid_spec(), None);
    assert!(result.is_ok(), "{result:?}");
}

#[test]
fn store_uris_and_a_credentials_secret_are_accepted() {
    for uri in [
        "s3://models/movies/v7/model.movrek",
        "gs://models/movies/v7/model.movrek",
        "az://models/movies/v7/model.movrek",
        "file:///models/v7.movrek",
    ] {
        assert_eq!(
            messages_with("/model/uri", json!(uri)),
            Vec::<String>::new(),
            "{uri}"
        );
    }
    for name in ["model-store", "a", "store.creds-1"] {
        assert_eq!(
            messages_with("/model/credentialsSecret", json!(name)),
            Vec::<String>::new(),
            "{name}"
        );
    }
    for bad in ["Model-Store", "-store", "store-", "a..b", "store_creds", ""] {
        assert_refused(
            "/model/credentialsSecret",
            json!(bad),
            "spec.model.credentialsSecret must be a Secret name",
        );
    }
}

#[test]
fn required_fields_must_be_non_empty() {
    assert_refused("/image", json!(""), "spec.image is required");
    assert_refused(
        "/model/version",
        json!(""),
        "spec.model.version is required",
    );
    assert_refused(
        "/model/uri",
        json!("ftp://bucket/m"),
        "spec.model.uri must start with",
    );
    assert_refused(
        "/model/sha256",
        json!("ABC"),
        "spec.model.sha256 must be 64",
    );
}

#[test]
fn step_weights_must_increase_strictly_and_stay_in_range() {
    assert_refused(
        "/canary/stepWeights",
        json!([5, 50, 20]),
        "strictly increasing",
    );
    assert_refused(
        "/canary/stepWeights",
        json!([5, 5, 20]),
        "strictly increasing",
    );
    assert_refused("/canary/stepWeights", json!([5, 120]), "between 1 and 100");
    assert_refused("/canary/stepWeights", json!([0, 10]), "between 1 and 100");
    assert!(messages_with("/canary/stepWeights", json!([1, 2, 100])).is_empty());
}

#[test]
fn durations_must_be_positive() {
    for field in [
        "soakDuration",
        "interval",
        "maxAverageLatency",
        "progressDeadline",
    ] {
        assert_refused(
            &format!("/canary/{field}"),
            json!("0s"),
            "durations must be positive",
        );
    }
    assert!(messages_with("/canary/soakDuration", json!("1h30m")).is_empty());
}

#[test]
fn failure_limit_and_gates_have_bounds() {
    assert_refused(
        "/canary/failureLimit",
        json!(0),
        "failureLimit must be at least 1",
    );
    assert_refused("/canary/maxRmse", json!(0.0), "maxRmse must be > 0");
    assert_refused(
        "/model/offlineRmse",
        json!(-0.5),
        "offlineRmse must be >= 0",
    );
}

#[test]
fn judge_settings_are_bounded() {
    assert_refused(
        "/canary/judge",
        json!({"alpha": 0.0}),
        "alpha must be in (0, 0.5)",
    );
    assert_refused(
        "/canary/judge",
        json!({"alpha": 0.5}),
        "alpha must be in (0, 0.5)",
    );
    assert_refused(
        "/canary/judge",
        json!({"score": {"tolerance": 1.0}}),
        "tolerance must be in [0, 1)",
    );
    assert_refused(
        "/canary/judge",
        json!({"errors": {"tolerance": 0.5, "floor": 0.0}}),
        "floor must be in (0, 1)",
    );
    assert!(messages_with("/canary/judge", json!({})).is_empty());
}

#[test]
fn impressions_need_host_port_brokers_and_a_topic_name() {
    let ok = json!({"brokers": "kafka:9092,10.0.0.7:9093", "topic": "impressions"});
    assert!(messages_with("/impressions", ok).is_empty());
    assert_refused(
        "/impressions",
        json!({"brokers": "kafka", "topic": "impressions"}),
        "brokers must be host:port",
    );
    assert_refused(
        "/impressions",
        json!({"brokers": "kafka:9092, other:9092", "topic": "impressions"}),
        "brokers must be host:port",
    );
    assert_refused(
        "/impressions",
        json!({"brokers": "kafka:9092", "topic": "a topic"}),
        "must be a Kafka topic name",
    );
}

#[test]
fn gateway_api_needs_parent_refs() {
    assert_refused(
        "/traffic",
        json!({"provider": "gateway-api"}),
        "parentRefs is required when provider is gateway-api",
    );
    assert!(
        messages_with(
            "/traffic",
            json!({"provider": "gateway-api", "parentRefs": [{"name": "public"}]})
        )
        .is_empty()
    );
}

#[test]
fn notify_needs_exactly_one_destination() {
    assert_refused(
        "/notify",
        json!({"webhookUrl": "https://h.example/x", "secretRef": {"name": "s"}}),
        "exactly one of webhookUrl or secretRef",
    );
    assert_refused(
        "/notify",
        json!({}),
        "exactly one of webhookUrl or secretRef",
    );
}

#[test]
fn weight_bound_and_provider_enum_are_in_the_schema() {
    let schema = serde_json::to_value(RecommenderRelease::crd()).unwrap();
    let spec = &schema["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let weight = &spec["properties"]["canary"]["properties"]["weight"];
    assert_eq!(weight["minimum"].as_f64(), Some(0.0));
    assert_eq!(weight["maximum"].as_f64(), Some(100.0));
    assert_eq!(
        spec["properties"]["traffic"]["properties"]["provider"]["enum"],
        json!(["ingress-nginx", "gateway-api", "replicas"])
    );
    assert_eq!(spec["required"], json!(["image", "model"]));
}

#[test]
fn every_example_deserializes_and_passes_the_cel_rules() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let release: RecommenderRelease = serde_yaml::from_str(&text)
            .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
        let spec = serde_json::to_value(&release.spec).unwrap();
        let written: Value = serde_yaml::from_str(&text).unwrap();
        assert!(
            movrek_operator::children::contains(&written["spec"], &spec),
            "{}: a field the types do not know (the API server would refuse it)",
            path.display()
        );
        let result = RecommenderReleaseSpec::validate_cel(&spec, None);
        assert!(result.is_ok(), "{}: {result:?}", path.display());
        seen += 1;
    }
    assert!(seen >= 2, "expected the example manifests in examples/");
}

#[test]
fn the_provenance_movrek_retrain_applies_is_accepted_and_read() {
    // As `movrek retrain` printed it on ml-latest-small (bench/retrain.sh), offsets added.
    let provenance = json!({
        "dataDigest": "cbd0ef486eb66f8270b810d10ca91c60e3d0da3c6a7ad6caba21a8f5396c2279",
        "dataUri": "s3://models/movies/rd71d51c389a6/dataset.json",
        "eventRange": {"firstEvent": "2026-12-01T00:00:02Z", "lastEvent": "2026-12-01T23:57:07Z",
                       "offsets": "0:0-28710,1:0-28620", "source": "kafka://kafka:9092/events"},
        "fairnessGaps": [{"dimension": "gender", "gap": 0.0, "growth": 0.0, "metric": "rmse"}],
        "offlineNdcg10": 0.1508, "parentNdcg10": 0.1439, "parentRmse": 0.9118,
        "parentVersion": "v1"
    });
    let mut spec = valid_spec();
    spec["model"]["provenance"] = provenance.clone();
    let result = RecommenderReleaseSpec::validate_cel(&spec, None);
    assert!(result.is_ok(), "{result:?}");
    let spec: RecommenderReleaseSpec = serde_json::from_value(spec).unwrap();
    let read = spec.model.provenance.clone().expect("provenance read");
    assert_eq!(read.parent_version.as_deref(), Some("v1"));
    assert_eq!(
        read.event_range.unwrap().offsets.as_deref(),
        Some("0:0-28710,1:0-28620")
    );
    // Written back unchanged: nothing the retrain job sent is lost.
    assert_eq!(
        serde_json::to_value(&spec.model).unwrap()["provenance"],
        provenance
    );
}
