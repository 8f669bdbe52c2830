//! Merging partitions into one event-time order, for batch evaluation of topics
//! (`movrek online-eval --impressions … --events …`).
//!
//! Each partition is a FIFO of records in offset order. [`Merge::pop`] hands out the head
//! with the earliest event time, but only once every partition that is not finished has a
//! head to compare with, so a record never overtakes an earlier one that simply has not
//! been read yet. Records are never reordered inside a partition: a log written to a
//! single partition comes out exactly in its line order, as the same lines read from a
//! file would. Ties go to the lower source (impressions before events, so a list and an
//! action in the same second join as they do in a log that writes the list first), then
//! the lower partition.
//!
//! # Memory
//! [`Merge::buffered`] says how many records a partition holds; the reader pauses a
//! partition that is far ahead ([`Merge::ahead`]) so buffers stay bounded by its limit
//! plus one fetch.

use std::collections::{BTreeMap, VecDeque};

/// A partition of one of several topics: (source index, partition).
pub type Lane = (u8, i32);

/// Records of several partitions, handed out in event-time order.
#[derive(Debug, Default)]
pub struct Merge {
    /// Buffered (time, payload) per lane; time `i64::MIN` when the record has none
    /// (malformed: handed out as soon as it is a head).
    lanes: BTreeMap<Lane, VecDeque<(i64, Vec<u8>)>>,
    /// Lanes that will deliver nothing more.
    finished: std::collections::BTreeSet<Lane>,
}

impl Merge {
    /// A merge of `lanes` (each must deliver or be [`Merge::finish`]ed before records of
    /// the others pass it).
    pub fn new(lanes: impl IntoIterator<Item = Lane>) -> Self {
        Self {
            lanes: lanes.into_iter().map(|l| (l, VecDeque::new())).collect(),
            finished: std::collections::BTreeSet::new(),
        }
    }

    /// Adds a record read from `lane` (after all earlier ones of that lane).
    pub fn push(&mut self, lane: Lane, time: Option<i64>, payload: Vec<u8>) {
        self.lanes
            .entry(lane)
            .or_default()
            .push_back((time.unwrap_or(i64::MIN), payload));
    }

    /// `lane` delivers nothing more.
    pub fn finish(&mut self, lane: Lane) {
        self.finished.insert(lane);
    }

    /// The next record in event-time order, if it can be known yet: `None` while a lane
    /// that is not finished has nothing buffered, or when everything was handed out.
    pub fn pop(&mut self) -> Option<(Lane, Vec<u8>)> {
        let mut best: Option<(i64, Lane)> = None;
        for (&lane, queue) in &self.lanes {
            match queue.front() {
                Some(&(time, _)) => {
                    if best.is_none_or(|b| (time, lane) < b) {
                        best = Some((time, lane));
                    }
                }
                None if self.finished.contains(&lane) => {}
                None => return None,
            }
        }
        let (_, lane) = best?;
        self.lanes
            .get_mut(&lane)
            .and_then(VecDeque::pop_front)
            .map(|(_, payload)| (lane, payload))
    }

    /// Records buffered for `lane`.
    pub fn buffered(&self, lane: Lane) -> usize {
        self.lanes.get(&lane).map_or(0, VecDeque::len)
    }

    /// Whether every lane is finished and handed out.
    pub fn is_done(&self) -> bool {
        self.lanes
            .iter()
            .all(|(lane, queue)| queue.is_empty() && self.finished.contains(lane))
    }

    /// Lanes holding more than `limit` records while another unfinished lane holds none:
    /// the reader pauses them until the merge catches up ([`Merge::behind`]).
    pub fn ahead(&self, limit: usize) -> Vec<Lane> {
        let starving = self
            .lanes
            .iter()
            .any(|(lane, q)| q.is_empty() && !self.finished.contains(lane));
        if !starving {
            return Vec::new();
        }
        self.lanes
            .iter()
            .filter(|(_, q)| q.len() > limit)
            .map(|(&lane, _)| lane)
            .collect()
    }

    /// Lanes at or below `limit` records: a paused one may resume.
    pub fn behind(&self, limit: usize) -> Vec<Lane> {
        self.lanes
            .iter()
            .filter(|(_, q)| q.len() <= limit)
            .map(|(&lane, _)| lane)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(merge: &mut Merge) -> Vec<String> {
        std::iter::from_fn(|| merge.pop())
            .map(|(_, p)| String::from_utf8(p).expect("utf-8"))
            .collect()
    }

    #[test]
    fn heads_come_out_oldest_first_and_a_lane_keeps_its_own_order() {
        let mut merge = Merge::new([(0, 0), (1, 0)]);
        merge.push((1, 0), Some(10), b"e10".to_vec());
        merge.push((1, 0), Some(5), b"e5-late".to_vec());
        merge.push((1, 0), Some(30), b"e30".to_vec());
        merge.push((0, 0), Some(10), b"i10".to_vec());
        merge.push((0, 0), Some(20), b"i20".to_vec());
        merge.finish((0, 0));
        merge.finish((1, 0));
        // Equal times: impressions (source 0) first; e5 stays behind e10 in its lane.
        assert_eq!(drain(&mut merge), ["i10", "e10", "e5-late", "i20", "e30"]);
        assert!(merge.is_done());
    }

    #[test]
    fn nothing_passes_a_lane_that_has_not_delivered_yet() {
        let mut merge = Merge::new([(0, 0), (1, 0), (1, 1)]);
        merge.push((1, 0), Some(50), b"e50".to_vec());
        merge.push((0, 0), Some(40), b"i40".to_vec());
        assert_eq!(
            merge.pop(),
            None,
            "lane (1, 1) may still hold something older"
        );
        assert_eq!(merge.ahead(0), vec![(0, 0), (1, 0)]);
        merge.push((1, 1), Some(45), b"e45".to_vec());
        assert!(merge.ahead(0).is_empty());
        assert_eq!(
            drain(&mut merge),
            ["i40"],
            "then (0, 0) is empty, unfinished"
        );
        merge.finish((0, 0));
        assert_eq!(
            drain(&mut merge),
            ["e45"],
            "then (1, 1) is empty, unfinished"
        );
        merge.finish((1, 1));
        assert_eq!(drain(&mut merge), ["e50"]);
        assert!(!merge.is_done(), "(1, 0) is not finished");
        merge.finish((1, 0));
        assert!(merge.is_done());
    }

    #[test]
    fn records_without_a_time_go_out_as_soon_as_they_are_heads() {
        let mut merge = Merge::new([(0, 0), (1, 0)]);
        merge.push((1, 0), Some(10), b"e10".to_vec());
        merge.push((1, 0), None, b"garbage".to_vec());
        merge.push((0, 0), Some(1), b"i1".to_vec());
        merge.finish((0, 0));
        merge.finish((1, 0));
        assert_eq!(drain(&mut merge), ["i1", "e10", "garbage"]);
        assert_eq!(merge.behind(0).len(), 2);
        assert_eq!(merge.buffered((1, 0)), 0);
    }
}
