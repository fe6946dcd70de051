//! `GET /api/openapi.json`: the OpenAPI 3.1 document of this API, kept true
//! by the contract test and held to the route table by `super`'s tests.
//! The build copies src/openapi.json to www/api/openapi.json; it is read from
//! the `ASSETS` binding rather than compiled in (36 KB of wasm otherwise), and
//! only through this authenticated route: the dashboard's rows never serve
//! paths under `/api/`.

use web_sys::Response;

use crate::edge::respond;
use crate::error::ApiError;

use super::common::{fetch_asset, Call};

pub async fn document(c: Call<'_>) -> Result<Response, ApiError> {
    let mut res = fetch_asset(c.io.env, "/api/openapi.json").await?;
    if res.status_code() != 200 {
        return Err(ApiError::new(500, "internal", "the OpenAPI document is missing from the build"));
    }
    let text = res.text().await.map_err(|e| {
        ApiError::new(500, "internal", "the OpenAPI document could not be read").with_detail(format!("assets: {e}"))
    })?;
    Ok(respond::json_text(200, &text))
}
