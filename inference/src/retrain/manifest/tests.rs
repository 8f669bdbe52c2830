use serde::Deserialize as _;
use serde_json::json;

use super::*;

fn fields() -> ModelFields {
    ModelFields {
        version: "r0123456789ab".into(),
        uri: "s3://models/prod/movies/r0123456789ab/model.movrek".into(),
        sha256: "ab12".into(),
        offline_rmse: 0.912_345,
        provenance: Some(json!({"parentVersion": "v1"})),
    }
}

fn set(text: &str) -> Result<String, ManifestError> {
    set_model(text, "movies", "prod", &fields())
}

/// Every document of `text`, read by a real YAML parser.
fn documents_of(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).expect("valid YAML"))
        .collect()
}

const FILE: &str = r#"# Production releases. Edited by people and by movrek retrain.
apiVersion: v1
kind: ConfigMap
metadata:
  name: movies   # same name, another kind
data:
  version: "untouched"
---
apiVersion: movrek.dev/v1alpha1
kind: RecommenderRelease
metadata:
  name: movies
  namespace: prod
  labels: {team: recs}
spec:
  image: registry.example/movrek-inference:0.1.0
  model:
    # The model serving now; movrek retrain moves it.
    uri: s3://models/prod/movies/v1/model.movrek
    version: "v1"   # first
    credentialsSecret: s3-creds
    sha256: 'old'
    offlineRmse: 0.95

  replicas: 2   # after a blank line
  canary:
    stepWeights:
    - 5
    - 20
---
# Another release is not touched.
apiVersion: movrek.dev/v1alpha1
kind: RecommenderRelease
metadata:
  name: books
  namespace: prod
spec:
  model:
    version: "v1"
"#;

#[test]
fn only_the_owned_lines_of_the_one_release_change() {
    let want = FILE
        .replace(
            "    uri: s3://models/prod/movies/v1/model.movrek\n",
            "    uri: \"s3://models/prod/movies/r0123456789ab/model.movrek\"\n",
        )
        .replace(
            "    version: \"v1\"   # first\n",
            "    version: \"r0123456789ab\"   # first\n",
        )
        .replace("    sha256: 'old'\n", "    sha256: \"ab12\"\n")
        .replace(
            "    offlineRmse: 0.95\n",
            "    offlineRmse: 0.9123\n    provenance: {\"parentVersion\":\"v1\"}\n",
        );
    assert_ne!(want, FILE, "the replacements above all matched");
    assert_eq!(set(FILE).unwrap(), want);
}

#[test]
fn the_edited_file_reads_as_the_direct_apply_would_leave_it() {
    let edited = set(FILE).unwrap();
    let docs = documents_of(&edited);
    assert_eq!(docs.len(), 3);
    let mut model = model_patch("movies", "prod", &fields())["spec"]["model"].clone();
    model["credentialsSecret"] = json!("s3-creds");
    assert_eq!(docs[1]["spec"]["model"], model);
    assert_eq!(docs[1]["spec"]["canary"]["stepWeights"], json!([5, 20]));
    assert_eq!(docs[0], documents_of(FILE)[0]);
    assert_eq!(docs[2], documents_of(FILE)[2]);
}

#[test]
fn editing_twice_gives_the_text_of_editing_once() {
    for text in [FILE, SPARSE, FOUR_SPACES, CRLF] {
        let once = set(text).unwrap();
        assert_eq!(set(&once).unwrap(), once, "{text}");
    }
}

const SPARSE: &str = "apiVersion: movrek.dev/v1alpha1
kind: RecommenderRelease
metadata:
  name: movies
spec:
  model:
    version: v1
  port: 8082
";

#[test]
fn missing_fields_are_added_at_the_end_of_spec_model() {
    // No namespace in the document: it matches the namespace it is applied into.
    assert_eq!(
        set(SPARSE).unwrap(),
        "apiVersion: movrek.dev/v1alpha1
kind: RecommenderRelease
metadata:
  name: movies
spec:
  model:
    version: \"r0123456789ab\"
    uri: \"s3://models/prod/movies/r0123456789ab/model.movrek\"
    sha256: \"ab12\"
    offlineRmse: 0.9123
    provenance: {\"parentVersion\":\"v1\"}
  port: 8082
"
    );
}

const FOUR_SPACES: &str = "kind: RecommenderRelease
metadata:
    name: \"movies\"
    namespace: 'prod'
spec:
    model:
    port: 8082
";

#[test]
fn an_empty_model_gets_the_files_indentation_step() {
    let edited = set(FOUR_SPACES).unwrap();
    assert!(
        edited.starts_with(
            "kind: RecommenderRelease
metadata:
    name: \"movies\"
    namespace: 'prod'
spec:
    model:
        version: \"r0123456789ab\"
        uri: "
        ),
        "{edited}"
    );
    assert!(edited.ends_with("}\n    port: 8082\n"), "{edited}");
    assert_eq!(
        documents_of(&edited)[0]["spec"]["model"]["offlineRmse"],
        0.9123
    );
}

const CRLF: &str = "kind: RecommenderRelease\r\nmetadata:\r\n  name: movies\r\nspec:\r\n  model:\r\n    version: v1\r\n    offlineRmse: 1\r\n  port: 8082";

#[test]
fn line_endings_and_a_missing_final_newline_are_kept() {
    assert_eq!(
        set(CRLF).unwrap(),
        "kind: RecommenderRelease\r\nmetadata:\r\n  name: movies\r\nspec:\r\n  model:\r\n    \
         version: \"r0123456789ab\"\r\n    offlineRmse: 0.9123\r\n    uri: \
         \"s3://models/prod/movies/r0123456789ab/model.movrek\"\r\n    sha256: \"ab12\"\r\n    \
         provenance: {\"parentVersion\":\"v1\"}\r\n  port: 8082"
    );
    let at_the_end = "kind: RecommenderRelease\nmetadata:\n  name: movies\nspec:\n  model:\n    \
                      version: v1";
    let edited = set(at_the_end).unwrap();
    assert!(edited.starts_with(&format!("{}\"r0", &at_the_end[..at_the_end.len() - 2])));
    assert!(edited.ends_with("{\"parentVersion\":\"v1\"}"), "{edited}");
    assert_eq!(set(&edited).unwrap(), edited);
}

#[test]
fn values_already_there_keep_their_lines_whatever_their_quotes() {
    let text = "kind: RecommenderRelease
metadata:
  name: movies
spec:
  model:
    version: 'r0123456789ab'   # kept as written
    uri: s3://models/prod/movies/r0123456789ab/model.movrek
    sha256: \"ab12\"
    offlineRmse: 0.9123 # from the report
    provenance: { \"parentVersion\": \"v1\" }
";
    assert_eq!(set(text).unwrap(), text);
}

#[test]
fn a_version_yaml_would_read_as_a_number_is_quoted() {
    let text = "kind: RecommenderRelease\nmetadata:\n  name: movies\nspec:\n  model:\n    \
                version: 1.10\n";
    let fields = ModelFields {
        version: "1.10".into(),
        ..fields()
    };
    let edited = set_model(text, "movies", "prod", &fields).unwrap();
    assert!(edited.contains("    version: \"1.10\"\n"), "{edited}");
    assert_eq!(documents_of(&edited)[0]["spec"]["model"]["version"], "1.10");
    for plain in ["no", "On", "0x1f", "1e3", "2026-12-04", "12:30", "~", "-1"] {
        assert!(plain_might_not_be_string(plain), "{plain}");
    }
    for plain in ["v7", "r0123456789ab", "s3://bucket/x", "movies-2"] {
        assert!(!plain_might_not_be_string(plain), "{plain}");
    }
}

#[test]
fn a_provenance_block_is_replaced_whole_and_comments_after_it_stay() {
    let text = "kind: RecommenderRelease
metadata:
  name: movies
spec:
  model:
    provenance:
      parentVersion: v0
      # inside: replaced with the block
      fairnessGaps:
        - dimension: gender
          gap: 0.1
    # after the block: kept
    version: v1
";
    assert_eq!(
        set(text).unwrap(),
        "kind: RecommenderRelease
metadata:
  name: movies
spec:
  model:
    provenance: {\"parentVersion\":\"v1\"}
    # after the block: kept
    version: \"r0123456789ab\"
    uri: \"s3://models/prod/movies/r0123456789ab/model.movrek\"
    sha256: \"ab12\"
    offlineRmse: 0.9123
"
    );
}

#[test]
fn without_provenance_a_stale_one_is_removed() {
    let text = "kind: RecommenderRelease
metadata:
  name: movies
spec:
  model:
    version: v1
    provenance:
      parentVersion: v0
    offlineRmse: 0.9123
";
    let bare = ModelFields {
        provenance: None,
        ..fields()
    };
    let edited = set_model(text, "movies", "prod", &bare).unwrap();
    assert!(!edited.contains("provenance"), "{edited}");
    assert!(!edited.contains("v0"), "{edited}");
    assert!(
        edited.contains("    offlineRmse: 0.9123\n    uri: "),
        "{edited}"
    );
}

#[test]
fn another_release_or_namespace_is_no_release_and_says_what_the_file_holds() {
    let error = set_model(FILE, "shows", "prod", &fields()).unwrap_err();
    assert_eq!(
        error,
        ManifestError::NoRelease {
            wanted: "prod/shows".into(),
            found: vec!["prod/movies".into(), "prod/books".into()],
            unreadable: None,
        }
    );
    assert_eq!(
        error.to_string(),
        "no RecommenderRelease prod/shows in the file (it holds prod/movies, prod/books)"
    );
    let error = set_model(FILE, "movies", "staging", &fields()).unwrap_err();
    assert!(matches!(error, ManifestError::NoRelease { .. }), "{error}");
    let error = set_model("", "movies", "prod", &fields()).unwrap_err();
    assert!(matches!(error, ManifestError::NoRelease { .. }), "{error}");
}

#[test]
fn an_unreadable_document_is_named_when_the_release_is_not_found() {
    let text = "kind: RecommenderRelease\nmetadata:\n  name: movies\n  name: again\n";
    let error = set(text).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("line 4: metadata.name appears twice"),
        "{error}"
    );
}

#[test]
fn the_same_release_twice_is_ambiguous() {
    let text = format!("{SPARSE}---\n{SPARSE}");
    assert_eq!(
        set(&text).unwrap_err(),
        ManifestError::Ambiguous {
            wanted: "prod/movies".into(),
            count: 2,
            lines: "1, 10".into(),
        }
    );
}

fn release(model: &str) -> String {
    format!("kind: RecommenderRelease\nmetadata:\n  name: movies\nspec:\n{model}")
}

#[test]
fn what_cannot_be_edited_safely_is_refused_with_its_line() {
    let refused = |model: &str| set(&release(model)).unwrap_err();
    assert_eq!(
        refused("  model: {version: v1}\n"),
        ManifestError::FlowStyle {
            line: 5,
            path: "spec.model".into()
        }
    );
    assert_eq!(
        refused("  model: &m\n    version: v1\n"),
        ManifestError::AnchorOrAlias {
            line: 5,
            path: "spec.model".into()
        }
    );
    assert_eq!(
        refused("  model: *m\n"),
        ManifestError::AnchorOrAlias {
            line: 5,
            path: "spec.model".into()
        }
    );
    assert_eq!(
        refused("  model:\n    version: *v\n"),
        ManifestError::AnchorOrAlias {
            line: 6,
            path: "spec.model.version".into()
        }
    );
    assert_eq!(
        refused("  model:\n    <<: *defaults\n"),
        ManifestError::AnchorOrAlias {
            line: 6,
            path: "spec.model".into()
        }
    );
    assert_eq!(
        refused("  model:\n    version: v1\n    version: v2\n"),
        ManifestError::DuplicateKey {
            line: 7,
            path: "spec.model.version".into()
        }
    );
    assert_eq!(
        refused("  model:\n\t  version: v1\n"),
        ManifestError::Tab { line: 6 }
    );
    assert_eq!(
        refused("  model:\n    version: {{ .Values.version }}\n"),
        ManifestError::Templated { line: 6 }
    );
    assert_eq!(
        refused("  replicas: 2\n"),
        ManifestError::Missing { path: "spec.model" }
    );
    assert_eq!(
        set("kind: RecommenderRelease\nmetadata:\n  name: movies\n").unwrap_err(),
        ManifestError::Missing { path: "spec" }
    );
    assert_eq!(
        set("kind: RecommenderRelease\nmetadata:\n  name: movies\nspec: {model: {}}\n")
            .unwrap_err(),
        ManifestError::FlowStyle {
            line: 4,
            path: "spec".into()
        }
    );
    assert_eq!(
        refused("  model:\n    version: v1\n   stray\n"),
        ManifestError::NotAMapping {
            line: 7,
            path: "spec.model".into()
        }
    );
}

#[test]
fn keys_and_scalars_are_read_as_yaml_writes_them() {
    assert_eq!(key_of("version: v1"), Some(("version".into(), 8)));
    assert_eq!(key_of("\"odd key\" : v"), Some(("odd key".into(), 11)));
    assert_eq!(key_of("'it''s': v"), Some(("it's".into(), 8)));
    assert_eq!(
        key_of("app.kubernetes.io/name: x"),
        Some(("app.kubernetes.io/name".into(), 23))
    );
    assert_eq!(key_of("url:"), Some(("url".into(), 4)));
    assert_eq!(key_of("- item: 1"), None);
    assert_eq!(key_of("http://not-a-key"), None);
    assert_eq!(key_of("text # key: no"), None);
    assert_eq!(scalar(" v1  # c"), Some(("v1".into(), false, "  # c")));
    assert_eq!(
        scalar(" \"a\\\"b\" # c"),
        Some(("a\"b".into(), true, " # c"))
    );
    assert_eq!(scalar(" 'it''s'"), Some(("it's".into(), true, "")));
    assert_eq!(scalar(" a#b"), Some(("a#b".into(), false, "")));
    assert_eq!(scalar(" \"unterminated"), None);
    assert_eq!(scalar(" \"yaml only \\x41\""), None);
    assert_eq!(scalar(" |"), None);
    assert_eq!(scalar(""), None);
}
