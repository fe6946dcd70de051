//! edgeintel: real-time IP intelligence at the edge.
//!
//! `intel` is the pure core (native tests, no platform imports); `settings`
//! is the table of variables (names, defaults, ranges, docs); `config`
//! turns the Worker's variables into a validated `Config`; `edge` is the
//! Worker glue (request path, API) and only exists in the wasm build.

pub mod bindings;
pub mod config;
pub mod intel;
pub mod settings;

/// The API's route table (`src/edge/api/mod.rs`) without its handlers, so
/// that native `cargo test` holds it against `src/openapi.json`.
#[cfg(all(test, not(target_arch = "wasm32")))]
#[path = "edge/api/mod.rs"]
mod api_routes;
#[cfg(target_arch = "wasm32")]
mod edge;
pub mod error;
pub mod log;
#[cfg(target_arch = "wasm32")]
mod objects;
#[cfg(target_arch = "wasm32")]
mod platform;

#[cfg(target_arch = "wasm32")]
mod clock;

/// The Worker's fetch entry point: everything happens in `edge::handle`,
/// which never fails (errors become responses there).
#[cfg(target_arch = "wasm32")]
#[worker::event(fetch)]
async fn fetch(req: web_sys::Request, env: worker::Env, ctx: worker::Context) -> worker::Result<web_sys::Response> {
    Ok(edge::handle(req, env, ctx).await)
}

/// The Cron Trigger's entry point: refreshes the verified crawlers' ranges
/// (`edge::scheduled`).
#[cfg(target_arch = "wasm32")]
#[worker::event(scheduled)]
async fn scheduled(_event: worker::ScheduledEvent, env: worker::Env, _ctx: worker::ScheduleContext) {
    edge::scheduled(env).await;
}
