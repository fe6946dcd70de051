//! The isolate's open batches (phase 7, record), bounded: at most
//! `max_open` batches (one per subject, one per hub shard) and `max_queued`
//! items in all. What would go past a bound is never dropped: its batch is
//! handed back to be flushed at once (more object calls under a flood of new
//! subjects, but nothing lost and memory bounded). Pure: the glue in
//! `edge/record.rs` keeps one of these per isolate and owns the timers.

use std::collections::HashMap;
use std::hash::Hash;

/// What a batch holds.
pub trait BatchItems {
    /// Items counted against the bounds.
    fn count(&self) -> usize;
}

pub struct Batch<I> {
    pub id: u64,
    pub items: I,
    /// The batch waits the short interval (not calm, or a hub batch).
    pub urgent: bool,
}

/// What `enqueue` asks the caller to do.
#[derive(Debug, PartialEq)]
pub enum Enqueued<I> {
    /// Nothing more (the batch's timer is running).
    Waiting,
    /// Start a timer for batch `id` (`urgent`: the short interval).
    Timer { id: u64, urgent: bool },
    /// Flush these items now: the batch is full (`FLUSH_MAX_BATCH`), or
    /// keeping it would pass a bound.
    Flush(I),
}

pub struct Batches<K, I> {
    open: HashMap<K, Batch<I>>,
    next_id: u64,
    queued: usize,
    max_open: usize,
    max_queued: usize,
    /// Batches flushed early because of a bound (not because they were full).
    pub early_flushes: u64,
}

impl<K: Eq + Hash + Clone, I: BatchItems> Batches<K, I> {
    pub fn new(max_open: usize, max_queued: usize) -> Self {
        Batches { open: HashMap::new(), next_id: 0, queued: 0, max_open, max_queued, early_flushes: 0 }
    }

    /// Items waiting in all open batches.
    pub fn queued(&self) -> usize {
        self.queued
    }

    pub fn open_batches(&self) -> usize {
        self.open.len()
    }

    pub fn get_mut(&mut self, key: &K) -> Option<&mut I> {
        self.open.get_mut(key).map(|b| &mut b.items)
    }

    /// Adds to `key`'s open batch (`add` gets `Some` to append to it, or
    /// `None` and returns the items of a new batch).
    pub fn enqueue(
        &mut self,
        key: K,
        max_items: usize,
        urgent: bool,
        add: impl FnOnce(Option<&mut I>) -> Option<I>,
    ) -> Enqueued<I> {
        let mut outcome = Enqueued::Waiting;
        match self.open.get_mut(&key) {
            Some(b) => {
                let before = b.items.count();
                let _ = add(Some(&mut b.items));
                self.queued = self.queued.saturating_sub(before).saturating_add(b.items.count());
                if urgent && !b.urgent {
                    b.urgent = true;
                    outcome = Enqueued::Timer { id: b.id, urgent: true };
                }
            }
            None => {
                let Some(items) = add(None) else { return Enqueued::Waiting };
                if self.open.len() >= self.max_open {
                    // No room for another open batch: send this one alone now.
                    self.early_flushes += 1;
                    return Enqueued::Flush(items);
                }
                self.next_id = self.next_id.wrapping_add(1);
                let id = self.next_id;
                self.queued = self.queued.saturating_add(items.count());
                self.open.insert(key.clone(), Batch { id, items, urgent });
                outcome = Enqueued::Timer { id, urgent };
            }
        }
        let full = self.open.get(&key).is_some_and(|b| b.items.count() >= max_items);
        let over = self.queued > self.max_queued;
        if full || over {
            if let Some(b) = self.take(&key) {
                if !full {
                    self.early_flushes += 1;
                }
                return Enqueued::Flush(b.items);
            }
        }
        outcome
    }

    /// Removes `key`'s batch if it is still batch `id` (its timer fired).
    pub fn take_if(&mut self, key: &K, id: u64) -> Option<I> {
        if self.open.get(key).is_some_and(|b| b.id == id) {
            self.take(key).map(|b| b.items)
        } else {
            None
        }
    }

    fn take(&mut self, key: &K) -> Option<Batch<I>> {
        let b = self.open.remove(key)?;
        self.queued = self.queued.saturating_sub(b.items.count());
        Some(b)
    }

    /// Re-counts a batch whose items changed outside `enqueue` (`get_mut`).
    pub fn recount(&mut self) {
        self.queued = self.open.values().map(|b| b.items.count()).sum();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    impl BatchItems for Vec<u32> {
        fn count(&self) -> usize {
            self.len()
        }
    }

    fn push(b: &mut Batches<u32, Vec<u32>>, key: u32, item: u32, max: usize) -> Enqueued<Vec<u32>> {
        b.enqueue(key, max, true, |open| match open {
            Some(v) => {
                v.push(item);
                None
            }
            None => Some(vec![item]),
        })
    }

    #[test]
    fn opens_joins_and_flushes_when_full() {
        let mut b = Batches::new(10, 1000);
        assert_eq!(push(&mut b, 1, 0, 3), Enqueued::Timer { id: 1, urgent: true });
        assert_eq!(push(&mut b, 1, 1, 3), Enqueued::Waiting);
        assert_eq!(push(&mut b, 1, 2, 3), Enqueued::Flush(vec![0, 1, 2]));
        assert_eq!((b.open_batches(), b.queued(), b.early_flushes), (0, 0, 0));
        // A calm batch turning urgent gets the short timer.
        let calm = b.enqueue(2, 64, false, |_| Some(vec![7]));
        assert_eq!(calm, Enqueued::Timer { id: 2, urgent: false });
        assert_eq!(push(&mut b, 2, 8, 64), Enqueued::Timer { id: 2, urgent: true });
        assert_eq!(b.take_if(&2, 1), None, "another batch's timer");
        assert_eq!(b.take_if(&2, 2), Some(vec![7, 8]));
        assert_eq!(b.queued(), 0);
    }

    #[test]
    fn a_flood_of_new_subjects_stays_bounded_and_loses_nothing() {
        let (max_open, max_queued) = (100, 1000);
        let mut b = Batches::new(max_open, max_queued);
        let mut flushed = 0usize;
        let mut timers = Vec::new();
        for i in 0..100_000u32 {
            // Many subjects, a few requests each: more keys than the bound.
            match push(&mut b, i % 5000, i, 64) {
                Enqueued::Flush(items) => flushed += items.len(),
                Enqueued::Timer { id, .. } => timers.push((i % 5000, id)),
                Enqueued::Waiting => {}
            }
            assert!(b.open_batches() <= max_open);
            assert!(b.queued() <= max_queued);
        }
        assert!(b.early_flushes > 0, "the bound was reached");
        for (key, id) in timers {
            if let Some(items) = b.take_if(&key, id) {
                flushed += items.len();
            }
        }
        assert_eq!(flushed, 100_000, "every item was handed out for a flush");
        assert_eq!((b.open_batches(), b.queued()), (0, 0));
    }

    #[test]
    fn the_item_bound_flushes_the_batch_that_crossed_it() {
        let mut b = Batches::new(1000, 10);
        for k in 0..10 {
            assert!(matches!(push(&mut b, k, k, 64), Enqueued::Timer { .. }));
        }
        match push(&mut b, 3, 99, 64) {
            Enqueued::Flush(items) => assert_eq!(items, vec![3, 99]),
            other => panic!("{other:?}"),
        }
        assert_eq!((b.queued(), b.early_flushes), (9, 1));
    }
}
