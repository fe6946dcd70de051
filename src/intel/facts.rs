//! What one request tells us: the client's `request.cf` facts and the request's
//! own facts. Every `cf` field is optional and parsed leniently: a missing,
//! mistyped or malformed field becomes `None`, never an error, so no request
//! can fail (or panic) because of what Cloudflare, a test or a proxy put there.

use serde_json::Value;

/// The `request.cf` fields edgeintel reads, each optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CfFacts {
    /// ISO 3166-1 alpha-2, upper case; `T1` for Tor (Cloudflare's code), `XX` unknown.
    pub country: Option<String>,
    pub city: Option<String>,
    pub region: Option<String>,
    pub region_code: Option<String>,
    pub continent: Option<String>,
    pub postal_code: Option<String>,
    pub timezone: Option<String>,
    /// Degrees, validated to [-90, 90]; Cloudflare sends it as a string.
    pub latitude: Option<f64>,
    /// Degrees, validated to [-180, 180].
    pub longitude: Option<f64>,
    pub asn: Option<u32>,
    pub as_organization: Option<String>,
    /// Cloudflare data-centre IATA code.
    pub colo: Option<String>,
    pub http_protocol: Option<String>,
    pub tls_version: Option<String>,
    /// `tlsClientCiphersSha1`: base64 SHA-1 of the ClientHello's cipher list
    /// (all plans; absent over plain HTTP). Part of the fingerprint (`intel::fingerprint`).
    pub tls_ciphers_sha1: Option<String>,
    /// `tlsClientExtensionsSha1`: the same for its extensions.
    pub tls_extensions_sha1: Option<String>,
    /// `tlsClientHelloLength`: the ClientHello's length in bytes.
    pub tls_hello_length: Option<u32>,
    /// `botManagement.ja4`, only on zones with Bot Management.
    pub ja4: Option<String>,
    pub is_eu_country: Option<bool>,
    /// `botManagement.score` (1-99), only on zones with Bot Management.
    pub bot_score: Option<u8>,
    /// `botManagement.verifiedBot`.
    pub verified_bot: Option<bool>,
}

/// Longest string we keep from any cf field; anything longer is truncated
/// at a char boundary (the values are echoed into headers and profiles).
const MAX_FIELD_CHARS: usize = 128;

impl CfFacts {
    /// Reads the fields from the JSON form of `request.cf`. Anything that is
    /// not an object (absent `cf`, `null`, an array) gives all-`None` facts.
    pub fn from_json(cf: &Value) -> CfFacts {
        let Some(obj) = cf.as_object() else {
            return CfFacts::default();
        };
        let text = |k: &str| obj.get(k).and_then(clean_text);
        let bot = obj.get("botManagement").and_then(Value::as_object);
        CfFacts {
            country: text("country").and_then(|c| country_code(&c)),
            city: text("city"),
            region: text("region"),
            region_code: text("regionCode"),
            continent: text("continent"),
            postal_code: text("postalCode"),
            timezone: text("timezone"),
            latitude: obj.get("latitude").and_then(number).filter(|v| (-90.0..=90.0).contains(v)),
            longitude: obj.get("longitude").and_then(number).filter(|v| (-180.0..=180.0).contains(v)),
            asn: obj
                .get("asn")
                .and_then(number)
                .filter(|v| v.fract() == 0.0 && *v > 0.0 && *v <= f64::from(u32::MAX))
                .map(|v| v as u32),
            as_organization: text("asOrganization"),
            // An IATA code: three letters (a few internal colos have four).
            colo: obj
                .get("colo")
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|c| (3..=4).contains(&c.len()) && c.chars().all(|ch| ch.is_ascii_alphabetic()))
                .map(str::to_ascii_uppercase),
            http_protocol: text("httpProtocol"),
            tls_version: text("tlsVersion"),
            tls_ciphers_sha1: text("tlsClientCiphersSha1"),
            tls_extensions_sha1: text("tlsClientExtensionsSha1"),
            tls_hello_length: obj
                .get("tlsClientHelloLength")
                .and_then(number)
                .filter(|v| v.fract() == 0.0 && *v > 0.0 && *v <= 65_535.0)
                .map(|v| v as u32),
            ja4: bot.and_then(|b| b.get("ja4")).and_then(clean_text),
            is_eu_country: obj.get("isEUCountry").and_then(boolish),
            bot_score: bot
                .and_then(|b| b.get("score"))
                .and_then(number)
                .filter(|v| v.fract() == 0.0 && (0.0..=100.0).contains(v))
                .map(|v| v as u8),
            verified_bot: bot.and_then(|b| b.get("verifiedBot")).and_then(boolish),
        }
    }

    /// Latitude and longitude, when both are known.
    pub fn coordinates(&self) -> Option<(f64, f64)> {
        Some((self.latitude?, self.longitude?))
    }
}

/// A non-empty string, trimmed and bounded; numbers are accepted as text too.
fn clean_text(v: &Value) -> Option<String> {
    let s = match v {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    if s.is_empty() {
        return None;
    }
    Some(s.chars().take(MAX_FIELD_CHARS).collect())
}

/// A finite number, from a JSON number or a numeric string ("52.52437").
fn number(v: &Value) -> Option<f64> {
    let n = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    n.is_finite().then_some(n)
}

/// Cloudflare sends `isEUCountry` as `"1"`; accept booleans and 0/1 too.
fn boolish(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s == "1" || s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s == "0" || s.eq_ignore_ascii_case("false") => Some(false),
        Value::Number(n) => n.as_f64().map(|x| x != 0.0),
        _ => None,
    }
}

/// Two ASCII letters or digits (Cloudflare's codes include `T1`), upper-cased.
pub fn country_code(s: &str) -> Option<String> {
    let s = s.trim();
    (s.len() == 2 && s.chars().all(|c| c.is_ascii_alphanumeric())).then(|| s.to_ascii_uppercase())
}

/// The request's own facts, read from its method, URL and headers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestFacts {
    pub method: String,
    /// Path and query as sent (still percent-encoded).
    pub path: String,
    pub user_agent: Option<String>,
    pub accept: Option<String>,
    pub accept_language: Option<String>,
    /// The names of the request's headers as the runtime lists them (sorted,
    /// lower case; at most `fingerprint::MAX_NAMES`), for the fingerprint.
    pub header_names: Vec<String>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn full_cloudflare_object_is_read() {
        let cf = json!({
            "country": "DE", "city": "Berlin", "region": "Land Berlin", "regionCode": "BE",
            "continent": "EU", "postalCode": "10115", "timezone": "Europe/Berlin",
            "latitude": "52.52437", "longitude": "13.41053", "asn": 3320,
            "asOrganization": "Deutsche Telekom AG", "colo": "FRA", "httpProtocol": "HTTP/2",
            "tlsVersion": "TLSv1.3", "isEUCountry": "1",
            "botManagement": {"score": 87, "verifiedBot": false}
        });
        let f = CfFacts::from_json(&cf);
        assert_eq!(f.country.as_deref(), Some("DE"));
        assert_eq!(f.city.as_deref(), Some("Berlin"));
        assert_eq!(f.coordinates(), Some((52.52437, 13.41053)));
        assert_eq!(f.asn, Some(3320));
        assert_eq!(f.colo.as_deref(), Some("FRA"));
        assert_eq!(f.is_eu_country, Some(true));
        assert_eq!(f.bot_score, Some(87));
        assert_eq!(f.verified_bot, Some(false));
    }

    #[test]
    fn missing_or_non_object_cf_gives_empty_facts() {
        for v in [Value::Null, json!([]), json!("cf"), json!(42), json!({})] {
            assert_eq!(CfFacts::from_json(&v), CfFacts::default(), "{v}");
        }
    }

    #[test]
    fn malformed_fields_become_none() {
        let cf = json!({
            "country": "Germany", "latitude": "north", "longitude": 500, "asn": -3,
            "colo": 5, "city": "", "isEUCountry": [1],
            "botManagement": {"score": "high"}
        });
        let f = CfFacts::from_json(&cf);
        assert_eq!(f, CfFacts::default());
    }

    #[test]
    fn numeric_forms_are_accepted() {
        let f =
            CfFacts::from_json(&json!({"latitude": -33.8688, "longitude": "151.2093", "asn": "1221", "country": "au"}));
        assert_eq!(f.coordinates(), Some((-33.8688, 151.2093)));
        assert_eq!(f.asn, Some(1221));
        assert_eq!(f.country.as_deref(), Some("AU"));
    }

    #[test]
    fn long_fields_are_bounded() {
        let f = CfFacts::from_json(&json!({"city": "é".repeat(1000)}));
        assert_eq!(f.city.unwrap().chars().count(), MAX_FIELD_CHARS);
    }
}
