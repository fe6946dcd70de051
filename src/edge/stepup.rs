//! Step-up from the origin (`intel::stepup`, docs/policies.md "Step-up"):
//! reads `X-Intel-Step-Up` off the origin's response, holds it for the
//! client in this isolate at once, and records it after the response with
//! the subject's profile object and the visitor's object, so the client's
//! requests through other isolates and locations meet it too: at once where
//! the request path asks the visitor's object (every request with a visitor
//! and a location), and for the subject when the isolate next asks its
//! profile rather than its cached verdict (within `CACHE_TTL_MS` in fast
//! mode; on the next request in consistent mode).

use std::cell::RefCell;

use crate::bindings;
use crate::clock::now_ms;
use crate::config::Config;
use crate::intel::cache::TtlLru;
use crate::intel::ip::Identity;
use crate::intel::profile::ProfileVerdict;
use crate::intel::stepup::{self, StepUp, StepUpAction};
use crate::intel::wire::{ProfileOp, VisitorOp};
use crate::platform::call_object;

use super::Io;

/// Clients this isolate holds step-ups for (the least recently used go
/// first): at most 16 step-ups of 512-byte scopes each, ~18 MB at worst.
const LOCAL_CAPACITY: usize = 2_000;

thread_local! {
    static LOCAL: RefCell<Option<TtlLru<Vec<StepUp>>>> = const { RefCell::new(None) };
}

fn with_local<R>(f: impl FnOnce(&mut TtlLru<Vec<StepUp>>) -> R) -> R {
    LOCAL.with(|c| {
        let mut c = c.borrow_mut();
        f(c.get_or_insert_with(|| TtlLru::new(LOCAL_CAPACITY, stepup::MAX_TTL_S as f64 * 1000.0)))
    })
}

fn keys(subject: &str, visitor: Option<&str>) -> impl Iterator<Item = String> {
    std::iter::once(format!("s:{subject}")).chain(visitor.map(|v| format!("v:{v}")))
}

/// The step-ups this isolate holds for the subject and the visitor.
pub fn held(subject: &str, visitor: Option<&str>) -> Vec<StepUp> {
    let now = now_ms();
    with_local(|c| keys(subject, visitor).filter_map(|k| c.get(&k, now)).flatten().collect())
}

/// The origin's `X-Intel-Step-Up` value, for the client of this request:
/// taken if it parses and edgeintel can do what it asks (a challenge needs
/// `CHALLENGE_SIGNING_KEY`, as a challenge rule does), else
/// logged and ignored. The header never reaches the client either way
/// (`forward::finish`).
pub fn take(io: Io<'_>, config: &Config, id: &Identity, visitor: Option<&str>, value: &str) {
    let now = now_ms();
    let step_up = match stepup::parse(value, now) {
        Ok(s) => s,
        Err(why) => return io.log.warn("step-up", format_args!("ignored the origin's X-Intel-Step-Up: {why}")),
    };
    // The clearance a challenge ends with is signed with CHALLENGE_SIGNING_KEY
    // (with Turnstile too): without it a challenge could never be passed.
    if step_up.action == StepUpAction::Challenge && config.secrets.challenge_key.is_none() {
        return io.log.error("step-up", "ignored the origin's X-Intel-Step-Up: challenge needs CHALLENGE_SIGNING_KEY");
    }
    with_local(|c| {
        for k in keys(id.key.as_str(), visitor) {
            let mut list = c.get(&k, now).unwrap_or_default();
            stepup::add(&mut list, step_up.clone(), now);
            c.put(&k, list, now);
        }
    });
    let (env, subject, ip) = (io.env.clone(), id.key.as_str().to_string(), id.display.clone());
    let visitor = visitor.map(str::to_string);
    io.ctx.wait_until(async move {
        let log = crate::log::Log::new("step-up");
        let op = ProfileOp::StepUp { subject: subject.clone(), ip, step_up: step_up.clone() };
        let profile = async { call_object::<_, ProfileVerdict>(&env, bindings::PROFILES, &subject, &op).await };
        let visitor = async {
            match &visitor {
                Some(v) => {
                    let op = VisitorOp::StepUp { step_up };
                    call_object::<_, serde_json::Value>(&env, bindings::VISITORS, v, &op).await.map(|_| ())
                }
                None => Ok(()),
            }
        };
        let (p, v) = futures::future::join(profile, visitor).await;
        if let Err(e) = p {
            log.error("profile", format_args!("the step-up holds in this isolate only: {e}"));
        }
        if let Err(e) = v {
            log.error("visitor", format_args!("the step-up holds in this isolate only: {e}"));
        }
    });
}
