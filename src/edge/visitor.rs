//! Visitors (docs/profiles.md): who a request belongs to across IPs, for impossible
//! travel. Either the hash of the site's own session cookie
//! (`VISITOR_COOKIE`), or a signed first-party cookie `ei_vid` the worker sets
//! itself (`SET_VISITOR_COOKIE=true`). A forged or unsigned `ei_vid` is
//! ignored and replaced.

use worker::Env;

use crate::bindings;
use crate::config::{Secrets, Visitor as Settings};
use crate::error::Error;
use crate::intel::secrets::{cookie, sign_visitor_id, verify_visitor_cookie, visitor_key, VISITOR_COOKIE_NAME};
use crate::intel::travel::Sighting;
use crate::intel::wire::{VisitorAnswer, VisitorOp};
use crate::platform::call_object;

const COOKIE_MAX_AGE_S: u32 = 400 * 86_400; // browsers cap cookie lifetimes at 400 days

pub struct Visitor {
    pub key: String,
    /// A `Set-Cookie` value to add to the response (a new signed id).
    pub set_cookie: Option<String>,
}

/// The request's visitor, if visitor tracking is configured (`settings`, the
/// `Visitor` part of the configuration; `secrets` has the key that signs `ei_vid`).
pub fn identify(cookie_header: Option<&str>, settings: &Settings, secrets: &Secrets) -> Option<Visitor> {
    if let Some(name) = &settings.cookie {
        if let Some(v) = cookie_header.and_then(|h| cookie(h, name)).filter(|v| !v.is_empty()) {
            return Some(Visitor { key: visitor_key(v), set_cookie: None });
        }
    }
    if !settings.set_cookie {
        return None;
    }
    let key = secrets.visitor_signing_key.as_deref()?;
    if let Some(id) =
        cookie_header.and_then(|h| cookie(h, VISITOR_COOKIE_NAME)).and_then(|v| verify_visitor_cookie(key, v))
    {
        return Some(Visitor { key: visitor_key(id), set_cookie: None });
    }
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).ok()?;
    let id = hex::encode(raw);
    let value = sign_visitor_id(key, &id)?;
    let set_cookie =
        format!("{VISITOR_COOKIE_NAME}={value}; Path=/; Max-Age={COOKIE_MAX_AGE_S}; HttpOnly; Secure; SameSite=Lax");
    Some(Visitor { key: visitor_key(&id), set_cookie: Some(set_cookie) })
}

/// Records a sighting with the visitor's object; answers the finding in effect.
pub async fn sight(env: &Env, visitor: &str, subject: &str, sighting: Sighting) -> Result<VisitorAnswer, Error> {
    let op = VisitorOp::Sight { sighting, subject: subject.to_string() };
    match call_object::<_, VisitorAnswer>(env, bindings::VISITORS, visitor, &op).await? {
        (200, Some(a)) => Ok(a),
        (status, _) => Err(Error::platform(format!("visitor object answered {status}"))),
    }
}
