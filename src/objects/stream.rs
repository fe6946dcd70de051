//! `StreamObject`: the global intelligence and performance streams, split off
//! the analytics hub (issue 17). One class, two roles by object name
//! (`intel::fanout`: the messages and every decision, tested natively):
//!
//! - `root`: receives the profile events (`StreamOp::Publish`) and the hub's
//!   tick texts (`Broadcast`), buffers them and publishes each batch
//!   (`RootBuffer`: at once after a quiet interval, by the request that
//!   brought it; else on the alarm, `ROOT_FLUSH_MS` after the last
//!   publication, or at once when the batch is large): one `Deliver` call per
//!   relay with subscribers, concurrently; one publication at a time. It
//!   forwards the events' updates to the hub for counting (`HubOp::Publish`)
//!   at most once a second. It keeps the registered relays in storage (a
//!   restart loses none) and spends stream tickets (`SpendTicket`: each opens
//!   one socket, whichever relay or profile object it lands in).
//! - `relay:<n>`: holds at most `relay_capacity` sockets (hibernating,
//!   `sockets`), applies each subscriber's filter to the events of a
//!   delivery, sends the tick texts to all, and registers with the root when
//!   it gets its first socket and deregisters when its last closes, each
//!   change numbered (`relay_seq`) so the root keeps the newest.
//!
//! Storage (SQLite): root: `relays` (registration per relay), `spent_tickets`;
//! relay: `relay_seq`. The root's buffer is memory only: a restart of the root
//! loses at most the messages of one batch interval.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use futures::future::join_all;
use serde::Deserialize;
use serde_json::json;
use worker::{
    durable_object, DurableObject, Env, Request, Response, Result, SqlStorage, State, WebSocket,
    WebSocketIncomingMessage,
};

use crate::bindings;
use crate::clock::now_ms;
use crate::intel::fanout::{
    relay_capacity, relay_index, relay_name, Clients, Delivered, Delivery, Membership, Pushed, RootBuffer, StreamOp,
    ROOT, ROOT_COUNT_EVERY_MS, ROOT_FLUSH_MS,
};
use crate::intel::keys::GLOBAL_HUB;
use crate::intel::protocol::Update;
use crate::intel::wire::{HubOp, Spent, BEARER_HEADER, INTEL_TAG, PERF_TAG, STREAM_HEADER};
use crate::log::Log;
use crate::platform::{self, call_object, reply};

use super::sockets::{self, Accepted};
use super::Entry;

/// The root forwards events to the hub for counting at most this often (ms),
/// or sooner when this many wait (the hub's request rate stays ~1/s however
/// many events flow).
const COUNT_EVERY_MS: f64 = ROOT_COUNT_EVERY_MS as f64;
const COUNT_MAX: usize = 500;
/// A publication running longer than this is taken as gone (its request
/// cancelled): the alarm publishes again.
const PUBLISH_STALE_MS: f64 = 10_000.0;

#[derive(Deserialize)]
struct RelayRow {
    id: f64,
    seq: f64,
    open: f64,
}

#[derive(Deserialize)]
struct SeqRow {
    seq: f64,
}

#[durable_object]
pub struct StreamObject {
    state: State,
    env: Env,
    /// Root: messages waiting for the next publication.
    buffer: RefCell<RootBuffer>,
    /// Root: the registered relays (a copy of the `relays` table; None until read).
    members: RefCell<Option<Membership>>,
    /// Root: sockets per relay as each last answered a delivery.
    counts: RefCell<BTreeMap<u32, (usize, usize)>>,
    /// Root: since when a publication runs (one at a time, in order).
    publishing_since: Cell<Option<f64>>,
    /// Root: updates not yet counted by the hub, and when it last counted.
    uncounted: RefCell<Vec<Update>>,
    counted_at: Cell<f64>,
    /// Relay: the intelligence stream's subscribers and their filters.
    subscribers: sockets::Subscribers,
    /// Relay: never read (the perf stream's texts go to all its sockets), so
    /// its sockets never join the intelligence list.
    perf_subscribers: sockets::Subscribers,
    /// Relay: whether the root has this relay open, as far as it knows
    /// (false after a restart: the next socket registers again).
    registered: Cell<bool>,
}

impl DurableObject for StreamObject {
    fn new(state: State, env: Env) -> Self {
        sockets::enable_auto_pong(&state);
        StreamObject {
            state,
            env,
            buffer: RefCell::new(RootBuffer::default()),
            members: RefCell::new(None),
            counts: RefCell::new(BTreeMap::new()),
            publishing_since: Cell::new(None),
            uncounted: RefCell::new(Vec::new()),
            counted_at: Cell::new(0.0),
            subscribers: sockets::Subscribers::default(),
            perf_subscribers: sockets::Subscribers::default(),
            registered: Cell::new(false),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let config = match platform::config(&self.env) {
            Ok(c) => c,
            Err(e) => return super::config_invalid(&self.state, Entry::Fetch, &e).await,
        };
        let sql = self.state.storage().sql();
        migrate(&sql)?;
        if req.headers().get("upgrade")?.is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
            let Some(relay) = self.relay() else {
                return reply(400, &json!({"error": "not_a_relay", "message": "sockets land in relays"}));
            };
            let tag = match req.headers().get(STREAM_HEADER)?.as_deref() {
                Some(PERF_TAG) => PERF_TAG,
                _ => INTEL_TAG,
            };
            let bearer = req.headers().get(BEARER_HEADER)?.is_some();
            let capacity = relay_capacity(config.streams.max_clients, config.streams.relay_max_sockets);
            return match self.accept(&sql, relay, tag, capacity, bearer).await? {
                // Full: the edge tries the next relay; the last refusal goes
                // to the client, naming the whole stream's limit.
                Some(res) => Ok(res),
                None => sockets::full(config.streams.max_clients),
            };
        }
        let op: StreamOp = match platform::read_op(&mut req).await {
            Ok(op) => op,
            Err(e) => {
                Log::new("stream.fetch").error("bad op", &e);
                return reply(400, &json!({"error": "bad_op", "message": e.to_string()}));
            }
        };
        match op {
            StreamOp::Publish { updates, alerts } => {
                self.push(Delivery { updates, alerts, ..Delivery::default() }).await?;
                reply(200, &json!({"queued": true}))
            }
            StreamOp::Broadcast { intel, perf } => {
                self.push(Delivery { intel, perf, ..Delivery::default() }).await?;
                reply(200, &self.clients())
            }
            StreamOp::SpendTicket { nonce, expires } => {
                let valid = super::hub::spend_ticket(&sql, &nonce, expires, now_ms())?;
                reply(200, &Spent { valid })
            }
            StreamOp::Register { relay, seq, open } => {
                let changed = self.with_members(&sql, |m| m.register(relay, seq, open))?;
                if changed && !open {
                    self.counts.borrow_mut().remove(&relay);
                }
                reply(200, &json!({"changed": changed}))
            }
            StreamOp::Deliver(d) => {
                let sent = sockets::broadcast(&self.state, INTEL_TAG, &self.subscribers, &d.updates, &d.alerts)
                    + sockets::send_all(&self.state, INTEL_TAG, &d.intel)
                    + sockets::send_all(&self.state, PERF_TAG, &d.perf);
                let intel = sockets::sockets(&self.state, INTEL_TAG).len();
                let perf = sockets::sockets(&self.state, PERF_TAG).len();
                if intel + perf == 0 {
                    // The root drops this relay on this answer (`Membership::delivered`).
                    self.registered.set(false);
                }
                reply(200, &Delivered { seq: current_seq(&sql)?, intel, perf, sent })
            }
        }
    }

    /// Root: publishes what is buffered (unless a fetch is publishing now:
    /// then later, one publication at a time keeps the order).
    async fn alarm(&self) -> Result<Response> {
        if self.publishing_since.get().is_some_and(|t| now_ms() - t < PUBLISH_STALE_MS) {
            self.state.storage().set_alarm(std::time::Duration::from_millis(ROOT_FLUSH_MS)).await?;
            return Response::ok("busy");
        }
        self.publish_round().await?;
        Response::ok("published")
    }

    async fn websocket_message(&self, ws: WebSocket, message: WebSocketIncomingMessage) -> Result<()> {
        sockets::on_message_configured(&self.env, &ws, &self.subscribers, message);
        Ok(())
    }

    async fn websocket_close(&self, ws: WebSocket, _code: usize, _reason: String, _was_clean: bool) -> Result<()> {
        sockets::on_close(&ws, &self.subscribers);
        self.last_closed(&ws).await;
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, _error: worker::Error) -> Result<()> {
        sockets::on_error(&ws, &self.subscribers);
        self.last_closed(&ws).await;
        Ok(())
    }
}

/// The relay's registration number now (0 before its first).
fn current_seq(sql: &SqlStorage) -> Result<u64> {
    let rows = sql.exec("SELECT seq FROM relay_seq WHERE id = 1", None)?.to_array::<SeqRow>()?;
    Ok(rows.first().map_or(0, |r| r.seq as u64))
}

/// The next registration number (synchronous: the change it numbers is
/// decided in the same turn).
fn next_seq(sql: &SqlStorage) -> Result<u64> {
    let seq = current_seq(sql)? + 1;
    sql.exec("INSERT OR REPLACE INTO relay_seq (id, seq) VALUES (1, ?)", vec![(seq as f64).into()])?;
    Ok(seq)
}

fn migrate(sql: &SqlStorage) -> Result<()> {
    sql.exec(
        "CREATE TABLE IF NOT EXISTS relays (id INTEGER PRIMARY KEY, seq REAL NOT NULL, open INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS relay_seq (id INTEGER PRIMARY KEY CHECK (id = 1), seq REAL NOT NULL);
         CREATE TABLE IF NOT EXISTS spent_tickets (id TEXT PRIMARY KEY, expires REAL NOT NULL);",
        None,
    )?;
    Ok(())
}

impl StreamObject {
    /// This object's relay index (None: the root, or unnamed).
    fn relay(&self) -> Option<u32> {
        self.state.id().name().as_deref().and_then(relay_index)
    }

    /// Root: the sockets the relays last reported.
    fn clients(&self) -> Clients {
        let counts = self.counts.borrow();
        let intel = counts.values().map(|c| c.0).sum();
        let perf: usize = counts.values().map(|c| c.1).sum();
        Clients { intel, total: intel + perf }
    }

    /// Root: publishes what is buffered (one batch), forwards the updates to
    /// the hub for counting when it is time, and arms the alarm if anything
    /// is left. One at a time (`publishing_since`).
    async fn publish_round(&self) -> Result<()> {
        self.publishing_since.set(Some(now_ms()));
        let out = self.publish_batch().await;
        self.publishing_since.set(None);
        out?;
        // Checked and armed with no await between: a push after this arms its own.
        let wait = { self.buffer.borrow().wait(now_ms()) };
        if !self.buffer.borrow().is_empty() {
            self.state.storage().set_alarm(std::time::Duration::from_millis(wait.max(1))).await?;
        } else if !self.uncounted.borrow().is_empty() {
            let wait = (self.counted_at.get() + COUNT_EVERY_MS - now_ms()).max(1.0);
            self.state.storage().set_alarm(std::time::Duration::from_millis(wait as u64)).await?;
        }
        Ok(())
    }

    async fn publish_batch(&self) -> Result<()> {
        let log = Log::new("stream.publish");
        let sql = self.state.storage().sql();
        migrate(&sql)?;
        let now = now_ms();
        let batch = self.buffer.borrow_mut().take(now);
        let count = {
            let mut u = self.uncounted.borrow_mut();
            u.extend(batch.updates.iter().cloned());
            let due = now - self.counted_at.get() >= COUNT_EVERY_MS || u.len() >= COUNT_MAX;
            if due && !u.is_empty() {
                self.counted_at.set(now);
                std::mem::take(&mut *u)
            } else {
                Vec::new()
            }
        };
        let relays = self.with_members(&sql, |m| m.open())?;
        let deliveries = async {
            if batch.is_empty() {
                return Vec::new();
            }
            let op = StreamOp::Deliver(batch);
            let calls = relays.iter().map(|r| {
                let op = &op;
                async move { (*r, call_object::<_, Delivered>(&self.env, bindings::STREAMS, &relay_name(*r), op).await) }
            });
            join_all(calls).await
        };
        let counting = async {
            if count.is_empty() {
                return Ok(());
            }
            let op = HubOp::Publish { updates: count.clone(), alerts: Vec::new() };
            match call_object::<_, serde_json::Value>(&self.env, bindings::HUB, GLOBAL_HUB, &op).await {
                Ok((200, _)) => Ok(()),
                Ok((status, _)) => Err(format!("hub answered {status}")),
                Err(e) => Err(e.to_string()),
            }
        };
        let (answers, counted) = futures::join!(deliveries, counting);
        if let Err(e) = counted {
            // Counted with the next batch (a failed call was not counted).
            log.error("events not counted", format_args!("{} updates kept for the next try: {e}", count.len()));
            let mut u = self.uncounted.borrow_mut();
            let later = std::mem::replace(&mut *u, count);
            u.extend(later);
        }
        for (relay, answer) in answers {
            match answer {
                Ok((200, Some(d))) => {
                    self.counts.borrow_mut().insert(relay, (d.intel, d.perf));
                    if self.with_members(&sql, |m| m.delivered(relay, &d))? {
                        self.counts.borrow_mut().remove(&relay);
                    }
                }
                Ok((status, _)) => log.error("delivery", format_args!("{} answered {status}", relay_name(relay))),
                Err(e) => log.error("delivery", format_args!("{}: {e}", relay_name(relay))),
            }
        }
        Ok(())
    }

    /// Root: buffers a message batch and arms the alarm that publishes it.
    async fn push(&self, d: Delivery) -> Result<()> {
        if self.state.id().name().as_deref() != Some(ROOT) {
            return Err(worker::Error::RustError("only the stream root publishes".into()));
        }
        let pushed = self.buffer.borrow_mut().push(d, now_ms());
        let Pushed::Schedule(wait) = pushed else { return Ok(()) };
        if wait == 0 && self.publishing_since.get().is_none() {
            // Due now and nobody publishing: this request publishes (no
            // alarm round trip for a lone event; the caller waits for it).
            return self.publish_round().await;
        }
        self.state.storage().set_alarm(std::time::Duration::from_millis(wait.max(1))).await
    }

    /// Root: reads the registrations once, applies `f`, stores them if
    /// `f` says they changed (bool) or just answers (anything else).
    fn with_members<R: MembersResult>(&self, sql: &SqlStorage, f: impl FnOnce(&mut Membership) -> R) -> Result<R> {
        if self.members.borrow().is_none() {
            let rows = sql.exec("SELECT id, seq, open FROM relays", None)?.to_array::<RelayRow>()?;
            let mut m = Membership::default();
            for r in rows {
                m.relays.insert(r.id as u32, (r.seq as u64, r.open > 0.0));
            }
            *self.members.borrow_mut() = Some(m);
        }
        let mut members = self.members.borrow_mut();
        let Some(m) = members.as_mut() else { return Err(worker::Error::RustError("relays not loaded".into())) };
        let before = m.clone();
        let out = f(m);
        if out.changed() {
            for (id, (seq, open)) in &m.relays {
                if before.relays.get(id) != Some(&(*seq, *open)) {
                    sql.exec(
                        "INSERT OR REPLACE INTO relays (id, seq, open) VALUES (?, ?, ?)",
                        vec![(*id as f64).into(), (*seq as f64).into(), i32::from(*open).into()],
                    )?;
                }
            }
        }
        Ok(out)
    }

    /// Relay: accepts a socket (up to `capacity`) and, if the root may not
    /// have this relay open, registers it before answering the 101: an event
    /// published after the client sees its socket open reaches it.
    /// None when this relay is full.
    async fn accept(
        &self,
        sql: &SqlStorage,
        relay: u32,
        tag: &str,
        capacity: usize,
        bearer: bool,
    ) -> Result<Option<Response>> {
        let subscribers = if tag == PERF_TAG { &self.perf_subscribers } else { &self.subscribers };
        let (client, server) = match sockets::accept_pair(&self.state, tag, subscribers, capacity)? {
            Accepted::Refused(_) => return Ok(None),
            Accepted::Open { client, server } => (client, server),
        };
        if !self.registered.get() {
            let seq = next_seq(sql)?;
            let op = StreamOp::Register { relay, seq, open: true };
            match call_object::<_, serde_json::Value>(&self.env, bindings::STREAMS, ROOT, &op).await {
                // Unless a newer change (a last close) came meanwhile.
                Ok((200, _)) => self.registered.set(current_seq(sql)? == seq),
                other => {
                    let e = match other {
                        Ok((status, _)) => format!("root answered {status}"),
                        Err(e) => e.to_string(),
                    };
                    Log::new("stream.accept").error("register", &e);
                    subscribers.removed(&server);
                    let _ = server.close(Some(1011), Some("stream root unavailable"));
                    return reply(
                        503,
                        &json!({"error": "stream_unavailable", "message": "the stream root did not answer; retry"}),
                    )
                    .map(Some);
                }
            }
        }
        sockets::upgrade(client, bearer).map(Some)
    }

    /// Relay: after a close, deregisters from the root when no other socket
    /// is left (numbered: a newer open wins whatever arrives first).
    async fn last_closed(&self, ws: &WebSocket) {
        let Some(relay) = self.relay() else { return };
        let left = self
            .state
            .as_raw()
            .get_websockets()
            .map(|v| v.iter().filter(|w| !js_sys::Object::is(w, ws.as_ref())).count())
            .unwrap_or(0);
        if left > 0 || !self.registered.get() {
            return;
        }
        let sql = self.state.storage().sql();
        let seq = match migrate(&sql).and_then(|_| next_seq(&sql)) {
            Ok(s) => s,
            Err(e) => {
                Log::new("stream.close").error("seq", &e);
                return;
            }
        };
        self.registered.set(false);
        let op = StreamOp::Register { relay, seq, open: false };
        if let Err(e) = call_object::<_, serde_json::Value>(&self.env, bindings::STREAMS, ROOT, &op).await {
            // The root drops it on its next delivery anyway (no sockets).
            Log::new("stream.close").error("deregister", &e);
        }
    }
}

/// What `with_members` stores after: a bool says whether anything changed.
trait MembersResult {
    fn changed(&self) -> bool;
}

impl MembersResult for bool {
    fn changed(&self) -> bool {
        *self
    }
}

impl MembersResult for Vec<u32> {
    fn changed(&self) -> bool {
        false
    }
}
