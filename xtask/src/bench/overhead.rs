//! Cost per traced call. `bench/programs/tight.c` calls `bench_fn` (one
//! `lea`, one `ret`: about a nanosecond) in a tight loop and times the loop
//! itself, so start-up and attach are not counted. The cost is the calling
//! thread's CPU time per call: the uprobe traps and the BPF programs run in
//! the thread's own context, while time it spends preempted by unrelated
//! work on a shared machine does not count (wall time is kept too).
//! The loop first runs untimed for [`WARMUP_MS`], so the tracer's own
//! start-up work (which overlaps the target's start) is not counted either.
//! Ratios are medians of per-round ratios: the two runs compared sit next to
//! each other in time, so they share the state of this shared machine,
//! whose speed drifts by ±20 % from minute to minute.
//! Contenders, alternated run by run (the order flips every round so drift
//! cancels):
//!
//! - untraced;
//! - the floor: the empty `ferret_empty` program at exactly ferret's probe
//!   points, through the same `uprobe_multi` links (the `bench floor` helper);
//! - `ferret record`, per exit-probe mode (`ret`, `uretprobe`);
//! - bpftrace doing the same job: a timestamp at entry, a latency histogram
//!   at the uretprobe. It cannot do the `ret`-instruction job: bpftrace 0.17
//!   as Debian builds it refuses any probe inside a function
//!   (`uprobe:…:bench_fn+3`: "compiled without (k|u)probe offset support"),
//!   so in `ret` mode the floor is the only like-for-like reference;
//! - in a Go program (`bench/programs/tight.go`, `main.benchFn`, an `inc`
//!   and a `ret`, called by one goroutine locked to its thread): the floor
//!   and `ferret record` again. Go's exits are always `ret`-instruction
//!   probes, and ferret's probes there also read the goroutine (its id and
//!   stack position through r14), which is what this row costs on top.

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use super::{Bench, capture, median, num, number_after, number_before, paired_ratio};
use crate::sh::quote;

/// How long `tight` loops untimed before it starts timing.
const WARMUP_MS: &str = "300";

/// The exit-probe modes compared.
pub const MODES: [&str; 2] = ["ret", "uretprobe"];

#[derive(Clone, Copy, Debug)]
enum Contender {
    Untraced,
    Floor(usize),
    Ferret(usize),
    Bpftrace,
    /// The floor in the Go program.
    FloorGo,
    /// ferret in the Go program.
    FerretGo,
}

impl Contender {
    fn name(self) -> String {
        match self {
            Contender::Untraced => "untraced".to_owned(),
            Contender::Floor(m) => format!("floor ({})", MODES[m]),
            Contender::Ferret(m) => format!("ferret ({})", MODES[m]),
            Contender::Bpftrace => "bpftrace".to_owned(),
            Contender::FloorGo => "floor (Go)".to_owned(),
            Contender::FerretGo => "ferret (Go)".to_owned(),
        }
    }
}

pub fn run(b: &Bench) -> Result<Value> {
    // Traced calls cost microseconds here (a trap each way); untraced ones
    // need many more calls to be timed at all.
    let (rounds, calls, untraced_calls) = if b.quick {
        (3, 3_000, 20_000_000)
    } else {
        (9, 20_000, 200_000_000)
    };
    let bpftrace = b.sh.which("bpftrace");
    if bpftrace.is_none() {
        println!("bpftrace is not installed: its column stays empty");
    }
    let mut contenders = vec![Contender::Untraced];
    for m in 0..MODES.len() {
        contenders.extend([Contender::Floor(m), Contender::Ferret(m)]);
    }
    if bpftrace.is_some() {
        contenders.push(Contender::Bpftrace);
    }
    let go = b.program("tight-go").exists();
    if go {
        contenders.extend([Contender::FloorGo, Contender::FerretGo]);
    } else {
        println!("no tight-go (Go is not installed): the Go row stays empty");
    }

    let mut untraced = Samples::default();
    let mut floor = vec![Samples::default(); MODES.len()];
    let mut ferret = vec![Samples::default(); MODES.len()];
    let mut bpf = Samples::default();
    let (mut floor_go, mut ferret_go) = (Samples::default(), Samples::default());
    let mut lost = 0.0;
    for round in 0..rounds {
        let mut order = contenders.clone();
        if round % 2 == 1 {
            order.reverse();
        }
        for contender in order {
            let (cpu, wall, lost_now) = measure(b, contender, calls, untraced_calls)
                .with_context(|| format!("measuring {}", contender.name()))?;
            lost += lost_now;
            println!(
                "round {}/{rounds}  {:<20} {:>10} CPU, {:>10} wall",
                round + 1,
                contender.name(),
                super::report::duration_ns(cpu),
                super::report::duration_ns(wall)
            );
            let samples = match contender {
                Contender::Untraced => &mut untraced,
                Contender::Floor(m) => &mut floor[m],
                Contender::Ferret(m) => &mut ferret[m],
                Contender::Bpftrace => &mut bpf,
                Contender::FloorGo => &mut floor_go,
                Contender::FerretGo => &mut ferret_go,
            };
            samples.cpu.push(cpu);
            samples.wall.push(wall);
        }
    }

    let bpftrace_ns = median(&bpf.cpu);
    let mut modes = serde_json::Map::new();
    for (m, mode) in MODES.iter().enumerate() {
        let floor_ns = median(&floor[m].cpu);
        let ferret_ns = median(&ferret[m].cpu);
        modes.insert(
            (*mode).to_owned(),
            json!({
                "floor_ns": num(floor_ns, 1),
                "ferret_ns": num(ferret_ns, 1),
                "ferret_vs_floor": num(paired_ratio(&ferret[m].cpu, &floor[m].cpu), 3),
                "ferret_vs_bpftrace": num(paired_ratio(&ferret[m].cpu, &bpf.cpu), 3),
                "floor_wall_ns": num(median(&floor[m].wall), 1),
                "ferret_wall_ns": num(median(&ferret[m].wall), 1),
                "floor": floor[m].json(),
                "ferret": ferret[m].json(),
            }),
        );
    }
    Ok(json!({
        "function": "bench_fn (lea + ret, ~1 ns)",
        "clock": "CPU time of the calling thread (ns per call); *_wall_ns: wall time",
        "rounds": rounds,
        "calls_per_run": calls,
        "untraced_ns": num(median(&untraced.cpu), 2),
        "untraced": untraced.json(),
        "bpftrace_ns": num(bpftrace_ns, 1),
        "bpftrace_wall_ns": num(median(&bpf.wall), 1),
        "bpftrace": bpf.json(),
        "ferret_lost_events": lost,
        "modes": modes,
        "go": go.then(|| json!({
            "function": "main.benchFn (inc + ret) in tight.go, one goroutine locked to its thread",
            "floor_ns": num(median(&floor_go.cpu), 1),
            "ferret_ns": num(median(&ferret_go.cpu), 1),
            "ferret_vs_floor": num(paired_ratio(&ferret_go.cpu, &floor_go.cpu), 3),
            "floor_wall_ns": num(median(&floor_go.wall), 1),
            "ferret_wall_ns": num(median(&ferret_go.wall), 1),
            "floor": floor_go.json(),
            "ferret": ferret_go.json(),
        })),
    }))
}

/// One contender's runs: ns per call by CPU time and by wall time.
#[derive(Clone, Default)]
struct Samples {
    cpu: Vec<f64>,
    wall: Vec<f64>,
}

impl Samples {
    fn json(&self) -> Value {
        let round = |v: &[f64]| {
            v.iter()
                .map(|x| (x * 10.0).round() / 10.0)
                .collect::<Vec<_>>()
        };
        json!({ "cpu_ns": round(&self.cpu), "wall_ns": round(&self.wall) })
    }
}

/// One run: the loop's ns per call by CPU and by wall time, and the events
/// ferret lost (0 for the others).
fn measure(
    b: &Bench,
    contender: Contender,
    calls: u64,
    untraced_calls: u64,
) -> Result<(f64, f64, f64)> {
    let tight = b.program("tight");
    let tight_go = b.program("tight-go");
    let output = match contender {
        Contender::Untraced => capture(
            b.sh.cmd(&tight)
                .arg(untraced_calls.to_string())
                .arg(WARMUP_MS),
        )?,
        Contender::Floor(m) => capture(
            b.sh.cmd(&b.helper)
                .args(["floor", "-s", "bench_fn", "--exit-probes", MODES[m], "--"])
                .arg(&tight)
                .arg(calls.to_string())
                .arg(WARMUP_MS),
        )?,
        Contender::Ferret(m) => capture(
            b.ferret()
                .args(["record", "-s", "bench_fn", "--exit-probes", MODES[m]])
                // The overhead guards would detach a function this hot.
                .args(["--max-rate", "0", "--max-overhead", "0", "-o"])
                .arg(b.scratch("overhead.parquet"))
                .arg("--")
                .arg(&tight)
                .arg(calls.to_string())
                .arg(WARMUP_MS),
        )?,
        // Go's exits are `ret` probes whatever is asked: no --exit-probes.
        Contender::FloorGo => capture(
            b.sh.cmd(&b.helper)
                .args(["floor", "-s", "main.benchFn", "--"])
                .arg(&tight_go)
                .arg(calls.to_string())
                .arg(WARMUP_MS),
        )?,
        Contender::FerretGo => capture(
            b.ferret()
                .args(["record", "-s", "main.benchFn"])
                .args(["--max-rate", "0", "--max-overhead", "0", "-o"])
                .arg(b.scratch("overhead-go.parquet"))
                .arg("--")
                .arg(&tight_go)
                .arg(calls.to_string())
                .arg(WARMUP_MS),
        )?,
        Contender::Bpftrace => {
            let path = tight.to_string_lossy();
            let script = format!(
                "uprobe:{path}:bench_fn {{ @s[tid] = nsecs; }} \
                 uretprobe:{path}:bench_fn /@s[tid]/ {{ @h = hist(nsecs - @s[tid]); delete(@s[tid]); }}"
            );
            capture(
                b.sh.cmd("bpftrace")
                    .arg("-e")
                    .arg(script)
                    .arg("-c")
                    .arg(format!("{} {calls} {WARMUP_MS}", quote(&path))),
            )?
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let field = |key: &str| {
        number_after(&stdout, key).with_context(|| format!("no `{key}` in the output: {stdout}"))
    };
    let (cpu, wall) = (field("cpu_ns_per_call")?, field("ns_per_call")?);
    let lost = match contender {
        Contender::Ferret(_) | Contender::FerretGo => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            number_before(&stderr, "events lost", "events").unwrap_or(0.0)
        }
        _ => 0.0,
    };
    Ok((cpu, wall, lost))
}

#[cfg(test)]
mod tests {
    use super::super::paired_ratio;

    #[test]
    fn ratios_pair_runs_of_the_same_round() {
        // The machine slowed down in round 2 for both: a paired ratio is
        // not fooled by it.
        let ferret = [10.0, 20.0, 10.5];
        let floor = [10.0, 19.0, 10.0];
        assert_eq!(paired_ratio(&ferret, &floor), Some(1.05));
        assert_eq!(paired_ratio(&[], &[]), None);
        assert_eq!(paired_ratio(&[1.0], &[0.0]), None);
    }
}
