//! The event bus of the quality scenario: a real Kafka broker (the one `hack/test.sh` runs for
//! the whole test run, named by `MOVREK_KAFKA_BOOTSTRAP`, or one this module starts with
//! `hack/kafka/up` and stops with `hack/kafka/down`), its topics, and a real `movrek evaluate`
//! that Prometheus scrapes.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::cluster;
use crate::support::{ChildGuard, free_port, movrek_bin, spawn_ready};

/// A broker to use, and the directory of the one this run started (stopped on drop).
pub struct Bus {
    /// `host:port` of the broker.
    pub bootstrap: String,
    own: Option<PathBuf>,
}

fn hack(script: &str) -> Command {
    Command::new(cluster::repo_root().join("hack/kafka").join(script))
}

fn run(mut cmd: Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Bus {
    /// The test run's broker, or a new one under `dir`.
    pub fn start(dir: &Path) -> Self {
        if let Ok(bootstrap) = std::env::var("MOVREK_KAFKA_BOOTSTRAP")
            && !bootstrap.is_empty()
        {
            return Self {
                bootstrap,
                own: None,
            };
        }
        run(hack("build.sh"), "hack/kafka/build.sh");
        let own = dir.join("kafka");
        std::fs::create_dir_all(&own).expect("create the broker dir");
        let mut up = hack("up");
        up.arg(&own);
        let printed = run(up, "hack/kafka/up");
        let bootstrap = printed
            .lines()
            .last()
            .expect("hack/kafka/up prints the bootstrap address")
            .trim()
            .to_owned();
        Self {
            bootstrap,
            own: Some(own),
        }
    }

    /// Creates `topic` with four partitions (the broker does not create topics on use).
    pub fn create_topic(&self, topic: &str) {
        let mut cmd = hack("tool");
        cmd.args([
            "topics",
            "--bootstrap-server",
            &self.bootstrap,
            "--create",
            "--if-not-exists",
            "--topic",
            topic,
            "--partitions",
            "4",
            "--replication-factor",
            "1",
        ]);
        run(cmd, &format!("create topic {topic}"));
    }

    /// Appends `lines` to `topic`, one record each, with Kafka's own console producer
    /// (acknowledged by the broker before it exits; killed after 60 s).
    pub fn produce(&self, topic: &str, lines: &[String]) {
        let mut child = Command::new("timeout")
            .args(["--kill-after=5", "60"])
            .arg(cluster::repo_root().join("hack/kafka/tool"))
            .args([
                "console-producer",
                "--bootstrap-server",
                &self.bootstrap,
                "--topic",
                topic,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the console producer");
        let mut stdin = child.stdin.take().expect("producer stdin");
        for line in lines {
            writeln!(stdin, "{line}").expect("write to the console producer");
        }
        drop(stdin);
        let out = child
            .wait_with_output()
            .expect("wait for the console producer");
        assert!(
            out.status.success(),
            "console producer to {topic} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        if let Some(dir) = &self.own {
            let _ = hack("down").arg(dir).output();
        }
    }
}

/// A running `movrek evaluate`, stopped by pid on drop.
pub struct Evaluator {
    /// Where its `/metrics` listens.
    pub addr: SocketAddr,
    /// `None` while it is stopped (an outage).
    process: Option<ChildGuard>,
    command: Vec<String>,
    log: PathBuf,
}

impl Evaluator {
    /// Joins `impressions` and `events` with a 60 s attribution window (the scenario's users
    /// watch in virtual seconds) and 2 s of lateness, checkpointing to a topic of its own.
    pub async fn start(bus: &Bus, impressions: &str, events: &str, tag: &str, log: &Path) -> Self {
        let port = free_port();
        let command = [
            "evaluate",
            "--brokers",
            &bus.bootstrap,
            "--impressions-topic",
            impressions,
            "--events-topic",
            events,
            "--state-topic",
            &format!("movrek-state-{tag}"),
            "--name",
            &format!("movrek-evaluate-{tag}"),
            "--window-secs",
            "60",
            "--lateness-secs",
            "2",
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ]
        .map(str::to_owned)
        .to_vec();
        let mut evaluator = Self {
            addr: format!("127.0.0.1:{port}").parse().expect("address"),
            process: None,
            command,
            log: log.to_owned(),
        };
        evaluator.resume().await;
        evaluator
    }

    /// Kills the process (an outage: no graceful checkpoint).
    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop();
        }
    }

    /// Starts it (again) with the same name, state topic and port, and waits for `/metrics`.
    pub async fn resume(&mut self) {
        let mut cmd = Command::new(movrek_bin());
        cmd.args(&self.command).env("MOVREK_LOG", "warn");
        self.process = Some(
            spawn_ready(
                "movrek evaluate",
                cmd,
                &self.log,
                &format!("http://{}/metrics", self.addr),
                Duration::from_secs(60),
            )
            .await,
        );
    }

    /// Waits until the evaluator has scored lists of `release`'s `track`; panics after
    /// `limit` with its metrics and log, which say which part of the loop is missing.
    pub async fn wait_scored(&self, release: &str, track: &str, limit: Duration) -> f64 {
        let needle = format!("movrek_online_score_count{{release=\"{release}\",track=\"{track}\"");
        let deadline = std::time::Instant::now() + limit;
        let mut last = String::new();
        while std::time::Instant::now() < deadline {
            if let Ok(r) = reqwest::get(format!("http://{}/metrics", self.addr)).await
                && let Ok(text) = r.text().await
            {
                let scored: f64 = text
                    .lines()
                    .filter(|l| l.starts_with(&needle))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum();
                if scored > 0.0 {
                    return scored;
                }
                last = text;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let metrics: Vec<&str> = last
            .lines()
            .filter(|l| !l.starts_with('#') && !l.contains("_bucket"))
            .collect();
        panic!(
            "movrek evaluate scored nothing for {release}/{track} in {limit:?}; its metrics:\n{}\nits log:\n{}",
            metrics.join("\n"),
            self.process
                .as_ref()
                .map(|p| p.log_tail(20))
                .unwrap_or_default()
        );
    }
}
