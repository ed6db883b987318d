//! What the scheduler hooks cost a target that switches often: ferret keeps
//! on-CPU / runnable / blocked counters for every traced thread from
//! `sched_switch` and `sched_wakeup` (and sends a record per block, naming
//! the system call), so a thread that blocks thousands of times a second
//! pays at each switch even when it calls no traced function.
//! `bench/programs/pingpong.c`: two threads passing a byte through two
//! pipes, each blocking once a round; each calls the traced `join()` once
//! so it has counters. Contenders, alternated run by run:
//!
//! - untraced;
//! - `ferret record -s join --max-overhead 0` (the loop calls nothing
//!   traced: what it pays is the scheduler hooks and the block records);
//! - `ferret record -s join` with the default budget, which counts the
//!   hooks' runs and turns the split off once they cost more than it allows.
//!
//! Reported: the slowdown of each (median of per-round ratios), the time
//! added per voluntary context switch, and the switches per second untraced.

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use super::{Bench, capture, median, num, number_after};

#[derive(Default)]
struct Runs {
    ns_per_round: Vec<f64>,
    switches_per_round: Vec<f64>,
}

pub fn run(b: &Bench) -> Result<Value> {
    let (rounds, n) = if b.quick { (3, 30_000) } else { (7, 100_000) };
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
            measure(b, contender, n, runs)
                .with_context(|| format!("measuring {}", contender.label()))?;
            println!(
                "round {}/{rounds}  {:<9} {:>10.1} ns per round, {:.2} switches per round",
                round + 1,
                contender.label(),
                runs.ns_per_round.last().copied().unwrap_or(0.0),
                runs.switches_per_round.last().copied().unwrap_or(0.0),
            );
        }
    }
    let slowdown_of = |runs: &Runs| {
        let ratios: Vec<f64> = runs
            .ns_per_round
            .iter()
            .zip(&plain.ns_per_round)
            .filter(|&(_, &p)| p > 0.0)
            .map(|(t, p)| t / p)
            .collect();
        median(&ratios)
    };
    let slowdown = slowdown_of(&traced);
    let budget_slowdown = slowdown_of(&budgeted);
    let per_round = median(&plain.ns_per_round);
    let switches = median(&plain.switches_per_round);
    let added_per_switch = slowdown
        .zip(per_round)
        .zip(switches)
        .filter(|&(_, s)| s > 0.0)
        .map(|((r, ns), s)| (r - 1.0) * ns / s);
    let switches_per_s = per_round
        .zip(switches)
        .filter(|&(ns, _)| ns > 0.0)
        .map(|(ns, s)| s * 1e9 / ns);
    Ok(json!({
        "program": "pingpong (two threads, two pipes, one traced call each at start)",
        "rounds": rounds,
        "rounds_per_run": n,
        "slowdown": num(slowdown, 4),
        "overhead_percent": num(slowdown.map(|r| (r - 1.0) * 100.0), 2),
        "added_ns_per_switch": num(added_per_switch, 0),
        "switches_per_s_untraced": num(switches_per_s, 0),
        "budget_slowdown": num(budget_slowdown, 4),
        "budget_overhead_percent": num(budget_slowdown.map(|r| (r - 1.0) * 100.0), 2),
        "untraced_ns_per_round": plain.ns_per_round,
        "traced_ns_per_round": traced.ns_per_round,
        "budget_ns_per_round": budgeted.ns_per_round,
    }))
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

fn measure(b: &Bench, contender: Contender, n: u64, runs: &mut Runs) -> Result<()> {
    let program = b.program("pingpong");
    let budget = match contender {
        Contender::Untraced => None,
        Contender::Traced => Some("0"),
        Contender::Budget => Some("5"),
    };
    let output = if let Some(budget) = budget {
        let parquet = b.scratch("sched.parquet");
        capture(
            b.ferret()
                .env("FERRET_CALIBRATION_CALLS", "0")
                .args(["record", "-s", "join", "--max-overhead", budget, "-o"])
                .arg(&parquet)
                .arg("--")
                .arg(&program)
                .arg(n.to_string()),
        )?
    } else {
        capture(b.sh.cmd(&program).arg(n.to_string()))?
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let field = |key: &str| {
        number_after(&stdout, key).with_context(|| format!("no `{key}` in the output: {stdout}"))
    };
    let rounds = field("rounds")?;
    runs.ns_per_round.push(field("ns_per_round")?);
    runs.switches_per_round
        .push(field("switches")? / rounds.max(1.0));
    Ok(())
}
