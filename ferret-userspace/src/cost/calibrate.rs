//! Measuring the probes' cost: a copy of ferret, run as a short-lived
//! helper process, calls nine functions of its own `calls` times each while
//! they are traced through ferret's probe program and `uprobe_multi` links.
//!
//! The nine functions are written in assembly so their code, and so the
//! probes on it, are exactly known: an entry the kernel emulates (`push
//! rbp`), one it single-steps out of line (`mov eax, imm32`, a second trap),
//! or a 5-byte nop it turns into a call; and no exit probe, a probe on the
//! `ret` (single-stepped), or a uretprobe. For
//! each, the median gap between consecutive entries is one loop turn plus
//! every probe of one call; against the entry-only series that gives the
//! exit's cost, and against an untraced turn (timed in ferret's own
//! process) the entry's. The median of exit − entry timestamps is the bias:
//! the probes' time inside the call's own measured duration. Medians, so
//! the odd preemption or ring-buffer wakeup does not move them.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    sync::{Arc, mpsc},
    time::{Duration, Instant},
};

use super::{Calibration, ENTRY_KINDS, EntryKind, median, quantile};
use crate::{
    probe::{Engine, ExitProbes, ProbePoint, decode::Decoder},
    symbols::parse_maps,
    target::{self, Launched},
    trace::RawKind,
};

/// The first argument that makes `ferret` the calibration helper (never
/// shown in `--help`).
pub const CHILD_ARG: &str = "__ferret-calibrate";

/// Calls per series at the start of a session: about 0.2 s on this
/// project's VM. `FERRET_CALIBRATION_CALLS` overrides it (0: no
/// calibration, times are not corrected).
pub const DEFAULT_CALLS: u32 = 1000;

/// Calls per series when recalibrating during a session.
pub const RECALIBRATION_CALLS: u32 = 300;

/// How often a running session measures again.
pub const RECALIBRATE_EVERY: Duration = Duration::from_mins(2);

/// Why a calibration failed (the session then goes on uncorrected).
#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    /// ferret's own executable could not be found or probed.
    #[error("cannot probe ferret's own executable: {0}")]
    OwnExecutable(String),
    /// The helper process could not be started or attached.
    #[error("starting the calibration helper")]
    Helper(#[source] anyhow::Error),
    /// Too few events came back to measure anything.
    #[error("the calibration saw {seen} of {expected} events (lost {lost})")]
    TooFewEvents {
        /// Events decoded.
        seen: usize,
        /// Events expected.
        expected: usize,
        /// Events the kernel dropped.
        lost: u64,
    },
}

/// A calibration target (see the module doc) named `$name` whose code is
/// `$insn…`; each has its own `mov eax, MARK`, so no two are alike.
macro_rules! target_function {
    ($name:ident, $doc:literal, $($insn:expr),+) => {
        #[doc = $doc]
        #[unsafe(naked)]
        #[unsafe(no_mangle)]
        pub extern "C" fn $name() {
            core::arch::naked_asm!($($insn),+);
        }
    };
}

/// An entry the kernel emulates (`push rbp`), then `mov rbp, rsp; mov eax,
/// MARK; pop rbp; ret`: the `ret` at byte 10.
macro_rules! emulated {
    ($name:ident, $mark:literal) => {
        target_function!(
            $name,
            "A target whose entry (`push rbp`) the kernel emulates.",
            "push rbp",
            "mov rbp, rsp",
            concat!("mov eax, ", $mark),
            "pop rbp",
            "ret"
        );
    };
}

/// An entry the kernel single-steps (`mov eax, MARK`), then `push rbp; mov
/// rbp, rsp; pop rbp; ret`: the `ret` at byte 10 too.
macro_rules! stepped {
    ($name:ident, $mark:literal) => {
        target_function!(
            $name,
            "A target whose entry (`mov eax, imm32`) the kernel single-steps.",
            concat!("mov eax, ", $mark),
            "push rbp",
            "mov rbp, rsp",
            "pop rbp",
            "ret"
        );
    };
}

/// A 5-byte nop entry, then as [`emulated!`]: the `ret` at byte 15.
macro_rules! nop5 {
    ($name:ident, $mark:literal) => {
        target_function!(
            $name,
            "A target entered through a 5-byte nop.",
            ".byte 0x0f, 0x1f, 0x44, 0x00, 0x00",
            "push rbp",
            "mov rbp, rsp",
            concat!("mov eax, ", $mark),
            "pop rbp",
            "ret"
        );
    };
}

emulated!(ferret_calibrate_emulated_none, "1");
emulated!(ferret_calibrate_emulated_insn, "2");
emulated!(ferret_calibrate_emulated_uret, "3");
stepped!(ferret_calibrate_stepped_none, "4");
stepped!(ferret_calibrate_stepped_insn, "5");
stepped!(ferret_calibrate_stepped_uret, "6");
nop5!(ferret_calibrate_nop_none, "7");
nop5!(ferret_calibrate_nop_insn, "8");
nop5!(ferret_calibrate_nop_uret, "9");

/// One series: a function, how it is probed, where its `ret` is.
struct Series {
    function: extern "C" fn(),
    entry: EntryKind,
    exit: Exit,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Exit {
    None,
    Instruction,
    Uretprobe,
}

/// The nine series, in the order the helper calls them (function id =
/// index): per entry kind, in [`ENTRY_KINDS`] order, no exit probe, a
/// return-instruction probe, a uretprobe.
fn series() -> [Series; SERIES] {
    use EntryKind::{Emulated, Nop5, Stepped};
    let s = |function, entry, exit| Series {
        function,
        entry,
        exit,
    };
    [
        s(ferret_calibrate_emulated_none, Emulated, Exit::None),
        s(ferret_calibrate_emulated_insn, Emulated, Exit::Instruction),
        s(ferret_calibrate_emulated_uret, Emulated, Exit::Uretprobe),
        s(ferret_calibrate_stepped_none, Stepped, Exit::None),
        s(ferret_calibrate_stepped_insn, Stepped, Exit::Instruction),
        s(ferret_calibrate_stepped_uret, Stepped, Exit::Uretprobe),
        s(ferret_calibrate_nop_none, Nop5, Exit::None),
        s(ferret_calibrate_nop_insn, Nop5, Exit::Instruction),
        s(ferret_calibrate_nop_uret, Nop5, Exit::Uretprobe),
    ]
}

/// Series in a calibration.
const SERIES: usize = 9;

/// Length of a target's code before its `ret`: `push rbp` (1), `mov rbp,
/// rsp` (3), `mov eax, imm32` (5), `pop rbp` (1), after the nop if any.
const RET_AT: usize = 10;

/// The offset of the target's `ret`, checked against its code: the entry
/// must be of the kind the series measures.
fn ret_offset(series: &Series) -> Option<u64> {
    let at = RET_AT
        + if series.entry == EntryKind::Nop5 {
            5
        } else {
            0
        };
    // SAFETY: the function's code is mapped readable and executable and is
    // longer than `at + 1` bytes (the naked functions above).
    let code = unsafe { std::slice::from_raw_parts(series.function as *const u8, at + 1) };
    (EntryKind::of(code) == series.entry && code[at] == 0xc3).then_some(at as u64)
}

/// The calibration helper's work (`ferret __ferret-calibrate CALLS`): call
/// each target `calls` times, in order. Returns the exit code.
pub fn run_child(args: &[OsString]) -> i32 {
    let calls: u32 = args
        .first()
        .and_then(|a| a.to_str())
        .and_then(|a| a.parse().ok())
        .unwrap_or(DEFAULT_CALLS);
    for series in series() {
        let function = std::hint::black_box(series.function);
        for _ in 0..calls {
            function();
        }
    }
    0
}

/// Measures the probes' cost with `calls` traced calls per series.
pub fn calibrate(calls: u32) -> Result<Calibration, CalibrationError> {
    let own = |e: &dyn std::fmt::Display| CalibrationError::OwnExecutable(e.to_string());
    let exe = std::fs::read_link("/proc/self/exe").map_err(|e| own(&e))?;
    let maps = std::fs::read_to_string("/proc/self/maps").map_err(|e| own(&e))?;
    let series = series();
    let points = series
        .iter()
        .map(|s| probe_point(&maps, &exe, s))
        .collect::<Result<Vec<_>, String>>()
        .map_err(|e| own(&e))?;
    let untraced_ns = untraced_turn_ns(series[0].function);

    let args: Vec<OsString> = vec![
        exe.clone().into(),
        CHILD_ARG.into(),
        calls.to_string().into(),
    ];
    let (events, lost) =
        trace_helper(&exe, &args, &points, calls).map_err(CalibrationError::Helper)?;
    let expected = calls as usize * 15;
    if events.len() < expected / 2 {
        return Err(CalibrationError::TooFewEvents {
            seen: events.len(),
            expected,
            lost,
        });
    }
    analyze(&events, untraced_ns, calls).ok_or(CalibrationError::TooFewEvents {
        seen: events.len(),
        expected,
        lost,
    })
}

/// Where series `s`'s probes go in ferret's own file.
fn probe_point(maps: &str, exe: &Path, s: &Series) -> Result<ProbePoint, String> {
    let avma = s.function as usize as u64;
    let entry = parse_maps(maps)
        .into_iter()
        .find_map(|m| {
            m.path
                .as_deref()
                .is_some_and(|p| p == exe)
                .then(|| m.file_offset_of(avma))
                .flatten()
        })
        .ok_or_else(|| format!("{} is not mapped from {}", avma, exe.display()))?;
    let ret = ret_offset(s).ok_or("the calibration code is not as written")?;
    let exits = match s.exit {
        Exit::None => ExitProbes::Instructions(Vec::new()),
        Exit::Instruction => ExitProbes::Instructions(vec![entry + ret]),
        Exit::Uretprobe => ExitProbes::Uretprobe,
    };
    Ok(ProbePoint {
        path: Arc::from(exe),
        entry,
        exits,
        goid_offset: 0,
        go_recovery: false,
        go_sched: 0,
        go_waitreason_offset: 0,
    })
}

/// One turn of the helper's loop untraced, in ns: the time a call takes
/// when nothing is probed (measured here; ferret's own process is never
/// traced).
fn untraced_turn_ns(function: extern "C" fn()) -> f64 {
    const TURNS: u32 = 100_000;
    let function = std::hint::black_box(function);
    let start = Instant::now();
    for _ in 0..TURNS {
        function();
    }
    start.elapsed().as_secs_f64() * 1e9 / f64::from(TURNS)
}

/// Timestamps of one event: (function id, entry?, ts).
type Event = (u32, bool, u64);

/// Launches the helper held at its gate, attaches `points` to it, lets it
/// run to its end, and returns its events in order, and the count lost.
fn trace_helper(
    exe: &Path,
    args: &[OsString],
    points: &[ProbePoint],
    calls: u32,
) -> anyhow::Result<(Vec<Event>, u64)> {
    // Room for every event: 10 records of 128 bytes (a 112-byte event and
    // the ring's header, rounded up) per call of a series.
    let ring = (u64::from(calls) * 10 * 128 * 2)
        .next_power_of_two()
        .clamp(1 << 16, 1 << 26) as u32;
    let mut engine = Engine::load(Some(ring))?;
    engine.configure(false)?;
    // The probes timed here do what a session's do (their counters are
    // not used).
    engine.keep_sched_counters()?;
    let mut child = Launched::spawn(exe, args, None)?;
    let pid = child.pid;
    let attached = (|| -> anyhow::Result<_> {
        engine.add_target(pid)?;
        engine.attach(points, pid)?;
        Ok(engine.take_ring()?)
    })();
    let mut ring = match attached {
        Ok(ring) => ring,
        Err(e) => {
            child.abandon();
            return Err(e);
        }
    };
    child.release()?;
    let mut decoder = Decoder::new();
    let mut events = Vec::with_capacity(calls as usize * 10);
    let mut take = |ring: &mut crate::probe::EventRing| {
        ring.drain(|record| {
            if let Some(e) = decoder.decode_bytes_ref(record) {
                match e.kind {
                    RawKind::Entry => events.push((e.function, true, e.ts_ns)),
                    RawKind::Exit => events.push((e.function, false, e.ts_ns)),
                    _ => {}
                }
            }
        });
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        take(&mut ring);
        if target::try_wait(pid)?.is_some() {
            break;
        }
        if Instant::now() > deadline {
            target::signal(pid, libc::SIGKILL);
            let _ = target::wait(pid);
            anyhow::bail!("the calibration helper did not finish in 10 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    take(&mut ring);
    let lost = engine.lost().unwrap_or(0);
    engine.detach();
    Ok((events, lost))
}

/// The figures from the helper's events (pure): per series the median gap
/// between consecutive entries and the median duration, the first tenth of
/// each series left out as warm-up.
fn analyze(events: &[Event], untraced_ns: f64, calls: u32) -> Option<Calibration> {
    let skip = (calls / 10) as usize;
    let mut gap = [0.0f64; SERIES];
    let mut bias = [0.0f64; SERIES];
    let mut spread = 0.0;
    for (id, (gap, bias)) in gap.iter_mut().zip(&mut bias).enumerate() {
        let id = id as u32;
        let mut entries: Vec<u64> = Vec::new();
        let mut durations: Vec<f64> = Vec::new();
        let mut open: Option<u64> = None;
        for &(_, is_entry, ts) in events.iter().filter(|e| e.0 == id) {
            if is_entry {
                entries.push(ts);
                open = Some(ts);
            } else if let Some(start) = open.take() {
                durations.push(ts.saturating_sub(start) as f64);
            }
        }
        let mut gaps: Vec<f64> = entries
            .windows(2)
            .skip(skip)
            .map(|w| w[1].saturating_sub(w[0]) as f64)
            .collect();
        *gap = median(&mut gaps)?;
        if id == 3 {
            let (q1, q3) = (quantile(&mut gaps, 0.25)?, quantile(&mut gaps, 0.75)?);
            spread = (q3 - q1) / *gap;
        }
        let skip = skip.min(durations.len());
        *bias = median(&mut durations[skip..]).unwrap_or(0.0);
    }
    // The functions themselves take about one untraced turn.
    let inside = untraced_ns;
    let positive = |v: f64| v.max(0.0);
    let kinds = ENTRY_KINDS.len();
    // An exit costs the same whatever the entry: the mean over the kinds.
    let exit = |offset: usize| {
        positive(
            (0..kinds)
                .map(|k| gap[3 * k + offset] - gap[3 * k])
                .sum::<f64>()
                / kinds as f64,
        )
    };
    let entry_ns: [f64; ENTRY_KINDS.len()] =
        std::array::from_fn(|k| positive(gap[3 * k] - untraced_ns));
    // Every exit is at least one more trap into the kernel and one more run
    // of the BPF program, as the cheapest entry is: a difference of two
    // medians on a busy machine can come out near zero (0.0 µs was seen
    // for uretprobes with other builds running), which would let the
    // budget and the correction count exits as free.
    let floor = entry_ns.iter().copied().fold(f64::INFINITY, f64::min);
    Some(Calibration {
        entry_ns,
        exit_insn_ns: exit(1).max(floor),
        exit_uret_ns: exit(2).max(floor),
        bias_ns: std::array::from_fn(|k| {
            [
                positive(bias[3 * k + 1] - inside),
                positive(bias[3 * k + 2] - inside),
            ]
        }),
        calls,
        spread,
    })
}

/// The calls per series asked for by `FERRET_CALIBRATION_CALLS`, or the
/// default.
pub fn calls_from_env() -> u32 {
    std::env::var("FERRET_CALIBRATION_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CALLS)
}

/// Measures again every [`RECALIBRATE_EVERY`] on a thread of its own, so a
/// long session follows the machine's drift; the session takes each new
/// figure with [`Self::latest`]. Stops when dropped.
pub struct Recalibrator {
    results: mpsc::Receiver<Calibration>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Recalibrator {
    /// Starts measuring every `every` with `calls` calls per series.
    pub fn start(every: Duration, calls: u32) -> Self {
        let (results_tx, results) = mpsc::channel();
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("ferret-calibrate".to_owned())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    if let Ok(calibration) = calibrate(calls)
                        && results_tx.send(calibration).is_err()
                    {
                        break;
                    }
                }
            })
            .ok();
        Self {
            results,
            stop: Some(stop),
            thread,
        }
    }

    /// The newest figures measured since the last call, if any.
    pub fn latest(&self) -> Option<Calibration> {
        self.results.try_iter().last()
    }
}

impl Drop for Recalibrator {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Where ferret's own executable is, for messages.
pub fn own_executable() -> Option<PathBuf> {
    std::fs::read_link("/proc/self/exe").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic helper run: per series, `calls` calls `gap` ns apart,
    /// each `duration` ns long (exit events only where the series has them).
    fn run(gaps: [u64; SERIES], durations: [u64; SERIES], calls: u32) -> Vec<Event> {
        let mut events = Vec::new();
        let mut ts = 1_000_000;
        for id in 0..SERIES as u32 {
            for i in 0..calls {
                // Every tenth gap is disturbed, as a preemption would.
                let noise = if i % 10 == 3 { 50_000 } else { 0 };
                events.push((id, true, ts));
                if durations[id as usize] > 0 {
                    events.push((id, false, ts + durations[id as usize]));
                }
                ts += gaps[id as usize] + noise;
            }
        }
        events
    }

    #[test]
    #[expect(clippy::float_cmp, reason = "the synthetic figures are whole numbers")]
    fn the_figures_come_from_the_median_gaps_and_durations() {
        let events = run(
            [
                1_002, 12_002, 5_002, // emulated entry
                10_002, 21_002, 14_002, // single-stepped entry
                502, 11_502, 4_502, // nop5 entry
            ],
            [0, 9_002, 3_002, 0, 19_002, 12_002, 0, 5_002, 1_502],
            500,
        );
        let c = analyze(&events, 2.0, 500).unwrap();
        assert_eq!(c.entry_ns, [1_000.0, 10_000.0, 500.0]);
        assert_eq!(c.exit_insn_ns, 11_000.0);
        assert_eq!(c.exit_uret_ns, 4_000.0);
        assert_eq!(
            c.bias_ns,
            [[9_000.0, 3_000.0], [19_000.0, 12_000.0], [5_000.0, 1_500.0]]
        );
        assert_eq!(c.calls, 500);
        assert!(c.spread < 0.01, "{}", c.spread);
    }

    #[test]
    #[expect(clippy::float_cmp, reason = "the synthetic figures are whole numbers")]
    fn an_exit_that_measures_free_costs_at_least_the_cheapest_entry() {
        // The uretprobe series as fast as the entry-only one: noise made
        // the difference vanish.
        let events = run(
            [
                1_002, 12_002, 1_002, // emulated entry
                10_002, 21_002, 10_002, // single-stepped entry
                502, 11_502, 502, // nop5 entry
            ],
            [0, 9_002, 3_002, 0, 19_002, 12_002, 0, 5_002, 1_502],
            500,
        );
        let c = analyze(&events, 2.0, 500).unwrap();
        assert_eq!(c.exit_uret_ns, 500.0, "the nop entry's cost");
        assert_eq!(c.exit_insn_ns, 11_000.0, "a real figure is kept");
    }

    #[test]
    fn a_series_without_events_is_no_calibration() {
        let mut events = run([10; SERIES], [0, 5, 5, 0, 5, 5, 0, 5, 5], 100);
        events.retain(|e| e.0 != 4);
        assert!(analyze(&events, 1.0, 100).is_none());
    }

    #[test]
    fn the_targets_are_the_code_the_offsets_assume() {
        for s in series() {
            assert!(ret_offset(&s).is_some(), "{:?}", s.function as *const u8);
        }
        // The helper runs them without being traced.
        assert_eq!(run_child(&["3".into()]), 0);
    }
}
