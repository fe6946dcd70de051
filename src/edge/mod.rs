//! The Worker's entry: the configuration, then either edgeintel's own API
//! (requests under the reserved prefix, never forwarded: `api`) or the
//! request path's phases (`request`).

mod api;
mod body;
mod consult;
mod extract;
mod forward;
mod lists;
mod record;
mod request;
mod respond;
mod visitor;

use web_sys::{Request, Response};
use worker::{Context, Env};

use crate::platform;

pub async fn handle(req: Request, env: Env, ctx: Context) -> Response {
    let config = match platform::config(&env) {
        Ok(c) => c,
        Err(e) => return respond::config_error(&e),
    };
    let path = extract::path(&req);
    if api::owns(&config, &path) {
        return api::route(&req, &env, &ctx, &config).await;
    }
    request::handle(&req, &env, &ctx, &config).await
}
