//! The clocks, in one place.
//!
//! Every timestamp ferret keeps is `CLOCK_MONOTONIC` nanoseconds, the clock
//! the BPF programs read with `bpf_ktime_get_ns`, so kernel events, the
//! stall watchdog, the metrics sampler and the dashboard's elapsed times
//! compare without conversion. Wall time is derived once per recording from
//! the offset between `CLOCK_REALTIME` and `CLOCK_MONOTONIC`.
//!
//! This is a leaf module on purpose: the session, the stall watchdog and the
//! dashboard all read the clock, and the session depends on both of them.

use rustix::time::{ClockId, clock_gettime};

fn clock_ns(clock: ClockId) -> i64 {
    let ts = clock_gettime(clock);
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// `CLOCK_MONOTONIC` now: the clock of every event ferret records.
pub fn monotonic_ns() -> u64 {
    clock_ns(ClockId::Monotonic) as u64
}

/// `CLOCK_REALTIME − CLOCK_MONOTONIC` now: adds to a monotonic timestamp
/// to give Unix time in nanoseconds.
pub fn realtime_offset_ns() -> i64 {
    clock_ns(ClockId::Realtime) - clock_ns(ClockId::Monotonic)
}

/// A monotonic timestamp as Unix nanoseconds, given the recording's
/// [`realtime_offset_ns`].
pub const fn unix_ns(monotonic_ns: u64, realtime_offset_ns: i64) -> i64 {
    monotonic_ns as i64 + realtime_offset_ns
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_time_moves_forward_and_maps_to_the_wall_clock() {
        let a = monotonic_ns();
        let b = monotonic_ns();
        assert!(b >= a);
        let offset = realtime_offset_ns();
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64;
        let derived = unix_ns(monotonic_ns(), offset);
        assert!(
            (wall - derived).abs() < 1_000_000_000,
            "{wall} vs {derived}"
        );
    }
}
