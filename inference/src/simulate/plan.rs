//! The session plan: who asks when, decided up front from the seed, so a run is bounded and
//! reproducible whatever the concurrency.
//!
//! Session `k` draws from its own stream (seed, kind, `k`): a malformed request with
//! probability `malformed`, else an unknown user with probability `unknown` (an id above the
//! data's largest, from a pool of `unknown_pool`), else a known user — a minor with
//! probability `minors` when that is set (otherwise minors come at their share of the data).
//! Arrivals are evenly spaced at `rate` per second, except that a session starts a burst with
//! probability `burst`: it and the next `burst_size − 1` sessions are sent at once (the
//! average rate is unchanged; the gap after a burst is longer).

use super::world::World;
use crate::util::SplitMix64;

const KIND_PLAN: u64 = 0x5349_4d50; // "SIMP"

/// The user mix.
#[derive(Clone, Debug, PartialEq)]
pub struct Mix {
    /// Share of sessions by users the server does not know.
    pub unknown: f64,
    /// Distinct unknown user ids drawn from.
    pub unknown_pool: u32,
    /// Share of known-user sessions by minors; `None` keeps the data's share.
    pub minors: Option<f64>,
    /// Share of malformed requests.
    pub malformed: f64,
    /// Probability that a session starts a burst.
    pub burst: f64,
    /// Sessions in a burst.
    pub burst_size: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            unknown: 0.1,
            unknown_pool: 10_000,
            minors: None,
            malformed: 0.01,
            burst: 0.01,
            burst_size: 20,
        }
    }
}

/// Malformed user-id path segments sent to `/recommend/`.
pub const MALFORMED_IDS: [&str; 5] = ["abc", "-1", "99999999999", "1x", "%00"];

/// Who a session is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Visitor {
    /// A known user (index into [`World::known`]).
    Known {
        /// User id.
        id: u32,
        /// Under 18.
        minor: bool,
    },
    /// A user the server does not know, with the taste of a known one.
    Unknown {
        /// User id (above the data's largest).
        id: u32,
        /// Whose taste they have.
        taste_user: u32,
    },
    /// A malformed request (one of [`MALFORMED_IDS`]).
    Malformed(&'static str),
}

impl Visitor {
    /// The id sent in the path.
    pub fn path_id(&self) -> String {
        match self {
            Visitor::Known { id, .. } | Visitor::Unknown { id, .. } => id.to_string(),
            Visitor::Malformed(text) => (*text).to_owned(),
        }
    }
}

/// One planned session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// Index in the run (also the behaviour stream of the session).
    pub index: u64,
    /// Who.
    pub visitor: Visitor,
    /// When to send, in microseconds after the start.
    pub offset_us: u64,
    /// How many earlier sessions this user had in the run (spaces their log times).
    pub visit: u32,
}

/// Plans `count` sessions at `rate` per second (see the module docs).
pub fn plan(seed: u64, count: u64, rate: f64, mix: &Mix, world: &World) -> Vec<Session> {
    let spacing_us = 1e6 / rate.max(1e-9);
    let mut visits: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
    let minors: Vec<usize> = (0..world.known.len())
        .filter(|&i| world.known[i].minor)
        .collect();
    let adults: Vec<usize> = (0..world.known.len())
        .filter(|&i| !world.known[i].minor)
        .collect();
    let mut burst_left = 0u32;
    let mut burst_at = 0u64;
    (0..count)
        .map(|index| {
            let mut rng = SplitMix64::stream(seed, KIND_PLAN, index);
            let visitor = pick_visitor(&mut rng, mix, world, &minors, &adults);
            let even = (index as f64 * spacing_us) as u64;
            let starts_burst = rng.next_f64() < mix.burst;
            let offset_us = if burst_left > 0 {
                burst_left -= 1;
                burst_at
            } else {
                if starts_burst && mix.burst_size > 1 {
                    burst_left = mix.burst_size - 1;
                    burst_at = even;
                }
                even
            };
            let visit = match &visitor {
                Visitor::Known { id, .. } | Visitor::Unknown { id, .. } => {
                    let earlier = visits.entry(*id).or_default();
                    *earlier += 1;
                    *earlier - 1
                }
                Visitor::Malformed(_) => 0,
            };
            Session {
                index,
                visitor,
                offset_us,
                visit,
            }
        })
        .collect()
}

fn pick_visitor(
    rng: &mut SplitMix64,
    mix: &Mix,
    world: &World,
    minors: &[usize],
    adults: &[usize],
) -> Visitor {
    if rng.next_f64() < mix.malformed {
        return Visitor::Malformed(MALFORMED_IDS[rng.below(MALFORMED_IDS.len() as u64) as usize]);
    }
    if rng.next_f64() < mix.unknown || world.known.is_empty() {
        let id = world
            .max_user
            .saturating_add(1)
            .saturating_add(rng.below(u64::from(mix.unknown_pool.max(1))) as u32);
        return Visitor::Unknown {
            id,
            taste_user: world.taste_of_unknown(id),
        };
    }
    let index = match mix.minors {
        Some(share) if !minors.is_empty() && !adults.is_empty() => {
            let pool = if rng.next_f64() < share {
                minors
            } else {
                adults
            };
            pool[rng.below(pool.len() as u64) as usize]
        }
        _ => rng.below(world.known.len() as u64) as usize,
    };
    let persona = world.known[index];
    Visitor::Known {
        id: persona.id,
        minor: persona.minor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synth::{SynthParams, generate_with_truth};
    use crate::online::Runtimes;

    fn world() -> World {
        let (data, hidden) = generate_with_truth(&SynthParams {
            users: 400,
            movies: 100,
            ratings: 4_000,
            minor_share: 0.1,
            ..SynthParams::default()
        });
        World::new(
            &data,
            Some(hidden),
            &[],
            &data.ratings,
            Runtimes::default(),
            String::new(),
        )
    }

    #[test]
    fn the_mix_and_the_bursts_follow_the_options() {
        let world = world();
        let mix = Mix {
            unknown: 0.2,
            minors: Some(0.5),
            malformed: 0.05,
            burst: 0.02,
            burst_size: 10,
            ..Mix::default()
        };
        let sessions = plan(7, 20_000, 100.0, &mix, &world);
        assert_eq!(
            sessions,
            plan(7, 20_000, 100.0, &mix, &world),
            "deterministic"
        );
        assert_ne!(sessions, plan(8, 20_000, 100.0, &mix, &world));
        let share = |keep: &dyn Fn(&Visitor) -> bool| {
            sessions.iter().filter(|s| keep(&s.visitor)).count() as f64 / 20_000.0
        };
        let malformed = share(&|v| matches!(v, Visitor::Malformed(_)));
        let unknown = share(&|v| matches!(v, Visitor::Unknown { .. }));
        let minors = share(&|v| matches!(v, Visitor::Known { minor: true, .. }));
        assert!((malformed - 0.05).abs() < 0.01, "{malformed}");
        assert!((unknown - 0.95 * 0.2).abs() < 0.015, "{unknown}");
        assert!((minors - 0.95 * 0.8 * 0.5).abs() < 0.02, "{minors}");
        for s in &sessions {
            if let Visitor::Unknown { id, taste_user } = s.visitor {
                assert!(id > world.max_user);
                assert_eq!(taste_user, world.taste_of_unknown(id));
            }
        }
        // Bursts: runs of equal offsets; the run's last offset never exceeds the even plan.
        let same = sessions
            .windows(2)
            .filter(|w| w[0].offset_us == w[1].offset_us)
            .count();
        assert!(same > 1_000, "{same} sessions sent with the one before");
        assert!(sessions.iter().all(|s| s.offset_us <= s.index * 10_000));
        // Visits count up per user.
        let first = sessions
            .iter()
            .find(|s| s.visit == 2)
            .expect("a third visit");
        let earlier = sessions[..first.index as usize]
            .iter()
            .filter(|s| s.visitor == first.visitor)
            .count();
        assert_eq!(earlier, 2);
    }
}
