//! Signed agents (issue 19, docs/enforcement.md "Signed agents"): HTTP
//! Message Signatures (RFC 9421) as the Web Bot Auth drafts use them. A
//! request carries `Signature-Agent` (the agent's origin), `Signature-Input`
//! (a member tagged `web-bot-auth`: the covered components, `created`,
//! `expires`, `keyid`, `nonce`) and `Signature`; the key is an Ed25519 JWK
//! from the agent's own key directory
//! (`<origin>/.well-known/http-message-signatures-directory`), named by its
//! RFC 7638 thumbprint.
//!
//! This is the pure part: parsing the three fields (a hand parser for the
//! RFC 8941 subset they use), the signature base (RFC 9421 section 2.5),
//! the time and replay checks, the directory (JWKS) and thumbprints. The
//! Ed25519 verification itself and the directory fetch are the platform's
//! (`edge::signed_agent`, WebCrypto).

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The only tag edgeintel verifies.
pub const TAG: &str = "web-bot-auth";
/// Where an agent's keys are, on its own origin.
pub const DIRECTORY_PATH: &str = "/.well-known/http-message-signatures-directory";
/// Longest `Signature-Input` / `Signature` / `Signature-Agent` read.
pub const MAX_FIELD_BYTES: usize = 4_096;
/// A key directory larger than this is refused.
pub const MAX_DIRECTORY_BYTES: usize = 64 * 1024;
/// Keys kept per directory.
pub const MAX_KEYS: usize = 16;
/// Covered components per signature.
const MAX_COMPONENTS: usize = 16;
/// How far `created` may be in the future (clock skew).
const SKEW_S: i64 = 60;

/// `SIGNED_AGENTS`: which agents' signatures are verified.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Trust {
    /// Any agent whose key directory verifies its signature (the default).
    #[default]
    Any,
    /// None: signatures are ignored.
    Off,
    /// Only these agent origins (`https://host`).
    Only(Vec<String>),
}

impl Trust {
    /// `any`, `off`, or a JSON array of agent origins.
    pub fn parse(raw: &str) -> Result<Trust, String> {
        match raw.trim() {
            "any" => Ok(Trust::Any),
            "off" => Ok(Trust::Off),
            t => {
                let list: Vec<String> = serde_json::from_str(t).map_err(|_| {
                    "`any`, `off` or a JSON array of agent origins (\"https://agent.example\")".to_string()
                })?;
                let mut out = Vec::new();
                for u in list.iter().take(64) {
                    let o = agent_origin(&format!("\"{}\"", u.replace('"', "")), "").ok_or_else(|| {
                        format!("`{}` is not an https origin", u.chars().take(64).collect::<String>())
                    })?;
                    out.push(o);
                }
                Ok(Trust::Only(out))
            }
        }
    }

    /// Whether `origin`'s signatures are verified. A loopback origin (for
    /// local tests) only when it is listed: `any` means agents on the web.
    pub fn allows(&self, origin: &str) -> bool {
        match self {
            Trust::Any => !is_loopback_origin(origin),
            Trust::Off => false,
            Trust::Only(list) => list.iter().any(|o| o == origin),
        }
    }
}

/// `SIGNED_AGENTS_TRUSTED`: a JSON array of agent origins whose verified
/// signatures are treated like a verified crawler's.
pub fn parse_trusted(raw: &str) -> Result<Vec<String>, String> {
    match Trust::parse(raw)? {
        Trust::Only(list) => Ok(list),
        _ => Err("a JSON array of agent origins (\"https://agent.example\")".to_string()),
    }
}

fn is_loopback_origin(origin: &str) -> bool {
    url::Url::parse(origin).is_ok_and(|u| crate::intel::ip::is_loopback(&u))
}

/// One parsed parameter value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bare {
    Integer(i64),
    String(String),
    Token(String),
    Boolean(bool),
    Bytes(Vec<u8>),
}

/// Parameters, in order.
pub type Params = Vec<(String, Bare)>;
/// An item and its parameters.
pub type Item = (Bare, Params);

/// A dictionary member: an item or an inner list of items, with parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The item, or the inner list's items.
    pub items: Vec<Item>,
    pub inner_list: bool,
    pub params: Params,
}

/// Parses an RFC 8941 dictionary (the subset these fields use: no decimals).
pub fn parse_dictionary(s: &str) -> Result<Vec<(String, Member)>, String> {
    if s.len() > MAX_FIELD_BYTES {
        return Err("field too long".into());
    }
    let mut p = P { s: s.as_bytes(), i: 0 };
    let mut out = Vec::new();
    p.ows();
    if p.done() {
        return Ok(out);
    }
    loop {
        let key = p.key()?;
        let member = if p.eat(b'=') {
            if p.peek() == Some(b'(') {
                let items = p.inner_list()?;
                Member { items, inner_list: true, params: p.params()? }
            } else {
                let item = p.bare()?;
                let item_params = p.params()?;
                Member { items: vec![(item, Vec::new())], inner_list: false, params: item_params }
            }
        } else {
            Member { items: vec![(Bare::Boolean(true), Vec::new())], inner_list: false, params: p.params()? }
        };
        out.push((key, member));
        if out.len() > 32 {
            return Err("too many members".into());
        }
        p.ows();
        if p.done() {
            return Ok(out);
        }
        if !p.eat(b',') {
            return Err(format!("expected a comma at byte {}", p.i));
        }
        p.ows();
        if p.done() {
            return Err("trailing comma".into());
        }
    }
}

/// Parses an RFC 8941 item (a bare item with parameters).
pub fn parse_item(s: &str) -> Result<Item, String> {
    if s.len() > MAX_FIELD_BYTES {
        return Err("field too long".into());
    }
    let mut p = P { s: s.trim().as_bytes(), i: 0 };
    let item = p.bare()?;
    let params = p.params()?;
    if !p.done() {
        return Err("trailing characters".into());
    }
    Ok((item, params))
}

struct P<'a> {
    s: &'a [u8],
    i: usize,
}

impl P<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn done(&self) -> bool {
        self.i >= self.s.len()
    }
    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        if hit {
            self.i += 1;
        }
        hit
    }
    fn ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }
    fn take_while(&mut self, ok: impl Fn(u8) -> bool) -> String {
        let start = self.i;
        while self.peek().is_some_and(&ok) {
            self.i += 1;
        }
        self.s.get(start..self.i).map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default()
    }
    fn key(&mut self) -> Result<String, String> {
        if !self.peek().is_some_and(|c| c.is_ascii_lowercase() || c == b'*') {
            return Err(format!("expected a key at byte {}", self.i));
        }
        Ok(self.take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-.*".contains(&c)))
    }
    fn params(&mut self) -> Result<Params, String> {
        let mut out = Vec::new();
        while self.eat(b';') {
            while self.eat(b' ') {}
            let k = self.key()?;
            let v = if self.eat(b'=') { self.bare()? } else { Bare::Boolean(true) };
            out.push((k, v));
            if out.len() > 16 {
                return Err("too many parameters".into());
            }
        }
        Ok(out)
    }
    fn inner_list(&mut self) -> Result<Vec<Item>, String> {
        self.i += 1; // (
        let mut items = Vec::new();
        loop {
            while self.eat(b' ') {}
            if self.eat(b')') {
                return Ok(items);
            }
            let item = self.bare()?;
            let params = self.params()?;
            items.push((item, params));
            if items.len() > MAX_COMPONENTS {
                return Err("too many components".into());
            }
            if !matches!(self.peek(), Some(b' ' | b')')) {
                return Err(format!("malformed inner list at byte {}", self.i));
            }
        }
    }
    fn bare(&mut self) -> Result<Bare, String> {
        match self.peek() {
            Some(b'"') => self.string().map(Bare::String),
            Some(b':') => {
                self.i += 1;
                let b64 = self.take_while(|c| c.is_ascii_alphanumeric() || b"+/=".contains(&c));
                if !self.eat(b':') {
                    return Err("unterminated byte sequence".into());
                }
                base64::engine::general_purpose::STANDARD.decode(b64).map(Bare::Bytes).map_err(|_| "bad base64".into())
            }
            Some(b'?') => {
                self.i += 1;
                match self.peek() {
                    Some(b'0') => {
                        self.i += 1;
                        Ok(Bare::Boolean(false))
                    }
                    Some(b'1') => {
                        self.i += 1;
                        Ok(Bare::Boolean(true))
                    }
                    _ => Err("a boolean is ?0 or ?1".into()),
                }
            }
            Some(c) if c == b'-' || c.is_ascii_digit() => {
                let negative = self.eat(b'-');
                let digits = self.take_while(|c| c.is_ascii_digit());
                if digits.is_empty() || digits.len() > 15 || self.peek() == Some(b'.') {
                    return Err("an integer has 1 to 15 digits".into());
                }
                let n: i64 = digits.parse().map_err(|_| "bad integer")?;
                Ok(Bare::Integer(if negative { -n } else { n }))
            }
            Some(c) if c.is_ascii_alphabetic() || c == b'*' => {
                Ok(Bare::Token(self.take_while(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&c))))
            }
            _ => Err(format!("expected a value at byte {}", self.i)),
        }
    }
    fn string(&mut self) -> Result<String, String> {
        self.i += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err("unterminated string".into()),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.i += 1;
                    match self.peek() {
                        Some(c @ (b'"' | b'\\')) => out.push(char::from(c)),
                        _ => return Err("a string escapes only \" and \\".into()),
                    }
                    self.i += 1;
                }
                Some(c @ 0x20..=0x7e) => {
                    out.push(char::from(c));
                    self.i += 1;
                }
                Some(_) => return Err("a string holds printable ASCII only".into()),
            }
        }
    }
}

/// Serializes a bare item as RFC 8941 does (for `@signature-params`).
fn serialize_bare(b: &Bare) -> String {
    match b {
        Bare::Integer(n) => n.to_string(),
        Bare::String(s) => format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")),
        Bare::Token(t) => t.clone(),
        Bare::Boolean(true) => "?1".into(),
        Bare::Boolean(false) => "?0".into(),
        Bare::Bytes(b) => format!(":{}:", base64::engine::general_purpose::STANDARD.encode(b)),
    }
}

fn serialize_params(params: &[(String, Bare)]) -> String {
    params
        .iter()
        .map(|(k, v)| match v {
            Bare::Boolean(true) => format!(";{k}"),
            v => format!(";{k}={}", serialize_bare(v)),
        })
        .collect()
}

/// One signature of a request, tagged `web-bot-auth`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    /// The member's label (`sig1`), the same in both fields.
    pub label: String,
    /// Covered components, in order (lower case).
    pub components: Vec<String>,
    /// The `@signature-params` line, serialized.
    pub params_line: String,
    pub created: i64,
    pub expires: i64,
    pub keyid: String,
    pub nonce: Option<String>,
    pub signature: Vec<u8>,
    /// The agent's origin (`https://host[:port]`), from `Signature-Agent`.
    pub agent: String,
}

/// Finds and checks the `web-bot-auth` signature of a request (everything
/// but the cryptography): the fields parse, the label is in both, the
/// algorithm (if named) is Ed25519, `created` and `expires` are present and
/// sane at `now_s` within `max_window_s`, `@authority` is covered, and so is
/// `signature-agent` when that header is sent. `agent_header`: the raw
/// `Signature-Agent` value.
pub fn parse_request(
    signature_input: &str,
    signature: &str,
    agent_header: Option<&str>,
    now_s: i64,
    max_window_s: i64,
) -> Result<SignedRequest, &'static str> {
    let inputs = parse_dictionary(signature_input).map_err(|_| "malformed Signature-Input")?;
    let sigs = parse_dictionary(signature).map_err(|_| "malformed Signature")?;
    let (label, member) = inputs
        .into_iter()
        .find(|(_, m)| m.inner_list && param(&m.params, "tag") == Some(&Bare::String(TAG.into())))
        .ok_or("no web-bot-auth signature")?;
    let mut components = Vec::new();
    for (item, item_params) in &member.items {
        match (item, item_params.is_empty()) {
            (Bare::String(c), true) => components.push(c.clone()),
            _ => return Err("unsupported component"),
        }
    }
    let int = |k: &str| match param(&member.params, k) {
        Some(Bare::Integer(n)) => Some(*n),
        _ => None,
    };
    let text = |k: &str| match param(&member.params, k) {
        Some(Bare::String(s)) => Some(s.clone()),
        _ => None,
    };
    if let Some(alg) = param(&member.params, "alg") {
        if alg != &Bare::String("ed25519".into()) {
            return Err("not an ed25519 signature");
        }
    }
    let (created, expires) = (int("created").ok_or("no created")?, int("expires").ok_or("no expires")?);
    if created > now_s + SKEW_S {
        return Err("created in the future");
    }
    if expires <= now_s {
        return Err("expired");
    }
    if expires <= created || expires - created > max_window_s {
        return Err("validity window too long");
    }
    let keyid = text("keyid").ok_or("no keyid")?;
    let signature = sigs
        .into_iter()
        .find(|(l, _)| *l == label)
        .and_then(|(_, m)| match m.items.into_iter().next() {
            Some((Bare::Bytes(b), _)) if !m.inner_list => Some(b),
            _ => None,
        })
        .ok_or("no signature for the label")?;
    if !components.iter().any(|c| c == "@authority") {
        return Err("@authority not covered");
    }
    let agent_raw = agent_header.ok_or("no Signature-Agent")?;
    if !components.iter().any(|c| c == "signature-agent") {
        return Err("signature-agent not covered");
    }
    let agent = agent_origin(agent_raw, &label).ok_or("Signature-Agent is not an agent origin")?;
    let list: Vec<String> = components.iter().map(|c| serialize_bare(&Bare::String(c.clone()))).collect();
    let params_line = format!("({}){}", list.join(" "), serialize_params(&member.params));
    Ok(SignedRequest {
        label,
        components,
        params_line,
        created,
        expires,
        keyid,
        nonce: text("nonce"),
        signature,
        agent,
    })
}

fn param<'a>(params: &'a [(String, Bare)], k: &str) -> Option<&'a Bare> {
    params.iter().find(|(x, _)| x == k).map(|(_, v)| v)
}

/// The agent's origin from `Signature-Agent`: an sf-string URL (the earlier
/// drafts), or a dictionary whose member for `label` is one (the later).
/// Only `https` (or `http` to loopback, for local tests); the origin only.
pub fn agent_origin(header: &str, label: &str) -> Option<String> {
    let url = match parse_item(header) {
        Ok((Bare::String(u), _)) => u,
        _ => {
            let dict = parse_dictionary(header).ok()?;
            let (_, m) = dict.into_iter().find(|(k, _)| k == label)?;
            match m.items.into_iter().next() {
                Some((Bare::String(u), _)) => u,
                _ => return None,
            }
        }
    };
    let u = url::Url::parse(&url).ok()?;
    let host = u.host_str()?;
    let loopback = crate::intel::ip::is_loopback(&u);
    match u.scheme() {
        "https" if u.port().is_none() && host.parse::<std::net::IpAddr>().is_err() && !host.starts_with('[') => {}
        "http" | "https" if loopback => {}
        _ => return None,
    }
    Some(u.origin().ascii_serialization())
}

/// What the request offers for the covered components.
pub struct RequestParts<'a> {
    pub method: &'a str,
    /// The full URL as the client sent it.
    pub url: &'a str,
    /// A header's value by lower-case name (several instances joined by ", ").
    pub header: &'a dyn Fn(&str) -> Option<String>,
}

/// The signature base (RFC 9421 section 2.5): one line per covered
/// component, then `@signature-params`. Derived components supported:
/// `@method`, `@authority`, `@scheme`, `@target-uri`, `@path`, `@query`;
/// any other name is a header field (absent: not verifiable).
pub fn signature_base(s: &SignedRequest, r: &RequestParts) -> Result<String, &'static str> {
    let url = url::Url::parse(r.url).map_err(|_| "bad URL")?;
    let mut out = String::new();
    for c in &s.components {
        let value = match c.as_str() {
            "@method" => r.method.to_ascii_uppercase(),
            "@authority" => {
                let host = url.host_str().ok_or("no host")?.to_ascii_lowercase();
                match url.port() {
                    Some(p) => format!("{host}:{p}"),
                    None => host,
                }
            }
            "@scheme" => url.scheme().to_string(),
            "@target-uri" => r.url.to_string(),
            "@path" => url.path().to_string(),
            "@query" => format!("?{}", url.query().unwrap_or("")),
            name if name.starts_with('@') => return Err("unsupported derived component"),
            name => (r.header)(name).map(|v| v.trim().to_string()).ok_or("a covered header is missing")?,
        };
        if value.contains('\n') || value.contains('\r') {
            return Err("a component holds a line break");
        }
        out.push_str(&format!("\"{c}\": {value}\n"));
    }
    out.push_str(&format!("\"@signature-params\": {}", s.params_line));
    Ok(out)
}

/// The Ed25519 keys of a key directory (JWKS), by RFC 7638 thumbprint:
/// `{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "<base64url>"}]}`. Other
/// keys are skipped; at most `MAX_KEYS`.
pub fn parse_directory(body: &str) -> Result<BTreeMap<String, Vec<u8>>, String> {
    if body.len() > MAX_DIRECTORY_BYTES {
        return Err("directory too large".into());
    }
    let v: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    let keys = v.get("keys").and_then(Value::as_array).ok_or("no `keys` array")?;
    let mut out = BTreeMap::new();
    for k in keys.iter().take(MAX_KEYS) {
        let field = |n: &str| k.get(n).and_then(Value::as_str);
        if field("kty") != Some("OKP") || field("crv") != Some("Ed25519") {
            continue;
        }
        let Some(x) = field("x") else { continue };
        let Ok(raw) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(x) else { continue };
        if raw.len() == 32 {
            out.insert(thumbprint(x), raw);
        }
    }
    if out.is_empty() {
        return Err("no Ed25519 key".into());
    }
    Ok(out)
}

/// RFC 7638 thumbprint of an Ed25519 OKP key (`x` as in the JWK).
pub fn thumbprint(x: &str) -> String {
    let canonical = format!("{{\"crv\":\"Ed25519\",\"kty\":\"OKP\",\"x\":\"{x}\"}}");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// Nonces seen, each until its signature expires: a replay within the
/// window is refused. Bounded: past `cap`, expired entries go, then the one
/// expiring first. Each is kept as 16 bytes of a hash of the agent and the
/// nonce, so a long nonce costs no more memory than a short one.
#[derive(Debug, Default)]
pub struct Nonces {
    seen: BTreeMap<[u8; 16], i64>,
}

impl Nonces {
    /// True if `nonce` (of `agent`) is new; remembers it until `expires_s`.
    pub fn fresh(&mut self, agent: &str, nonce: &str, expires_s: i64, now_s: i64, cap: usize) -> bool {
        let digest = Sha256::new().chain_update(agent).chain_update([0]).chain_update(nonce).finalize();
        let mut key = [0u8; 16];
        key.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
        if self.seen.get(&key).is_some_and(|until| *until > now_s) {
            return false;
        }
        // The sweep walks the whole set, so only when it is full.
        if self.seen.len() >= cap {
            self.seen.retain(|_, until| *until > now_s);
        }
        if self.seen.len() >= cap {
            if let Some(first) = self.seen.iter().min_by_key(|(_, t)| **t).map(|(k, _)| *k) {
                self.seen.remove(&first);
            }
        }
        self.seen.insert(key, expires_s);
        true
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const NOW: i64 = 1_780_000_000;

    fn input(extra: &str) -> String {
        format!(
            r#"sig1=("@authority" "signature-agent");created={};expires={};keyid="abc";alg="ed25519";nonce="n1";tag="web-bot-auth"{extra}"#,
            NOW - 10,
            NOW + 60
        )
    }

    #[test]
    fn parses_the_three_fields_and_rebuilds_the_params_line() {
        let s = parse_request(&input(""), "sig1=:AAEC:", Some(r#""https://agent.example""#), NOW, 3600).unwrap();
        assert_eq!(s.components, vec!["@authority", "signature-agent"]);
        assert_eq!(s.signature, vec![0, 1, 2]);
        assert_eq!(s.agent, "https://agent.example");
        assert_eq!(s.keyid, "abc");
        assert_eq!(s.nonce.as_deref(), Some("n1"));
        assert_eq!(
            s.params_line,
            format!(
                r#"("@authority" "signature-agent");created={};expires={};keyid="abc";alg="ed25519";nonce="n1";tag="web-bot-auth""#,
                NOW - 10,
                NOW + 60
            )
        );
        // The later drafts' dictionary form of Signature-Agent.
        let d =
            parse_request(&input(""), "sig1=:AAEC:", Some(r#"sig1="https://agent.example/path""#), NOW, 3600).unwrap();
        assert_eq!(d.agent, "https://agent.example");
    }

    #[test]
    fn refuses_what_cannot_be_verified() {
        let ok = |i: &str, s: &str, a: Option<&str>| parse_request(i, s, a, NOW, 3600);
        let agent = Some(r#""https://agent.example""#);
        assert_eq!(ok(&input(""), "other=:AAEC:", agent).unwrap_err(), "no signature for the label");
        assert_eq!(ok(&input(""), "sig1=:AAEC:", None).unwrap_err(), "no Signature-Agent");
        assert_eq!(
            ok(&input("").replace("web-bot-auth", "other"), "sig1=:AAEC:", agent).unwrap_err(),
            "no web-bot-auth signature"
        );
        assert_eq!(
            ok(&input("").replace("ed25519", "rsa-pss-sha512"), "sig1=:AAEC:", agent).unwrap_err(),
            "not an ed25519 signature"
        );
        let expired = input("").replace(&(NOW + 60).to_string(), &(NOW - 1).to_string());
        assert_eq!(ok(&expired, "sig1=:AAEC:", agent).unwrap_err(), "expired");
        let long = input("").replace(&(NOW + 60).to_string(), &(NOW + 7200).to_string());
        assert_eq!(ok(&long, "sig1=:AAEC:", agent).unwrap_err(), "validity window too long");
        let future = input("").replace(&(NOW - 10).to_string(), &(NOW + 120).to_string());
        assert!(ok(&future, "sig1=:AAEC:", agent).is_err());
        assert_eq!(
            ok(&input("").replace("\"@authority\" ", ""), "sig1=:AAEC:", agent).unwrap_err(),
            "@authority not covered"
        );
        assert_eq!(
            ok(&input("").replace(" \"signature-agent\"", ""), "sig1=:AAEC:", agent).unwrap_err(),
            "signature-agent not covered"
        );
        for bad in [
            r#""http://agent.example""#,
            r#""https://10.0.0.1""#,
            r#""https://agent.example:8443""#,
            r#""ftp://x""#,
            "garbage",
        ] {
            assert!(ok(&input(""), "sig1=:AAEC:", Some(bad)).is_err(), "{bad}");
        }
        assert!(ok(&input(""), "sig1=:AAEC:", Some(r#""http://127.0.0.1:9000""#)).is_ok(), "loopback for tests");
        for garbage in ["", "sig1=(", "sig1=(\"a\";", "sig1=:!!:", &"a".repeat(5000), "sig1=(\"@authority\"),"] {
            assert!(ok(garbage, "sig1=:AAEC:", agent).is_err(), "{garbage}");
        }
    }

    #[test]
    fn the_signature_base_follows_rfc_9421() {
        let s = parse_request(
            &format!(r#"sig1=("@method" "@authority" "@path" "@query" "signature-agent" "content-type");created={};expires={};keyid="k";tag="web-bot-auth""#, NOW - 1, NOW + 60),
            "sig1=:AAEC:",
            Some(r#""https://agent.example""#),
            NOW,
            3600,
        )
        .unwrap();
        let headers = |n: &str| match n {
            "signature-agent" => Some(r#" "https://agent.example" "#.to_string()),
            "content-type" => Some("text/plain".to_string()),
            _ => None,
        };
        let base = signature_base(
            &s,
            &RequestParts { method: "get", url: "https://Example.COM:8443/a/b?x=1", header: &headers },
        )
        .unwrap();
        assert_eq!(
            base,
            format!(
                "\"@method\": GET\n\"@authority\": example.com:8443\n\"@path\": /a/b\n\"@query\": ?x=1\n\"signature-agent\": \"https://agent.example\"\n\"content-type\": text/plain\n\"@signature-params\": (\"@method\" \"@authority\" \"@path\" \"@query\" \"signature-agent\" \"content-type\");created={};expires={};keyid=\"k\";tag=\"web-bot-auth\"",
                NOW - 1,
                NOW + 60
            )
        );
        let none = |_: &str| None;
        assert_eq!(
            signature_base(&s, &RequestParts { method: "GET", url: "https://example.com/", header: &none })
                .unwrap_err(),
            "a covered header is missing"
        );
    }

    #[test]
    fn thumbprints_follow_rfc_7638_and_directories_keep_ed25519_keys_only() {
        // RFC 8037 appendix A.3: the thumbprint of its Ed25519 example key.
        assert_eq!(
            thumbprint("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
        let dir = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},{"kty":"RSA","n":"x","e":"AQAB"},{"kty":"OKP","crv":"Ed25519","x":"short"}]}"#;
        let keys = parse_directory(dir).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys["kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"].len(), 32);
        assert!(parse_directory(r#"{"keys":[]}"#).is_err());
        assert!(parse_directory("<html>").is_err());
        assert!(parse_directory(&" ".repeat(MAX_DIRECTORY_BYTES + 1)).is_err());
    }

    #[test]
    fn signed_agents_setting() {
        assert_eq!(Trust::parse("any"), Ok(Trust::Any));
        assert_eq!(Trust::parse("off"), Ok(Trust::Off));
        let only = Trust::parse(r#"["https://agent.example/"]"#).unwrap();
        assert!(only.allows("https://agent.example") && !only.allows("https://other.example"));
        assert!(Trust::parse(r#"["http://agent.example"]"#).is_err());
        assert!(Trust::parse("maybe").is_err());
        // Loopback (local tests) only when listed, never under `any`.
        assert!(!Trust::Any.allows("http://127.0.0.1:8787") && !Trust::Any.allows("https://localhost"));
        assert!(Trust::Any.allows("https://agent.example"));
        assert!(Trust::parse(r#"["http://127.0.0.1:8787"]"#).unwrap().allows("http://127.0.0.1:8787"));
        assert_eq!(parse_trusted("[]"), Ok(vec![]));
        assert_eq!(parse_trusted(r#"["https://agent.example"]"#), Ok(vec!["https://agent.example".to_string()]));
        assert!(parse_trusted("any").is_err() && parse_trusted("off").is_err());
    }

    #[test]
    fn a_nonce_is_accepted_once_within_its_window_and_the_set_is_bounded() {
        let mut n = Nonces::default();
        assert!(n.fresh("https://a", "x", NOW + 60, NOW, 3));
        assert!(!n.fresh("https://a", "x", NOW + 60, NOW + 1, 3), "a replay");
        assert!(n.fresh("https://b", "x", NOW + 60, NOW, 3), "another agent's nonce");
        assert!(n.fresh("https://a", "x", NOW + 200, NOW + 61, 3), "after its signature expired");
        for i in 0..10 {
            n.fresh("https://a", &format!("y{i}"), NOW + 100 + i, NOW + 61, 3);
        }
        assert_eq!(n.len(), 3);
        // A 2 KB nonce is kept in 16 bytes, and the agent is part of the key.
        let long = "n".repeat(2048);
        assert!(n.fresh("https://a", &long, NOW + 300, NOW + 62, 3));
        assert!(!n.fresh("https://a", &long, NOW + 300, NOW + 63, 3));
        assert!(n.fresh("https://a ", &long, NOW + 300, NOW + 63, 3), "agent and nonce do not run together");
    }
}
