//! Egress the release author controls: the Prometheus address and the webhook URL come from
//! a `RecommenderRelease` spec, so whoever may write one could point the operator at any
//! address it can reach. [`HostAllowList`] is the operator's `--allowed-prometheus-hosts` /
//! `--allowed-webhook-hosts` rule (pure), checked before every request and on every redirect.
//!
//! # Syntax
//! A comma-separated list of entries, each `host` or `host:port` (IPv6 in brackets,
//! `[fd00::1]:9090`). `*.example.com` matches every name under `example.com` (not
//! `example.com` itself); `*` matches every host. An entry without a port matches any port.
//! Names compare case-insensitively; a trailing dot is ignored.
//!
//! # Default
//! An empty list allows every host (existing installs keep working), except literal
//! link-local addresses (`169.254.0.0/16`, `fe80::/10`: the cloud metadata endpoints, where a
//! request from the operator's pod could read node credentials). An explicit list allows
//! exactly what it names. Names are checked, not the addresses they resolve to: pair the list
//! with the chart's `NetworkPolicy`, which restricts the addresses.

use std::fmt;
use std::net::IpAddr;

/// Why an address was refused (a message for status, Events and logs).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    /// Not a URL, or not `http`/`https`, or without a host.
    #[error("{0:?} is not an http(s) URL with a host")]
    InvalidUrl(String),
    /// The host is not on the list.
    #[error("host {host} is not allowed by {flag} ({list})")]
    NotAllowed {
        /// `host:port` as requested.
        host: String,
        /// The operator flag that sets the list.
        flag: &'static str,
        /// The list in force, as configured.
        list: String,
    },
}

/// One entry of the list.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Pattern {
    /// `*`: every host.
    Any,
    /// `*.suffix`: every name ending in `.suffix`.
    Subdomains(String),
    /// One host name or address.
    Exact(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    host: Pattern,
    port: Option<u16>,
}

/// A list of allowed `host[:port]` patterns for one kind of egress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostAllowList {
    flag: &'static str,
    entries: Vec<Entry>,
}

/// Lower-cases a host and drops a trailing dot and IPv6 brackets.
fn normalize(host: &str) -> String {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

fn parse_entry(raw: &str) -> Result<Entry, String> {
    let bad = || format!("{raw:?} is not host, host:port, *.domain or *");
    let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(bad)?;
        match after {
            "" => (h, None),
            p => (h, Some(p.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match raw.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            // No colon, or a bare IPv6 address: no port.
            _ => (raw, None),
        }
    };
    let port = port
        .map(|p| p.parse::<u16>().map_err(|_| bad()))
        .transpose()?;
    if host != "*" && normalize(host) == "*" {
        return Err(bad());
    }
    let host = normalize(host);
    let pattern = if host == "*" {
        Pattern::Any
    } else if let Some(suffix) = host.strip_prefix("*.") {
        if suffix.is_empty() || suffix.contains('*') {
            return Err(bad());
        }
        Pattern::Subdomains(suffix.to_owned())
    } else if host.is_empty() || host.contains('*') || host.contains('/') {
        return Err(bad());
    } else {
        Pattern::Exact(host)
    };
    Ok(Entry {
        host: pattern,
        port,
    })
}

impl HostAllowList {
    /// Parses the entries of `flag` (already split on commas; blanks are skipped).
    pub fn parse<S: AsRef<str>>(flag: &'static str, entries: &[S]) -> Result<Self, String> {
        let entries = entries
            .iter()
            .map(|e| e.as_ref().trim())
            .filter(|e| !e.is_empty())
            .map(parse_entry)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{flag}: {e}"))?;
        Ok(Self { flag, entries })
    }

    /// The default for `flag`: every host except literal link-local addresses.
    pub fn allow_all(flag: &'static str) -> Self {
        Self {
            flag,
            entries: Vec::new(),
        }
    }

    /// Whether `host` (a name or an address, IPv6 with or without brackets) on `port` may be
    /// contacted.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        let host = normalize(host);
        if self.entries.is_empty() {
            return !host.parse::<IpAddr>().is_ok_and(is_link_local);
        }
        self.entries.iter().any(|e| {
            e.port.is_none_or(|p| p == port)
                && match &e.host {
                    Pattern::Any => true,
                    Pattern::Subdomains(suffix) => host
                        .strip_suffix(suffix.as_str())
                        .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
                    Pattern::Exact(h) => *h == host,
                }
        })
    }

    /// Checks a URL: `http`/`https`, with a host the list allows (on its explicit or
    /// default port).
    pub fn check(&self, url: &str) -> Result<reqwest::Url, EgressError> {
        let parsed =
            reqwest::Url::parse(url).map_err(|_| EgressError::InvalidUrl(url.to_owned()))?;
        self.check_url(&parsed)?;
        Ok(parsed)
    }

    /// [`Self::check`] on a parsed URL.
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), EgressError> {
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return Err(EgressError::InvalidUrl(url.to_string()));
        };
        if !matches!(url.scheme(), "http" | "https") {
            return Err(EgressError::InvalidUrl(url.to_string()));
        }
        if self.allows(host, port) {
            Ok(())
        } else {
            Err(EgressError::NotAllowed {
                host: format!("{host}:{port}"),
                flag: self.flag,
                list: self.to_string(),
            })
        }
    }

    /// A redirect policy for the HTTP client that follows at most `max` redirects, each only
    /// to a host this list allows.
    pub fn redirect_policy(&self, max: usize) -> reqwest::redirect::Policy {
        let list = self.clone();
        reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > max {
                attempt.error("too many redirects")
            } else if let Err(e) = list.check_url(attempt.url()) {
                attempt.error(e)
            } else {
                attempt.follow()
            }
        })
    }
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => {
            (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_link_local())
        }
    }
}

impl fmt::Display for HostAllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.entries.is_empty() {
            return f.write_str("any host but link-local addresses");
        }
        let shown: Vec<String> = self
            .entries
            .iter()
            .map(|e| {
                let host = match &e.host {
                    Pattern::Any => "*".to_owned(),
                    Pattern::Subdomains(s) => format!("*.{s}"),
                    Pattern::Exact(h) if h.contains(':') => format!("[{h}]"),
                    Pattern::Exact(h) => h.clone(),
                };
                e.port.map_or(host.clone(), |p| format!("{host}:{p}"))
            })
            .collect();
        f.write_str(&shown.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> HostAllowList {
        HostAllowList::parse("--allowed-prometheus-hosts", entries).unwrap()
    }

    #[test]
    fn exact_hosts_with_and_without_port() {
        let l = list(&["prometheus.monitoring:9090", "Thanos.Example."]);
        assert!(l.allows("prometheus.monitoring", 9090));
        assert!(!l.allows("prometheus.monitoring", 9091));
        assert!(l.allows("thanos.example", 443));
        assert!(l.allows("THANOS.example.", 10902));
        assert!(!l.allows("evil.example", 9090));
        assert!(!l.allows("prometheus.monitoring.evil.example", 9090));
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        let l = list(&["*.svc.cluster.local:9090"]);
        assert!(l.allows("prometheus.monitoring.svc.cluster.local", 9090));
        assert!(!l.allows("svc.cluster.local", 9090));
        assert!(!l.allows("xsvc.cluster.local", 9090));
        assert!(!l.allows("prometheus.monitoring.svc.cluster.local", 80));
        let any = list(&["*"]);
        assert!(
            any.allows("169.254.169.254", 80),
            "an explicit * allows all"
        );
    }

    #[test]
    fn ipv6_entries_in_brackets() {
        let l = list(&["[fd00::1]:9090", "::2"]);
        assert!(l.allows("[fd00::1]", 9090));
        assert!(l.allows("fd00::1", 9090));
        assert!(!l.allows("fd00::1", 80));
        assert!(l.allows("::2", 1));
    }

    #[test]
    fn bad_entries_are_clear_errors() {
        for bad in ["host:port", "*.", "a.*.b", "http://x/", "[::1", "x:99999"] {
            let e = HostAllowList::parse("--allowed-webhook-hosts", &[bad]).unwrap_err();
            assert!(
                e.starts_with("--allowed-webhook-hosts: ") && e.contains(bad),
                "{e}"
            );
        }
    }

    #[test]
    fn the_default_allows_all_but_link_local_metadata_addresses() {
        let l = HostAllowList::allow_all("--allowed-webhook-hosts");
        assert!(l.allows("hooks.slack.com", 443));
        assert!(l.allows("10.0.0.7", 80));
        assert!(!l.allows("169.254.169.254", 80));
        assert!(!l.allows("[fe80::1]", 80));
        assert!(!l.allows("::ffff:169.254.169.254", 80));
        assert!(
            l.check("http://169.254.169.254/latest/meta-data/")
                .unwrap_err()
                .to_string()
                .contains("any host but link-local")
        );
    }

    #[test]
    fn urls_are_checked_on_their_default_port_and_scheme() {
        let l = list(&["hooks.example:443", "127.0.0.1"]);
        assert!(l.check("https://hooks.example/T000/B000").is_ok());
        let refused = l.check("http://hooks.example/T000").unwrap_err();
        assert_eq!(
            refused.to_string(),
            "host hooks.example:80 is not allowed by --allowed-prometheus-hosts \
             (hooks.example:443,127.0.0.1)"
        );
        assert!(l.check("http://127.0.0.1:9/x").is_ok());
        assert!(matches!(
            l.check("file:///etc/passwd"),
            Err(EgressError::InvalidUrl(_))
        ));
        assert!(matches!(
            l.check("not a url"),
            Err(EgressError::InvalidUrl(_))
        ));
    }
}
