//! Signed agents on the platform (`intel::signed_agent` is the pure part):
//! the agents' key directories, cached in the isolate and in KV and fetched
//! only in the background (never on the request path: a request whose
//! agent's directory is not cached yet is treated as unsigned, and the
//! directory is fetched after it), the nonces seen, and the Ed25519
//! verification through the runtime's WebCrypto.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::JsValue;
use web_sys::Request;
use worker::Env;

use crate::bindings;
use crate::clock::now_ms;
use crate::config::Config;
use crate::intel::keys::agent_directory_key;
use crate::intel::signed_agent::{self, Nonces, RequestParts, DIRECTORY_PATH, MAX_DIRECTORY_BYTES};
use crate::log;

use super::extract::header;
use super::Io;

/// Directories kept in the isolate.
const MAX_DIRECTORIES: usize = 256;
/// Nonces remembered in the isolate.
const MAX_NONCES: usize = 10_000;
/// A fetched directory is trusted this long (KV keeps it as long).
const DIRECTORY_TTL_MS: f64 = 3_600_000.0;
/// A directory that could not be fetched is not asked again for this long.
const FAILED_TTL_MS: f64 = 300_000.0;
/// Directory fetches one isolate starts per minute, at most.
const FETCHES_PER_MINUTE: u32 = 10;
/// A directory must answer within this.
const FETCH_TIMEOUT_MS: u64 = 5_000;

type Keys = Rc<BTreeMap<String, Vec<u8>>>;

#[derive(Clone)]
enum Directory {
    Keys {
        until: f64,
        keys: Keys,
    },
    /// Failed, or being fetched: not asked again until `until`.
    Wait {
        until: f64,
    },
}

thread_local! {
    static DIRECTORIES: RefCell<BTreeMap<String, Directory>> = const { RefCell::new(BTreeMap::new()) };
    static NONCES: RefCell<Nonces> = RefCell::new(Nonces::default());
    /// (minute start, fetches started in it).
    static FETCHES: RefCell<(f64, u32)> = const { RefCell::new((0.0, 0)) };
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = ["crypto", "subtle"], js_name = importKey, catch)]
    fn import_key(
        format: &str,
        key: &js_sys::Uint8Array,
        algorithm: &JsValue,
        extractable: bool,
        usages: &js_sys::Array,
    ) -> Result<js_sys::Promise, JsValue>;
    #[wasm_bindgen(js_namespace = ["crypto", "subtle"], js_name = verify, catch)]
    fn subtle_verify(
        algorithm: &JsValue,
        key: &JsValue,
        signature: &js_sys::Uint8Array,
        data: &js_sys::Uint8Array,
    ) -> Result<js_sys::Promise, JsValue>;
}

/// Ed25519 verification by the runtime (WebCrypto); any failure is `false`.
async fn ed25519_verify(public_key: &[u8], signature: &[u8], data: &[u8]) -> bool {
    let algorithm = js_sys::Object::new();
    if js_sys::Reflect::set(&algorithm, &"name".into(), &"Ed25519".into()).is_err() {
        return false;
    }
    let usages = js_sys::Array::of1(&"verify".into());
    let Ok(p) = import_key("raw", &js_sys::Uint8Array::from(public_key), &algorithm, false, &usages) else {
        return false;
    };
    let Ok(key) = wasm_bindgen_futures::JsFuture::from(p).await else { return false };
    let (sig, msg) = (js_sys::Uint8Array::from(signature), js_sys::Uint8Array::from(data));
    let Ok(p) = subtle_verify(&algorithm, &key, &sig, &msg) else { return false };
    wasm_bindgen_futures::JsFuture::from(p).await.ok().and_then(|v| v.as_bool()).unwrap_or(false)
}

/// The agent origin of the request's valid `web-bot-auth` signature, when
/// `SIGNED_AGENTS` verifies that agent and this isolate already holds its key
/// directory. A request from an agent whose directory is not held starts its
/// background load (rate-limited) and is treated as unsigned. A nonce is
/// accepted once per isolate, after the signature verified.
pub async fn verified(io: Io<'_>, config: &Config, req: &Request) -> Option<String> {
    let (input, signature) = (header(req, "signature-input")?, header(req, "signature")?);
    let now = now_ms();
    let now_s = (now / 1000.0) as i64;
    let agent = header(req, "signature-agent");
    let window = i64::from(config.signed_agents_window_s);
    let s = signed_agent::parse_request(&input, &signature, agent.as_deref(), now_s, window).ok()?;
    if !config.signed_agents.allows(&s.agent) {
        return None;
    }
    let held = DIRECTORIES.with(|d| d.borrow().get(&s.agent).cloned());
    let keys = match held {
        Some(Directory::Keys { until, keys }) if until > now => keys,
        Some(Directory::Wait { until }) if until > now => return None,
        _ => {
            load(io, &s.agent, now);
            return None;
        }
    };
    let key = keys.get(&s.keyid)?;
    let url = req.url();
    let lookup = |name: &str| header(req, name);
    let parts = RequestParts { method: &req.method(), url: &url, header: &lookup };
    let base = signed_agent::signature_base(&s, &parts).ok()?;
    if !ed25519_verify(key, &s.signature, base.as_bytes()).await {
        return None;
    }
    let fresh = match &s.nonce {
        Some(n) => NONCES.with(|x| x.borrow_mut().fresh(&s.agent, n, s.expires, now_s, MAX_NONCES)),
        None => true,
    };
    fresh.then_some(s.agent)
}

/// Starts loading an agent's directory after the response (KV first, then
/// the agent's own origin), unless this isolate already started
/// `FETCHES_PER_MINUTE` loads this minute.
fn load(io: Io<'_>, agent: &str, now: f64) {
    let allowed = FETCHES.with(|f| {
        let mut f = f.borrow_mut();
        if now - f.0 >= 60_000.0 {
            *f = (now, 0);
        }
        f.1 += 1;
        f.1 <= FETCHES_PER_MINUTE
    });
    if !allowed {
        return;
    }
    remember(agent, Directory::Wait { until: now + FETCH_TIMEOUT_MS as f64 * 2.0 });
    let (env, agent) = (io.env.clone(), agent.to_string());
    io.ctx.wait_until(async move {
        let found = match from_kv(&env, &agent).await {
            Some(keys) => Ok(keys),
            None => fetch(&env, &agent).await,
        };
        match found {
            Ok(keys) => remember(&agent, Directory::Keys { until: now_ms() + DIRECTORY_TTL_MS, keys: Rc::new(keys) }),
            Err(e) => {
                log::background("edge.after", "signed agent", format_args!("key directory of {agent}: {e}"));
                remember(&agent, Directory::Wait { until: now_ms() + FAILED_TTL_MS });
            }
        }
    });
}

fn remember(agent: &str, d: Directory) {
    DIRECTORIES.with(|m| {
        let mut m = m.borrow_mut();
        if !m.contains_key(agent) && m.len() >= MAX_DIRECTORIES {
            // The one that stops mattering first goes.
            let until = |d: &Directory| match d {
                Directory::Keys { until, .. } | Directory::Wait { until } => *until,
            };
            if let Some(k) = m.iter().min_by(|a, b| until(a.1).total_cmp(&until(b.1))).map(|(k, _)| k.clone()) {
                m.remove(&k);
            }
        }
        m.insert(agent.to_string(), d);
    });
}

/// A directory another isolate fetched (KV expires it with its TTL).
async fn from_kv(env: &Env, agent: &str) -> Option<BTreeMap<String, Vec<u8>>> {
    let kv = env.kv(bindings::METRICS).ok()?;
    let text = kv.get(&agent_directory_key(agent)).text().await.ok()??;
    signed_agent::parse_directory(&text).ok()
}

/// The agent's directory from its own origin (bounded: time, size, no
/// redirects), stored in KV for the other isolates.
async fn fetch(env: &Env, agent: &str) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let url = format!("{agent}{DIRECTORY_PATH}");
    let (status, body) = crate::platform::get_bounded(&url, FETCH_TIMEOUT_MS, MAX_DIRECTORY_BYTES).await?;
    if status != 200 {
        return Err(format!("answered {status}"));
    }
    let text = String::from_utf8(body).map_err(|_| "not UTF-8".to_string())?;
    let keys = signed_agent::parse_directory(&text)?;
    if let Ok(kv) = env.kv(bindings::METRICS) {
        let ttl = (DIRECTORY_TTL_MS / 1000.0) as u64;
        if let Ok(put) = kv.put(&agent_directory_key(agent), text) {
            let _ = put.expiration_ttl(ttl).execute().await;
        }
    }
    Ok(keys)
}
