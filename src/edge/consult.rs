//! Phase 3, consult: the subject's profile verdict. Fast mode reads the
//! in-isolate cache or asks the object within `CONSULT_TIMEOUT_MS`; past the
//! budget (or on an error) the request goes on with request-only signals and
//! `X-Intel-Status: degraded`, and a late answer still fills the cache.
//! Consistent mode records this request first and uses the verdict that
//! includes it.

use std::time::Duration;

use futures::future::{select, Either};
use futures::FutureExt;
use worker::{Context, Delay, Env};

use super::verdicts;
use crate::bindings;
use crate::config::Config;
use crate::error::Error;
use crate::intel::ip::SubjectKey;
use crate::intel::profile::{Observation, ProfileVerdict};
use crate::intel::wire::{ObserveReply, ProfileOp};
use crate::platform::call_object;

/// Fast mode: the cached verdict (`true`: from the cache), or the object's
/// within the budget. A missing verdict is a platform `Error` the request
/// path fails open on (`timed_out` when the budget ran out).
pub async fn fast(
    env: &Env,
    ctx: &Context,
    config: &Config,
    subject: &SubjectKey,
) -> Result<(ProfileVerdict, bool), Error> {
    if let Some(v) = verdicts::cached(config, subject.as_str()) {
        return Ok((v, true));
    }
    let ask = {
        let env = env.clone();
        let subject = subject.as_str().to_string();
        async move { call_object::<_, ProfileVerdict>(&env, bindings::PROFILES, &subject, &ProfileOp::Verdict).await }
    }
    .boxed_local();
    let budget = Delay::from(Duration::from_millis(u64::from(config.consult.timeout_ms)));
    match select(ask, budget).await {
        Either::Left((answer, _)) => {
            let v = verdict_of(answer)?;
            verdicts::remember(config, subject.as_str(), v.clone());
            Ok((v, false))
        }
        Either::Right(((), pending)) => {
            // Let the answer land in the cache for the next request.
            let cfg = config.clone();
            let key = subject.as_str().to_string();
            ctx.wait_until(async move {
                if let Ok(v) = verdict_of(pending.await) {
                    verdicts::remember(&cfg, &key, v);
                }
            });
            Err(Error::late(format!("no verdict within {} ms", config.consult.timeout_ms)))
        }
    }
}

/// Consistent mode: record this observation and return the verdict after it.
pub async fn consistent(
    env: &Env,
    ctx: &Context,
    config: &Config,
    subject: &SubjectKey,
    ip: &str,
    obs: Observation,
) -> Result<ProfileVerdict, Error> {
    let op = ProfileOp::Observe { subject: subject.as_str().to_string(), ip: ip.to_string(), observations: vec![obs] };
    let ask = async { call_object(env, bindings::PROFILES, subject.as_str(), &op).await }.boxed_local();
    let limit = Delay::from(Duration::from_millis(u64::from(config.consult.consistent_timeout_ms)));
    let outcome = match select(ask, limit).await {
        Either::Left((answer, _)) => match answer {
            Ok((200, Some(reply))) => {
                let reply: ObserveReply = reply;
                // No request waits on analytics: the events go to the hub
                // after the response (a slow hub once held every consistent
                // request for as long as it took, past the budget).
                let (env, updates, alerts) = (env.clone(), reply.updates, reply.alerts);
                ctx.wait_until(async move { super::record::publish_now(&env, updates, alerts).await });
                Ok(reply.verdict)
            }
            Ok((status, _)) => Err(Error::platform(format!("unexpected answer {status}"))),
            Err(e) => Err(e),
        },
        Either::Right(_) => Err(Error::late(format!("no verdict within {} ms", config.consult.consistent_timeout_ms))),
    };
    let v = outcome?;
    verdicts::remember(config, subject.as_str(), v.clone());
    Ok(v)
}

fn verdict_of(answer: Result<(u16, Option<ProfileVerdict>), Error>) -> Result<ProfileVerdict, Error> {
    match answer? {
        (200, Some(v)) => Ok(v),
        (status, _) => Err(Error::platform(format!("unexpected answer {status}"))),
    }
}
