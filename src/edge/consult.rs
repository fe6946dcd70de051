//! Phase 3, consult: the subject's profile verdict. Fast mode reads the
//! in-isolate cache or asks the object within `CONSULT_TIMEOUT_MS`; past the
//! budget (or on an error) the request goes on with request-only signals and
//! `X-Intel-Status: degraded`, and a late answer still fills the cache.
//! Consistent mode records this request first and uses the verdict that
//! includes it.

use std::time::Duration;

use futures::future::{select, Either};
use futures::FutureExt;
use worker::Delay;

use super::{verdicts, Io};
use crate::bindings;
use crate::config::Consult;
use crate::error::Error;
use crate::intel::ip::{Identity, SubjectKey};
use crate::intel::profile::{Observation, ProfileVerdict};
use crate::intel::wire::{ObserveReply, ProfileOp};
use crate::platform::call_object;

/// Fast mode: the cached verdict (`true`: from the cache), or the object's
/// within the budget. A missing verdict is a platform `Error` the request
/// path fails open on (`timed_out` when the budget ran out).
pub async fn fast(io: Io<'_>, consult: &Consult, subject: &SubjectKey) -> Result<(ProfileVerdict, bool), Error> {
    if let Some(v) = verdicts::cached(consult, subject.as_str()) {
        return Ok((v, true));
    }
    let ask = {
        let env = io.env.clone();
        let subject = subject.as_str().to_string();
        async move { call_object::<_, ProfileVerdict>(&env, bindings::PROFILES, &subject, &ProfileOp::Verdict).await }
    }
    .boxed_local();
    let budget = Delay::from(Duration::from_millis(u64::from(consult.timeout_ms)));
    match select(ask, budget).await {
        Either::Left((answer, _)) => {
            let v = verdict_of(answer)?;
            verdicts::remember(consult, subject.as_str(), v.clone());
            Ok((v, false))
        }
        Either::Right(((), pending)) => {
            // Let the answer land in the cache for the next request.
            let cache = consult.clone();
            let key = subject.as_str().to_string();
            io.ctx.wait_until(async move {
                if let Ok(v) = verdict_of(pending.await) {
                    verdicts::remember(&cache, &key, v);
                }
            });
            Err(Error::late(format!("no verdict within {} ms", consult.timeout_ms)))
        }
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
                io.ctx.wait_until(async move { super::record::publish_now(&env, updates, alerts).await });
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

fn verdict_of(answer: Result<(u16, Option<ProfileVerdict>), Error>) -> Result<ProfileVerdict, Error> {
    match answer? {
        (200, Some(v)) => Ok(v),
        (status, _) => Err(Error::platform(format!("unexpected answer {status}"))),
    }
}
