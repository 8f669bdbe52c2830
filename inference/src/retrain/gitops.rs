//! `--handoff gitops`: the new version reaches the release through a commit to the Git
//! repository that holds its manifest, as Flux image automation and Argo CD Image Updater's
//! git write-back do; Flux or Argo CD then syncs it into the cluster. The checks and texts
//! are pure ([`GitArgs::target`], [`check_path`], [`check_branch`], [`redact`],
//! [`push_rejected`], [`commit_message`]), the edit is [`set_model`], and [`hand_off`] runs
//! the `git` CLI around them.
//!
//! The `git` CLI, not a library: `gix` cannot push, and `git2` would add a vendored libgit2
//! and `OpenSSL` C build to every cold build of the static binary. So this mode needs `git` in
//! `PATH` (the inference image is `FROM scratch`; `Containerfile.retrain-git` adds git).
//! Credentials are git's own: an SSH key through `GIT_SSH_COMMAND`, or `GIT_ASKPASS`, a
//! credential helper or a `.git-credentials` file; none is ever passed on a command line.
//!
//! # Guarantees
//! - Every `git` call runs without a shell (arguments as argv, `--` before URLs and paths),
//!   with `GIT_TERMINAL_PROMPT=0`, stdin closed, in its own process group, and a deadline
//!   (`--git-timeout-secs`): past it, the group is killed by its id.
//! - The clone is shallow (`--depth 1`, one branch) in a temporary directory removed
//!   afterwards, on success and on error.
//! - A file that already holds the values is not committed: a rerun makes no empty commit.
//! - A push rejected because the branch moved (someone pushed in between) is retried on the
//!   new tip, the edit applied again: [`MAX_ATTEMPTS`] pushes at most.
//! - URLs are printed without their user information (`user:password@`).
//!
//! # Caveats
//! The commit is pushed straight to the branch: a branch that only takes changes through
//! pull requests refuses it (the error says so), and there is no pull-request mode. The
//! calls block the (current-thread) runtime of `movrek retrain`, which has nothing else to
//! run meanwhile.

use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clap::Args;

use super::gate::GateFigures;
use super::handoff::{Delivery, Handoff, ModelFields};
use super::manifest::set_model;

/// Default author (and committer) of the handoff's commits.
pub const DEFAULT_AUTHOR_NAME: &str = "movrek-retrain";
/// Default author e-mail.
pub const DEFAULT_AUTHOR_EMAIL: &str = "movrek-retrain@users.noreply.movrek.dev";
/// Pushes tried before giving up on a branch others keep moving.
pub const MAX_ATTEMPTS: u32 = 3;

/// `movrek retrain`'s flags for `--handoff gitops`. (`Debug` prints the URL redacted.)
#[derive(Clone, Args)]
pub struct GitArgs {
    /// Repository holding the release's manifest (`--handoff gitops`): `https://…`,
    /// `ssh://…`, `git@host:org/repo.git` or `file://…`. Put no password in it: git's own
    /// credentials apply (SSH key, credential helper, `.git-credentials`).
    #[arg(long, env = "MOVREK_GIT_URL")]
    pub git_url: Option<String>,
    /// Branch the commit is pushed to.
    #[arg(long, env = "MOVREK_GIT_BRANCH", default_value = "main")]
    pub git_branch: String,
    /// The manifest file in the repository holding the `RecommenderRelease`, relative to its
    /// root (e.g. `apps/movies/release.yaml`).
    #[arg(long, env = "MOVREK_GIT_PATH")]
    pub git_path: Option<String>,
    /// Author and committer name of the commit.
    #[arg(long, default_value = DEFAULT_AUTHOR_NAME)]
    pub git_author_name: String,
    /// Author and committer e-mail of the commit.
    #[arg(long, default_value = DEFAULT_AUTHOR_EMAIL)]
    pub git_author_email: String,
    /// Deadline of each `git` call (clone, fetch, commit, push), in seconds.
    #[arg(long, default_value_t = 60)]
    pub git_timeout_secs: u64,
}

/// Where and as whom the handoff commits. (`Debug` prints the URL redacted.)
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    /// Repository URL, as given (it may carry credentials: print [`redact`]ed).
    pub url: String,
    /// Branch.
    pub branch: String,
    /// Manifest path in the repository.
    pub path: String,
    /// Author and committer name.
    pub author_name: String,
    /// Author and committer e-mail.
    pub author_email: String,
}

impl std::fmt::Debug for GitArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitArgs")
            .field("git_url", &self.git_url.as_deref().map(redact))
            .field("git_branch", &self.git_branch)
            .field("git_path", &self.git_path)
            .field("git_author_name", &self.git_author_name)
            .field("git_author_email", &self.git_author_email)
            .field("git_timeout_secs", &self.git_timeout_secs)
            .finish()
    }
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("url", &redact(&self.url))
            .field("branch", &self.branch)
            .field("path", &self.path)
            .field("author_name", &self.author_name)
            .field("author_email", &self.author_email)
            .finish()
    }
}

impl Target {
    /// The repository for messages: URL without user information, branch and path.
    pub fn shown(&self) -> String {
        format!("{} ({}:{})", redact(&self.url), self.branch, self.path)
    }
}

impl GitArgs {
    /// For another handoff than `gitops`: refuses a repository or path, since one run hands
    /// off one way, never both.
    ///
    /// # Errors
    /// `--git-url` or `--git-path` given.
    pub fn check_unused(&self, handoff: Handoff) -> Result<(), String> {
        if self.git_url.is_some() || self.git_path.is_some() {
            let mode = match handoff {
                Handoff::None => "none",
                Handoff::Direct => "direct",
                Handoff::Gitops => return Ok(()),
            };
            return Err(format!(
                "--git-url and --git-path are for --handoff gitops, and this run hands off with \
                 --handoff {mode} (one run hands off one way)"
            ));
        }
        Ok(())
    }

    /// The target of `--handoff gitops`, checked before anything is read or trained.
    ///
    /// # Errors
    /// A missing URL or path, a path that is absolute or climbs out (`..`, `.git`), a branch
    /// git would refuse, an author with `<`, `>` or a line break, a zero timeout.
    pub fn target(&self) -> Result<Target, String> {
        let url = self
            .git_url
            .as_deref()
            .filter(|u| !u.trim().is_empty())
            .ok_or("--handoff gitops needs --git-url (the repository holding the manifest)")?;
        if url.starts_with('-') || url.chars().any(char::is_whitespace) {
            return Err(format!(
                "--git-url {:?} is not a repository URL",
                redact(url)
            ));
        }
        let path = self
            .git_path
            .as_deref()
            .ok_or("--handoff gitops needs --git-path (the manifest file in the repository)")?;
        check_path(path)?;
        check_branch(&self.git_branch)?;
        for (flag, value) in [
            ("--git-author-name", &self.git_author_name),
            ("--git-author-email", &self.git_author_email),
        ] {
            if value.trim().is_empty() || value.contains(['<', '>', '\n', '\r']) {
                return Err(format!(
                    "{flag} {value:?}: not empty, no <, > or line break"
                ));
            }
        }
        if self.git_timeout_secs == 0 {
            return Err("--git-timeout-secs must be at least 1".to_owned());
        }
        Ok(Target {
            url: url.to_owned(),
            branch: self.git_branch.clone(),
            path: path.to_owned(),
            author_name: self.git_author_name.clone(),
            author_email: self.git_author_email.clone(),
        })
    }
}

/// Refuses a manifest path that is not a plain relative path inside the work tree.
///
/// # Errors
/// Empty, absolute, `.`, `..` or `.git` components, a trailing `/`, control characters.
pub fn check_path(path: &str) -> Result<(), String> {
    let refuse = |why: &str| Err(format!("--git-path {path:?} {why}"));
    if path.is_empty() {
        return refuse("is empty");
    }
    if path.chars().any(char::is_control) {
        return refuse("holds a control character");
    }
    if path.ends_with('/') {
        return refuse("names a directory; give the manifest file");
    }
    for component in Path::new(path).components() {
        match component {
            Component::Normal(part) if part != ".git" => {}
            Component::Normal(_) => return refuse("is inside .git"),
            Component::ParentDir => return refuse("climbs out with '..'"),
            Component::CurDir => return refuse("has a '.' component; write the plain path"),
            Component::RootDir | Component::Prefix(_) => {
                return refuse("is absolute; give it relative to the repository's root");
            }
        }
    }
    Ok(())
}

/// Refuses a branch name git would refuse, or one that could read as an option.
///
/// # Errors
/// The name and what is wrong with it.
pub fn check_branch(branch: &str) -> Result<(), String> {
    let bad_char = |c: char| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c);
    #[allow(
        clippy::case_sensitive_file_extension_comparisons,
        reason = "git refuses ref names ending in `.lock`, comparing case-sensitively"
    )]
    let lock = branch.ends_with(".lock");
    let bad = branch.is_empty()
        || branch == "@"
        || branch.starts_with(['-', '/'])
        || branch.ends_with(['/', '.'])
        || lock
        || branch.contains("..")
        || branch.contains("//")
        || branch.contains("@{")
        || branch.chars().any(bad_char)
        || branch.split('/').any(|part| part.starts_with('.'));
    if bad {
        return Err(format!(
            "--git-branch {branch:?} is not a branch name git accepts"
        ));
    }
    Ok(())
}

/// `text` with the user information (`user:password@`) of every URL in it removed, so a
/// URL or a git error quoting one can be printed and sent to a webhook.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#' | '\'' | '"' | '`') || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        out.push_str(
            authority
                .rfind('@')
                .map_or(authority, |i| &authority[i + 1..]),
        );
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Whether `git push --porcelain`'s output says the branch moved since the clone (`!` and
/// `[rejected]`: fetch first, non-fast-forward), which a retry on the new tip cures. A hook
/// or a protected branch (`[remote rejected]`) is not.
pub fn push_rejected(porcelain: &str) -> bool {
    porcelain
        .lines()
        .any(|line| line.starts_with('!') && line.contains("[rejected]"))
}

/// The useful part of a failed call's output: git's `fatal:`/`error:` lines (or its last
/// line), on one line, redacted and bounded.
fn git_error(stderr: &str, stdout: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .chain(stdout.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let flagged: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("fatal:") || l.starts_with("error:") || l.starts_with('!'))
        .collect();
    let text = if flagged.is_empty() {
        lines.last().copied().unwrap_or("no message").to_owned()
    } else {
        flagged.join("; ")
    };
    let text = redact(&text);
    match text.char_indices().nth(600) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// The commit message: release, version and parent on the subject line, the gate figures,
/// then what `spec.model` now names.
pub fn commit_message(
    release: &str,
    namespace: &str,
    fields: &ModelFields,
    parent: Option<&str>,
    gates: Option<&GateFigures>,
) -> String {
    let mut text = format!("movrek retrain: {release} {}", fields.version);
    if let Some(parent) = parent {
        let _ = write!(text, " (from {parent})");
    }
    text.push_str("\n\n");
    if let Some(gates) = gates {
        let _ = writeln!(text, "{}\n", super::notify::gate_line(gates));
    }
    let _ = writeln!(text, "Release: {namespace}/{release}");
    let _ = writeln!(text, "Version: {}", fields.version);
    if let Some(parent) = parent {
        let _ = writeln!(text, "Parent: {parent}");
    }
    let _ = writeln!(text, "URI: {}", redact(&fields.uri));
    let _ = writeln!(text, "SHA-256: {}", fields.sha256);
    text
}

/// What the handoff did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pushed {
    /// One commit was pushed to the branch.
    Committed {
        /// Its id.
        commit: String,
        /// Pushes it took (more than one when the branch moved meanwhile).
        attempts: u32,
    },
    /// The manifest already held these values: nothing committed.
    Unchanged,
}

/// What the outcome's message says about a gitops handoff (the URL without credentials).
pub fn delivery(target: &Target, pushed: &Pushed) -> Delivery {
    Delivery::Git {
        repository: redact(&target.url),
        branch: target.branch.clone(),
        path: target.path.clone(),
        commit: match pushed {
            Pushed::Committed { commit, .. } => Some(commit.clone()),
            Pushed::Unchanged => None,
        },
    }
}

/// The `git` program, the deadline of each call, and where clones are made.
#[derive(Clone, Debug)]
pub struct Git {
    /// The program (`git`, looked up in `PATH`).
    pub program: PathBuf,
    /// Deadline of each call.
    pub timeout: Duration,
    /// Directory the temporary clone is made in.
    pub scratch: PathBuf,
}

impl Git {
    /// `git` from `PATH`, clones in the system's temporary directory.
    pub fn new(timeout: Duration) -> Self {
        Git {
            program: PathBuf::from("git"),
            timeout,
            scratch: std::env::temp_dir(),
        }
    }
}

/// One finished `git` call.
#[derive(Debug)]
struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Variables that would point git at another repository than the clone.
const FOREIGN_REPOSITORY_VARS: [&str; 6] = [
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_NAMESPACE",
];

fn drain(pipe: Option<impl std::io::Read + Send + 'static>) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// Kills a call and whatever it started (ssh, remote helpers): its process group, whose id
/// is the child's pid.
fn stop(child: &mut Child) {
    let group = rustix::process::Pid::from_child(child);
    let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    let _ = child.kill();
    let _ = child.wait();
}

impl Git {
    /// Runs `git ARGS` in `cwd` with `env` added, within the deadline.
    fn call(&self, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<Ran, String> {
        use std::os::unix::process::CommandExt as _;
        let what = format!("git {}", args.first().copied().unwrap_or_default());
        let mut command = Command::new(&self.program);
        command
            .args(args)
            .current_dir(cwd)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("LC_ALL", "C")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        for var in FOREIGN_REPOSITORY_VARS {
            command.env_remove(var);
        }
        let mut child = command.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!(
                "--handoff gitops runs the git CLI, and there is no {} in PATH (use an image \
                 with git: Containerfile.retrain-git)",
                self.program.display()
            ),
            _ => format!("cannot run {}: {e}", self.program.display()),
        })?;
        let (stdout, stderr) = (drain(child.stdout.take()), drain(child.stderr.take()));
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(None) => {
                    stop(&mut child);
                    return Err(format!(
                        "{what} did not finish within {} s (--git-timeout-secs); stopped",
                        self.timeout.as_secs_f64()
                    ));
                }
                Err(e) => {
                    stop(&mut child);
                    return Err(format!("cannot wait for {what}: {e}"));
                }
            }
        };
        let text = |pipe: JoinHandle<Vec<u8>>| {
            String::from_utf8_lossy(&pipe.join().unwrap_or_default()).into_owned()
        };
        Ok(Ran {
            ok: status.success(),
            stdout: text(stdout),
            stderr: text(stderr),
        })
    }

    /// [`Git::call`] that must succeed; its standard output.
    fn run(&self, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<String, String> {
        let ran = self.call(cwd, args, env)?;
        if ran.ok {
            Ok(ran.stdout)
        } else {
            Err(format!(
                "git {} failed: {}",
                args.first().copied().unwrap_or_default(),
                git_error(&ran.stderr, &ran.stdout)
            ))
        }
    }
}

/// Commits `spec.model` of release `namespace/name` into `target`'s manifest and pushes it:
/// shallow clone, edit, commit, push; on a push rejected because the branch moved, fetch the
/// new tip, edit again and retry ([`MAX_ATTEMPTS`] in all). `message` is the commit message
/// ([`commit_message`]).
///
/// # Errors
/// `git` missing or past its deadline, a clone or push refused (URL, branch, credentials,
/// protection), no such file, a manifest [`set_model`] refuses, the branch still moving
/// after the last attempt. Nothing is pushed then.
pub fn hand_off(
    git: &Git,
    target: &Target,
    (name, namespace): (&str, &str),
    fields: &ModelFields,
    message: &str,
) -> Result<Pushed, String> {
    let scratch = tempfile::Builder::new()
        .prefix("movrek-gitops-")
        .tempdir_in(&git.scratch)
        .map_err(|e| format!("cannot make a directory in {}: {e}", git.scratch.display()))?;
    let shown = target.shown();
    git.run(
        scratch.path(),
        &[
            "clone",
            "--quiet",
            "--depth",
            "1",
            "--single-branch",
            "--no-tags",
            "--branch",
            &target.branch,
            "--",
            &target.url,
            "repo",
        ],
        &[],
    )
    .map_err(|e| format!("cannot clone {shown}: {e}"))?;
    let repo = scratch.path().join("repo");
    for attempt in 1..=MAX_ATTEMPTS {
        if attempt > 1 {
            refresh(git, &repo, target).map_err(|e| format!("{shown}: {e}"))?;
        }
        if !edit(&repo, target, (name, namespace), fields)? {
            return Ok(Pushed::Unchanged);
        }
        let commit = commit(git, &repo, target, message).map_err(|e| format!("{shown}: {e}"))?;
        if push(git, &repo, target).map_err(|e| format!("cannot push to {shown}: {e}"))? {
            return Ok(Pushed::Committed {
                commit,
                attempts: attempt,
            });
        }
        tracing::warn!(attempt, repository = %shown, "the branch moved since the clone; retrying on its new tip");
    }
    Err(format!(
        "{shown}: the push was rejected {MAX_ATTEMPTS} times because others pushed first; \
         nothing was pushed"
    ))
}

/// Writes the edited manifest into the clone; `false` when it already held the values.
fn edit(
    repo: &Path,
    target: &Target,
    (name, namespace): (&str, &str),
    fields: &ModelFields,
) -> Result<bool, String> {
    let shown = target.shown();
    let file = repo.join(&target.path);
    let meta = std::fs::symlink_metadata(&file).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{shown}: no such file in the repository"),
        _ => format!("{shown}: {e}"),
    })?;
    // A symlink (of the file, or of a directory on its way) could lead out of the clone.
    let inside = file
        .canonicalize()
        .ok()
        .zip(repo.canonicalize().ok())
        .is_some_and(|(file, repo)| file.starts_with(repo));
    if !meta.is_file() || !inside {
        return Err(format!("{shown}: not a regular file inside the repository"));
    }
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{shown}: {e}"))?;
    let edited = set_model(&text, name, namespace, fields).map_err(|e| format!("{shown}: {e}"))?;
    if edited == text {
        return Ok(false);
    }
    std::fs::write(&file, edited).map_err(|e| format!("{shown}: cannot write: {e}"))?;
    Ok(true)
}

/// Commits the manifest as the target's author; the commit's id.
fn commit(git: &Git, repo: &Path, target: &Target, message: &str) -> Result<String, String> {
    git.run(repo, &["add", "--", &target.path], &[])?;
    let (name, email) = (target.author_name.as_str(), target.author_email.as_str());
    let identity = [
        ("GIT_AUTHOR_NAME", name),
        ("GIT_AUTHOR_EMAIL", email),
        ("GIT_COMMITTER_NAME", name),
        ("GIT_COMMITTER_EMAIL", email),
    ];
    git.run(
        repo,
        &["commit", "--quiet", "--no-verify", "-m", message],
        &identity,
    )?;
    Ok(git
        .run(repo, &["rev-parse", "HEAD"], &[])?
        .trim()
        .to_owned())
}

/// Pushes `HEAD` to the branch: `true` pushed, `false` rejected because the branch moved.
fn push(git: &Git, repo: &Path, target: &Target) -> Result<bool, String> {
    let refspec = format!("HEAD:refs/heads/{}", target.branch);
    let ran = git.call(repo, &["push", "--porcelain", "origin", &refspec], &[])?;
    if ran.ok {
        return Ok(true);
    }
    if push_rejected(&ran.stdout) {
        return Ok(false);
    }
    Err(git_error(&ran.stderr, &ran.stdout))
}

/// Moves the clone to the branch's new tip, dropping the local commit.
fn refresh(git: &Git, repo: &Path, target: &Target) -> Result<(), String> {
    let tracking = format!("refs/remotes/origin/{}", target.branch);
    let refspec = format!("+refs/heads/{}:{tracking}", target.branch);
    git.run(
        repo,
        &[
            "fetch",
            "--quiet",
            "--depth",
            "1",
            "--no-tags",
            "origin",
            &refspec,
        ],
        &[],
    )?;
    git.run(repo, &["reset", "--quiet", "--hard", &tracking], &[])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> GitArgs {
        GitArgs {
            git_url: Some("https://git.example/deploy.git".into()),
            git_branch: "main".into(),
            git_path: Some("apps/movies/release.yaml".into()),
            git_author_name: DEFAULT_AUTHOR_NAME.into(),
            git_author_email: DEFAULT_AUTHOR_EMAIL.into(),
            git_timeout_secs: 60,
        }
    }

    #[test]
    fn gitops_needs_a_url_and_a_path_and_only_gitops_takes_them() {
        let target = args().target().unwrap();
        assert_eq!(target.path, "apps/movies/release.yaml");
        assert_eq!(target.branch, "main");
        let without_url = GitArgs {
            git_url: None,
            ..args()
        };
        let error = without_url.target().unwrap_err();
        assert!(error.contains("needs --git-url"), "{error}");
        let without_path = GitArgs {
            git_path: None,
            ..args()
        };
        let error = without_path.target().unwrap_err();
        assert!(error.contains("needs --git-path"), "{error}");
        assert_eq!(args().check_unused(Handoff::Gitops), Ok(()));
        for (handoff, mode) in [(Handoff::Direct, "direct"), (Handoff::None, "none")] {
            let error = args().check_unused(handoff).unwrap_err();
            assert!(error.contains("are for --handoff gitops"), "{error}");
            assert!(error.contains(&format!("--handoff {mode} ")), "{error}");
            let unused = GitArgs {
                git_url: None,
                git_path: None,
                ..args()
            };
            assert_eq!(unused.check_unused(handoff), Ok(()));
        }
    }

    #[test]
    fn bad_flags_are_refused_before_anything_runs() {
        let with = |f: fn(&mut GitArgs)| {
            let mut a = args();
            f(&mut a);
            a.target().unwrap_err()
        };
        assert!(
            with(|a| a.git_url = Some("--upload-pack=x".into())).contains("not a repository URL")
        );
        assert!(with(|a| a.git_branch = "-f".into()).contains("--git-branch"));
        assert!(with(|a| a.git_author_email = "a>b".into()).contains("--git-author-email"));
        assert!(with(|a| a.git_timeout_secs = 0).contains("at least 1"));
        assert!(with(|a| a.git_path = Some("../x.yaml".into())).contains("'..'"));
    }

    #[test]
    fn only_plain_relative_paths_inside_the_work_tree_pass() {
        for good in ["release.yaml", "apps/movies/release.yaml", "a b/c.yml"] {
            assert_eq!(check_path(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("/etc/passwd", "absolute"),
            ("apps/../../x.yaml", "'..'"),
            ("..", "'..'"),
            ("./release.yaml", "'.'"),
            (".git/config", ".git"),
            ("apps/", "directory"),
            ("a\nb", "control"),
        ] {
            let error = check_path(bad).unwrap_err();
            assert!(error.contains(why), "{bad:?}: {error}");
        }
    }

    #[test]
    fn branch_names_git_refuses_are_refused() {
        for good in ["main", "release/prod", "env-2026.12"] {
            assert_eq!(check_branch(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "-x",
            "a..b",
            "a b",
            "x.lock",
            "a:b",
            "a/.hidden",
            "trailing/",
            "@",
            "a@{1}",
            "x.",
        ] {
            assert!(check_branch(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn user_information_never_leaves_a_url() {
        assert_eq!(
            redact("https://bot:s3cr3t@git.example/org/deploy.git"),
            "https://git.example/org/deploy.git"
        );
        assert_eq!(
            redact("fatal: unable to access 'https://tok@git.example/x/': refused"),
            "fatal: unable to access 'https://git.example/x/': refused"
        );
        assert_eq!(
            redact("ssh://git@host:22/r.git and https://u:p@a@b.example"),
            "ssh://host:22/r.git and https://b.example"
        );
        assert_eq!(
            redact("git@github.com:org/repo.git"),
            "git@github.com:org/repo.git"
        );
        assert_eq!(redact("file:///srv/repo.git"), "file:///srv/repo.git");
    }

    #[test]
    fn the_delivery_names_the_repository_without_credentials() {
        let target = Target {
            url: "https://bot:s3cr3t@git.example/deploy.git".into(),
            ..args().target().unwrap()
        };
        let pushed = Pushed::Committed {
            commit: "abc".into(),
            attempts: 1,
        };
        assert_eq!(
            delivery(&target, &pushed),
            Delivery::Git {
                repository: "https://git.example/deploy.git".into(),
                branch: "main".into(),
                path: "apps/movies/release.yaml".into(),
                commit: Some("abc".into()),
            }
        );
        assert!(!target.shown().contains("s3cr3t"));
        assert!(!format!("{target:?}").contains("s3cr3t"));
        let flags = GitArgs {
            git_url: Some(target.url.clone()),
            ..args()
        };
        assert!(!format!("{flags:?}").contains("s3cr3t"));
    }

    #[test]
    fn only_a_moved_branch_is_retried() {
        let fetch_first =
            "To file:///r.git\n!\tHEAD:refs/heads/main\t[rejected] (fetch first)\nDone\n";
        let behind = "!\tHEAD:refs/heads/main\t[rejected] (non-fast-forward)\n";
        let hook = "!\tHEAD:refs/heads/main\t[remote rejected] (pre-receive hook declined)\n";
        assert!(push_rejected(fetch_first));
        assert!(push_rejected(behind));
        assert!(!push_rejected(hook));
        assert!(!push_rejected("=\tHEAD:refs/heads/main\t[up to date]\n"));
    }

    #[test]
    fn a_failed_call_is_told_by_its_fatal_lines_without_credentials() {
        let stderr =
            "Cloning into 'repo'...\nfatal: repository 'https://u:p@h.example/r/' not found\n";
        assert_eq!(
            git_error(stderr, ""),
            "fatal: repository 'https://h.example/r/' not found"
        );
        assert_eq!(git_error("", "last words\n"), "last words");
        assert_eq!(git_error("", ""), "no message");
        assert!(git_error(&"x".repeat(2000), "").ends_with('…'));
    }

    #[test]
    fn the_commit_message_names_release_version_parent_and_figures() {
        let fields = ModelFields {
            version: "r1".into(),
            uri: "s3://models/movies/r1/model.movrek".into(),
            sha256: "ab".into(),
            offline_rmse: 0.9,
            provenance: None,
        };
        let gates = GateFigures {
            candidate_rmse: 0.9,
            stable_rmse: 0.95,
            candidate_ndcg: 0.31,
            stable_ndcg: 0.3,
            candidate_gaps: vec![],
            stable_gaps: vec![],
        };
        assert_eq!(
            commit_message("movies", "prod", &fields, Some("v1"), Some(&gates)),
            "movrek retrain: movies r1 (from v1)

RMSE 0.9000 (stable 0.9500), NDCG@10 0.3100 (stable 0.3000)

Release: prod/movies
Version: r1
Parent: v1
URI: s3://models/movies/r1/model.movrek
SHA-256: ab
"
        );
        let bare = commit_message("movies", "prod", &fields, None, None);
        assert!(
            bare.starts_with("movrek retrain: movies r1\n\nRelease: "),
            "{bare}"
        );
    }
}
