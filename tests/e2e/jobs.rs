//! Test infrastructure: the data-plane stand-in's kubelet for Job pods. kwok completes the
//! pods of a Job at once without running anything, except the pods labelled
//! [`JOB_POD_SELECTOR`], which `hack/cluster/up` leaves Running for this module: for each it
//! runs the container's arguments with the local `movrek` binary (the image's entrypoint,
//! `/movrek`) and the pod's environment as a kubelet would give it (Secrets resolved), plus a
//! kubeconfig holding a token of the pod's `ServiceAccount` bound to the pod (where a kubelet
//! mounts the token), so the process has exactly the chart's RBAC. When the process exits it
//! sets the pod's phase — `Succeeded` on exit code 0, `Failed` otherwise — with the exit code
//! in the container's terminated state, and the real Job controller of
//! kube-controller-manager counts it (completions, `backoffLimit`, retries).

use std::collections::{HashMap, HashSet};
use std::os::unix::process::ExitStatusExt as _;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};

use crate::cluster::ApiEndpoint;
use crate::dataplane::{Stats, container_env};
use crate::support::{ChildGuard, movrek_bin};
use crate::timeline::Timeline;

/// The pods this module runs (and kwok leaves Running): the chart's retraining Job pods.
pub const JOB_POD_SELECTOR: &str = "app.kubernetes.io/name=movrek-retrain";
/// The image's entrypoint, replaced by the local `movrek` binary.
const ENTRYPOINT: &str = "/movrek";

/// One finished Job pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobPodRun {
    /// The pod.
    pub pod: String,
    /// The process's exit code (128 + signal when it was killed).
    pub exit_code: i32,
}

/// A running Job-pod process, its container's name and when it started (RFC 3339).
struct Running {
    process: ChildGuard,
    container: String,
    started_at: String,
}

/// The Job pods of one namespace and their processes.
pub struct JobPods {
    pods: Api<Pod>,
    secrets: Api<Secret>,
    accounts: Api<ServiceAccount>,
    endpoint: ApiEndpoint,
    namespace: String,
    dir: PathBuf,
    running: HashMap<String, Running>,
    /// Pods whose process ran (their phase is final; never started twice).
    done: HashSet<String>,
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

impl JobPods {
    /// Job pods of `namespace`; logs and kubeconfigs go to `dir`.
    pub fn new(client: &Client, namespace: &str, endpoint: ApiEndpoint, dir: PathBuf) -> Self {
        Self {
            pods: Api::namespaced(client.clone(), namespace),
            secrets: Api::namespaced(client.clone(), namespace),
            accounts: Api::namespaced(client.clone(), namespace),
            endpoint,
            namespace: namespace.to_owned(),
            dir,
            running: HashMap::new(),
            done: HashSet::new(),
        }
    }

    /// One pass: starts the process of every new Running Job pod, reports the processes
    /// that exited as the pods' phases, and stops the processes of pods that are gone.
    pub async fn tick(
        &mut self,
        timeline: &Timeline,
        stats: &Arc<Mutex<Stats>>,
    ) -> Result<(), kube::Error> {
        let pods = self
            .pods
            .list(&ListParams::default().labels(JOB_POD_SELECTOR))
            .await?;
        for pod in &pods.items {
            let name = pod.name_any();
            let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            if running
                && pod.metadata.deletion_timestamp.is_none()
                && !self.running.contains_key(&name)
                && !self.done.contains(&name)
            {
                match self.start(pod).await {
                    Ok(()) => timeline.mark(&format!(
                        "stand-in: Job pod {name} Running → movrek {}",
                        container_args(pod).join(" ")
                    )),
                    Err(e) => timeline.mark(&format!("stand-in: Job pod {name} not started: {e}")),
                }
            }
        }
        self.report_exits(timeline, stats).await?;
        let present: HashSet<String> = pods
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(ResourceExt::name_any)
            .collect();
        self.running.retain(|name, run| {
            let keep = present.contains(name);
            if !keep {
                timeline.mark(&format!("stand-in: Job pod {name} gone, process stopped"));
                run.process.stop();
            }
            keep
        });
        Ok(())
    }

    /// Starts the pod's process: its first container's arguments, its environment and a
    /// kubeconfig of its `ServiceAccount`.
    async fn start(&mut self, pod: &Pod) -> Result<(), String> {
        let name = pod.name_any();
        let spec = pod.spec.as_ref().ok_or("no spec")?;
        let container = spec.containers.first().ok_or("no container")?;
        if let Some(command) = &container.command
            && command.as_slice() != [ENTRYPOINT]
        {
            return Err(format!(
                "command {command:?}: the stand-in runs only the image's {ENTRYPOINT}"
            ));
        }
        let env = container_env(&self.secrets, pod, &container.name).await?;
        let account = spec.service_account_name.as_deref().unwrap_or("default");
        let token = self.token(account, pod).await?;
        let kubeconfig = self.dir.join(format!("{name}.kubeconfig"));
        let text = self.endpoint.kubeconfig(account, &token, &self.namespace);
        std::fs::write(&kubeconfig, text).map_err(|e| format!("write kubeconfig: {e}"))?;
        let mut cmd = Command::new(movrek_bin());
        cmd.args(container_args(pod))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env)
            .env("KUBECONFIG", &kubeconfig)
            .current_dir(&self.dir);
        let log = self.dir.join(format!("{name}.log"));
        let process = ChildGuard::spawn(&format!("movrek for Job pod {name}"), cmd, &log);
        self.running.insert(
            name,
            Running {
                process,
                container: container.name.clone(),
                started_at: now_rfc3339(),
            },
        );
        Ok(())
    }

    /// A token of `account` bound to `pod` (the `TokenRequest` a kubelet makes).
    async fn token(&self, account: &str, pod: &Pod) -> Result<String, String> {
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: Vec::new(),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".to_owned()),
                    kind: Some("Pod".to_owned()),
                    name: Some(pod.name_any()),
                    uid: pod.metadata.uid.clone(),
                }),
                expiration_seconds: Some(3600),
            },
            ..TokenRequest::default()
        };
        let answer = self
            .accounts
            .create_token_request(account, &PostParams::default(), &request)
            .await
            .map_err(|e| format!("token of ServiceAccount {account}: {e}"))?;
        answer
            .status
            .map(|s| s.token)
            .ok_or_else(|| format!("no token for ServiceAccount {account}"))
    }

    /// Sets the phase of every pod whose process exited, and records the run.
    async fn report_exits(
        &mut self,
        timeline: &Timeline,
        stats: &Arc<Mutex<Stats>>,
    ) -> Result<(), kube::Error> {
        let exited: Vec<(String, i32)> = self
            .running
            .iter_mut()
            .filter_map(|(name, run)| {
                let exit = run.process.exit_status()?;
                let code = exit
                    .code()
                    .unwrap_or_else(|| 128 + exit.signal().unwrap_or(0));
                Some((name.clone(), code))
            })
            .collect();
        for (name, code) in exited {
            let run = &self.running[&name];
            let patch = completed_status(&run.container, code, &run.started_at);
            self.pods
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch))
                .await?;
            timeline.mark(&format!(
                "stand-in: Job pod {name} exited {code} → {}; last lines: {}",
                if code == 0 { "Succeeded" } else { "Failed" },
                run.process.log_tail(2)
            ));
            stats.lock().expect("stats lock").jobs.push(JobPodRun {
                pod: name.clone(),
                exit_code: code,
            });
            self.running.remove(&name);
            self.done.insert(name);
        }
        Ok(())
    }

    /// Stops every process.
    pub fn shutdown(&mut self) {
        for (_, mut run) in self.running.drain() {
            run.process.terminate(Duration::from_secs(5));
        }
    }
}

/// The first container's `args` (after the entrypoint).
fn container_args(pod: &Pod) -> Vec<String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.args.clone())
        .unwrap_or_default()
}

/// The status a kubelet reports for a pod whose only container, `container`, exited with
/// `code` (strategic merge: conditions by type, container statuses by name).
fn completed_status(container: &str, code: i32, started_at: &str) -> serde_json::Value {
    let now = now_rfc3339();
    let (phase, reason) = if code == 0 {
        ("Succeeded", "Completed")
    } else {
        ("Failed", "Error")
    };
    let not_ready = |kind: &str| {
        serde_json::json!({
            "type": kind, "status": "False", "reason": "PodCompleted", "lastTransitionTime": now,
        })
    };
    serde_json::json!({
        "status": {
            "phase": phase,
            "conditions": [not_ready("Ready"), not_ready("ContainersReady")],
            "containerStatuses": [{
                "name": container,
                "ready": false,
                "started": false,
                "state": {
                    "running": null,
                    "terminated": {
                        "exitCode": code,
                        "reason": reason,
                        "startedAt": started_at,
                        "finishedAt": now,
                    },
                },
            }],
        }
    })
}
