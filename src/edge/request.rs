//! The request path (docs/architecture.md) for a request the Worker forwards:
//! named phases over one `RequestCtx`, each reading what the phases before it
//! found:
//!
//! ```text
//! extract -> identify -> consult -> score -> decide -> forward | respond -> record
//! ```
//!
//! What is recorded (the observation, the sample, the sighting) is built by
//! the pure `intel::outcome`; this file only gathers the inputs and does the
//! I/O.
//!
//! Failure semantics: fail open on a platform `Error` (`Error::fails_open`).
//! If a Durable Object fails or misses the budget, the request is still
//! forwarded with request-only signals, `X-Risk-Level: unknown` and
//! `X-Intel-Status: degraded` (unless `FAIL_MODE=closed`: `Error::fail_closed`).
//! The origin's failure is answered (`Error::origin_*`, 502/504). Each is
//! noted in the request's `Log` (printed once by `edge::handle`), the
//! subject in its display form. Nothing here may panic (a panic resets the
//! wasm instance and every co-located object).

use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

use futures::future::{join, select, Either};
use futures::FutureExt;
use web_sys::{Request, Response};
use worker::Delay;

use crate::clock::now_ms;
use crate::config::{Config, RiskMode};
use crate::error::Error;
use crate::intel::analytics::{rule_key, shard_of, Consult, RuleSample};
use crate::intel::challenge::{self, Difficulty, Outcome, Why};
use crate::intel::crawlers::{self, Claim, Ranges};
use crate::intel::enforce::{self, clearance_issued, Action, DecideInput, Decision, CLEARANCE_COOKIE};
use crate::intel::facts::{CfFacts, RequestFacts};
use crate::intel::fingerprint;
use crate::intel::headers::{self, HeaderInput, IntelStatus, RuleHeader};
use crate::intel::ip::Identity;
use crate::intel::lists::ListVerdict;
use crate::intel::outcome::{self, Answer, Consulted};
use crate::intel::preview::Facts;
use crate::intel::profile::{Observation, ProfileVerdict};
use crate::intel::ratelimit::Taken;
use crate::intel::rules::{first_match, PathForms, RouteRule, RuleAction, RuleInput};
use crate::intel::score::{self, Level, Verdict};
use crate::intel::secrets::cookie;
use crate::intel::signals::{self, Reason, Signal};
use crate::intel::signature;
use crate::intel::signed_agent::Trust;
use crate::intel::stepup::{self, StepUp};
use crate::intel::travel::TravelFinding;

use super::crawlers as edge_crawlers;
use super::fingerprint as edge_fingerprint;
use super::record::{Batching, Recorded};
use super::respond::ChallengeAsk;
use super::stepup as edge_stepup;
use super::visitor::Visitor;
use super::{consult, extract, forward, lists, ratelimit, record, respond, rotation, rules, signed_agent, visitor, Io};

/// One request on its way through the phases.
struct RequestCtx<'a> {
    req: &'a Request,
    io: Io<'a>,
    /// The whole configuration: the phases between them read most of its
    /// parts; each phase hands its callees only the parts they use.
    config: &'a Config,
    started: f64,
    // extract
    ip: Option<IpAddr>,
    cf: CfFacts,
    request: RequestFacts,
    cookies: Option<String>,
    /// The client's fingerprint id (`intel::fingerprint`), when its TLS facts are known.
    fingerprint: Option<String>,
    // identify
    identity: Option<Identity>,
    /// The request's own subject key (its /64 or address) even when widened:
    /// challenges and clearances are bound to it (`rotation::Subject`).
    own_key: Option<String>,
    /// Identified as its widened subject (`subnet_rotation`).
    widened: bool,
    visitor: Option<Visitor>,
    /// The request's own signals (then the profile's, once scored).
    signals: Vec<Signal>,
    /// A well-known crawler from inside its published ranges (`verified_bot`),
    /// or Cloudflare's `botManagement.verifiedBot`: never challenged or
    /// blocked on score alone.
    verified_bot: bool,
}

impl RequestCtx<'_> {
    /// The parts of the configuration `record` reads.
    fn batching(&self) -> Batching<'_> {
        Batching { flush: &self.config.flush, cache: &self.config.consult, analytics: &self.config.analytics }
    }
}

/// What the consult phase found: the lists' verdict, the profile's, the
/// visitor's travel finding, and how the asking went.
struct Found {
    list: ListVerdict,
    profile: ProfileVerdict,
    status: IntelStatus,
    travel: Option<TravelFinding>,
    /// The step-ups the visitor's object holds (`edge::stepup`; the
    /// subject's come with `profile`).
    visitor_step_ups: Vec<StepUp>,
    consulted: Consulted,
    /// Fast mode: the consult's call recorded this request's observation
    /// (a cache miss); holds what that published, for the hub.
    recorded: Option<Recorded>,
    /// The per-route rules in force (stored, then the vars': `edge::rules`).
    rules: Rc<Vec<RouteRule>>,
}

/// The score phase's result.
struct Scored {
    verdict: Verdict,
    level: Level,
    status: IntelStatus,
}

/// Runs the phases for one request outside the reserved prefix. Takes the
/// whole `Config`: the phases read most of its parts (see `RequestCtx`).
pub async fn handle(req: &Request, io: Io<'_>, config: &Config) -> Response {
    let log = io.log;
    let mut rc = extract(req, io, config);
    identify(&mut rc);
    let (found, obs) = consult(&mut rc).await;
    let scored = score(&mut rc, &found);
    if scored.status == IntelStatus::Degraded && config.consult.fail_closed {
        // FAIL_MODE=closed: the operator prefers no answer to an unscored
        // one. Counted (degraded and fail-closed), so the degraded-share alert sees it.
        record_sample(&rc, &found, &scored, &Answer::FailedClosed, None);
        // A consult that recorded the observation (stale lists fail closed
        // too) published events all the same.
        if let Some(recorded) = found.recorded {
            record::forward_events(rc.io, recorded);
        }
        let e = Error::fail_closed();
        log.failed("decide", &e);
        note_subject(&rc);
        return respond::error(&e);
    }
    let (decision, stepped_up) = decide(&rc, &found, &scored);
    let (decision, taken) = limit(&rc, decision).await;
    let action = decision.action;
    let sent = now_ms();
    let result = match (action, decision.rule, taken) {
        (Action::Forward, ..) => forward(&rc, &found, &scored, &decision).await,
        (Action::RateLimit, Some(d), Some(t)) => Ok(rate_limited(&rc, d.rule, &t)),
        (action, ..) => Ok(respond(&rc, &scored, &decision, stepped_up, action)),
    };
    let status = result.as_ref().map_or_else(|e| e.status, Response::status);
    let answer = match action {
        Action::Forward => Answer::Forwarded { status, latency_ms: now_ms() - sent },
        _ => Answer::Enforced { action, status },
    };
    // The rule's hit, for its counters (analytics, /metrics, the dashboard).
    let hit = decision.rule.map(|d| RuleSample {
        key: rule_key(&d.rule.id, d.rule.action.as_str()),
        enforces: d.would != Action::Forward,
        dry_run: d.rule.dry_run,
    });
    record(&rc, found, &scored, obs, &answer, hit);
    let response = match result {
        Ok(res) => res,
        Err(e) => {
            log.failed("origin", &e);
            note_subject(&rc);
            return respond::error(&e);
        }
    };
    note_subject(&rc);
    if let (Some(value), Some(id)) = (response.headers().get(stepup::HEADER).ok().flatten(), &rc.identity) {
        edge_stepup::take(rc.io, rc.config, id, visitor_key(&rc), &value);
    }
    forward::finish(response, rc.visitor.as_ref().and_then(|v| v.set_cookie.as_deref()))
}

fn visitor_key<'a>(rc: &'a RequestCtx) -> Option<&'a str> {
    rc.visitor.as_ref().map(|v| v.key.as_str())
}

/// Names the subject (display form only) in the request's log line, if
/// there is going to be one: nothing is copied for a quiet request.
fn note_subject(rc: &RequestCtx) {
    if let (true, Some(id)) = (rc.io.log.noteworthy(), &rc.identity) {
        rc.io.log.subject(&id.display);
    }
}

/// Phase 1: the client IP, `request.cf` and the request's facts (never fails:
/// every field is optional).
fn extract<'a>(req: &'a Request, io: Io<'a>, config: &'a Config) -> RequestCtx<'a> {
    let started = now_ms();
    crate::platform::count_request();
    let (ip, cf, request) = extract::facts(req, config.trust_x_real_ip);
    let cookies = extract::cookie_header(req);
    let verified_bot = cf_verified(&cf);
    let fingerprint = fingerprint::id(&cf, &request.header_names);
    RequestCtx {
        req,
        io,
        config,
        started,
        ip,
        cf,
        request,
        cookies,
        fingerprint,
        identity: None,
        own_key: None,
        widened: false,
        visitor: None,
        signals: Vec::new(),
        verified_bot,
    }
}

fn cf_verified(cf: &CfFacts) -> bool {
    cf.verified_bot == Some(true)
}

/// Phase 2: the subject (profile key, hashed with `IP_HASH_KEY`), the visitor
/// if configured, and the signals the request shows by itself.
/// A new subject past the rotation budget of its /48 or ASN is identified
/// as its widened subject and carries `subnet_rotation` (`edge::rotation`).
fn identify(rc: &mut RequestCtx) {
    if let Some(s) = rc.ip.map(|ip| rotation::subject(rc.config, ip, rc.cf.asn)) {
        rc.widened = s.widened;
        rc.own_key = Some(s.own_key);
        rc.identity = Some(s.identity);
    }
    rc.visitor = visitor::identify(rc.cookies.as_deref(), &rc.config.visitor, &rc.config.secrets);
    rc.signals = signals::request_signals(&rc.cf, &rc.request, &rc.config.signals);
    if rc.widened {
        rc.signals.push(Signal { reason: Reason::SubnetRotation, points: None });
    }
}

/// Phase 3: the allow/block lists (a block-listed request carries the
/// `blocklisted` signal from here on), then the profile and the visitor's
/// travel, concurrently, within the mode's budget. Also returns the
/// observation of the request (consistent mode records it while consulting;
/// fast mode when the verdict cache misses: `Found::recorded`).
async fn consult(rc: &mut RequestCtx<'_>) -> (Found, Observation) {
    // Both KV reads at once: a cold isolate waits for the slower, not the
    // sum; with them, the crawler ranges, read only when the User-Agent
    // claims a crawler.
    let (io, config) = (rc.io, rc.config);
    let claims_crawler = crawlers::claimed(rc.request.user_agent.as_deref()).is_some();
    let ranges = async move {
        if claims_crawler {
            Some(edge_crawlers::ranges(io, config.consult.timeout_ms).await)
        } else {
            None
        }
    };
    // A Web Bot Auth signature is checked with a key directory the isolate
    // already holds (no I/O; a missing one is fetched after the response).
    let req = rc.req;
    let signed = async move {
        if config.signed_agents == Trust::Off {
            return None;
        }
        signed_agent::verified(io, config, req).await
    };
    // The fingerprints the hub flagged, read only by a request that has one.
    let has_fingerprint = rc.fingerprint.is_some();
    let flagged = async move {
        if has_fingerprint {
            let slide_ms = (config.analytics.slide_s.clamp(1, 60) * 1000) as f64;
            Some(edge_fingerprint::sets(io, config.consult.timeout_ms, slide_ms).await)
        } else {
            None
        }
    };
    let ((lists, rules), (ranges, (signed, flagged))) = join(
        join(lists::effective(io, &config.lists, &config.consult), rules::effective(io, config)),
        join(ranges, join(signed, flagged)),
    )
    .await;
    if let Some(r) = ranges {
        verify_crawler(rc, &r);
    }
    if let Some(agent) = signed {
        if !rc.signals.iter().any(|s| s.reason == Reason::SignedAgent) {
            rc.signals.push(Signal { reason: Reason::SignedAgent, points: None });
        }
        // Anyone can publish a key directory: a signature says who is
        // asking, and only an agent the operator trusts is treated like a
        // verified crawler (docs/enforcement.md, "Signed agents").
        if config.signed_agents_trusted.contains(&agent) {
            rc.signals.retain(|s| !is_crawler_nature(s.reason) && s.reason != Reason::BotImpersonation);
            rc.verified_bot = true;
        }
    }
    if let (Some(fp), Some(sets)) = (&rc.fingerprint, &flagged) {
        let ua = rc.request.user_agent.as_deref();
        for reason in fingerprint::reasons(fp, sets, ua, rc.verified_bot) {
            rc.signals.push(Signal { reason, points: None });
        }
    }
    if let Some(e) = &lists.error {
        rc.io.log.warn("lists", format_args!("kept the last lists read: {e}"));
    }
    let list = lists.lists.check(rc.ip, rc.cf.asn, rc.cf.country.as_deref());
    let (rules, rules_fresh) = (rules.rules, rules.fresh);
    if list == ListVerdict::Blocked {
        rc.signals.push(Signal { reason: Reason::Blocklisted, points: None });
    }
    let visitor = rc.visitor.as_ref().map(|v| v.key.as_str());
    let mut obs = outcome::observation(rc.started, &rc.request, &rc.cf, &rc.signals, visitor);
    obs.returning = rc.visitor.as_ref().is_some_and(|v| v.set_cookie.is_none());
    let (profile, status, (travel, visitor_step_ups), consult, recorded) = match &rc.identity {
        None => (ProfileVerdict::unknown_subject(), IntelStatus::Ok, (None, Vec::new()), Consult::Cached, None),
        Some(id) => consult_profile(rc, id, &obs).await,
    };
    // Time only advances across I/O in Workers, so this is the consult's I/O wait.
    // Stale lists or rules (KV failed or was late for 30 s, or never
    // answered this isolate) mark the request degraded alike.
    let consulted = Consulted { consult, consult_ms: now_ms() - rc.started, lists_stale: !lists.fresh || !rules_fresh };
    (Found { list, profile, status, travel, visitor_step_ups, consulted, recorded, rules }, obs)
}

/// What a crawler is by nature, so not held against a verified one: it is
/// automated, hosted, and no browser (Googlebot's "Mozilla/5.0 (compatible;
/// ...)" User-Agent sends no Accept-Language).
fn is_crawler_nature(reason: Reason) -> bool {
    matches!(reason, Reason::AutomationUa | Reason::HostingAsn | Reason::MissingBrowserHeaders)
}

/// A User-Agent that claims a well-known crawler (`intel::crawlers`): from
/// inside its ranges it is `verified_bot`, exempt like Cloudflare's verified
/// bots, and what it is by nature is dropped (`is_crawler_nature`); from
/// outside them, `bot_impersonation`.
fn verify_crawler(rc: &mut RequestCtx, ranges: &Ranges) {
    let ua = rc.request.user_agent.as_deref();
    match crawlers::check(ua, rc.ip, rc.cf.asn, cf_verified(&rc.cf), ranges) {
        Claim::Verified(_) => {
            rc.signals.retain(|s| !is_crawler_nature(s.reason));
            rc.signals.push(Signal { reason: Reason::VerifiedBot, points: None });
            rc.verified_bot = true;
        }
        Claim::Impersonation(_) => rc.signals.push(Signal { reason: Reason::BotImpersonation, points: None }),
        Claim::None => {}
    }
}

/// What the visitor's object said: its travel finding and step-ups.
type VisitorFound = (Option<TravelFinding>, Vec<StepUp>);

/// The profile verdict and the visitor's travel finding and step-ups, asked
/// concurrently; with whether the consult recorded the observation (fast mode).
async fn consult_profile(
    rc: &RequestCtx<'_>,
    id: &Identity,
    obs: &Observation,
) -> (ProfileVerdict, IntelStatus, VisitorFound, Consult, Option<Recorded>) {
    let (io, settings) = (rc.io, &rc.config.consult);
    let subject = &id.key;
    let profile = async {
        match settings.mode {
            RiskMode::Fast => {
                let answer = consult::fast(io, settings, id, obs).await;
                (answer.verdict, answer.recorded)
            }
            RiskMode::Consistent => {
                (consult::consistent(io, settings, id, obs.clone()).await.map(|v| (v, false)), None)
            }
        }
    };
    let sighting = rc
        .visitor
        .as_ref()
        .and_then(|v| outcome::sighting(&rc.cf, &rc.signals, &id.display, rc.started).map(|s| (v.key.clone(), s)));
    let travel = async {
        let Some((key, sighting)) = sighting else { return (None, Vec::new()) };
        let ask = {
            let env = io.env.clone();
            let subject = subject.as_str().to_string();
            async move { visitor::sight(&env, &key, &subject, sighting).await }
        }
        .boxed_local();
        let answer = match settings.mode {
            RiskMode::Consistent => ask.await,
            RiskMode::Fast => {
                let budget = Delay::from(Duration::from_millis(u64::from(settings.timeout_ms)));
                match select(ask, budget).await {
                    Either::Left((a, _)) => a,
                    Either::Right(((), pending)) => {
                        // The sighting is still recorded (and any finding reported).
                        io.ctx.wait_until(pending.map(|_| ()));
                        return (None, Vec::new());
                    }
                }
            }
        };
        match answer {
            Ok(a) => (a.finding, a.step_ups),
            Err(e) => {
                io.log.warn("visitor", &e);
                (None, Vec::new())
            }
        }
    };
    let ((profile, recorded), travel) = join(profile, travel).await;
    match profile {
        Ok((v, cached)) => (v, IntelStatus::Ok, travel, if cached { Consult::Cached } else { Consult::Ok }, recorded),
        Err(e) => {
            // Every error here is the platform's (`Error::fails_open`): the
            // request goes on without the profile, degraded.
            io.log.warn("consult", &e);
            let outcome = if e.timed_out { Consult::Timeout } else { Consult::Error };
            (ProfileVerdict::unknown_subject(), IntelStatus::Degraded, travel, outcome, recorded)
        }
    }
}

/// Phase 4: the request's own signals plus what the lists and the profile
/// say. Without the profile the level is unknown; stale lists (KV failed or
/// was late) leave the score as it is but still mark the request degraded.
fn score(rc: &mut RequestCtx, found: &Found) -> Scored {
    rc.signals.extend(found.profile.signals.iter().cloned());
    if found.travel.is_some() {
        rc.signals.push(Signal { reason: Reason::ImpossibleTravel, points: None });
    }
    let verdict = score::score(&rc.signals, &rc.config.weights);
    let level = if found.status == IntelStatus::Degraded { Level::Unknown } else { verdict.level };
    let status = if found.consulted.lists_stale { IntelStatus::Degraded } else { found.status };
    Scored { verdict, level, status }
}

/// Phase 5: forward, challenge or block (`intel::enforce`): the lists, then
/// the first per-route rule that matches (`intel::rules`), then the mode,
/// then the origin's step-ups (true when one made the answer stricter).
fn decide<'f>(rc: &RequestCtx, found: &'f Found, scored: &Scored) -> (Decision<'f>, bool) {
    let config = rc.config;
    let cleared_at = cleared_at(rc);
    let cleared = cleared_at.is_some();
    let input = DecideInput {
        mode: config.enforce.mode,
        score: scored.verdict.score,
        challenge_at: config.enforce.challenge_at,
        block_at: config.enforce.block_at,
        verified_bot: rc.verified_bot,
        list: found.list,
        cleared,
        widened: rc.widened,
    };
    let rule = if found.rules.is_empty() {
        None
    } else {
        let reasons: Vec<_> = scored.verdict.reasons().collect();
        first_match(
            &found.rules,
            &RuleInput {
                path: &rc.request.path,
                method: &rc.request.method,
                country: rc.cf.country.as_deref(),
                asn: rc.cf.asn,
                reasons: &reasons,
                score: scored.verdict.score,
            },
        )
    };
    let decision = enforce::decide_policy(&input, rule);
    // Then what the origin asked for this client (`X-Intel-Step-Up`): the
    // profile's and the visitor's step-ups, and those this isolate took
    // before they reached either object.
    let Some(id) = &rc.identity else { return (exempt_paths(rc, decision), false) };
    let held = edge_stepup::held(id.key.as_str(), visitor_key(rc));
    let all = found.profile.step_ups.iter().chain(&found.visitor_step_ups).chain(&held);
    let demand = stepup::demand(all, &PathForms::of(&rc.request.path), cleared_at, rc.started);
    let stepped = enforce::step_up(decision, demand, found.list);
    (exempt_paths(rc, stepped), stepped.action != decision.action)
}

/// `robots.txt` and `/.well-known/` are never challenged, whatever decided
/// it (score, rule, step-up): crawlers and agents must read them. A block
/// or a 429 still applies.
fn exempt_paths<'f>(rc: &RequestCtx, d: Decision<'f>) -> Decision<'f> {
    if d.action == Action::Challenge && crawlers::never_challenged(&rc.request.path) {
        Decision { action: Action::Forward, ..d }
    } else {
        d
    }
}

/// Phase 5b: a matched rate-limit rule counts the request with its limiter
/// (`edge::ratelimit`); over the limit it becomes a 429 (or, in a dry run,
/// a forward the origin learns was `limited`). A limiter that cannot answer
/// lets the request through: the request path fails open, as for a profile.
async fn limit<'f>(rc: &RequestCtx<'_>, decision: Decision<'f>) -> (Decision<'f>, Option<Taken>) {
    let Some(d) = decision.rule.filter(|d| d.rule.action == RuleAction::RateLimit) else { return (decision, None) };
    let (Some(limit), Some(id)) = (&d.rule.rate_limit, &rc.identity) else { return (decision, None) };
    // A visitor id made for this request (no cookie came) is no key: every
    // cookie-less request would be a first one. Such requests count by subject.
    let visitor = rc.visitor.as_ref().filter(|v| v.set_cookie.is_none()).map(|v| v.key.as_str());
    let key = ratelimit::key_of(limit.by, id.key.as_str(), visitor, rc.cf.asn);
    match ratelimit::take(rc.io, &d.rule.id, limit, &key, rc.config.consult.timeout_ms).await {
        Ok(t) if !t.allowed => (enforce::over_limit(decision), Some(t)),
        Ok(t) => (decision, Some(t)),
        Err(e) => {
            rc.io.log.warn("rate limit", &e);
            (decision, None)
        }
    }
}

/// The 429 of a rate-limit rule, with its `RateLimit` fields.
fn rate_limited(rc: &RequestCtx, rule: &RouteRule, taken: &Taken) -> Response {
    let accept = extract::header(rc.req, "accept").unwrap_or_default();
    let (limit, period) = rule.rate_limit.as_ref().map_or((0, 0), |l| (l.requests, l.period_seconds));
    respond::rate_limited(&accept, &rule.id, limit, period, taken)
}

/// When the request's clearance (a solved challenge) was issued (ms), if it
/// holds a valid one for what challenges are bound to (`CLEARANCE_BINDING`:
/// its visitor and browser family, then its own subject).
fn cleared_at(rc: &RequestCtx) -> Option<f64> {
    let key = rc.config.secrets.challenge_key.as_deref()?;
    let value = rc.cookies.as_deref().and_then(|h| cookie(h, CLEARANCE_COOKIE))?;
    let bound = bound_to(rc);
    clearance_issued(key, &bound, value, rc.started).or_else(|| {
        // A clearance bound to the subject (issued before a visitor cookie
        // existed, or before `CLEARANCE_BINDING=visitor`) still holds there.
        (bound != own_key(rc)).then(|| clearance_issued(key, own_key(rc), value, rc.started)).flatten()
    })
}

/// What this request's challenge and clearance are bound to
/// (`intel::challenge::bound_to`): only a visitor whose cookie came with
/// the request counts (one minted now is not in the browser yet).
fn bound_to(rc: &RequestCtx) -> String {
    let visitor = rc.visitor.as_ref().filter(|v| v.set_cookie.is_none()).map(|v| v.key.as_str());
    challenge::bound_to(rc.config.enforce.binding, own_key(rc), visitor, rc.request.user_agent.as_deref())
}

/// What a challenge and a clearance are bound to: the request's own
/// subject, never the widened one (one solved challenge clears one device).
fn own_key<'a>(rc: &'a RequestCtx) -> &'a str {
    rc.own_key.as_deref().unwrap_or("")
}

/// Phase 6a: to the origin, with our headers replacing any the client sent
/// (signed when `HEADER_SIGNING_KEY` is set: `intel::signature`).
async fn forward(
    rc: &RequestCtx<'_>,
    found: &Found,
    scored: &Scored,
    decision: &Decision<'_>,
) -> Result<Response, Error> {
    let rule = decision.rule.map(|d| RuleHeader {
        id: &d.rule.id,
        action: d.rule.action.as_str(),
        dry_run: d.rule.dry_run,
        limited: d.would == Action::RateLimit,
    });
    let mut ours = headers::render(&HeaderInput {
        verdict: &scored.verdict,
        level: scored.level,
        threat: found.profile.threat,
        reputation: found.profile.reputation,
        cf: &rc.cf,
        status: scored.status,
        rule,
        cleared: cleared_at(rc).map(|ms| (ms / 1000.0) as u64),
        fingerprint: rc.fingerprint.as_deref(),
    });
    if let Some(k) = &rc.config.secrets.header_signing_key {
        // The address the verdict is about, signed with it.
        if let Some(ip) = rc.ip {
            ours.push((signature::CLIENT_IP, ip.to_string()));
        }
        let url = forward::target_url(rc.req, &rc.config.origin);
        let t = (rc.started / 1000.0) as u64;
        if let Some(sig) = signature::sign(k, &rc.request.method, &url, t, &ours) {
            ours.push((signature::SIGNATURE, sig));
        }
    }
    forward::send(rc.req, &rc.config.origin, &ours).await
}

/// Phase 6b: the edge's own answer, a block page or a challenge. A
/// challenge's difficulty grows with the score; why it was issued (the
/// origin's step-up, the rule, or the score, with the top reason) goes into
/// its token and its counters (`intel::challenge`).
fn respond(rc: &RequestCtx, scored: &Scored, decision: &Decision, stepped_up: bool, action: Action) -> Response {
    let accept = extract::header(rc.req, "accept").unwrap_or_default();
    if action != Action::Challenge {
        return respond::blocked(&accept);
    }
    let e = &rc.config.enforce;
    let pow = Difficulty { base: e.difficulty, max: e.difficulty_max, step: e.difficulty_step };
    let trigger = match decision.rule {
        _ if stepped_up => "step_up".to_string(),
        Some(d) if d.would == Action::Challenge => format!("rule:{}", d.rule.id),
        _ => "score".to_string(),
    };
    let reason = scored.verdict.contributions.iter().find(|c| c.points > 0).map_or("none", |c| c.reason.code());
    let label = Why { trigger, reason: reason.to_string() }.label();
    let bound = bound_to(rc);
    let ask = ChallengeAsk {
        bound: &bound,
        return_to: &rc.request.path,
        now_ms: rc.started,
        difficulty: pow.for_score(scored.verdict.score, e.challenge_at),
        label: &label,
    };
    record::challenge(rc.io, rc.batching(), &label, Outcome::Issued, rc.started);
    let response = respond::challenge(&accept, rc.config, &ask);
    // The visitor cookie goes with the challenge too, so that a clearance
    // bound to the visitor can be issued when the answer comes back.
    if let Some(set_cookie) = rc.visitor.as_ref().and_then(|v| v.set_cookie.as_deref()) {
        let _ = response.headers().append("set-cookie", set_cookie);
    }
    response
}

/// Phase 7: the sample for the analytics and the observation for the
/// profile, after the response (`ctx.wait_until`, coalesced: `record`).
/// Fast mode queues the observation with its answer unless the consult
/// already recorded it (a cache miss: docs/profiles.md, "One call per new
/// subject"); then only an answer the profile counts follows it.
fn record(rc: &RequestCtx, found: Found, scored: &Scored, obs: Observation, answer: &Answer, hit: Option<RuleSample>) {
    let Some(id) = &rc.identity else { return };
    record_sample(rc, &found, scored, answer, hit);
    let io = rc.io;
    match (rc.config.consult.mode, found.recorded) {
        (RiskMode::Fast, None) => {
            let obs = outcome::answered(obs, answer);
            let low = scored.level == Level::Low;
            record::observation(io, rc.batching(), id, obs, low);
        }
        (RiskMode::Fast, Some(recorded)) => {
            // After the sample: the events join the analytics report it opened.
            record::forward_events(io, recorded);
            if outcome::needs_follow_up(answer) {
                let cache = Some(rc.config.consult.clone());
                io.ctx.wait_until(record::status(io.env.clone(), id.clone(), rc.started, *answer, cache));
            }
        }
        // The observation itself was recorded before forwarding (consult).
        (RiskMode::Consistent, _) => {
            io.ctx.wait_until(record::status(io.env.clone(), id.clone(), rc.started, *answer, None));
        }
    }
}

/// A uniform random priority for the preview's bottom-k sample (0 if the
/// random source fails: such a request is then always kept, a bias too
/// small to matter).
fn random_priority() -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

fn record_sample(rc: &RequestCtx, found: &Found, scored: &Scored, answer: &Answer, hit: Option<RuleSample>) {
    let Some(id) = &rc.identity else { return };
    let subject = id.key.as_str();
    let scores = (scored.verdict.score, found.profile.threat);
    let mut sample = outcome::sample(rc.started, subject, &rc.request, &rc.cf, scores, &found.consulted, answer);
    sample.rule = hit;
    if let Some(fp) = &rc.fingerprint {
        let facts = fingerprint::sample_facts(&scored.verdict, rc.request.user_agent.as_deref());
        sample.fp_ua = facts.ua;
        sample.fp_risky = facts.risky;
        sample.fp_family = Some(facts.family.to_string());
        sample.fp_reasons = facts.reasons;
        sample.fp = Some(fp.clone());
    }
    // What a policy decides on, for the what-if preview's sample.
    let facts = Facts {
        at: rc.started,
        subject: subject.to_string(),
        path: Facts::path_of(&rc.request.path),
        method: Facts::method_of(&rc.request.method),
        country: rc.cf.country.clone(),
        asn: rc.cf.asn,
        score: scored.verdict.score,
        reasons: scored.verdict.reasons().collect(),
        verified_bot: rc.verified_bot,
        list: Facts::list_code(found.list),
        widened: rc.widened,
        cleared: cleared_at(rc).is_some(),
        priority: random_priority(),
    };
    let shard = shard_of(subject, rc.config.hub.shards);
    record::sample(rc.io, rc.batching(), shard, rc.cf.continent.as_deref(), sample, facts);
}
