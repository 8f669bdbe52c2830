//! Request classification: method + raw path → [`Route`], with no IO and no allocation.
//!
//! The HTTP layer matches on the result exactly once, so every status the server can answer
//! (200, 400, 404, 405, 500, 503) is decided in one place, and the metrics `route` label is
//! always one of a handful of templates ([`RouteLabel`]) — never the raw path.
//!
//! Methods: every path serves `GET` and `HEAD` (same status and headers, no body); any
//! other method on a known path is 405, and `CONNECT` (authority-form, no path at all) is
//! 405 wherever it points, so no request form is left without an answer.

use std::fmt;

/// What a request asks for, decided from its method and path alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /recommend/{user_id}` with a valid id.
    Recommend(u32),
    /// `GET /recommend/{user_id}` with an id that is not a `u32`.
    BadUserId(BadUserId),
    /// `GET /healthz`: the process is alive.
    Healthz,
    /// `GET /readyz`: the model is loaded.
    Readyz,
    /// `GET /version`: model provenance as JSON.
    Version,
    /// `GET /metrics`: Prometheus text exposition.
    Metrics,
    /// A known path with a method other than GET or HEAD, or any `CONNECT`.
    MethodNotAllowed(RouteLabel),
    /// Any other path.
    NotFound,
}

impl Route {
    /// Classifies a request. `path` is the raw request path without the query string
    /// (empty for an authority-form `CONNECT` target, `*` for `OPTIONS *`).
    pub fn classify(method: &http::Method, path: &str) -> Route {
        match MethodClass::of(method) {
            MethodClass::Tunnel => return Route::MethodNotAllowed(RouteLabel::Other),
            MethodClass::Read | MethodClass::Other => {}
        }
        let route = match path {
            "/healthz" => Route::Healthz,
            "/readyz" => Route::Readyz,
            "/version" => Route::Version,
            "/metrics" => Route::Metrics,
            "/recommend" => Route::BadUserId(BadUserId::Missing),
            _ => match path.strip_prefix("/recommend/") {
                // A further `/` means a different, unknown path such as `/recommend/1/x`.
                Some(id) if !id.contains('/') => match parse_user_id(id) {
                    Ok(user) => Route::Recommend(user),
                    Err(bad) => Route::BadUserId(bad),
                },
                _ => Route::NotFound,
            },
        };
        if route == Route::NotFound || MethodClass::of(method) == MethodClass::Read {
            route
        } else {
            Route::MethodNotAllowed(route.label())
        }
    }

    /// Whether answering this route may run the model (the only admission-controlled work).
    pub fn runs_model(self) -> bool {
        matches!(self, Route::Recommend(_))
    }

    /// The bounded-cardinality `route` label of this request.
    pub fn label(self) -> RouteLabel {
        match self {
            Route::Recommend(_) | Route::BadUserId(_) => RouteLabel::Recommend,
            Route::Healthz => RouteLabel::Healthz,
            Route::Readyz => RouteLabel::Readyz,
            Route::Version => RouteLabel::Version,
            Route::Metrics => RouteLabel::Metrics,
            Route::MethodNotAllowed(label) => label,
            Route::NotFound => RouteLabel::Other,
        }
    }
}

/// How the server treats a request method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MethodClass {
    /// `GET` and `HEAD`: served on every known path (`HEAD` without the body).
    Read,
    /// `CONNECT`: never served (its target has no path); 405.
    Tunnel,
    /// Every other method, standard or extension: 405 on a known path, 404 elsewhere.
    Other,
}

impl MethodClass {
    /// Classifies a method.
    pub fn of(method: &http::Method) -> MethodClass {
        if method == http::Method::GET || method == http::Method::HEAD {
            MethodClass::Read
        } else if method == http::Method::CONNECT {
            MethodClass::Tunnel
        } else {
            MethodClass::Other
        }
    }
}

/// Value of the `Allow` header on a 405.
pub const ALLOWED_METHODS: &str = "GET, HEAD";

/// Route templates used as the `route` metrics label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteLabel {
    /// `/recommend/{user_id}` (label value `/recommend`).
    Recommend,
    /// `/healthz`.
    Healthz,
    /// `/readyz`.
    Readyz,
    /// `/version`.
    Version,
    /// `/metrics`.
    Metrics,
    /// Every unknown path (label value `other`).
    Other,
}

impl RouteLabel {
    /// All labels, in exposition order.
    pub const ALL: [RouteLabel; 6] = [
        RouteLabel::Recommend,
        RouteLabel::Healthz,
        RouteLabel::Readyz,
        RouteLabel::Version,
        RouteLabel::Metrics,
        RouteLabel::Other,
    ];

    /// Position in [`RouteLabel::ALL`], for array-indexed counters.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The label value as exposed to Prometheus.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteLabel::Recommend => "/recommend",
            RouteLabel::Healthz => "/healthz",
            RouteLabel::Readyz => "/readyz",
            RouteLabel::Version => "/version",
            RouteLabel::Metrics => "/metrics",
            RouteLabel::Other => "other",
        }
    }
}

/// Why a `{user_id}` path segment is not a valid user id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadUserId {
    /// `/recommend` or `/recommend/` with nothing after it.
    Missing,
    /// A leading `-` followed by digits.
    Negative,
    /// Only digits, but more than `u32::MAX`.
    Overflow,
    /// Anything else that is not plain ASCII digits.
    NotANumber,
}

impl fmt::Display for BadUserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BadUserId::Missing => "missing user id: use /recommend/{user_id}",
            BadUserId::Negative => "user id must not be negative",
            BadUserId::Overflow => "user id is larger than 4294967295",
            BadUserId::NotANumber => "user id must be a non-negative integer (digits only)",
        })
    }
}

/// Parses a user id segment: ASCII digits only (leading zeros allowed), at most `u32::MAX`.
pub fn parse_user_id(segment: &str) -> Result<u32, BadUserId> {
    if segment.is_empty() {
        return Err(BadUserId::Missing);
    }
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = segment.strip_prefix('-') {
        return Err(if all_digits(rest) {
            BadUserId::Negative
        } else {
            BadUserId::NotANumber
        });
    }
    if !all_digits(segment) {
        return Err(BadUserId::NotANumber);
    }
    // Only digits remain, so the one possible parse failure is overflow.
    segment.parse::<u32>().map_err(|_| BadUserId::Overflow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn user_ids_parse_digits_only_within_u32() {
        assert_eq!(parse_user_id("0"), Ok(0));
        assert_eq!(parse_user_id("007"), Ok(7));
        assert_eq!(parse_user_id("4294967295"), Ok(u32::MAX));
        assert_eq!(parse_user_id("4294967296"), Err(BadUserId::Overflow));
        assert_eq!(
            parse_user_id("99999999999999999999999"),
            Err(BadUserId::Overflow)
        );
        assert_eq!(parse_user_id("-1"), Err(BadUserId::Negative));
        assert_eq!(parse_user_id("-"), Err(BadUserId::NotANumber));
        assert_eq!(parse_user_id("+1"), Err(BadUserId::NotANumber));
        assert_eq!(parse_user_id("1.5"), Err(BadUserId::NotANumber));
        assert_eq!(parse_user_id("abc"), Err(BadUserId::NotANumber));
        assert_eq!(parse_user_id(" 1"), Err(BadUserId::NotANumber));
        assert_eq!(parse_user_id("%31"), Err(BadUserId::NotANumber));
        assert_eq!(parse_user_id("١"), Err(BadUserId::NotANumber));
        assert_eq!(parse_user_id(""), Err(BadUserId::Missing));
    }

    #[test]
    fn paths_map_to_routes_and_bounded_labels() {
        let get = &Method::GET;
        assert_eq!(Route::classify(get, "/recommend/42"), Route::Recommend(42));
        assert_eq!(
            Route::classify(get, "/recommend/"),
            Route::BadUserId(BadUserId::Missing)
        );
        assert_eq!(
            Route::classify(get, "/recommend"),
            Route::BadUserId(BadUserId::Missing)
        );
        assert_eq!(Route::classify(get, "/recommend/1/2"), Route::NotFound);
        assert_eq!(Route::classify(get, "/recommendations/1"), Route::NotFound);
        assert_eq!(Route::classify(get, "/"), Route::NotFound);
        assert_eq!(Route::classify(get, "/healthz"), Route::Healthz);
        assert_eq!(Route::classify(get, "/readyz"), Route::Readyz);
        assert_eq!(Route::classify(get, "/version"), Route::Version);
        assert_eq!(Route::classify(get, "/metrics"), Route::Metrics);
        assert_eq!(
            Route::classify(get, "/recommend/12345").label().as_str(),
            "/recommend"
        );
        assert_eq!(Route::classify(get, "/nope").label().as_str(), "other");
    }

    #[test]
    fn wrong_method_on_known_path_is_405_and_unknown_path_stays_404() {
        assert_eq!(
            Route::classify(&Method::POST, "/recommend/1"),
            Route::MethodNotAllowed(RouteLabel::Recommend)
        );
        assert_eq!(
            Route::classify(&Method::DELETE, "/metrics"),
            Route::MethodNotAllowed(RouteLabel::Metrics)
        );
        assert_eq!(Route::classify(&Method::POST, "/nope"), Route::NotFound);
    }

    #[test]
    fn every_method_and_request_form_is_classified() {
        let head = &Method::HEAD;
        assert_eq!(Route::classify(head, "/healthz"), Route::Healthz);
        assert_eq!(Route::classify(head, "/recommend/3"), Route::Recommend(3));
        for name in [
            "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND", "X",
        ] {
            let method = Method::from_bytes(name.as_bytes()).unwrap();
            assert_eq!(MethodClass::of(&method), MethodClass::Other, "{name}");
            assert_eq!(
                Route::classify(&method, "/readyz"),
                Route::MethodNotAllowed(RouteLabel::Readyz),
                "{name}"
            );
        }
        // CONNECT has an authority-form target (no path) and is never served.
        assert_eq!(MethodClass::of(&Method::CONNECT), MethodClass::Tunnel);
        for path in ["", "/", "/healthz", "example.com:443"] {
            assert_eq!(
                Route::classify(&Method::CONNECT, path),
                Route::MethodNotAllowed(RouteLabel::Other)
            );
        }
        // `OPTIONS *` (asterisk-form) names no resource of ours.
        assert_eq!(Route::classify(&Method::OPTIONS, "*"), Route::NotFound);
        assert!(Route::Recommend(1).runs_model());
        assert!(!Route::Healthz.runs_model());
    }

    #[test]
    fn label_indices_match_their_position() {
        for (i, label) in RouteLabel::ALL.iter().enumerate() {
            assert_eq!(label.index(), i);
        }
    }
}
