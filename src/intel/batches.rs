//! The isolate's open batches (phase 7, record), bounded: at most
//! `max_open` batches (one per subject), `max_queued`
//! items and `max_bytes` estimated bytes in all (`BatchItems::bytes`: a
//! request path can be kilobytes long, so a count of items alone does not
//! bound memory). What would go past a bound is never dropped: its batch is
//! handed back to be flushed at once (more object calls under a flood of new
//! subjects, but nothing lost and memory bounded). Pure: the glue in
//! `edge/record.rs` keeps one of these per isolate and owns the timers.

use std::collections::HashMap;
use std::hash::Hash;

/// What a batch holds.
pub trait BatchItems {
    /// Items counted against the bounds.
    fn count(&self) -> usize;
    /// An estimate of the heap the items hold, counted against `max_bytes`.
    /// The default charges `DEFAULT_ITEM_BYTES` per item; items with
    /// variable-length text estimate their own.
    fn bytes(&self) -> usize {
        self.count().saturating_mul(DEFAULT_ITEM_BYTES)
    }
}

/// What an item is charged by default (`BatchItems::bytes`).
pub const DEFAULT_ITEM_BYTES: usize = 256;
/// The byte bound unless `with_max_bytes` sets another: 16 MiB, an eighth
/// of an isolate's 128 MB.
pub const DEFAULT_MAX_BYTES: usize = 16 << 20;

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
    /// Estimated bytes in all open batches (`BatchItems::bytes`).
    queued_bytes: usize,
    max_open: usize,
    max_queued: usize,
    max_bytes: usize,
    /// Batches flushed early because of a bound (not because they were full).
    pub early_flushes: u64,
}

impl<K: Eq + Hash + Clone, I: BatchItems> Batches<K, I> {
    pub fn new(max_open: usize, max_queued: usize) -> Self {
        Batches {
            open: HashMap::new(),
            next_id: 0,
            queued: 0,
            queued_bytes: 0,
            max_open,
            max_queued,
            max_bytes: DEFAULT_MAX_BYTES,
            early_flushes: 0,
        }
    }

    /// The bound on estimated bytes in all open batches.
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Items waiting in all open batches.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Estimated bytes waiting in all open batches.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
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
                let (before, before_bytes) = (b.items.count(), b.items.bytes());
                let _ = add(Some(&mut b.items));
                self.queued = self.queued.saturating_sub(before).saturating_add(b.items.count());
                self.queued_bytes = self.queued_bytes.saturating_sub(before_bytes).saturating_add(b.items.bytes());
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
                self.queued_bytes = self.queued_bytes.saturating_add(items.bytes());
                self.open.insert(key.clone(), Batch { id, items, urgent });
                outcome = Enqueued::Timer { id, urgent };
            }
        }
        let full = self.open.get(&key).is_some_and(|b| b.items.count() >= max_items);
        let over = self.queued > self.max_queued || self.queued_bytes > self.max_bytes;
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
        self.queued_bytes = self.queued_bytes.saturating_sub(b.items.bytes());
        Some(b)
    }

    /// Re-counts a batch whose items changed outside `enqueue` (`get_mut`).
    pub fn recount(&mut self) {
        self.queued = self.open.values().map(|b| b.items.count()).sum();
        self.queued_bytes = self.open.values().map(|b| b.items.bytes()).sum();
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

    /// Items whose size is their text's length (a request path, say).
    #[derive(Debug, PartialEq)]
    struct Texts(Vec<String>);

    impl BatchItems for Texts {
        fn count(&self) -> usize {
            self.0.len()
        }
        fn bytes(&self) -> usize {
            self.0.iter().map(String::len).sum()
        }
    }

    fn push_text(b: &mut Batches<u32, Texts>, key: u32, text: String) -> Enqueued<Texts> {
        b.enqueue(key, 64, true, |open| match open {
            Some(t) => {
                t.0.push(text);
                None
            }
            None => Some(Texts(vec![text])),
        })
    }

    #[test]
    fn the_byte_bound_flushes_early_and_loses_nothing() {
        // Few items, but long ones: the item bound alone would keep them all.
        let max_bytes = 100_000;
        let mut b = Batches::new(1000, 10_000).with_max_bytes(max_bytes);
        let (mut sent, mut timers) = (0usize, Vec::new());
        for i in 0..2000u32 {
            let text = "p".repeat(1 + (i as usize * 37) % 8000);
            match push_text(&mut b, i % 300, text) {
                Enqueued::Flush(t) => sent += t.0.len(),
                Enqueued::Timer { id, .. } => timers.push((i % 300, id)),
                Enqueued::Waiting => {}
            }
            assert!(b.queued_bytes() <= max_bytes, "{} bytes queued", b.queued_bytes());
            assert!(b.queued() < 2000);
        }
        assert!(b.early_flushes > 0, "the byte bound was reached");
        for (key, id) in timers {
            if let Some(t) = b.take_if(&key, id) {
                sent += t.0.len();
            }
        }
        assert_eq!(sent, 2000, "every item was handed out for a flush");
        assert_eq!((b.queued(), b.queued_bytes()), (0, 0));
    }

    #[test]
    fn the_default_charges_each_item() {
        let mut b: Batches<u32, Vec<u32>> = Batches::new(10, 1000);
        push(&mut b, 1, 0, 64);
        push(&mut b, 1, 1, 64);
        assert_eq!(b.queued_bytes(), 2 * DEFAULT_ITEM_BYTES);
        b.recount();
        assert_eq!(b.queued_bytes(), 2 * DEFAULT_ITEM_BYTES);
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
