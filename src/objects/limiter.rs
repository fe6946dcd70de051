//! `LimiterObject`: one per rate-limit rule and key (`<rule id>|<by>:<key>`,
//! `intel::ratelimit::limiter_name`). Counts the requests the rule allows
//! with a sliding-window counter kept in storage, so a restart or an
//! eviction forgets nothing; forgets the key itself by alarm two periods
//! after its last counted request.

use serde::{Deserialize, Serialize};
use serde_json::json;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

use crate::clock::now_ms;
use crate::intel::ratelimit::SlidingWindow;
use crate::intel::wire::LimiterOp;
use crate::platform::{self, reply};

use super::Entry;

const KEY: &str = "window";

/// What is stored (as JSON text, as every object here stores its state):
/// the window, and the period of the last `Take`, so the alarm knows when
/// the key is idle.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    window: SlidingWindow,
    period_s: u32,
}

async fn load(storage: &worker::Storage) -> Result<Stored> {
    let text: Option<String> = storage.get(KEY).await?;
    Ok(text.and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default())
}

#[durable_object]
pub struct LimiterObject {
    state: State,
    env: Env,
}

impl DurableObject for LimiterObject {
    fn new(state: State, env: Env) -> Self {
        LimiterObject { state, env }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        if let Err(e) = platform::config(&self.env) {
            return super::config_invalid(&self.state, Entry::Fetch, &e).await;
        }
        let op: LimiterOp = match platform::read_op(&mut req).await {
            Ok(op) => op,
            Err(e) => return reply(400, &json!({"error": "bad_op", "message": e.to_string()})),
        };
        let storage = self.state.storage();
        match op {
            LimiterOp::Take { limit, period_s } => {
                let mut stored = load(&storage).await?;
                let taken = stored.window.take(now_ms(), limit, period_s);
                if taken.allowed {
                    stored.period_s = period_s;
                    storage.put(KEY, platform::to_json(&stored)?).await?;
                    if storage.get_alarm().await?.is_none() {
                        let idle_in = u64::from(period_s.max(1)) * 2_000;
                        storage.set_alarm(std::time::Duration::from_millis(idle_in)).await?;
                    }
                }
                reply(200, &taken)
            }
        }
    }

    async fn alarm(&self) -> Result<Response> {
        if let Err(e) = platform::config(&self.env) {
            return super::config_invalid(&self.state, Entry::Alarm, &e).await;
        }
        let storage = self.state.storage();
        let Stored { window, period_s } = load(&storage).await?;
        if window.idle(now_ms(), period_s) {
            storage.delete_all().await?;
        } else {
            let at = window.start_ms + 2.0 * f64::from(period_s.max(1)) * 1000.0;
            let at = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(at));
            storage.set_alarm(worker::ScheduledTime::new(at)).await?;
        }
        Response::ok("ok")
    }
}
