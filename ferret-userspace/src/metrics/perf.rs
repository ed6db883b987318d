//! Hardware performance counters for every thread of a process, through
//! perf-event2. (The software events perf also has, task-clock,
//! context-switches and page-faults, are read from procfs instead: see the
//! module above.)
//!
//! A counter opened for one thread counts that thread only, and `inherit`
//! would fold a new thread's counts into its creator only once it exits, so
//! ferret opens one counter per event per thread, discovers new threads at
//! each sample, and sums per-thread deltas. A thread that exited since the
//! last sample is read one last time (its counter stays readable) and then
//! closed. Counts are scaled by `time_enabled / time_running` when the
//! kernel multiplexed the PMU.
//!
//! What the machine cannot count (a VM without a virtual PMU has no
//! hardware events) is detected once, on the main thread, and reported as
//! unavailable with the kernel's reason; it is never shown as zero.

use std::collections::HashMap;

use perf_event::{Builder, Counter, events::Hardware};

/// The events ferret counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PerfEvent {
    /// CPU cycles.
    Cycles,
    /// Retired instructions.
    Instructions,
    /// Last-level cache misses.
    CacheMisses,
}

impl PerfEvent {
    /// Every event, in a fixed order.
    pub const ALL: [Self; 3] = [Self::Cycles, Self::Instructions, Self::CacheMisses];

    /// perf's name for it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Cycles => "cycles",
            Self::Instructions => "instructions",
            Self::CacheMisses => "cache-misses",
        }
    }

    fn builder(self) -> Builder<'static> {
        let mut builder = match self {
            Self::Cycles => Builder::new(Hardware::CPU_CYCLES),
            Self::Instructions => Builder::new(Hardware::INSTRUCTIONS),
            Self::CacheMisses => Builder::new(Hardware::CACHE_MISSES),
        };
        // The kernel's share of the threads' work counts too, as in
        // `perf stat`. ferret runs as root anyway.
        builder.exclude_kernel(false).exclude_hv(true).any_cpu();
        builder
    }
}

struct ThreadCounter {
    counter: Counter,
    /// Scaled count at the last read.
    last: u64,
}

struct EventCounters {
    event: PerfEvent,
    /// `Err(reason)` when the machine cannot count this event.
    available: Result<(), String>,
    threads: HashMap<u32, ThreadCounter>,
    /// Sum of per-thread deltas since the counters were opened.
    total: u64,
}

/// Counters for every thread of one process.
pub struct PerfCounters {
    events: Vec<EventCounters>,
}

impl PerfCounters {
    /// Probes which events this machine can count, on `pid`'s main thread.
    pub fn new(pid: u32) -> Self {
        let events = PerfEvent::ALL
            .iter()
            .map(|&event| {
                let mut threads = HashMap::new();
                let available = match open(event, pid) {
                    Ok(counter) => {
                        threads.insert(pid, ThreadCounter { counter, last: 0 });
                        Ok(())
                    }
                    Err(e) => Err(unavailable_reason(&e)),
                };
                EventCounters {
                    event,
                    available,
                    threads,
                    total: 0,
                }
            })
            .collect();
        Self { events }
    }

    /// Events this machine cannot count, with the reason.
    pub fn unavailable(&self) -> Vec<(PerfEvent, String)> {
        self.events
            .iter()
            .filter_map(|e| e.available.clone().err().map(|why| (e.event, why)))
            .collect()
    }

    /// Opens counters for threads not seen before, reads every counter, and
    /// returns the cumulative totals (`None` for an unavailable event).
    pub fn read(&mut self, tids: &[u32]) -> Vec<(PerfEvent, Option<u64>)> {
        // A process of thousands of threads: which are still there, looked
        // up in a set, not in the list (that was quadratic).
        let alive: std::collections::HashSet<u32> = tids.iter().copied().collect();
        self.events
            .iter_mut()
            .map(|e| {
                if e.available.is_err() {
                    return (e.event, None);
                }
                for &tid in tids {
                    if let std::collections::hash_map::Entry::Vacant(slot) = e.threads.entry(tid)
                        && let Ok(counter) = open(e.event, tid)
                    {
                        slot.insert(ThreadCounter { counter, last: 0 });
                    }
                }
                let mut gone = Vec::new();
                for (&tid, thread) in &mut e.threads {
                    if let Ok(now) = thread.counter.read_count_and_time() {
                        let scaled = if now.time_running == 0 {
                            0
                        } else if now.time_running < now.time_enabled {
                            (now.count as f64 * now.time_enabled as f64 / now.time_running as f64)
                                as u64
                        } else {
                            now.count
                        };
                        e.total += scaled.saturating_sub(thread.last);
                        thread.last = scaled.max(thread.last);
                    }
                    if !alive.contains(&tid) {
                        gone.push(tid);
                    }
                }
                for tid in gone {
                    e.threads.remove(&tid);
                }
                (e.event, Some(e.total))
            })
            .collect()
    }
}

fn open(event: PerfEvent, tid: u32) -> std::io::Result<Counter> {
    let mut counter = event.builder().observe_pid(tid as libc::pid_t).build()?;
    counter.enable()?;
    Ok(counter)
}

fn unavailable_reason(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOENT | libc::EOPNOTSUPP | libc::ENODEV) => {
            "the CPU's performance monitoring unit is not exposed here (a VM without a vPMU?)"
                .to_owned()
        }
        Some(libc::EACCES | libc::EPERM) => {
            "not permitted (needs root or CAP_PERFMON; see /proc/sys/kernel/perf_event_paranoid)"
                .to_owned()
        }
        _ => e.to_string(),
    }
}
