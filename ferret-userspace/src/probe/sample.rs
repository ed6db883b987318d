//! The CPU sampler's kernel side: the `ferret_sample` perf-event program on
//! a cpu-clock event per CPU, its ring buffer, and the one place that knows
//! its record format ([`decode`]).
//!
//! The events count CPU time on each CPU and fire `hz` times a second of
//! it; the program keeps only the ticks that interrupt a traced process
//! (the same target map the probes filter on), so a thread that runs all
//! the time is sampled about `hz` times a second and an idle one never.

use aya::{
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{
        PerfEvent,
        perf_event::{PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent},
    },
};
use ferret_common::{
    COMM_LEN, LOST_MAP, SAMPLE_PAGE, SAMPLE_PROGRAM, SAMPLE_STACK_PAGES, SAMPLES_MAP, SampleEvent,
    lost, sample_flags,
};

use super::{Engine, ProbeError, map_err, program_err};
use crate::{sample::RawSample, trace::ThreadName};

impl Engine {
    /// Starts sampling the traced processes' threads on CPU, `hz` times a
    /// second of CPU time: one cpu-clock event per online CPU, each running
    /// `ferret_sample`. Returns how many CPUs are sampled. The samples
    /// arrive in the ring [`Self::take_sample_ring`] hands out; detaching
    /// (or dropping the engine) stops them. Called again, it replaces the
    /// events with ones at the new rate (the overhead budget's brake: the
    /// timer interrupts, not only the samples, are what the target pays).
    pub fn attach_sampler(&mut self, hz: u64) -> Result<usize, ProbeError> {
        self.detach_sampler();
        let cpus = aya::util::online_cpus().map_err(|(what, e)| ProbeError::Attach {
            what: format!("the CPU list ({what})"),
            source: e.into(),
        })?;
        let program: &mut PerfEvent = self
            .ebpf
            .program_mut(SAMPLE_PROGRAM)
            .expect("program in object")
            .try_into()
            .map_err(|e| program_err(SAMPLE_PROGRAM, e))?;
        program.load().map_err(|e| program_err(SAMPLE_PROGRAM, e))?;
        for &cpu in &cpus {
            program
                .attach(
                    PerfEventConfig::Software(SoftwareEvent::CpuClock),
                    PerfEventScope::AllProcessesOneCpu { cpu },
                    SamplePolicy::Frequency(hz),
                    false,
                )
                .map_err(|e| ProbeError::Attach {
                    what: format!("a cpu-clock sampling event on CPU {cpu}"),
                    source: e.into(),
                })?;
        }
        Ok(cpus.len())
    }

    /// Takes the samples' ring buffer for the sampler thread.
    pub fn take_sample_ring(&mut self) -> Result<SampleRing, ProbeError> {
        let map = self.ebpf.take_map(SAMPLES_MAP).expect("map in object");
        RingBuf::try_from(map)
            .map(SampleRing)
            .map_err(|e| map_err(SAMPLES_MAP, e))
    }

    /// Samples the kernel dropped because their ring buffer was full.
    pub fn lost_samples(&self) -> Result<u64, ProbeError> {
        let map = self.ebpf.map(LOST_MAP).expect("map in object");
        let counts: PerCpuArray<_, u64> =
            PerCpuArray::try_from(map).map_err(|e| map_err(LOST_MAP, e))?;
        let values = counts
            .get(&lost::SAMPLES, 0)
            .map_err(|e| map_err(LOST_MAP, e))?;
        Ok(values.iter().sum())
    }

    /// Stops sampling (every event closes with the program's unload).
    pub(super) fn detach_sampler(&mut self) {
        if let Some(Ok(program)) = self
            .ebpf
            .program_mut(SAMPLE_PROGRAM)
            .map(<&mut PerfEvent>::try_from)
        {
            // A program never loaded reports an error.
            let _ = program.unload();
        }
    }
}

/// The ring buffer of [`SampleEvent`] records, handed out as bytes for
/// [`decode`]. It can move to another thread.
pub struct SampleRing(RingBuf<MapData>);

impl SampleRing {
    /// Hands every record waiting now to `each`, oldest first.
    pub fn drain(&mut self, mut each: impl FnMut(&[u8])) {
        while let Some(record) = self.0.next() {
            each(&record);
        }
    }
}

impl std::os::fd::AsRawFd for SampleRing {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}

/// One record of the samples' ring buffer as plain values: the pages of
/// stack the program copied, the user registers, the thread. `None` for a
/// record of the wrong size.
pub fn decode(bytes: &[u8]) -> Option<RawSample> {
    if bytes.len() < size_of::<SampleEvent>() {
        return None;
    }
    let header = std::mem::offset_of!(SampleEvent, stack);
    // SAFETY: the length is checked above; the fields read are plain
    // integers at their offsets in a `repr(C)` struct, read unaligned.
    let field = |offset: usize| -> u64 {
        unsafe { bytes.as_ptr().add(offset).cast::<u64>().read_unaligned() }
    };
    let word = |offset: usize| -> u32 {
        // SAFETY: as above, for a `u32` field.
        unsafe { bytes.as_ptr().add(offset).cast::<u32>().read_unaligned() }
    };
    let pages =
        (word(std::mem::offset_of!(SampleEvent, stack_pages)) as usize).min(SAMPLE_STACK_PAGES);
    let comm_at = std::mem::offset_of!(SampleEvent, comm);
    let comm = &bytes[comm_at..comm_at + COMM_LEN];
    let name_len = comm.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
    let flags = word(std::mem::offset_of!(SampleEvent, flags));
    Some(RawSample {
        ts_ns: field(std::mem::offset_of!(SampleEvent, ts_ns)),
        pid: word(std::mem::offset_of!(SampleEvent, pid)),
        tid: word(std::mem::offset_of!(SampleEvent, tid)),
        thread_name: ThreadName::new(&String::from_utf8_lossy(&comm[..name_len])),
        ip: field(std::mem::offset_of!(SampleEvent, ip)),
        sp: field(std::mem::offset_of!(SampleEvent, sp)),
        bp: field(std::mem::offset_of!(SampleEvent, bp)),
        in_kernel: flags & sample_flags::IN_KERNEL != 0,
        stack_base: field(std::mem::offset_of!(SampleEvent, stack_base)),
        stack: bytes[header..header + pages * SAMPLE_PAGE].to_vec(),
        cost_ns: field(std::mem::offset_of!(SampleEvent, cost_ns)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_decodes_to_its_copied_pages_only() {
        let mut event = SampleEvent {
            ts_ns: 11,
            ip: 0x40_1000,
            sp: 0x7ffd_0000_0ff0,
            bp: 1,
            stack_base: 0x7ffd_0000_0000,
            cost_ns: 900,
            pid: 5,
            tid: 6,
            stack_pages: 2,
            flags: sample_flags::IN_KERNEL,
            comm: [0; COMM_LEN],
            stack: [0; ferret_common::SAMPLE_STACK_BYTES],
        };
        event.comm[..4].copy_from_slice(b"work");
        event.stack[SAMPLE_PAGE] = 0xab;
        // SAFETY: SampleEvent is plain integers and bytes without padding.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                std::ptr::from_ref(&event).cast::<u8>(),
                size_of::<SampleEvent>(),
            )
        };
        let raw = decode(bytes).expect("decodes");
        assert_eq!((raw.pid, raw.tid, raw.ts_ns, raw.cost_ns), (5, 6, 11, 900));
        assert_eq!(&*raw.thread_name, "work");
        assert!(raw.in_kernel);
        assert_eq!(raw.stack.len(), 2 * SAMPLE_PAGE);
        assert_eq!(raw.stack[SAMPLE_PAGE], 0xab);
        assert_eq!(decode(&bytes[..100]), None, "a short record is refused");
    }
}
