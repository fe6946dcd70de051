//! Configuration: the Worker's `[vars]` (and secrets) parsed once into a typed,
//! validated `Config`. The core never sees `Env`; the glue hands us a lookup
//! function. An invalid value is an error naming the variable, never a silent
//! default: the Worker then answers every request with that error and
//! `/health/intelligence` reports it.

use serde_json::Value;
use url::Url;

use crate::intel::facts::country_code;
use crate::intel::score::Weights;
use crate::intel::signals::{Reason, SignalConfig};

/// What the Worker does with a risky request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enforce {
    /// Monitor only: every request is forwarded with headers (default).
    Off,
}

/// The validated configuration. Each field names its variable and default.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `INTEL_PREFIX` (default `/_intel`): reserved path prefix for the API,
    /// streams and dashboard; never forwarded to the origin.
    pub intel_prefix: String,
    /// `TRUST_X_REAL_IP` (default `false`): take the client IP from
    /// `X-Real-IP` when `CF-Connecting-IP` is absent. Only behind a proxy you run.
    pub trust_x_real_ip: bool,
    /// `ORIGIN_URL` (default unset: pass-through `fetch` of the request):
    /// scheme and host (and port) the request is sent to instead; path and
    /// query are kept.
    pub origin_url: Option<Url>,
    /// `ENFORCE` (default `off`).
    pub enforce: Enforce,
    /// `CHALLENGE_AT` (default 75) and `BLOCK_AT` (default 90): score thresholds.
    pub challenge_at: u8,
    pub block_at: u8,
    /// `RISK_WEIGHTS` (JSON object reason code -> points 0-100) over the defaults.
    pub weights: Weights,
    /// `COUNTRY_RISK` (JSON object country code -> points) and `HOSTING_ASNS`
    /// (JSON array of ASNs, `64496` or `"AS64496"`), for the request signals.
    pub signals: SignalConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            intel_prefix: "/_intel".to_string(),
            trust_x_real_ip: false,
            origin_url: None,
            enforce: Enforce::Off,
            challenge_at: 75,
            block_at: 90,
            weights: Weights::default(),
            signals: SignalConfig::default(),
        }
    }
}

/// A variable with an invalid value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid {}: {}", self.var, self.message)
    }
}

fn err(var: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        message: message.into(),
    }
}

impl Config {
    /// Parses every variable through `get` (which returns `None` for unset).
    /// Empty strings count as unset, so `KEY = ""` in wrangler.toml means default.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let mut c = Config::default();
        if let Some(p) = get("INTEL_PREFIX") {
            c.intel_prefix = parse_prefix(&p)?;
        }
        if let Some(v) = get("TRUST_X_REAL_IP") {
            c.trust_x_real_ip = parse_bool("TRUST_X_REAL_IP", &v)?;
        }
        if let Some(v) = get("ORIGIN_URL") {
            c.origin_url = Some(parse_origin(&v)?);
        }
        if let Some(v) = get("ENFORCE") {
            c.enforce =
                match v.as_str() {
                    "off" => Enforce::Off,
                    "challenge" | "block" => return Err(err(
                        "ENFORCE",
                        format!(
                            "`{v}` is not available in this version yet; use `off` (monitor only)"
                        ),
                    )),
                    _ => {
                        return Err(err(
                            "ENFORCE",
                            format!("`{v}` is not one of off, challenge, block"),
                        ))
                    }
                };
        }
        if let Some(v) = get("CHALLENGE_AT") {
            c.challenge_at = parse_points("CHALLENGE_AT", &v)?;
        }
        if let Some(v) = get("BLOCK_AT") {
            c.block_at = parse_points("BLOCK_AT", &v)?;
        }
        if c.challenge_at > c.block_at {
            return Err(err(
                "CHALLENGE_AT",
                format!("{} is above BLOCK_AT ({})", c.challenge_at, c.block_at),
            ));
        }
        if let Some(v) = get("RISK_WEIGHTS") {
            for (code, points) in parse_points_map("RISK_WEIGHTS", &v)? {
                let reason = Reason::from_code(&code)
                    .ok_or_else(|| err("RISK_WEIGHTS", format!("unknown reason code `{code}`")))?;
                c.weights.set(reason, points);
            }
        }
        if let Some(v) = get("COUNTRY_RISK") {
            for (code, points) in parse_points_map("COUNTRY_RISK", &v)? {
                let cc = country_code(&code).ok_or_else(|| {
                    err(
                        "COUNTRY_RISK",
                        format!("`{code}` is not a two-letter country code"),
                    )
                })?;
                c.signals.country_risk.push((cc, points));
            }
        }
        if let Some(v) = get("HOSTING_ASNS") {
            c.signals.extra_hosting_asns = parse_asn_list("HOSTING_ASNS", &v)?;
        }
        Ok(c)
    }
}

fn parse_prefix(p: &str) -> Result<String, ConfigError> {
    let ok = p.starts_with('/')
        && p.len() >= 2
        && !p.ends_with('/')
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_-.".contains(c))
        && !p.contains("//");
    if ok {
        Ok(p.to_string())
    } else {
        Err(err(
            "INTEL_PREFIX",
            format!("`{p}` must look like /_intel (a path starting with /, no trailing /)"),
        ))
    }
}

fn parse_bool(var: &'static str, v: &str) -> Result<bool, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(err(var, format!("`{v}` is not true or false"))),
    }
}

fn parse_origin(v: &str) -> Result<Url, ConfigError> {
    let u = Url::parse(v).map_err(|e| err("ORIGIN_URL", format!("`{v}` is not a URL: {e}")))?;
    if !matches!(u.scheme(), "http" | "https") || u.host().is_none() {
        return Err(err(
            "ORIGIN_URL",
            format!("`{v}` must be an http(s) URL with a host"),
        ));
    }
    if u.path() != "/" || u.query().is_some() || u.fragment().is_some() {
        return Err(err(
            "ORIGIN_URL",
            format!("`{v}` must be scheme://host[:port] only; the request keeps its own path"),
        ));
    }
    Ok(u)
}

fn parse_points(var: &'static str, v: &str) -> Result<u8, ConfigError> {
    v.parse::<u8>()
        .ok()
        .filter(|p| *p <= 100)
        .ok_or_else(|| err(var, format!("`{v}` is not a whole number from 0 to 100")))
}

fn parse_points_map(var: &'static str, v: &str) -> Result<Vec<(String, u8)>, ConfigError> {
    let value: Value = serde_json::from_str(v).map_err(|e| err(var, format!("not JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| err(var, "must be a JSON object of name -> points"))?;
    obj.iter()
        .map(|(k, p)| {
            let points = p
                .as_u64()
                .filter(|p| *p <= 100)
                .and_then(|p| u8::try_from(p).ok())
                .ok_or_else(|| {
                    err(
                        var,
                        format!("`{k}`: {p} is not a whole number from 0 to 100"),
                    )
                })?;
            Ok((k.clone(), points))
        })
        .collect()
}

/// `[13335, "AS14061"]` -> ASNs.
pub fn parse_asn_list(var: &'static str, v: &str) -> Result<Vec<u32>, ConfigError> {
    let value: Value = serde_json::from_str(v).map_err(|e| err(var, format!("not JSON: {e}")))?;
    let items = value
        .as_array()
        .ok_or_else(|| err(var, "must be a JSON array of ASNs"))?;
    items
        .iter()
        .map(|item| {
            let n = match item {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => {
                    let digits = s
                        .strip_prefix("AS")
                        .or_else(|| s.strip_prefix("as"))
                        .unwrap_or(s);
                    digits.parse::<u64>().ok()
                }
                _ => None,
            };
            n.and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| err(var, format!("{item} is not an ASN")))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_vars(|k| m.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = parse(&[]).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.intel_prefix, "/_intel");
        assert_eq!(c.weights.get(Reason::TorExit), 45);
        assert!(c.signals.country_risk.is_empty());
    }

    #[test]
    fn valid_values() {
        let c = parse(&[
            ("INTEL_PREFIX", "/edge-intel"),
            ("TRUST_X_REAL_IP", "true"),
            ("ORIGIN_URL", "http://127.0.0.1:8788"),
            ("BLOCK_AT", "95"),
            ("RISK_WEIGHTS", r#"{"tor_exit": 60, "geo_jump": 0}"#),
            ("COUNTRY_RISK", r#"{"xx": 30}"#),
            ("HOSTING_ASNS", r#"[64496, "AS64497"]"#),
            ("ENFORCE", ""),
        ])
        .unwrap();
        assert_eq!(c.intel_prefix, "/edge-intel");
        assert!(c.trust_x_real_ip);
        assert_eq!(c.origin_url.unwrap().as_str(), "http://127.0.0.1:8788/");
        assert_eq!(c.block_at, 95);
        assert_eq!(c.weights.get(Reason::TorExit), 60);
        assert_eq!(c.weights.get(Reason::GeoJump), 0);
        assert_eq!(c.signals.country_risk, vec![("XX".to_string(), 30)]);
        assert_eq!(c.signals.extra_hosting_asns, vec![64496, 64497]);
    }

    #[test]
    fn invalid_values_name_their_variable() {
        let cases = [
            ("INTEL_PREFIX", "_intel"),
            ("INTEL_PREFIX", "/_intel/"),
            ("TRUST_X_REAL_IP", "maybe"),
            ("ORIGIN_URL", "not a url"),
            ("ORIGIN_URL", "ftp://example.com"),
            ("ORIGIN_URL", "https://example.com/base"),
            ("ENFORCE", "block"),
            ("ENFORCE", "loud"),
            ("BLOCK_AT", "101"),
            ("BLOCK_AT", "-1"),
            ("CHALLENGE_AT", "95"),
            ("RISK_WEIGHTS", "{"),
            ("RISK_WEIGHTS", r#"{"made_up": 10}"#),
            ("RISK_WEIGHTS", r#"{"tor_exit": 500}"#),
            ("COUNTRY_RISK", r#"{"Russia": 10}"#),
            ("COUNTRY_RISK", "[]"),
            ("HOSTING_ASNS", r#"["ASX"]"#),
            ("HOSTING_ASNS", "[0]"),
        ];
        for (var, value) in cases {
            let e = parse(&[(var, value)]).unwrap_err();
            assert_eq!(e.var, var, "{var}={value}: {e}");
            assert!(e.to_string().starts_with(&format!("invalid {var}: ")));
        }
    }
}
