//! The parts of `cargo xtask bench` that need ferret's library; not a user
//! tool. Two subcommands, each printing one JSON object on stdout:
//!
//! - `floor [RECORD OPTIONS] -- COMMAND [ARG...]` runs COMMAND with an empty
//!   BPF program (`ferret_empty`) attached at exactly the probe points
//!   `ferret record` would choose for the same options, through the same
//!   `uprobe_multi` links. That is the floor: what the kernel's uprobe
//!   machinery costs before a program does any work.
//! - `pipeline [--events N] [--out FILE] [--keep] [--stage NAME]...` pushes synthetic ring-buffer
//!   records through ferret's user-side pipeline on one thread (decode,
//!   stack reconstruction, the live aggregates, the Parquet writer) and
//!   times it stage by stage: decode; + reconstruction; + aggregates (what
//!   `watch` does); decode + reconstruction + Parquet (what `record` does);
//!   all four (what `watch -o` does). `--stage` (`decode`, `reconstruct`,
//!   `aggregate`, `record`, `full`) runs only the stages named, say for a
//!   profiler. `--keep` leaves the Parquet file of the last stage behind.
//!
//! - `otlp [--spans N]` times OpenTelemetry export on one thread: the
//!   synthetic stream's span events through the exporter's selection alone
//!   (the part on the tracing thread), then through selection,
//!   OTLP mapping, protobuf encoding and gzip into a null sink, against the
//!   Parquet writer on the same events (the reference, same run); then the
//!   real exporter (its own thread, HTTP) against a null collector on
//!   loopback, by wall time.
//!
//! - `metadata FILE.parquet` prints a recording's footer keys, one `KEY
//!   VALUE` line each (the sampling benchmark reads `ferret.sampling`).
//!
//! Run as `cargo run --release --example bench -- SUBCOMMAND ...`; `floor`
//! needs root.

use std::{
    hint::black_box,
    os::fd::{AsFd as _, OwnedFd},
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use anyhow::{Context as _, Result, bail};
use aya::maps::{Map, MapData};
use clap::Parser as _;
use ferret::{
    cli::{Cli, Invocation},
    live::Aggregates,
    probe::{ExitProbes, decode::Decoder, multi},
    session::plan::{self, ResolvedTarget, Started},
    session::{Consumer, Pipeline, RecordingConsumer, SessionEnd, Stop},
    sink::{Recording, RecordingMeta},
    target,
    trace::{FunctionInfo, Reconstructor, SpanEvent},
};
use ferret_common::{COMM_LEN, EMPTY_PROGRAM, ProbeEvent, cookie, kind};

/// The eBPF object `build.rs` built, the same bytes the `ferret` binary embeds.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ferret-ebpf"));

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("floor") => floor(&args[1..]),
        Some("pipeline") => pipeline(&args[1..]),
        Some("otlp") => otlp_bench(&args[1..]),
        Some("metadata") => metadata(&args[1..]),
        _ => Err(anyhow::anyhow!(
            "usage: bench floor [RECORD OPTIONS] -- COMMAND... | bench pipeline [--events N] [--out FILE] [--keep] [--stage NAME]... | bench otlp [--spans N] | bench metadata FILE"
        )),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

// --- metadata ----------------------------------------------------------------

fn metadata(args: &[String]) -> Result<i32> {
    let [file] = args else {
        bail!("usage: bench metadata FILE.parquet");
    };
    let mut keys: Vec<(String, String)> = ferret::sink::read_metadata(Path::new(file))?
        .into_iter()
        .filter(|(k, _)| k.starts_with("ferret."))
        .collect();
    keys.sort();
    for (key, value) in keys {
        println!("{key} {value}");
    }
    Ok(0)
}

// --- floor -------------------------------------------------------------------

/// Runs the command under the empty program; returns its exit code.
fn floor(args: &[String]) -> Result<i32> {
    // ferret's own command line and planner choose the probe points, so the
    // floor is measured at exactly the instructions ferret would probe.
    let argv = ["ferret", "record", "-o", "/dev/null"]
        .into_iter()
        .map(String::from)
        .chain(args.iter().cloned());
    let cli = Cli::try_parse_from(argv)?;
    let Invocation::Record(config) = cli.into_invocation()? else {
        bail!("not a record command line");
    };
    let resolved = ResolvedTarget::resolve(&config.target)?;
    let plan = plan::plan(&resolved, &config.probes)?;

    raise_memlock_limit();
    // aya creates the maps every program of the object refers to; the empty
    // program is then loaded by hand (aya 0.14 cannot load it for
    // uprobe_multi) and relocated against them, as the engine does.
    let ebpf = aya::EbpfLoader::new()
        .load(EBPF_OBJECT)
        .context("loading the eBPF object")?;
    let maps = ebpf
        .maps()
        .map(|(name, map)| {
            let id = map_data(map)?.info()?.id();
            Ok((name.to_owned(), multi::map_fd_by_id(id)?))
        })
        .collect::<Result<Vec<(String, OwnedFd)>>>()?;
    let program = multi::load_program(EBPF_OBJECT, EMPTY_PROGRAM, &maps)?;

    let mut started = plan::start(&resolved, None)?;
    let pid = started.pid();
    let attach_start = Instant::now();
    let mut links = Vec::new();
    let mut probes = 0;
    for group in group_by_module(&plan.points) {
        let path = &group.path;
        for (offsets, ret) in [
            (group.entries, false),
            (group.instructions, false),
            (group.uretprobes, true),
        ] {
            if offsets.is_empty() {
                continue;
            }
            let cookies = vec![0; offsets.len()];
            probes += offsets.len();
            links.push(
                multi::attach(program.as_fd(), path, &offsets, &cookies, pid, ret)
                    .with_context(|| format!("attaching to {}", path.display()))?,
            );
        }
    }
    let attach_ms = attach_start.elapsed().as_secs_f64() * 1e3;
    if let Started::Launched(child) = &mut started {
        child.release()?;
    }
    let status = target::wait(pid)?;
    let detach_start = Instant::now();
    drop(links);
    let detach_ms = detach_start.elapsed().as_secs_f64() * 1e3;
    eprintln!(
        "floor: {probes} probes attached in {attach_ms:.1} ms, detached in {detach_ms:.1} ms"
    );
    Ok(match status {
        target::ExitStatus::Code(code) => code,
        target::ExitStatus::Signal(_) => status.shell_code(),
    })
}

/// One module's probe offsets, by link.
struct ModuleProbes {
    path: PathBuf,
    entries: Vec<u64>,
    instructions: Vec<u64>,
    uretprobes: Vec<u64>,
}

fn group_by_module(points: &[ferret::probe::ProbePoint]) -> Vec<ModuleProbes> {
    let mut groups: Vec<ModuleProbes> = Vec::new();
    for point in points {
        let index = if let Some(i) = groups.iter().position(|g| *g.path == *point.path) {
            i
        } else {
            groups.push(ModuleProbes {
                path: point.path.to_path_buf(),
                entries: Vec::new(),
                instructions: Vec::new(),
                uretprobes: Vec::new(),
            });
            groups.len() - 1
        };
        let group = &mut groups[index];
        group.entries.push(point.entry);
        match &point.exits {
            ExitProbes::Instructions(offsets) => group.instructions.extend(offsets),
            ExitProbes::Uretprobe => group.uretprobes.push(point.entry),
        }
    }
    groups
}

fn map_data(map: &Map) -> Result<&MapData> {
    match map {
        Map::RingBuf(d) | Map::PerCpuArray(d) | Map::HashMap(d) | Map::Array(d) => Ok(d),
        _ => bail!("unexpected map type in the eBPF object"),
    }
}

/// Kernels before 5.11 charge BPF maps to `RLIMIT_MEMLOCK`.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads a live local.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const unlimited) };
}

// --- pipeline ----------------------------------------------------------------

/// Distinct records generated; longer runs replay them.
const STREAM_EVENTS: usize = 1 << 20;
/// Threads interleaved in the stream.
const THREADS: u32 = 8;
/// Functions in the synthetic probe table.
const FUNCTIONS: u32 = 256;
/// Records per thread before the stream moves to the next thread, as a
/// per-CPU ring buffer delivers them in runs.
const RUN: usize = 32;
/// Records decoded per drain, as `Pipeline::drain` hands spans to the writer.
const DRAIN: usize = 4096;

fn pipeline(args: &[String]) -> Result<i32> {
    let mut events: u64 = 10_000_000;
    let mut out = std::env::temp_dir().join("ferret-bench-pipeline.parquet");
    // Stages to run (all by default): one alone is what a profiler should see.
    let mut only: Vec<String> = Vec::new();
    let mut keep = false;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--events" => {
                events = args.next().context("--events N")?.parse()?;
            }
            "--out" => out = PathBuf::from(args.next().context("--out FILE")?),
            "--keep" => keep = true,
            "--stage" => only.push(args.next().context("--stage NAME")?.clone()),
            other => bail!("unknown option {other}"),
        }
    }
    let stream = synthetic_stream();
    let bytes = as_bytes(&stream);
    let functions: Arc<[FunctionInfo]> = (0..FUNCTIONS)
        .map(|i| FunctionInfo {
            name: format!("bench::module_{}::function_{i}", i % 16),
            module: "/usr/local/bin/bench-target".to_owned(),
        })
        .collect();

    let run = |stage: &str| only.is_empty() || only.iter().any(|s| s == stage);
    let rate = |seconds: f64| (events as f64 / seconds).round();
    let mut json = serde_json::Map::new();
    json.insert("events".into(), events.into());
    let mut report = |stage: &str, timing: Timing| {
        json.insert(
            stage.into(),
            serde_json::json!({ "cpu_per_s": rate(timing.cpu), "wall_per_s": rate(timing.wall) }),
        );
    };
    if run("decode") {
        report(
            "decode",
            time_stage(events, bytes, |event| {
                black_box(event);
            }),
        );
    }
    if run("reconstruct") {
        let mut reconstructor = Reconstructor::new();
        let mut spans = Vec::new();
        let timing = time_stage(events, bytes, |event| {
            if let Some(event) = event {
                reconstructor.push(event, &mut spans);
            } else {
                black_box(&spans);
                spans.clear();
            }
        });
        report("reconstruct", timing);
    }
    if run("aggregate") {
        let mut reconstructor = Reconstructor::new();
        let mut aggregates = Aggregates::new(FUNCTIONS as usize);
        let mut spans = Vec::new();
        let timing = time_stage(events, bytes, |event| {
            if let Some(event) = event {
                reconstructor.push(event, &mut spans);
            } else {
                for span in spans.drain(..) {
                    aggregates.apply(&span);
                }
            }
        });
        report("aggregate", timing);
    }
    let meta = || RecordingMeta {
        target: "synthetic".to_owned(),
        probes: "-s bench::*".to_owned(),
        realtime_offset_ns: 0,
    };
    let mut file_bytes = None;
    // `ferret record`: no aggregates.
    if run("record") {
        let (timing, size) = write_stage(events, bytes, &out, &functions, meta(), None, keep)?;
        report("record", timing);
        file_bytes = Some(size);
    }
    // `ferret watch -o`: everything.
    if run("full") {
        let aggregates = Aggregates::new(FUNCTIONS as usize);
        let (timing, size) = write_stage(
            events,
            bytes,
            &out,
            &functions,
            meta(),
            Some(aggregates),
            keep,
        )?;
        report("full", timing);
        file_bytes.get_or_insert(size);
    }
    if let Some(size) = file_bytes {
        json.insert(
            "file_bytes_per_event".into(),
            (size as f64 / events as f64).into(),
        );
    }
    let json = serde_json::Value::Object(json);
    println!("{json}");
    Ok(0)
}

/// The live aggregates as a consumer, as `watch` feeds them.
struct AggregatesConsumer(Aggregates);

impl Consumer for AggregatesConsumer {
    fn spans(&mut self, spans: &[SpanEvent]) -> Result<()> {
        for span in spans {
            self.0.apply(span);
        }
        Ok(())
    }
}

/// The session's own path: records through [`Pipeline::push`], span events
/// to the Parquet consumer (and the aggregates, if given) every [`DRAIN`]
/// records, then the file finished (removed unless `keep`); returns the
/// time and the file's size.
fn write_stage(
    events: u64,
    bytes: &[u8],
    out: &Path,
    functions: &Arc<[FunctionInfo]>,
    meta: RecordingMeta,
    aggregates: Option<Aggregates>,
    keep: bool,
) -> Result<(Timing, u64)> {
    let mut recording =
        RecordingConsumer::new(Recording::create(out, Arc::clone(functions), meta)?);
    let mut aggregates = aggregates.map(AggregatesConsumer);
    let mut pipeline = Pipeline::new(None);
    let mut failed = None;
    let mut timing = time_records(events, bytes, |record| {
        if let Some(record) = record {
            pipeline.push(record);
            return;
        }
        if let Some(aggregates) = &mut aggregates {
            let _ = aggregates.spans(&pipeline.spans);
        }
        if let Err(e) = recording.spans(&pipeline.spans) {
            failed.get_or_insert(e);
        }
        pipeline.spans.clear();
    });
    if let Some(e) = failed {
        return Err(e);
    }
    let finish = Timing::start();
    recording.finish(&mut SessionEnd {
        stop: Stop::Duration,
        failed: None,
        lost: 0,
        events,
        functions: functions.len(),
        orphan_exits: 0,
        detach: std::time::Duration::ZERO,
        exit: None,
        ended_by_us: None,
        calibration: ferret::cost::Calibration::NONE,
        metadata: Vec::new(),
    })?;
    timing.add(&finish.stop());
    let size = std::fs::metadata(out).map_or(0, |m| m.len());
    if !keep {
        let _ = std::fs::remove_file(out);
    }
    Ok((timing, size))
}

/// Hands `events` records (replaying `bytes`) to `sink` as bytes, and
/// `None` after every [`DRAIN`] records; returns the time taken.
fn time_records(events: u64, bytes: &[u8], mut sink: impl FnMut(Option<&[u8]>)) -> Timing {
    let record = size_of::<ProbeEvent>();
    let mut left = events as usize;
    let start = Timing::start();
    while left > 0 {
        for drain in bytes.chunks(DRAIN * record) {
            let take = left.min(drain.len() / record);
            for item in drain[..take * record].chunks_exact(record) {
                sink(Some(black_box(item)));
            }
            sink(None);
            left -= take;
            if left == 0 {
                break;
            }
        }
    }
    start.stop()
}

// --- otlp --------------------------------------------------------------------

/// Span events per encode call, as one drain hands them over.
const OTLP_CHUNK: usize = 4096;

fn otlp_bench(args: &[String]) -> Result<i32> {
    use std::io::Write as _;

    use ferret::otlp::{
        self,
        exporter::encode_spans,
        select::{Selection, Tracker},
    };
    use flate2::{Compression, write::GzEncoder};
    use prost::Message as _;

    let mut spans: u64 = 2_000_000;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--spans" => spans = args.next().context("--spans N")?.parse()?,
            other => bail!("unknown option {other}"),
        }
    }
    // The synthetic stream, reconstructed once: span events, replayed.
    let stream = synthetic_stream();
    let mut decoder = Decoder::new();
    let mut reconstructor = Reconstructor::new();
    let mut events: Vec<SpanEvent> = Vec::new();
    for item in as_bytes(&stream).chunks_exact(size_of::<ProbeEvent>()) {
        if let Some(event) = decoder.decode_bytes_ref(item) {
            reconstructor.push(event, &mut events);
        }
    }
    let per_pass = events
        .iter()
        .filter(|e| matches!(e, SpanEvent::End(_)))
        .count() as u64;
    let passes = spans.div_ceil(per_pass).max(1);
    let spans = passes * per_pass;
    let functions: Arc<[FunctionInfo]> = (0..FUNCTIONS)
        .map(|i| FunctionInfo {
            name: format!("bench::module_{}::function_{i}", i % 16),
            module: "/usr/local/bin/bench-target".to_owned(),
        })
        .collect();
    let resource = otlp::Resource::new(
        4242,
        Path::new("/usr/local/bin/bench-target"),
        "/usr/local/bin/bench-target --serve".to_owned(),
    );

    // The part on the tracing thread alone: selection (Tracker::push).
    let mut tracker = Tracker::new(Selection::default());
    let mut chosen = Vec::new();
    let start = Timing::start();
    for _ in 0..passes {
        for chunk in events.chunks(OTLP_CHUNK) {
            tracker.push(chunk, &mut chosen);
            black_box(&chosen);
            chosen.clear();
        }
    }
    let select = start.stop();

    // Selection + mapping + protobuf + gzip, one thread, into a null sink.
    let mut tracker = Tracker::new(Selection::default());
    let mut message = Vec::new();
    let mut compressed = 0u64;
    let mut encoded = 0u64;
    let start = Timing::start();
    for _ in 0..passes {
        for chunk in events.chunks(OTLP_CHUNK) {
            tracker.push(chunk, &mut chosen);
            for batch in chosen.chunks(otlp::config::DEFAULT_BATCH_SPANS) {
                let request = encode_spans(batch, &resource, &functions, 1, 0);
                message.clear();
                request.encode(&mut message)?;
                encoded += message.len() as u64;
                let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
                gz.write_all(&message)?;
                compressed += gz.finish()?.len() as u64;
            }
            chosen.clear();
        }
    }
    let export = start.stop();

    // The reference: the Parquet writer on the same events (`record`).
    let out = std::env::temp_dir().join("ferret-bench-otlp.parquet");
    let meta = RecordingMeta {
        target: "synthetic".to_owned(),
        probes: "-s bench::*".to_owned(),
        realtime_offset_ns: 0,
    };
    let mut writer = ferret::sink::RecordingWriter::create(&out, Arc::clone(&functions), meta)?;
    let start = Timing::start();
    for _ in 0..passes {
        for event in &events {
            writer.write_span(event)?;
        }
    }
    writer.finish(0, &[])?;
    let parquet = start.stop();
    let _ = std::fs::remove_file(&out);

    // The real exporter against a null collector on loopback; the feeder
    // waits for room (a benchmark wants every span through, not drops).
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}", listener.local_addr()?);
    std::thread::spawn(move || null_collector(&listener));
    let mut config = otlp::Config::new(&url)?;
    config.metrics_url = None;
    let mut exporter = otlp::Exporter::start(config, resource, Arc::clone(&functions))?;
    let began = Instant::now();
    for _ in 0..passes {
        for chunk in events.chunks(OTLP_CHUNK) {
            while exporter.stats().queued > (otlp::config::DEFAULT_MAX_QUEUE_SPANS / 2) as u64 {
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            exporter.spans(chunk);
        }
    }
    let stats = exporter.finish(std::time::Duration::from_mins(1));
    let loopback_s = began.elapsed().as_secs_f64();

    let rate = |seconds: f64| (spans as f64 / seconds).round();
    let json = serde_json::json!({
        "spans": spans,
        "select": { "cpu_per_s": rate(select.cpu), "wall_per_s": rate(select.wall) },
        "export": { "cpu_per_s": rate(export.cpu), "wall_per_s": rate(export.wall) },
        "parquet": { "cpu_per_s": rate(parquet.cpu), "wall_per_s": rate(parquet.wall) },
        "protobuf_bytes_per_span": encoded as f64 / spans as f64,
        "gzip_bytes_per_span": compressed as f64 / spans as f64,
        "loopback": {
            "wall_per_s": (stats.sent as f64 / loopback_s).round(),
            "sent": stats.sent,
            "unsent": stats.unsent(),
            "requests": stats.requests,
        },
    });
    println!("{json}");
    Ok(0)
}

/// An OTLP collector that reads each request and answers 200, keeping nothing.
fn null_collector(listener: &std::net::TcpListener) {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { return };
        let Ok(clone) = stream.try_clone() else {
            continue;
        };
        let mut reader = BufReader::new(clone);
        loop {
            let mut length = None;
            let mut line = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                if line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    length = v.trim().parse::<usize>().ok();
                }
            }
            let mut body = vec![0; length.unwrap_or(0)];
            if reader.read_exact(&mut body).is_err()
                || stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .is_err()
            {
                break;
            }
        }
    }
}

/// Wall time and this thread's CPU time.
#[derive(Clone, Copy, Debug)]
struct Timing {
    wall: f64,
    cpu: f64,
}

impl Timing {
    fn start() -> Self {
        Self {
            wall: clock(libc::CLOCK_MONOTONIC),
            cpu: clock(libc::CLOCK_THREAD_CPUTIME_ID),
        }
    }

    /// Seconds elapsed since `self` (a [`Timing::start`]).
    fn stop(self) -> Self {
        Self {
            wall: clock(libc::CLOCK_MONOTONIC) - self.wall,
            cpu: clock(libc::CLOCK_THREAD_CPUTIME_ID) - self.cpu,
        }
    }

    fn add(&mut self, other: &Self) {
        self.wall += other.wall;
        self.cpu += other.cpu;
    }
}

fn clock(id: libc::clockid_t) -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into a live local.
    unsafe { libc::clock_gettime(id, &raw mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Decodes `events` records (replaying `bytes`), handing each decoded event
/// to `sink`, and `None` after every [`DRAIN`] records; returns the time taken.
fn time_stage(
    events: u64,
    bytes: &[u8],
    mut sink: impl FnMut(Option<&ferret::trace::RawEvent>),
) -> Timing {
    let record = size_of::<ProbeEvent>();
    let mut decoder = Decoder::new();
    let mut left = events as usize;
    let start = Timing::start();
    while left > 0 {
        for drain in bytes.chunks(DRAIN * record) {
            let take = left.min(drain.len() / record);
            for item in drain[..take * record].chunks_exact(record) {
                sink(decoder.decode_bytes_ref(black_box(item)));
            }
            sink(None);
            left -= take;
            if left == 0 {
                break;
            }
        }
    }
    start.stop()
}

/// Balanced call trees on [`THREADS`] threads, interleaved in runs of
/// [`RUN`] records: each tree is a root with two children, each with one
/// child (five calls, ten records). Every thread ends with nothing open, so
/// the stream can be replayed.
fn synthetic_stream() -> Vec<ProbeEvent> {
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let per_thread = STREAM_EVENTS / THREADS as usize;
    let mut threads: Vec<Vec<(u32, u32, u64)>> = (0..THREADS)
        .map(|_| {
            let mut records = Vec::with_capacity(per_thread);
            while records.len() + 10 <= per_thread {
                let sp = 0x7fff_0000_0000_u64;
                let root = (next() % u64::from(FUNCTIONS)) as u32;
                records.push((kind::ENTRY, root, sp));
                for _ in 0..2 {
                    let child = (next() % u64::from(FUNCTIONS)) as u32;
                    let leaf = (next() % u64::from(FUNCTIONS)) as u32;
                    records.push((kind::ENTRY, child, sp - 0x40));
                    records.push((kind::ENTRY, leaf, sp - 0x80));
                    records.push((kind::EXIT_INSN, leaf, sp - 0x80));
                    records.push((kind::EXIT_INSN, child, sp - 0x40));
                }
                records.push((kind::EXIT_INSN, root, sp));
            }
            records.reverse();
            records
        })
        .collect();
    let comms: Vec<[u8; COMM_LEN]> = (0..THREADS)
        .map(|t| {
            let mut comm = [0u8; COMM_LEN];
            let name = format!("worker-{t}");
            comm[..name.len()].copy_from_slice(name.as_bytes());
            comm
        })
        .collect();
    let mut stream = Vec::with_capacity(STREAM_EVENTS);
    let mut ts_ns = 1_000_000_000_u64;
    while threads.iter().any(|t| !t.is_empty()) {
        for (t, records) in threads.iter_mut().enumerate() {
            for _ in 0..RUN {
                let Some((event_kind, function, sp)) = records.pop() else {
                    break;
                };
                ts_ns += 37;
                stream.push(ProbeEvent {
                    ts_ns,
                    cookie: cookie(function, event_kind, 0),
                    sp,
                    ip: 0x40_1000 + u64::from(function) * 0x40,
                    kind: event_kind,
                    pid: 4242,
                    tid: 4242 + t as u32,
                    goid: 0,
                    go_stack_depth: 0,
                    comm: comms[t],
                    // Counters as the kernel side sends them, so the
                    // pipeline pays for the split of every span.
                    cpu_ns: ts_ns,
                    sched_epoch: 1,
                    ..ProbeEvent::default()
                });
            }
        }
    }
    stream
}

fn as_bytes(events: &[ProbeEvent]) -> &[u8] {
    // SAFETY: `ProbeEvent` is `repr(C)` integers without padding; the slice
    // covers exactly the vector's initialised elements.
    unsafe { std::slice::from_raw_parts(events.as_ptr().cast::<u8>(), size_of_val(events)) }
}
