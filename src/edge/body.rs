//! Reading a client's request body with a byte limit, the one place every
//! body under the prefix is read (challenge answers, events, lists).
//!
//! `arrayBuffer()` would buffer the whole body in memory before any check: a
//! few concurrent 100 MB posts would exhaust the isolate's 128 MB and kill
//! every request on it. So a declared `Content-Length` over the limit is
//! refused before anything is read, and otherwise the body stream is read
//! chunk by chunk and cancelled as soon as the total passes the limit
//! (chunked bodies, which declare no length, included): the client gets 413
//! without the Worker waiting for, or holding, the rest.

use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{ReadableStreamDefaultReader, Request};

use crate::error::ApiError;

/// Reads at most `limit` bytes of `req`'s body; 413 past it, 400 if unreadable.
pub async fn read_limited(req: &Request, limit: usize) -> Result<Vec<u8>, ApiError> {
    let declared = req.headers().get("content-length").ok().flatten().and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    let Some(stream) = req.body() else { return Ok(Vec::new()) };
    read_stream(&stream, limit).await.map_err(|e| match e {
        StreamError::TooLarge => too_large(limit),
        StreamError::Unreadable => unreadable(),
    })
}

/// Why a body stream was not read whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamError {
    TooLarge,
    Unreadable,
}

/// Reads at most `limit` bytes of a body stream (a request's, or a
/// response's: `edge::crawlers` reads published range files with it),
/// chunk by chunk, cancelling it as soon as the total passes the limit.
pub async fn read_stream(stream: &web_sys::ReadableStream, limit: usize) -> Result<Vec<u8>, StreamError> {
    let reader = ReadableStreamDefaultReader::new(stream).map_err(|_| StreamError::Unreadable)?;
    let mut out = Vec::new();
    loop {
        let chunk = JsFuture::from(reader.read()).await.map_err(|_| StreamError::Unreadable)?;
        let done = js_sys::Reflect::get(&chunk, &JsValue::from_str("done")).ok().and_then(|d| d.as_bool());
        if done != Some(false) {
            return Ok(out);
        }
        let value = js_sys::Reflect::get(&chunk, &JsValue::from_str("value")).map_err(|_| StreamError::Unreadable)?;
        let bytes: js_sys::Uint8Array = value.dyn_into().map_err(|_| StreamError::Unreadable)?;
        // Checked before copying: an oversized chunk never enters wasm memory.
        if out.len().saturating_add(bytes.length() as usize) > limit {
            // Not awaited: the answer does not wait for the stream to wind down.
            let _ = reader.cancel();
            return Err(StreamError::TooLarge);
        }
        out.extend_from_slice(&bytes.to_vec());
    }
}

pub fn too_large(limit: usize) -> ApiError {
    ApiError::new(413, "payload_too_large", format!("bodies here are limited to {limit} bytes"))
}

fn unreadable() -> ApiError {
    ApiError::new(400, "unreadable_body", "the body could not be read")
}
