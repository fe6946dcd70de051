//! The request path (SPEC section 1) as named phases in one function, sharing
//! one per-request context: extract, identify, consult, score, decide,
//! forward, record. Requests under the reserved prefix go to `api` instead and
//! are never forwarded.
//!
//! Failure semantics: fail open. Nothing here may panic (a panic resets the
//! wasm instance and every co-located Durable Object with it).

mod api;
mod extract;
mod forward;
mod respond;

use std::cell::RefCell;
use std::net::IpAddr;
use std::rc::Rc;

use web_sys::{Request, Response};
use worker::{Context, Env};

use crate::config::{Config, ConfigError, Enforce};
use crate::intel::facts::{CfFacts, RequestFacts};
use crate::intel::headers::{self, HeaderInput, IntelStatus};
use crate::intel::ip::{subject_of, SubjectKey};
use crate::intel::score::{self, Verdict};
use crate::intel::signals;

/// Neutral values while no profile exists (the profiles issue fills them).
const NO_THREAT: u8 = 0;
const NEUTRAL_REPUTATION: u8 = 50;

/// Everything the phases learn about one request.
// `ip`, `request` and `subject` are read by the record phase (profiles issue).
#[allow(dead_code)]
pub struct RequestContext {
    /// Parsed client IP, when the request carried a valid one.
    pub ip: Option<IpAddr>,
    pub cf: CfFacts,
    pub request: RequestFacts,
    /// Identify: the profile key.
    pub subject: Option<SubjectKey>,
    /// Score: the verdict and the profile scores it used.
    pub verdict: Verdict,
    pub threat: u8,
    pub reputation: u8,
    /// `degraded` when the profile could not be consulted.
    pub status: IntelStatus,
}

pub async fn handle(req: Request, env: Env, _ctx: Context) -> Response {
    let config = match load_config(&env) {
        Ok(c) => c,
        Err(e) => return respond::config_error(&e),
    };
    let path = extract::path(&req);
    if api::owns(&config, &path) {
        return api::route(&req, &config).await;
    }

    // 1. Extract facts (never fails: every field is optional).
    let (ip, cf, request) = extract::facts(&req, &config);
    // 2. Identify.
    let subject = ip.map(subject_of);
    // 3. Consult: profiles arrive with the next issue; the request stands alone.
    let (threat, reputation, status) = (NO_THREAT, NEUTRAL_REPUTATION, IntelStatus::Ok);
    // 4. Score.
    let found = signals::request_signals(&cf, &request, &config.signals);
    let verdict = score::score(&found, &config.weights);
    let cx = RequestContext {
        ip,
        cf,
        request,
        subject,
        verdict,
        threat,
        reputation,
        status,
    };
    // 5. Decide: monitor only in this version.
    match config.enforce {
        Enforce::Off => {}
    }
    // 6. Forward, with our headers replacing any the client sent.
    let ours = headers::render(&HeaderInput {
        verdict: &cx.verdict,
        level: cx.verdict.level,
        threat: cx.threat,
        reputation: cx.reputation,
        cf: &cx.cf,
        status: cx.status,
    });
    // 7. Record: arrives with the profiles issue (in ctx.wait_until).
    match forward::send(&req, &config, &ours).await {
        Ok(res) => res,
        Err(e) => respond::origin_unreachable(&e),
    }
}

thread_local! {
    /// Vars cannot change within an isolate, so they are parsed once.
    static CONFIG: RefCell<Option<Rc<Result<Config, ConfigError>>>> = const { RefCell::new(None) };
}

fn load_config(env: &Env) -> Result<Rc<Config>, ConfigError> {
    let cached = CONFIG.with(|c| c.borrow().clone());
    let parsed = match cached {
        Some(p) => p,
        None => {
            let p = Rc::new(Config::from_vars(|k| var(env, k)));
            CONFIG.with(|c| *c.borrow_mut() = Some(p.clone()));
            p
        }
    };
    match parsed.as_ref() {
        Ok(c) => Ok(Rc::new(c.clone())),
        Err(e) => Err(e.clone()),
    }
}

/// A `[vars]` value or a secret (both are plain strings to the Worker).
fn var(env: &Env, name: &str) -> Option<String> {
    env.var(name)
        .ok()
        .map(|v| v.to_string())
        .or_else(|| env.secret(name).ok().map(|v| v.to_string()))
}
