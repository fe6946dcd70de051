//! The explainable risk score: every reason contributes points (weights from
//! configuration, documented defaults below), the sum is capped at 100, and
//! the contributions are kept so the score can always be explained.

use serde::Serialize;

use super::signals::{Reason, Signal};

/// Points per reason. Defaults are chosen so that one strong reason alone
/// (Tor, a scanner path, a threat report) lands in `medium`, and two strong
/// reasons together reach `high`.
#[derive(Debug, Clone, PartialEq)]
pub struct Weights(Vec<(Reason, u8)>);

impl Default for Weights {
    fn default() -> Self {
        Weights(Reason::ALL.into_iter().map(|r| (r, default_weight(r))).collect())
    }
}

/// The documented default points of each reason (README, "Reason codes").
pub const fn default_weight(r: Reason) -> u8 {
    match r {
        Reason::Blocklisted => 100,
        Reason::TorExit => 45,
        Reason::ImpossibleTravel => 40,
        // A cap: the reason contributes the profile's current threat score up to this.
        Reason::ThreatReport => 100,
        Reason::PathScan => 40,
        Reason::LowBotScore => 35,
        Reason::AuthFailures => 30,
        Reason::HighVelocity => 30,
        Reason::BadReputation => 25,
        Reason::AutomationUa => 25,
        // Not used: the signal always carries the points its `COUNTRY_RISK`
        // entry gives (`signals::request_signals`), which win over this and
        // over a `RISK_WEIGHTS` entry for `country_policy`.
        Reason::CountryPolicy => 20,
        Reason::HostingAsn => 20,
        Reason::NotFoundBurst => 20,
        Reason::MissingBrowserHeaders => 15,
        Reason::GeoJump => 10,
        // Weak alone: a mobile carrier's /48 can hold many devices' /64s.
        Reason::SubnetRotation => 15,
        // Listed so the origin knows; verification exempts from score-based
        // challenges and blocks (`enforce::decide`), it does not lower the score.
        Reason::VerifiedBot | Reason::SignedAgent => 0,
        // A lie about who is asking: alone it reaches `medium`.
        Reason::BotImpersonation => 60,
        Reason::FingerprintSwarm => 25,
        Reason::UaFingerprintMismatch => 30,
    }
}

impl Weights {
    pub fn get(&self, r: Reason) -> u8 {
        self.0.iter().find(|(x, _)| *x == r).map_or(0, |(_, w)| *w)
    }

    pub fn set(&mut self, r: Reason, points: u8) {
        match self.0.iter_mut().find(|(x, _)| *x == r) {
            Some(slot) => slot.1 = points,
            None => self.0.push((r, points)),
        }
    }
}

/// Risk level bands of the header contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Low,
    Medium,
    High,
    Critical,
    /// The verdict could not be formed (degraded and no request facts).
    Unknown,
}

impl Level {
    pub fn of(score: u8) -> Level {
        match score {
            0..=39 => Level::Low,
            40..=74 => Level::Medium,
            75..=89 => Level::High,
            _ => Level::Critical,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Level::Low => "low",
            Level::Medium => "medium",
            Level::High => "high",
            Level::Critical => "critical",
            Level::Unknown => "unknown",
        }
    }
}

/// One reason's share of the score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Contribution {
    pub reason: Reason,
    pub points: u8,
}

/// The scored verdict for one request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// 0-100, higher is riskier.
    pub score: u8,
    pub level: Level,
    /// Most important first: by points, then by the reason's declared order.
    pub contributions: Vec<Contribution>,
}

impl Verdict {
    pub fn reasons(&self) -> impl Iterator<Item = Reason> + '_ {
        self.contributions.iter().map(|c| c.reason)
    }
}

/// Sums the signals' points (each reason counted once, at its largest
/// amount), caps at 100 and orders the reasons by importance.
pub fn score(signals: &[Signal], weights: &Weights) -> Verdict {
    let mut contributions: Vec<Contribution> = Vec::with_capacity(signals.len());
    for s in signals {
        let points = s.points.unwrap_or_else(|| weights.get(s.reason)).min(100);
        match contributions.iter_mut().find(|c| c.reason == s.reason) {
            Some(c) => c.points = c.points.max(points),
            None => contributions.push(Contribution { reason: s.reason, points }),
        }
    }
    contributions.sort_by(|a, b| b.points.cmp(&a.points).then(a.reason.cmp(&b.reason)));
    let total: u32 = contributions.iter().map(|c| u32::from(c.points)).sum();
    let score = u8::try_from(total.min(100)).unwrap_or(100);
    Verdict { score, level: Level::of(score), contributions }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_lists_every_reason_with_its_default_points() {
        let readme = include_str!("../../README.md");
        for r in Reason::ALL {
            let points = match r {
                // Its points are the profile's threat score, capped by its weight.
                Reason::ThreatReport => format!("the threat score, at most {}", default_weight(r)),
                // Its points come from the operator's `COUNTRY_RISK` map.
                Reason::CountryPolicy => "from the map".to_string(),
                _ => default_weight(r).to_string(),
            };
            let row = format!("| `{}` | {points} |", r.code());
            assert!(readme.contains(&row), "README.md's reason table lacks `{row}`");
        }
    }

    fn sig(r: Reason) -> Signal {
        Signal { reason: r, points: None }
    }

    #[test]
    fn levels_at_their_edges() {
        let table = [
            (0, Level::Low),
            (39, Level::Low),
            (40, Level::Medium),
            (74, Level::Medium),
            (75, Level::High),
            (89, Level::High),
            (90, Level::Critical),
            (100, Level::Critical),
        ];
        for (s, l) in table {
            assert_eq!(Level::of(s), l, "{s}");
        }
    }

    #[test]
    fn sums_orders_and_caps() {
        let w = Weights::default();
        let v = score(&[sig(Reason::HostingAsn), sig(Reason::TorExit), sig(Reason::PathScan)], &w);
        assert_eq!(v.score, 100);
        assert_eq!(v.level, Level::Critical);
        let order: Vec<_> = v.reasons().map(Reason::code).collect();
        assert_eq!(order, ["tor_exit", "path_scan", "hosting_asn"]);

        let v = score(&[sig(Reason::PathScan), sig(Reason::HostingAsn)], &w);
        assert_eq!((v.score, v.level), (60, Level::Medium));

        let v = score(&[], &w);
        assert_eq!((v.score, v.level, v.contributions.len()), (0, Level::Low, 0));
    }

    #[test]
    fn equal_points_tie_break_by_declared_order() {
        let v = score(
            &[sig(Reason::HostingAsn), sig(Reason::NotFoundBurst), sig(Reason::CountryPolicy)],
            &Weights::default(),
        );
        let order: Vec<_> = v.reasons().map(Reason::code).collect();
        assert_eq!(order, ["country_policy", "hosting_asn", "not_found_burst"]);
    }

    #[test]
    fn a_reason_counts_once_and_own_points_win() {
        let mut w = Weights::default();
        w.set(Reason::TorExit, 10);
        let v = score(
            &[sig(Reason::TorExit), sig(Reason::TorExit), Signal { reason: Reason::CountryPolicy, points: Some(70) }],
            &w,
        );
        assert_eq!(v.score, 80);
        assert_eq!(
            v.contributions,
            vec![
                Contribution { reason: Reason::CountryPolicy, points: 70 },
                Contribution { reason: Reason::TorExit, points: 10 },
            ]
        );
    }
}
