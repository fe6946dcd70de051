//! `VisitorObject`: one per visitor (a hashed session cookie or the signed
//! `ei_vid` cookie). Keeps the visitor's last place and time server-side and
//! finds impossible hops; a new finding is reported to the profile of the
//! subject the visitor now comes from, before the answer goes back, so the
//! alert is stored even if the request path has stopped waiting.

use serde_json::json;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

use crate::bindings;
use crate::clock::now_ms;
use crate::intel::profile::ProfileVerdict;
use crate::intel::travel::VisitorState;
use crate::intel::wire::{ProfileOp, VisitorAnswer, VisitorOp};
use crate::log::Log;
use crate::platform::{self, call_object, reply};

use super::Entry;

const KEY: &str = "visitor";

#[durable_object]
pub struct VisitorObject {
    state: State,
    env: Env,
}

impl DurableObject for VisitorObject {
    fn new(state: State, env: Env) -> Self {
        VisitorObject { state, env }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        // The call's one log line (printed when it ends, if anything failed).
        let log = Log::new("visitor.fetch");
        let config = match platform::config(&self.env) {
            Ok(c) => c,
            Err(e) => return super::config_invalid(&self.state, Entry::Fetch, &e).await,
        };
        let op: VisitorOp = match platform::read_op(&mut req).await {
            Ok(op) => op,
            Err(e) => return reply(400, &json!({"error": "bad_op", "message": e.to_string()})),
        };
        let storage = self.state.storage();
        match op {
            VisitorOp::Sight { sighting, subject } => {
                let mut state = load(&storage).await?.unwrap_or_default();
                let ip = sighting.ip.clone();
                let new_finding = state.observe(sighting, &config.travel);
                save(&storage, &state).await?;
                if storage.get_alarm().await?.is_none() {
                    storage.set_alarm(std::time::Duration::from_millis(config.profile_ttl_ms as u64)).await?;
                }
                if let Some(finding) = new_finding {
                    let op = ProfileOp::Travel { subject: subject.clone(), ip, finding: Box::new(finding) };
                    if let Err(e) = call_object::<_, ProfileVerdict>(&self.env, bindings::PROFILES, &subject, &op).await
                    {
                        log.error("travel report", e);
                    }
                }
                let now = now_ms();
                let finding = state.active_finding(now, &config.travel).cloned();
                let step_ups = state.step_ups.iter().filter(|s| s.active(now)).cloned().collect();
                reply(200, &VisitorAnswer { finding, step_ups })
            }
            VisitorOp::StepUp { step_up } => {
                let mut state = load(&storage).await?.unwrap_or_default();
                crate::intel::stepup::add(&mut state.step_ups, step_up, now_ms());
                save(&storage, &state).await?;
                if storage.get_alarm().await?.is_none() {
                    storage.set_alarm(std::time::Duration::from_millis(config.profile_ttl_ms as u64)).await?;
                }
                reply(200, &json!({"stepUps": state.step_ups.len()}))
            }
            VisitorOp::Delete => {
                storage.delete_alarm().await?;
                storage.delete_all().await?;
                reply(200, &json!({"deleted": true}))
            }
        }
    }

    async fn alarm(&self) -> Result<Response> {
        // Set at the first sighting: erase the visitor after PROFILE_TTL_DAYS
        // without one, otherwise look again when it could next expire.
        // A bad deploy deletes nothing: no work, look again soon.
        let config = match platform::config(&self.env) {
            Ok(c) => c,
            Err(e) => return super::config_invalid(&self.state, Entry::Alarm, &e).await,
        };
        let storage = self.state.storage();
        let state = load(&storage).await?;
        let last = state.and_then(|s| s.last.map(|l| l.at));
        let ttl_ms = config.profile_ttl_ms;
        match last {
            Some(t) if now_ms() - t < ttl_ms => {
                let at = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(t + ttl_ms));
                storage.set_alarm(worker::ScheduledTime::new(at)).await?;
            }
            _ => storage.delete_all().await?,
        }
        Response::ok("ok")
    }
}

/// The state is stored as JSON text (see objects/sockets.rs for why not as a
/// structured value); a structured value from an earlier version is read too
/// (platform::StoredValue). Anything that does not parse is a fresh visitor.
async fn load(storage: &worker::Storage) -> Result<Option<VisitorState>> {
    let stored: Option<platform::StoredValue> = storage.get(KEY).await?;
    Ok(stored.and_then(|v| v.parse()))
}

async fn save(storage: &worker::Storage, state: &VisitorState) -> Result<()> {
    storage.put(KEY, platform::to_json(state)?).await
}
