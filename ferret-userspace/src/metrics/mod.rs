//! Process metrics, read from the kernel without touching the target:
//! procfs (`stat`, per-thread `status` and `schedstat`, `io`, `fd/`) and
//! hardware perf counters (`perf`). The parsers are pure functions over `&str`, tested
//! on literal file contents; the [`Sampler`] is the thin part that reads the
//! files and turns successive readings into per-interval rates.
//!
//! Per-thread counts (context switches, CPU time, run-queue wait, perf
//! counters) vanish with their thread, so a process-wide rate is the sum of
//! per-thread *deltas*, each thread remembered from one sample to the next
//! ([`ThreadTotals`]).
//!
//! The task clock, context switches and page faults were once perf
//! software counters opened on every thread. procfs has the same figures
//! (the scheduler's `sum_exec_runtime`, `nvcsw + nivcsw`, `min_flt +
//! maj_flt`), and a counter on a thread is work for the kernel at each of
//! its context switches: the three slowed a ping-pong of 53k switches a
//! second by about 9 %. They are read from procfs now, at no cost to the
//! target.

use std::io::ErrorKind;
use std::path::PathBuf;

pub(crate) mod perf;
mod procfs;

use std::collections::HashMap;

pub use procfs::{ProcIo, ProcStatus, SchedStat, parse_io, parse_schedstat, parse_status};

use crate::sink::{MetricSample, metric};
use perf::{PerfCounters, PerfEvent};

/// The fields of `/proc/PID/stat` that ferret uses (see proc(5)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcStat {
    /// The process name (field 2), without the parentheses.
    pub comm: String,
    /// Run state (field 3): `R`, `S`, `D`, `Z`, `T`…
    pub state: char,
    /// User-mode CPU time, clock ticks (field 14).
    pub utime_ticks: u64,
    /// Kernel-mode CPU time, clock ticks (field 15).
    pub stime_ticks: u64,
    /// Number of threads (field 20).
    pub num_threads: u32,
    /// Virtual memory size, bytes (field 23).
    pub vsize_bytes: u64,
    /// Resident set size, pages (field 24).
    pub rss_pages: u64,
    /// Minor faults (field 10).
    pub minflt: u64,
    /// Major faults (field 12).
    pub majflt: u64,
    /// Start time after boot, clock ticks (field 22); with the pid it
    /// identifies a process, since pids are reused.
    pub starttime_ticks: u64,
    /// The CPU it last ran on (field 39; absent from very old kernels).
    pub processor: Option<u32>,
}

/// Why a metric could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The process no longer exists.
    #[error("process {pid} has exited")]
    Gone {
        /// The process id.
        pid: u32,
    },
    /// The procfs file could not be read (other than the process being gone).
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The contents did not have the expected shape.
    #[error("unexpected /proc/PID/stat contents: {reason}")]
    Parse {
        /// What was wrong.
        reason: String,
    },
}

/// Parse the contents of `/proc/PID/stat`.
///
/// The process name (`comm`) is in parentheses and may itself contain
/// spaces and parentheses, so it runs from the first `(` to the *last* `)`;
/// the numeric fields follow.
pub fn parse_stat(s: &str) -> Result<ProcStat, MetricsError> {
    let parse_err = |reason: String| MetricsError::Parse { reason };
    let open = s
        .find('(')
        .ok_or_else(|| parse_err("no `(` before the name".into()))?;
    let close = s
        .rfind(')')
        .ok_or_else(|| parse_err("no `)` after the name".into()))?;
    if close < open {
        return Err(parse_err("`)` before `(`".into()));
    }
    let comm = s[open + 1..close].to_owned();
    // rest[0] is field 3 (state); field n is rest[n - 3].
    let rest: Vec<&str> = s[close + 1..].split_ascii_whitespace().collect();
    let field = |n: usize| -> Result<&str, MetricsError> {
        rest.get(n - 3).copied().ok_or_else(|| {
            parse_err(format!(
                "{} fields after the name, need field {n}",
                rest.len()
            ))
        })
    };
    let number = |n: usize| -> Result<u64, MetricsError> {
        let text = field(n)?;
        text.parse()
            .map_err(|_| parse_err(format!("field {n} is {text:?}, not a count")))
    };
    let mut state = field(3)?.chars();
    let (Some(state_char), None) = (state.next(), state.next()) else {
        return Err(parse_err(format!(
            "state {:?} is not one letter",
            field(3)?
        )));
    };
    Ok(ProcStat {
        comm,
        state: state_char,
        minflt: number(10)?,
        majflt: number(12)?,
        utime_ticks: number(14)?,
        stime_ticks: number(15)?,
        num_threads: u32::try_from(number(20)?)
            .map_err(|_| parse_err("thread count out of range".into()))?,
        starttime_ticks: number(22)?,
        vsize_bytes: number(23)?,
        rss_pages: number(24)?,
        processor: field(39).ok().and_then(|p| p.parse().ok()),
    })
}

/// Read and parse `/proc/PID/stat`.
pub fn read_stat(pid: u32) -> Result<ProcStat, MetricsError> {
    let path = PathBuf::from(format!("/proc/{pid}/stat"));
    let bytes = std::fs::read(&path).map_err(|source| match source.kind() {
        // ESRCH shows up when the process dies between open and read.
        ErrorKind::NotFound => MetricsError::Gone { pid },
        _ if source.raw_os_error() == Some(libc::ESRCH) => MetricsError::Gone { pid },
        _ => MetricsError::Io { path, source },
    })?;
    // comm is whatever bytes the program set; do not fail on non-UTF-8.
    parse_stat(&String::from_utf8_lossy(&bytes))
}

/// Cumulative counters of the previous sample, for rates.
#[derive(Clone, Copy, Debug, Default)]
struct Totals {
    ts_ns: u64,
    starttime: u64,
    utime: u64,
    stime: u64,
    minflt: u64,
    majflt: u64,
    /// Per-thread sums ([`ThreadTotals`]); `None` when only `stat` was read.
    threads: Option<ThreadCounts>,
    rchar: Option<u64>,
    wchar: Option<u64>,
    read_bytes: Option<u64>,
    write_bytes: Option<u64>,
    perf: [Option<u64>; PerfEvent::ALL.len()],
}

/// Samples one process: CPU, memory, threads, switches, faults, I/O, fds
/// and perf counters.
pub struct Sampler {
    pid: u32,
    ticks_per_second: u64,
    page_size: u64,
    previous: Option<Totals>,
    threads: ThreadTotals,
    perf: Option<PerfCounters>,
    unavailable: u32,
}

impl Sampler {
    /// A sampler for process `pid` with perf counters (if this machine has
    /// them; see [`Self::unavailable`]).
    pub fn new(pid: u32) -> Self {
        let mut sampler = Self::without_perf(pid);
        let perf = PerfCounters::new(pid);
        for (event, _) in perf.unavailable() {
            for index in perf_metric_indices(event) {
                sampler.unavailable |= 1 << index;
            }
        }
        sampler.perf = Some(perf);
        sampler
    }

    /// A sampler reading procfs only.
    pub fn without_perf(pid: u32) -> Self {
        let mut unavailable = 0;
        for event in PerfEvent::ALL {
            for index in perf_metric_indices(event) {
                unavailable |= 1 << index;
            }
        }
        Self {
            pid,
            ticks_per_second: Some(rustix::param::clock_ticks_per_second())
                .filter(|&t| t > 0)
                .unwrap_or(100),
            page_size: Some(rustix::param::page_size() as u64)
                .filter(|&p| p > 0)
                .unwrap_or(4096),
            previous: None,
            threads: ThreadTotals::default(),
            perf: None,
            unavailable,
        }
    }

    /// The process being sampled.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Perf events this machine cannot count, with the kernel's reason.
    pub fn unavailable(&self) -> Vec<(&'static str, String)> {
        self.perf.as_ref().map_or_else(Vec::new, |p| {
            p.unavailable()
                .into_iter()
                .map(|(event, why)| (event.name(), why))
                .collect()
        })
    }

    /// Reads the process's state now (`ts_ns`: `CLOCK_MONOTONIC` ns). Rates
    /// are over the time since the previous sample; they are `None` on the
    /// first sample, if no time passed, or if the pid now names another process.
    pub fn sample(&mut self, ts_ns: u64) -> Result<MetricSample, MetricsError> {
        let stat = read_stat(self.pid)?;
        let tids = thread_ids(self.pid);
        let mut running = 0u32;
        let mut seen = Vec::with_capacity(tids.len());
        for &tid in &tids {
            // Two files per thread: `status` has the state and the
            // switches, `schedstat` the CPU time and the run-queue wait.
            let read = |file: &str| {
                std::fs::read_to_string(format!("/proc/{}/task/{tid}/{file}", self.pid))
            };
            let Some(status) = read("status").ok().and_then(|t| parse_status(&t).ok()) else {
                continue;
            };
            running += u32::from(status.state == 'R');
            // Unreadable (the thread just exited): no change since the last.
            let sched = read("schedstat")
                .ok()
                .and_then(|t| parse_schedstat(&t).ok())
                .unwrap_or_else(|| self.threads.sched(tid));
            seen.push((
                tid,
                ThreadCounts {
                    voluntary: status.voluntary_ctxt_switches,
                    involuntary: status.nonvoluntary_ctxt_switches,
                    run_ns: sched.run_ns,
                    wait_ns: sched.wait_ns,
                },
            ));
        }
        let threads = self.threads.fold(seen);
        let io = std::fs::read_to_string(format!("/proc/{}/io", self.pid))
            .ok()
            .and_then(|t| parse_io(&t).ok());
        let fds = std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .ok()
            .map(Iterator::count);
        let perf = self.perf.as_mut().map(|p| p.read(&tids));
        let mut totals = Totals {
            ts_ns,
            starttime: stat.starttime_ticks,
            utime: stat.utime_ticks,
            stime: stat.stime_ticks,
            minflt: stat.minflt,
            majflt: stat.majflt,
            threads: Some(threads),
            rchar: io.map(|i| i.rchar),
            wchar: io.map(|i| i.wchar),
            read_bytes: io.map(|i| i.read_bytes),
            write_bytes: io.map(|i| i.write_bytes),
            perf: [None; PerfEvent::ALL.len()],
        };
        if let Some(perf) = perf {
            for (i, (_, value)) in perf.into_iter().enumerate() {
                totals.perf[i] = value;
            }
        }
        let mut sample = self.sample_from(ts_ns, &stat, &totals);
        sample.extra[metric::THREADS_RUNNING] = Some(f64::from(running));
        sample.extra[metric::OPEN_FDS] = fds.map(|n| n as f64);
        Ok(sample)
    }

    /// The sample for an already read `stat` (the pure part of [`Self::sample`]):
    /// CPU percent, memory, threads and faults, without the per-thread and
    /// perf readings.
    pub fn sample_stat(&mut self, ts_ns: u64, stat: &ProcStat) -> MetricSample {
        let totals = Totals {
            ts_ns,
            starttime: stat.starttime_ticks,
            utime: stat.utime_ticks,
            stime: stat.stime_ticks,
            minflt: stat.minflt,
            majflt: stat.majflt,
            ..Totals::default()
        };
        self.sample_from(ts_ns, stat, &totals)
    }

    fn sample_from(&mut self, ts_ns: u64, stat: &ProcStat, now: &Totals) -> MetricSample {
        let mut sample = MetricSample::basic(
            ts_ns,
            self.pid,
            stat.comm.clone(),
            None,
            Some(stat.rss_pages.saturating_mul(self.page_size)),
            Some(stat.num_threads),
        );
        sample.unavailable = self.unavailable;
        sample.extra[metric::VM] = Some(stat.vsize_bytes as f64);
        if let Some(before) = self.previous
            && before.starttime == now.starttime
            && ts_ns > before.ts_ns
        {
            let seconds = (ts_ns - before.ts_ns) as f64 / 1e9;
            let rate = |now: u64, before: u64| Some(now.saturating_sub(before) as f64 / seconds);
            let opt_rate = |now: Option<u64>, before: Option<u64>| {
                now.zip(before).and_then(|(n, b)| rate(n, b))
            };
            let ticks = self.ticks_per_second as f64;
            let cpu = |now: u64, before: u64| rate(now, before).map(|per_s| 100.0 * per_s / ticks);
            let user = cpu(now.utime, before.utime);
            let system = cpu(now.stime, before.stime);
            sample.cpu_percent = user.zip(system).map(|(u, s)| u + s);
            let extra = &mut sample.extra;
            extra[metric::CPU_USER] = user;
            extra[metric::CPU_SYSTEM] = system;
            extra[metric::MINOR_FAULTS] = rate(now.minflt, before.minflt);
            extra[metric::MAJOR_FAULTS] = rate(now.majflt, before.majflt);
            if let Some((now_t, before_t)) = now.threads.zip(before.threads) {
                let voluntary = rate(now_t.voluntary, before_t.voluntary);
                let involuntary = rate(now_t.involuntary, before_t.involuntary);
                extra[metric::VOLUNTARY_SWITCHES] = voluntary;
                extra[metric::INVOLUNTARY_SWITCHES] = involuntary;
                extra[metric::PERF_SWITCHES] = voluntary.zip(involuntary).map(|(v, i)| v + i);
                // ns per second: 1e9 is one thread waiting (or running) all along.
                extra[metric::RUN_QUEUE_WAIT] =
                    rate(now_t.wait_ns, before_t.wait_ns).map(|ns_per_s| ns_per_s / 1e7);
                extra[metric::TASK_CLOCK] =
                    rate(now_t.run_ns, before_t.run_ns).map(|ns_per_s| ns_per_s / 1e7);
                extra[metric::PERF_FAULTS] =
                    rate(now.minflt + now.majflt, before.minflt + before.majflt);
            }
            extra[metric::READ] = opt_rate(now.rchar, before.rchar);
            extra[metric::WRITE] = opt_rate(now.wchar, before.wchar);
            extra[metric::DISK_READ] = opt_rate(now.read_bytes, before.read_bytes);
            extra[metric::DISK_WRITE] = opt_rate(now.write_bytes, before.write_bytes);
            let perf = |event: PerfEvent| {
                let i = PerfEvent::ALL
                    .iter()
                    .position(|e| *e == event)
                    .expect("listed");
                opt_rate(now.perf[i], before.perf[i])
            };
            extra[metric::CYCLES] = perf(PerfEvent::Cycles);
            extra[metric::INSTRUCTIONS] = perf(PerfEvent::Instructions);
            extra[metric::IPC] = extra[metric::INSTRUCTIONS]
                .zip(extra[metric::CYCLES])
                .filter(|&(_, cycles)| cycles > 0.0)
                .map(|(instructions, cycles)| instructions / cycles);
            extra[metric::CACHE_MISSES] = perf(PerfEvent::CacheMisses);
        }
        self.previous = Some(*now);
        sample
    }
}

/// The extra-metric columns fed by a perf event.
fn perf_metric_indices(event: PerfEvent) -> &'static [usize] {
    match event {
        PerfEvent::Cycles => &[metric::CYCLES, metric::IPC],
        PerfEvent::Instructions => &[metric::INSTRUCTIONS, metric::IPC],
        PerfEvent::CacheMisses => &[metric::CACHE_MISSES],
    }
}

/// One thread's cumulative procfs counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ThreadCounts {
    voluntary: u64,
    involuntary: u64,
    run_ns: u64,
    wait_ns: u64,
}

impl ThreadCounts {
    fn add_delta(&mut self, now: Self, before: Self) {
        self.voluntary += now.voluntary.saturating_sub(before.voluntary);
        self.involuntary += now.involuntary.saturating_sub(before.involuntary);
        self.run_ns += now.run_ns.saturating_sub(before.run_ns);
        self.wait_ns += now.wait_ns.saturating_sub(before.wait_ns);
    }
}

/// Process-wide sums of per-thread counts: each thread's delta since it was
/// last seen, so a thread that exits keeps what it counted up to its last
/// sample, and a new thread counts from zero (from its start).
#[derive(Debug, Default)]
struct ThreadTotals {
    last: HashMap<u32, ThreadCounts>,
    total: ThreadCounts,
}

impl ThreadTotals {
    /// Thread `tid`'s schedstat at the last sample (zero if not seen).
    fn sched(&self, tid: u32) -> SchedStat {
        self.last
            .get(&tid)
            .map_or_else(SchedStat::default, |t| SchedStat {
                run_ns: t.run_ns,
                wait_ns: t.wait_ns,
            })
    }

    /// Takes the threads' counts now (the threads not listed have exited)
    /// and returns the process-wide sums.
    fn fold(&mut self, threads: Vec<(u32, ThreadCounts)>) -> ThreadCounts {
        let mut seen = HashMap::with_capacity(threads.len());
        for (tid, now) in threads {
            let before = self
                .last
                .get(&tid)
                .copied()
                // Counts that went back: the id is another thread's now.
                .filter(|b| b.run_ns <= now.run_ns && b.voluntary <= now.voluntary)
                .unwrap_or_default();
            self.total.add_delta(now, before);
            seen.insert(tid, now);
        }
        self.last = seen;
        self.total
    }
}

/// The ids of `pid`'s threads now.
fn thread_ids(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/proc/PID/stat` of a sleeping `cat`, as Linux 6.x prints it.
    const CAT: &str = "4242 (cat) S 4200 4242 4200 34816 4242 4194304 97 0 1 0 3 5 0 0 20 0 1 0 \
                       123456 5881856 230 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 3 0 0 0 0 0 \
                       0 0 0 0 0 0 0 0\n";

    #[test]
    fn parses_every_used_field() {
        let stat = parse_stat(CAT).unwrap();
        assert_eq!(
            stat,
            ProcStat {
                comm: "cat".into(),
                state: 'S',
                utime_ticks: 3,
                stime_ticks: 5,
                num_threads: 1,
                vsize_bytes: 5_881_856,
                rss_pages: 230,
                minflt: 97,
                majflt: 1,
                starttime_ticks: 123_456,
                processor: Some(3),
            }
        );
    }

    #[test]
    fn name_with_spaces_and_parentheses() {
        let s = "77 (my (weird) prog) R 1 77 77 0 -1 4194560 10 0 2 0 150 50 0 0 20 0 4 0 \
                 999 100000 50 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n";
        let stat = parse_stat(s).unwrap();
        assert_eq!(stat.comm, "my (weird) prog");
        assert_eq!(stat.state, 'R');
        assert_eq!((stat.utime_ticks, stat.stime_ticks), (150, 50));
        assert_eq!(stat.num_threads, 4);
        assert_eq!(stat.starttime_ticks, 999);
    }

    #[test]
    fn name_that_looks_like_fields() {
        // A program can name itself ") R 1 2 3"; only the last ')' counts.
        let s = "5 () R 1 2 3) Z 1 5 5 0 -1 0 0 0 0 0 7 8 0 0 20 0 1 0 42 0 0 0\n";
        let stat = parse_stat(s).unwrap();
        assert_eq!(stat.comm, ") R 1 2 3");
        assert_eq!(stat.state, 'Z');
        assert_eq!(
            (stat.utime_ticks, stat.stime_ticks, stat.starttime_ticks),
            (7, 8, 42)
        );
    }

    #[test]
    fn malformed_contents_are_errors() {
        for bad in [
            "",
            "4242 cat S 1",
            "4242 (cat S 1",
            "4242 )cat( S 1 2 3",
            "4242 (cat) S 1 2 3",
            "4242 (cat) SS 4200 4242 4200 34816 4242 4194304 97 0 1 0 3 5 0 0 20 0 1 0 1 2 3",
            "4242 (cat) S 4200 4242 4200 34816 4242 4194304 97 0 1 0 x 5 0 0 20 0 1 0 1 2 3",
        ] {
            assert!(
                matches!(parse_stat(bad), Err(MetricsError::Parse { .. })),
                "{bad:?}"
            );
        }
    }

    fn stat(ticks: u64, starttime: u64) -> ProcStat {
        ProcStat {
            comm: "app".into(),
            state: 'R',
            utime_ticks: ticks,
            stime_ticks: 0,
            num_threads: 3,
            vsize_bytes: 0,
            rss_pages: 10,
            minflt: 0,
            majflt: 0,
            starttime_ticks: starttime,
            processor: None,
        }
    }

    #[test]
    fn per_thread_counts_add_up_over_threads_that_come_and_go() {
        let counts = |voluntary, involuntary, run_ns, wait_ns| ThreadCounts {
            voluntary,
            involuntary,
            run_ns,
            wait_ns,
        };
        let mut totals = ThreadTotals::default();
        assert_eq!(
            totals.fold(vec![(1, counts(10, 1, 100, 5)), (2, counts(3, 0, 50, 0))]),
            counts(13, 1, 150, 5)
        );
        // Thread 2 exited (what it counted stays), thread 3 is new.
        assert_eq!(
            totals.fold(vec![(1, counts(12, 1, 180, 5)), (3, counts(1, 1, 20, 2))]),
            counts(16, 2, 250, 7)
        );
        // Thread 3's id now names a new thread, counting from its start.
        assert_eq!(
            totals.fold(vec![(1, counts(12, 1, 180, 5)), (3, counts(0, 0, 4, 0))]),
            counts(16, 2, 254, 7)
        );
        assert_eq!(
            totals.sched(1),
            SchedStat {
                run_ns: 180,
                wait_ns: 5
            }
        );
        assert_eq!(totals.sched(9), SchedStat::default());
    }

    #[test]
    fn task_clock_switches_and_faults_come_from_procfs() {
        let mut s = Sampler::without_perf(9);
        let threads = |run_ns, switches| ThreadCounts {
            voluntary: switches,
            involuntary: 1,
            run_ns,
            wait_ns: run_ns / 4,
        };
        let totals = |ts_ns, run_ns, switches, faults| Totals {
            ts_ns,
            starttime: 1,
            minflt: faults,
            majflt: 1,
            threads: Some(threads(run_ns, switches)),
            ..Totals::default()
        };
        let first = s.sample_from(1_000_000_000, &stat(0, 1), &totals(1_000_000_000, 0, 0, 0));
        assert_eq!(first.extra[metric::TASK_CLOCK], None, "no rate yet");
        // Half a second: 0.75 s on a CPU is 150 % of a core.
        let second = s.sample_from(
            1_500_000_000,
            &stat(0, 1),
            &totals(1_500_000_000, 750_000_000, 100, 400),
        );
        assert_eq!(second.extra[metric::TASK_CLOCK], Some(150.0));
        assert_eq!(second.extra[metric::RUN_QUEUE_WAIT], Some(37.5));
        assert_eq!(second.extra[metric::PERF_SWITCHES], Some(200.0));
        assert_eq!(second.extra[metric::VOLUNTARY_SWITCHES], Some(200.0));
        assert_eq!(second.extra[metric::PERF_FAULTS], Some(800.0));
        for index in [
            metric::TASK_CLOCK,
            metric::PERF_SWITCHES,
            metric::PERF_FAULTS,
        ] {
            assert_eq!(second.unavailable & (1 << index), 0, "metric {index}");
        }
        // From `stat` alone, the per-thread figures are unknown, not zero.
        let third = s.sample_stat(2_000_000_000, &stat(0, 1));
        assert_eq!(third.extra[metric::TASK_CLOCK], None);
        assert_eq!(third.extra[metric::PERF_SWITCHES], None);
    }

    #[test]
    fn cpu_percent_from_tick_deltas() {
        let mut s = Sampler::without_perf(9);
        s.ticks_per_second = 100;
        s.page_size = 4096;
        let first = s.sample_stat(1_000_000_000, &stat(500, 1));
        let mut expected =
            MetricSample::basic(1_000_000_000, 9, "app".into(), None, Some(40_960), Some(3));
        expected.extra[metric::VM] = Some(first.extra[metric::VM].unwrap());
        expected.unavailable = s.unavailable;
        assert_eq!(first, expected);
        // 150 ticks = 1.5 s of CPU in 1 s of wall time: one and a half cores.
        let second = s.sample_stat(2_000_000_000, &stat(650, 1));
        assert_eq!(second.cpu_percent, Some(150.0));
        // Half a second, 10 ticks = 0.1 s: 20 %.
        assert_eq!(
            s.sample_stat(2_500_000_000, &stat(660, 1)).cpu_percent,
            Some(20.0)
        );
        // No time passed: no rate.
        assert_eq!(
            s.sample_stat(2_500_000_000, &stat(660, 1)).cpu_percent,
            None
        );
        // The pid was reused by another process: no rate across the two.
        assert_eq!(s.sample_stat(3_000_000_000, &stat(5, 2)).cpu_percent, None);
        assert_eq!(
            s.sample_stat(4_000_000_000, &stat(105, 2)).cpu_percent,
            Some(100.0)
        );
    }

    #[test]
    #[ignore = "needs root (hardware perf counters, perf_event_paranoid >= 2): cargo xtask test runs it"]
    fn samples_this_process() {
        let mut s = Sampler::new(std::process::id());
        let first = s.sample(1).unwrap();
        assert_eq!(first.pid, std::process::id());
        assert!(first.rss_bytes.unwrap() > 0);
        assert!(first.threads.unwrap() >= 1);
        assert!(first.cpu_percent.is_none());
        let second = s.sample(1_000_000_001).unwrap();
        assert!(second.cpu_percent.is_some());
        assert!(
            second.extra[metric::OPEN_FDS].unwrap() >= 3.0,
            "stdio at least"
        );
        assert!(
            second.extra[metric::THREADS_RUNNING].unwrap() >= 1.0,
            "this thread runs"
        );
        assert!(second.extra[metric::MINOR_FAULTS].is_some());
        assert!(second.extra[metric::VOLUNTARY_SWITCHES].is_some());
        // The task clock is procfs, always there; a hardware event is either
        // counted or reported unavailable, never silently zero.
        assert!(
            second.extra[metric::TASK_CLOCK].is_some(),
            "task-clock counted"
        );
        for index in [metric::CYCLES, metric::INSTRUCTIONS, metric::CACHE_MISSES] {
            let unavailable = second.unavailable & (1 << index) != 0;
            assert_ne!(unavailable, second.extra[index].is_some(), "metric {index}");
        }
    }

    #[test]
    fn exited_process_is_gone() {
        // pid_max is at most 2^22, so this pid cannot exist.
        let err = Sampler::new(u32::MAX).sample(0).unwrap_err();
        assert!(
            matches!(err, MetricsError::Gone { pid: u32::MAX }),
            "{err:?}"
        );
    }
}
