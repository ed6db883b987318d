//! Process metrics from procfs: a pure parser for `/proc/PID/stat` and a
//! [`Sampler`] that turns successive readings into [`MetricSample`]s (CPU
//! percent over the interval, resident memory, thread count).
//!
//! The parser works on `&str` and is tested on literal file contents; the
//! sampler is the thin part that reads the file and remembers the previous
//! reading.

use std::io::ErrorKind;
use std::path::PathBuf;

use crate::sink::MetricSample;

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

/// Samples one process's CPU, memory and thread count.
#[derive(Debug)]
pub struct Sampler {
    pid: u32,
    ticks_per_second: u64,
    page_size: u64,
    /// (`ts_ns`, utime + stime, starttime) of the previous sample.
    previous: Option<(u64, u64, u64)>,
}

impl Sampler {
    /// A sampler for process `pid`; nothing is read yet.
    pub fn new(pid: u32) -> Self {
        Self {
            pid,
            ticks_per_second: sysconf(libc::_SC_CLK_TCK).unwrap_or(100),
            page_size: sysconf(libc::_SC_PAGESIZE).unwrap_or(4096),
            previous: None,
        }
    }

    /// The process being sampled.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Read the process's state now (`ts_ns`: `CLOCK_MONOTONIC` ns).
    ///
    /// `cpu_percent` is the CPU time used since the previous sample over the
    /// wall time between them (100 = one core busy); it is `None` on the first
    /// sample, if no time passed, or if the pid now names another process.
    pub fn sample(&mut self, ts_ns: u64) -> Result<MetricSample, MetricsError> {
        let stat = read_stat(self.pid)?;
        Ok(self.sample_from(ts_ns, &stat))
    }

    /// The sample for an already read `stat` (the pure part of [`Self::sample`]).
    pub fn sample_from(&mut self, ts_ns: u64, stat: &ProcStat) -> MetricSample {
        let ticks = stat.utime_ticks + stat.stime_ticks;
        let cpu_percent = match self.previous {
            Some((prev_ts, prev_ticks, prev_start))
                if prev_start == stat.starttime_ticks && ts_ns > prev_ts && ticks >= prev_ticks =>
            {
                let cpu_s = (ticks - prev_ticks) as f64 / self.ticks_per_second as f64;
                let wall_s = (ts_ns - prev_ts) as f64 / 1e9;
                Some(100.0 * cpu_s / wall_s)
            }
            _ => None,
        };
        self.previous = Some((ts_ns, ticks, stat.starttime_ticks));
        MetricSample {
            ts_ns,
            pid: self.pid,
            process_name: stat.comm.clone(),
            cpu_percent,
            rss_bytes: Some(stat.rss_pages.saturating_mul(self.page_size)),
            threads: Some(stat.num_threads),
        }
    }
}

fn sysconf(name: libc::c_int) -> Option<u64> {
    // SAFETY: sysconf only reads a configuration value; any name is allowed
    // (an unknown one returns -1).
    let value = unsafe { libc::sysconf(name) };
    u64::try_from(value).ok().filter(|&v| v > 0)
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
        }
    }

    #[test]
    fn cpu_percent_from_tick_deltas() {
        let mut s = Sampler {
            pid: 9,
            ticks_per_second: 100,
            page_size: 4096,
            previous: None,
        };
        let first = s.sample_from(1_000_000_000, &stat(500, 1));
        assert_eq!(
            first,
            MetricSample {
                ts_ns: 1_000_000_000,
                pid: 9,
                process_name: "app".into(),
                cpu_percent: None,
                rss_bytes: Some(40_960),
                threads: Some(3),
            }
        );
        // 150 ticks = 1.5 s of CPU in 1 s of wall time: one and a half cores.
        let second = s.sample_from(2_000_000_000, &stat(650, 1));
        assert_eq!(second.cpu_percent, Some(150.0));
        // Half a second, 10 ticks = 0.1 s: 20 %.
        assert_eq!(
            s.sample_from(2_500_000_000, &stat(660, 1)).cpu_percent,
            Some(20.0)
        );
        // No time passed: no rate.
        assert_eq!(
            s.sample_from(2_500_000_000, &stat(660, 1)).cpu_percent,
            None
        );
        // The pid was reused by another process: no rate across the two.
        assert_eq!(s.sample_from(3_000_000_000, &stat(5, 2)).cpu_percent, None);
        assert_eq!(
            s.sample_from(4_000_000_000, &stat(105, 2)).cpu_percent,
            Some(100.0)
        );
    }

    #[test]
    fn samples_this_process() {
        let mut s = Sampler::new(std::process::id());
        let first = s.sample(1).unwrap();
        assert_eq!(first.pid, std::process::id());
        assert!(first.rss_bytes.unwrap() > 0);
        assert!(first.threads.unwrap() >= 1);
        assert!(first.cpu_percent.is_none());
        assert!(s.sample(1_000_000_001).unwrap().cpu_percent.is_some());
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
