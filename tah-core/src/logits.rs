//! Small reductions over a logits row: top-k and logsumexp.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// An f32 ordered by `total_cmp`, ties broken by the lower id first (like
/// `torch.topk` on CPU in practice).
#[derive(Clone, Copy, PartialEq)]
struct Scored(f32, u32);

impl Eq for Scored {}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .total_cmp(&other.0)
            .then_with(|| other.1.cmp(&self.1))
    }
}

/// The `k` largest entries of `row` as `(id, value)`, descending. One pass with
/// a size-k min-heap: O(V log k) worst case, O(V) typically, no full sort.
pub fn top_k(row: &[f32], k: usize) -> Vec<(u32, f32)> {
    let k = k.min(row.len());
    if k == 0 {
        return Vec::new();
    }
    let mut heap: BinaryHeap<Reverse<Scored>> = BinaryHeap::with_capacity(k + 1);
    for (id, &v) in row.iter().enumerate() {
        let item = Scored(v, id as u32);
        if heap.len() < k {
            heap.push(Reverse(item));
        } else if let Some(Reverse(min)) = heap.peek() {
            if item > *min {
                heap.pop();
                heap.push(Reverse(item));
            }
        }
    }
    let mut out: Vec<Scored> = heap.into_iter().map(|Reverse(s)| s).collect();
    out.sort_by(|a, b| b.cmp(a));
    out.into_iter().map(|Scored(v, id)| (id, v)).collect()
}

/// `log(sum(exp(row)))`, computed in f64.
pub fn logsumexp(row: &[f32]) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    if !max.is_finite() {
        return max;
    }
    let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
    max + sum.ln()
}

/// Index of the largest entry (the first one on ties), `None` for an empty row.
pub fn argmax(row: &[f32]) -> Option<u32> {
    top_k(row, 1).first().map(|&(id, _)| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_is_sorted_and_complete() {
        let row = [0.5, -1.0, 3.0, 2.0, 3.0, 0.0];
        assert_eq!(top_k(&row, 3), vec![(2, 3.0), (4, 3.0), (3, 2.0)]);
        assert_eq!(top_k(&row, 10).len(), 6);
        assert!(top_k(&row, 0).is_empty());
        assert_eq!(argmax(&row), Some(2));
        assert_eq!(argmax(&[]), None);
    }

    #[test]
    fn logsumexp_is_stable() {
        let v = logsumexp(&[1000.0, 1000.0]);
        assert!((v - (1000.0 + 2f64.ln())).abs() < 1e-9);
        assert_eq!(logsumexp(&[]), f64::NEG_INFINITY);
    }
}
