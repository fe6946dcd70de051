//! Per-route rules (issue 18, docs/policies.md): the operator's policy, as
//! an ordered list the request path evaluates after the allow and block
//! lists. The first rule whose `match` holds decides; no match falls back to
//! `ENFORCE` and its thresholds (`intel::enforce`).
//!
//! A rule, exactly as operators write it (`RULES` or
//! `PUT /_intel/api/config/rules`):
//!
//! ```json
//! {"id": "login", "match": {"path": "/login*", "methods": ["POST"], "countries": ["XX"],
//!  "asns": [64496], "reasons": ["tor_exit"], "minScore": 40},
//!  "action": "rate_limit", "rateLimit": {"requests": 5, "periodSeconds": 60, "by": "subject"},
//!  "dryRun": false}
//! ```
//!
//! Parsing is by hand over `serde_json::Value`, not derived: an operator who
//! gets three fields wrong hears about all three in one answer, each named by
//! its path (`rules[2].match.path`), and unknown fields are refused (a typo
//! such as `minscore` would otherwise match everything).
//!
//! Paths are compared in two readings (`PathForms`): raw, and normalised by
//! `match_path` (decoded, `;params` cut, dot segments resolved). A rule that
//! stops requests holds if either matches, one that lets them through only if
//! both do, so `/public/..;/admin` meets a block rule on `/admin*` and is not
//! waved through by an allow rule on `/public/*`. Case is kept (paths are
//! case-sensitive; docs/policies.md says what that leaves open).

use serde::Serialize;
use serde_json::{Map, Value};

use super::facts::country_code;
use super::signals::Reason;

/// At most this many rules (each request scans them in order).
pub const MAX_RULES: usize = 200;
/// Longest rule id; ids are `[A-Za-z0-9_.-]` so they fit an RFC 8941 string as is.
pub const MAX_ID_LEN: usize = 64;
/// Longest `match.path`.
pub const MAX_PATH_LEN: usize = 1_024;
/// Most entries in each of `methods`, `countries`, `asns`, `reasons`.
pub const MAX_LIST_LEN: usize = 500;
/// Bounds of `rateLimit`.
pub const MAX_LIMIT_REQUESTS: u64 = 1_000_000;
pub const MAX_PERIOD_SECONDS: u64 = 86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    Allow,
    Monitor,
    Challenge,
    Block,
    RateLimit,
}

impl RuleAction {
    pub const ALL: [RuleAction; 5] =
        [RuleAction::Allow, RuleAction::Monitor, RuleAction::Challenge, RuleAction::Block, RuleAction::RateLimit];

    pub const fn as_str(self) -> &'static str {
        match self {
            RuleAction::Allow => "allow",
            RuleAction::Monitor => "monitor",
            RuleAction::Challenge => "challenge",
            RuleAction::Block => "block",
            RuleAction::RateLimit => "rate_limit",
        }
    }

    fn parse(s: &str) -> Option<RuleAction> {
        RuleAction::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// Whether the action can stop a request (challenge, block, rate limit)
    /// rather than let it through (allow, monitor: both skip `ENFORCE`).
    pub const fn stops(self) -> bool {
        matches!(self, RuleAction::Challenge | RuleAction::Block | RuleAction::RateLimit)
    }
}

/// Whose requests a rate limit counts together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitBy {
    Subject,
    Visitor,
    Asn,
}

impl LimitBy {
    pub const fn as_str(self) -> &'static str {
        match self {
            LimitBy::Subject => "subject",
            LimitBy::Visitor => "visitor",
            LimitBy::Asn => "asn",
        }
    }

    fn parse(s: &str) -> Option<LimitBy> {
        match s {
            "subject" => Some(LimitBy::Subject),
            "visitor" => Some(LimitBy::Visitor),
            "asn" => Some(LimitBy::Asn),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    pub requests: u32,
    pub period_seconds: u32,
    pub by: LimitBy,
}

/// `match.path`: exact, or a prefix when written with a trailing `*`. Kept
/// as written (what `GET` shows and KV stores, so it reads back the same),
/// and in both forms a request's path is compared in (`PathForms`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    written: String,
    raw: String,
    normalised: String,
    prefix: bool,
}

impl PathPattern {
    fn hit(&self, path: &str, pattern: &str) -> bool {
        if self.prefix {
            path.starts_with(pattern)
        } else {
            // `/login/` is `/login` to most origins (Express, Rails, Django's
            // APPEND_SLASH): an exact path holds with one trailing slash too.
            path == pattern || path.strip_suffix('/') == Some(pattern)
        }
    }

    /// A rule that stops requests (challenge, block, rate limit) holds when
    /// either form of the path matches; one that lets them through (allow,
    /// monitor: both skip `ENFORCE`) only when both do. So a spelling that
    /// one origin reads as another path (`/public/..;/admin`,
    /// `/public/..%2Fadmin`) can be caught but never waved through.
    fn matches(&self, path: &PathForms, stops: bool) -> bool {
        let raw = self.hit(&path.raw, &self.raw);
        let normalised = self.hit(&path.normalised, &self.normalised);
        if stops {
            raw || normalised
        } else {
            raw && normalised
        }
    }
}

/// A request's path in the two forms rules compare: `raw`, as an origin
/// that decodes nothing reads it (the query dropped, repeated slashes
/// collapsed), and `normalised` (`match_path`), as one that decodes and
/// normalises reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathForms {
    pub raw: String,
    pub normalised: String,
}

impl PathForms {
    pub fn of(path: &str) -> PathForms {
        let path = path.split(['?', '#']).next().unwrap_or("");
        PathForms { raw: collapse_slashes(path), normalised: match_path(path) }
    }
}

impl Serialize for PathPattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.written)
    }
}

/// Every given field must hold; an empty `match` holds for every request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Match {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathPattern>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub countries: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub asns: Vec<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<Reason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_score: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteRule {
    pub id: String,
    #[serde(rename = "match")]
    pub when: Match,
    pub action: RuleAction,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    pub dry_run: bool,
}

/// One thing wrong with the rules, named by its place (`rules[2].match.path`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// What a request shows that rules can match on.
#[derive(Debug, Clone, Copy)]
pub struct RuleInput<'a> {
    /// The path, with or without its query (the query is ignored).
    pub path: &'a str,
    pub method: &'a str,
    pub country: Option<&'a str>,
    pub asn: Option<u32>,
    /// The reasons of the request's verdict.
    pub reasons: &'a [Reason],
    pub score: u8,
}

impl Match {
    /// Whether every given field holds for `input`; `path` is its path in
    /// both forms, `stops`: the rule's action stops requests (`PathPattern::matches`).
    fn holds(&self, input: &RuleInput<'_>, path: &PathForms, stops: bool) -> bool {
        self.path.as_ref().is_none_or(|p| p.matches(path, stops))
            && (self.methods.is_empty() || self.methods.iter().any(|m| m.eq_ignore_ascii_case(input.method)))
            && (self.countries.is_empty() || input.country.is_some_and(|c| self.countries.iter().any(|x| x == c)))
            && (self.asns.is_empty() || input.asn.is_some_and(|a| self.asns.contains(&a)))
            && (self.reasons.is_empty() || self.reasons.iter().any(|r| input.reasons.contains(r)))
            && self.min_score.is_none_or(|m| input.score >= m)
    }
}

/// The first rule whose match holds for `input`, if any.
pub fn first_match<'r>(rules: &'r [RouteRule], input: &RuleInput<'_>) -> Option<&'r RouteRule> {
    if rules.is_empty() {
        return None;
    }
    let path = PathForms::of(input.path);
    rules.iter().find(|r| r.when.holds(input, &path, r.action.stops()))
}

/// The normalised path: the query dropped, percent-escapes decoded once
/// (bytes that are not UTF-8 stay escaped, upper-cased), `\` read as `/`,
/// `;parameters` cut from each segment (Tomcat, Jetty), `.` and `..`
/// segments resolved after decoding (the runtime's URL parser resolved the
/// undecoded ones: `/a/..%2Flogin` is resolved here), repeated slashes
/// collapsed; a trailing slash is kept.
pub fn match_path(raw: &str) -> String {
    let path = raw.split(['?', '#']).next().unwrap_or("");
    let decoded = percent_decode(path).replace('\\', "/");
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing = false;
    for seg in decoded.split('/') {
        let seg = seg.split(';').next().unwrap_or("");
        trailing = seg.is_empty() || seg == "." || seg == "..";
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len() + 1);
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing || segments.is_empty() {
        out.push('/');
    }
    out
}

/// `/` prepended if missing, repeated slashes collapsed; nothing decoded.
fn collapse_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 1);
    if !path.starts_with('/') {
        out.push('/');
    }
    let mut last_slash = false;
    for c in path.chars() {
        if c == '/' && last_slash {
            continue;
        }
        last_slash = c == '/';
        out.push(c);
    }
    out
}

/// `%XX` decoded (`percent_encoding`); decoded bytes that are not UTF-8 are
/// written back escaped (`%FF`), and a `%` not followed by two hex digits
/// stays as is.
fn percent_decode(s: &str) -> String {
    let bytes: Vec<u8> = percent_encoding::percent_decode_str(s).collect();
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => {
            // Keep what is text, escape the rest (never panics, never merges).
            let bytes = e.into_bytes();
            let mut s = String::with_capacity(bytes.len() * 3);
            for chunk in bytes.utf8_chunks() {
                s.push_str(chunk.valid());
                for b in chunk.invalid() {
                    s.push_str(&format!("%{b:02X}"));
                }
            }
            s
        }
    }
}

/// Parses the API body `{"rules": [...]}`.
pub fn parse_body(body: &Value) -> Result<Vec<RouteRule>, Vec<FieldError>> {
    let Some(obj) = body.as_object() else {
        return Err(vec![err("body", "must be an object {\"rules\": [...]}")]);
    };
    let mut errors: Vec<FieldError> =
        obj.keys().filter(|k| k.as_str() != "rules").map(|k| err(k, "unknown field (only `rules`)")).collect();
    match obj.get("rules") {
        None => errors.push(err("rules", "missing")),
        Some(list) => match parse_rules(list) {
            Ok(rules) if errors.is_empty() => return Ok(rules),
            Ok(_) => {}
            Err(mut e) => errors.append(&mut e),
        },
    }
    Err(errors)
}

/// Parses a rule list (the `RULES` setting, or the body's `rules`), naming
/// every bad field.
pub fn parse_rules(v: &Value) -> Result<Vec<RouteRule>, Vec<FieldError>> {
    let Some(items) = v.as_array() else {
        return Err(vec![err("rules", "must be an array of rules")]);
    };
    if items.len() > MAX_RULES {
        return Err(vec![err("rules", &format!("at most {MAX_RULES} rules ({} given)", items.len()))]);
    }
    let mut errors = Vec::new();
    let mut rules = Vec::with_capacity(items.len());
    let mut ids: Vec<&str> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        // Duplicate ids are named by the item's own index, whether or not
        // the rule parsed.
        if let Some(id) = item.get("id").and_then(Value::as_str) {
            if ids.contains(&id) && valid_id(id) {
                errors.push(err(&format!("rules[{i}].id"), &format!("`{id}` is used by an earlier rule")));
            }
            ids.push(id);
        }
        if let Some(rule) = parse_rule(item, &format!("rules[{i}]"), &mut errors) {
            rules.push(rule);
        }
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors)
    }
}

/// What this deployment cannot do with otherwise valid rules (checked where
/// the rules are loaded: the `RULES` setting and the API's `PUT`): a
/// challenge needs `CHALLENGE_SIGNING_KEY` (the clearance is signed with it,
/// with Turnstile too).
pub fn usable(rules: &[RouteRule], challenge_key: bool) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        if r.action == RuleAction::Challenge && !challenge_key {
            errors.push(err(
                &format!("rules[{i}].action"),
                "challenge needs the secret CHALLENGE_SIGNING_KEY (wrangler secret put CHALLENGE_SIGNING_KEY)",
            ));
        }
    }
    errors
}

/// Field errors as one line (the configuration's error message).
pub fn describe(errors: &[FieldError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

fn err(field: &str, message: &str) -> FieldError {
    FieldError { field: field.to_string(), message: message.to_string() }
}

/// Refuses fields other than `known` in `obj` (typos must not widen a rule).
fn unknown_fields(obj: &Map<String, Value>, known: &[&str], at: &str, errors: &mut Vec<FieldError>) {
    for k in obj.keys().filter(|k| !known.contains(&k.as_str())) {
        // Named, not echoed whole: a 1 MiB key is not sent back.
        let shown: String = k.chars().take(64).collect();
        errors.push(err(&format!("{at}.{shown}"), &format!("unknown field (known: {})", known.join(", "))));
    }
}

fn parse_rule(v: &Value, at: &str, errors: &mut Vec<FieldError>) -> Option<RouteRule> {
    let Some(obj) = v.as_object() else {
        errors.push(err(at, "must be an object"));
        return None;
    };
    let before = errors.len();
    unknown_fields(obj, &["id", "match", "action", "rateLimit", "dryRun"], at, errors);
    let id = match obj.get("id") {
        Some(Value::String(s)) if valid_id(s) => Some(s.clone()),
        Some(_) => {
            errors.push(err(
                &format!("{at}.id"),
                &format!("must be 1-{MAX_ID_LEN} characters of A-Z, a-z, 0-9, `_`, `.`, `-`"),
            ));
            None
        }
        None => {
            errors.push(err(&format!("{at}.id"), "missing"));
            None
        }
    };
    let when = match obj.get("match") {
        None => Some(Match::default()),
        Some(m) => parse_match(m, &format!("{at}.match"), errors),
    };
    let action = match obj.get("action") {
        Some(Value::String(s)) => RuleAction::parse(s).or_else(|| {
            errors.push(err(&format!("{at}.action"), "must be allow, monitor, challenge, block or rate_limit"));
            None
        }),
        Some(_) => {
            errors.push(err(&format!("{at}.action"), "must be a string"));
            None
        }
        None => {
            errors.push(err(&format!("{at}.action"), "missing"));
            None
        }
    };
    let rate_limit = match (obj.get("rateLimit"), action) {
        (Some(r), Some(RuleAction::RateLimit)) => parse_rate_limit(r, &format!("{at}.rateLimit"), errors),
        (None, Some(RuleAction::RateLimit)) => {
            errors.push(err(&format!("{at}.rateLimit"), "required when the action is rate_limit"));
            None
        }
        (Some(_), Some(_)) => {
            errors.push(err(&format!("{at}.rateLimit"), "only for the action rate_limit"));
            None
        }
        _ => None,
    };
    let dry_run = match obj.get("dryRun") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            errors.push(err(&format!("{at}.dryRun"), "must be true or false"));
            false
        }
    };
    if errors.len() > before {
        return None;
    }
    Some(RouteRule { id: id?, when: when?, action: action?, rate_limit, dry_run })
}

fn valid_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_ID_LEN && s.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

fn parse_match(v: &Value, at: &str, errors: &mut Vec<FieldError>) -> Option<Match> {
    let Some(obj) = v.as_object() else {
        errors.push(err(at, "must be an object"));
        return None;
    };
    let before = errors.len();
    unknown_fields(obj, &["path", "methods", "countries", "asns", "reasons", "minScore"], at, errors);
    let mut m = Match::default();
    if let Some(p) = obj.get("path") {
        m.path = parse_path(p, &format!("{at}.path"), errors);
    }
    m.methods = list(
        obj.get("methods"),
        &format!("{at}.methods"),
        errors,
        |v| {
            let s = v.as_str()?;
            let token = !s.is_empty() && s.len() <= 16 && s.chars().all(|c| c.is_ascii_alphabetic());
            token.then(|| s.to_ascii_uppercase())
        },
        "an HTTP method such as GET or POST",
    );
    m.countries = list(
        obj.get("countries"),
        &format!("{at}.countries"),
        errors,
        // As written: the API's schema says two letters or digits, so " de" is refused, not trimmed.
        |v| v.as_str().filter(|s| s.len() == 2).and_then(country_code),
        "a two-letter country code (cf.country: XX, T1 for Tor)",
    );
    m.asns = list(
        obj.get("asns"),
        &format!("{at}.asns"),
        errors,
        |v| v.as_u64().filter(|n| (1..=u64::from(u32::MAX)).contains(n)).map(|n| n as u32),
        "an ASN as a number (64496)",
    );
    m.reasons = list(
        obj.get("reasons"),
        &format!("{at}.reasons"),
        errors,
        |v| Reason::from_code(v.as_str()?),
        "a reason code (the README's table)",
    );
    match obj.get("minScore") {
        None => {}
        Some(v) => match v.as_u64().filter(|n| *n <= 100) {
            Some(n) => m.min_score = Some(n as u8),
            None => errors.push(err(&format!("{at}.minScore"), "must be an integer from 0 to 100")),
        },
    }
    (errors.len() == before).then_some(m)
}

/// A JSON array of at most `MAX_LIST_LEN` items, each read by `item`; every
/// bad one named by its index.
fn list<T>(
    v: Option<&Value>,
    at: &str,
    errors: &mut Vec<FieldError>,
    item: impl Fn(&Value) -> Option<T>,
    what: &str,
) -> Vec<T> {
    let Some(v) = v else { return Vec::new() };
    let Some(items) = v.as_array() else {
        errors.push(err(at, &format!("must be an array, each {what}")));
        return Vec::new();
    };
    if items.is_empty() || items.len() > MAX_LIST_LEN {
        errors.push(err(at, &format!("must hold 1 to {MAX_LIST_LEN} entries (leave it out to match any)")));
        return Vec::new();
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, x) in items.iter().enumerate() {
        match item(x) {
            Some(t) => out.push(t),
            None => errors.push(err(&format!("{at}[{i}]"), &format!("must be {what}"))),
        }
    }
    out
}

fn parse_path(v: &Value, at: &str, errors: &mut Vec<FieldError>) -> Option<PathPattern> {
    let Some(s) = v.as_str() else {
        errors.push(err(at, "must be a string such as /login or /api/*"));
        return None;
    };
    let (body, prefix) = match s.strip_suffix('*') {
        Some(b) => (b, true),
        None => (s, false),
    };
    let problem = if !s.starts_with('/') {
        Some("must start with /")
    } else if s.chars().count() > MAX_PATH_LEN {
        Some("is too long (at most 1024 characters)")
    } else if body.contains('*') {
        Some("`*` is allowed only at the end (a prefix)")
    } else if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        Some("must not hold spaces or control characters")
    } else if s.contains(['?', '#']) {
        Some("is a path: no query (`?`) or fragment (`#`)")
    } else {
        None
    };
    if let Some(p) = problem {
        errors.push(err(at, p));
        return None;
    }
    // Compared the way requests are, so `/%6Cogin` and `//login` in a rule
    // mean `/login` too.
    Some(PathPattern { written: s.to_string(), raw: collapse_slashes(body), normalised: match_path(body), prefix })
}

fn parse_rate_limit(v: &Value, at: &str, errors: &mut Vec<FieldError>) -> Option<RateLimit> {
    let Some(obj) = v.as_object() else {
        errors.push(err(at, "must be an object {\"requests\", \"periodSeconds\", \"by\"}"));
        return None;
    };
    let before = errors.len();
    unknown_fields(obj, &["requests", "periodSeconds", "by"], at, errors);
    let mut int = |name: &str, max: u64| match obj.get(name).and_then(Value::as_u64).filter(|n| (1..=max).contains(n)) {
        Some(n) => Some(n as u32),
        None => {
            errors.push(err(&format!("{at}.{name}"), &format!("must be an integer from 1 to {max}")));
            None
        }
    };
    let requests = int("requests", MAX_LIMIT_REQUESTS);
    let period_seconds = int("periodSeconds", MAX_PERIOD_SECONDS);
    let by = match obj.get("by") {
        None => Some(LimitBy::Subject),
        Some(v) => v.as_str().and_then(LimitBy::parse).or_else(|| {
            errors.push(err(&format!("{at}.by"), "must be subject, visitor or asn"));
            None
        }),
    };
    if errors.len() > before {
        return None;
    }
    Some(RateLimit { requests: requests?, period_seconds: period_seconds?, by: by? })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input<'a>(path: &'a str, method: &'a str, reasons: &'a [Reason], score: u8) -> RuleInput<'a> {
        RuleInput { path, method, country: Some("DE"), asn: Some(3320), reasons, score }
    }

    #[test]
    fn the_issues_example_parses_and_serialises_back() {
        let v = json!([{"id": "login", "match": {"path": "/login*", "methods": ["POST"], "countries": ["XX"], "asns": [64496], "reasons": ["tor_exit"], "minScore": 40}, "action": "rate_limit", "rateLimit": {"requests": 5, "periodSeconds": 60, "by": "subject"}, "dryRun": false}]);
        let rules = parse_rules(&v).unwrap();
        assert_eq!(rules.len(), 1);
        let r = rules.first().unwrap();
        let path = r.when.path.as_ref().unwrap();
        assert_eq!((path.normalised.as_str(), path.prefix), ("/login", true));
        assert_eq!(r.rate_limit, Some(RateLimit { requests: 5, period_seconds: 60, by: LimitBy::Subject }));
        assert_eq!(serde_json::to_value(&rules).unwrap(), v, "what GET shows is what was PUT");
    }

    #[test]
    fn every_bad_field_is_named_in_one_answer() {
        let v = json!([
            {"id": "ok", "action": "monitor"},
            {"id": "bad id!", "match": {"path": "login", "methods": ["P0ST"], "countries": ["Germany"], "asns": [-1], "reasons": ["nope"], "minScore": 101, "minscore": 3}, "action": "explode", "dryRun": "yes"},
            {"id": "rl", "action": "rate_limit"},
            {"id": "x", "action": "block", "rateLimit": {"requests": 1, "periodSeconds": 1}},
            {"id": "ok", "action": "allow"},
            "not an object"
        ]);
        let errors = parse_rules(&v).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        for f in [
            "rules[1].id",
            "rules[1].match.path",
            "rules[1].match.methods[0]",
            "rules[1].match.countries[0]",
            "rules[1].match.asns[0]",
            "rules[1].match.reasons[0]",
            "rules[1].match.minScore",
            "rules[1].match.minscore",
            "rules[1].action",
            "rules[1].dryRun",
            "rules[2].rateLimit",
            "rules[3].rateLimit",
            "rules[4].id",
            "rules[5]",
        ] {
            assert!(fields.contains(&f), "{f} not named in {errors:?}");
        }
        assert!(!fields.iter().any(|f| f.starts_with("rules[0]")), "the good rule is not blamed: {errors:?}");
    }

    #[test]
    fn a_path_is_kept_as_written_so_the_stored_copy_reads_back_the_same() {
        let v = json!([{"id": "a", "match": {"path": "/x%2541//y*"}, "action": "block", "dryRun": false}]);
        let rules = parse_rules(&v).unwrap();
        assert_eq!(serde_json::to_value(&rules).unwrap(), v);
        assert_eq!(parse_rules(&serde_json::to_value(&rules).unwrap()).unwrap(), rules);
        let hit = |path: &str| first_match(&rules, &input(path, "GET", &[], 0)).is_some();
        assert!(hit("/x%2541/y/z") && !hit("/xA/y/z") && !hit("/x%41/y/z"), "decoded once, as requests are");
    }

    #[test]
    fn paths_exact_prefix_and_bounds() {
        let bad = |p: &str| parse_rules(&json!([{"id": "a", "match": {"path": p}, "action": "block"}])).is_err();
        for p in ["login", "/a*b", "/a b", "/a?x=1", "/a#f", "/\u{7}", ""] {
            assert!(bad(p), "{p:?} accepted");
        }
        assert!(bad(&format!("/{}", "a".repeat(MAX_PATH_LEN))));
        assert!(
            !bad(&format!("/{}", "é".repeat(MAX_PATH_LEN - 1))),
            "the bound counts characters, as the schema's maxLength does"
        );
        for p in ["/", "/*", "/login", "/api/*", "/%6Cogin"] {
            assert!(!bad(p), "{p:?} refused");
        }
        let rules = parse_rules(&json!([{"id": "a", "match": {"path": "/login"}, "action": "block"}])).unwrap();
        let hit = |path: &str| first_match(&rules, &input(path, "GET", &[], 0)).is_some();
        assert!(hit("/login") && hit("/login?next=/") && hit("//login") && hit("/%6Cogin") && hit("/%6cogin"));
        assert!(hit("/login/"), "one trailing slash: the same page to most origins");
        assert!(!hit("/Login") && !hit("/logins") && !hit("/") && !hit("/login//x"));
        let rules = parse_rules(&json!([{"id": "a", "match": {"path": "/api/*"}, "action": "block"}])).unwrap();
        let hit = |path: &str| first_match(&rules, &input(path, "GET", &[], 0)).is_some();
        assert!(hit("/api/") && hit("/api/x/y") && hit("//api//x") && !hit("/api") && !hit("/apix"));
    }

    /// Spellings an origin may read as another path: a rule that stops
    /// requests holds if either reading matches, one that lets them through
    /// only if both do (the attacker review of issue 18).
    #[test]
    fn path_spellings_cannot_stretch_an_allow_rule_or_dodge_a_block_rule() {
        let rules = parse_rules(&json!([
            {"id": "pub", "match": {"path": "/public/*"}, "action": "allow"},
            {"id": "adm", "match": {"path": "/admin*"}, "action": "block"},
        ]))
        .unwrap();
        let decided = |path: &str| first_match(&rules, &input(path, "GET", &[], 0)).map(|r| r.id.as_str());
        assert_eq!(decided("/public/app.css"), Some("pub"));
        for sneaky in [
            "/public/..;/admin",
            "/public/..%2Fadmin",
            "/public/..%2fadmin",
            "/public/..%5Cadmin",
            "/public/%2e%2e/admin",
        ] {
            assert_eq!(decided(sneaky), Some("adm"), "{sneaky}");
        }
        for sneaky in ["/x/..;/admin", "/x/..%2Fadmin", "/admin;jsessionid=1", "/%61dmin", "/x\\..\\admin"] {
            assert_eq!(decided(sneaky), Some("adm"), "{sneaky}");
        }
        // An allow rule needs both readings: a decoded spelling of the same place passes neither way.
        assert_eq!(decided("/%70ublic/app.css"), None);
        assert_eq!(match_path("/a/./b/../c/"), "/a/c/");
        assert_eq!(match_path("/..%2F..%2Fetc"), "/etc");
        assert_eq!(match_path("/a;x/b;y"), "/a/b");
        assert_eq!(PathForms::of("//a//%41?q=/b").raw, "/a/%41");
    }

    #[test]
    fn every_given_field_must_hold_and_the_first_match_decides() {
        let rules = parse_rules(&json!([
            {"id": "tor-login", "match": {"path": "/login", "methods": ["post"], "reasons": ["tor_exit"]}, "action": "block"},
            {"id": "risky", "match": {"minScore": 40}, "action": "challenge"},
            {"id": "de", "match": {"countries": ["de"], "asns": [3320]}, "action": "monitor", "dryRun": true},
        ]))
        .unwrap();
        let id = |i: RuleInput| first_match(&rules, &i).map(|r| r.id.clone());
        let tor = [Reason::TorExit];
        assert_eq!(
            id(input("/login", "POST", &tor, 50)).as_deref(),
            Some("tor-login"),
            "first match, though risky also holds"
        );
        assert_eq!(id(input("/login", "GET", &tor, 50)).as_deref(), Some("risky"), "method must hold");
        assert_eq!(id(input("/login", "POST", &[], 10)).as_deref(), Some("de"), "reason must hold; score under 40");
        let mut other = input("/", "GET", &[], 0);
        other.country = None;
        assert_eq!(id(other), None, "an unknown country matches no country list");
        other.country = Some("DE");
        other.asn = Some(1);
        assert_eq!(id(other), None, "both country and ASN must hold");
        assert!(rules.get(2).unwrap().dry_run);
        assert_eq!(first_match(&[], &other), None);
    }

    #[test]
    fn body_and_bounds() {
        assert!(parse_body(&json!({"rules": []})).unwrap().is_empty());
        let e = parse_body(&json!({"rulez": []})).unwrap_err();
        assert!(e.iter().any(|e| e.field == "rulez") && e.iter().any(|e| e.field == "rules"));
        assert!(parse_body(&json!([])).is_err());
        let many: Vec<Value> = (0..=MAX_RULES).map(|i| json!({"id": format!("r{i}"), "action": "monitor"})).collect();
        assert!(parse_rules(&Value::Array(many)).is_err());
        let long: Vec<Value> = (0..=MAX_LIST_LEN).map(|i| json!(i + 1)).collect();
        assert!(parse_rules(&json!([{"id": "a", "match": {"asns": long}, "action": "block"}])).is_err());
        assert!(
            parse_rules(&json!([{"id": "a", "match": {"asns": []}, "action": "block"}])).is_err(),
            "an empty list would match nothing: refused"
        );
        assert!(parse_rules(&json!([{"id": "a".repeat(MAX_ID_LEN + 1), "action": "block"}])).is_err());
        let rl = |r: Value| parse_rules(&json!([{"id": "a", "action": "rate_limit", "rateLimit": r}]));
        assert!(rl(json!({"requests": 0, "periodSeconds": 60})).is_err());
        assert!(rl(json!({"requests": 5, "periodSeconds": 86_401})).is_err());
        assert!(rl(json!({"requests": 5, "periodSeconds": 60, "by": "ip"})).is_err());
        assert_eq!(
            rl(json!({"requests": 5, "periodSeconds": 60})).unwrap().first().unwrap().rate_limit.as_ref().unwrap().by,
            LimitBy::Subject
        );
    }

    #[test]
    fn usable_names_what_this_deployment_cannot_do() {
        let rules = parse_rules(&json!([
            {"id": "a", "action": "block"},
            {"id": "c", "action": "challenge"},
            {"id": "r", "action": "rate_limit", "rateLimit": {"requests": 1, "periodSeconds": 1}},
        ]))
        .unwrap();
        let fields = |key| usable(&rules, key).into_iter().map(|e| e.field).collect::<Vec<_>>();
        assert_eq!(fields(false), ["rules[1].action"]);
        assert!(fields(true).is_empty(), "a rate limit needs nothing but its LIMITS binding");
        assert!(describe(&usable(&rules, false)).contains("rules[1].action: challenge needs"));
    }

    #[test]
    fn match_path_never_panics_and_keeps_bytes_that_are_not_text() {
        assert_eq!(match_path("/a%ZZ%"), "/a%ZZ%");
        assert_eq!(match_path("/%FF%fe/x"), "/%FF%FE/x");
        assert_eq!(match_path("/%C3%A9t%C3%A9"), "/été");
        assert_eq!(match_path(""), "/");
        assert_eq!(match_path("x"), "/x");
        assert_eq!(match_path("/a%2F%2Fb"), "/a/b", "encoded slashes collapse too");
        for s in ["%", "%%", "%1", "/%", "/%%%", "\u{0}%00"] {
            let _ = match_path(s);
        }
    }

    /// The API's schema for a rule (src/openapi.json) holds what this parser
    /// accepts: schemathesis sends schema-valid rules and expects them taken.
    #[test]
    fn the_openapi_schema_lists_the_same_reasons_and_country_form() {
        let doc: Value = serde_json::from_str(include_str!("../openapi.json")).unwrap();
        let listed: Vec<&str> = doc
            .pointer("/components/schemas/RouteRule/properties/match/properties/reasons/items/enum")
            .and_then(Value::as_array)
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let codes: Vec<&str> = Reason::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(listed, codes);
        let country =
            |c: &str| parse_rules(&json!([{"id": "a", "match": {"countries": [c]}, "action": "block"}])).is_ok();
        assert!(country("de") && country("T1") && country("XX"));
        assert!(!country(" de") && !country("d") && !country("deu") && !country("d-"));
    }
}
