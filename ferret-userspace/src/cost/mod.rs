//! What ferret costs the program it traces, known rather than guessed.
//!
//! A traced call pays for its probes: an entry trap, and an exit trap (a
//! probe on a return instruction) or a uretprobe's trampoline. What a trap
//! costs depends on the instruction under it: the kernel emulates a few
//! (`push reg`, branches) in one trap and single-steps the rest out of
//! line, a second trap (on this project's VMs ~1 µs against ~10 µs); it
//! turns a probe on a 5-byte nop (`-mfentry -mnop-mcount` code) into a call. Part of that time falls between a call's own two timestamps
//! (its *bias*), all of it falls inside every enclosing span.
//!
//! [`calibrate`] measures those figures on the machine as it is, at the
//! start of every session: a short-lived copy of ferret calls nine tiny
//! functions (three entry kinds × no exit probe, return-instruction exit,
//! uretprobe) traced through the same BPF program and link type, and the
//! medians of the gaps between consecutive entries and of the measured
//! durations give a [`Calibration`]. [`Calibration::costs`] turns it into
//! one [`FunctionCost`] per probed function, which the reconstructor uses
//! for each span's `overhead_ns` and the overhead guard for its budget.

pub mod calibrate;

use crate::{
    probe::{ExitProbes, ProbePoint},
    trace::FunctionCost,
};

/// How a function's entry probe fires: what the kernel does with the
/// instruction under the breakpoint decides what the probe costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// One trap; the kernel emulates the instruction (`push reg`, `call`,
    /// `jmp`, `jcc`).
    Emulated,
    /// Two traps: the kernel single-steps the instruction out of line
    /// (anything it cannot emulate, `endbr64` and `sub rsp` among them).
    Stepped,
    /// A 5-byte nop, which the kernel turns into a call (no trap).
    Nop5,
}

/// Entry kinds in the order of [`Calibration::entry_ns`].
pub const ENTRY_KINDS: [EntryKind; 3] = [EntryKind::Emulated, EntryKind::Stepped, EntryKind::Nop5];

impl EntryKind {
    /// The kind of an entry probe placed on `code` (the bytes at the probe),
    /// as x86-64 uprobes treat the instruction (arch/x86/kernel/uprobes.c:
    /// `push_setup_xol_ops`, `branch_setup_xol_ops`; the nop5 optimization
    /// of Linux 6.18).
    pub fn of(code: &[u8]) -> Self {
        match code {
            [0x0f, 0x1f, 0x44, 0x00, 0x00, ..] => Self::Nop5,
            // push r64 (with or without REX.B); call rel32, jmp rel32/rel8,
            // jcc rel8/rel32.
            [0x50..=0x57 | 0xe8 | 0xe9 | 0xeb | 0x70..=0x7f, ..]
            | [0x41, 0x50..=0x57, ..]
            | [0x0f, 0x80..=0x8f, ..] => Self::Emulated,
            _ => Self::Stepped,
        }
    }

    const fn index(self) -> usize {
        match self {
            Self::Emulated => 0,
            Self::Stepped => 1,
            Self::Nop5 => 2,
        }
    }
}

/// How a function's exits are observed, as far as cost goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// No exit probe (a function that never returns).
    None,
    /// Probes on the return instructions: a second trap.
    Instruction,
    /// A uretprobe: the return goes through the kernel's trampoline.
    Uretprobe,
}

impl ExitKind {
    /// The kind of `exits`.
    pub fn of(exits: &ExitProbes) -> Self {
        match exits {
            ExitProbes::Instructions(offsets) if offsets.is_empty() => Self::None,
            ExitProbes::Instructions(_) => Self::Instruction,
            ExitProbes::Uretprobe => Self::Uretprobe,
        }
    }
}

/// The measured cost of ferret's probes on this machine, in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Calibration {
    /// An entry probe, by [`EntryKind`] ([`ENTRY_KINDS`] order).
    pub entry_ns: [f64; 3],
    /// A return-instruction exit probe.
    pub exit_insn_ns: f64,
    /// A uretprobe.
    pub exit_uret_ns: f64,
    /// The part inside a call's own timestamps: by entry kind and exit kind
    /// (instruction, uretprobe).
    pub bias_ns: [[f64; 2]; 3],
    /// Traced calls per series the figures come from.
    pub calls: u32,
    /// The spread of the entry-trap series: its interquartile range over its
    /// median (0.1 = the middle half within ±5 %).
    pub spread: f64,
}

impl Calibration {
    /// No correction at all (calibration off or failed).
    pub const NONE: Self = Self {
        entry_ns: [0.0; 3],
        exit_insn_ns: 0.0,
        exit_uret_ns: 0.0,
        bias_ns: [[0.0; 2]; 3],
        calls: 0,
        spread: 0.0,
    };

    /// What one call of a function probed this way costs.
    pub fn cost(&self, entry: EntryKind, exit: ExitKind) -> FunctionCost {
        let e = entry.index();
        let entry_ns = self.entry_ns[e];
        let (exit_ns, bias_ns) = match exit {
            ExitKind::None => (0.0, 0.0),
            ExitKind::Instruction => (self.exit_insn_ns, self.bias_ns[e][0]),
            ExitKind::Uretprobe => (self.exit_uret_ns, self.bias_ns[e][1]),
        };
        let ns = |v: f64| v.max(0.0).round() as u64;
        FunctionCost {
            hit_ns: ns(entry_ns + exit_ns),
            bias_ns: ns(bias_ns),
            entry_ns: ns(entry_ns),
        }
    }

    /// One cost per probe point, by function id; `entry_kinds[i]` is how
    /// point `i`'s entry probe fires.
    pub fn costs(&self, points: &[ProbePoint], entry_kinds: &[EntryKind]) -> Vec<FunctionCost> {
        points
            .iter()
            .zip(entry_kinds)
            .map(|(point, &entry)| self.cost(entry, ExitKind::of(&point.exits)))
            .collect()
    }

    /// A traced call whose entry is single-stepped and whose exit is a
    /// return-instruction probe, the dearest common case, in ns: what
    /// headers quote.
    pub fn typical_call_ns(&self) -> f64 {
        self.entry_ns[1] + self.exit_insn_ns
    }

    /// Whether these figures correct anything.
    pub fn is_none(&self) -> bool {
        self.calls == 0
    }

    /// The figures as JSON, for the recording's metadata.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "entry_emulated_ns": self.entry_ns[0].round(),
            "entry_stepped_ns": self.entry_ns[1].round(),
            "entry_nop5_ns": self.entry_ns[2].round(),
            "exit_insn_ns": self.exit_insn_ns.round(),
            "exit_uretprobe_ns": self.exit_uret_ns.round(),
            "bias_emulated_insn_ns": self.bias_ns[0][0].round(),
            "bias_emulated_uretprobe_ns": self.bias_ns[0][1].round(),
            "bias_stepped_insn_ns": self.bias_ns[1][0].round(),
            "bias_stepped_uretprobe_ns": self.bias_ns[1][1].round(),
            "bias_nop5_insn_ns": self.bias_ns[2][0].round(),
            "bias_nop5_uretprobe_ns": self.bias_ns[2][1].round(),
            "calls_per_series": self.calls,
            "spread": (self.spread * 1000.0).round() / 1000.0,
        })
        .to_string()
    }

    /// The figures a session was corrected with (the `end` figures if it
    /// measured again, else the `start` ones), from its
    /// `ferret.calibration` metadata.
    pub fn from_metadata(json: &str) -> Option<Self> {
        let value: serde_json::Value = serde_json::from_str(json).ok()?;
        let figures = value.get("end").unwrap_or(value.get("start")?);
        let ns = |key: &str| figures.get(key).and_then(serde_json::Value::as_f64);
        Some(Self {
            entry_ns: [
                ns("entry_emulated_ns")?,
                ns("entry_stepped_ns")?,
                ns("entry_nop5_ns")?,
            ],
            exit_insn_ns: ns("exit_insn_ns")?,
            exit_uret_ns: ns("exit_uretprobe_ns")?,
            bias_ns: [
                [
                    ns("bias_emulated_insn_ns")?,
                    ns("bias_emulated_uretprobe_ns")?,
                ],
                [
                    ns("bias_stepped_insn_ns")?,
                    ns("bias_stepped_uretprobe_ns")?,
                ],
                [ns("bias_nop5_insn_ns")?, ns("bias_nop5_uretprobe_ns")?],
            ],
            calls: figures
                .get("calls_per_series")
                .and_then(serde_json::Value::as_u64)
                .and_then(|c| u32::try_from(c).ok())?,
            spread: ns("spread").unwrap_or(0.0),
        })
    }

    /// One line for people: `entry 10.2 µs, return-instruction exit 11.0
    /// µs, uretprobe 4.1 µs per traced call`.
    pub fn describe(&self) -> String {
        if self.is_none() {
            return "not calibrated: times are as measured".to_owned();
        }
        let us = |ns: f64| ns / 1e3;
        format!(
            "up to {:.1} µs per traced call (entry {:.1} µs emulated, {:.1} µs \
             single-stepped, {:.1} µs on a nop; exit {:.1} µs by return-instruction probe, \
             {:.1} µs by uretprobe)",
            us(self.typical_call_ns()),
            us(self.entry_ns[0]),
            us(self.entry_ns[1]),
            us(self.entry_ns[2]),
            us(self.exit_insn_ns),
            us(self.exit_uret_ns),
        )
    }
}

/// How each point's entry probe fires, read from its file (the bytes at the
/// probe); a file that cannot be read counts as single-stepped, the dearest.
pub fn entry_kinds(points: &[ProbePoint]) -> Vec<EntryKind> {
    use std::os::unix::fs::FileExt as _;
    let mut files: Vec<(&std::path::Path, Option<std::fs::File>)> = Vec::new();
    points
        .iter()
        .map(|point| {
            let index = files
                .iter()
                .position(|(path, _)| *path == &*point.path)
                .unwrap_or_else(|| {
                    files.push((&point.path, std::fs::File::open(&point.path).ok()));
                    files.len() - 1
                });
            let mut code = [0u8; 5];
            match &files[index].1 {
                Some(file) if file.read_exact_at(&mut code, point.entry).is_ok() => {
                    EntryKind::of(&code)
                }
                _ => EntryKind::Stepped,
            }
        })
        .collect()
}

/// The median of `values` (sorted in place); `None` when empty.
fn median(values: &mut [f64]) -> Option<f64> {
    quantile(values, 0.5)
}

/// The `q` quantile of `values` (sorted in place), by linear interpolation.
fn quantile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let at = q * (values.len() - 1) as f64;
    let (low, high) = (at.floor() as usize, at.ceil() as usize);
    Some(values[low] + (values[high] - values[low]) * (at - low as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calibration() -> Calibration {
        Calibration {
            entry_ns: [1_000.0, 10_000.0, 2_000.0],
            exit_insn_ns: 11_000.0,
            exit_uret_ns: 4_000.0,
            bias_ns: [[8_000.0, 2_000.0], [9_000.0, 3_000.0], [5_000.0, 1_500.0]],
            calls: 1000,
            spread: 0.05,
        }
    }

    #[test]
    fn a_call_costs_its_entry_and_exit_and_its_own_span_the_bias() {
        let c = calibration();
        assert_eq!(
            c.cost(EntryKind::Stepped, ExitKind::Instruction),
            FunctionCost {
                hit_ns: 21_000,
                bias_ns: 9_000,
                entry_ns: 10_000
            }
        );
        assert_eq!(
            c.cost(EntryKind::Nop5, ExitKind::Uretprobe),
            FunctionCost {
                hit_ns: 6_000,
                bias_ns: 1_500,
                entry_ns: 2_000
            }
        );
        // A function that never returns pays its entry only.
        assert_eq!(
            c.cost(EntryKind::Stepped, ExitKind::None),
            FunctionCost {
                hit_ns: 10_000,
                bias_ns: 0,
                entry_ns: 10_000
            }
        );
        assert_eq!(
            Calibration::NONE.cost(EntryKind::Emulated, ExitKind::Uretprobe),
            FunctionCost::default()
        );
    }

    #[test]
    fn entry_kinds_and_exit_kinds_are_read_from_the_probes() {
        assert_eq!(
            EntryKind::of(&[0x0f, 0x1f, 0x44, 0, 0, 0x55]),
            EntryKind::Nop5
        );
        assert_eq!(EntryKind::of(&[0x55, 0x48]), EntryKind::Emulated);
        assert_eq!(
            EntryKind::of(&[0x41, 0x57]),
            EntryKind::Emulated,
            "push r15"
        );
        // endbr64, sub rsp: single-stepped.
        assert_eq!(EntryKind::of(&[0xf3, 0x0f, 0x1e, 0xfa]), EntryKind::Stepped);
        assert_eq!(EntryKind::of(&[0x48, 0x83, 0xec, 0x08]), EntryKind::Stepped);
        assert_eq!(
            ExitKind::of(&ExitProbes::Instructions(vec![])),
            ExitKind::None
        );
        assert_eq!(
            ExitKind::of(&ExitProbes::Instructions(vec![7])),
            ExitKind::Instruction
        );
        assert_eq!(ExitKind::of(&ExitProbes::Uretprobe), ExitKind::Uretprobe);
    }

    #[test]
    fn quantiles_interpolate_and_ignore_outliers_at_the_median() {
        let mut v = vec![5.0, 1.0, 3.0, 1000.0, 2.0, 4.0];
        assert_eq!(median(&mut v), Some(3.5));
        assert_eq!(quantile(&mut v, 0.0), Some(1.0));
        assert_eq!(quantile(&mut v, 1.0), Some(1000.0));
        assert_eq!(median(&mut []), None);
    }

    #[test]
    fn the_figures_go_into_metadata_and_a_line_for_people() {
        let c = calibration();
        let json: serde_json::Value = serde_json::from_str(&c.to_json()).unwrap();
        assert_eq!(json["exit_insn_ns"], 11_000.0);
        assert_eq!(json["calls_per_series"], 1000);
        assert!(
            c.describe().starts_with("up to 21.0 µs per traced call"),
            "{}",
            c.describe()
        );
        assert!(Calibration::NONE.describe().contains("not calibrated"));
    }
}
