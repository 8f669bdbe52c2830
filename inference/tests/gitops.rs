//! `--handoff gitops` with the real `git` CLI against local bare repositories (`file://`
//! URLs, and one `127.0.0.1` port that never answers): a new version is one commit with the
//! manifest edited exactly and the author set; a rerun commits nothing; a push that loses a
//! race is retried on the new tip, and three lost races fail with nothing pushed; a wrong
//! release, a missing file or a symlink out of the clone fail with no commit; an unreachable
//! repository fails within the deadline without printing its credentials; no `git` is a
//! clear error. The last test runs `movrek retrain --handoff gitops` end to end on a local
//! store and an event file (no Kafka, no S3). Every directory is a `TempDir`, and each test
//! checks that the handoff's own clone directory is gone.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use movrek_inference::retrain::gitops::{self, Git, Pushed, Target};
use movrek_inference::retrain::handoff::ModelFields;
use movrek_inference::retrain::manifest::set_model;
use serde_json::json;
use tempfile::TempDir;

#[path = "support/world.rs"]
mod world;
use world::world;

const MOVREK: &str = env!("CARGO_BIN_EXE_movrek");

const MANIFEST: &str = "# The movies team's releases (Argo CD syncs this directory).
apiVersion: movrek.dev/v1alpha1
kind: RecommenderRelease
metadata:
  name: movies
  namespace: prod
spec:
  image: registry.example/movrek-inference:0.1.0
  model:
    version: \"v1\"   # moved by movrek retrain
    uri: file:///models/movies/v1/model.movrek
    sha256: 5f4dcc3b5aa765d61d8327deb882cf992b95990a9151374abd8f639b7c3a2a8e
    offlineRmse: 0.95
  replicas: 2
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: movies-notes
data:
  owner: recs
";

/// Runs git for the test's own set-up and checks (not through the code under test).
fn git(cwd: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(cwd)
        .env("GIT_AUTHOR_NAME", "person")
        .env("GIT_AUTHOR_EMAIL", "person@example.invalid")
        .env("GIT_COMMITTER_NAME", "person")
        .env("GIT_COMMITTER_EMAIL", "person@example.invalid")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .stdin(Stdio::null())
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        cwd.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// A bare repository whose `main` holds `deploy/movies.yaml` ([`MANIFEST`]) in one commit,
/// and a scratch directory for the handoff's clones.
struct Remote {
    dir: TempDir,
    url: String,
}

impl Remote {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        git(
            root,
            &[
                "init",
                "--quiet",
                "--bare",
                "--initial-branch=main",
                "origin.git",
            ],
        );
        git(root, &["init", "--quiet", "--initial-branch=main", "seed"]);
        let seed = root.join("seed");
        std::fs::create_dir_all(seed.join("deploy")).unwrap();
        std::fs::write(seed.join("deploy/movies.yaml"), MANIFEST).unwrap();
        git(&seed, &["add", "."]);
        git(&seed, &["commit", "--quiet", "-m", "seed"]);
        git(&seed, &["push", "--quiet", "../origin.git", "main"]);
        std::fs::create_dir(root.join("scratch")).unwrap();
        let url = format!("file://{}", root.join("origin.git").display());
        Remote { dir, url }
    }

    fn bare(&self) -> PathBuf {
        self.dir.path().join("origin.git")
    }

    fn commits(&self) -> usize {
        git(&self.bare(), &["rev-list", "--count", "main"])
            .trim()
            .parse()
            .unwrap()
    }

    fn file(&self) -> String {
        git(&self.bare(), &["show", "main:deploy/movies.yaml"])
    }

    fn head(&self) -> String {
        git(&self.bare(), &["rev-parse", "main"]).trim().to_owned()
    }

    fn target(&self) -> Target {
        Target {
            url: self.url.clone(),
            branch: "main".into(),
            path: "deploy/movies.yaml".into(),
            author_name: "retrain-bot".into(),
            author_email: "retrain-bot@example.invalid".into(),
        }
    }

    /// `git` from `PATH` (or `program`), clones under this remote's scratch directory.
    fn tool(&self, program: &Path) -> Git {
        Git {
            program: program.to_owned(),
            timeout: Duration::from_secs(60),
            scratch: self.dir.path().join("scratch"),
        }
    }

    fn scratch_is_empty(&self) -> bool {
        std::fs::read_dir(self.dir.path().join("scratch"))
            .unwrap()
            .next()
            .is_none()
    }

    /// A second clone, as a person's, for racing the handoff.
    fn person(&self) -> PathBuf {
        git(self.dir.path(), &["clone", "--quiet", &self.url, "person"]);
        self.dir.path().join("person")
    }

    /// An executable `sh` script that runs `on_push` before every `git push` (only the first
    /// when `once`), then the real git.
    fn racing_git(&self, on_push: &str, once: bool) -> PathBuf {
        let mark = self.dir.path().join("raced");
        let guard = if once {
            format!("[ -e '{0}' ] && exec git \"$@\"; : > '{0}'", mark.display())
        } else {
            String::new()
        };
        let script = format!(
            "#!/bin/sh\ncase \" $* \" in *\" push \"*)\n{guard}\n{on_push}\n;;\nesac\nexec git \"$@\"\n"
        );
        let path = self.dir.path().join("racing-git");
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }
}

fn fields() -> ModelFields {
    ModelFields {
        version: "r0123456789ab".into(),
        uri: "file:///models/movies/r0123456789ab/model.movrek".into(),
        sha256: "a".repeat(64),
        offline_rmse: 0.912_345,
        provenance: Some(json!({"parentVersion": "v1", "dataDigest": "d".repeat(64)})),
    }
}

fn message() -> String {
    gitops::commit_message("movies", "prod", &fields(), Some("v1"), None)
}

fn hand_off(git: &Git, target: &Target, release: &str) -> Result<Pushed, String> {
    gitops::hand_off(git, target, (release, "prod"), &fields(), &message())
}

#[test]
fn a_new_version_is_one_commit_and_a_rerun_commits_nothing() {
    let remote = Remote::new();
    let git_cli = remote.tool(Path::new("git"));
    let pushed = hand_off(&git_cli, &remote.target(), "movies").expect("handed off");
    let Pushed::Committed { commit, attempts } = pushed else {
        panic!("expected a commit, got {pushed:?}");
    };
    assert_eq!(attempts, 1);
    assert_eq!(commit, remote.head());
    assert_eq!(remote.commits(), 2);
    let want = set_model(MANIFEST, "movies", "prod", &fields()).unwrap();
    assert_eq!(remote.file(), want);
    assert!(want.contains("    version: \"r0123456789ab\"   # moved by movrek retrain\n"));
    let log = git(
        &remote.bare(),
        &["log", "-1", "--format=%an <%ae>%n%cn <%ce>%n%s", "main"],
    );
    assert_eq!(
        log,
        "retrain-bot <retrain-bot@example.invalid>\nretrain-bot <retrain-bot@example.invalid>\n\
         movrek retrain: movies r0123456789ab (from v1)\n"
    );
    let changed = git(&remote.bare(), &["diff", "--name-only", "main~1", "main"]);
    assert_eq!(changed, "deploy/movies.yaml\n");
    assert!(remote.scratch_is_empty());

    let again = hand_off(&git_cli, &remote.target(), "movies").expect("rerun");
    assert_eq!(again, Pushed::Unchanged);
    assert_eq!(remote.commits(), 2);
    assert_eq!(remote.head(), commit);
    assert!(remote.scratch_is_empty());
}

#[test]
fn a_push_that_loses_a_race_is_retried_on_the_new_tip() {
    let remote = Remote::new();
    let person = remote.person();
    // The person's change, made while the handoff has its clone: a note above the release.
    let theirs = format!("# Reviewed by the on-call.\n{MANIFEST}");
    std::fs::write(person.join("deploy/movies.yaml"), &theirs).unwrap();
    let on_push = format!(
        "git -C '{0}' -c user.name=person -c user.email=p@example.invalid commit --quiet -am 'a person' && git -C '{0}' push --quiet origin main",
        person.display()
    );
    let racing = remote.racing_git(&on_push, true);
    let pushed = hand_off(&remote.tool(&racing), &remote.target(), "movies").expect("retried");
    let Pushed::Committed { commit, attempts } = pushed else {
        panic!("expected a commit, got {pushed:?}");
    };
    assert_eq!(attempts, 2);
    assert_eq!(commit, remote.head());
    assert_eq!(remote.commits(), 3, "seed, the person's, the handoff's");
    // The edit was made again on the person's version: both changes are there.
    assert_eq!(
        remote.file(),
        set_model(&theirs, "movies", "prod", &fields()).unwrap()
    );
    assert!(remote.scratch_is_empty());
}

#[test]
fn a_branch_that_keeps_moving_fails_after_three_pushes_with_nothing_pushed() {
    let remote = Remote::new();
    let person = remote.person();
    let on_push = format!(
        "date +%s%N >> '{0}/notes.txt' && git -C '{0}' add notes.txt && git -C '{0}' -c user.name=person -c user.email=p@example.invalid commit --quiet -m note && git -C '{0}' push --quiet origin main",
        person.display()
    );
    let racing = remote.racing_git(&on_push, false);
    let error = hand_off(&remote.tool(&racing), &remote.target(), "movies").unwrap_err();
    assert!(error.contains("rejected 3 times"), "{error}");
    assert_eq!(remote.commits(), 1 + 3, "the seed and three notes");
    let authors = git(&remote.bare(), &["log", "--format=%an", "main"]);
    assert!(!authors.contains("retrain-bot"), "{authors}");
    assert_eq!(remote.file(), MANIFEST);
    assert!(remote.scratch_is_empty());
}

#[test]
fn a_wrong_release_or_a_missing_file_fails_with_no_commit() {
    let remote = Remote::new();
    let git_cli = remote.tool(Path::new("git"));
    let error = hand_off(&git_cli, &remote.target(), "shows").unwrap_err();
    assert!(
        error.contains("no RecommenderRelease prod/shows in the file (it holds prod/movies)"),
        "{error}"
    );
    assert!(error.contains(&remote.url), "names the repository: {error}");
    let absent = Target {
        path: "deploy/absent.yaml".into(),
        ..remote.target()
    };
    let error = hand_off(&git_cli, &absent, "movies").unwrap_err();
    assert!(
        error.ends_with("(main:deploy/absent.yaml): no such file in the repository"),
        "{error}"
    );
    let branch = Target {
        branch: "release".into(),
        ..remote.target()
    };
    let error = hand_off(&git_cli, &branch, "movies").unwrap_err();
    assert!(error.starts_with("cannot clone "), "{error}");
    assert!(error.contains("release"), "{error}");
    assert_eq!(remote.commits(), 1);
    assert_eq!(remote.file(), MANIFEST);
    assert!(remote.scratch_is_empty());
}

#[test]
fn a_manifest_linked_from_outside_the_clone_is_not_written() {
    let remote = Remote::new();
    let outside = remote.dir.path().join("outside.yaml");
    std::fs::write(&outside, MANIFEST).unwrap();
    let person = remote.person();
    std::os::unix::fs::symlink(&outside, person.join("deploy/linked.yaml")).unwrap();
    git(&person, &["add", "deploy/linked.yaml"]);
    git(&person, &["commit", "--quiet", "-m", "a link"]);
    git(&person, &["push", "--quiet", "origin", "main"]);
    let linked = Target {
        path: "deploy/linked.yaml".into(),
        ..remote.target()
    };
    let error = hand_off(&remote.tool(Path::new("git")), &linked, "movies").unwrap_err();
    assert!(
        error.contains("not a regular file inside the repository"),
        "{error}"
    );
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), MANIFEST);
    assert_eq!(remote.commits(), 2);
    assert!(remote.scratch_is_empty());
}

#[test]
fn an_unreachable_repository_fails_within_the_deadline_and_hides_credentials() {
    let remote = Remote::new();
    // Accepts connections (the kernel does) and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://bot:s3cr3t@{}/deploy.git",
        silent.local_addr().unwrap()
    );
    let target = Target {
        url,
        ..remote.target()
    };
    let git_cli = Git {
        timeout: Duration::from_secs(2),
        ..remote.tool(Path::new("git"))
    };
    let started = Instant::now();
    let error = hand_off(&git_cli, &target, "movies").unwrap_err();
    let took = started.elapsed();
    assert!(error.contains("did not finish within 2 s"), "{error}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert!(
        !error.contains("s3cr3t") && !error.contains("bot:"),
        "{error}"
    );
    assert!(remote.scratch_is_empty());

    // A closed port is refused at once, the same way.
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let target = Target {
        url: format!("http://bot:s3cr3t@{closed}/deploy.git"),
        ..remote.target()
    };
    let error = hand_off(&git_cli, &target, "movies").unwrap_err();
    assert!(
        error.starts_with("cannot clone http://127.0.0.1:"),
        "{error}"
    );
    assert!(!error.contains("s3cr3t"), "{error}");
    drop(silent);
}

#[test]
fn without_git_the_error_says_what_is_missing() {
    let remote = Remote::new();
    let missing = remote.dir.path().join("no-such-git");
    let error = hand_off(&remote.tool(&missing), &remote.target(), "movies").unwrap_err();
    assert!(error.contains("runs the git CLI"), "{error}");
    assert!(error.contains("no-such-git"), "{error}");
    assert!(remote.scratch_is_empty());
}

fn movrek(args: &[&str]) -> Output {
    Command::new(MOVREK)
        .args(args)
        .env("MOVREK_LOG", "warn")
        .env_remove("MOVREK_WEBHOOK_URL")
        .env_remove("MOVREK_GIT_URL")
        .env_remove("MOVREK_GIT_PATH")
        .stdin(Stdio::null())
        .output()
        .expect("run movrek")
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// v1 trained on six sevenths of a synthetic data set and published to a local store; the
/// other seventh as a day of rating events in a log file. Returns (store, base data, log).
fn local_world(dir: &Path) -> (String, PathBuf, PathBuf) {
    let (base, lines) = world(dir);
    let log = dir.join("day.log");
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let model = dir.join("v1.movrek");
    let (base_arg, model_arg) = (base.to_str().unwrap(), model.to_str().unwrap());
    let out = movrek(&[
        "train",
        "--data",
        base_arg,
        "--out",
        model_arg,
        "--version",
        "v1",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let store = format!("file://{}", dir.join("store").display());
    let out = movrek(&[
        "publish",
        "--model",
        model_arg,
        "--to",
        &store,
        "--release",
        "movies",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    (store, base, log)
}

#[test]
fn movrek_retrain_commits_the_new_version_to_git_once() {
    let remote = Remote::new();
    let dir = tempfile::tempdir().unwrap();
    let (store, base, log) = local_world(dir.path());
    let retrain = || {
        movrek(&[
            "retrain",
            "--store",
            &store,
            "--release",
            "movies",
            "--namespace",
            "prod",
            "--stable-version",
            "v1",
            "--events",
            log.to_str().unwrap(),
            "--data",
            base.to_str().unwrap(),
            // The gates are tested elsewhere; here every candidate passes.
            "--max-rmse",
            "10",
            "--ndcg-tolerance",
            "1",
            "--rmse-gap-tolerance",
            "10",
            "--ndcg-gap-tolerance",
            "10",
            "--handoff",
            "gitops",
            "--git-url",
            &remote.url,
            "--git-path",
            "deploy/movies.yaml",
        ])
    };
    let out = retrain();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let head = remote.head();
    assert!(
        stderr.contains(&format!(
            "committed {head} to {} (main:deploy/movies.yaml)",
            remote.url
        )),
        "{}",
        text(&out)
    );
    assert_eq!(remote.commits(), 2);
    // The file names what was published, with the provenance movrek retrain printed.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let printed = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}: ")))
            .unwrap_or_else(|| panic!("no {key} line in\n{}", text(&out)))
            .to_owned()
    };
    let file = remote.file();
    assert!(
        file.contains(&format!("    version: {}   # moved by", printed("version"))),
        "{file}"
    );
    assert!(
        file.contains(&format!("    provenance: {}\n", printed("provenance"))),
        "{file}"
    );
    let subject = git(&remote.bare(), &["log", "-1", "--format=%s%n%b", "main"]);
    assert!(subject.starts_with("movrek retrain: movies r"), "{subject}");
    assert!(
        subject.contains("(from v1)") && subject.contains("RMSE "),
        "{subject}"
    );

    // The same run again: the version is published and already in Git.
    let out = retrain();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("was already published"), "{}", text(&out));
    assert!(stderr.contains("nothing committed"), "{}", text(&out));
    assert_eq!(remote.commits(), 2);
    assert_eq!(remote.head(), head);
}

#[test]
fn movrek_retrain_refuses_gitops_flags_before_reading_anything() {
    let out = movrek(&[
        "retrain",
        "--store",
        "/nonexistent/store",
        "--release",
        "movies",
        "--stable-version",
        "v1",
        "--events",
        "/nonexistent/day.log",
        "--handoff",
        "gitops",
        "--git-url",
        "file:///nonexistent/repo.git",
        "--git-path",
        "../escape.yaml",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("climbs out with '..'"), "{}", text(&out));
    let out = movrek(&[
        "retrain",
        "--store",
        "/nonexistent/store",
        "--release",
        "movies",
        "--stable-version",
        "v1",
        "--events",
        "/nonexistent/day.log",
        "--handoff",
        "direct",
        "--git-url",
        "file:///nonexistent/repo.git",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("one run hands off one way"),
        "{}",
        text(&out)
    );
}
