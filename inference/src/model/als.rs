//! Implicit-feedback matrix factorisation by alternating least squares: Hu, Koren and
//! Volinsky, "Collaborative Filtering for Implicit Feedback Datasets" (ICDM 2008).
//!
//! Preference `p_ui = 1` when user `u` rated item `i`, else 0; confidence `c_ui = 1 + α`
//! for a rated pair, 1 otherwise. The loss
//! `Σ_ui c_ui (p_ui − x_uᵀy_i)² + λ(Σ_u ‖x_u‖² + Σ_i ‖y_i‖²)` is minimised exactly in each
//! user factor with the item factors fixed, then the other way round:
//! `x_u = (YᵀY + α Σ_{i∈u} y_i y_iᵀ + λI)⁻¹ (1 + α) Σ_{i∈u} y_i` — the paper's trick of
//! computing `YᵀY` once per half-step keeps each solve at `|u|·k² + k³`. The `k × k` systems
//! are solved with `faer`'s Cholesky. Each half-step cannot raise the loss.

use faer::linalg::solvers::Solve;
use faer::{Col, Mat, Side};
use rayon::prelude::*;

use super::{AlsHyper, Lists};
use crate::util::SplitMix64;

/// User and item factors, row-major: row `r` is `[r·k, (r + 1)·k)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Factors {
    /// Factors per row.
    pub k: usize,
    /// `users × k`.
    pub users: Vec<f32>,
    /// `items × k`.
    pub items: Vec<f32>,
}

/// Seeded start: item factors drawn from `N(0, 0.01²)`, user factors 0 (the first
/// half-step solves them).
pub fn init(users: usize, items: usize, k: usize, seed: u64) -> Factors {
    let mut rng = SplitMix64::new(seed ^ 0xA15_FAC7);
    Factors {
        k,
        users: vec![0.0; users * k],
        items: (0..items * k)
            .map(|_| (0.01 * rng.normal()) as f32)
            .collect(),
    }
}

/// `FᵀF` of the row-major `rows × k` matrix `f`, in `f64`.
fn gram(f: &[f32], k: usize) -> Mat<f64> {
    let m = Mat::<f64>::from_fn(f.len() / k.max(1), k, |r, c| f64::from(f[r * k + c]));
    m.transpose() * &m
}

/// Recomputes every row of `target` (one per row of `rows`) with `fixed` held: the exact
/// minimiser of the loss in those factors.
pub fn half_step(rows: &Lists, fixed: &[f32], target: &mut [f32], k: usize, hyper: &AlsHyper) {
    let base = gram(fixed, k);
    let alpha = f64::from(hyper.alpha);
    let reg = f64::from(hyper.reg);
    target
        .par_chunks_mut(k)
        .enumerate()
        .for_each(|(r, out)| solve_row(rows.row(r), fixed, &base, k, alpha, reg, out));
}

fn solve_row(
    cols: &[u32],
    fixed: &[f32],
    base: &Mat<f64>,
    k: usize,
    alpha: f64,
    reg: f64,
    out: &mut [f32],
) {
    if cols.is_empty() {
        out.fill(0.0);
        return;
    }
    let mut a = base.clone();
    let mut b = Col::<f64>::zeros(k);
    for &i in cols {
        let y = &fixed[i as usize * k..(i as usize + 1) * k];
        for p in 0..k {
            let yp = f64::from(y[p]);
            b[p] += (1.0 + alpha) * yp;
            let scaled = alpha * yp;
            for q in 0..k {
                a[(p, q)] += scaled * f64::from(y[q]);
            }
        }
    }
    for p in 0..k {
        a[(p, p)] += reg;
    }
    match a.llt(Side::Lower) {
        Ok(llt) => {
            llt.solve_in_place(&mut b);
            for p in 0..k {
                out[p] = b[p] as f32;
            }
        }
        // Only reachable with reg = 0 and degenerate factors; keep the row at 0.
        Err(_) => out.fill(0.0),
    }
}

/// Runs `iterations` sweeps (users, then items) from `init`, calling `after_sweep(sweep,
/// factors)` after each (1-based), so a caller can score and keep the best sweep.
pub fn fit(
    by_user: &Lists,
    by_item: &Lists,
    hyper: &AlsHyper,
    iterations: usize,
    seed: u64,
    mut after_sweep: impl FnMut(usize, &Factors),
) -> Factors {
    let k = hyper.factors;
    let mut f = init(by_user.rows(), by_item.rows(), k, seed);
    for sweep in 1..=iterations {
        half_step(by_user, &f.items, &mut f.users, k, hyper);
        half_step(by_item, &f.users, &mut f.items, k, hyper);
        after_sweep(sweep, &f);
    }
    f
}

/// `rows` transposed: for `cols` columns, the rows listing each (ascending).
pub fn transpose(rows: &Lists, cols: usize) -> Lists {
    let mut offsets = vec![0_u32; cols + 1];
    for &c in &rows.items {
        offsets[c as usize + 1] += 1;
    }
    for c in 0..cols {
        offsets[c + 1] += offsets[c];
    }
    let mut next = offsets.clone();
    let mut items = vec![0_u32; rows.items.len()];
    for r in 0..rows.rows() {
        for &c in rows.row(r) {
            items[next[c as usize] as usize] = r as u32;
            next[c as usize] += 1;
        }
    }
    Lists { offsets, items }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lists(rows: &[&[u32]]) -> Lists {
        Lists::from_rows(rows.iter().map(|r| r.iter().copied()))
    }

    fn x() -> Lists {
        lists(&[
            &[0, 1, 2],
            &[1, 2],
            &[0, 3],
            &[2, 3, 4],
            &[0, 1, 4],
            &[4],
            &[],
        ])
    }

    /// The loss of the module docs, summed over every (user, item) pair.
    fn loss(by_user: &Lists, f: &Factors, hyper: &AlsHyper) -> f64 {
        let k = f.k;
        let items = f.items.len() / k;
        let dot = |u: usize, i: usize| -> f64 {
            (0..k)
                .map(|p| f64::from(f.users[u * k + p]) * f64::from(f.items[i * k + p]))
                .sum()
        };
        let mut total = 0.0;
        for u in 0..by_user.rows() {
            for i in 0..items {
                let rated = by_user.row(u).contains(&(i as u32));
                let (p, c) = if rated {
                    (1.0, 1.0 + f64::from(hyper.alpha))
                } else {
                    (0.0, 1.0)
                };
                total += c * (p - dot(u, i)).powi(2);
            }
        }
        let norm: f64 = f
            .users
            .iter()
            .chain(&f.items)
            .map(|&v| f64::from(v).powi(2))
            .sum();
        total + f64::from(hyper.reg) * norm
    }

    fn hyper() -> AlsHyper {
        AlsHyper {
            factors: 3,
            reg: 0.1,
            alpha: 4.0,
        }
    }

    #[test]
    fn every_half_step_lowers_the_loss() {
        let by_user = x();
        let by_item = transpose(&by_user, 5);
        let params = hyper();
        let mut f = init(by_user.rows(), 5, params.factors, 7);
        let mut last = loss(&by_user, &f, &params);
        for _ in 0..6 {
            half_step(&by_user, &f.items, &mut f.users, params.factors, &params);
            let now = loss(&by_user, &f, &params);
            assert!(
                now <= last + 1e-9,
                "user step raised the loss {last} → {now}"
            );
            last = now;
            half_step(&by_item, &f.users, &mut f.items, params.factors, &params);
            let now = loss(&by_user, &f, &params);
            assert!(
                now <= last + 1e-9,
                "item step raised the loss {last} → {now}"
            );
            last = now;
        }
        let start = loss(
            &by_user,
            &init(by_user.rows(), 5, params.factors, 7),
            &params,
        );
        assert!(last < 0.5 * start, "six sweeps: {start} → {last}");
    }

    #[test]
    fn a_user_step_matches_the_brute_force_normal_equations() {
        // Without the YᵀY trick: A = Σ_i c_ui y_i y_iᵀ + λI, b = Σ_i c_ui p_ui y_i over every
        // item, solved by Cramer-free Gaussian elimination.
        let by_user = x();
        let params = hyper();
        let k = params.factors;
        let start = init(by_user.rows(), 5, k, 3);
        let mut users = vec![0.0_f32; by_user.rows() * k];
        half_step(&by_user, &start.items, &mut users, k, &params);
        for u in 0..by_user.rows() {
            let mut lhs = vec![vec![0.0_f64; k]; k];
            let mut rhs = vec![0.0_f64; k];
            for i in 0..5 {
                let rated = by_user.row(u).contains(&(i as u32));
                let conf = if rated {
                    1.0 + f64::from(params.alpha)
                } else {
                    1.0
                };
                let y: Vec<f64> = (0..k).map(|p| f64::from(start.items[i * k + p])).collect();
                for p in 0..k {
                    if rated {
                        rhs[p] += conf * y[p];
                    }
                    for q in 0..k {
                        lhs[p][q] += conf * y[p] * y[q];
                    }
                }
            }
            for (p, row) in lhs.iter_mut().enumerate() {
                row[p] += f64::from(params.reg);
            }
            let want = crate::model::fixtures::solve_dense(lhs, rhs);
            for p in 0..k {
                let got = f64::from(users[u * k + p]);
                assert!(
                    (got - want[p]).abs() < 1e-5 * (1.0 + want[p].abs()),
                    "user {u} factor {p}: {got} vs {}",
                    want[p]
                );
            }
        }
    }

    #[test]
    fn fit_reports_every_sweep_and_is_deterministic() {
        let by_user = x();
        let by_item = transpose(&by_user, 5);
        let mut seen = Vec::new();
        let a = fit(&by_user, &by_item, &hyper(), 3, 11, |s, _| seen.push(s));
        assert_eq!(seen, [1, 2, 3]);
        let b = fit(&by_user, &by_item, &hyper(), 3, 11, |_, _| {});
        assert_eq!(a, b);
        assert!(
            a.users[6 * 3..].iter().all(|&v| v == 0.0),
            "no ratings: zero factors"
        );
    }

    #[test]
    fn transpose_lists_rows_per_column() {
        let t = transpose(&x(), 5);
        assert_eq!(t.row(0), [0, 2, 4]);
        assert_eq!(t.row(4), [3, 4, 5]);
        assert_eq!(t.rows(), 5);
    }
}
