//! Verified crawlers and impersonators (issue 19, docs/enforcement.md): a
//! table of well-known crawlers with their User-Agent tokens and the files
//! where they publish their IP ranges; an embedded snapshot of those ranges
//! (`crawler_ranges.txt`), refreshed into KV by the Cron Trigger
//! (`edge::crawlers`); and the check itself: a User-Agent that claims a
//! crawler from inside its ranges is `verified_bot`, from outside them
//! `bot_impersonation`. Also the paths that are never challenged
//! (`robots.txt`, `/.well-known/`): a crawler must be able to read them.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::lists::Entry;
use super::rules::PathForms;

/// One well-known crawler.
#[derive(Debug, PartialEq, Eq)]
pub struct Crawler {
    /// The name in `GOOD_BOT_SOURCES`, KV and the snapshot.
    pub name: &'static str,
    /// Lower-case User-Agent tokens that claim it.
    pub tokens: &'static [&'static str],
    /// The files it publishes its ranges in (the refresh unions them).
    pub sources: &'static [&'static str],
    /// For fetchers that publish no ranges: the operator's own ASNs
    /// (weaker: anyone renting in that network passes).
    pub asns: &'static [u32],
}

/// The crawlers edgeintel knows. A fetcher that publishes neither ranges
/// nor its own network (Slackbot, Discordbot) is not listed: its
/// User-Agent gets no reason either way.
pub const CRAWLERS: &[Crawler] = &[
    Crawler {
        name: "googlebot",
        tokens: &["googlebot", "google-inspectiontool", "googleother"],
        sources: &["https://developers.google.com/search/apis/ipranges/googlebot.json"],
        asns: &[],
    },
    Crawler {
        name: "bingbot",
        tokens: &["bingbot", "bingpreview", "msnbot", "adidxbot"],
        sources: &["https://www.bing.com/toolbox/bingbot.json"],
        asns: &[],
    },
    Crawler {
        name: "applebot",
        tokens: &["applebot"],
        sources: &["https://search.developer.apple.com/applebot.json"],
        asns: &[],
    },
    Crawler {
        name: "duckduckbot",
        tokens: &["duckduckbot"],
        sources: &["https://duckduckgo.com/duckduckbot.json"],
        asns: &[],
    },
    Crawler {
        name: "openai",
        tokens: &["gptbot", "oai-searchbot", "chatgpt-user"],
        sources: &[
            "https://openai.com/gptbot.json",
            "https://openai.com/searchbot.json",
            "https://openai.com/chatgpt-user.json",
        ],
        asns: &[],
    },
    Crawler {
        name: "perplexity",
        tokens: &["perplexitybot", "perplexity-user"],
        sources: &["https://www.perplexity.ai/perplexitybot.json", "https://www.perplexity.ai/perplexity-user.json"],
        asns: &[],
    },
    // Link previews: verified by their operator's network.
    Crawler {
        name: "facebook",
        tokens: &["facebookexternalhit", "facebookcatalog", "meta-externalagent"],
        sources: &[],
        asns: &[32934],
    },
    Crawler { name: "twitterbot", tokens: &["twitterbot"], sources: &[], asns: &[13414] },
    Crawler { name: "linkedinbot", tokens: &["linkedinbot"], sources: &[], asns: &[14413] },
];

/// The embedded snapshot: `<crawler> <CIDR>` per line.
const SNAPSHOT: &str = include_str!("crawler_ranges.txt");

/// Only this much of a User-Agent is searched (bounded work on any header).
const MAX_UA_SCAN: usize = 512;
/// A published range file larger than this is refused.
pub const MAX_SOURCE_BYTES: usize = 512 * 1024;
/// Ranges kept per crawler.
pub const MAX_RANGES: usize = 4_096;

/// The crawler a User-Agent claims to be, if any.
pub fn claimed(user_agent: Option<&str>) -> Option<&'static Crawler> {
    let ua = user_agent?;
    let end = (0..=ua.len().min(MAX_UA_SCAN)).rev().find(|i| ua.is_char_boundary(*i)).unwrap_or(0);
    let ua = ua.get(..end)?.to_ascii_lowercase();
    CRAWLERS.iter().find(|c| c.tokens.iter().any(|t| ua.contains(t)))
}

pub fn by_name(name: &str) -> Option<&'static Crawler> {
    CRAWLERS.iter().find(|c| c.name == name)
}

/// Parsed ranges per crawler.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ranges {
    nets: BTreeMap<String, Vec<Entry>>,
}

impl Ranges {
    /// The embedded snapshot (a malformed line is skipped: it is ours and tested).
    pub fn snapshot() -> Ranges {
        let mut nets: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
        for line in SNAPSHOT.lines().filter(|l| !l.starts_with('#')) {
            if let Some((name, cidr)) = line.split_once(' ') {
                if let Ok(e @ Entry::Net(..)) = Entry::parse(cidr) {
                    nets.entry(name.to_string()).or_default().push(e);
                }
            }
        }
        Ranges { nets }
    }

    /// The snapshot with what the refresh stored replacing it crawler by crawler.
    pub fn with_stored(stored: &Stored) -> Ranges {
        let mut r = Ranges::snapshot();
        for (name, cidrs) in &stored.crawlers {
            if by_name(name).is_none() {
                continue;
            }
            let nets: Vec<Entry> = cidrs
                .iter()
                .take(MAX_RANGES)
                .filter_map(|c| Entry::parse(c).ok().filter(|e| matches!(e, Entry::Net(..))))
                .collect();
            if !nets.is_empty() {
                r.nets.insert(name.clone(), nets);
            }
        }
        r
    }

    pub fn contains(&self, name: &str, ip: IpAddr) -> bool {
        self.nets.get(name).is_some_and(|n| n.iter().any(|e| e.matches(Some(ip), None, None)))
    }

    pub fn count(&self, name: &str) -> usize {
        self.nets.get(name).map_or(0, Vec::len)
    }
}

/// What the Cron Trigger stores in KV (`keys::CRAWLERS_KEY`): each crawler's
/// ranges as last fetched successfully, and when.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    #[serde(default)]
    pub crawlers: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub fetched_at: BTreeMap<String, f64>,
}

/// What a request's User-Agent and address say about crawlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// No crawler claimed.
    None,
    /// A crawler claimed from inside its ranges (or network), or Cloudflare's
    /// `botManagement.verifiedBot`.
    Verified(&'static str),
    /// A crawler claimed from outside them.
    Impersonation(&'static str),
}

/// Checks a request's claim. `cf_verified`: Cloudflare's own verification,
/// which wins (never an impersonation then).
pub fn check(
    user_agent: Option<&str>,
    ip: Option<IpAddr>,
    asn: Option<u32>,
    cf_verified: bool,
    ranges: &Ranges,
) -> Claim {
    let Some(c) = claimed(user_agent) else { return Claim::None };
    if cf_verified {
        return Claim::Verified(c.name);
    }
    let in_ranges = ip.is_some_and(|ip| ranges.contains(c.name, ip));
    let in_network = asn.is_some_and(|a| c.asns.contains(&a));
    if in_ranges || in_network {
        Claim::Verified(c.name)
    } else {
        Claim::Impersonation(c.name)
    }
}

/// The widest ranges a crawler file may hold.
const MIN_V4_PREFIX: u8 = 8;
const MIN_V6_PREFIX: u8 = 19;

/// Parses a published range file: Google's JSON form
/// (`{"prefixes": [{"ipv4Prefix": ".."}, {"ipv6Prefix": ".."}]}`, also used by
/// Bing, Apple, DuckDuckGo, OpenAI and Perplexity) or plain text with one
/// CIDR per line (`#` comments). Every range must parse; at least one, at
/// most `MAX_RANGES`.
pub fn parse_source(body: &str) -> Result<Vec<String>, String> {
    if body.len() > MAX_SOURCE_BYTES {
        return Err(format!("larger than {MAX_SOURCE_BYTES} bytes"));
    }
    let trimmed = body.trim_start();
    let raw: Vec<String> = if trimmed.starts_with('{') {
        let v: Value = serde_json::from_str(trimmed).map_err(|e| format!("not JSON: {e}"))?;
        let prefixes = v.get("prefixes").and_then(Value::as_array).ok_or("no `prefixes` array")?;
        prefixes
            .iter()
            .map(|p| {
                p.get("ipv4Prefix")
                    .or_else(|| p.get("ipv6Prefix"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| "a prefix without ipv4Prefix or ipv6Prefix".to_string())
            })
            .collect::<Result<_, _>>()?
    } else {
        trimmed.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string).collect()
    };
    if raw.is_empty() {
        return Err("no ranges".into());
    }
    if raw.len() > MAX_RANGES {
        return Err(format!("more than {MAX_RANGES} ranges"));
    }
    for r in &raw {
        let shown = || r.chars().take(64).collect::<String>();
        match Entry::parse(r) {
            // Wider than any crawler's network (Apple's 17.0.0.0/8 is the
            // widest published): a file with such a range is not a crawler
            // list, and one range would verify a large part of the Internet.
            Ok(Entry::Net(std::net::IpAddr::V4(_), len)) if len < MIN_V4_PREFIX => {
                return Err(format!("`{}` is wider than /{MIN_V4_PREFIX}", shown()))
            }
            Ok(Entry::Net(std::net::IpAddr::V6(_), len)) if len < MIN_V6_PREFIX => {
                return Err(format!("`{}` is wider than /{MIN_V6_PREFIX}", shown()))
            }
            Ok(Entry::Net(..)) => {}
            _ => return Err(format!("`{}` is not a CIDR", shown())),
        }
    }
    Ok(raw)
}

/// `GOOD_BOT_SOURCES`: crawler name -> URL or array of URLs, replacing that
/// crawler's published files (an empty array: not refreshed, its snapshot
/// or last stored ranges stay). Names must be in `CRAWLERS`; URLs https
/// (http only for loopback, for local stand-ins).
pub fn parse_sources(raw: &str) -> Result<BTreeMap<String, Vec<String>>, String> {
    let v: Value = serde_json::from_str(raw).map_err(|e| format!("not JSON: {e}"))?;
    let obj = v.as_object().ok_or("must be a JSON object of crawler name -> URL")?;
    let mut out = BTreeMap::new();
    for (name, urls) in obj {
        if by_name(name).is_none() {
            let known: Vec<&str> = CRAWLERS.iter().map(|c| c.name).collect();
            return Err(format!(
                "`{}` is not a known crawler ({})",
                name.chars().take(32).collect::<String>(),
                known.join(", ")
            ));
        }
        let list: Vec<String> = match urls {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => {
                a.iter().map(|u| u.as_str().map(str::to_string).ok_or("URLs are strings")).collect::<Result<_, _>>()?
            }
            _ => return Err(format!("`{name}`: a URL or an array of URLs")),
        };
        if list.len() > 8 {
            return Err(format!("`{name}`: at most 8 URLs"));
        }
        for u in &list {
            if !acceptable_url(u) {
                return Err(format!(
                    "`{name}`: `{}` is not an https URL (http only for localhost)",
                    u.chars().take(64).collect::<String>()
                ));
            }
        }
        out.insert(name.clone(), list);
    }
    Ok(out)
}

fn acceptable_url(u: &str) -> bool {
    let Ok(url) = url::Url::parse(u) else { return false };
    match url.scheme() {
        "https" => url.host_str().is_some(),
        "http" => crate::intel::ip::is_loopback(&url),
        _ => false,
    }
}

/// The sources the refresh fetches: each crawler's published files, or
/// what `GOOD_BOT_SOURCES` says instead.
pub fn sources(overrides: &BTreeMap<String, Vec<String>>) -> Vec<(&'static str, Vec<String>)> {
    CRAWLERS
        .iter()
        .filter_map(|c| {
            let urls =
                overrides.get(c.name).cloned().unwrap_or_else(|| c.sources.iter().map(|s| s.to_string()).collect());
            (!urls.is_empty()).then_some((c.name, urls))
        })
        .collect()
}

/// `robots.txt` and `/.well-known/` are never challenged: crawlers and
/// agents must read them to behave (and signed agents fetch key
/// directories there). Both forms of the path must agree, so a path that
/// only looks like one (`/.well-known/../admin`) is not exempt.
pub fn never_challenged(path: &str) -> bool {
    let forms = PathForms::of(path);
    let exempt = |p: &str| p == "/robots.txt" || p.starts_with("/.well-known/");
    exempt(&forms.raw) && exempt(&forms.normalised)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

    #[test]
    fn user_agents_claim_crawlers_by_token_without_regard_to_case() {
        assert_eq!(claimed(Some(GOOGLEBOT)).map(|c| c.name), Some("googlebot"));
        assert_eq!(
            claimed(Some("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2)")).map(|c| c.name),
            Some("openai")
        );
        assert_eq!(claimed(Some("facebookexternalhit/1.1")).map(|c| c.name), Some("facebook"));
        assert_eq!(claimed(Some("Mozilla/5.0 (Windows NT 10.0) Chrome/131.0")), None);
        assert_eq!(claimed(None), None);
        // Only the first 512 bytes are searched, at a char boundary.
        let long = format!("{}googlebot", "é".repeat(400));
        assert_eq!(claimed(Some(&long)), None);
    }

    #[test]
    fn the_snapshot_holds_every_crawler_with_published_ranges() {
        let r = Ranges::snapshot();
        for c in CRAWLERS.iter().filter(|c| !c.sources.is_empty()) {
            assert!(r.count(c.name) > 0, "{}", c.name);
        }
        assert!(r.contains("googlebot", "66.249.66.1".parse().unwrap()));
        assert!(r.contains("googlebot", "2001:4860:4801:10::1".parse().unwrap()));
        assert!(!r.contains("googlebot", "157.55.39.1".parse().unwrap()));
        assert!(r.contains("bingbot", "157.55.39.1".parse().unwrap()));
    }

    #[test]
    fn verified_inside_the_ranges_impersonation_outside_cloudflare_wins() {
        let r = Ranges::snapshot();
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(check(Some(GOOGLEBOT), ip("66.249.66.1"), Some(15169), false, &r), Claim::Verified("googlebot"));
        assert_eq!(check(Some(GOOGLEBOT), ip("159.89.1.1"), Some(14061), false, &r), Claim::Impersonation("googlebot"));
        assert_eq!(check(Some(GOOGLEBOT), ip("159.89.1.1"), Some(14061), true, &r), Claim::Verified("googlebot"));
        assert_eq!(
            check(Some("Twitterbot/1.0"), ip("199.16.156.1"), Some(13414), false, &r),
            Claim::Verified("twitterbot")
        );
        assert_eq!(
            check(Some("Twitterbot/1.0"), ip("159.89.1.1"), Some(14061), false, &r),
            Claim::Impersonation("twitterbot")
        );
        assert_eq!(check(Some("curl/8.5"), ip("66.249.66.1"), None, false, &r), Claim::None);
        assert_eq!(check(Some(GOOGLEBOT), None, None, false, &r), Claim::Impersonation("googlebot"));
    }

    #[test]
    fn stored_ranges_replace_the_snapshot_per_crawler() {
        let mut stored = Stored::default();
        stored.crawlers.insert("googlebot".into(), vec!["203.0.113.0/24".into()]);
        stored.crawlers.insert("nobody".into(), vec!["198.51.100.0/24".into()]);
        stored.crawlers.insert("bingbot".into(), vec!["garbage".into()]);
        let r = Ranges::with_stored(&stored);
        assert!(r.contains("googlebot", "203.0.113.9".parse().unwrap()));
        assert!(!r.contains("googlebot", "66.249.66.1".parse().unwrap()), "replaced");
        assert!(r.contains("bingbot", "157.55.39.1".parse().unwrap()), "nothing usable stored: the snapshot stays");
        assert_eq!(r.count("nobody"), 0);
    }

    #[test]
    fn sources_parse_in_both_forms_and_refuse_what_is_not_ranges() {
        let json = r#"{"creationTime":"2026-01-01","prefixes":[{"ipv4Prefix":"66.249.64.0/27"},{"ipv6Prefix":"2001:4860:4801:10::/64"}]}"#;
        assert_eq!(parse_source(json).unwrap(), vec!["66.249.64.0/27", "2001:4860:4801:10::/64"]);
        assert_eq!(parse_source("# gptbot\n20.15.240.64/28\n\n20.15.240.80/28\n").unwrap().len(), 2);
        assert!(parse_source("").is_err());
        assert!(parse_source("<html>not here</html>").is_err());
        assert!(parse_source(r#"{"prefixes":[]}"#).is_err());
        assert!(parse_source(r#"{"prefixes":[{"ipv4Prefix":"66.249.64.0/33"}]}"#).is_err());
        assert!(parse_source(r#"{"prefixes":[{"other":1}]}"#).is_err());
        assert!(parse_source("AS15169\n").is_err(), "an ASN is not a range");
        // Ranges wider than any crawler's network are refused with the file.
        assert!(parse_source("17.0.0.0/8\n").is_ok());
        assert!(parse_source("66.249.64.0/27\n0.0.0.0/0\n").unwrap_err().contains("wider than /8"));
        assert!(parse_source("64.0.0.0/7\n").is_err());
        assert!(parse_source("2001:4860::/32\n").is_ok());
        assert!(parse_source("::/0\n").is_err() && parse_source("2000::/3\n").is_err());
        let many: String = (0..=MAX_RANGES).map(|i| format!("10.{}.{}.0/24\n", i / 256, i % 256)).collect();
        assert!(parse_source(&many).unwrap_err().contains("more than"));
        assert!(parse_source(&"1".repeat(MAX_SOURCE_BYTES + 1)).is_err());
    }

    #[test]
    fn good_bot_sources_name_known_crawlers_and_https_urls() {
        let s =
            parse_sources(r#"{"googlebot": "http://127.0.0.1:9000/g.json", "openai": ["https://a.example/x.json"]}"#)
                .unwrap();
        assert_eq!(s["googlebot"], vec!["http://127.0.0.1:9000/g.json"]);
        let all = sources(&s);
        assert_eq!(all.iter().find(|(n, _)| *n == "googlebot").map(|(_, u)| u.len()), Some(1));
        assert_eq!(
            all.iter().find(|(n, _)| *n == "bingbot").map(|(_, u)| u[0].as_str()),
            Some("https://www.bing.com/toolbox/bingbot.json")
        );
        assert!(all.iter().all(|(n, _)| *n != "twitterbot"), "no published file to fetch");
        assert!(parse_sources(r#"{"evilbot": "https://x.example"}"#).unwrap_err().contains("not a known crawler"));
        assert!(parse_sources(r#"{"googlebot": "http://example.com/g.json"}"#).is_err());
        assert!(parse_sources(r#"{"googlebot": "ftp://example.com/g.json"}"#).is_err());
        let off = parse_sources(r#"{"bingbot": []}"#).unwrap();
        assert!(sources(&off).iter().all(|(n, _)| *n != "bingbot"), "an empty array: not refreshed");
        assert!(parse_sources(r#"{"googlebot": [1]}"#).is_err());
        assert!(parse_sources("[]").is_err());
    }

    #[test]
    fn robots_and_well_known_are_never_challenged_in_every_spelling() {
        assert!(never_challenged("/robots.txt"));
        assert!(never_challenged("/robots.txt?x=1"));
        assert!(never_challenged("/.well-known/security.txt"));
        assert!(never_challenged("//.well-known//http-message-signatures-directory"));
        assert!(!never_challenged("/.well-known/../admin"));
        assert!(!never_challenged("/.well-known/%2e%2e/admin"));
        assert!(!never_challenged("/robots.txt/../admin"));
        assert!(!never_challenged("/admin/robots.txt"));
        assert!(!never_challenged("/"));
    }
}
