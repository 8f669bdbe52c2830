//! How a simulated user reacts to a recommendation list: pure functions of the list, the
//! user's hidden taste and a seeded generator, so a fixed seed gives the same behaviour for
//! the same answers.
//!
//! # Model
//! A cascade: the user scans the list top-down and examines position `p` (1-based) with
//! probability `examine_first · examine_decay^(p−1)`; an examined movie appeals with
//! probability `logistic(appeal_slope · (stars − appeal_midpoint))`, where `stars` is the
//! user's hidden expected rating of it (`unknown_appeal` when the taste says nothing about
//! the movie). The first examined, appealing movie is watched. When none is, the user
//! watches a movie found elsewhere ("organic") with probability `organic`. The watched
//! fraction of the runtime centres on `logistic(1.8 · (stars − 3))` (0.25 when unknown) with
//! Gaussian noise `watch_noise`, at least one minute; the user then rates the movie with
//! probability `rate`, `round(stars + rating_noise · N(0, 1))` clipped to 1–5.

use crate::util::SplitMix64;

/// Knobs of the behaviour model (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct Behaviour {
    /// Probability of examining position 1.
    pub examine_first: f64,
    /// Factor by which examination falls per position.
    pub examine_decay: f64,
    /// Expected rating at which a movie appeals with probability ½.
    pub appeal_midpoint: f64,
    /// Steepness of appeal in the expected rating.
    pub appeal_slope: f64,
    /// Appeal of a movie the hidden taste knows nothing about.
    pub unknown_appeal: f64,
    /// Probability of watching an organic movie when nothing in the list appealed.
    pub organic: f64,
    /// Probability of rating a watched movie.
    pub rate: f64,
    /// Standard deviation of the watched fraction around its mean.
    pub watch_noise: f64,
    /// Standard deviation of a rating around the expected rating, in stars.
    pub rating_noise: f64,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            examine_first: 0.9,
            examine_decay: 0.88,
            appeal_midpoint: 3.8,
            appeal_slope: 2.0,
            unknown_appeal: 0.03,
            organic: 0.35,
            rate: 0.4,
            watch_noise: 0.12,
            rating_noise: 0.5,
        }
    }
}

fn logistic(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// What the user did after one list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Action {
    /// The watched movie.
    pub movie: u32,
    /// Its 1-based position in the list; `None` for an organic watch.
    pub position: Option<usize>,
    /// Minutes watched (at least 1).
    pub minutes: u32,
    /// The rating given, if any (1–5).
    pub rating: Option<u8>,
}

impl Behaviour {
    /// Probability that the user examines 1-based `position`.
    pub fn examine(&self, position: usize) -> f64 {
        let steps = i32::try_from(position.saturating_sub(1)).unwrap_or(i32::MAX);
        self.examine_first * self.examine_decay.powi(steps)
    }

    /// Probability that an examined movie with expected rating `stars` appeals.
    pub fn appeal(&self, stars: Option<f64>) -> f64 {
        stars.map_or(self.unknown_appeal, |s| {
            logistic(self.appeal_slope * (s - self.appeal_midpoint))
        })
    }

    /// Probability that the user, scanning down to `position`, watches the movie there if
    /// nothing above it was watched: examination × appeal.
    pub fn watch_probability(&self, position: usize, stars: Option<f64>) -> f64 {
        self.examine(position) * self.appeal(stars)
    }

    /// Mean watched fraction of a movie with expected rating `stars`.
    pub fn mean_fraction(stars: Option<f64>) -> f64 {
        stars.map_or(0.25, |s| logistic(1.8 * (s - 3.0)))
    }

    /// Minutes watched of a movie `runtime` minutes long.
    pub fn minutes(&self, stars: Option<f64>, runtime: u32, rng: &mut SplitMix64) -> u32 {
        let fraction =
            (Self::mean_fraction(stars) + self.watch_noise * rng.normal()).clamp(0.0, 1.0);
        ((fraction * f64::from(runtime)).round() as u32).clamp(1, runtime.max(1))
    }

    /// A rating of a movie with expected rating `stars` (3 when unknown).
    pub fn rating(&self, stars: Option<f64>, rng: &mut SplitMix64) -> u8 {
        (stars.unwrap_or(3.0) + self.rating_noise * rng.normal())
            .round()
            .clamp(1.0, 5.0) as u8
    }

    /// The user's reaction to `list`: `stars` is the hidden taste, `organic` picks a movie
    /// found elsewhere, `runtime` gives a movie's length in minutes. Draws from `rng` in a
    /// fixed order, so the same list, taste and seed give the same action.
    pub fn react(
        &self,
        list: &[u32],
        stars: impl Fn(u32) -> Option<f64>,
        organic: impl FnOnce(&mut SplitMix64) -> Option<u32>,
        runtime: impl Fn(u32) -> u32,
        rng: &mut SplitMix64,
    ) -> Option<Action> {
        let clicked = list.iter().enumerate().find_map(|(i, &movie)| {
            let u = rng.next_f64();
            (u < self.watch_probability(i + 1, stars(movie))).then_some((movie, Some(i + 1)))
        });
        let (movie, position) = match clicked {
            Some(hit) => hit,
            None if rng.next_f64() < self.organic => (organic(rng)?, None),
            None => return None,
        };
        let taste = stars(movie);
        let minutes = self.minutes(taste, runtime(movie), rng);
        let rating = (rng.next_f64() < self.rate).then(|| self.rating(taste, rng));
        Some(Action {
            movie,
            position,
            minutes,
            rating,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_probability_falls_with_position_and_rises_with_taste() {
        let b = Behaviour::default();
        for p in 1..20 {
            assert!(b.watch_probability(p, Some(4.5)) > b.watch_probability(p + 1, Some(4.5)));
        }
        assert!((b.examine(1) - 0.9).abs() < 1e-12);
        assert!((b.examine(3) - 0.9 * 0.88 * 0.88).abs() < 1e-12);
        assert!(b.appeal(Some(5.0)) > b.appeal(Some(4.0)));
        assert!(b.appeal(Some(4.0)) > b.appeal(Some(2.0)));
        assert!((b.appeal(Some(b.appeal_midpoint)) - 0.5).abs() < 1e-12);
        assert!((b.appeal(None) - b.unknown_appeal).abs() < 1e-12);
    }

    #[test]
    fn the_click_position_follows_the_cascade() {
        // Ten equally liked movies: the share of clicks at position p matches
        // q_p · Π_{j<p} (1 − q_j), q_p = examine(p) · appeal.
        let b = Behaviour {
            organic: 0.0,
            ..Behaviour::default()
        };
        let list: Vec<u32> = (1..=10).collect();
        let mut counts = [0u32; 11];
        let n = 40_000;
        for i in 0..n {
            let mut rng = SplitMix64::stream(9, 1, i);
            if let Some(a) = b.react(&list, |_| Some(4.2), |_| None, |_| 100, &mut rng) {
                counts[a.position.unwrap()] += 1;
            }
        }
        let mut survive = 1.0;
        for (p, &count) in counts.iter().enumerate().skip(1) {
            let q = b.watch_probability(p, Some(4.2));
            let want = survive * q;
            survive *= 1.0 - q;
            let got = f64::from(count) / n as f64;
            assert!((got - want).abs() < 0.012, "position {p}: {got} vs {want}");
        }
    }

    #[test]
    fn taste_sets_the_minutes_and_the_rating() {
        let b = Behaviour::default();
        let mean = |stars: Option<f64>| {
            let mut rng = SplitMix64::new(3);
            (0..5_000)
                .map(|_| f64::from(b.minutes(stars, 120, &mut rng)))
                .sum::<f64>()
                / 5_000.0
        };
        let (loved, meh, hated) = (mean(Some(4.8)), mean(Some(3.0)), mean(Some(1.5)));
        assert!(loved > 100.0 && (55.0..65.0).contains(&meh) && hated < 20.0);
        let mut rng = SplitMix64::new(4);
        for _ in 0..1_000 {
            assert!((1..=120).contains(&b.minutes(Some(5.0), 120, &mut rng)));
            assert!((1..=5).contains(&b.rating(Some(9.0), &mut rng)));
        }
        let ratings: f64 = (0..2_000)
            .map(|_| f64::from(b.rating(Some(4.0), &mut rng)))
            .sum::<f64>()
            / 2_000.0;
        assert!((ratings - 4.0).abs() < 0.1, "{ratings}");
    }

    #[test]
    fn same_seed_same_answer_same_action() {
        let b = Behaviour::default();
        let list: Vec<u32> = (100..120).collect();
        let stars = |m: u32| Some(2.0 + f64::from(m % 7) / 2.0);
        let run = |seed| {
            (0..200)
                .map(|i| {
                    let mut rng = SplitMix64::stream(seed, 2, i);
                    b.react(
                        &list,
                        stars,
                        |r| Some(r.below(50) as u32 + 1),
                        |_| 90,
                        &mut rng,
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
        assert!(
            run(5)
                .iter()
                .any(|a| a.as_ref().is_some_and(|a| a.position.is_none()))
        );
        assert!(
            run(5)
                .iter()
                .any(|a| a.as_ref().is_some_and(|a| a.rating.is_some()))
        );
    }
}
