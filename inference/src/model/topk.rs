//! Deterministic top-n selection: score descending, then id ascending.

use std::cmp::Ordering;

/// The ordering every ranking in the model uses: higher score first, then lower id.
/// `total_cmp` makes it a total order, so the result never depends on input order.
pub fn by_score_then_id<S: Copy + Into<f64>>(a: &(S, u32), b: &(S, u32)) -> Ordering {
    let (sa, sb): (f64, f64) = (a.0.into(), b.0.into());
    sb.total_cmp(&sa).then(a.1.cmp(&b.1))
}

/// Reorders `items` and returns the ids of the best `n` (score desc, id asc), best first.
/// Runs in `O(len + n log n)`.
pub fn top_n_by_score<S: Copy + Into<f64>>(items: &mut [(S, u32)], n: usize) -> Vec<u32> {
    let mut out = Vec::with_capacity(n.min(items.len()));
    append_top_n_by_score(items, n, &mut out);
    out
}

/// As [`top_n_by_score`], but appends the ids to `out` (no allocation when `out` has room).
pub fn append_top_n_by_score<S: Copy + Into<f64>>(
    items: &mut [(S, u32)],
    n: usize,
    out: &mut Vec<u32>,
) {
    let n = n.min(items.len());
    if n == 0 {
        return;
    }
    if n < items.len() {
        items.select_nth_unstable_by(n - 1, by_score_then_id);
    }
    let best = &mut items[..n];
    best.sort_unstable_by(by_score_then_id);
    out.extend(best.iter().map(|&(_, id)| id));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_break_by_ascending_id_whatever_the_input_order() {
        let mut a = vec![(1.0_f32, 9), (2.0, 5), (1.0, 3), (2.0, 7), (0.5, 1)];
        let mut b = a.clone();
        b.reverse();
        assert_eq!(top_n_by_score(&mut a, 3), vec![5, 7, 3]);
        assert_eq!(top_n_by_score(&mut b, 3), vec![5, 7, 3]);
        assert_eq!(top_n_by_score(&mut a, 10), vec![5, 7, 3, 9, 1]);
        assert!(top_n_by_score(&mut a, 0).is_empty());
        let mut out = vec![42];
        append_top_n_by_score(&mut b, 2, &mut out);
        assert_eq!(out, vec![42, 5, 7]);
    }
}
