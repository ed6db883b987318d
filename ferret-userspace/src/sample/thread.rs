//! The sampler thread: drains the samples' ring buffer, unwinds and
//! symbolizes each sample ([`super::resolve`]), and sends them on in
//! batches. Symbolizing a module the first time reads its DWARF, which can
//! take a good part of a second; on a thread of its own that never holds
//! up the session's loop (and with it the probes' ring buffer).

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::Duration,
};

use super::{Sample, resolve::Resolver};
use crate::probe::sample::{SampleRing, decode};

/// How often the thread drains the ring buffer: samples come at most a few
/// hundred a second per CPU, and the ring holds about 250.
pub const DRAIN_EVERY: Duration = Duration::from_millis(25);

/// What the sampler thread has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SamplerStats {
    /// Samples taken and resolved.
    pub samples: u64,
    /// Records that did not decode.
    pub malformed: u64,
    /// The BPF program's own time over all samples, ns (in the target's
    /// threads: the part of the sampling cost they pay).
    pub kernel_ns: u64,
    /// Samples taken while the thread was in the kernel.
    pub in_kernel: u64,
    /// Frames walked in all.
    pub frames: u64,
    /// Samples whose walk stopped before the outermost frame.
    pub cut: u64,
    /// The sampler thread's own CPU time, ns.
    pub thread_cpu_ns: u64,
}

/// The running sampler thread; stopping it drains what is left.
pub struct SamplerThread {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    samples: mpsc::Receiver<Vec<Sample>>,
    stats: Arc<Mutex<SamplerStats>>,
}

impl std::fmt::Debug for SamplerThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SamplerThread").finish_non_exhaustive()
    }
}

impl SamplerThread {
    /// Starts draining `ring`.
    pub fn start(mut ring: SampleRing) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Mutex::new(SamplerStats::default()));
        let (tx, samples) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("ferret-sampler".into())
            .spawn({
                let (stop, stats) = (stop.clone(), stats.clone());
                move || {
                    let mut resolver = Resolver::new();
                    loop {
                        // Read the flag first: a drain after it was set takes
                        // everything the kernel wrote before the events closed.
                        let last = stop.load(Ordering::Acquire);
                        let mut batch = Vec::new();
                        let mut took = SamplerStats::default();
                        ring.drain(|bytes| match decode(bytes) {
                            Some(raw) => {
                                took.kernel_ns += raw.cost_ns;
                                took.in_kernel += u64::from(raw.in_kernel);
                                batch.push(resolver.resolve(&raw));
                            }
                            None => took.malformed += 1,
                        });
                        {
                            let mut s = stats
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                            s.samples += batch.len() as u64;
                            s.malformed += took.malformed;
                            s.kernel_ns += took.kernel_ns;
                            s.in_kernel += took.in_kernel;
                            s.frames = resolver.frames;
                            s.cut = resolver.cut;
                            s.thread_cpu_ns = thread_cpu_ns();
                        }
                        if !batch.is_empty() && tx.send(batch).is_err() {
                            return;
                        }
                        if last {
                            return;
                        }
                        std::thread::sleep(DRAIN_EVERY);
                    }
                }
            })?;
        Ok(Self {
            stop,
            handle: Some(handle),
            samples,
            stats,
        })
    }

    /// Every batch resolved since the last call, oldest first.
    pub fn take(&self) -> Vec<Sample> {
        let mut all = Vec::new();
        while let Ok(batch) = self.samples.try_recv() {
            if all.is_empty() {
                all = batch;
            } else {
                all.extend(batch);
            }
        }
        all
    }

    /// What the thread has done so far.
    pub fn stats(&self) -> SamplerStats {
        *self
            .stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stops the thread after one last drain (call once the events are
    /// closed) and returns what is left.
    pub fn stop(&mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Release);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
        self.take()
    }
}

impl Drop for SamplerThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// The calling thread's CPU time, ns.
fn thread_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    (t.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec as u64)
}
