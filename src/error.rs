//! Errors as the API reports them: `{"error": code, "message": text}` with an
//! HTTP status. Built in the core and the glue alike, turned into a response
//! in one place (`edge::respond`). Messages never contain secrets.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    pub status: u16,
    /// Stable machine-readable code, e.g. `not_found`, `config_invalid`.
    pub error: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// Seconds for a `Retry-After` header (429 answers).
    #[serde(skip)]
    pub retry_after_s: Option<u32>,
    /// The methods the resource has, for the `Allow` header of a 405 (RFC
    /// 9110); empty on every other error.
    #[serde(skip)]
    pub allow: Vec<&'static str>,
}

impl ApiError {
    pub fn new(status: u16, error: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, error, message: message.into(), retry_after_s: None, allow: Vec::new() }
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(404, "not_found", message)
    }

    /// 405 with the methods the resource has (in the route table's order):
    /// the `Allow` header is made from `allow`, the message only repeats them.
    pub fn method_not_allowed(allow: Vec<&'static str>) -> ApiError {
        let mut e = ApiError::new(405, "method_not_allowed", format!("allowed: {}", allow.join(", ")));
        e.allow = allow;
        e
    }

    /// The JSON body.
    pub fn body(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| r#"{"error":"internal","message":""}"#.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_shape() {
        let e = ApiError::not_found("no profile for \"1.2.3.4\"");
        assert_eq!(e.body(), r#"{"error":"not_found","message":"no profile for \"1.2.3.4\""}"#);
        assert_eq!(e.status, 404);
    }

    #[test]
    fn method_not_allowed_carries_its_methods() {
        let e = ApiError::method_not_allowed(vec!["GET", "HEAD"]);
        assert_eq!((e.status, e.allow.as_slice()), (405, ["GET", "HEAD"].as_slice()));
        assert_eq!(e.body(), r#"{"error":"method_not_allowed","message":"allowed: GET, HEAD"}"#);
    }
}
