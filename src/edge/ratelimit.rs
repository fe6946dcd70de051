//! The request path's side of rate-limit rules (`intel::ratelimit`): which
//! key a rule counts by, the call to that key's `LimiterObject` within the
//! consult budget, and the isolate's memory of refusals, so requests over a
//! limit cost no object call. A limiter that cannot answer in time lets the
//! request through (fail open, logged): a rate limit never takes a site
//! down with its store.

use std::cell::RefCell;
use std::time::Duration;

use futures::future::{select, Either};
use futures::FutureExt;
use worker::Delay;

use crate::bindings;
use crate::clock::now_ms;
use crate::error::Error;
use crate::intel::ratelimit::{limiter_name, DenyCache, Taken};
use crate::intel::rules::{LimitBy, RateLimit};
use crate::intel::wire::LimiterOp;
use crate::platform::call_object;

use super::Io;

thread_local! {
    /// Refusals this isolate has seen, until they end (bounded: `ratelimit::MAX_DENIED`).
    static DENIED: RefCell<DenyCache> = RefCell::new(DenyCache::default());
}

/// What a request is counted by: its subject (the widened /48 or /24 once a
/// client's rotation passed the budget), its visitor when its cookie came
/// with the request (else its subject), or its ASN (else its subject).
pub fn key_of(by: LimitBy, subject: &str, visitor: Option<&str>, asn: Option<u32>) -> String {
    match (by, visitor, asn) {
        (LimitBy::Visitor, Some(v), _) => format!("v:{v}"),
        (LimitBy::Asn, _, Some(n)) => format!("asn:{n}"),
        _ => format!("s:{subject}"),
    }
}

/// Counts this request against `rule_id`'s limit for `key`. Past the
/// budget the request goes on (fail open) but the call is not dropped: it
/// still counts at the object, and a refusal it brings back is remembered
/// for the key's next requests here.
pub async fn take(io: Io<'_>, rule_id: &str, limit: &RateLimit, key: &str, timeout_ms: u32) -> Result<Taken, Error> {
    // The numbers are part of the name the isolate remembers a refusal by:
    // an edited limit is not held to a refusal made under the old one.
    let name = limiter_name(rule_id, limit.by, key);
    let remembered = format!("{name}|{}/{}", limit.requests, limit.period_seconds);
    let now = now_ms();
    if let Some(reset_s) = DENIED.with(|d| d.borrow_mut().refused(&remembered, now)) {
        return Ok(Taken { allowed: false, remaining: 0, reset_s });
    }
    let op = LimiterOp::Take { limit: limit.requests, period_s: limit.period_seconds };
    let ask = {
        let (env, name) = (io.env.clone(), name.clone());
        async move { call_object::<_, Taken>(&env, bindings::LIMITS, &name, &op).await }
    }
    .boxed_local();
    let budget = Delay::from(Duration::from_millis(u64::from(timeout_ms)));
    let taken = match select(ask, budget).await {
        Either::Left((Ok((200, Some(t))), _)) => t,
        Either::Left((Ok((status, _)), _)) => return Err(Error::platform(format!("limiter answered {status}"))),
        Either::Left((Err(e), _)) => return Err(e),
        Either::Right(((), pending)) => {
            let late = remembered.clone();
            io.ctx.wait_until(async move {
                if let Ok((200, Some(t))) = pending.await {
                    if !t.allowed {
                        DENIED.with(|d| d.borrow_mut().remember(&late, now_ms(), t.reset_s));
                    }
                }
            });
            return Err(Error::late(format!("no limiter answer within {timeout_ms} ms")));
        }
    };
    if !taken.allowed {
        DENIED.with(|d| d.borrow_mut().remember(&remembered, now_ms(), taken.reset_s));
    }
    Ok(taken)
}
