//! Small reductions over a logits row: top-k and logsumexp, and the
//! candidates a sampler reads (top-k after a repetition penalty).

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

/// The `k` largest entries of a row fed in pieces (e.g. one LM-head panel
/// at a time), with a size-k min-heap: O(V log k) worst case, O(V)
/// typically, no full sort and no copy of the row. Once the heap is full,
/// whole runs of values below its smallest entry are skipped with one
/// vectorizable comparison per value (a decode step offers every one of
/// the vocabulary's logits, and almost none of them enter).
pub struct TopK {
    k: usize,
    heap: BinaryHeap<Reverse<Scored>>,
}

/// Values compared per skip test.
const RUN: usize = 16;

impl TopK {
    pub fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    /// Offers `values`, the entries with ids `first_id..`.
    pub fn extend(&mut self, first_id: usize, values: &[f32]) {
        if self.k == 0 {
            return;
        }
        let runs = values.chunks_exact(RUN);
        let tail = runs.remainder();
        for (r, run) in runs.enumerate() {
            // Every value strictly below the smallest kept one is out (a
            // tie may still enter on its lower id, NaN orders above all).
            // A run of fixed length compiles to a few vector compares.
            let skip = self.heap.len() == self.k
                && self.heap.peek().is_some_and(|Reverse(min)| {
                    run[..RUN]
                        .iter()
                        .fold(true, |below, &v| below & (v < min.0))
                });
            if !skip {
                self.offer_all(first_id + r * RUN, run);
            }
        }
        self.offer_all(first_id + values.len() - tail.len(), tail);
    }

    fn offer_all(&mut self, first_id: usize, values: &[f32]) {
        for (id, &v) in (first_id..).zip(values) {
            self.offer(Scored(v, id as u32));
        }
    }

    fn offer(&mut self, item: Scored) {
        if self.heap.len() < self.k {
            self.heap.push(Reverse(item));
        } else if let Some(Reverse(min)) = self.heap.peek() {
            if item > *min {
                self.heap.pop();
                self.heap.push(Reverse(item));
            }
        }
    }

    /// `(id, value)` pairs, descending.
    pub fn into_sorted(self) -> Vec<(u32, f32)> {
        let mut out: Vec<Scored> = self.heap.into_iter().map(|Reverse(s)| s).collect();
        out.sort_by(|a, b| b.cmp(a));
        out.into_iter().map(|Scored(v, id)| (id, v)).collect()
    }
}

/// The `k` largest entries of `row` as `(id, value)`, descending.
pub fn top_k(row: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut top = TopK::new(k.min(row.len()));
    top.extend(0, row);
    top.into_sorted()
}

/// `(token id, logit)` pairs, descending.
pub type TopLogits = Vec<(u32, f32)>;

/// What a sampler needs from a position's final logits: the `k` largest
/// among ids `< limit`, after a repetition penalty on the ids in `seen`
/// (Hugging Face's: positive logits divided by it, negative multiplied).
/// Greedy decoding asks for one; a sampler with a top-k cut for that many.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TopRequest<'a> {
    pub k: usize,
    /// Ids from here on are embedding rows without a token: never returned.
    pub limit: usize,
    /// 1 = off.
    pub repetition_penalty: f32,
    /// Distinct ids the penalty applies to.
    pub seen: &'a [u32],
}

/// [`TopRequest`] applied to `row` (which the penalty modifies in place):
/// `(id, value)` pairs, descending.
pub fn penalized_top_k(row: &mut [f32], request: &TopRequest) -> TopLogits {
    let len = request.limit.min(row.len());
    let row = &mut row[..len];
    let penalty = request.repetition_penalty;
    if penalty != 1.0 {
        for &id in request.seen {
            if let Some(l) = row.get_mut(id as usize) {
                *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
            }
        }
    }
    top_k(row, request.k)
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
    fn top_k_in_pieces_equals_one_pass() {
        let row: Vec<f32> = (0..1000).map(|i| ((i * 7919) % 613) as f32 * 0.5).collect();
        let mut pieces = TopK::new(37);
        for (start, piece) in (0..).step_by(128).zip(row.chunks(128)) {
            pieces.extend(start, piece);
        }
        assert_eq!(pieces.into_sorted(), top_k(&row, 37));
    }

    /// The skipping of runs keeps exactly the heap's answer: ties at the
    /// boundary (lower id first), NaN (above everything, as `total_cmp`
    /// orders it), infinities and runs that straddle piece boundaries.
    #[test]
    fn skipped_runs_change_nothing() {
        let mut row: Vec<f32> = (0..1000).map(|i| ((i * 7919) % 97) as f32).collect();
        row[500] = f32::NAN;
        row[3] = f32::INFINITY;
        row[999] = f32::NEG_INFINITY;
        for k in [1, 5, 37, 200] {
            let mut expect: Vec<(u32, f32)> = (0..row.len() as u32)
                .map(|i| (i, row[i as usize]))
                .collect();
            expect.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            expect.truncate(k);
            let got = top_k(&row, k);
            assert_eq!(got.len(), k);
            for (g, e) in got.iter().zip(&expect) {
                assert_eq!(g.0, e.0, "k {k}");
                assert_eq!(g.1.to_bits(), e.1.to_bits(), "k {k}");
            }
            let mut pieces = TopK::new(k);
            for (start, piece) in (0..).step_by(23).zip(row.chunks(23)) {
                pieces.extend(start, piece);
            }
            assert_eq!(
                pieces.into_sorted().iter().map(|t| t.0).collect::<Vec<_>>(),
                expect.iter().map(|t| t.0).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn logsumexp_is_stable() {
        let v = logsumexp(&[1000.0, 1000.0]);
        assert!((v - (1000.0 + 2f64.ln())).abs() < 1e-9);
        assert_eq!(logsumexp(&[]), f64::NEG_INFINITY);
    }
}
