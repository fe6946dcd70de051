//! Reason codes and the signals a single request carries by itself. The codes
//! are a stable contract with origins (they appear in `X-Risk-Reasons`): add
//! new ones, never rename or reuse one.

use serde::{Deserialize, Serialize};

use super::asn;
use super::facts::{CfFacts, RequestFacts};

/// Why a request is risky. Declaration order is the tie-break order when two
/// reasons contribute the same points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// On the operator's block list.
    Blocklisted,
    /// cf country `T1`: a Tor exit node.
    TorExit,
    /// The same visitor moved faster than `TRAVEL_MAX_KMH`.
    ImpossibleTravel,
    /// A `threat_detected` event raised the threat score.
    ThreatReport,
    /// Requests for well-known probe paths.
    PathScan,
    /// Cloudflare Bot Management score below 30.
    LowBotScore,
    /// A burst of 401/403 answers from the origin, or of wrong admin
    /// credentials sent to edgeintel's own API.
    AuthFailures,
    /// Requests per minute above `VELOCITY_RPM`.
    HighVelocity,
    /// Reputation below 30.
    BadReputation,
    /// Automation or headless User-Agent, or none at all.
    AutomationUa,
    /// Country in the operator's `COUNTRY_RISK` map.
    CountryPolicy,
    /// ASN of a hosting, cloud or VPN provider.
    HostingAsn,
    /// A burst of 404 answers from the origin.
    NotFoundBurst,
    /// A browser User-Agent without Accept or Accept-Language.
    MissingBrowserHeaders,
    /// This IP's own geolocation moved far since the last observation.
    GeoJump,
    /// A new subject past the rotation budget of its /48 or ASN
    /// (`intel::rotation`): widened to the /48 (IPv6) or /24 (IPv4).
    SubnetRotation,
    /// The User-Agent claims a well-known crawler and the address is in that
    /// crawler's published ranges (0 points: listed so the origin knows).
    VerifiedBot,
    /// The User-Agent claims a well-known crawler from outside its ranges.
    BotImpersonation,
    /// A valid HTTP Message Signature (Web Bot Auth) from a known agent.
    SignedAgent,
    /// A client fingerprint shared by many subjects whose traffic is mostly risky.
    FingerprintSwarm,
    /// A browser User-Agent on a fingerprint seen only from HTTP libraries.
    UaFingerprintMismatch,
}

impl Reason {
    /// Every reason. Append only: a reason's index is its bit in the
    /// analytics samples (`bit`), which tiers of different versions exchange.
    pub const ALL: [Reason; 21] = [
        Reason::Blocklisted,
        Reason::TorExit,
        Reason::ImpossibleTravel,
        Reason::ThreatReport,
        Reason::PathScan,
        Reason::LowBotScore,
        Reason::AuthFailures,
        Reason::HighVelocity,
        Reason::BadReputation,
        Reason::AutomationUa,
        Reason::CountryPolicy,
        Reason::HostingAsn,
        Reason::NotFoundBurst,
        Reason::MissingBrowserHeaders,
        Reason::GeoJump,
        Reason::SubnetRotation,
        Reason::VerifiedBot,
        Reason::BotImpersonation,
        Reason::SignedAgent,
        Reason::FingerprintSwarm,
        Reason::UaFingerprintMismatch,
    ];

    /// The stable wire code.
    pub const fn code(self) -> &'static str {
        match self {
            Reason::Blocklisted => "blocklisted",
            Reason::TorExit => "tor_exit",
            Reason::ImpossibleTravel => "impossible_travel",
            Reason::ThreatReport => "threat_report",
            Reason::PathScan => "path_scan",
            Reason::LowBotScore => "low_bot_score",
            Reason::AuthFailures => "auth_failures",
            Reason::HighVelocity => "high_velocity",
            Reason::BadReputation => "bad_reputation",
            Reason::AutomationUa => "automation_ua",
            Reason::CountryPolicy => "country_policy",
            Reason::HostingAsn => "hosting_asn",
            Reason::NotFoundBurst => "not_found_burst",
            Reason::MissingBrowserHeaders => "missing_browser_headers",
            Reason::GeoJump => "geo_jump",
            Reason::SubnetRotation => "subnet_rotation",
            Reason::VerifiedBot => "verified_bot",
            Reason::BotImpersonation => "bot_impersonation",
            Reason::SignedAgent => "signed_agent",
            Reason::FingerprintSwarm => "fingerprint_swarm",
            Reason::UaFingerprintMismatch => "ua_fingerprint_mismatch",
        }
    }

    pub fn from_code(code: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.code() == code)
    }

    /// Its bit in a set of reasons carried as one number (`Reason::ALL`'s index).
    pub fn bit(self) -> u32 {
        let i = Reason::ALL.iter().position(|r| *r == self).unwrap_or(0);
        1 << i
    }

    /// The reasons of a set made with `bit` (bits no reason has are ignored:
    /// a newer version's).
    pub fn of_bits(bits: u32) -> impl Iterator<Item = Reason> {
        Reason::ALL.into_iter().enumerate().filter(move |(i, _)| bits & (1 << i) != 0).map(|(_, r)| r)
    }
}

// The bits fit in a u32.
const _: () = assert!(Reason::ALL.len() <= 32);

/// Bot Management scores below this are `low_bot_score` (Cloudflare's own
/// "likely automated" band is 1-29).
pub const LOW_BOT_SCORE_BELOW: u8 = 30;

/// What the request-only signals need from configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SignalConfig {
    /// ASNs the operator adds to the embedded hosting list.
    pub extra_hosting_asns: Vec<u32>,
    /// Country code -> points (`COUNTRY_RISK`); empty by default.
    pub country_risk: Vec<(String, u8)>,
}

/// One detected signal; `points` overrides the configured weight where the
/// signal carries its own amount (the country policy's points, the threat score).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    pub reason: Reason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub points: Option<u8>,
}

impl Signal {
    fn of(reason: Reason) -> Signal {
        Signal { reason, points: None }
    }
}

/// The signals this request carries by itself, without any history.
pub fn request_signals(cf: &CfFacts, req: &RequestFacts, cfg: &SignalConfig) -> Vec<Signal> {
    let mut out = Vec::new();
    if cf.country.as_deref() == Some("T1") {
        out.push(Signal::of(Reason::TorExit));
    }
    if let Some(asn) = cf.asn {
        if asn::embedded_hosting(asn).is_some() || cfg.extra_hosting_asns.contains(&asn) {
            out.push(Signal::of(Reason::HostingAsn));
        }
    }
    if is_probe_path(&req.path) {
        out.push(Signal::of(Reason::PathScan));
    }
    let ua = req.user_agent.as_deref().unwrap_or("").trim();
    if ua.is_empty() || is_automation_ua(ua) {
        out.push(Signal::of(Reason::AutomationUa));
    } else if looks_like_browser(ua) && (blank(&req.accept) || blank(&req.accept_language)) {
        out.push(Signal::of(Reason::MissingBrowserHeaders));
    }
    if cf.bot_score.is_some_and(|s| s < LOW_BOT_SCORE_BELOW) && cf.verified_bot != Some(true) {
        out.push(Signal::of(Reason::LowBotScore));
    }
    if let Some(country) = cf.country.as_deref() {
        if let Some((_, points)) = cfg.country_risk.iter().find(|(c, _)| c == country) {
            out.push(Signal { reason: Reason::CountryPolicy, points: Some(*points) });
        }
    }
    out
}

/// Absent, empty, or the bare wildcard HTTP libraries send by default
/// (undici sends `Accept-Language: *`; no real browser does).
fn blank(v: &Option<String>) -> bool {
    v.as_deref().is_none_or(|s| matches!(s.trim(), "" | "*"))
}

/// User-Agent fragments of HTTP libraries, headless browsers and scanners
/// (lower case). Verified crawlers are handled by `verifiedBot`, not here.
const AUTOMATION_UA_MARKERS: &[&str] = &[
    "curl/",
    "wget/",
    "python-requests",
    "python-urllib",
    "python-httpx",
    "aiohttp",
    "go-http-client",
    "java/",
    "okhttp",
    "apache-httpclient",
    "libwww-perl",
    "lwp::",
    "httpie",
    "axios/",
    "node-fetch",
    "undici",
    "got (",
    "ruby",
    "php/",
    "guzzlehttp",
    "powershell",
    "winhttp",
    "headlesschrome",
    "phantomjs",
    "selenium",
    "puppeteer",
    "playwright",
    "scrapy",
    "nikto",
    "sqlmap",
    "nmap",
    "masscan",
    "zgrab",
    "nuclei",
    "gobuster",
    "dirbuster",
    "wpscan",
    "fasthttp",
    "httpclient",
    "mechanize",
    "libcurl",
    "rust-reqwest",
    "reqwest/",
    "colly",
    "zmeu",
];

pub(crate) fn is_automation_ua(ua: &str) -> bool {
    automation_marker(ua).is_some()
}

/// The first automation marker the User-Agent carries (any case).
pub(crate) fn automation_marker(ua: &str) -> Option<&'static str> {
    let ua = ua.to_ascii_lowercase();
    AUTOMATION_UA_MARKERS.iter().find(|m| ua.contains(*m)).copied()
}

/// A UA that claims to be a graphical browser: real ones always send Accept
/// and Accept-Language, scripts faking the UA often forget.
pub(crate) fn looks_like_browser(ua: &str) -> bool {
    ua.starts_with("Mozilla/5.0") || ua.starts_with("Opera/")
}

/// Well-known probe targets (lower case, matched against the decoded path).
/// Prefix entries end in `/`; others match the whole last segment or prefix.
const PROBE_PATHS: &[&str] = &[
    "/.env",
    "/.git/",
    "/.git",
    "/.svn/",
    "/.hg/",
    "/.ds_store",
    "/.aws/",
    "/.ssh/",
    "/.htaccess",
    "/.htpasswd",
    "/wp-login.php",
    "/wp-admin/",
    "/xmlrpc.php",
    "/wp-config.php",
    "/wp-content/plugins/",
    "/phpmyadmin",
    "/pma/",
    "/myadmin/",
    "/adminer.php",
    "/phpinfo.php",
    "/info.php",
    "/server-status",
    "/cgi-bin/",
    "/vendor/phpunit/",
    "/boaform/",
    "/hnap1",
    "/actuator/",
    "/solr/admin",
    "/console/",
    "/manager/html",
    "/config.json",
    "/.vscode/",
    "/backup.sql",
    "/dump.sql",
    "/db.sql",
    "/web.config",
    "/owa/",
    "/autodiscover/",
    "/setup.cgi",
    "/shell.php",
    "/cmd.php",
];

/// True for paths only scanners ask for (see `probe_rule`).
pub fn is_probe_path(raw_path: &str) -> bool {
    probe_rule(raw_path).is_some()
}

/// The probe rule a path matches: the `PROBE_PATHS` entry, `/etc/passwd` or
/// `traversal`. Analytics key probes by this name, never by the raw path:
/// a scanner can make endless variants of a path (`/.env/1`, `/.env/2`, ...)
/// but only as many keys as there are rules. The path is percent-decoded
/// first (twice, so `%252e` tricks do not hide traversal) and compared in
/// lower case.
pub fn probe_rule(raw_path: &str) -> Option<&'static str> {
    let path = raw_path.split(['?', '#']).next().unwrap_or("");
    let once = percent_decode_lossy(path);
    let decoded = percent_decode_lossy(&once).to_ascii_lowercase().replace('\\', "/");
    if decoded.contains("/etc/passwd") {
        return Some("/etc/passwd");
    }
    if decoded.contains("../") || decoded.ends_with("/..") {
        return Some("traversal");
    }
    PROBE_PATHS.iter().copied().find(|p| {
        if p.ends_with('/') {
            decoded.starts_with(p) || decoded.contains(p)
        } else {
            decoded == *p || decoded.starts_with(&format!("{p}/")) || decoded.ends_with(p)
        }
    })
}

fn percent_decode_lossy(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn codes(s: &[Signal]) -> Vec<&'static str> {
        s.iter().map(|x| x.reason.code()).collect()
    }

    const CHROME: &str =
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

    fn browser(path: &str) -> RequestFacts {
        RequestFacts {
            method: "GET".into(),
            path: path.into(),
            user_agent: Some(CHROME.into()),
            accept: Some("text/html".into()),
            accept_language: Some("de-DE,de;q=0.9".into()),
            header_names: Vec::new(),
        }
    }

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            assert!(seen.insert(r.code()));
            assert_eq!(Reason::from_code(r.code()), Some(r));
            assert_eq!(serde_json::to_value(r).unwrap(), json!(r.code()));
        }
        assert_eq!(Reason::from_code("nope"), None);
    }

    #[test]
    fn signal_table() {
        let cfg = SignalConfig { extra_hosting_asns: vec![64496], country_risk: vec![("XX".into(), 30)] };
        let cf = |v: serde_json::Value| CfFacts::from_json(&v);
        let mut curl = browser("/");
        curl.user_agent = Some("curl/8.5.0".into());
        let mut no_ua = browser("/");
        no_ua.user_agent = None;
        let mut bare = browser("/");
        bare.accept_language = None;
        let mut wildcard = browser("/");
        wildcard.accept_language = Some("*".into());
        let cases: Vec<(&str, CfFacts, RequestFacts, Vec<&str>)> = vec![
            ("clean browser", cf(json!({"country":"DE","asn":3320})), browser("/products"), vec![]),
            ("tor", cf(json!({"country":"T1"})), browser("/"), vec!["tor_exit"]),
            ("hosting", cf(json!({"asn":14061})), browser("/"), vec!["hosting_asn"]),
            ("extra hosting", cf(json!({"asn":64496})), browser("/"), vec!["hosting_asn"]),
            ("probe", cf(json!({})), browser("/.env"), vec!["path_scan"]),
            ("curl", cf(json!({})), curl, vec!["automation_ua"]),
            ("no ua", cf(json!({})), no_ua, vec!["automation_ua"]),
            ("bare browser", cf(json!({})), bare, vec!["missing_browser_headers"]),
            ("low bot", cf(json!({"botManagement":{"score":5}})), browser("/"), vec!["low_bot_score"]),
            (
                "verified bot low score",
                cf(json!({"botManagement":{"score":5,"verifiedBot":true}})),
                browser("/"),
                vec![],
            ),
            ("country policy", cf(json!({"country":"XX"})), browser("/"), vec!["country_policy"]),
            (
                "everything",
                cf(json!({"country":"T1","asn":16276})),
                browser("/wp-login.php"),
                vec!["tor_exit", "hosting_asn", "path_scan"],
            ),
        ];
        for (name, cf, req, want) in cases {
            assert_eq!(codes(&request_signals(&cf, &req, &cfg)), want, "{name}");
        }
    }

    #[test]
    fn country_policy_carries_its_points() {
        let cfg = SignalConfig { extra_hosting_asns: vec![], country_risk: vec![("XX".into(), 33)] };
        let s = request_signals(&CfFacts::from_json(&json!({"country":"XX"})), &browser("/"), &cfg);
        assert_eq!(s, vec![Signal { reason: Reason::CountryPolicy, points: Some(33) }]);
    }

    #[test]
    fn probe_paths() {
        let yes = [
            "/.env",
            "/.ENV",
            "/app/.env",
            "/.git/config",
            "/wp-login.php",
            "/blog/wp-login.php?x=1",
            "/xmlrpc.php",
            "/phpmyadmin/",
            "/phpMyAdmin/index.php",
            "/cgi-bin/../../etc/passwd",
            "/static/..%2f..%2fetc/passwd",
            "/a/%252e%252e/%252e%252e/b",
            "/x/..",
            "/..\\..\\windows",
            "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php",
        ];
        let no =
            ["/", "/products/42", "/environment", "/blog/git-tips", "/login", "/wp", "/about.php", "/a..b", "/%zz"];
        for p in yes {
            assert!(is_probe_path(p), "{p} should be a probe");
        }
        for p in no {
            assert!(!is_probe_path(p), "{p} should not be a probe");
        }
    }

    #[test]
    fn probes_are_keyed_by_the_rule_not_the_path() {
        let table = [
            ("/.env", "/.env"),
            ("/.env/1", "/.env"),
            ("/app/.ENV", "/.env"),
            ("/.git/config", "/.git/"),
            ("/blog/wp-login.php?x=1", "/wp-login.php"),
            ("/cgi-bin/../../etc/passwd", "/etc/passwd"),
            ("/a/%252e%252e/%252e%252e/b", "traversal"),
        ];
        for (path, rule) in table {
            assert_eq!(probe_rule(path), Some(rule), "{path}");
        }
        assert_eq!(probe_rule("/products/42"), None);
        // Endless variants of one probe are one key.
        let keys: std::collections::BTreeSet<&str> =
            (0..10_000).filter_map(|i| probe_rule(&format!("/.env/{i}"))).collect();
        assert_eq!(keys.into_iter().collect::<Vec<_>>(), vec!["/.env"]);
    }
}
