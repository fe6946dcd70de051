//! The Worker's entry: the configuration, then either edgeintel's own API
//! (requests under the reserved prefix, never forwarded: `api`) or the
//! request path's phases (`request`). The request's one log line is made
//! here (`crate::log`): printed when the request ends, only if something
//! below noted a failure.

mod api;
mod body;
mod consult;
mod extract;
mod forward;
mod lists;
mod ratelimit;
mod record;
mod request;
mod respond;
mod rotation;
mod rules;
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
