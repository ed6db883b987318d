//! Pure parsers for `/proc/PID/status` (context switches),
//! `/proc/PID/task/TID/schedstat` (CPU time, run-queue wait) and
//! `/proc/PID/io` (bytes read and written), tested on literal contents.

use super::MetricsError;

/// The fields of `/proc/PID/task/TID/status` that ferret uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcStatus {
    /// Its scheduler state, `State:`'s letter (`R` running, `S` sleeping…).
    pub state: char,
    /// Times the thread gave up the CPU (waiting for something).
    pub voluntary_ctxt_switches: u64,
    /// Times the thread was preempted.
    pub nonvoluntary_ctxt_switches: u64,
}

/// The fields of `/proc/PID/io`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcIo {
    /// Bytes passed to read(2)-like calls (files, sockets, pipes).
    pub rchar: u64,
    /// Bytes passed to write(2)-like calls.
    pub wchar: u64,
    /// Bytes fetched from storage.
    pub read_bytes: u64,
    /// Bytes sent to storage.
    pub write_bytes: u64,
}

/// Finds `key:` lines in a `key: value` file and parses their numbers.
fn fields<const N: usize>(
    text: &str,
    keys: [&str; N],
    file: &str,
) -> Result<[u64; N], MetricsError> {
    let mut values = [None; N];
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        if let Some(i) = keys.iter().position(|k| *k == key.trim()) {
            let value = value.split_whitespace().next().unwrap_or("");
            values[i] = Some(value.parse::<u64>().map_err(|_| MetricsError::Parse {
                reason: format!("{file}: {key} is {value:?}, not a count"),
            })?);
        }
    }
    let mut out = [0; N];
    for (i, value) in values.into_iter().enumerate() {
        out[i] = value.ok_or_else(|| MetricsError::Parse {
            reason: format!("{file}: no `{}` line", keys[i]),
        })?;
    }
    Ok(out)
}

/// Parses `/proc/PID/status` (or a thread's).
pub fn parse_status(text: &str) -> Result<ProcStatus, MetricsError> {
    let [voluntary, nonvoluntary] = fields(
        text,
        ["voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"],
        "status",
    )?;
    // `State:\tS (sleeping)`: the per-thread sampler reads this file
    // alone, not `stat` as well (a process of a thousand threads).
    let state = text
        .lines()
        .find_map(|l| l.strip_prefix("State:"))
        .and_then(|v| v.trim_start().chars().next())
        .ok_or_else(|| MetricsError::Parse {
            reason: "status: no `State` line".to_owned(),
        })?;
    Ok(ProcStatus {
        state,
        voluntary_ctxt_switches: voluntary,
        nonvoluntary_ctxt_switches: nonvoluntary,
    })
}

/// The fields of `/proc/PID/task/TID/schedstat`: the scheduler's own
/// per-thread clocks (what perf's `task-clock` software event counts, read
/// without a counter on the thread).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedStat {
    /// Time on a CPU, ns (`se.sum_exec_runtime`).
    pub run_ns: u64,
    /// Time runnable but waiting for a CPU, ns.
    pub wait_ns: u64,
}

/// Parses `/proc/PID/task/TID/schedstat`: `run_ns wait_ns timeslices`.
pub fn parse_schedstat(text: &str) -> Result<SchedStat, MetricsError> {
    let mut fields = text.split_whitespace().map(str::parse::<u64>);
    match (fields.next(), fields.next()) {
        (Some(Ok(run_ns)), Some(Ok(wait_ns))) => Ok(SchedStat { run_ns, wait_ns }),
        _ => Err(MetricsError::Parse {
            reason: format!("schedstat: {text:?} is not `run_ns wait_ns timeslices`"),
        }),
    }
}

/// Parse the contents of `/proc/PID/io`.
pub fn parse_io(text: &str) -> Result<ProcIo, MetricsError> {
    let [rchar, wchar, read_bytes, write_bytes] =
        fields(text, ["rchar", "wchar", "read_bytes", "write_bytes"], "io")?;
    Ok(ProcIo {
        rchar,
        wchar,
        read_bytes,
        write_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tmy (weird) prog\nUmask:\t0022\nState:\tS (sleeping)\n\
        Tgid:\t4242\nThreads:\t3\nvoluntary_ctxt_switches:\t1507\n\
        nonvoluntary_ctxt_switches:\t12\n";

    #[test]
    fn status_switch_counts() {
        assert_eq!(
            parse_status(STATUS).unwrap(),
            ProcStatus {
                state: 'S',
                voluntary_ctxt_switches: 1507,
                nonvoluntary_ctxt_switches: 12
            }
        );
    }

    #[test]
    fn io_counts() {
        let io = "rchar: 323934931\nwchar: 323929600\nsyscr: 632687\nsyscw: 632675\n\
                  read_bytes: 4096\nwrite_bytes: 323932160\ncancelled_write_bytes: 0\n";
        assert_eq!(
            parse_io(io).unwrap(),
            ProcIo {
                rchar: 323_934_931,
                wchar: 323_929_600,
                read_bytes: 4096,
                write_bytes: 323_932_160
            }
        );
    }

    #[test]
    fn missing_or_garbled_lines_are_errors() {
        assert!(parse_status("Name:\tx\n").is_err());
        assert!(parse_io("rchar: many\nwchar: 1\nread_bytes: 1\nwrite_bytes: 1\n").is_err());
        assert!(parse_io("").is_err());
    }

    #[test]
    fn schedstat_gives_the_cpu_time_and_the_run_queue_wait() {
        assert_eq!(
            parse_schedstat("123456 7890 12\n").unwrap(),
            SchedStat {
                run_ns: 123_456,
                wait_ns: 7890
            }
        );
        assert!(parse_schedstat("123456\n").is_err());
        assert!(parse_schedstat("x 7890 12\n").is_err());
        assert!(parse_schedstat("").is_err());
    }
}
