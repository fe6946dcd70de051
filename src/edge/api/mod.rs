//! The API under the reserved prefix (`INTEL_PREFIX`, default `/_intel`),
//! as one route table: `ROUTES`. Every 404, every 405 and its `Allow`
//! header, the authentication a request gets and the route list the OpenAPI
//! document must match (tests below) come from it; `route` walks it and no
//! handler checks its own method or token. Nothing here is ever forwarded to
//! the origin.
//!
//! The order of checks, for every request under the prefix:
//! 1. liveness (`Auth::Open`) answers first, from the isolate alone;
//! 2. a block-listed client gets 403, whatever the route (the allow list
//!    still wins), so it can neither guess tokens nor answer challenges;
//! 3. the path's `Auth::Admin` (any path under `/api/`, known or not, and
//!    `/metrics`): 503 without an `ADMIN_TOKEN`, 429 while the caller is
//!    locked out for failed authentications, 401 without the token;
//! 4. 404 (no row has the path) or 405 with `Allow` (no row has the method);
//! 5. a stream's upgrade and credential (`Auth::Stream`: 426, 503, 429, 401);
//! 6. the handler. A 401 to a request that presented a credential is
//!    counted against its client (`auth::failed`) and recorded in its
//!    profile as an auth failure.
//!
//! One file per resource answers its rows; `common`, `auth` and `window`
//! are what they share, and `routing` is the table's pure vocabulary.
//! Dependencies point one way: this file -> resources -> helpers.
//!
//! The table and `routing` also compile natively, without the handlers
//! (`lib.rs` includes this file under `cfg(test)`), so `cargo test` holds the
//! table against `src/openapi.json`.

mod routing;

#[cfg(target_arch = "wasm32")]
mod analytics;
#[cfg(target_arch = "wasm32")]
mod auth;
#[cfg(target_arch = "wasm32")]
mod challenge;
#[cfg(target_arch = "wasm32")]
mod common;
#[cfg(target_arch = "wasm32")]
mod dashboard;
#[cfg(target_arch = "wasm32")]
mod events;
#[cfg(target_arch = "wasm32")]
mod health;
#[cfg(target_arch = "wasm32")]
mod lists;
#[cfg(target_arch = "wasm32")]
mod metrics;
#[cfg(target_arch = "wasm32")]
mod openapi;
#[cfg(target_arch = "wasm32")]
mod preview;
#[cfg(target_arch = "wasm32")]
mod profiles;
#[cfg(target_arch = "wasm32")]
mod rules;
#[cfg(target_arch = "wasm32")]
mod streams;
#[cfg(target_arch = "wasm32")]
mod webhooks;
#[cfg(target_arch = "wasm32")]
mod window;

use routing::{Auth, Method, Route};

#[cfg(target_arch = "wasm32")]
use {
    crate::clock::now_ms,
    crate::config::Config,
    crate::edge::record::{self, Batching},
    crate::edge::{extract, respond, Io},
    crate::error::Error,
    crate::intel::ip::{identify, subject_of},
    crate::intel::lists::ListVerdict,
    crate::intel::outcome,
    crate::intel::profile::Observation,
    common::Call,
    routing::{lookup, Lookup},
    web_sys::{Request, Response},
};

/// The handler column: an async function of the `Call` (natively, where
/// the handlers do not compile, nothing).
#[cfg(target_arch = "wasm32")]
type Handler = common::Handler;
#[cfg(not(target_arch = "wasm32"))]
type Handler = ();

#[cfg(target_arch = "wasm32")]
macro_rules! handler {
    ($f:path) => {
        |c| Box::pin($f(c))
    };
}
#[cfg(not(target_arch = "wasm32"))]
macro_rules! handler {
    ($f:path) => {
        ()
    };
}

const GET: &[Method] = &[Method::Get];
const GET_HEAD: &[Method] = &[Method::Get, Method::Head];
const POST: &[Method] = &[Method::Post];
const PUT: &[Method] = &[Method::Put];
const DELETE: &[Method] = &[Method::Delete];

const fn row(methods: &'static [Method], path: &'static str, auth: Auth, handler: Handler) -> Route<Handler> {
    Route { methods, path, auth, handler }
}

/// Every route under the prefix: methods, path pattern after the prefix
/// (`routing` says how patterns match), who may call it, and its handler.
/// Rows that share a path share its auth. `HEAD` is answered where it is
/// listed (as `GET`, the runtime drops the body); the OpenAPI document lists
/// every row but the dashboard's files (`Auth::Files`), without `HEAD`.
static ROUTES: &[Route<Handler>] = &[
    row(GET_HEAD, "/health/intelligence", Auth::Open, handler!(health::liveness)),
    row(POST, "/challenge/verify", Auth::Public, handler!(challenge::verify)),
    row(GET, "/challenge/wait", Auth::Public, handler!(challenge::wait)),
    row(GET_HEAD, "/metrics", Auth::Admin, handler!(metrics::prometheus)),
    row(GET, "/api/ip-intelligence/{*ip}", Auth::Admin, handler!(profiles::get)),
    row(DELETE, "/api/ip-intelligence/{*ip}", Auth::Admin, handler!(profiles::delete)),
    row(POST, "/api/events", Auth::Admin, handler!(events::post)),
    row(POST, "/api/stream-ticket", Auth::Admin, handler!(streams::issue_ticket)),
    row(GET, "/api/intelligence/stream", Auth::Stream, handler!(streams::intelligence)),
    row(GET, "/api/performance/stream", Auth::Stream, handler!(streams::performance)),
    row(GET_HEAD, "/api/intelligence/analytics", Auth::Admin, handler!(analytics::overview)),
    row(GET_HEAD, "/api/analytics/insights", Auth::Admin, handler!(analytics::insights)),
    row(GET_HEAD, "/api/analytics/patterns", Auth::Admin, handler!(analytics::patterns)),
    row(GET_HEAD, "/api/analytics/trends", Auth::Admin, handler!(analytics::trends)),
    row(GET_HEAD, "/api/analytics/anomalies", Auth::Admin, handler!(analytics::anomalies)),
    row(GET_HEAD, "/api/analytics/correlations", Auth::Admin, handler!(analytics::correlations)),
    row(GET_HEAD, "/api/analytics/fingerprints", Auth::Admin, handler!(analytics::fingerprints)),
    row(GET_HEAD, "/api/performance/health", Auth::Admin, handler!(analytics::health)),
    row(GET_HEAD, "/api/performance/alerts", Auth::Admin, handler!(analytics::alerts)),
    row(GET_HEAD, "/api/alerts/webhooks", Auth::Admin, handler!(webhooks::get)),
    row(GET_HEAD, "/api/performance/metrics/{name}", Auth::Admin, handler!(analytics::metric)),
    row(GET_HEAD, "/api/performance/metrics/{name}/history", Auth::Admin, handler!(analytics::history)),
    row(GET, "/api/config/lists", Auth::Admin, handler!(lists::get)),
    row(PUT, "/api/config/lists", Auth::Admin, handler!(lists::put)),
    row(GET, "/api/config/rules", Auth::Admin, handler!(rules::get)),
    row(PUT, "/api/config/rules", Auth::Admin, handler!(rules::put)),
    row(POST, "/api/policy/preview", Auth::Admin, handler!(preview::post)),
    row(GET, "/api/openapi.json", Auth::Admin, handler!(openapi::document)),
    row(GET_HEAD, "", Auth::Files, handler!(dashboard::redirect)),
    row(GET_HEAD, "/", Auth::Files, handler!(dashboard::file)),
    row(GET_HEAD, "/index.html", Auth::Files, handler!(dashboard::file)),
    row(GET_HEAD, "/dist/{file}", Auth::Files, handler!(dashboard::file)),
];

/// Paths under this (after the prefix) ask for the admin token before
/// saying whether they exist, so a path no row has gets 401 before its 404.
const ADMIN_NAMESPACE: &str = "/api/";

/// True when `path` is the prefix (`INTEL_PREFIX`) itself or below it.
#[cfg(target_arch = "wasm32")]
pub fn owns(prefix: &str, path: &str) -> bool {
    path == prefix || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
}

/// Answers a request `owns` said is under the prefix (see the module doc
/// for the order of checks). Errors become responses here, in `respond::error`,
/// and go into the request's log (`fail`: the platform's, never a client's).
/// Takes the whole `Config`: it goes to the handler with the `Call`.
#[cfg(target_arch = "wasm32")]
pub async fn route(req: &Request, io: Io<'_>, config: &Config) -> Response {
    let log = io.log;
    let path = extract::path(req);
    let rest = path.get(config.intel_prefix.len()..).unwrap_or("");
    let method = req.method();
    let found = lookup(ROUTES, &method, rest);
    if let Lookup::Route(route, _) = &found {
        log.route(route.path);
    }
    let call = || Call { req, io, config, path: rest, params: Default::default(), ticket: None };
    let fail = |e: Error| {
        log.failed("api", &e);
        respond::error(&e)
    };
    // Liveness first: it answers from the isolate alone (no KV, no object),
    // carries no data, and so needs neither the lists nor the limiter.
    if found.auth() == Some(Auth::Open) {
        return answer(call(), found, None).await.unwrap_or_else(fail);
    }
    let (ip, cf, request) = extract::facts(req, config.trust_x_real_ip);
    let identity = ip.map(|ip| identify(&subject_of(ip), config.secrets.ip_hash_key.as_deref()));
    // A block-listed client gets nothing under the prefix, whatever ENFORCE
    // says: no token guessing, no challenge answers (the allow list still wins).
    let lists = crate::edge::lists::effective(io, &config.lists, &config.consult).await;
    if let Some(e) = &lists.error {
        log.warn("lists", format_args!("kept the last lists read: {e}"));
    }
    if lists.lists.check(ip, cf.asn, cf.country.as_deref()) == ListVerdict::Blocked {
        return respond::blocked(&extract::header(req, "accept").unwrap_or_default());
    }
    // Failed authentications are limited per subject. Only a request that
    // presents a credential is a guess: one without any gets its 401 and is
    // neither counted nor refused (it learns nothing). A request without a
    // client address (never on Cloudflare, which always sets
    // CF-Connecting-IP; only local tools calling the runtime directly) has no
    // subject to count against, so it is not limited.
    let caller = identity.as_ref().filter(|_| auth::presents_credentials(req)).map(|id| id.key.as_str());
    match answer(call(), found, caller).await {
        Ok(res) => res,
        Err(e) => {
            if let (401, Some(id), Some(_)) = (e.status, &identity, caller) {
                let now = now_ms();
                auth::failed(id.key.as_str(), now);
                // The profile counts it as the auth failure it is (its
                // `auth_failures` signal; not an origin status), through the
                // batched observation path: no object call of its own.
                let obs =
                    Observation { admin_auth_failed: true, ..outcome::observation(now, &request, &cf, &[], None) };
                let batching = Batching { flush: &config.flush, cache: &config.consult, analytics: &config.analytics };
                record::observation(io, batching, id, obs, false);
            }
            fail(e)
        }
    }
}

/// Steps 3 to 6 of the module doc for the row (or the 404/405) `lookup`
/// found; `call` is the request as the handler will get it, without its
/// parameters and ticket yet.
#[cfg(target_arch = "wasm32")]
async fn answer<'a>(call: Call<'a>, found: Lookup<'_, 'a, Handler>, caller: Option<&str>) -> Result<Response, Error> {
    let (req, env, config, rest) = (call.req, call.io.env, call.config, call.path);
    let auth = found.auth().unwrap_or(if rest.starts_with(ADMIN_NAMESPACE) { Auth::Admin } else { Auth::Public });
    if auth == Auth::Admin {
        auth::admin(req, &config.secrets, caller)?;
    }
    let (route, params) = match found {
        Lookup::Route(route, params) => (route, params),
        Lookup::WrongMethod { allow, .. } => return Err(Error::method_not_allowed(allow)),
        Lookup::NotFound => {
            let method = req.method();
            let prefix = &config.intel_prefix;
            // Outside /api/, a GET is for a file of the dashboard.
            return Err(Error::not_found(match (auth, method.as_str()) {
                (Auth::Public, "GET" | "HEAD") => format!("no route or file for {prefix}{rest}"),
                _ => format!("no route for {method} {prefix}{rest}"),
            }));
        }
    };
    let ticket = match route.auth {
        Auth::Stream => auth::stream(req, env, &config.secrets, &config.streams, caller).await?,
        Auth::Open | Auth::Public | Auth::Files | Auth::Admin => None,
    };
    (route.handler)(Call { params, ticket, ..call }).await
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::routing::{lookup, Lookup};
    use super::*;

    /// The OpenAPI document the build serves (src/openapi.json).
    fn document() -> Value {
        serde_json::from_str(include_str!("../../openapi.json")).expect("src/openapi.json is JSON")
    }

    /// The table's operations as OpenAPI names them: (path, lower-case
    /// method); `{*ip}` is `{ip}` there, and `HEAD` goes with `GET`.
    fn table_operations() -> BTreeSet<(String, String)> {
        ROUTES
            .iter()
            .filter(|r| r.auth != Auth::Files)
            .flat_map(|r| {
                let path = r.path.replace("{*", "{");
                r.methods
                    .iter()
                    .filter(|m| **m != Method::Head)
                    .map(move |m| (path.clone(), m.as_str().to_ascii_lowercase()))
            })
            .collect()
    }

    const OPERATIONS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

    fn document_operations(doc: &Value) -> BTreeSet<(String, String)> {
        let paths = doc["paths"].as_object().expect("paths");
        paths
            .iter()
            .flat_map(|(path, item)| {
                OPERATIONS.iter().filter(|m| item.get(**m).is_some()).map(move |m| (path.clone(), m.to_string()))
            })
            .collect()
    }

    #[test]
    fn the_openapi_document_lists_exactly_the_tables_routes() {
        let table = table_operations();
        let documented = document_operations(&document());
        let undocumented: Vec<_> = table.difference(&documented).collect();
        let unrouted: Vec<_> = documented.difference(&table).collect();
        assert!(undocumented.is_empty(), "routes missing from src/openapi.json: {undocumented:?}");
        assert!(unrouted.is_empty(), "operations in src/openapi.json with no row in ROUTES: {unrouted:?}");
        assert_eq!(document()["servers"][0]["url"], "/_intel", "the document's paths are after the default prefix");
    }

    #[test]
    fn the_openapi_document_asks_for_the_token_exactly_where_the_table_does() {
        let doc = document();
        assert!(doc["security"].as_array().is_some_and(|s| !s.is_empty()), "the token is the default");
        for r in ROUTES.iter().filter(|r| r.auth != Auth::Files) {
            let path = r.path.replace("{*", "{");
            for m in r.methods.iter().filter(|m| **m != Method::Head) {
                let op = &doc["paths"][&path][m.as_str().to_ascii_lowercase()];
                let public = op["security"].as_array().is_some_and(Vec::is_empty);
                let want = matches!(r.auth, Auth::Open | Auth::Public);
                assert_eq!(public, want, "{} {path}: documented public {public}, table {:?}", m.as_str(), r.auth);
            }
        }
    }

    #[test]
    fn the_table_is_consistent() {
        let mut seen = BTreeSet::new();
        for r in ROUTES {
            for m in r.methods {
                assert!(seen.insert((r.path, m.as_str())), "{} {} twice", m.as_str(), r.path);
            }
            assert!(
                !r.methods.contains(&Method::Head) || r.methods.contains(&Method::Get),
                "HEAD without GET: {}",
                r.path
            );
            // One auth per path: it decides what a caller learns before the method is checked.
            for other in ROUTES.iter().filter(|o| o.path == r.path) {
                assert_eq!(other.auth, r.auth, "{} has two auths", r.path);
            }
            // Everything under /api/ asks for the token, as an unknown path there does.
            let api = r.path.starts_with(ADMIN_NAMESPACE);
            assert_eq!(api, matches!(r.auth, Auth::Admin | Auth::Stream) && r.path != "/metrics", "{}", r.path);
            assert!(r.path.is_empty() || r.path.starts_with('/'), "{}", r.path);
        }
    }

    /// What the API answers, as the integration tests see it: (method, path
    /// after the prefix, the row's path or the 405's Allow or 404).
    #[test]
    fn requests_find_their_row_or_their_404_or_405() {
        enum Want {
            Row(&'static str),
            Allow(&'static str, Auth),
            NotFound,
        }
        use Want::*;
        let cases = [
            ("GET", "/health/intelligence", Row("/health/intelligence")),
            ("HEAD", "/health/intelligence", Row("/health/intelligence")),
            ("POST", "/health/intelligence", Allow("GET, HEAD", Auth::Open)),
            ("GET", "/challenge/verify", Allow("POST", Auth::Public)),
            ("POST", "/metrics", Allow("GET, HEAD", Auth::Admin)),
            ("GET", "/api/ip-intelligence/198.51.100.7", Row("/api/ip-intelligence/{*ip}")),
            ("DELETE", "/api/ip-intelligence/2001:db8::/64", Row("/api/ip-intelligence/{*ip}")),
            ("PUT", "/api/ip-intelligence/192.0.2.99", Allow("GET, DELETE", Auth::Admin)),
            ("HEAD", "/api/ip-intelligence/192.0.2.99", Allow("GET, DELETE", Auth::Admin)),
            ("PATCH", "/api/events", Allow("POST", Auth::Admin)),
            ("GET", "/api/stream-ticket", Allow("POST", Auth::Admin)),
            ("POST", "/api/intelligence/stream", Allow("GET", Auth::Stream)),
            ("HEAD", "/api/performance/stream", Allow("GET", Auth::Stream)),
            ("DELETE", "/api/config/lists", Allow("GET, PUT", Auth::Admin)),
            ("POST", "/api/openapi.json", Allow("GET", Auth::Admin)),
            ("POST", "/api/analytics/insights", Allow("GET, HEAD", Auth::Admin)),
            ("GET", "/api/performance/metrics/error_rate", Row("/api/performance/metrics/{name}")),
            ("GET", "/api/performance/metrics/history", Row("/api/performance/metrics/{name}")),
            ("GET", "/api/performance/metrics/error_rate/history", Row("/api/performance/metrics/{name}/history")),
            ("GET", "/api/nothing-here", NotFound),
            ("GET", "/api/performance/metrics/a/b", NotFound),
            ("GET", "/api", NotFound),
            ("GET", "", Row("")),
            ("GET", "/", Row("/")),
            ("HEAD", "/dist/app.js", Row("/dist/{file}")),
            ("GET", "/nothing-here", NotFound),
            ("GET", "/no-such-file.js", NotFound),
            ("GET", "/api%2Fopenapi.json", NotFound),
            ("GET", "//api/openapi.json", NotFound),
            ("GET", "/%61pi/openapi.json", NotFound),
            ("GET", "/Api/openapi.json", NotFound),
            ("GET", "/src/main.js", NotFound),
            ("GET", "/dist/%2e%2e/api/openapi.json", NotFound),
        ];
        for (method, path, want) in cases {
            match (lookup(ROUTES, method, path), want) {
                (Lookup::Route(r, _), Row(p)) => assert_eq!(r.path, p, "{method} {path}"),
                (Lookup::WrongMethod { auth, allow }, Allow(a, au)) => {
                    assert_eq!((allow.join(", ").as_str(), auth), (a, au), "{method} {path}")
                }
                (Lookup::NotFound, NotFound) => {}
                (Lookup::Route(r, _), _) => panic!("{method} {path}: got the row {}", r.path),
                (Lookup::WrongMethod { allow, .. }, _) => panic!("{method} {path}: got 405 {allow:?}"),
                (Lookup::NotFound, _) => panic!("{method} {path}: got 404"),
            }
        }
    }
}
