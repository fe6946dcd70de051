//! Phase 3, consult: the subject's profile verdict. Fast mode reads the
//! in-isolate cache or asks the object within `CONSULT_TIMEOUT_MS`, in the
//! same call recording this request's observation (docs/profiles.md, "One
//! call per new subject"); past the budget (or on an error) the request goes
//! on with request-only signals and `X-Intel-Status: degraded`, and a late
//! answer still records the observation and fills the cache.
//! Consistent mode records this request first and uses the verdict that
//! includes it.

use std::time::Duration;

use futures::future::{select, Either};
use futures::FutureExt;
use worker::Delay;

use super::record::{self, Recorded};
use super::{verdicts, Io};
use crate::bindings;
use crate::config::Consult;
use crate::error::Error;
use crate::intel::ip::Identity;
use crate::intel::profile::{Observation, ProfileVerdict};
use crate::intel::wire::{ObserveReply, ProfileOp};
use crate::platform::call_object;

/// What a fast consult found, and whether it carried the request's observation.
pub struct FastAnswer {
    /// The verdict to score with (`true`: from the cache), or the platform
    /// `Error` the request path fails open on (`timed_out` when the budget
    /// ran out).
    pub verdict: Result<(ProfileVerdict, bool), Error>,
    /// `Some`: the consult's call carries this request's observation (it
    /// answered, or it is still under way past the budget and records it
    /// then), so the record phase must not queue it again; it holds what the
    /// recording published, for the record phase to add to the analytics report
    /// beside this request's sample. `None`: a cache hit, or a call that
    /// failed: the observation goes to the batch as before.
    pub recorded: Option<Recorded>,
}

/// Fast mode: the cached verdict, or, on a cache miss, one `Consult` call to
/// the profile object within the budget that both records this request's
/// observation (its answer is not known yet: see `record::follow_up`) and
/// answers the verdict from before it. One object call per new subject
/// instead of a `Verdict` and a batch. Past the budget the call goes on in
/// `ctx.wait_until`, still records the observation and fills the cache.
pub async fn fast(io: Io<'_>, consult: &Consult, id: &Identity, obs: &Observation) -> FastAnswer {
    let subject = &id.key;
    if let Some(v) = verdicts::cached(consult, subject.as_str()) {
        return FastAnswer { verdict: Ok((v, true)), recorded: None };
    }
    let ask = {
        let env = io.env.clone();
        let key = subject.as_str().to_string();
        let op =
            ProfileOp::Consult { subject: key.clone(), ip: id.display.clone(), observation: Box::new(obs.clone()) };
        async move { call_object::<_, ObserveReply>(&env, bindings::PROFILES, &key, &op).await }
    }
    .boxed_local();
    let budget = Delay::from(Duration::from_millis(u64::from(consult.timeout_ms)));
    match select(ask, budget).await {
        Either::Left((answer, _)) => match reply_of(answer) {
            Ok(reply) => {
                verdicts::remember(consult, subject.as_str(), reply.verdict.clone());
                let before = reply.before.unwrap_or(reply.verdict);
                let recorded = Recorded { updates: reply.updates, alerts: reply.alerts };
                FastAnswer { verdict: Ok((before, false)), recorded: Some(recorded) }
            }
            // Not recorded as far as this isolate knows: the batch takes the
            // observation (at least once, like a flush's retry).
            Err(e) => FastAnswer { verdict: Err(e), recorded: None },
        },
        Either::Right(((), pending)) => {
            // The call still records the observation; its answer fills the
            // cache for the next request and its events go to the hub.
            let (env, cache, key) = (io.env.clone(), consult.clone(), subject.as_str().to_string());
            io.ctx.wait_until(async move { record::late_consult(&env, &cache, &key, reply_of(pending.await)).await });
            let e = Error::late(format!("no verdict within {} ms", consult.timeout_ms));
            FastAnswer { verdict: Err(e), recorded: Some(Recorded::default()) }
        }
    }
}

fn reply_of(answer: Result<(u16, Option<ObserveReply>), Error>) -> Result<ObserveReply, Error> {
    match answer? {
        (200, Some(r)) => Ok(r),
        (status, _) => Err(Error::platform(format!("unexpected answer {status}"))),
    }
}

/// Consistent mode: record this observation of `id` and return the verdict after it.
pub async fn consistent(
    io: Io<'_>,
    consult: &Consult,
    id: &Identity,
    obs: Observation,
) -> Result<ProfileVerdict, Error> {
    let subject = &id.key;
    let op =
        ProfileOp::Observe { subject: subject.as_str().to_string(), ip: id.display.clone(), observations: vec![obs] };
    let ask = async { call_object(io.env, bindings::PROFILES, subject.as_str(), &op).await }.boxed_local();
    let limit = Delay::from(Duration::from_millis(u64::from(consult.consistent_timeout_ms)));
    let outcome = match select(ask, limit).await {
        Either::Left((answer, _)) => match answer {
            Ok((200, Some(reply))) => {
                let reply: ObserveReply = reply;
                // No request waits on analytics: the events go to the hub
                // after the response (a slow hub once held every consistent
                // request for as long as it took, past the budget).
                let (env, updates, alerts) = (io.env.clone(), reply.updates, reply.alerts);
                io.ctx.wait_until(async move { record::publish_events(&env, updates, alerts).await });
                Ok(reply.verdict)
            }
            Ok((status, _)) => Err(Error::platform(format!("unexpected answer {status}"))),
            Err(e) => Err(e),
        },
        Either::Right(_) => Err(Error::late(format!("no verdict within {} ms", consult.consistent_timeout_ms))),
    };
    let v = outcome?;
    verdicts::remember(consult, subject.as_str(), v.clone());
    Ok(v)
}
