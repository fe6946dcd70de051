//! Impossible travel, keyed on a visitor (docs/profiles.md), not on an IP: an IP's
//! own location mostly "moves" because a geo database changed, but one
//! browser session cannot be in London and Sydney forty minutes apart. The
//! visitor's last place and time live server-side (a Durable Object per
//! visitor), so a client cannot replay or forge them.

use serde::{Deserialize, Serialize};

use super::geo::haversine_km;
use super::stepup::StepUp;

/// Where and when a visitor was seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sighting {
    pub at: f64,
    pub latitude: f64,
    pub longitude: f64,
    /// Display form of the subject (IP or masked IP).
    pub ip: String,
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub city: Option<String>,
    /// The hop came from a hosting/VPN network or Tor: worth saying in the alert.
    #[serde(default)]
    pub hosting: bool,
    #[serde(default)]
    pub tor: bool,
}

impl Sighting {
    fn place(&self) -> String {
        match (&self.city, &self.country) {
            (Some(c), Some(k)) => format!("{c}, {k}"),
            (None, Some(k)) => k.clone(),
            (Some(c), None) => c.clone(),
            (None, None) => format!("{:.2},{:.2}", self.latitude, self.longitude),
        }
    }
}

/// A detected impossible hop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TravelFinding {
    pub at: f64,
    pub from: Sighting,
    pub to: Sighting,
    pub km: f64,
    pub minutes: f64,
    /// `None` when the hop took less than a second: a speed over (nearly)
    /// no time says nothing.
    pub kmh: Option<f64>,
    pub description: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TravelRules {
    /// `TRAVEL_MAX_KMH` (default 900: a airliner's cruise speed).
    pub max_kmh: f64,
    /// `TRAVEL_MIN_KM` (default 500): shorter hops are within geolocation error.
    pub min_km: f64,
    /// How long a finding keeps flagging the visitor's requests (ms).
    pub memory_ms: f64,
}

/// One visitor's server-side state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VisitorState {
    pub last: Option<Sighting>,
    pub finding: Option<TravelFinding>,
    /// Step-ups the origin asked for this visitor (`intel::stepup`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub step_ups: Vec<StepUp>,
}

impl VisitorState {
    /// Records a sighting and returns a finding if the hop from the previous
    /// one was impossible. A sighting older than the last (requests can
    /// arrive out of order) is compared but does not replace it.
    pub fn observe(&mut self, s: Sighting, rules: &TravelRules) -> Option<TravelFinding> {
        let finding = self.last.as_ref().and_then(|prev| check(prev, &s, rules));
        if let Some(f) = &finding {
            self.finding = Some(f.clone());
        }
        if self.last.as_ref().is_none_or(|prev| s.at >= prev.at) {
            self.last = Some(s);
        }
        finding
    }

    /// The finding still in effect at `now`, if any.
    pub fn active_finding(&self, now: f64, rules: &TravelRules) -> Option<&TravelFinding> {
        self.finding.as_ref().filter(|f| now - f.at <= rules.memory_ms)
    }
}

/// The hop `a` -> `b` is impossible when it covers at least `min_km` faster
/// than `max_kmh` (great-circle distance over elapsed time).
pub fn check(a: &Sighting, b: &Sighting, rules: &TravelRules) -> Option<TravelFinding> {
    let km = haversine_km((a.latitude, a.longitude), (b.latitude, b.longitude));
    if km < rules.min_km {
        return None;
    }
    let minutes = (b.at - a.at).abs() / 60_000.0;
    let seconds = minutes * 60.0;
    if seconds > 0.0 && km / (minutes / 60.0) <= rules.max_kmh {
        return None;
    }
    // Under a second (also: the same timestamp) the speed is meaningless
    // (one hop read "341777905 km/h"): say "within a second" instead.
    let kmh = (seconds >= 1.0).then(|| km / (minutes / 60.0));
    let (from, to) = if a.at <= b.at { (a, b) } else { (b, a) };
    let description = describe(from, to, km, minutes, kmh);
    Some(TravelFinding { at: a.at.max(b.at), from: from.clone(), to: to.clone(), km, minutes, kmh, description })
}

/// Shown instead of another subject's IP in a finding stored for this one.
pub const OTHER_ADDRESS: &str = "another address";

impl TravelFinding {
    /// The finding as the profile of the subject shown as `own` stores it:
    /// any sighting from another subject loses its IP (place and time stay),
    /// so no profile holds a second subject's address (erasing that subject
    /// then has nothing to find here), and the description is rebuilt.
    pub fn naming_only(&self, own: &str) -> TravelFinding {
        let mut f = self.clone();
        for s in [&mut f.from, &mut f.to] {
            if s.ip != own {
                s.ip = OTHER_ADDRESS.to_string();
            }
        }
        f.description = describe(&f.from, &f.to, f.km, f.minutes, f.kmh);
        f
    }
}

fn describe(from: &Sighting, to: &Sighting, km: f64, minutes: f64, kmh: Option<f64>) -> String {
    let seconds = minutes * 60.0;
    let distance = format!("{} km", thousands(km));
    let how = match kmh {
        None => format!("{distance} within a second"),
        Some(v) if minutes >= 1.0 => format!("{distance} in {minutes:.0} min ({} km/h)", thousands(v)),
        Some(v) => format!("{distance} in {seconds:.0} s ({} km/h)", thousands(v)),
    };
    let mut description =
        format!("impossible travel: {} ({}) to {} ({}), {how}", from.place(), from.ip, to.place(), to.ip);
    let context: Vec<&str> =
        [(to.tor || from.tor, "a Tor exit"), (to.hosting || from.hosting, "a hosting/VPN network")]
            .into_iter()
            .filter_map(|(yes, what)| yes.then_some(what))
            .collect();
    if !context.is_empty() {
        description.push_str(&format!("; the hop involves {} (likely a proxy, not a flight)", context.join(" and ")));
    }
    description
}

/// A whole number with thousands separators: 16994.4 -> "16,994".
fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const RULES: TravelRules = TravelRules { max_kmh: 900.0, min_km: 500.0, memory_ms: 3_600_000.0 };
    const T0: f64 = 1_780_000_000_000.0;
    const MIN: f64 = 60_000.0;

    fn at(city: &str, lat: f64, lon: f64, t: f64) -> Sighting {
        Sighting {
            at: t,
            latitude: lat,
            longitude: lon,
            ip: "198.51.100.1".into(),
            country: None,
            city: Some(city.into()),
            hosting: false,
            tor: false,
        }
    }

    #[test]
    fn table() {
        let london = |t| at("London", 51.5074, -0.1278, t);
        let sydney = |t| at("Sydney", -33.8688, 151.2093, t);
        let paris = |t| at("Paris", 48.8566, 2.3522, t);
        let new_york = |t| at("New York", 40.7128, -74.0060, t);
        let cases = [
            ("London -> Sydney in 40 min", london(T0), sydney(T0 + 40.0 * MIN), true),
            ("London -> Sydney in 22 h (a flight)", london(T0), sydney(T0 + 22.0 * 60.0 * MIN), false),
            ("London -> Paris in 5 min (under min_km)", london(T0), paris(T0 + 5.0 * MIN), false),
            ("London -> New York in 5 h (1,117 km/h)", london(T0), new_york(T0 + 300.0 * MIN), true),
            ("London -> New York in 7 h (798 km/h)", london(T0), new_york(T0 + 420.0 * MIN), false),
            ("same instant, far apart", london(T0), sydney(T0), true),
            ("out of order", sydney(T0 + 40.0 * MIN), london(T0), true),
        ];
        for (name, a, b, want) in cases {
            assert_eq!(check(&a, &b, &RULES).is_some(), want, "{name}");
        }
    }

    #[test]
    fn finding_is_described_with_context_and_remembered() {
        let mut v = VisitorState::default();
        assert!(v.observe(at("London", 51.5074, -0.1278, T0), &RULES).is_none());
        let mut syd = at("Sydney", -33.8688, 151.2093, T0 + 40.0 * MIN);
        syd.hosting = true;
        let f = v.observe(syd, &RULES).unwrap();
        assert!(f.description.starts_with("impossible travel: London (198.51.100.1) to Sydney"), "{}", f.description);
        assert!(f.description.contains("hosting/VPN"));
        assert!((f.km - 16_989.0).abs() / 16_989.0 < 0.005);
        assert!(f.kmh.unwrap() > 20_000.0);
        assert!(v.active_finding(T0 + 41.0 * MIN, &RULES).is_some());
        assert!(v.active_finding(T0 + 40.0 * MIN + RULES.memory_ms + 1.0, &RULES).is_none());
        assert_eq!(v.last.as_ref().unwrap().city.as_deref(), Some("Sydney"));
    }

    #[test]
    fn a_hop_within_a_second_has_no_speed() {
        let london = at("London", 51.5074, -0.1278, T0);
        for dt in [0.0, 400.0, 999.0] {
            let f = check(&london, &at("Sydney", -33.8688, 151.2093, T0 + dt), &RULES).unwrap();
            assert!(f.description.ends_with("16,994 km within a second"), "{}", f.description);
            assert!(!f.description.contains("km/h") && !f.description.contains(" 0 s"), "{}", f.description);
            assert_eq!(f.kmh, None);
        }
        let f = check(&london, &at("Sydney", -33.8688, 151.2093, T0 + 40.0 * MIN), &RULES).unwrap();
        assert!(
            f.description.contains("16,994 km in 40 min (25,49") && f.description.ends_with(" km/h)"),
            "{}",
            f.description
        );
        let f = check(&london, &at("Sydney", -33.8688, 151.2093, T0 + 30_000.0), &RULES).unwrap();
        assert!(f.description.contains("16,994 km in 30 s ("), "{}", f.description);
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(341_777_905.0), "341,777,905");
    }

    #[test]
    fn a_finding_stored_for_one_subject_does_not_name_the_other() {
        let mut london = at("London", 51.5074, -0.1278, T0);
        london.ip = "198.51.100.20".into();
        let mut sydney = at("Sydney", -33.8688, 151.2093, T0 + 40.0 * MIN);
        sydney.ip = "203.0.113.40".into();
        sydney.hosting = true;
        let f = check(&london, &sydney, &RULES).unwrap();
        assert!(f.description.contains("198.51.100.20"));
        let mine = f.naming_only("203.0.113.40");
        let stored = serde_json::to_string(&mine).unwrap();
        assert!(!stored.contains("198.51.100.20"), "{stored}");
        assert!(
            mine.description.starts_with(
                "impossible travel: London (another address) to Sydney (203.0.113.40), 16,994 km in 40 min"
            ),
            "{}",
            mine.description
        );
        assert!(mine.description.contains("hosting/VPN"));
        assert_eq!((mine.at, mine.km, mine.kmh), (f.at, f.km, f.kmh));
        // Out of order: the other subject is the later sighting.
        let theirs = f.naming_only("198.51.100.20");
        assert!(!serde_json::to_string(&theirs).unwrap().contains("203.0.113.40"));
    }
}
