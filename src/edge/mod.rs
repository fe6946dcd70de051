//! The Worker's entry: the configuration, then either edgeintel's own API
//! (requests under the reserved prefix, never forwarded: `api`) or the
//! request path's phases (`request`). The request's one log line is made
//! here (`crate::log`): printed when the request ends, only if something
//! below noted a failure.

mod api;
pub(crate) mod body;
mod consult;
pub(crate) mod crawlers;
mod extract;
mod fingerprint;
mod forward;
mod kv_cached;
mod lists;
mod ratelimit;
mod record;
mod request;
mod respond;
mod rotation;
mod rules;
mod signed_agent;
mod stepup;
mod verdicts;
mod visitor;

use web_sys::{Request, Response};
use worker::{Context, Env};

use crate::error::Error;
use crate::log::Log;
use crate::platform;

/// The request's platform handles, which travel together through the glue:
/// the bindings (`Env`), the request's `Context` (`wait_until`) and its log
/// line. Copied, never cloned: everything in it is borrowed from `handle`.
#[derive(Clone, Copy)]
pub struct Io<'a> {
    pub env: &'a Env,
    pub ctx: &'a Context,
    pub log: &'a Log,
}

/// The Cron Trigger (`[triggers] crons` in wrangler.toml): refreshes the
/// well-known crawlers' ranges into KV (`edge::crawlers::refresh`). An
/// invalid configuration refreshes nothing (its requests answer 500 anyway).
pub async fn scheduled(env: Env) {
    match platform::config(&env) {
        Ok(config) => crawlers::refresh(&env, &config).await,
        Err(e) => crate::log::background("cron", "config", Error::config(&e).parts().body),
    }
}

pub async fn handle(req: Request, env: Env, ctx: Context) -> Response {
    let log = Log::new("edge");
    let io = Io { env: &env, ctx: &ctx, log: &log };
    let response = match platform::config(&env) {
        // Every request answers 500 `config_invalid`, naming the variable.
        Err(e) => {
            let e = Error::config(&e);
            log.failed("config", &e);
            respond::error(&e)
        }
        Ok(config) => {
            let path = extract::path(&req);
            if api::owns(&config.intel_prefix, &path) {
                api::route(&req, io, &config).await
            } else {
                request::handle(&req, io, &config).await
            }
        }
    };
    if log.noteworthy() {
        log.status(response.status());
    }
    response
}
