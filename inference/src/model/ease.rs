//! EASE^R item-item weights: Steck, "Embarrassingly Shallow Autoencoders for Sparse Data"
//! (WWW 2019). With `X` the binary user × item matrix and `G = XᵀX`, the weights minimising
//! `‖X − XB‖² + λ‖B‖²` subject to `diag(B) = 0` are, in closed form,
//! `P = (G + λI)⁻¹`, `B_ij = −P_ij / P_jj` (`i ≠ j`), `B_jj = 0`; a user's score for item
//! `j` is `Σ_{i rated} B_ij`.
//!
//! The solve is dense (`faer`'s Cholesky and inverse, `n³` flops), so it runs on the
//! `learned_max_items` most-rated movies; each row of `B` is then pruned to its largest
//! weights by magnitude, strongest first, so serving costs at most `history × kept`
//! additions, and a per-request budget can take a shorter prefix of each row.

use faer::linalg::solvers::DenseSolveCore;
use faer::{Mat, Side};
use rayon::prelude::*;

use super::Lists;

/// Why the EASE solve failed.
#[derive(Debug, thiserror::Error)]
pub enum EaseError {
    /// `G + λI` was not positive definite (only possible for `λ ≤ 0` or non-finite input).
    #[error("EASE: G + {lambda}·I is not positive definite")]
    NotPositiveDefinite {
        /// The regularisation used.
        lambda: f64,
    },
}

/// The Gram matrix `XᵀX` of the binary matrix whose row `u` lists the columns in
/// `rows.row(u)` (ascending, distinct), as co-occurrence counts, dense `n × n`, row-major.
/// Users are split across threads, each with its own counts, summed at the end.
pub fn gram(rows: &Lists, n: usize) -> Vec<u32> {
    let users = rows.rows();
    let threads = rayon::current_num_threads().max(1);
    let chunk = users.div_ceil(threads).max(1);
    let starts: Vec<usize> = (0..users).step_by(chunk).collect();
    let partial: Vec<Vec<u32>> = starts
        .into_par_iter()
        .map(|start| {
            let mut counts = vec![0_u32; n * n];
            for u in start..(start + chunk).min(users) {
                let cols = rows.row(u);
                for (a, &i) in cols.iter().enumerate() {
                    let row = &mut counts[i as usize * n..(i as usize + 1) * n];
                    for &j in &cols[a..] {
                        row[j as usize] += 1;
                    }
                }
            }
            counts
        })
        .collect();
    let mut counts = partial
        .into_iter()
        .reduce(|mut a, b| {
            a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
            a
        })
        .unwrap_or_else(|| vec![0; n * n]);
    // Only the upper triangle (i ≤ j) was counted: mirror it.
    for i in 0..n {
        for j in 0..i {
            counts[i * n + j] = counts[j * n + i];
        }
    }
    counts
}

/// The dense EASE weights `B` for Gram matrix `gram` (`n × n`, row-major) and
/// regularisation `lambda`: `B[(i, j)]` is what a rating of item `i` adds to item `j`.
pub fn weights(gram: &[u32], n: usize, lambda: f64) -> Result<Mat<f64>, EaseError> {
    let g = Mat::<f64>::from_fn(n, n, |i, j| {
        f64::from(gram[i * n + j]) + if i == j { lambda } else { 0.0 }
    });
    let llt = g
        .llt(Side::Lower)
        .map_err(|_| EaseError::NotPositiveDefinite { lambda })?;
    let p = llt.inverse();
    Ok(Mat::from_fn(n, n, |i, j| {
        if i == j { 0.0 } else { -p[(i, j)] / p[(j, j)] }
    }))
}

/// Each row of `b` pruned to its `keep` largest weights by magnitude, as `(column, weight)`
/// strongest first (ties by column), so any prefix of a row is its strongest weights; zero
/// weights are dropped.
pub fn prune(b: &Mat<f64>, keep: usize) -> Vec<Vec<(u32, f32)>> {
    let n = b.nrows();
    (0..n)
        .into_par_iter()
        .map(|i| {
            let mut row: Vec<(f32, u32)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| (b[(i, j)] as f32, j as u32))
                .filter(|&(w, _)| w != 0.0 && w.is_finite())
                .collect();
            let strongest = |a: &(f32, u32), b: &(f32, u32)| {
                b.0.abs().total_cmp(&a.0.abs()).then(a.1.cmp(&b.1))
            };
            if row.len() > keep {
                row.select_nth_unstable_by(keep.saturating_sub(1), strongest);
                row.truncate(keep);
            }
            row.sort_unstable_by(strongest);
            row.into_iter().map(|(w, j)| (j, w)).collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Five users over five items, as column lists.
    fn x() -> Lists {
        let rows: [&[u32]; 6] = [&[0, 1, 2], &[1, 2], &[0, 3], &[2, 3, 4], &[0, 1, 4], &[4]];
        Lists::from_rows(rows.map(|r| r.iter().copied()))
    }

    #[test]
    fn gram_counts_co_occurrences() {
        let g = gram(&x(), 5);
        // Item 0 is rated by users 0, 2, 4; items 0 and 1 together by users 0 and 4.
        assert_eq!(g[0], 3);
        assert_eq!((g[1], g[5]), (2, 2));
        assert_eq!(g[4 * 5 + 4], 3);
        assert_eq!((g[3 * 5 + 4], g[4 * 5 + 3]), (1, 1));
        assert_eq!(g[5 + 3], 0);
    }

    #[test]
    fn weights_solve_each_columns_constrained_ridge_regression() {
        // Independent check of the closed form: with diag(B) = 0, column j of B is the
        // ridge regression of item j on the other items:
        // (X₋ⱼᵀX₋ⱼ + λI) b₋ⱼ = X₋ⱼᵀ xⱼ, i.e. (G₋ⱼ,₋ⱼ + λI) b₋ⱼ = G₋ⱼ,ⱼ.
        let n = 5;
        let lambda = 0.7;
        let g = gram(&x(), n);
        let b = weights(&g, n, lambda).unwrap();
        for j in 0..n {
            let others: Vec<usize> = (0..n).filter(|&i| i != j).collect();
            let a: Vec<Vec<f64>> = others
                .iter()
                .map(|&r| {
                    others
                        .iter()
                        .map(|&c| f64::from(g[r * n + c]) + if r == c { lambda } else { 0.0 })
                        .collect()
                })
                .collect();
            let rhs: Vec<f64> = others.iter().map(|&r| f64::from(g[r * n + j])).collect();
            let want = crate::model::fixtures::solve_dense(a, rhs);
            assert!(b[(j, j)].abs() < f64::EPSILON);
            for (k, &i) in others.iter().enumerate() {
                assert!(
                    (b[(i, j)] - want[k]).abs() < 1e-9,
                    "B[{i},{j}] = {} but the regression gives {}",
                    b[(i, j)],
                    want[k]
                );
            }
        }
    }

    #[test]
    fn a_non_positive_definite_system_is_an_error() {
        let g = gram(&x(), 5);
        // Items 0..5 with λ = −100 make G + λI indefinite.
        assert!(matches!(
            weights(&g, 5, -100.0),
            Err(EaseError::NotPositiveDefinite { .. })
        ));
    }

    #[test]
    fn pruning_keeps_the_largest_magnitudes_strongest_first() {
        let b = Mat::from_fn(3, 3, |i, j| match (i, j) {
            (0, 1) => 0.1,
            (0, 2) => -0.5,
            (1, 0 | 2) => 0.3,
            _ => 0.0,
        });
        let rows = prune(&b, 1);
        assert_eq!(rows[0], vec![(2, -0.5)]);
        assert_eq!(rows[1], vec![(0, 0.3)], "ties keep the lower column");
        assert!(rows[2].is_empty());
        assert_eq!(prune(&b, 5)[0], vec![(2, -0.5), (1, 0.1)]);
        assert_eq!(prune(&b, 5)[1], vec![(0, 0.3), (2, 0.3)]);
    }
}
