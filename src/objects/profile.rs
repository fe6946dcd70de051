//! `ProfileObject`: one per subject. Applies batches of observations, the
//! origin's statuses, pushed events and travel findings to the subject's
//! profile, persists what changed, and answers the verdict the request path
//! caches. Its alarm deletes the profile after `PROFILE_TTL_DAYS` without
//! activity, or `SEEN_ONCE_TTL_HOURS` after the one request of a profile
//! seen once (`Profile::seen_once`; scores decay from stored timestamps, so
//! no timer is needed for that).
//!
//! Memory: `cached` holds the loaded profile; it is rebuilt from storage on
//! first use after the object is (re)constructed, so eviction loses nothing.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use futures::future::{select, Either};
use futures::FutureExt;
use serde_json::json;
use worker::{
    durable_object, Delay, DurableObject, Env, Request, Response, Result, State, WebSocket, WebSocketIncomingMessage,
};

use crate::bindings;
use crate::clock::now_ms;
use crate::config::Config;
use crate::error::Error;
use crate::intel::events::IntelEvent;
use crate::intel::fanout::{StreamOp, ROOT};
use crate::intel::profile::{Changes, Profile, ProfileRules, ProfileVerdict, Tombstone};
use crate::intel::protocol::{AlertNotice, Update};
use crate::intel::score::Weights;
use crate::intel::wire::{ObserveReply, ProfileOp};
use crate::log::Log;
use crate::platform::{self, call_object, reply};

use super::sockets;
use super::store;
use super::Entry;
use crate::intel::wire::BEARER_HEADER;

/// Tag of this subject's own stream sockets (`...stream?ip=`).
const SUBJECT_TAG: &str = "subject";
/// How long a travel finding's publication waits for the stream root before
/// moving on.
const PUBLISH_BUDGET_MS: u64 = 1000;
/// Visitor objects erased at once by an erasure (up to `MAX_VISITORS` in all).
const VISITOR_ERASE_CHUNK: usize = 50;

#[durable_object]
pub struct ProfileObject {
    state: State,
    env: Env,
    /// `None`: not loaded yet; `Some(None)`: loaded, no profile stored.
    cached: RefCell<Option<Option<Profile>>>,
    alarm_armed: Cell<bool>,
    /// `None`: not read yet; `Some(None)`: no tombstone stored.
    tombstone: Cell<Option<Option<Tombstone>>>,
    /// The subject stream's sockets and filters, kept between events.
    subscribers: sockets::Subscribers,
}

impl DurableObject for ProfileObject {
    fn new(state: State, env: Env) -> Self {
        sockets::enable_auto_pong(&state);
        ProfileObject {
            state,
            env,
            cached: RefCell::new(None),
            alarm_armed: Cell::new(false),
            tombstone: Cell::new(None),
            subscribers: sockets::Subscribers::default(),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        // The call's one log line (printed when it ends, if anything failed).
        let log = Log::new("profile.fetch");
        let config = match platform::config(&self.env) {
            Ok(c) => c,
            Err(e) => return super::config_invalid(&self.state, Entry::Fetch, &e).await,
        };
        if req.headers().get("upgrade")?.is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
            let bearer = req.headers().get(BEARER_HEADER)?.is_some();
            return sockets::accept(
                &self.state,
                SUBJECT_TAG,
                &self.subscribers,
                config.streams.max_clients.min(crate::config::SUBJECT_MAX_SOCKETS),
                bearer,
            );
        }
        let op: ProfileOp = match platform::read_op(&mut req).await {
            Ok(op) => op,
            Err(e) => return reply(400, &json!({"error": "bad_op", "message": e.to_string()})),
        };
        let now = now_ms();
        // No migration here: only a write creates the schema (`update`), so
        // reading a never-seen subject (`Get`, `Verdict`) leaves nothing
        // stored, and no object without an alarm to delete it.
        // After an erasure, what happened before it (batches still pending in
        // other isolates) is dropped rather than re-creating the profile.
        let tomb = self.tombstone()?;
        let erased = |at: f64| tomb.is_some_and(|t| t.drops(at));
        match op {
            ProfileOp::Observe { subject, ip, observations } => {
                let observations: Vec<_> = observations.into_iter().filter(|o| !erased(o.at)).collect();
                if observations.is_empty() {
                    return reply(200, &dropped(self.current(&config.rules, &config.weights, now)?));
                }
                let (verdict, published) = self.update(&config, now, &subject, &ip, |p| {
                    let mut all = Changes::default();
                    for o in &observations {
                        merge(&mut all, p.observe(o, &config.rules));
                    }
                    all
                })?;
                self.arm_alarm(&config).await?;
                reply(200, &self.answer(verdict, published))
            }
            ProfileOp::Consult { subject, ip, observation } => {
                // The verdict this request is scored with: the history before it.
                let before = self.current(&config.rules, &config.weights, now)?;
                if erased(observation.at) {
                    return reply(200, &ObserveReply { before: Some(before.clone()), ..dropped(before) });
                }
                let (verdict, published) =
                    self.update(&config, now, &subject, &ip, |p| p.observe(&observation, &config.rules))?;
                self.arm_alarm(&config).await?;
                reply(200, &ObserveReply { before: Some(before), ..self.answer(verdict, published) })
            }
            ProfileOp::Status { subject, ip, at, status, action } => {
                if erased(at) {
                    return reply(200, &dropped(self.current(&config.rules, &config.weights, now)?));
                }
                let (verdict, published) = self.update(&config, now, &subject, &ip, |p| match &action {
                    Some(a) => p.record_enforcement(a, at, &config.rules),
                    None => p.record_status(status, at, &config.rules),
                })?;
                // Every write arms the retention alarm (a status can create the profile).
                self.arm_alarm(&config).await?;
                reply(200, &self.answer(verdict, published))
            }
            ProfileOp::Events { subject, ip, events } => {
                let events: Vec<_> = events.into_iter().filter(|e| !erased(e.timestamp)).collect();
                if events.is_empty() {
                    return reply(200, &dropped(self.current(&config.rules, &config.weights, now)?));
                }
                let (verdict, published) = self.update(&config, now, &subject, &ip, |p| {
                    let mut all = Changes::default();
                    for e in &events {
                        merge(&mut all, p.apply_event(e, now, &config.rules));
                        // The pushed event itself is what subscribers see.
                        all.events.push(e.clone());
                    }
                    all
                })?;
                self.arm_alarm(&config).await?;
                reply(200, &self.answer(verdict, published))
            }
            ProfileOp::Travel { subject, ip, finding } => {
                if erased(finding.at) {
                    return reply(200, &self.current(&config.rules, &config.weights, now)?);
                }
                let (verdict, published) =
                    self.update(&config, now, &subject, &ip, |p| p.apply_travel(&finding, now, &config.rules))?;
                self.arm_alarm(&config).await?;
                self.publish(published, &log).await;
                reply(200, &verdict)
            }
            ProfileOp::StepUp { subject, ip, step_up } => {
                if erased(step_up.at) {
                    return reply(200, &self.current(&config.rules, &config.weights, now)?);
                }
                let (verdict, _) = self.update(&config, now, &subject, &ip, |p| p.add_step_up(step_up, now))?;
                self.arm_alarm(&config).await?;
                reply(200, &verdict)
            }
            ProfileOp::Verdict => reply(200, &self.current(&config.rules, &config.weights, now)?),
            ProfileOp::Get => {
                self.ensure_loaded()?;
                let cached = self.cached.borrow();
                match cached.as_ref().and_then(Option::as_ref) {
                    Some(p) => {
                        let verdict = p.verdict(now, &config.rules, &config.weights);
                        let scored = crate::intel::score::score(&verdict.signals, &config.weights);
                        let mut metrics = p.metrics(now, &config.rules);
                        if let Some(m) = metrics.as_object_mut() {
                            m.insert("historyRisk".into(), json!(scored));
                        }
                        reply(200, &json!({"profile": p.to_api(now, &config.rules), "metrics": metrics}))
                    }
                    None => reply(404, &json!({"error": "not_found"})),
                }
            }
            ProfileOp::Delete => {
                self.ensure_loaded()?;
                let existed = self.cached.borrow().as_ref().is_some_and(Option::is_some);
                // Erasure covers every visitor the profile lists (at most
                // MAX_VISITORS), a chunk at a time.
                let visitors: Vec<String> = self
                    .cached
                    .borrow()
                    .as_ref()
                    .and_then(|p| p.as_ref())
                    .map(|p| p.visitors.clone())
                    .unwrap_or_default();
                let mut failed = 0usize;
                for chunk in visitors.chunks(VISITOR_ERASE_CHUNK) {
                    let calls = chunk.iter().map(|v| {
                        let op = crate::intel::wire::VisitorOp::Delete;
                        async move { call_object::<_, serde_json::Value>(&self.env, bindings::VISITORS, v, &op).await }
                    });
                    for outcome in futures::future::join_all(calls).await {
                        if let Err(e) = outcome {
                            log.error("visitor erasure", e);
                            failed += 1;
                        }
                    }
                }
                if failed > 0 {
                    // Keep the profile (and its list of visitors) so a retry erases the rest.
                    return reply(
                        503,
                        &json!({"error": "erase_incomplete", "message": format!("{failed} visitor records could not be erased; retry")}),
                    );
                }
                self.erase().await?;
                // The tombstone: a batch still pending in another isolate must
                // not re-create the subject; the alarm deletes it when it expires.
                let t = Tombstone::new(now, config.flush.interval_ms, config.flush.calm_ms);
                store::save_tombstone(&self.state.storage().sql(), &t)?;
                self.tombstone.set(Some(Some(t)));
                self.state.storage().set_alarm(Duration::from_millis((t.until - now).max(0.0) as u64)).await?;
                self.alarm_armed.set(true);
                reply(200, &json!({"deleted": existed}))
            }
        }
    }

    async fn websocket_message(&self, ws: WebSocket, message: WebSocketIncomingMessage) -> Result<()> {
        sockets::on_message_configured(&self.env, &ws, &self.subscribers, message);
        Ok(())
    }

    async fn websocket_close(&self, ws: WebSocket, _code: usize, _reason: String, _was_clean: bool) -> Result<()> {
        sockets::on_close(&ws, &self.subscribers);
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, _error: worker::Error) -> Result<()> {
        sockets::on_error(&ws, &self.subscribers);
        Ok(())
    }

    async fn alarm(&self) -> Result<Response> {
        let config = match platform::config(&self.env) {
            Ok(c) => c,
            // Re-arm and retry later rather than deleting on a bad deploy.
            Err(e) => return super::config_invalid(&self.state, Entry::Alarm, &e).await,
        };
        let sql = self.state.storage().sql();
        let now = now_ms();
        // An expired tombstone goes; a live one keeps the object until it expires.
        let mut live = self.tombstone()?;
        if live.is_some_and(|t| t.expired(now)) {
            store::clear_tombstone(&sql)?;
            self.tombstone.set(Some(None));
            live = None;
        }
        self.ensure_loaded()?;
        let last = self.cached.borrow().as_ref().and_then(|p| {
            p.as_ref()
                .map(|p| (p.last_updated, p.retention_ms(config.profile_ttl_ms, config.subjects.seen_once_ttl_ms)))
        });
        let at = |ms: f64| worker::ScheduledTime::new(js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms)));
        match (last, live) {
            (Some((t, keep)), _) if now - t < keep => {
                // Active since the alarm was set (or no longer seen once):
                // look again when it could expire (or when the tombstone
                // does, if sooner).
                let next = live.map_or(t + keep, |l| l.until.min(t + keep));
                self.state.storage().set_alarm(at(next)).await?;
                self.alarm_armed.set(true);
            }
            (None, Some(l)) => {
                self.state.storage().set_alarm(at(l.until)).await?;
                self.alarm_armed.set(true);
            }
            _ => self.erase().await?,
        }
        Response::ok("ok")
    }
}

impl ProfileObject {
    fn ensure_loaded(&self) -> Result<()> {
        if self.cached.borrow().is_none() {
            let loaded = store::load(&self.state.storage().sql())?;
            *self.cached.borrow_mut() = Some(loaded);
        }
        Ok(())
    }

    /// Loads (or creates) the profile, applies `f`, persists, and returns the
    /// verdict after it and what to publish. No borrow is held across an await.
    /// Takes the whole `Config` for two of its parts, the profile rules and
    /// the weights the verdict is scored with (the callers' `f` reads the
    /// same rules).
    fn update(
        &self,
        config: &Config,
        now: f64,
        subject: &str,
        ip: &str,
        f: impl FnOnce(&mut Profile) -> Changes,
    ) -> Result<(ProfileVerdict, Published)> {
        self.ensure_loaded()?;
        let sql = self.state.storage().sql();
        store::migrate(&sql)?;
        let mut slot = self.cached.borrow_mut();
        let profile = slot.get_or_insert(None).get_or_insert_with(|| Profile::new(subject, ip, now));
        let changes = f(profile);
        store::save(&sql, profile, &changes)?;
        let verdict = profile.verdict(now, &config.rules, &config.weights);
        let country = profile.current_location.as_ref().and_then(|l| l.country_code.clone());
        let update = |event: IntelEvent| Update {
            event,
            country: country.clone(),
            threat_score: verdict.threat,
            reputation_score: verdict.reputation,
            subject: subject.to_string(),
        };
        let published = Published {
            updates: changes.events.into_iter().map(update).collect(),
            alerts: changes
                .new_alerts
                .into_iter()
                .map(|alert| AlertNotice {
                    ip: profile.ip.clone(),
                    country: country.clone(),
                    alert,
                    subject: subject.to_string(),
                })
                .collect(),
        };
        Ok((verdict, published))
    }

    /// Sends what an update published to this subject's own sockets and
    /// returns it with the verdict, for the caller to pass on: an isolate adds
    /// it to its analytics report (its aggregator publishes it to the stream
    /// root), consistent mode sends it to the root at once.
    fn answer(&self, verdict: ProfileVerdict, p: Published) -> ObserveReply {
        sockets::broadcast(&self.state, SUBJECT_TAG, &self.subscribers, &p.updates, &p.alerts);
        ObserveReply { verdict, before: None, updates: p.updates, alerts: p.alerts }
    }

    /// Sends new events and alerts to this subject's own sockets and to the
    /// stream root directly (only for travel findings, which arrive from a visitor
    /// object and have no request path to carry them), within a budget.
    async fn publish(&self, p: Published, log: &Log) {
        if p.updates.is_empty() && p.alerts.is_empty() {
            return;
        }
        sockets::broadcast(&self.state, SUBJECT_TAG, &self.subscribers, &p.updates, &p.alerts);
        let op = StreamOp::Publish { updates: p.updates, alerts: p.alerts };
        let send =
            async { call_object::<_, serde_json::Value>(&self.env, bindings::STREAMS, ROOT, &op).await }.boxed_local();
        let budget = Delay::from(Duration::from_millis(PUBLISH_BUDGET_MS));
        let outcome = match select(send, budget).await {
            Either::Left((Ok(_), _)) => None,
            Either::Left((Err(e), _)) => Some(e),
            Either::Right(_) => Some(Error::late(format!("stream root did not answer within {PUBLISH_BUDGET_MS} ms"))),
        };
        if let Some(e) = outcome {
            log.error("events not published", e);
        }
    }

    /// Arms the deletion alarm once, when the profile is first written: its
    /// retention from now (`SEEN_ONCE_TTL_HOURS` for a profile seen once,
    /// else `PROFILE_TTL_DAYS`). A profile that stops being seen once keeps
    /// that alarm; when it fires, `alarm` finds the longer retention and
    /// re-arms.
    async fn arm_alarm(&self, config: &Config) -> Result<()> {
        if self.alarm_armed.get() {
            return Ok(());
        }
        let keep =
            self.cached.borrow().as_ref().and_then(|p| {
                p.as_ref().map(|p| p.retention_ms(config.profile_ttl_ms, config.subjects.seen_once_ttl_ms))
            });
        let storage = self.state.storage();
        if storage.get_alarm().await?.is_none() {
            let ms = keep.unwrap_or(config.profile_ttl_ms);
            storage.set_alarm(std::time::Duration::from_millis(ms as u64)).await?;
        }
        self.alarm_armed.set(true);
        Ok(())
    }

    async fn erase(&self) -> Result<()> {
        let storage = self.state.storage();
        storage.delete_alarm().await?;
        storage.delete_all().await?;
        *self.cached.borrow_mut() = Some(None);
        self.tombstone.set(Some(None));
        self.alarm_armed.set(false);
        Ok(())
    }

    /// The stored tombstone, read once per object instance.
    fn tombstone(&self) -> Result<Option<Tombstone>> {
        if let Some(t) = self.tombstone.get() {
            return Ok(t);
        }
        let t = store::load_tombstone(&self.state.storage().sql())?;
        self.tombstone.set(Some(t));
        Ok(t)
    }

    /// The current verdict (an unknown subject's when nothing is stored),
    /// without writing anything.
    fn current(&self, rules: &ProfileRules, weights: &Weights, now: f64) -> Result<ProfileVerdict> {
        self.ensure_loaded()?;
        Ok(self
            .cached
            .borrow()
            .as_ref()
            .and_then(|p| p.as_ref().map(|p| p.verdict(now, rules, weights)))
            .unwrap_or_else(ProfileVerdict::unknown_subject))
    }
}

/// The answer to a write the tombstone dropped entirely: the current
/// verdict, nothing published, nothing stored.
fn dropped(verdict: ProfileVerdict) -> ObserveReply {
    ObserveReply { verdict, before: None, updates: Vec::new(), alerts: Vec::new() }
}

/// What one update publishes.
#[derive(Default)]
struct Published {
    updates: Vec<Update>,
    alerts: Vec<AlertNotice>,
}

fn merge(into: &mut Changes, more: Changes) {
    into.new_locations.extend(more.new_locations);
    into.new_alerts.extend(more.new_alerts);
    into.events.extend(more.events);
}
