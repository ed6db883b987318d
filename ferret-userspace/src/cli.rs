//! Command-line parsing. The clap types stop here: [`Cli::into_invocation`]
//! turns them into plain config structs for the subsystems.

use std::{ffi::OsString, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::symbols::Pattern;

/// ferret: see which functions every thread of a process is in, live, and
/// record every call to Parquet. No change to the program needed.
#[derive(Debug, Parser)]
#[command(name = "ferret", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Live dashboard: what every thread is inside right now, recent calls, metrics.
    Watch(WatchArgs),
    /// Record function calls of a process to a Parquet event log.
    Record(RecordArgs),
    /// Per-function statistics and the slowest call trees of a recording.
    Analyze(AnalyzeArgs),
    /// Convert a recording to speedscope, Chrome trace, folded stacks or an SVG flame graph.
    Export(ExportArgs),
    /// List the functions a binary or process offers, with address and size.
    Symbols(SymbolsArgs),
}

#[derive(Debug, Args)]
struct TargetArgs {
    /// Attach to this running process (all its threads, including later ones).
    #[arg(short, long, value_name = "PID", conflicts_with = "command")]
    pid: Option<u32>,
    /// Launch this command with the probes in place before its first instruction.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

#[derive(Debug, Args)]
struct ProbeArgs {
    /// Functions to trace: a glob over demangled names (`*` crosses `::`);
    /// `LIB:GLOB` picks a shared library by file name (e.g. `libm.so.6:cos`).
    /// Without any, ferret samples where every thread spends its CPU time
    /// (`watch` then traces what you pick in its Hot pane).
    #[arg(short, long = "symbol", value_name = "GLOB")]
    symbols: Vec<Pattern>,
    /// Leave out functions matching this glob.
    #[arg(short = 'x', long = "exclude", value_name = "GLOB")]
    excludes: Vec<Pattern>,
    /// How function exits are observed: probes on the return instructions
    /// (safe when exceptions or panics unwind), uretprobes (cheaper, but a
    /// C++ exception unwinding through one aborts the target), or auto.
    #[arg(long, value_enum, default_value_t = ExitMode::Auto)]
    exit_probes: ExitMode,
    /// Trace the target's child processes too (forks). Probes then fire in
    /// every process using the probed files and are filtered in the kernel:
    /// other processes sharing a probed library pay the trap.
    #[arg(long)]
    follow_forks: bool,
    /// Detach a function that is called more often than this per second, to
    /// protect the target (0: never).
    #[arg(long, value_name = "CALLS", default_value_t = 10_000)]
    max_rate: u64,
    /// Keep ferret's probes under this share of the target's own CPU time
    /// (counted as at least a tenth of one CPU): when they cost more for
    /// half a second, the costliest functions are detached (0: never). The
    /// estimate uses the probe cost measured at start.
    #[arg(long, value_name = "PERCENT", default_value_t = 5.0, value_parser = parse_percent)]
    max_overhead: f64,
    /// Sample every thread of the target on CPU this many times per second
    /// of its CPU time, for the Hot pane and SAMPLE rows (0: no sampling).
    /// Default: 99 for `watch`, and for `record` without -s; `record` with
    /// -s samples only when asked.
    #[arg(long, value_name = "HZ", value_parser = clap::value_parser!(u64).range(0..=10_000))]
    sample_hz: Option<u64>,
    #[command(flatten)]
    debug: DebugArgs,
}

/// The sampling rate when `--sample-hz` is not given.
pub const DEFAULT_SAMPLE_HZ: u64 = 99;

#[derive(Debug, Args)]
struct DebugArgs {
    /// Also look for separate debug files (`.build-id/xx/….debug`, debug
    /// links) here, before `FERRET_DEBUG_DIRS` or /usr/lib/debug. Repeatable.
    #[arg(long = "debug-dir", value_name = "DIR")]
    debug_dirs: Vec<PathBuf>,
}

/// A percentage: a finite number ≥ 0.
fn parse_percent(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))?;
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(format!("`{text}` is not a percentage ≥ 0"))
    }
}

/// How function exits are observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExitMode {
    /// Return instructions where the module may unwind, uretprobes elsewhere.
    Auto,
    /// Probes on return and tail-jump instructions.
    Ret,
    /// uretprobes.
    Uretprobe,
}

#[derive(Debug, Args)]
struct RecordArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    probes: ProbeArgs,
    /// The Parquet file to write.
    #[arg(short, long, value_name = "FILE.parquet")]
    output: PathBuf,
    /// Stop after this long (`500ms`, `2s`, `1m`; a bare number is seconds).
    #[arg(short, long, value_name = "DURATION", value_parser = parse_duration)]
    duration: Option<Duration>,
    /// How often process metrics are sampled.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1s")]
    interval: Duration,
    /// A thread quiet this long inside a traced call is stalled: where it is
    /// stuck (state, system call, lock holder, stack with file:line) is
    /// written as STALL rows and shown on stderr. 0 turns the watchdog off.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5s")]
    stall: Duration,
    #[command(flatten)]
    otlp: OtlpArgs,
}

/// OpenTelemetry export, shared by `record` and `watch`.
#[derive(Debug, Args)]
#[command(next_help_heading = "OpenTelemetry export")]
struct OtlpArgs {
    /// Also send the spans (and process metrics) as OTLP/HTTP protobuf to
    /// this collector: URL/v1/traces and URL/v1/metrics, e.g.
    /// http://localhost:4318. OTEL_EXPORTER_OTLP_ENDPOINT,
    /// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT and OTEL_EXPORTER_OTLP_HEADERS
    /// are honoured too.
    #[arg(long = "otlp-endpoint", value_name = "URL")]
    endpoint: Option<String>,
    /// Send only spans at least this long, and the calls they ran under.
    #[arg(
        long = "otlp-min-duration",
        value_name = "DURATION",
        value_parser = parse_duration,
        default_value = "0"
    )]
    min_duration: Duration,
    /// Send at most this many spans per second (the calls a sent span ran
    /// under come along above it); the excess is counted. 0: no cap.
    #[arg(long = "otlp-max-spans", value_name = "SPANS", default_value_t = 1000)]
    max_spans: u64,
}

impl From<OtlpArgs> for OtlpOptions {
    fn from(args: OtlpArgs) -> Self {
        Self {
            endpoint: args.endpoint,
            min_duration: args.min_duration,
            max_spans_per_s: args.max_spans,
        }
    }
}

#[derive(Debug, Args)]
struct WatchArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    probes: ProbeArgs,
    /// Also record everything to this Parquet file, as `record` does.
    #[arg(short, long, value_name = "FILE.parquet")]
    output: Option<PathBuf>,
    /// A thread quiet this long inside a traced call is stalled: it is
    /// highlighted in the Live Stack and listed in the Stalls pane with where
    /// it is stuck (state, system call, lock holder, stack with file:line);
    /// with -o, also written as STALL rows. 0 turns the watchdog off.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5s")]
    stall: Duration,
    /// How often process metrics are sampled.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1s")]
    interval: Duration,
    #[command(flatten)]
    otlp: OtlpArgs,
}

#[derive(Debug, Args)]
struct AnalyzeArgs {
    /// A recording written by `ferret record` or `ferret watch -o`.
    #[arg(value_name = "FILE.parquet")]
    file: PathBuf,
    /// How many functions (or trees, with --tree) to show.
    #[arg(long, value_name = "N", default_value_t = 20)]
    top: usize,
    /// Order of the function table.
    #[arg(long, value_enum, default_value_t = SortKey::Total)]
    sort: SortKey,
    /// Show the N slowest root calls as trees of their children.
    #[arg(long)]
    tree: bool,
    /// Only this thread (in a recording of a Go program: this goroutine).
    #[arg(long, value_name = "TID")]
    thread: Option<u32>,
    /// Only functions matching this glob.
    #[arg(long, value_name = "GLOB")]
    function: Option<crate::symbols::Glob>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = AnalyzeFormat::Table)]
    format: AnalyzeFormat,
    /// Show times as measured, with ferret's own probe cost left in
    /// (by default it is taken out, as measured at the start of the recording).
    #[arg(long)]
    raw: bool,
    /// Show only the CPU samples' profile (SAMPLE rows), not the calls.
    #[arg(long, conflicts_with = "tree")]
    samples: bool,
}

/// Sort key of `ferret analyze`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SortKey {
    /// Number of calls.
    Calls,
    /// Total (inclusive) time.
    Total,
    /// Self (exclusive) time.
    #[value(name = "self")]
    SelfTime,
    /// Mean duration.
    Mean,
    /// 95th percentile.
    P95,
    /// 99th percentile.
    P99,
    /// Longest call.
    Max,
    /// Time on a CPU (of calls whose split is known).
    Cpu,
    /// Time ready but waiting for a CPU.
    Runnable,
    /// Time blocked.
    Blocked,
}

/// Output format of `ferret analyze`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AnalyzeFormat {
    /// Aligned text for a terminal.
    Table,
    /// JSON for scripts.
    Json,
}

#[derive(Debug, Args)]
struct ExportArgs {
    /// A recording written by `ferret record` or `ferret watch -o`.
    #[arg(value_name = "FILE.parquet")]
    file: PathBuf,
    /// Output format.
    #[arg(long, value_enum)]
    format: ExportFormat,
    /// Output file.
    #[arg(short, long, value_name = "OUT")]
    output: PathBuf,
    /// Export times as measured, with ferret's own probe cost left in.
    #[arg(long)]
    raw: bool,
    /// Draw the CPU samples (SAMPLE rows) rather than the calls; the
    /// default when the recording has no calls (speedscope, folded, svg).
    #[arg(long)]
    samples: bool,
}

/// Format of `ferret export`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// speedscope's evented profiles, one per thread.
    Speedscope,
    /// Chrome trace event JSON (Perfetto, chrome://tracing).
    Chrome,
    /// Folded stacks weighted by self time in ns (flamegraph.pl, inferno).
    Folded,
    /// An SVG flame graph.
    Svg,
    /// OTLP JSON lines, as the OpenTelemetry Collector's file exporter
    /// writes them (its `otlpjsonfile` receiver reads them back).
    Otlp,
}

#[derive(Debug, Args)]
struct SymbolsArgs {
    /// Attach to this running process and list its executable's and libraries' functions.
    #[arg(short, long, value_name = "PID")]
    pid: Option<u32>,
    /// An ELF binary or shared library (or a command name found on PATH);
    /// with --pid, the first GLOB.
    #[arg(value_name = "BINARY", required_unless_present = "pid")]
    binary: Option<OsString>,
    /// Only functions matching these globs (`LIB:GLOB` for libraries).
    #[arg(value_name = "GLOB")]
    patterns: Vec<Pattern>,
    #[command(flatten)]
    debug: DebugArgs,
}

/// What to trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A running process.
    Pid(u32),
    /// A command to launch: program and arguments.
    Command(Vec<OsString>),
}

/// Which functions to trace.
#[derive(Clone, Debug)]
pub struct ProbeConfig {
    /// Include patterns.
    pub includes: Vec<Pattern>,
    /// Exclude patterns.
    pub excludes: Vec<Pattern>,
    /// Exit-probe mode.
    pub exit_mode: ExitMode,
    /// Trace forked children too.
    pub follow_forks: bool,
    /// Overhead guard: calls per second per function (0: off).
    pub max_rate: u64,
    /// Overhead guard: the probes' budget, percent of the target's own
    /// time (0: off).
    pub max_overhead: f64,
    /// `--debug-dir`: searched first for separate debug files.
    pub debug_dirs: Vec<PathBuf>,
}

/// OpenTelemetry export as the command line asks; the environment is
/// consulted later ([`crate::otlp::Config::resolve`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OtlpOptions {
    /// `--otlp-endpoint`: the collector's base URL.
    pub endpoint: Option<String>,
    /// `--otlp-min-duration`.
    pub min_duration: Duration,
    /// `--otlp-max-spans`: spans per second at most (0: no cap).
    pub max_spans_per_s: u64,
}

/// `ferret record`.
#[derive(Clone, Debug)]
pub struct RecordConfig {
    /// What to trace.
    pub target: Target,
    /// Which functions.
    pub probes: ProbeConfig,
    /// CPU samples per second per thread (0: none).
    pub sample_hz: u64,
    /// Output file.
    pub output: PathBuf,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Metrics interval.
    pub interval: Duration,
    /// Stall threshold; zero: no watchdog.
    pub stall: Duration,
    /// OpenTelemetry export.
    pub otlp: OtlpOptions,
}

/// `ferret watch`.
#[derive(Clone, Debug)]
pub struct WatchConfig {
    /// What to trace.
    pub target: Target,
    /// Which functions.
    pub probes: ProbeConfig,
    /// CPU samples per second per thread, for the Hot pane (0: none).
    pub sample_hz: u64,
    /// Also record to this file.
    pub output: Option<PathBuf>,
    /// Stall threshold.
    pub stall: Duration,
    /// Metrics interval.
    pub interval: Duration,
    /// OpenTelemetry export.
    pub otlp: OtlpOptions,
}

/// `ferret analyze`.
#[derive(Clone, Debug)]
pub struct AnalyzeConfig {
    /// The recording.
    pub file: PathBuf,
    /// Rows or trees shown.
    pub top: usize,
    /// Table order.
    pub sort: SortKey,
    /// Trees instead of the table.
    pub tree: bool,
    /// Only this thread.
    pub thread: Option<u32>,
    /// Only matching functions.
    pub function: Option<crate::symbols::Glob>,
    /// Output format.
    pub format: AnalyzeFormat,
    /// `--raw`: times as measured.
    pub raw: bool,
    /// Only the CPU samples' profile.
    pub samples: bool,
}

/// `ferret export`.
#[derive(Clone, Debug)]
pub struct ExportConfig {
    /// The recording.
    pub file: PathBuf,
    /// Output format.
    pub format: ExportFormat,
    /// Output file.
    pub output: PathBuf,
    /// `--raw`: times as measured.
    pub raw: bool,
    /// From the CPU samples rather than the calls.
    pub samples: bool,
}

/// `ferret symbols`.
#[derive(Clone, Debug)]
pub struct SymbolsConfig {
    /// A running process, or a binary.
    pub source: SymbolSource,
    /// Filters.
    pub patterns: Vec<Pattern>,
    /// `--debug-dir`: searched first for separate debug files.
    pub debug_dirs: Vec<PathBuf>,
}

/// Where `ferret symbols` reads.
#[derive(Clone, Debug)]
pub enum SymbolSource {
    /// A process's executable and mapped libraries.
    Pid(u32),
    /// A file (or a command on PATH).
    Binary(OsString),
}

/// A parsed command line.
#[derive(Clone, Debug)]
pub enum Invocation {
    /// `ferret watch`.
    Watch(WatchConfig),
    /// `ferret record`.
    Record(RecordConfig),
    /// `ferret analyze`.
    Analyze(AnalyzeConfig),
    /// `ferret export`.
    Export(ExportConfig),
    /// `ferret symbols`.
    Symbols(SymbolsConfig),
}

impl Cli {
    /// Converts the clap types into plain configuration.
    pub fn into_invocation(self) -> Result<Invocation, clap::Error> {
        match self.command {
            Command::Watch(args) => Ok(Invocation::Watch(WatchConfig {
                target: target(args.target)?,
                sample_hz: args.probes.sample_hz.unwrap_or(DEFAULT_SAMPLE_HZ),
                probes: ProbeConfig {
                    includes: args.probes.symbols,
                    excludes: args.probes.excludes,
                    exit_mode: args.probes.exit_probes,
                    follow_forks: args.probes.follow_forks,
                    max_rate: args.probes.max_rate,
                    max_overhead: args.probes.max_overhead,
                    debug_dirs: args.probes.debug.debug_dirs,
                },
                output: args.output,
                stall: args.stall,
                interval: args.interval,
                otlp: args.otlp.into(),
            })),
            Command::Analyze(args) => Ok(Invocation::Analyze(AnalyzeConfig {
                file: args.file,
                top: args.top,
                sort: args.sort,
                tree: args.tree,
                thread: args.thread,
                function: args.function,
                format: args.format,
                raw: args.raw,
                samples: args.samples,
            })),
            Command::Export(args) => Ok(Invocation::Export(ExportConfig {
                file: args.file,
                format: args.format,
                output: args.output,
                raw: args.raw,
                samples: args.samples,
            })),
            Command::Record(args)
                if args.probes.symbols.is_empty() && args.probes.sample_hz == Some(0) =>
            {
                Err(clap::Error::raw(
                    clap::error::ErrorKind::ArgumentConflict,
                    "nothing to record with no -s GLOB and --sample-hz 0: name functions to \
                     trace with -s, or leave --sample-hz out to sample\n",
                ))
            }
            Command::Record(args) => Ok(Invocation::Record(RecordConfig {
                target: target(args.target)?,
                sample_hz: args
                    .probes
                    .sample_hz
                    .unwrap_or(if args.probes.symbols.is_empty() {
                        DEFAULT_SAMPLE_HZ
                    } else {
                        0
                    }),
                probes: ProbeConfig {
                    includes: args.probes.symbols,
                    excludes: args.probes.excludes,
                    exit_mode: args.probes.exit_probes,
                    follow_forks: args.probes.follow_forks,
                    max_rate: args.probes.max_rate,
                    max_overhead: args.probes.max_overhead,
                    debug_dirs: args.probes.debug.debug_dirs,
                },
                output: args.output,
                duration: args.duration,
                interval: args.interval,
                stall: args.stall,
                otlp: args.otlp.into(),
            })),
            Command::Symbols(args) => {
                let mut patterns = args.patterns;
                let source = match (args.pid, args.binary) {
                    // `ferret symbols -p PID GLOB…`: clap fills BINARY first.
                    (Some(pid), first) => {
                        if let Some(first) = first {
                            let text = first.to_string_lossy();
                            let pattern = text.parse::<Pattern>().map_err(|e| {
                                clap::Error::raw(
                                    clap::error::ErrorKind::ValueValidation,
                                    format!("invalid pattern `{text}`: {e}\n"),
                                )
                            })?;
                            patterns.insert(0, pattern);
                        }
                        SymbolSource::Pid(pid)
                    }
                    (None, Some(binary)) => SymbolSource::Binary(binary),
                    (None, None) => unreachable!("clap requires one"),
                };
                Ok(Invocation::Symbols(SymbolsConfig {
                    source,
                    patterns,
                    debug_dirs: args.debug.debug_dirs,
                }))
            }
        }
    }
}

fn target(args: TargetArgs) -> Result<Target, clap::Error> {
    match (args.pid, args.command.is_empty()) {
        (Some(pid), true) => Ok(Target::Pid(pid)),
        (None, false) => Ok(Target::Command(args.command)),
        _ => Err(clap::Error::raw(
            clap::error::ErrorKind::MissingRequiredArgument,
            "a target is required: `-p PID` or `-- COMMAND [ARG...]`\n",
        )),
    }
}

/// Parses `500ms`, `2s`, `1.5s`, `1m`, `1h`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (try 500ms, 2s, 1m)"))?;
    let seconds = match unit.trim() {
        "" | "s" | "sec" => value,
        "ms" => value / 1e3,
        "us" | "µs" => value / 1e6,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit `{other}` (use ms, s, m or h)"
            ));
        }
    };
    if !(0.0..=1e9).contains(&seconds) {
        return Err(format!("`{text}` is out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_parse_with_units_and_bare_seconds() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_mins(1));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("2 parsecs").is_err());
    }

    #[test]
    fn record_watches_for_stalls_after_5s_unless_told() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).and_then(Cli::into_invocation);
        let base = ["ferret", "record", "-p", "1", "-s", "m", "-o", "x"];
        let Ok(Invocation::Record(r)) = parse(&base) else {
            panic!("parses")
        };
        assert_eq!(r.stall, Duration::from_secs(5));
        let Ok(Invocation::Record(r)) = parse(&[&base[..], &["--stall", "250ms"]].concat()) else {
            panic!("parses")
        };
        assert_eq!(r.stall, Duration::from_millis(250));
    }

    #[test]
    fn otlp_flags_on_record_and_watch() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).and_then(Cli::into_invocation);
        let Ok(Invocation::Record(r)) =
            parse(&["ferret", "record", "-p", "1", "-s", "m", "-o", "x"])
        else {
            panic!("parses")
        };
        assert_eq!(
            r.otlp,
            OtlpOptions {
                endpoint: None,
                min_duration: Duration::ZERO,
                max_spans_per_s: 1000
            }
        );
        let Ok(Invocation::Watch(w)) = parse(&[
            "ferret",
            "watch",
            "-p",
            "1",
            "-s",
            "m",
            "--otlp-endpoint",
            "http://localhost:4318",
            "--otlp-min-duration",
            "20ms",
            "--otlp-max-spans",
            "0",
        ]) else {
            panic!("parses")
        };
        assert_eq!(
            w.otlp,
            OtlpOptions {
                endpoint: Some("http://localhost:4318".into()),
                min_duration: Duration::from_millis(20),
                max_spans_per_s: 0
            }
        );
    }

    #[test]
    fn debug_dirs_are_repeatable_on_the_commands_that_resolve_symbols() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).and_then(Cli::into_invocation);
        let Ok(Invocation::Record(r)) = parse(&[
            "ferret",
            "record",
            "-p",
            "1",
            "-s",
            "m",
            "-o",
            "x",
            "--debug-dir",
            "/a",
            "--debug-dir",
            "/b",
        ]) else {
            panic!("parses")
        };
        assert_eq!(
            r.probes.debug_dirs,
            [PathBuf::from("/a"), PathBuf::from("/b")]
        );
        let Ok(Invocation::Watch(w)) = parse(&["ferret", "watch", "-p", "1", "-s", "m"]) else {
            panic!("parses")
        };
        assert!(w.probes.debug_dirs.is_empty());
        let Ok(Invocation::Symbols(s)) = parse(&["ferret", "symbols", "--debug-dir", "/d", "ls"])
        else {
            panic!("parses")
        };
        assert_eq!(s.debug_dirs, [PathBuf::from("/d")]);
    }

    #[test]
    fn symbols_of_a_pid_take_globs() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).and_then(Cli::into_invocation);
        let Ok(Invocation::Symbols(s)) = parse(&["ferret", "symbols", "-p", "7", "work", "nap"])
        else {
            panic!("parses")
        };
        assert!(matches!(s.source, SymbolSource::Pid(7)));
        let globs: Vec<String> = s.patterns.iter().map(ToString::to_string).collect();
        assert_eq!(globs, ["work", "nap"]);
    }

    #[test]
    fn record_takes_a_pid_or_a_command_not_both_nor_neither() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).and_then(Cli::into_invocation);
        let Ok(Invocation::Record(r)) = parse(&[
            "ferret",
            "record",
            "-s",
            "main",
            "-o",
            "x.parquet",
            "--",
            "ls",
            "-l",
        ]) else {
            panic!("command form parses")
        };
        assert_eq!(r.target, Target::Command(vec!["ls".into(), "-l".into()]));
        let Ok(Invocation::Record(r)) = parse(&[
            "ferret",
            "record",
            "-p",
            "12",
            "-s",
            "main",
            "-o",
            "x.parquet",
            "-d",
            "2s",
        ]) else {
            panic!("pid form parses")
        };
        assert_eq!(
            (r.target, r.duration),
            (Target::Pid(12), Some(Duration::from_secs(2)))
        );
        assert!(parse(&["ferret", "record", "-s", "main", "-o", "x.parquet"]).is_err());
        assert!(
            parse(&[
                "ferret", "record", "-p", "1", "-s", "m", "-o", "x", "--", "ls"
            ])
            .is_err()
        );
    }

    #[test]
    fn without_s_record_samples_and_with_s_only_when_asked() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).and_then(Cli::into_invocation);
        let Ok(Invocation::Record(r)) = parse(&["ferret", "record", "-p", "1", "-o", "x"]) else {
            panic!("-s is optional")
        };
        assert!(r.probes.includes.is_empty());
        assert_eq!(r.sample_hz, DEFAULT_SAMPLE_HZ);
        let Ok(Invocation::Record(r)) =
            parse(&["ferret", "record", "-p", "1", "-s", "m", "-o", "x"])
        else {
            panic!("parses")
        };
        assert_eq!(r.sample_hz, 0);
        let Ok(Invocation::Record(r)) = parse(&[
            "ferret",
            "record",
            "-p",
            "1",
            "-s",
            "m",
            "-o",
            "x",
            "--sample-hz",
            "199",
        ]) else {
            panic!("parses")
        };
        assert_eq!(r.sample_hz, 199);
        let Ok(Invocation::Watch(w)) = parse(&["ferret", "watch", "-p", "1", "-s", "m"]) else {
            panic!("parses")
        };
        assert_eq!(
            w.sample_hz, DEFAULT_SAMPLE_HZ,
            "watch always has its Hot pane"
        );
        assert!(parse(&["ferret", "watch", "-p", "1", "--sample-hz", "20000"]).is_err());
        assert!(
            parse(&["ferret", "record", "-p", "1", "-o", "x", "--sample-hz", "0"]).is_err(),
            "nothing to record"
        );
    }
}
