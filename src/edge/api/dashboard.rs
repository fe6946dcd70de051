//! The dashboard: static files from `www/` (the `ASSETS` binding) under the
//! prefix only, so the site's own paths are never shadowed. The files carry
//! no data (`Auth::Files`); everything they show comes from the
//! authenticated API.

use web_sys::Response;

use crate::error::ApiError;

use super::common::{fetch_asset, Call};

/// `/_intel` -> `/_intel/`, so the page's relative URLs resolve under the prefix.
pub async fn redirect(c: Call<'_>) -> Result<Response, ApiError> {
    let init = web_sys::ResponseInit::new();
    init.set_status(308);
    let headers = web_sys::Headers::new().map_err(|_| ApiError::new(500, "internal", "headers"))?;
    let _ = headers.set("location", &format!("{}/", c.config.intel_prefix));
    init.set_headers(headers.as_ref());
    Response::new_with_opt_str_and_init(None, &init).map_err(|_| ApiError::new(500, "internal", "redirect"))
}

/// Only the page and its bundle: `/`, `/index.html` and `/dist/<name>` with a
/// plain file name (the table's rows, and `dashboard_file` for the name).
/// Anything else in www/ (the sources, and api/openapi.json, which only the
/// authenticated route serves) is not reachable here, whatever its spelling
/// (`%2F`, `//`, `%61pi`).
pub async fn file(c: Call<'_>) -> Result<Response, ApiError> {
    let missing = || ApiError::not_found(format!("no route or file for {}{}", c.config.intel_prefix, c.path));
    let file = if c.path == "/" { "/index.html" } else { c.path };
    if !dashboard_file(file) {
        return Err(missing());
    }
    let res = fetch_asset(c.io.env, file).await?;
    if res.status_code() == 404 {
        return Err(missing());
    }
    // The asset's headers may be immutable: copy them into a new response.
    let res: Response = res.into();
    let headers =
        web_sys::Headers::new_with_headers(&res.headers()).map_err(|_| ApiError::new(500, "internal", "headers"))?;
    for (name, value) in DASHBOARD_HEADERS {
        let _ = headers.set(name, value);
    }
    let init = web_sys::ResponseInit::new();
    init.set_status(res.status());
    init.set_headers(headers.as_ref());
    Response::new_with_opt_readable_stream_and_init(res.body().as_ref(), &init)
        .map_err(|_| ApiError::new(500, "internal", "dashboard response"))
}

/// Security headers of the dashboard's files. The page shows every profile
/// once the token is entered, so: only its own scripts and styles (no inline
/// script or style attribute: an injected string cannot run), its own API and
/// streams, no framing (clickjacking), no MIME sniffing, no Referer.
const DASHBOARD_HEADERS: [(&str, &str); 3] = [
    (
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
];

/// The files `file` serves.
fn dashboard_file(file: &str) -> bool {
    let plain = |name: &str| {
        !name.is_empty()
            && !name.starts_with('.')
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    };
    file == "/index.html" || file.strip_prefix("/dist/").is_some_and(plain)
}
