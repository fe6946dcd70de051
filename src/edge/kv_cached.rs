//! A value the request path reads from KV and keeps in the isolate: the
//! crawler ranges (`edge::crawlers`) and the hub's fingerprint sets
//! (`edge::fingerprint`). The read has the consult budget; a failed or late
//! one serves the value kept (`initial` at first) and is tried again after
//! `retry_ms`, and a late one that answers after the response fills the
//! cache then. (The lists and rules keep more: when they were last fresh,
//! and a PUT's invalidation; they have their own.)

use std::cell::RefCell;
use std::rc::Rc;
use std::thread::LocalKey;
use std::time::Duration;

use futures::future::{select, Either, LocalBoxFuture};
use worker::{Delay, Env};

use crate::clock::now_ms;

use super::Io;

/// An isolate's copy: (read again after, value).
pub type Slot<T> = RefCell<Option<(f64, Rc<T>)>>;

/// How one value is read and kept.
pub struct Policy {
    /// The log note's `what` (`crawlers`, `fingerprints`).
    pub what: &'static str,
    /// What the note says was kept (`crawler ranges`).
    pub noun: &'static str,
    /// How long a value read is kept.
    pub cache_ms: f64,
    /// After a failed or late read, try again this soon (at most `cache_ms`).
    pub retry_ms: f64,
    /// The read's budget on the request path.
    pub timeout_ms: u32,
}

/// The value for this request: the isolate's copy while it is fresh, else
/// `load`'s answer within the budget, else the copy kept.
pub async fn read<T: 'static>(
    io: Io<'_>,
    slot: &'static LocalKey<Slot<T>>,
    policy: Policy,
    initial: impl FnOnce() -> T,
    load: impl FnOnce(Env) -> LocalBoxFuture<'static, Result<T, String>>,
) -> Rc<T> {
    let now = now_ms();
    let cached = slot.with(|c| c.borrow().clone());
    if let Some((until, v)) = &cached {
        if now < *until {
            return v.clone();
        }
    }
    let kept = cached.map_or_else(|| Rc::new(initial()), |(_, v)| v);
    let keep =
        |v: &Rc<T>| slot.with(|c| *c.borrow_mut() = Some((now + policy.retry_ms.min(policy.cache_ms), v.clone())));
    let budget = Delay::from(Duration::from_millis(u64::from(policy.timeout_ms)));
    match select(load(io.env.clone()), budget).await {
        Either::Left((Ok(v), _)) => {
            let v = Rc::new(v);
            slot.with(|c| *c.borrow_mut() = Some((now + policy.cache_ms, v.clone())));
            v
        }
        Either::Left((Err(e), _)) => {
            io.log.warn(policy.what, format_args!("kept the {} last read: {e}", policy.noun));
            keep(&kept);
            kept
        }
        Either::Right(((), pending)) => {
            keep(&kept);
            let cache_ms = policy.cache_ms;
            io.ctx.wait_until(async move {
                if let Ok(v) = pending.await {
                    slot.with(|c| *c.borrow_mut() = Some((now_ms() + cache_ms, Rc::new(v))));
                }
            });
            kept
        }
    }
}
