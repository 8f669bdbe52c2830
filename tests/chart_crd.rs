//! The Helm chart ships the CRD in `charts/movrek-operator/crds/`; these tests fail when that
//! copy drifts from `crds/` (which is generated from the Rust types).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

const FIX: &str = "refresh the chart's copy: cp crds/*.yaml charts/movrek-operator/crds/";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Names of the `.yaml` files directly in `dir`.
fn yaml_files(dir: &Path) -> BTreeSet<String> {
    let entries =
        fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    entries
        .map(|entry| entry.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display())))
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| {
            Path::new(name).extension().is_some_and(|ext| {
                ext.eq_ignore_ascii_case("yaml") || ext.eq_ignore_ascii_case("yml")
            })
        })
        .collect()
}

/// First differing line (1-based) with both versions, for a readable failure.
fn first_difference(a: &str, b: &str) -> Option<(usize, String, String)> {
    let mut left = a.lines();
    let mut right = b.lines();
    let mut line = 0;
    loop {
        line += 1;
        match (left.next(), right.next()) {
            (None, None) => return None,
            (l, r) if l == r => {}
            (l, r) => {
                let show =
                    |s: Option<&str>| s.map_or_else(|| "<end of file>".to_owned(), str::to_owned);
                return Some((line, show(l), show(r)));
            }
        }
    }
}

#[test]
fn chart_ships_the_same_crd_files_as_crds_dir() {
    let source = yaml_files(&root().join("crds"));
    let chart = yaml_files(&root().join("charts/movrek-operator/crds"));
    assert!(!source.is_empty(), "crds/ holds no CRD YAML");
    assert_eq!(
        chart, source,
        "charts/movrek-operator/crds/ and crds/ list different files; {FIX}"
    );
}

#[test]
fn chart_crd_is_byte_identical_to_generated_crd() {
    for name in yaml_files(&root().join("crds")) {
        let source_path = root().join("crds").join(&name);
        let chart_path = root().join("charts/movrek-operator/crds").join(&name);
        let source = fs::read_to_string(&source_path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", source_path.display()));
        let chart = fs::read_to_string(&chart_path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", chart_path.display()));
        if let Some((line, want, got)) = first_difference(&source, &chart) {
            panic!(
                "charts/movrek-operator/crds/{name} differs from crds/{name} at line {line}:\n  \
                 crds/:  {want}\n  chart:  {got}\n{FIX}"
            );
        }
        assert!(
            source == chart,
            "charts/movrek-operator/crds/{name} differs from crds/{name} in line endings or the final newline; {FIX}"
        );
    }
}

#[test]
fn first_difference_reports_changed_and_missing_lines() {
    assert_eq!(first_difference("a\nb\n", "a\nb\n"), None);
    assert_eq!(
        first_difference("a\nb\n", "a\nc\n"),
        Some((2, "b".to_owned(), "c".to_owned()))
    );
    assert_eq!(
        first_difference("a\nb\n", "a\n"),
        Some((2, "b".to_owned(), "<end of file>".to_owned()))
    );
}
