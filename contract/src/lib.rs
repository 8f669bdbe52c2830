//! What movrek's two programs must agree on, in one place: the operator writes a pod's
//! environment that `movrek serve` reads, and queries the metrics that `movrek serve` and
//! `movrek evaluate` export, so a name changed on one side only would break a rollout without
//! a compiler error. `DESIGN.md` ("Pod contract", "Metrics") is the specification; the
//! constants here are its only spelling in code.
//!
//! Beside them, the few helpers both programs need the same answer from: FNV-1a (stable
//! hashes that must not change between releases), Prometheus label escaping, and error
//! chains for log lines. No dependencies, so both crates can use it at no build cost.

pub mod env;
pub mod metrics;

/// 32-bit FNV-1a of `bytes` (Fowler, Noll and Vo).
pub fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |hash, &b| {
        (hash ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// 64-bit FNV-1a of `bytes` (Fowler, Noll and Vo).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// An error and its sources on one line: `outer: inner: root`. A cause whose text the line
/// already holds (errors that print their source and also return it) is not repeated.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_published_test_vectors() {
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9c_f968);
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn an_error_chain_names_every_cause_once() {
        let root = Layer("connection refused", None);
        let wrapped = Layer("GET failed: connection refused", Some(Box::new(root)));
        let outer = Layer("cannot load", Some(Box::new(wrapped)));
        assert_eq!(
            error_chain(&outer),
            "cannot load: GET failed: connection refused"
        );
        assert_eq!(error_chain(&Layer("alone", None)), "alone");
    }
}
