//! The simulator's HTTP side: the target URL (loopback only) and one `/recommend` call.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use crate::server::{IMPRESSION_ID_HEADER, MODEL_VERSION_HEADER};

/// Where simulated users send their requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Base URL, ending in `/`.
    pub base: String,
    /// Host as written in log lines when an answer carries no model version.
    pub host: String,
    /// Port.
    pub port: u16,
    /// `Host` header to send instead of the address (an ingress's or Gateway listener's
    /// virtual host, e.g. `movies.example`); `None` sends the address.
    pub virtual_host: Option<String>,
}

/// Parses `http://127.x.y.z[:port][/prefix]` (or `localhost`, taken as 127.0.0.1).
///
/// # Errors
/// A message when the URL does not parse, is not `http`, or names a host outside
/// 127.0.0.0/8: the simulator sends traffic to this machine only.
pub fn parse_target(text: &str) -> Result<Target, String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("bad --target {text:?}: {e}"))?;
    if url.scheme() != "http" {
        return Err(format!(
            "--target {text:?}: only http:// is supported (the simulator talks to a local server)"
        ));
    }
    let ip = match url.host_str() {
        Some("localhost") => Ipv4Addr::LOCALHOST,
        Some(host) if host.parse::<Ipv4Addr>().is_ok() => {
            host.parse().unwrap_or(Ipv4Addr::UNSPECIFIED)
        }
        _ => {
            return Err(format!(
                "--target {text:?}: refusing a host outside 127.0.0.0/8; the simulator only \
                 sends traffic to this machine"
            ));
        }
    };
    if !IpAddr::V4(ip).is_loopback() {
        return Err(format!(
            "--target {text:?}: refusing {ip}, which is outside 127.0.0.0/8; the simulator \
             only sends traffic to this machine"
        ));
    }
    let port = url.port().unwrap_or(80);
    let mut path = url.path().to_owned();
    if !path.ends_with('/') {
        path.push('/');
    }
    Ok(Target {
        base: format!("http://{ip}:{port}{path}"),
        host: ip.to_string(),
        port,
        virtual_host: None,
    })
}

/// A `/recommend` answer as the simulator saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// `X-Model-Version`, if present.
    pub version: Option<String>,
    /// `X-Impression-Id`, if present.
    pub impression: Option<String>,
    /// The list of a 200 whose body parsed; `None` for another status or a bad body.
    pub ids: Option<Vec<u32>>,
    /// Time from sending to the whole body.
    pub latency: Duration,
}

/// Parses a list body: movie ids separated by commas (an empty body is an empty list).
pub fn parse_list(body: &str) -> Option<Vec<u32>> {
    let body = body.trim();
    if body.is_empty() {
        return Some(Vec::new());
    }
    body.split(',').map(|id| id.trim().parse().ok()).collect()
}

/// Sends `GET {base}recommend/{path_id}`.
///
/// # Errors
/// The transport error in words (connection refused, timeout, …).
pub async fn ask(
    client: &reqwest::Client,
    target: &Target,
    path_id: &str,
) -> Result<Answer, String> {
    let started = Instant::now();
    let mut request = client.get(format!("{}recommend/{path_id}", target.base));
    if let Some(host) = &target.virtual_host {
        request = request.header(reqwest::header::HOST, host);
    }
    let response = request
        .send()
        .await
        .map_err(|e| crate::server::error_chain(&e))?;
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let version = header(MODEL_VERSION_HEADER.as_str());
    let impression = header(IMPRESSION_ID_HEADER.as_str());
    let body = response
        .text()
        .await
        .map_err(|e| crate::server::error_chain(&e))?;
    Ok(Answer {
        status,
        version,
        impression,
        ids: (status == 200).then(|| parse_list(&body)).flatten(),
        latency: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets() {
        let t = parse_target("http://127.0.0.1:8082").unwrap();
        assert_eq!((t.base.as_str(), t.port), ("http://127.0.0.1:8082/", 8082));
        assert_eq!(
            parse_target("http://localhost:9/x").unwrap().base,
            "http://127.0.0.1:9/x/"
        );
        assert!(parse_target("http://127.3.2.1").is_ok());
        for bad in [
            "http://10.0.0.1:8082",
            "http://example.com",
            "https://127.0.0.1",
            "http://[::1]:80",
            "nonsense",
        ] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
        assert!(
            parse_target("http://192.168.1.1")
                .unwrap_err()
                .contains("127.0.0.0/8")
        );
    }

    #[test]
    fn list_bodies() {
        assert_eq!(parse_list("1,2, 30\n"), Some(vec![1, 2, 30]));
        assert_eq!(parse_list(""), Some(vec![]));
        assert_eq!(parse_list("1,x"), None);
    }
}
