//! Resting: when nothing has arrived for a while, the bridge stops fetching and instead asks
//! the broker for its partitions' end offsets now and then, fetching again once one moves.
//!
//! A fetch is cheap for Apache Kafka, which holds an empty one until data arrives. The local
//! broker reads every partition on every fetch and then waits `fetch.wait.max.ms` whatever
//! it found: a bridge fetching 27 partitions every 10 ms kept it busy at a full core while
//! nothing happened. One request for the end offsets every `consumer.rest_check_ms` costs a
//! small fraction of that; the price is that the first event after a quiet spell waits up to
//! that long before it is fetched.
//!
//! The bridge rests only when it has caught up: the ends it asks for must equal what it has
//! received. An end past that can be a record on its way (a fetch in flight) or one that is
//! never delivered (a transaction's commit marker). Such a gap must stand still for a whole
//! check while fetching before the bridge rests, and then it wakes once more after
//! [`PEEK_AFTER_CHECKS`] checks to fetch whatever it was: a gap that still yields nothing is
//! then known, and later rests at the same ends need no peek.
//!
//! Anything unexpected wakes the bridge: an event, a consumer error, a failed check, a
//! changed assignment. Waking is always safe; resting wrongly would only delay events.

use std::collections::BTreeMap;

/// A partition: topic and number.
pub type Partition = (String, i32);
/// Offsets per partition: ends (the offset the next record will get) or what was received.
pub type Offsets = BTreeMap<Partition, i64>;

/// A rest with a gap wakes after this many checks to fetch what the gap holds.
pub const PEEK_AFTER_CHECKS: u32 = 10;

/// What the bridge should do after a look at the ends while it fetches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Keep fetching.
    Fetch,
    /// Pause every partition and watch `ends`.
    Rest,
}

/// What the bridge should do after a check while it rests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Nothing moved.
    Rest,
    /// Resume fetching: something moved, or the check failed.
    Wake,
    /// Resume fetching to see what a gap holds.
    Peek,
}

/// The resting state machine, free of Kafka so its rules can be tested alone.
#[derive(Debug, Default)]
pub struct Rest {
    /// Ends seen with a gap on the last look while fetching, to be confirmed by the next.
    pending: Option<Offsets>,
    /// Ends whose gaps a peek found empty: resting at them needs no further peek.
    known: Option<Offsets>,
    /// While resting: the ends it rests at and the checks left before a peek (None: no peek).
    resting: Option<(Offsets, Option<u32>)>,
}

impl Rest {
    pub fn is_resting(&self) -> bool {
        self.resting.is_some()
    }

    /// Forgets a pending gap: an event arrived or the bridge woke.
    pub fn activity(&mut self) {
        self.pending = None;
        self.resting = None;
    }

    /// A look at the ends after a quiet spell, while fetching, with `received` the offset
    /// after the last event received per partition (absent: none since assignment).
    pub fn look(&mut self, ends: Offsets, received: &Offsets) -> Decision {
        let gap = ends
            .iter()
            .any(|(partition, end)| *end > received.get(partition).copied().unwrap_or(0));
        if !gap || self.known.as_ref() == Some(&ends) {
            self.pending = None;
            self.resting = Some((ends, None));
            return Decision::Rest;
        }
        if self.pending.as_ref() == Some(&ends) {
            self.pending = None;
            self.resting = Some((ends, Some(PEEK_AFTER_CHECKS)));
            return Decision::Rest;
        }
        self.pending = Some(ends);
        Decision::Fetch
    }

    /// A check while resting: `ends` as the broker gave them, or None if the check failed.
    pub fn check(&mut self, ends: Option<Offsets>) -> Check {
        let Some((at, peek)) = self.resting.as_mut() else {
            return Check::Wake;
        };
        if ends.as_ref() != Some(at) {
            self.resting = None;
            return Check::Wake;
        }
        match peek {
            Some(0) => {
                self.known = self.resting.take().map(|(at, _)| at);
                Check::Peek
            }
            Some(left) => {
                *left -= 1;
                Check::Rest
            }
            None => Check::Rest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(list: &[(&str, i32, i64)]) -> Offsets {
        list.iter()
            .map(|(topic, partition, offset)| (((*topic).to_owned(), *partition), *offset))
            .collect()
    }

    #[test]
    fn rests_at_once_when_everything_was_received_and_wakes_when_an_end_moves() {
        let mut rest = Rest::default();
        let ends = offsets(&[("a", 0, 5), ("a", 1, 0)]);
        assert_eq!(
            rest.look(ends.clone(), &offsets(&[("a", 0, 5)])),
            Decision::Rest
        );
        assert!(rest.is_resting());
        for _ in 0..50 {
            assert_eq!(rest.check(Some(ends.clone())), Check::Rest);
        }
        assert_eq!(
            rest.check(Some(offsets(&[("a", 0, 5), ("a", 1, 1)]))),
            Check::Wake
        );
        assert!(!rest.is_resting());
    }

    #[test]
    fn a_failed_check_or_a_changed_assignment_wakes() {
        let mut rest = Rest::default();
        let ends = offsets(&[("a", 0, 5)]);
        assert_eq!(rest.look(ends.clone(), &ends), Decision::Rest);
        assert_eq!(rest.check(None), Check::Wake);
        assert_eq!(rest.look(ends.clone(), &ends), Decision::Rest);
        assert_eq!(
            rest.check(Some(offsets(&[("a", 0, 5), ("b", 0, 0)]))),
            Check::Wake
        );
        assert_eq!(rest.check(Some(ends)), Check::Wake, "not resting any more");
    }

    #[test]
    fn a_gap_must_stand_still_for_a_look_then_is_peeked_at_once() {
        let mut rest = Rest::default();
        let received = offsets(&[("a", 0, 4)]);
        let ends = offsets(&[("a", 0, 5)]);
        assert_eq!(rest.look(ends.clone(), &received), Decision::Fetch);
        // The end moved: still a fresh gap.
        let moved = offsets(&[("a", 0, 6)]);
        assert_eq!(rest.look(moved.clone(), &received), Decision::Fetch);
        assert_eq!(rest.look(moved.clone(), &received), Decision::Rest);
        for _ in 0..PEEK_AFTER_CHECKS {
            assert_eq!(rest.check(Some(moved.clone())), Check::Rest);
        }
        assert_eq!(rest.check(Some(moved.clone())), Check::Peek);
        assert!(!rest.is_resting());
        // The peek yielded nothing: the same gap is known now and rests without a peek.
        rest.activity();
        assert_eq!(rest.look(moved.clone(), &received), Decision::Rest);
        for _ in 0..3 * PEEK_AFTER_CHECKS {
            assert_eq!(rest.check(Some(moved.clone())), Check::Rest);
        }
        // A new gap is not known.
        rest.activity();
        assert_eq!(rest.look(ends, &received), Decision::Fetch);
    }

    #[test]
    fn activity_forgets_a_pending_gap() {
        let mut rest = Rest::default();
        let received = offsets(&[("a", 0, 4)]);
        let ends = offsets(&[("a", 0, 5)]);
        assert_eq!(rest.look(ends.clone(), &received), Decision::Fetch);
        rest.activity();
        assert_eq!(rest.look(ends, &received), Decision::Fetch);
    }

    #[test]
    fn a_partition_never_received_from_is_a_gap_unless_empty() {
        let mut rest = Rest::default();
        assert_eq!(
            rest.look(offsets(&[("a", 0, 0)]), &Offsets::new()),
            Decision::Rest
        );
        let mut rest = Rest::default();
        assert_eq!(
            rest.look(offsets(&[("a", 0, 3)]), &Offsets::new()),
            Decision::Fetch
        );
    }
}
