//! Alert rules (docs/analytics.md), like Prometheus `for:`: a rule's condition must hold
//! for `duration` seconds before it fires; it resolves when the condition
//! stops holding; after resolving it cannot fire again within `cooldown`
//! seconds. Evaluated once per analytics tick on measured metrics only.

use serde::{Deserialize, Serialize};

use super::events::Priority;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
}

impl Op {
    fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Gt => value > threshold,
            Op::Ge => value >= threshold,
            Op::Lt => value < threshold,
            Op::Le => value <= threshold,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    /// A metric of the newest closed slide (`SlidePoint::metric`), e.g.
    /// `error_rate`, `origin_latency_p95_ms`, `degraded_share`, `alarm_lag_ms`.
    pub metric: String,
    pub operator: Op,
    pub threshold: f64,
    /// Seconds the condition must hold before firing.
    #[serde(default)]
    pub duration: f64,
    pub severity: Priority,
    pub message: String,
    /// Seconds after resolving during which the rule cannot fire again.
    #[serde(default)]
    pub cooldown: f64,
}

/// The default rules: only metrics the platform measures.
pub fn default_rules(slide_s: f64) -> Vec<Rule> {
    let rule = |name: &str, metric: &str, threshold: f64, duration: f64, severity, message: &str| Rule {
        name: name.into(),
        metric: metric.into(),
        operator: Op::Gt,
        threshold,
        duration,
        severity,
        message: message.into(),
        cooldown: 300.0,
    };
    vec![
        rule("high_error_rate", "error_rate", 0.05, 180.0, Priority::High, "origin error rate above 5% for 3 minutes"),
        rule(
            "slow_origin",
            "origin_latency_p95_ms",
            2000.0,
            60.0,
            Priority::High,
            "origin p95 latency above 2 s for 1 minute",
        ),
        rule(
            "degraded_intel",
            "degraded_share",
            0.01,
            0.0,
            Priority::Medium,
            "more than 1% of requests degraded (profile store slow or failing)",
        ),
        rule(
            "observations_lost",
            "observations_dropped",
            0.0,
            0.0,
            Priority::High,
            "observations or samples were lost in the newest slide (a profile or hub flush failed twice)",
        ),
        rule(
            "alarm_lag",
            "alarm_lag_ms",
            2.0 * slide_s * 1000.0,
            0.0,
            Priority::Medium,
            "the analytics alarm is more than 2 slides late",
        ),
    ]
}

/// The longest rule name and message `ALERT_RULES` takes.
pub const MAX_NAME_LEN: usize = 128;
pub const MAX_MESSAGE_LEN: usize = 1_024;

/// Parses `ALERT_RULES` (a JSON array of rules).
pub fn parse_rules(text: &str) -> Result<Vec<Rule>, String> {
    let rules: Vec<Rule> = serde_json::from_str(text).map_err(|e| e.to_string())?;
    for r in &rules {
        if r.name.trim().is_empty() || !r.threshold.is_finite() || r.duration < 0.0 || r.cooldown < 0.0 {
            return Err(format!(
                "rule `{}`: needs a name, a finite threshold, non-negative duration and cooldown",
                r.name
            ));
        }
        // Each transition carries both into the webhook outbox (one stored
        // row, at most 2 MB): bounded here, with the rule named by its start.
        if r.name.len() > MAX_NAME_LEN || r.message.len() > MAX_MESSAGE_LEN {
            let start: String = r.name.chars().take(32).collect();
            return Err(format!(
                "rule `{start}`: the name may have at most {MAX_NAME_LEN} bytes and the message {MAX_MESSAGE_LEN}"
            ));
        }
        // A rule on a name no slide answers would never fire, silently.
        if !super::analytics::rule_metrics().any(|m| m == r.metric) {
            let known: Vec<&str> = super::analytics::rule_metrics().collect();
            return Err(format!("rule `{}`: unknown metric `{}` (one of: {})", r.name, r.metric, known.join(", ")));
        }
    }
    Ok(rules)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Inactive,
    Pending,
    Firing,
    Resolved,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleState {
    pub rule: String,
    pub state: State,
    /// When the condition started holding (pending/firing) or the rule resolved.
    pub since: f64,
    #[serde(default)]
    pub value: Option<f64>,
}

/// A state change, pushed to the performance stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    pub rule: String,
    pub from: State,
    pub to: State,
    pub at: f64,
    pub value: Option<f64>,
    pub severity: Priority,
    pub message: String,
}

/// Advances every rule with this tick's metric values (`None` = not
/// measured this slide: a pending or firing rule keeps its state).
pub fn evaluate(
    rules: &[Rule],
    states: &mut Vec<RuleState>,
    metric: impl Fn(&str) -> Option<f64>,
    now_ms: f64,
) -> Vec<Transition> {
    states.retain(|s| rules.iter().any(|r| r.name == s.rule));
    let mut out = Vec::new();
    for r in rules {
        let idx = match states.iter().position(|s| s.rule == r.name) {
            Some(i) => i,
            None => {
                states.push(RuleState { rule: r.name.clone(), state: State::Inactive, since: now_ms, value: None });
                states.len() - 1
            }
        };
        let Some(st) = states.get_mut(idx) else { continue };
        let value = metric(&r.metric);
        let Some(v) = value else { continue };
        st.value = Some(v);
        let holds = r.operator.holds(v, r.threshold);
        let from = st.state;
        let to = match (from, holds) {
            (State::Inactive | State::Resolved, true) => {
                let cooling = from == State::Resolved && now_ms - st.since < r.cooldown * 1000.0;
                if cooling {
                    from
                } else if r.duration <= 0.0 {
                    State::Firing
                } else {
                    State::Pending
                }
            }
            (State::Pending, true) if now_ms - st.since >= r.duration * 1000.0 => State::Firing,
            (State::Pending, false) => State::Inactive,
            (State::Firing, false) => State::Resolved,
            (s, _) => s,
        };
        if to != from {
            // `since`: when the condition began (kept from pending to firing), or when it resolved.
            if !(from == State::Pending && to == State::Firing) {
                st.since = now_ms;
            }
            st.state = to;
            out.push(Transition {
                rule: r.name.clone(),
                from,
                to,
                at: now_ms,
                value: Some(v),
                severity: r.severity,
                message: r.message.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    #[test]
    fn the_docs_test_rule_parses_and_long_names_are_refused() {
        // docs/analytics.md, "Trying it out".
        let doc = r#"[{"name": "webhook_test", "metric": "request_count", "operator": ">=", "threshold": 0,
  "severity": "low", "message": "webhook test"}]"#;
        assert_eq!(super::parse_rules(doc).map(|r| r.len()), Ok(1));
        let long = doc.replace("webhook test", &"m".repeat(super::MAX_MESSAGE_LEN + 1));
        assert!(super::parse_rules(&long).is_err());
    }

    use super::*;

    fn rule(duration: f64, cooldown: f64) -> Rule {
        Rule {
            name: "r".into(),
            metric: "error_rate".into(),
            operator: Op::Gt,
            threshold: 0.05,
            duration,
            severity: Priority::High,
            message: "m".into(),
            cooldown,
        }
    }

    fn step(rules: &[Rule], st: &mut Vec<RuleState>, v: Option<f64>, t: f64) -> Vec<(State, State)> {
        evaluate(rules, st, |_| v, t * 1000.0).into_iter().map(|x| (x.from, x.to)).collect()
    }

    #[test]
    fn pending_firing_resolved_with_duration() {
        let rules = [rule(180.0, 0.0)];
        let mut st = Vec::new();
        assert_eq!(step(&rules, &mut st, Some(0.01), 0.0), vec![]);
        assert_eq!(step(&rules, &mut st, Some(0.10), 60.0), vec![(State::Inactive, State::Pending)]);
        assert_eq!(step(&rules, &mut st, Some(0.10), 120.0), vec![]);
        assert_eq!(step(&rules, &mut st, None, 180.0), vec![], "not measured: no change");
        assert_eq!(step(&rules, &mut st, Some(0.10), 240.0), vec![(State::Pending, State::Firing)]);
        assert_eq!(st[0].since, 60_000.0, "since keeps the start of the condition");
        assert_eq!(step(&rules, &mut st, Some(0.10), 300.0), vec![]);
        assert_eq!(step(&rules, &mut st, Some(0.01), 360.0), vec![(State::Firing, State::Resolved)]);
    }

    #[test]
    fn pending_that_clears_never_fires() {
        let rules = [rule(180.0, 0.0)];
        let mut st = Vec::new();
        step(&rules, &mut st, Some(0.2), 0.0);
        assert_eq!(step(&rules, &mut st, Some(0.0), 60.0), vec![(State::Pending, State::Inactive)]);
        assert_eq!(step(&rules, &mut st, Some(0.2), 120.0), vec![(State::Inactive, State::Pending)]);
    }

    #[test]
    fn cooldown_holds_back_a_refire() {
        let rules = [rule(0.0, 300.0)];
        let mut st = Vec::new();
        assert_eq!(step(&rules, &mut st, Some(0.2), 0.0), vec![(State::Inactive, State::Firing)]);
        assert_eq!(step(&rules, &mut st, Some(0.0), 60.0), vec![(State::Firing, State::Resolved)]);
        assert_eq!(step(&rules, &mut st, Some(0.2), 120.0), vec![], "cooling down");
        assert_eq!(step(&rules, &mut st, Some(0.2), 400.0), vec![(State::Resolved, State::Firing)]);
    }

    #[test]
    fn operators_and_parsing() {
        assert!(Op::Lt.holds(1.0, 2.0) && !Op::Lt.holds(2.0, 2.0) && Op::Le.holds(2.0, 2.0) && Op::Ge.holds(2.0, 2.0));
        let rules = parse_rules(
            r#"[{"name":"x","metric":"error_rate","operator":">=","threshold":0.5,"duration":10,"severity":"critical","message":"m","cooldown":5}]"#,
        )
        .unwrap();
        assert_eq!(rules[0].operator, Op::Ge);
        for bad in [
            "{",
            "[{}]",
            r#"[{"name":"","metric":"a","operator":">","threshold":1,"severity":"low","message":"m"}]"#,
            r#"[{"name":"a","metric":"a","operator":"!=","threshold":1,"severity":"low","message":"m"}]"#,
        ] {
            assert!(parse_rules(bad).is_err(), "{bad}");
        }
        assert_eq!(default_rules(60.0).len(), 5);
        let typo = parse_rules(
            r#"[{"name":"t","metric":"error_rat","operator":">","threshold":1,"severity":"low","message":"m"}]"#,
        );
        assert!(
            typo.unwrap_err().contains("unknown metric `error_rat`"),
            "a misspelt metric is an error, not a rule that never fires"
        );
        let defaults = default_rules(60.0);
        assert!(defaults.iter().all(|r| crate::intel::analytics::rule_metrics().any(|m| m == r.metric)));
    }

    #[test]
    fn a_lost_observation_fires_the_default_rule() {
        let rules = default_rules(60.0);
        let mut states = Vec::new();
        let slide = |dropped: f64| move |m: &str| (m == "observations_dropped").then_some(dropped);
        let lost =
            |t: &[Transition]| t.iter().filter(|t| t.rule == "observations_lost").map(|t| t.to).collect::<Vec<_>>();
        assert!(lost(&evaluate(&rules, &mut states, slide(0.0), 0.0)).is_empty());
        assert_eq!(lost(&evaluate(&rules, &mut states, slide(3.0), 60_000.0)), [State::Firing]);
        assert_eq!(lost(&evaluate(&rules, &mut states, slide(0.0), 120_000.0)), [State::Resolved]);
    }
}
