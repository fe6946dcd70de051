//! `GET /health/intelligence`: liveness. Anyone may call it (`Auth::Open`:
//! answered before the block list and the limiter), so it answers from the
//! isolate alone: no Durable Object, no KV (the window's numbers are in the
//! authenticated `GET /api/performance/health`), and nothing about any IP.

use serde_json::json;
use web_sys::Response;

use crate::clock::now_ms;
use crate::edge::respond;
use crate::error::ApiError;

use super::common::{iso, Call};

pub async fn liveness(_: Call<'_>) -> Result<Response, ApiError> {
    Ok(respond::json(
        200,
        &json!({
            "status": "ok",
            "service": "edgeintel",
            "version": env!("CARGO_PKG_VERSION"),
            "timestamp": iso(now_ms()),
        }),
    ))
}
