//! CPU sampling in a session: started with the probes, its samples handed
//! to the consumers on every tick, kept inside the overhead budget, and
//! stopped (with the last samples delivered) when the session ends. The
//! sampling itself is [`crate::sample`].
//!
//! The budget: what the target's threads pay per sample is the timer
//! interrupt and the BPF program that copies their stack. The program
//! measures itself; the interrupt is counted at [`INTERRUPT_NS`]. When
//! that comes to more than a fifth of `--max-overhead` of the target's own
//! time for two checks in a row, the rate is halved (the events are
//! re-opened at the new frequency, which is what spares the interrupts).

use anyhow::{Context as _, Result};

use super::Consumer;
use crate::{
    metrics,
    probe::Engine,
    sample::thread::{SamplerStats, SamplerThread},
};

/// What one timer interrupt costs the thread it lands on, besides the BPF
/// program: measured by `cargo xtask bench --only sampling` on the
/// project's VM as the target's slowdown per sample (15.2–15.8 µs at 99
/// and 999 Hz, seven rounds) less the program's own time (2.4–4.3 µs);
/// see the README's Performance table. (2 µs, the first guess, let 999 Hz
/// take 1.6 % of a busy thread where its share of the budget is 1 %.)
pub const INTERRUPT_NS: u64 = 12_000;

/// The share of `--max-overhead` sampling may take.
const BUDGET_SHARE: f64 = 0.2;

/// The lowest rate the budget slows sampling down to.
const MIN_HZ: u64 = 1;

/// How sampling is going, for live views.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SamplingStatus {
    /// The rate asked for (`--sample-hz`).
    pub asked_hz: u64,
    /// The rate in force (lower once the budget slowed it down).
    pub hz: u64,
    /// Samples so far.
    pub samples: u64,
    /// Samples the kernel dropped (ring buffer full).
    pub lost: u64,
    /// The sampling's estimated cost, percent of the target's own time.
    pub estimate: Option<f64>,
}

/// Sampling in a running session.
pub struct Sampling {
    thread: SamplerThread,
    pid: u32,
    cpus: usize,
    asked_hz: u64,
    hz: u64,
    /// `--max-overhead` (0: off).
    budget: f64,
    ticks_ns: u64,
    /// The target's CPU time and the sampler's counts at the last check.
    last: Option<(u64, SamplerStats)>,
    over: u32,
    estimate: Option<f64>,
    lost: u64,
    /// Times the budget halved the rate.
    slowed: u32,
}

impl std::fmt::Debug for Sampling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampling")
            .field("hz", &self.hz)
            .finish_non_exhaustive()
    }
}

impl Sampling {
    /// Starts sampling `pid` (and the processes traced with it) at `hz`,
    /// within `max_overhead` percent (0: no limit).
    pub fn start(engine: &mut Engine, pid: u32, hz: u64, max_overhead: f64) -> Result<Self> {
        let cpus = engine
            .attach_sampler(hz)
            .context("starting CPU sampling (perf cpu-clock events)")?;
        let ring = engine.take_sample_ring()?;
        let thread = SamplerThread::start(ring).context("starting the sampler thread")?;
        Ok(Self {
            thread,
            pid,
            cpus,
            asked_hz: hz,
            hz,
            budget: max_overhead,
            ticks_ns: 1_000_000_000 / rustix::param::clock_ticks_per_second().max(1),
            last: None,
            over: 0,
            estimate: None,
            lost: 0,
            slowed: 0,
        })
    }

    /// Hands the samples resolved since the last call to `consumers`.
    pub fn deliver(&mut self, consumers: &mut [&mut dyn Consumer]) -> Result<()> {
        let samples = self.thread.take();
        if samples.is_empty() {
            return Ok(());
        }
        consumers
            .iter_mut()
            .try_for_each(|consumer| consumer.samples(&samples))
    }

    /// Every guard check: weighs the sampling's cost and halves the rate
    /// when it is over its share of the budget; returns a notice when it
    /// did.
    pub fn check(&mut self, engine: &mut Engine) -> Option<String> {
        if let Ok(lost) = engine.lost_samples() {
            self.lost = lost;
        }
        let cpu = metrics::read_stat(self.pid)
            .ok()
            .map(|s| (s.utime_ticks + s.stime_ticks) * self.ticks_ns)?;
        let stats = self.thread.stats();
        let (then_cpu, then) = self.last.replace((cpu, stats))?;
        let samples = stats.samples.saturating_sub(then.samples);
        let cost = stats
            .kernel_ns
            .saturating_sub(then.kernel_ns)
            .saturating_add(samples.saturating_mul(INTERRUPT_NS));
        // The CPU time comes in clock ticks: a window with less than a few
        // of them says nothing.
        let window = cpu.saturating_sub(then_cpu);
        if window < 2 * self.ticks_ns {
            // Keep the older point, so quiet stretches add up.
            self.last = Some((then_cpu, then));
            return None;
        }
        let own = window.saturating_sub(cost).max(1);
        let estimate = cost as f64 * 100.0 / own as f64;
        self.estimate = Some(estimate);
        let limit = self.budget * BUDGET_SHARE;
        if self.budget <= 0.0 || estimate <= limit || self.hz <= MIN_HZ {
            self.over = 0;
            return None;
        }
        self.over += 1;
        if self.over < 2 {
            return None;
        }
        self.over = 0;
        let hz = (self.hz / 2).max(MIN_HZ);
        match engine.attach_sampler(hz) {
            Ok(_) => {
                let was = self.hz;
                self.hz = hz;
                self.slowed += 1;
                Some(format!(
                    "sampling slowed from {was} Hz to {hz} Hz: it cost an estimated {estimate:.1}% \
                     of the target's own time, over its share ({limit:.1}%) of --max-overhead {}%",
                    self.budget
                ))
            }
            Err(e) => Some(format!(
                "sampling could not be slowed down: {}",
                anyhow::Error::new(e)
            )),
        }
    }

    /// How sampling is going.
    pub fn status(&self) -> SamplingStatus {
        SamplingStatus {
            asked_hz: self.asked_hz,
            hz: self.hz,
            samples: self.thread.stats().samples,
            lost: self.lost,
            estimate: self.estimate,
        }
    }

    /// After the events are closed (the engine detached): the last samples
    /// to the consumers, and what sampling did, as JSON for the metadata.
    pub fn finish(
        &mut self,
        engine: &Engine,
        consumers: &mut [&mut dyn Consumer],
    ) -> (Result<()>, String) {
        if let Ok(lost) = engine.lost_samples() {
            self.lost = lost;
        }
        let rest = self.thread.stop();
        let delivered = if rest.is_empty() {
            Ok(())
        } else {
            consumers
                .iter_mut()
                .try_for_each(|consumer| consumer.samples(&rest))
        };
        let stats = self.thread.stats();
        let json = serde_json::json!({
            "hz": self.asked_hz,
            "hz_at_end": self.hz,
            "slowed": self.slowed,
            "cpus": self.cpus,
            "samples": stats.samples,
            "lost": self.lost,
            "in_kernel": stats.in_kernel,
            "cut_stacks": stats.cut,
            "frames": stats.frames,
            "bpf_ns_per_sample": stats.kernel_ns.checked_div(stats.samples),
            "interrupt_ns_per_sample": INTERRUPT_NS,
            "sampler_cpu_ns": stats.thread_cpu_ns,
        });
        (delivered, json.to_string())
    }
}
