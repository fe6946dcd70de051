//! The global streams' fan-out, pure: what the stream root and its relays
//! (`objects::stream::StreamObject`, binding `STREAMS`) say to each other and
//! decide, tested natively.
//!
//! - The root (object `root`) receives every profile event (`StreamOp::Publish`:
//!   from the aggregators once per forward period; straight from an isolate
//!   in consistent mode, for a report that failed twice or before it knows
//!   its aggregator; from the events API and profile objects) and the
//!   analytics hub's per-tick texts (`StreamOp::Broadcast`: insights, site
//!   alerts, metrics). It buffers them (`RootBuffer`) and publishes one
//!   `Delivery` per batch, one call per relay that has subscribers: a
//!   message after a quiet interval at once (a lone event waits for no
//!   batch), the ones within `ROOT_FLUSH_MS` of the last publication
//!   `ROOT_FLUSH_MS` after it, and a batch of `ROOT_BATCH_MAX` messages at
//!   once. It forwards the published updates to the hub for counting at most
//!   every `ROOT_COUNT_EVERY_MS` (`COUNT_MAX` per call), and spends stream
//!   tickets (single use across relays).
//! - A relay (object `relay:<n>`) holds at most `RELAY_MAX_SOCKETS` sockets,
//!   applies each subscriber's filter itself and registers with the root
//!   when its first socket opens, deregisters when its last closes
//!   (`Membership`: ordered by the relay's sequence number, so a late
//!   message never undoes a newer one).
//! - The edge spreads new connections over `relay_count` relays, from a
//!   random one onwards (`relay_order`), trying the next when one is full.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::protocol::{AlertNotice, Update};

/// The root object's name.
pub const ROOT: &str = "root";
const RELAY_PREFIX: &str = "relay:";
/// How long the root gathers messages before publishing them (ms).
pub const ROOT_FLUSH_MS: u64 = 100;
/// The root forwards the updates it published to the hub for counting at
/// most this often (ms): the hub's request rate for them stays ~1/s however
/// many events flow.
pub const ROOT_COUNT_EVERY_MS: u64 = 1_000;
/// Messages in a batch that make the root publish at once.
pub const ROOT_BATCH_MAX: usize = 256;
/// Messages in one `Deliver` call (a publication sends at most this many; the
/// rest go in the next publication, at once): a relay's request stays small
/// however much piled up.
pub const DELIVER_MAX: usize = 512;
/// Messages the root holds at most while its publications fall behind (the
/// relays slow or failing): past it the oldest are dropped and counted
/// (`RootBuffer::dropped`). ~5 MB at ~500 bytes a message.
pub const ROOT_PENDING_MAX: usize = 10_000;
/// How long the root waits for one relay's answer to a `Deliver` (ms): a
/// relay that does not answer in time is skipped for that batch and counted,
/// so a publication never waits longer than this on the relays.
pub const RELAY_TIMEOUT_MS: u64 = 2_000;
/// Updates the root keeps for the hub's count while the hub does not answer:
/// past it the oldest are dropped and counted (`Counting::dropped`).
pub const COUNT_PENDING_MAX: usize = 10_000;
/// Updates in one count forward to the hub (`HubOp::Publish`).
pub const COUNT_MAX: usize = 500;
/// `ROOT_COUNT_EVERY_MS` as the root's clock arithmetic uses it (sooner
/// when `COUNT_MAX` wait).
pub const COUNT_EVERY_MS: f64 = ROOT_COUNT_EVERY_MS as f64;

/// The object name of relay `n`.
pub fn relay_name(n: u32) -> String {
    format!("{RELAY_PREFIX}{n}")
}

/// The index of a relay's object name (`relay_name`'s inverse).
pub fn relay_index(name: &str) -> Option<u32> {
    let n = name.strip_prefix(RELAY_PREFIX)?;
    (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).then(|| n.parse().ok()).flatten()
}

/// Relays needed for `max_clients` sockets at `per_relay` each (at least one).
pub fn relay_count(max_clients: usize, per_relay: usize) -> u32 {
    let per = per_relay.max(1);
    u32::try_from(max_clients.div_ceil(per).max(1)).unwrap_or(u32::MAX)
}

/// Sockets one relay accepts: `MAX_STREAM_CLIENTS` split over the relays,
/// never more than `RELAY_MAX_SOCKETS` (so the whole stream holds
/// `MAX_STREAM_CLIENTS`, rounded up to a multiple of the relays).
pub fn relay_capacity(max_clients: usize, per_relay: usize) -> usize {
    let n = relay_count(max_clients, per_relay) as usize;
    max_clients.div_ceil(n.max(1)).min(per_relay.max(1))
}

/// The relays a new connection tries, in order: all `count` of them,
/// starting at `start` (random: connections spread evenly) and wrapping.
pub fn relay_order(start: u32, count: u32) -> impl Iterator<Item = u32> {
    let count = count.max(1);
    (0..count).map(move |i| (start % count + i) % count)
}

/// A request to a `StreamObject` (the root or a relay).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamOp {
    /// Profile events for the intelligence stream (to the root).
    Publish {
        #[serde(default)]
        updates: Vec<Update>,
        #[serde(default)]
        alerts: Vec<AlertNotice>,
    },
    /// The analytics hub's tick: texts for every socket of each stream (to
    /// the root). Answers `Clients`.
    Broadcast {
        #[serde(default)]
        intel: Vec<String>,
        #[serde(default)]
        perf: Vec<String>,
    },
    /// Spends a verified stream ticket's nonce (to the root): answers
    /// `wire::Spent`.
    SpendTicket { nonce: String, expires: f64 },
    /// A relay's first socket opened (`open`) or its last closed; `seq`
    /// orders one relay's changes (to the root).
    Register { relay: u32, seq: u64, open: bool },
    /// A batch for a relay's sockets; answers `Delivered`.
    Deliver(Delivery),
}

/// One batch of the root: events (filtered per subscriber at the relay) and
/// whole-stream texts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub updates: Vec<Update>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<AlertNotice>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub intel: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub perf: Vec<String>,
}

impl Delivery {
    pub fn len(&self) -> usize {
        self.updates.len() + self.alerts.len() + self.intel.len() + self.perf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn append(&mut self, mut o: Delivery) {
        self.updates.append(&mut o.updates);
        self.alerts.append(&mut o.alerts);
        self.intel.append(&mut o.intel);
        self.perf.append(&mut o.perf);
    }

    /// Drops the oldest messages until at most `max` are left: events first
    /// (the bulk), then alerts, then the tick's texts. Returns how many went.
    fn drop_oldest(&mut self, max: usize) -> usize {
        let mut excess = self.len().saturating_sub(max);
        let dropped = excess;
        excess -= drain_front(&mut self.updates, excess);
        excess -= drain_front(&mut self.alerts, excess);
        excess -= drain_front(&mut self.intel, excess);
        drain_front(&mut self.perf, excess);
        dropped
    }

    /// The first `max` messages (each kind in order; the tick's texts first,
    /// they are few), leaving the rest.
    fn split_front(&mut self, max: usize) -> Delivery {
        let mut left = max;
        Delivery {
            intel: split_front(&mut self.intel, &mut left),
            perf: split_front(&mut self.perf, &mut left),
            alerts: split_front(&mut self.alerts, &mut left),
            updates: split_front(&mut self.updates, &mut left),
        }
    }
}

/// The first `*left` items of `v` (at most), leaving the rest in `v`.
fn split_front<T>(v: &mut Vec<T>, left: &mut usize) -> Vec<T> {
    let n = (*left).min(v.len());
    *left -= n;
    let rest = v.split_off(n);
    std::mem::replace(v, rest)
}

/// Removes up to `n` items from the front of `v`; returns how many.
fn drain_front<T>(v: &mut Vec<T>, n: usize) -> usize {
    let n = n.min(v.len());
    v.drain(..n);
    n
}

/// A relay's answer to `Deliver`: its sockets now, and its latest
/// registration number (the root drops a relay with no sockets only when no
/// newer registration is on its way: `Membership::delivered`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Delivered {
    pub seq: u64,
    pub intel: usize,
    pub perf: usize,
    pub sent: usize,
    /// Upgrades registering now (their sockets not accepted yet: the relay
    /// is not empty, whatever its count says).
    #[serde(default)]
    pub opening: usize,
}

/// The root's count of the streams' sockets (as the relays last reported),
/// and what its bounds cost since it started (memory only: a restart starts
/// them at 0): messages dropped from its buffer (`ROOT_PENDING_MAX`),
/// deliveries a relay did not answer in time (`RELAY_TIMEOUT_MS`, the batch
/// skipped for that relay), updates dropped before the hub counted them
/// (`COUNT_PENDING_MAX`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Clients {
    pub intel: usize,
    pub total: usize,
    #[serde(default)]
    pub dropped: u64,
    #[serde(default)]
    pub late_deliveries: u64,
    #[serde(default)]
    pub uncounted_dropped: u64,
}

/// What the root does after a push to its buffer.
#[derive(Debug, PartialEq)]
pub enum Pushed {
    /// Nothing yet: a publication is already scheduled.
    Waiting,
    /// Schedule a publication in this many ms (0: now).
    Schedule(u64),
}

/// The root's buffer between publications (memory only: a restart loses at
/// most one batch interval of messages, never a registration). A throttle,
/// not a debounce: a message after a quiet interval is published at once,
/// the ones that come within `ROOT_FLUSH_MS` of a publication wait for the
/// next (so under load the root publishes every `ROOT_FLUSH_MS`, and a lone
/// event pays no batching delay); a batch of `ROOT_BATCH_MAX` goes at once.
/// It holds at most `ROOT_PENDING_MAX` messages (the oldest go first,
/// counted in `dropped`), and a publication takes at most `DELIVER_MAX`.
#[derive(Debug, Default)]
pub struct RootBuffer {
    pending: Delivery,
    scheduled: bool,
    urgent: bool,
    last_published: f64,
    /// Messages dropped by the cap since this buffer was made.
    pub dropped: u64,
}

impl RootBuffer {
    pub fn push(&mut self, d: Delivery, now: f64) -> Pushed {
        if d.is_empty() {
            return Pushed::Waiting;
        }
        self.pending.append(d);
        self.dropped += self.pending.drop_oldest(ROOT_PENDING_MAX) as u64;
        if self.pending.len() >= ROOT_BATCH_MAX && !self.urgent {
            self.urgent = true;
            self.scheduled = true;
            return Pushed::Schedule(0);
        }
        if self.scheduled {
            return Pushed::Waiting;
        }
        self.scheduled = true;
        Pushed::Schedule(self.wait(now))
    }

    /// How long the pending messages wait from `now`: until `ROOT_FLUSH_MS`
    /// after the last publication, none when a large batch waits.
    pub fn wait(&self, now: f64) -> u64 {
        if self.pending.len() >= ROOT_BATCH_MAX {
            return 0;
        }
        let due = self.last_published + ROOT_FLUSH_MS as f64 - now;
        due.clamp(0.0, ROOT_FLUSH_MS as f64) as u64
    }

    /// The oldest `DELIVER_MAX` pending messages, for one publication at
    /// `now`; the next push schedules again (and the caller schedules what
    /// is left).
    pub fn take(&mut self, now: f64) -> Delivery {
        self.scheduled = false;
        self.urgent = false;
        self.last_published = now;
        self.pending.split_front(DELIVER_MAX)
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// The updates the root has published and the hub has not yet counted:
/// forwarded at most every `COUNT_EVERY_MS` (or when `COUNT_MAX` wait), at
/// most `COUNT_MAX` a call; at most `COUNT_PENDING_MAX` kept while the hub
/// fails (the oldest dropped, counted in `dropped`).
#[derive(Debug)]
pub struct Counting<T> {
    pending: std::collections::VecDeque<T>,
    counted_at: f64,
    pub dropped: u64,
}

impl<T> Default for Counting<T> {
    fn default() -> Self {
        Counting { pending: std::collections::VecDeque::new(), counted_at: 0.0, dropped: 0 }
    }
}

impl<T> Counting<T> {
    pub fn add(&mut self, items: impl IntoIterator<Item = T>) {
        self.pending.extend(items);
        self.cap();
    }

    fn cap(&mut self) {
        let excess = self.pending.len().saturating_sub(COUNT_PENDING_MAX);
        self.pending.drain(..excess);
        self.dropped += excess as u64;
    }

    /// The next forward at `now`, if one is due (at most `COUNT_MAX`, oldest first).
    pub fn due(&mut self, now: f64) -> Vec<T> {
        let due = now - self.counted_at >= COUNT_EVERY_MS || self.pending.len() >= COUNT_MAX;
        if !due || self.pending.is_empty() {
            return Vec::new();
        }
        self.counted_at = now;
        let n = self.pending.len().min(COUNT_MAX);
        self.pending.drain(..n).collect()
    }

    /// A forward that failed goes back in front (counted with the next).
    pub fn failed(&mut self, items: Vec<T>) {
        for item in items.into_iter().rev() {
            self.pending.push_front(item);
        }
        self.cap();
    }

    /// When the next forward is due (ms from `now`), if anything waits.
    pub fn next_in(&self, now: f64) -> Option<u64> {
        (!self.pending.is_empty()).then(|| (self.counted_at + COUNT_EVERY_MS - now).clamp(1.0, COUNT_EVERY_MS) as u64)
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// The relays registered with the root: per relay its newest registration
/// number and whether it has sockets. Kept in the root's storage (a restart
/// loses none); memory holds a copy.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Membership {
    pub relays: BTreeMap<u32, (u64, bool)>,
}

impl Membership {
    /// Applies a relay's change unless a newer one was already seen; true
    /// when it changed something (to store).
    pub fn register(&mut self, relay: u32, seq: u64, open: bool) -> bool {
        match self.relays.get(&relay) {
            Some((s, _)) if *s >= seq => false,
            _ => {
                self.relays.insert(relay, (seq, open));
                true
            }
        }
    }

    /// A relay answered a delivery with no sockets and no registration newer
    /// than the one kept: it is closed (its last close went unreported).
    /// True when that changed something.
    pub fn delivered(&mut self, relay: u32, d: &Delivered) -> bool {
        if d.intel + d.perf + d.opening > 0 {
            return false;
        }
        match self.relays.get(&relay) {
            Some((s, true)) if *s <= d.seq => {
                self.relays.insert(relay, (d.seq, false));
                true
            }
            _ => false,
        }
    }

    /// The relays to publish to.
    pub fn open(&self) -> Vec<u32> {
        self.relays.iter().filter(|(_, (_, o))| *o).map(|(r, _)| *r).collect()
    }
}

/// Puts `failed` (sent before what `queue` holds now) back in front of it
/// and keeps the newest `max`: a sender's retry queue that keeps the order.
/// Answers how many are kept and how many of the oldest were dropped.
pub fn requeue_front<T>(queue: &mut Vec<T>, failed: Vec<T>, max: usize) -> (usize, usize) {
    let newer = std::mem::take(queue);
    queue.extend(failed);
    queue.extend(newer);
    let dropped = queue.len().saturating_sub(max);
    queue.drain(..dropped);
    (queue.len(), dropped)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(relay_name(7), "relay:7");
        assert_eq!(relay_index("relay:7"), Some(7));
        for bad in ["relay:", "relay:x", "root", "relay:-1", "relay:1 "] {
            assert_eq!(relay_index(bad), None, "{bad}");
        }
    }

    #[test]
    fn relays_cover_the_clients() {
        assert_eq!(relay_count(10_000, 1_000), 10);
        assert_eq!(relay_count(10_001, 1_000), 11);
        assert_eq!(relay_count(2, 1_000), 1);
        assert_eq!(relay_count(5, 0), 5);
        assert_eq!(relay_capacity(2, 1_000), 2, "a small limit is one relay's");
        assert_eq!(relay_capacity(10_000, 1_000), 1_000);
        assert_eq!(relay_capacity(1_500, 1_000), 750, "split evenly over two relays");
        for (max, per) in [(1, 1), (7, 3), (10_000, 1_000), (32_768, 1_000)] {
            let total = relay_count(max, per) as usize * relay_capacity(max, per);
            assert!(total >= max && relay_capacity(max, per) <= per, "{max} {per}");
        }
    }

    #[test]
    fn order_tries_every_relay_once_from_the_start() {
        assert_eq!(relay_order(2, 4).collect::<Vec<_>>(), vec![2, 3, 0, 1]);
        assert_eq!(relay_order(9, 4).collect::<Vec<_>>(), vec![1, 2, 3, 0]);
        assert_eq!(relay_order(0, 0).collect::<Vec<_>>(), vec![0]);
    }

    fn texts(n: usize) -> Delivery {
        Delivery { intel: (0..n).map(|i| i.to_string()).collect(), ..Delivery::default() }
    }

    #[test]
    fn buffer_publishes_a_lone_message_at_once_and_batches_the_rest() {
        let mut b = RootBuffer::default();
        let t = 1_000_000.0;
        assert_eq!(b.push(Delivery::default(), t), Pushed::Waiting, "nothing to send");
        assert_eq!(b.push(texts(1), t), Pushed::Schedule(0), "quiet before: at once");
        assert_eq!(b.push(texts(1), t), Pushed::Waiting, "already scheduled");
        assert_eq!(b.take(t).len(), 2);
        assert_eq!(b.push(texts(1), t + 30.0), Pushed::Schedule(ROOT_FLUSH_MS - 30), "one interval after the last");
        assert_eq!(b.push(texts(1), t + 40.0), Pushed::Waiting);
        assert_eq!(b.push(texts(ROOT_BATCH_MAX), t + 50.0), Pushed::Schedule(0), "a large batch goes at once");
        assert_eq!(b.push(texts(1), t + 50.0), Pushed::Waiting, "already publishing now");
        let d = b.take(t + 50.0);
        assert_eq!(d.len(), ROOT_BATCH_MAX + 3);
        assert_eq!(d.intel.first().map(String::as_str), Some("0"), "in order");
        assert!(b.is_empty());
        assert_eq!(b.push(texts(1), t + 400.0), Pushed::Schedule(0), "the next push schedules again");
        assert_eq!(b.wait(t - 5_000.0), ROOT_FLUSH_MS, "never more than one interval (a clock that went back)");
    }

    #[test]
    fn buffer_is_bounded_and_deliveries_are_split() {
        let mut b = RootBuffer::default();
        let t = 1_000_000.0;
        b.push(Delivery { perf: vec!["p".into()], ..texts(1) }, t);
        let events = |from: usize, n: usize| Delivery {
            alerts: Vec::new(),
            updates: Vec::new(),
            intel: (from..from + n).map(|i| format!("e{i}")).collect(),
            perf: Vec::new(),
        };
        b.push(events(0, ROOT_PENDING_MAX + 5), t);
        assert_eq!(b.len(), ROOT_PENDING_MAX, "capped");
        assert_eq!(b.dropped, 7, "the oldest intel texts (\"0\", e0..e5) dropped and counted; perf goes last");
        assert_eq!(b.wait(t), 0, "a large batch waits no interval");
        let first = b.take(t);
        assert_eq!(first.len(), DELIVER_MAX, "one delivery holds at most DELIVER_MAX");
        assert_eq!(first.intel.first().map(String::as_str), Some("e6"), "oldest kept first, in order");
        let mut seen = first.len();
        let mut last = first.intel.last().cloned();
        while !b.is_empty() {
            let d = b.take(t);
            assert!(d.len() <= DELIVER_MAX && !d.is_empty());
            let n: usize = d.intel.first().and_then(|s| s[1..].parse().ok()).unwrap();
            let prev: usize = last.as_deref().and_then(|s| s[1..].parse().ok()).unwrap();
            assert_eq!(n, prev + 1, "no gap, no reordering between deliveries");
            last = d.intel.last().cloned();
            seen += d.len();
        }
        assert_eq!(seen, ROOT_PENDING_MAX);
        // The tick's performance texts go last.
        let mut b = RootBuffer::default();
        b.push(Delivery { perf: vec!["p".into(); 3], ..Delivery::default() }, t);
        b.push(events(0, ROOT_PENDING_MAX), t);
        assert_eq!(b.dropped, 3);
        let d = b.take(t);
        assert_eq!(d.intel.first().map(String::as_str), Some("e3"), "the oldest events went");
        let mut rest = 0;
        while !b.is_empty() {
            rest += b.take(t).perf.len();
        }
        assert_eq!(rest, 3, "the perf texts stayed");
    }

    #[test]
    fn counting_is_bounded_and_chunked() {
        let mut c = Counting::default();
        let t = 1_000_000.0;
        c.add(0..10);
        assert_eq!(c.due(t), (0..10).collect::<Vec<_>>(), "the first is due at once");
        c.add(10..20);
        assert!(c.due(t + 10.0).is_empty(), "at most once a second");
        assert_eq!(c.next_in(t + 10.0), Some(990));
        assert_eq!(c.due(t + 1_000.0).len(), 10);
        c.add(0..COUNT_PENDING_MAX + 3);
        assert_eq!((c.len(), c.dropped), (COUNT_PENDING_MAX, 3), "the oldest dropped, counted");
        let chunk = c.due(t + 1_001.0);
        assert_eq!((chunk.len(), chunk.first().copied()), (COUNT_MAX, Some(3)), "a big backlog goes in chunks");
        c.failed(chunk);
        assert_eq!(c.len(), COUNT_PENDING_MAX, "a failed forward goes back in front");
        assert_eq!(c.due(t + 1_002.0).first().copied(), Some(3), "still oldest first");
        c.add(0..COUNT_MAX + 1);
        assert_eq!((c.len(), c.dropped), (COUNT_PENDING_MAX, 4));
        assert_eq!(c.next_in(t + 2_002.0), Some(1), "due now");
        assert_eq!(c.next_in(t), Some(1_000), "never more than an interval");
        let mut empty = Counting::<u8>::default();
        assert_eq!(empty.next_in(t), None);
        assert!(empty.due(t).is_empty() && empty.is_empty());
    }

    #[test]
    fn membership_keeps_the_newest_change() {
        let mut m = Membership::default();
        assert!(m.register(1, 5, true));
        assert!(!m.register(1, 4, false), "a late close does not undo a newer open");
        assert!(!m.register(1, 5, true), "a repeat changes nothing");
        assert_eq!(m.open(), vec![1]);
        assert!(m.register(1, 6, false));
        assert!(m.register(1, 7, true));
        assert!(m.register(3, 1, true));
        assert_eq!(m.open(), vec![1, 3]);
    }

    #[test]
    fn an_empty_relay_is_dropped_unless_a_newer_registration_is_on_its_way() {
        let mut m = Membership::default();
        m.register(1, 5, true);
        let empty = |seq| Delivered { seq, ..Delivered::default() };
        assert!(!m.delivered(1, &empty(4)), "its newer open arrived before this answer");
        assert!(!m.delivered(1, &Delivered { seq: 5, intel: 2, ..Delivered::default() }));
        assert!(!m.delivered(1, &Delivered { seq: 5, opening: 1, ..Delivered::default() }), "a socket on its way");
        assert!(m.delivered(1, &empty(5)));
        assert_eq!(m.open(), Vec::<u32>::new());
        assert!(!m.register(1, 5, true), "the same open again changes nothing");
        assert!(m.register(1, 6, true));
    }

    #[test]
    fn ops_have_a_stable_wire_form() {
        let op = StreamOp::Register { relay: 2, seq: 3, open: true };
        assert_eq!(serde_json::to_string(&op).unwrap(), r#"{"register":{"relay":2,"seq":3,"open":true}}"#);
        let op = StreamOp::Deliver(texts(1));
        assert_eq!(serde_json::to_string(&op).unwrap(), r#"{"deliver":{"intel":["0"]}}"#);
        let back: StreamOp = serde_json::from_str(r#"{"publish":{"updates":[]}}"#).unwrap();
        assert!(matches!(back, StreamOp::Publish { updates, alerts } if updates.is_empty() && alerts.is_empty()));
    }

    #[test]
    fn requeue_front_keeps_the_order_and_the_newest() {
        let mut q = vec![3, 4];
        assert_eq!(requeue_front(&mut q, vec![1, 2], 10), (4, 0));
        assert_eq!(q, vec![1, 2, 3, 4], "the failed ones go first: they are older");
        assert_eq!(requeue_front(&mut q, vec![0], 3), (3, 2));
        assert_eq!(q, vec![2, 3, 4], "past the bound the oldest go");
        let mut empty: Vec<u8> = Vec::new();
        assert_eq!(requeue_front(&mut empty, Vec::new(), 3), (0, 0));
    }
}
