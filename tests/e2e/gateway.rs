//! Test infrastructure: the real Gateway API data plane. Installs the standard Gateway API
//! CRDs (from the `sigs.k8s.io/gateway-api` module, copied by `hack/gateway/build.sh`), a
//! `GatewayClass` for Traefik and a `Gateway` whose HTTP listener is bound to 127.0.0.1, and
//! runs Traefik (built by the same script) with its Kubernetes Gateway provider against the
//! cluster's API server. Traefik then reads the operator's `HTTPRoute` (weighted
//! `backendRefs`) and the `EndpointSlices` the controller-manager makes, and proxies to the pod
//! IPs of the pod network, and writes the route's status (`Accepted`, `ResolvedRefs`).

#![allow(
    dead_code,
    reason = "shared test infrastructure: not every scenario uses every helper"
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::cluster::Cluster;
use crate::support::{ChildGuard, free_port, spawn_ready};

/// Name of the `GatewayClass` and of the `Gateway` (in `GATEWAY_NAMESPACE`).
pub const GATEWAY: &str = "movrek-gateway";
/// Namespace of the `Gateway`; routes of every namespace may attach to it.
pub const GATEWAY_NAMESPACE: &str = "default";
/// Traefik's controller name for `GatewayClasses`.
const CONTROLLER: &str = "traefik.io/gateway-controller";

/// Where `hack/gateway/build.sh` put Traefik and the CRDs.
pub fn gateway_cache() -> PathBuf {
    std::env::var_os("MOVREK_CACHE")
        .map_or_else(|| PathBuf::from("/var/cache/movrek"), PathBuf::from)
        .join("gateway")
}

fn traefik_bin() -> PathBuf {
    let path = gateway_cache().join("bin/traefik");
    assert!(
        path.is_file(),
        "Traefik not found at {}: run hack/gateway/build.sh (hack/e2e.sh does)",
        path.display()
    );
    path
}

/// A running Traefik serving the cluster's `Gateway`.
#[derive(Debug)]
pub struct Gateway {
    /// The `Gateway`'s HTTP listener: `127.0.0.1:port`.
    pub port: u16,
    /// Traefik's API (read-only: routers, services, servers).
    api_port: u16,
    process: ChildGuard,
}

impl Gateway {
    /// Installs the CRDs, the `GatewayClass` and the `Gateway`, starts Traefik (files under
    /// `dir`) and waits until the `Gateway` is `Programmed`.
    pub async fn start(cluster: &Cluster, dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("create the gateway dir");
        let crds = gateway_cache().join("crds");
        let crds = crds.to_str().expect("utf-8 path");
        cluster.kubectl_ok(&["apply", "--server-side", "-f", crds]);
        cluster.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/gatewayclasses.gateway.networking.k8s.io",
            "crd/gateways.gateway.networking.k8s.io",
            "crd/httproutes.gateway.networking.k8s.io",
        ]);
        let port = free_port();
        let api_port = free_port();
        cluster.apply(&format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata:\n  \
             name: {GATEWAY}\nspec:\n  controllerName: {CONTROLLER}\n---\n\
             apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  \
             name: {GATEWAY}\n  namespace: {GATEWAY_NAMESPACE}\nspec:\n  gatewayClassName: {GATEWAY}\n  \
             listeners:\n  - name: web\n    protocol: HTTP\n    port: {port}\n    \
             allowedRoutes:\n      namespaces:\n        from: All\n"
        ));
        let token = cluster.admin_token();
        let token_file = dir.join("token");
        std::fs::write(&token_file, token).expect("write Traefik's token");
        let endpoint = cluster.endpoint();
        let mut cmd = Command::new(traefik_bin());
        cmd.arg(format!("--entryPoints.web.address=127.0.0.1:{port}"))
            .arg(format!(
                "--entryPoints.traefik.address=127.0.0.1:{api_port}"
            ))
            .args(["--api=true", "--api.insecure=true", "--api.dashboard=false"])
            .arg("--ping=true")
            .arg("--log.level=INFO")
            .arg("--global.checkNewVersion=false")
            .arg("--global.sendAnonymousUsage=false")
            .arg("--providers.kubernetesGateway=true")
            .arg(format!(
                "--providers.kubernetesGateway.endpoint={}",
                endpoint.server
            ))
            .arg(format!(
                "--providers.kubernetesGateway.token={}",
                token_file.display()
            ))
            .arg(format!(
                "--providers.kubernetesGateway.certAuthFilePath={}",
                endpoint.ca.display()
            ))
            .arg("--providers.kubernetesGateway.statusAddress.ip=127.0.0.1")
            .current_dir(dir);
        let process = spawn_ready(
            "traefik",
            cmd,
            &dir.join("traefik.log"),
            &format!("http://127.0.0.1:{api_port}/ping"),
            Duration::from_secs(60),
        )
        .await;
        let gateway = Self {
            port,
            api_port,
            process,
        };
        let programmed = format!("gateway/{GATEWAY}");
        let out = cluster.kubectl(&[
            "-n",
            GATEWAY_NAMESPACE,
            "wait",
            "--for=condition=Programmed",
            "--timeout=60s",
            &programmed,
        ]);
        assert!(
            out.status.success(),
            "Gateway {GATEWAY} not Programmed by Traefik in 60 s: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            gateway.process.log_tail(30)
        );
        gateway
    }

    /// Base URL of the `Gateway`'s listener.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every backend address (`ip:port`) Traefik currently load-balances to, from its API.
    /// `None` when the API did not answer.
    pub async fn servers(&self, http: &reqwest::Client) -> Option<BTreeSet<String>> {
        let url = format!("http://127.0.0.1:{}/api/http/services", self.api_port);
        let services: serde_json::Value = http.get(url).send().await.ok()?.json().await.ok()?;
        Some(
            services
                .as_array()?
                .iter()
                .filter_map(|s| s["loadBalancer"]["servers"].as_array())
                .flatten()
                .filter_map(|s| s["url"].as_str())
                .map(|u| u.trim_start_matches("http://").to_owned())
                .collect(),
        )
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.process.terminate(Duration::from_secs(5));
    }
}
