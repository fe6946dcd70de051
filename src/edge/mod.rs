//! The request path (SPEC section 1) as named phases in one function, sharing
//! one per-request context: extract, identify, consult, score, decide,
//! forward, record. Requests under the reserved prefix go to `api` instead and
//! are never forwarded.
//!
//! Failure semantics: fail open. If a Durable Object fails or misses the
//! budget, the request is still forwarded with request-only signals,
//! `X-Risk-Level: unknown` and `X-Intel-Status: degraded`. Nothing here may
//! panic (a panic resets the wasm instance and every co-located object).

mod analytics_api;
mod api;
mod body;
mod consult;
mod extract;
mod forward;
mod lists;
mod record;
mod respond;
mod visitor;

use std::time::Duration;

use futures::future::{join, select, Either};
use futures::FutureExt;
use web_sys::{Request, Response};
use worker::{Context, Delay, Env};

use crate::clock::now_ms;
use crate::config::{Config, RiskMode};
use crate::intel::analytics::{shard_of, Consult, Sample};
use crate::intel::enforce::{clearance_valid, decide, Action, DecideInput, CLEARANCE_COOKIE};
use crate::intel::events::Location;
use crate::intel::facts::CfFacts;
use crate::intel::headers::{self, HeaderInput, IntelStatus};
use crate::intel::ip::{identify, subject_of, Identity};
use crate::intel::lists::ListVerdict;
use crate::intel::profile::{Observation, ProfileVerdict};
use crate::intel::score::{self, Level};
use crate::intel::secrets::cookie;
use crate::intel::signals::{self, Reason, Signal};
use crate::intel::signature;
use crate::intel::travel::{Sighting, TravelFinding};
use crate::platform;

/// Paths longer than this are cut before they are stored in a profile.
const MAX_STORED_PATH: usize = 512;

pub async fn handle(req: Request, env: Env, ctx: Context) -> Response {
    let config = match platform::config(&env) {
        Ok(c) => c,
        Err(e) => return respond::config_error(&e),
    };
    let path = extract::path(&req);
    if api::owns(&config, &path) {
        return api::route(&req, &env, &ctx, &config).await;
    }
    let started = now_ms();
    platform::count_request();

    // 1. Extract facts (never fails: every field is optional).
    let (ip, cf, request) = extract::facts(&req, &config);
    // 2. Identify: the subject (profile key, hashed with IP_HASH_KEY) and,
    //    if configured, the visitor.
    let identity = ip.map(|ip| identify(&subject_of(ip), config.secrets.ip_hash_key.as_deref()));
    let cookies = extract::cookie_header(&req);
    let visitor = visitor::identify(cookies.as_deref(), &config);
    let mut found = signals::request_signals(&cf, &request, &config.signals);
    let lists_now = lists::effective(&env, &ctx, &config).await;
    let list = lists_now.lists.check(ip, cf.asn, cf.country.as_deref());
    if list == ListVerdict::Blocked {
        found.push(Signal { reason: Reason::Blocklisted, points: None });
    }
    let mut obs = Observation {
        at: started,
        method: request.method.clone(),
        path: request.path.chars().take(MAX_STORED_PATH).collect(),
        status: None,
        latency_ms: None,
        location: location_of(&cf, started),
        signals: found.iter().map(|s| s.reason).collect(),
        action: None,
        visitor: visitor.as_ref().map(|v| v.key.clone()),
        admin_auth_failed: false,
    };
    // 3. Consult the profile (and the visitor's travel) within the mode's budget.
    let (profile, status, travel, consulted) = match &identity {
        None => (ProfileVerdict::unknown_subject(), IntelStatus::Ok, None, Consult::Cached),
        Some(id) => {
            let sighting =
                visitor.as_ref().and_then(|v| sighting_of(&cf, &found, id, started).map(|x| (v.key.clone(), x)));
            consult_all(&env, &ctx, &config, id, &obs, sighting).await
        }
    };
    // Time only advances across I/O in Workers, so this is the consult's I/O wait.
    let consult_ms = now_ms() - started;
    // 4. Score: the request's own signals plus what the profile remembers.
    found.extend(profile.signals.iter().cloned());
    if travel.is_some() {
        found.push(Signal { reason: Reason::ImpossibleTravel, points: None });
    }
    let verdict = score::score(&found, &config.weights);
    // Without the profile the level is unknown; stale lists (KV failed or was
    // late) leave the score as it is but still mark the request degraded.
    let level = if status == IntelStatus::Degraded { Level::Unknown } else { verdict.level };
    let status = if lists_now.fresh { status } else { IntelStatus::Degraded };
    if status == IntelStatus::Degraded && config.consult.fail_closed {
        // FAIL_MODE=closed: the operator prefers no answer to an unscored
        // one. Counted (degraded and fail-closed), so the degraded-share alert sees it.
        if let Some(id) = &identity {
            let sample = Sample {
                at: started,
                subject: id.key.as_str().to_string(),
                country: cf.country.clone(),
                asn: cf.asn,
                risk: verdict.score,
                threat: profile.threat,
                status: 503,
                lists_stale: !lists_now.fresh,
                fail_closed: true,
                consult: consulted,
                consult_ms: (consulted != Consult::Cached).then_some(consult_ms),
                ..Sample::default()
            };
            record::sample(&ctx, &env, &config, shard_of(id.key.as_str(), config.hub.shards), sample);
        }
        return respond::unavailable();
    }
    // 5. Decide.
    let key = identity.as_ref().map_or("", |id| id.key.as_str());
    let cleared = match (&config.secrets.challenge_key, cookies.as_deref().and_then(|h| cookie(h, CLEARANCE_COOKIE))) {
        (Some(k), Some(v)) => clearance_valid(k, key, v, started),
        _ => false,
    };
    let action = decide(&DecideInput {
        mode: config.enforce.mode,
        score: verdict.score,
        challenge_at: config.enforce.challenge_at,
        block_at: config.enforce.block_at,
        verified_bot: cf.verified_bot == Some(true),
        list,
        cleared,
    });
    let accept = extract::header(&req, "accept").unwrap_or_default();
    let sent = now_ms();
    let result = match action {
        Action::Forward => {
            // 6. Forward, with our headers replacing any the client sent.
            let mut ours = headers::render(&HeaderInput {
                verdict: &verdict,
                level,
                threat: profile.threat,
                reputation: profile.reputation,
                cf: &cf,
                status,
            });
            if let Some(k) = &config.secrets.header_signing_key {
                // The address the verdict is about, signed with it (see intel::signature).
                if let Some(ip) = ip {
                    ours.push((signature::CLIENT_IP, ip.to_string()));
                }
                let url = forward::target_url(&req, &config);
                let t = (started / 1000.0) as u64;
                if let Some(sig) = signature::sign(k, &request.method, &url, t, &ours) {
                    ours.push((signature::SIGNATURE, sig));
                }
            }
            forward::send(&req, &config, &ours).await
        }
        Action::Block => {
            obs.action = Some(Action::Block.as_str().to_string());
            Ok(respond::blocked(&accept))
        }
        Action::Challenge => {
            obs.action = Some(Action::Challenge.as_str().to_string());
            Ok(respond::challenge(&accept, &config, key, &request.path, started))
        }
    };
    // 7. Record, after the response, in ctx.wait_until. A block or challenge
    // is the edge's own answer: recorded as enforcement, never as an origin
    // status or latency.
    let status_sent = result.as_ref().map_or_else(|e| e.status(), |r| r.status());
    let forwarded = action == Action::Forward;
    let latency_ms = forwarded.then(|| now_ms() - sent);
    if let Some(id) = &identity {
        let s = &id.key;
        let sample = Sample {
            at: started,
            subject: s.as_str().to_string(),
            country: cf.country.clone(),
            asn: cf.asn,
            risk: verdict.score,
            threat: profile.threat,
            status: status_sent,
            latency_ms,
            enforced: !forwarded,
            lists_stale: !lists_now.fresh,
            fail_closed: false,
            consult: consulted,
            consult_ms: (consulted != Consult::Cached).then_some(consult_ms),
            // Keyed by the rule, not the path: a scanner's endless variants
            // of one path are one analytics key.
            probe: signals::probe_rule(&request.path).map(String::from),
        };
        record::sample(&ctx, &env, &config, shard_of(s.as_str(), config.hub.shards), sample);
        obs.latency_ms = latency_ms;
        record_outcome(&ctx, &env, &config, id, &mut obs, status_sent, level == Level::Low);
    }
    let response = match result {
        Ok(res) => res,
        Err(e) => return respond::origin_failed(&e),
    };
    match visitor.and_then(|v| v.set_cookie) {
        Some(cookie) => forward::with_cookie(response, &cookie),
        None => response,
    }
}

/// Phase 3 for a known subject: the profile verdict and the visitor's travel
/// finding, asked concurrently.
async fn consult_all(
    env: &Env,
    ctx: &Context,
    config: &Config,
    id: &Identity,
    obs: &Observation,
    sighting: Option<(String, Sighting)>,
) -> (ProfileVerdict, IntelStatus, Option<TravelFinding>, Consult) {
    let subject = &id.key;
    let profile = async {
        match config.consult.mode {
            RiskMode::Fast => consult::fast(env, ctx, config, subject).await,
            RiskMode::Consistent => {
                consult::consistent(env, ctx, config, subject, &id.display, obs.clone()).await.map(|v| (v, false))
            }
        }
    };
    let travel = async {
        let (key, sighting) = sighting?;
        let ask = {
            let env = env.clone();
            let subject = subject.as_str().to_string();
            async move { visitor::sight(&env, &key, &subject, sighting).await }
        }
        .boxed_local();
        let answer = match config.consult.mode {
            RiskMode::Consistent => ask.await,
            RiskMode::Fast => {
                let budget = Delay::from(Duration::from_millis(u64::from(config.consult.timeout_ms)));
                match select(ask, budget).await {
                    Either::Left((a, _)) => a,
                    Either::Right(((), pending)) => {
                        // The sighting is still recorded (and any finding reported).
                        ctx.wait_until(pending.map(|_| ()));
                        return None;
                    }
                }
            }
        };
        match answer {
            Ok(a) => a.finding,
            Err(e) => {
                worker::console_error!("edgeintel: visitor check failed: {}", e.0);
                None
            }
        }
    };
    let (profile, travel) = join(profile, travel).await;
    match profile {
        Ok((v, cached)) => (v, IntelStatus::Ok, travel, if cached { Consult::Cached } else { Consult::Ok }),
        Err(e) => {
            worker::console_warn!("edgeintel: profile degraded: {}", e.why);
            let outcome = if e.timed_out { Consult::Timeout } else { Consult::Error };
            (ProfileVerdict::unknown_subject(), IntelStatus::Degraded, travel, outcome)
        }
    }
}

fn record_outcome(
    ctx: &Context,
    env: &Env,
    config: &Config,
    id: &Identity,
    obs: &mut Observation,
    status: u16,
    verdict_low: bool,
) {
    let subject = &id.key;
    match config.consult.mode {
        RiskMode::Fast => {
            // Only an origin answer is a status; an enforced one has its action.
            obs.status = obs.action.is_none().then_some(status);
            record::observation(ctx, env, config, subject, &id.display, obs.clone(), verdict_low);
        }
        // The observation itself was recorded before forwarding.
        RiskMode::Consistent => ctx.wait_until(record::status(
            env.clone(),
            subject.as_str().to_string(),
            id.display.clone(),
            obs.at,
            status,
            obs.action.clone(),
        )),
    }
}

fn location_of(cf: &CfFacts, at: f64) -> Location {
    Location {
        timestamp: at,
        country_code: cf.country.clone(),
        city: cf.city.clone(),
        region: cf.region.clone(),
        latitude: cf.latitude,
        longitude: cf.longitude,
        asn: cf.asn,
        colo: cf.colo.clone(),
    }
}

fn sighting_of(cf: &CfFacts, found: &[Signal], id: &Identity, at: f64) -> Option<Sighting> {
    let (latitude, longitude) = cf.coordinates()?;
    Some(Sighting {
        at,
        latitude,
        longitude,
        ip: id.display.clone(),
        country: cf.country.clone(),
        city: cf.city.clone(),
        hosting: found.iter().any(|s| s.reason == Reason::HostingAsn),
        tor: found.iter().any(|s| s.reason == Reason::TorExit),
    })
}
