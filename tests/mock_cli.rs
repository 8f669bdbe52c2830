//! `movrek-operator run` against a fake API server that knows no `RecommenderRelease`:
//! it must exit non-zero with a message naming the missing CRD and how to install it.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use warp::Filter;
use warp::http::StatusCode;

/// Kills the operator process if the test fails before it exits.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn run_without_the_crd_exits_with_a_clear_message() {
    // Every path answers 404, as an API server without the CRD does for its list URL.
    let not_found = warp::any().map(|| {
        warp::reply::with_status(
            warp::reply::json(&serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "status": "Failure",
                "reason": "NotFound", "code": 404, "message": "the server could not find the requested resource"
            })),
            StatusCode::NOT_FOUND,
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(warp::serve(not_found).incoming(listener).run());

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let mut file = std::fs::File::create(&kubeconfig).unwrap();
    write!(
        file,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://127.0.0.1:{port}\n\
         users:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: c\n  context:\n    cluster: fake\n    user: u\n\
         current-context: c\n"
    )
    .unwrap();

    let child = Command::new(env!("CARGO_BIN_EXE_movrek-operator"))
        .args(["run", "--http", "127.0.0.1:0"])
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = KillOnDrop(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = guard.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the operator did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(guard.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("recommenderreleases.movrek.dev is not installed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("movrek-operator crd | kubectl apply -f -"),
        "{stderr}"
    );
    server.abort();
}
