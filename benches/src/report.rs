//! What a run produces: one [`Scenario`] per measured scenario with its
//! comparisons, printed as tables and written as JSON.

use std::fmt::Write as _;

use serde::Serialize;

/// Whether smaller or larger figures are better in a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    /// Latencies and bytes.
    Lower,
    /// Rates.
    Higher,
}

/// How a figure is checked against a target value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Rule {
    /// The figure must be at most the target.
    #[serde(rename = "<=")]
    AtMost,
    /// The figure must be at least the target.
    #[serde(rename = ">=")]
    AtLeast,
}

impl Rule {
    /// Whether `value` meets `target` under this rule.
    pub fn check(self, value: f64, target: f64) -> bool {
        match self {
            Rule::AtMost => value <= target,
            Rule::AtLeast => value >= target,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Rule::AtMost => "<=",
            Rule::AtLeast => ">=",
        }
    }
}

/// What a compared subject is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The physical floor: raw tokio doing the same work.
    Floor,
    /// Another actor runtime.
    Peer,
}

/// Median, extremes and every sample of one subject in one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    /// The median of the samples.
    pub median: f64,
    /// The smallest sample.
    pub min: f64,
    /// The largest sample.
    pub max: f64,
    /// How many samples (timed runs).
    pub runs: usize,
    /// The samples, in run order.
    pub samples: Vec<f64>,
}

impl Figures {
    /// Summarises `samples` (at least one).
    pub fn from_samples(samples: Vec<f64>) -> Figures {
        assert!(!samples.is_empty(), "no samples");
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Figures {
            median,
            min: sorted[0],
            max: sorted[n - 1],
            runs: n,
            samples,
        }
    }
}

/// actor-core's figure set against one floor or peer, measured in the same
/// run.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// The floor or peer.
    pub against: String,
    /// Floor or peer.
    pub kind: Kind,
    /// How it was run, where that differs from actor-core.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Its median.
    pub median: f64,
    /// Its smallest sample.
    pub min: f64,
    /// Its largest sample.
    pub max: f64,
    /// Its number of runs.
    pub runs: usize,
    /// actor-core's median divided by this median (below 1 is better for
    /// lower-is-better units, above 1 for higher-is-better ones).
    pub ratio: f64,
    /// The median over runs of each run's own ratio (actor-core's sample
    /// divided by this subject's sample of the same run): less sensitive to
    /// load that changes between runs on a shared machine. Targets are
    /// checked on `ratio`.
    pub paired_ratio: f64,
    /// Its median process CPU time per operation, in ns (every thread;
    /// absent where it does not apply).
    pub cpu_ns_per_op: Option<f64>,
    /// actor-core's CPU time per operation divided by this one's (below 1:
    /// actor-core spends less CPU per operation).
    pub cpu_ratio: Option<f64>,
    /// The ratio the Targets ask for, if any.
    pub target_ratio: Option<f64>,
    /// How `ratio` is checked against `target_ratio`.
    pub target_rule: Option<Rule>,
    /// Whether the target is met (absent without a target).
    pub met: Option<bool>,
}

/// A target on actor-core's own figure (not a ratio).
#[derive(Debug, Clone, Serialize)]
pub struct AbsoluteTarget {
    /// What is checked, in words.
    pub what: String,
    /// The value checked (the median, possibly less the user state).
    pub value: f64,
    /// The target.
    pub target: f64,
    /// How `value` is checked against `target`.
    pub rule: Rule,
    /// Whether the target is met.
    pub met: bool,
}

/// A subject left out of a scenario, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// The subject.
    pub subject: String,
    /// Why.
    pub reason: String,
}

/// One scenario's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    /// Stable name, `area/shape`.
    pub name: String,
    /// `local` (later also `remote`, `storage`).
    pub group: String,
    /// What is measured, in one sentence.
    pub description: String,
    /// The unit of every figure.
    pub unit: String,
    /// Which way is better.
    pub better: Better,
    /// The subject the scenario is about.
    pub subject: String,
    /// actor-core's median.
    pub median: f64,
    /// actor-core's smallest sample.
    pub min: f64,
    /// actor-core's largest sample.
    pub max: f64,
    /// actor-core's number of timed runs.
    pub runs: usize,
    /// actor-core's samples.
    pub samples: Vec<f64>,
    /// actor-core's median process CPU time per operation, in ns (every
    /// thread; absent where it does not apply, as for memory).
    pub cpu_ns_per_op: Option<f64>,
    /// A target on actor-core's own figure, if the issue sets one.
    pub target: Option<AbsoluteTarget>,
    /// Floor and peers, measured in the same run.
    pub comparisons: Vec<Comparison>,
    /// Subjects left out, with the reason.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skipped>,
}

impl Scenario {
    /// The comparison with the floor.
    pub fn floor(&self) -> Option<&Comparison> {
        self.comparisons.iter().find(|c| c.kind == Kind::Floor)
    }

    /// The best peer's comparison.
    pub fn best_peer(&self) -> Option<&Comparison> {
        let peers = self.comparisons.iter().filter(|c| c.kind == Kind::Peer);
        match self.better {
            Better::Lower => peers.min_by(|a, b| a.median.total_cmp(&b.median)),
            Better::Higher => peers.max_by(|a, b| a.median.total_cmp(&b.median)),
        }
    }

    /// Whether every target of the scenario is met (`None`: no target).
    pub fn targets_met(&self) -> Option<bool> {
        let mut checks = self
            .comparisons
            .iter()
            .filter_map(|c| c.met)
            .chain(self.target.as_ref().map(|t| t.met))
            .peekable();
        checks.peek()?;
        Some(checks.all(|m| m))
    }
}

/// The machine a run ran on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Logical CPUs available to the process.
    pub nproc: usize,
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// `MemTotal` from /proc/meminfo, in KiB.
    pub mem_total_kib: u64,
    /// The kernel release.
    pub kernel: String,
}

impl Machine {
    /// Reads the running machine's description (Linux; fields stay empty
    /// elsewhere).
    pub fn current() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        Machine {
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model,
            mem_total_kib: meminfo_kib("MemTotal").unwrap_or(0),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_default(),
        }
    }
}

/// A field of /proc/meminfo, in KiB.
pub fn meminfo_kib(field: &str) -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo")
        .ok()?
        .lines()
        .find(|l| l.split(':').next() == Some(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A scenario of the issue that this suite does not measure yet.
#[derive(Debug, Clone, Serialize)]
pub struct NotMeasured {
    /// The scenario.
    pub scenario: String,
    /// Why not.
    pub reason: String,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `quick`, `full` or `tiny`.
    pub mode: String,
    /// The command that produced it.
    pub command: String,
    /// The machine.
    pub machine: Machine,
    /// When the run started, seconds since the Unix epoch.
    pub started_unix_s: u64,
    /// How long the run took, in seconds.
    pub duration_s: f64,
    /// The scenarios, in run order.
    pub scenarios: Vec<Scenario>,
    /// Scenarios of the issue left for later, with the reason.
    pub not_measured: Vec<NotMeasured>,
}

impl Report {
    /// The scenario named `name`.
    pub fn scenario(&self, name: &str) -> Option<&Scenario> {
        self.scenarios.iter().find(|s| s.name == name)
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serializes")
    }

    /// Per-scenario detail tables and a summary table, as plain text.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        for s in &self.scenarios {
            let _ = writeln!(
                out,
                "\n== {} ({}, {} is better; medians of {} runs) ==",
                s.name,
                s.unit,
                match s.better {
                    Better::Lower => "lower",
                    Better::Higher => "higher",
                },
                s.runs
            );
            let _ = writeln!(
                out,
                "  {:<34} {:>14} {:>14} {:>14} {:>10} {:>7} {:>10} {:>7}  target",
                "subject", "median", "min", "max", "ours/this", "paired", "cpu ns/op", "cpu"
            );
            let _ = writeln!(
                out,
                "  {:<34} {:>14} {:>14} {:>14} {:>10} {:>7} {:>10} {:>7}  {}",
                s.subject,
                num(s.median),
                num(s.min),
                num(s.max),
                "",
                "",
                s.cpu_ns_per_op.map(num).unwrap_or_default(),
                "",
                s.target
                    .as_ref()
                    .map(|t| format!(
                        "{} {} {}: {}",
                        t.what,
                        t.rule.symbol(),
                        num(t.target),
                        verdict(t.met)
                    ))
                    .unwrap_or_default()
            );
            for c in &s.comparisons {
                let name = match &c.note {
                    Some(n) => format!("{} ({n})", c.against),
                    None => c.against.clone(),
                };
                let target = match (c.target_rule, c.target_ratio, c.met) {
                    (Some(rule), Some(t), Some(met)) => {
                        format!("{} {t:.2}x: {}", rule.symbol(), verdict(met))
                    }
                    _ => String::new(),
                };
                let _ = writeln!(
                    out,
                    "  {:<34} {:>14} {:>14} {:>14} {:>9.2}x {:>6.2}x {:>10} {:>7}  {}",
                    clip(&name, 34),
                    num(c.median),
                    num(c.min),
                    num(c.max),
                    c.ratio,
                    c.paired_ratio,
                    c.cpu_ns_per_op.map(num).unwrap_or_default(),
                    c.cpu_ratio.map(|r| format!("{r:.2}x")).unwrap_or_default(),
                    target
                );
            }
            for k in &s.skipped {
                let _ = writeln!(out, "  {:<34} skipped: {}", k.subject, k.reason);
            }
        }
        out.push('\n');
        out.push_str(&self.summary_table());
        out
    }

    /// The summary table, then one Markdown table per scenario with every
    /// subject's median, extremes, ratio and target: what BENCHMARKS.md
    /// shows (written next to the JSON as `latest.md`).
    pub fn to_markdown(&self) -> String {
        let mut out = self.summary_table();
        for s in &self.scenarios {
            let _ = writeln!(
                out,
                "\n### {}\n\n{} Unit: {} ({} is better); {} runs, medians.\n",
                s.name,
                s.description,
                s.unit,
                match s.better {
                    Better::Lower => "lower",
                    Better::Higher => "higher",
                },
                s.runs
            );
            let _ = writeln!(
                out,
                "| subject | median | min | max | actor-core / this | paired | CPU ns/op | CPU ratio | target |"
            );
            let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---|");
            let _ = writeln!(
                out,
                "| **{}** | **{}** | {} | {} | | | {} | | {} |",
                s.subject,
                num(s.median),
                num(s.min),
                num(s.max),
                s.cpu_ns_per_op.map(num).unwrap_or_default(),
                s.target
                    .as_ref()
                    .map(|t| format!(
                        "{} = {} {} {}: {}",
                        t.what,
                        num(t.value),
                        t.rule.symbol(),
                        num(t.target),
                        verdict(t.met)
                    ))
                    .unwrap_or_default()
            );
            for c in &s.comparisons {
                let name = match &c.note {
                    Some(n) => format!("{} ({n})", c.against),
                    None => c.against.clone(),
                };
                let target = match (c.target_rule, c.target_ratio, c.met) {
                    (Some(rule), Some(t), Some(met)) => {
                        format!("{} {t:.2}x: {}", rule.symbol(), verdict(met))
                    }
                    _ => String::new(),
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {:.2}x | {:.2}x | {} | {} | {} |",
                    name,
                    num(c.median),
                    num(c.min),
                    num(c.max),
                    c.ratio,
                    c.paired_ratio,
                    c.cpu_ns_per_op.map(num).unwrap_or_default(),
                    c.cpu_ratio.map(|r| format!("{r:.2}x")).unwrap_or_default(),
                    target
                );
            }
            for k in &s.skipped {
                let _ = writeln!(
                    out,
                    "| {} | skipped: {} | | | | | | | |",
                    k.subject, k.reason
                );
            }
        }
        out
    }

    /// One line per scenario: actor-core, floor, best peer, ratios,
    /// targets (Markdown table syntax).
    pub fn summary_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| scenario | unit | actor-core | floor | ours/floor | best peer | ours/best peer | targets | CPU/op ours/floor |"
        );
        let _ = writeln!(out, "|---|---|---:|---:|---:|---|---:|---|---:|");
        for s in &self.scenarios {
            let floor = s.floor();
            let peer = s.best_peer();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                s.name,
                s.unit,
                num(s.median),
                floor.map(|f| num(f.median)).unwrap_or_default(),
                floor
                    .map(|f| format!("{:.2}x", f.ratio))
                    .unwrap_or_default(),
                peer.map(|p| format!("{} {}", p.against, num(p.median)))
                    .unwrap_or_default(),
                peer.map(|p| format!("{:.2}x", p.ratio)).unwrap_or_default(),
                match s.targets_met() {
                    Some(true) => "met",
                    Some(false) => "MISSED",
                    None => "-",
                },
                floor
                    .and_then(|f| f.cpu_ratio)
                    .map(|r| format!("{r:.2}x"))
                    .unwrap_or_default()
            );
        }
        for n in &self.not_measured {
            let _ = writeln!(
                out,
                "| {} | | not measured: {} | | | | | | |",
                n.scenario, n.reason
            );
        }
        out
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut c: String = s.chars().take(n - 1).collect();
        c.push('~');
        c
    }
}

/// A figure with three significant digits and thousands separators.
fn num(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    if v.abs() >= 1000.0 {
        let digits = format!("{:.0}", v.round());
        let (sign, digits) = digits
            .strip_prefix('-')
            .map_or(("", digits.as_str()), |d| ("-", d));
        let mut grouped = String::new();
        for (i, ch) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(ch);
        }
        format!("{sign}{grouped}")
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_numbers() {
        let f = Figures::from_samples(vec![3.0, 1.0, 2.0, 10.0]);
        assert_eq!((f.median, f.min, f.max, f.runs), (2.5, 1.0, 10.0, 4));
        assert_eq!(Figures::from_samples(vec![5.0, 1.0, 9.0]).median, 5.0);
        assert_eq!(num(1_234_567.4), "1,234,567");
        assert_eq!(num(331.2), "331");
        assert_eq!(num(7.25), "7.2");
        assert!(Rule::AtMost.check(1.5, 1.5) && !Rule::AtLeast.check(0.8, 0.9));
    }
}
