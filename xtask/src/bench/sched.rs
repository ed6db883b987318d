//! What splitting calls' time costs a target that switches often. Two
//! scenarios, one comparison ([`compare`]):
//!
//! - [`run`], threads: ferret keeps on-CPU / runnable / blocked counters
//!   for every traced thread from `sched_switch` and `sched_wakeup` (and
//!   sends a record per block, naming the system call), so a thread that
//!   blocks thousands of times a second pays at each switch even when it
//!   calls no traced function. `bench/programs/pingpong.c`: two threads
//!   passing a byte through two pipes, each blocking once a round.
//! - [`go`], goroutines: in a Go program the split follows goroutines
//!   through uprobes on the runtime's hand-off points (`park_m`,
//!   `execute`, ...), two hits per goroutine switch, which the kernel's
//!   scheduler never sees. `bench/programs/gopingpong.go`: two goroutines
//!   on GOMAXPROCS=1 passing a value through two unbuffered channels, each
//!   parking once a round. It ping-pongs untimed for a warm-up first (time
//!   for the budget to act), then timed; both are reported.
//!
//! In both, each thread or goroutine calls the traced `join` once at its
//! start, so ferret keeps its state; the loop calls nothing traced.
//! Contenders, alternated run by run:
//!
//! - untraced;
//! - `ferret record -s join --max-overhead 0`: what the hooks cost, whole;
//! - `ferret record -s join` with the default budget, which counts the
//!   hooks' runs and turns the split off once they cost more than it allows.
//!
//! Reported: the slowdown of each (median of per-round ratios), the time
//! added per switch, and the switches per second untraced.

use anyhow::{Context as _, Result, bail};
use serde_json::{Map, Value, json};

use super::{Bench, capture, median, num, number_after, paired_ratio};

/// The thread scenario: `pingpong ROUNDS`.
pub fn run(b: &Bench) -> Result<Value> {
    let (rounds, n) = if b.quick { (3, 30_000) } else { (7, 100_000) };
    let scenario = Scenario {
        program: "pingpong",
        symbol: "join",
        args: vec![n.to_string()],
    };
    let mut o = compare(b, &scenario, rounds)?;
    o.insert(
        "program".into(),
        json!("pingpong (two threads, two pipes, one traced call each at start)"),
    );
    o.insert("rounds_per_run".into(), json!(n));
    Ok(Value::Object(o))
}

/// The goroutine scenario: `gopingpong WARMUP_MS MEASURE_MS`.
pub fn go(b: &Bench) -> Result<Value> {
    if !b.program("gopingpong").exists() {
        bail!("gopingpong was not built: Go is not installed (`cargo xtask setup` installs it)");
    }
    let (rounds, warmup_ms, measure_ms) = if b.quick {
        (3, 1000, 300)
    } else {
        (7, 1500, 1000)
    };
    let scenario = Scenario {
        program: "gopingpong",
        symbol: "main.join",
        args: vec![warmup_ms.to_string(), measure_ms.to_string()],
    };
    let mut o = compare(b, &scenario, rounds)?;
    o.insert(
        "program".into(),
        json!(
            "gopingpong (two goroutines on GOMAXPROCS=1, two unbuffered channels, \
             one traced call each at start)"
        ),
    );
    o.insert("warmup_ms".into(), json!(warmup_ms));
    o.insert("measure_ms".into(), json!(measure_ms));
    Ok(Value::Object(o))
}

/// A program that reports `rounds N ns_per_round X switches S` (and, with
/// a warm-up, `warmup_rounds W warmup_ns_per_round Y`).
struct Scenario {
    /// Its stem in `bench/programs`.
    program: &'static str,
    /// The function each thread or goroutine calls once.
    symbol: &'static str,
    args: Vec<String>,
}

#[derive(Default)]
/// Per run, per round of the program.
struct Runs {
    ns: Vec<f64>,
    switches: Vec<f64>,
    /// Over the warm-up, where the program has one: for the budget, this
    /// includes the time before it acted.
    warmup_ns: Vec<f64>,
}

fn compare(b: &Bench, scenario: &Scenario, rounds: usize) -> Result<Map<String, Value>> {
    let mut plain = Runs::default();
    let mut traced = Runs::default();
    let mut budgeted = Runs::default();
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [Contender::Untraced, Contender::Traced, Contender::Budget]
        } else {
            [Contender::Budget, Contender::Traced, Contender::Untraced]
        };
        for contender in order {
            let runs = match contender {
                Contender::Untraced => &mut plain,
                Contender::Traced => &mut traced,
                Contender::Budget => &mut budgeted,
            };
            measure(b, scenario, contender, runs)
                .with_context(|| format!("measuring {}", contender.label()))?;
            println!(
                "round {}/{rounds}  {:<9} {:>10.1} ns per round, {:.2} switches per round",
                round + 1,
                contender.label(),
                runs.ns.last().copied().unwrap_or(0.0),
                runs.switches.last().copied().unwrap_or(0.0),
            );
        }
    }
    let budget_slowdown = paired_ratio(&budgeted.ns, &plain.ns);
    let slowdown = paired_ratio(&traced.ns, &plain.ns);
    let per_round = median(&plain.ns);
    let switches = median(&plain.switches);
    let added_per_switch = |ratio: Option<f64>| {
        ratio
            .zip(per_round)
            .zip(switches)
            .filter(|&(_, s)| s > 0.0)
            .map(|((r, ns), s)| (r - 1.0) * ns / s)
    };
    let switches_per_s = per_round
        .zip(switches)
        .filter(|&(ns, _)| ns > 0.0)
        .map(|(ns, s)| s * 1e9 / ns);
    let percent = |ratio: Option<f64>| num(ratio.map(|r| (r - 1.0) * 100.0), 2);
    let mut o = Map::new();
    o.insert("rounds".into(), json!(rounds));
    o.insert("slowdown".into(), num(slowdown, 4));
    o.insert("overhead_percent".into(), percent(slowdown));
    o.insert(
        "added_ns_per_switch".into(),
        num(added_per_switch(slowdown), 0),
    );
    o.insert("switches_per_s_untraced".into(), num(switches_per_s, 0));
    o.insert("budget_slowdown".into(), num(budget_slowdown, 4));
    o.insert("budget_overhead_percent".into(), percent(budget_slowdown));
    o.insert(
        "budget_added_ns_per_switch".into(),
        num(added_per_switch(budget_slowdown), 1),
    );
    if !plain.warmup_ns.is_empty() {
        let warmup = paired_ratio(&budgeted.warmup_ns, &plain.warmup_ns);
        o.insert("budget_warmup_slowdown".into(), num(warmup, 3));
    }
    o.insert("untraced_ns_per_round".into(), json!(plain.ns));
    o.insert("traced_ns_per_round".into(), json!(traced.ns));
    o.insert("budget_ns_per_round".into(), json!(budgeted.ns));
    Ok(o)
}

#[derive(Clone, Copy)]
enum Contender {
    Untraced,
    /// `--max-overhead 0`: the hooks' whole cost.
    Traced,
    /// The default budget.
    Budget,
}

impl Contender {
    fn label(self) -> &'static str {
        match self {
            Self::Untraced => "untraced",
            Self::Traced => "traced",
            Self::Budget => "budget",
        }
    }
}

fn measure(b: &Bench, scenario: &Scenario, contender: Contender, runs: &mut Runs) -> Result<()> {
    let program = b.program(scenario.program);
    let budget = match contender {
        Contender::Untraced => None,
        Contender::Traced => Some("0"),
        Contender::Budget => Some("5"),
    };
    let output = if let Some(budget) = budget {
        let parquet = b.scratch(&format!("{}.parquet", scenario.program));
        capture(
            b.ferret()
                .env("FERRET_CALIBRATION_CALLS", "0")
                .args(["record", "-s", scenario.symbol, "--max-overhead", budget])
                .arg("-o")
                .arg(&parquet)
                .arg("--")
                .arg(&program)
                .args(&scenario.args),
        )?
    } else {
        capture(b.sh.cmd(&program).args(&scenario.args))?
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let field = |key: &str| {
        number_after(&stdout, key).with_context(|| format!("no `{key}` in the output: {stdout}"))
    };
    let rounds = field("rounds")?;
    runs.ns.push(field("ns_per_round")?);
    runs.switches.push(field("switches")? / rounds.max(1.0));
    if let Some(warmup) = number_after(&stdout, "warmup_ns_per_round") {
        runs.warmup_ns.push(warmup);
    }
    Ok(())
}
