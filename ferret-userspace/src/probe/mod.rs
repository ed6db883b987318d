//! The probe engine: load the eBPF object, attach entry and exit probes to
//! the chosen functions, and read what they report.
//!
//! Attachment goes through `uprobe_multi` links (a handful per module however
//! many functions; see [`multi`]), falling back to one perf-event link per
//! probe, with a warning, where the kernel lacks them. Decoding the ring
//! buffer into plain [`crate::trace::RawEvent`] values lives in [`decode`], so
//! nothing past this module needs aya.

pub mod btf;
pub mod decode;
pub mod multi;
pub mod sample;

use std::{
    os::fd::{AsFd as _, OwnedFd},
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array as BpfArray, HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    programs::{
        RawTracePoint, UProbe,
        raw_trace_point::RawTracePointLinkId,
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeScope},
    },
};
use ferret_common::{
    CONFIG_MAP, COUNTS_MAP, DEFAULT_RING_BYTES, EVENTS_MAP, EXEC_PROGRAM, FORK_PROGRAM, LOST_MAP,
    PROBE_PROGRAM, PROBE_RET_PROGRAM, SCHED_MAP, SCHED_SWITCH_PROGRAM, SCHED_WAKEUP_PROGRAM,
    SchedState, TARGETS_MAP, THREAD_EXIT_PROGRAM, config, go_cookie, go_sched_cookie, kind,
};

/// The eBPF object built by `build.rs` from `ferret-ebpf`.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ferret-ebpf"));

/// A boxed error from aya or the hand-made loader, kept as a source so the
/// errno at the bottom of the chain stays inspectable.
type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of the probe engine. Each keeps what the kernel said as its
/// `source`, so callers decide by the errno (see [`Self::is_permission_denied`]),
/// never by message text.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The embedded eBPF object could not be loaded (maps created, programs
    /// relocated): often a missing privilege.
    #[error("loading the eBPF programs failed")]
    Object(#[source] Cause),
    /// One program could not be loaded into the kernel (the verifier
    /// refused it, or a missing privilege).
    #[error("loading the eBPF program `{program}` failed")]
    Program {
        /// The program.
        program: &'static str,
        /// What aya or the kernel said.
        #[source]
        source: Cause,
    },
    /// Attaching probes (or a tracepoint) failed.
    #[error("attaching probes to {what} failed")]
    Attach {
        /// The module, or the tracepoint.
        what: String,
        /// What the kernel said.
        #[source]
        source: Cause,
    },
    /// A map operation failed.
    #[error("eBPF map {map}")]
    Map {
        /// The map.
        map: &'static str,
        /// What failed.
        #[source]
        source: Cause,
    },
    /// `--follow-forks` needs the kernel's BTF to find `task_struct.tgid`.
    #[error("--follow-forks needs the kernel's BTF (/sys/kernel/btf/vmlinux)")]
    NoBtf(#[source] btf::BtfError),
    /// Detaching single functions needs `uprobe_multi` links.
    #[error("detaching single functions needs uprobe_multi links (Linux ≥ 6.6)")]
    NeedsMultiLinks,
}

impl ProbeError {
    /// Whether the kernel refused for lack of privilege (EPERM or EACCES
    /// somewhere down the source chain).
    pub fn is_permission_denied(&self) -> bool {
        errnos(self).any(|errno| errno == libc::EPERM || errno == libc::EACCES)
    }
}

/// The OS error codes in `e`'s source chain, outermost first.
fn errnos<'a>(e: &'a (dyn std::error::Error + 'static)) -> impl Iterator<Item = i32> + 'a {
    std::iter::successors(Some(e), |e| e.source()).filter_map(|e| {
        e.downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
            .or_else(|| {
                e.downcast_ref::<multi::MultiError>()
                    .and_then(multi::MultiError::errno)
            })
    })
}

/// How a function's exits are observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitProbes {
    /// Uprobes on these return / tail-jump instructions (file offsets).
    Instructions(Vec<u64>),
    /// One uretprobe (hijacks the return address; unsafe if the target may unwind).
    Uretprobe,
}

/// One function to probe.
#[derive(Clone, Debug)]
pub struct ProbePoint {
    /// The ELF file (path the kernel resolves).
    pub path: Arc<Path>,
    /// File offset of the entry.
    pub entry: u64,
    /// How its exits are observed.
    pub exits: ExitProbes,
    /// A Go function: where `goid` is in the runtime's `g`, so its probes
    /// read the goroutine (see [`ferret_common::COOKIE_GOID_OFFSET_SHIFT`]);
    /// 0 for every other function.
    pub goid_offset: u16,
    /// Not a traced function but Go's `runtime.deferreturn`, whose entry
    /// marks where a goroutine resumed after a recovered panic (see
    /// [`ferret_common::kind::GO_UNWIND`]); it has no exit probes.
    pub go_recovery: bool,
    /// Not a traced function but a hand-off point of the Go scheduler
    /// (`runtime.execute`, `runtime.park_m`…): one of
    /// [`ferret_common::go_sched`], 0 for every other probe. Its entry
    /// keeps the goroutine's scheduler state and sends no event; it has no
    /// exit probes.
    pub go_sched: u32,
    /// With `go_sched`: where `waitreason` is in `runtime.g` (0: unknown),
    /// so a parked goroutine's blocked time names what it waited for.
    pub go_waitreason_offset: u16,
}

impl ProbePoint {
    /// Whether this probe marks something in the Go runtime rather than
    /// tracing a function (no span comes from it).
    pub fn is_go_marker(&self) -> bool {
        self.go_recovery || self.go_sched != 0
    }
}

/// How probes were attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkKind {
    /// `uprobe_multi` links.
    Multi,
    /// One perf-event link per probe (old kernels).
    PerProbe,
}

/// Counts and timings of an attach.
#[derive(Clone, Debug)]
pub struct AttachStats {
    /// Probes placed (entries + exit instructions + uretprobes).
    pub probes: usize,
    /// Kernel links created.
    pub links: usize,
    /// Which mechanism.
    pub kind: LinkKind,
    /// Wall time spent attaching.
    pub elapsed: Duration,
}

/// Loaded programs, maps and live links. Dropping it detaches everything.
pub struct Engine {
    ebpf: Ebpf,
    multi_program: Option<OwnedFd>,
    multi_links: Vec<OwnedFd>,
    perf_links: usize,
    force_per_probe: bool,
    /// The probe generation currently delivering events (0 or 1).
    generation: u32,
    /// The pid the links are restricted to (0: any; the BPF filter decides).
    link_pid: u32,
    kind: Option<LinkKind>,
    /// The scheduler tracepoints' links, while attached (see
    /// [`Self::attach_sched`]).
    sched_links: Vec<(&'static str, RawTracePointLinkId)>,
}

impl Engine {
    /// Loads the object, creating the maps (ring buffer of `ring_bytes`).
    pub fn load(ring_bytes: Option<u32>) -> Result<Self, ProbeError> {
        bump_memlock_rlimit();
        let ring = ring_bytes.unwrap_or(DEFAULT_RING_BYTES);
        let ebpf = EbpfLoader::new()
            .map_max_entries(EVENTS_MAP, ring)
            .load(EBPF_OBJECT)
            .map_err(|e| ProbeError::Object(e.into()))?;
        let mut engine = Self {
            ebpf,
            multi_program: None,
            multi_links: Vec::new(),
            perf_links: 0,
            force_per_probe: std::env::var_os("FERRET_PER_PROBE_LINKS").is_some_and(|v| v == "1"),
            generation: 0,
            link_pid: 0,
            kind: None,
            sched_links: Vec::new(),
        };
        engine.set(config::WAKEUP_BYTES, ring / 8)?;
        Ok(engine)
    }

    /// Writes the settings the kernel side reads: where `task_struct.tgid`
    /// is (from the kernel's BTF) and whether forked children are traced.
    pub fn configure(&mut self, follow_forks: bool) -> Result<(), ProbeError> {
        let (tgid, pid, sum_exec) = match btf::task_offsets() {
            Ok(offsets) => offsets,
            Err(e) if follow_forks => return Err(ProbeError::NoBtf(e)),
            Err(_) => (0, 0, 0),
        };
        self.set(config::TASK_TGID_OFFSET, tgid)?;
        // 0 (no BTF): the scheduler programs do nothing, splits are null.
        self.set(config::TASK_PID_OFFSET, pid)?;
        self.set(config::TASK_SUM_EXEC_OFFSET, sum_exec)?;
        self.set(config::FOLLOW_FORKS, u32::from(follow_forks))?;
        self.set(config::GENERATION, self.generation)
    }

    fn set(&mut self, slot: u32, value: u32) -> Result<(), ProbeError> {
        let map = self.ebpf.map_mut(CONFIG_MAP).expect("map in object");
        let mut array: BpfArray<_, u32> =
            BpfArray::try_from(map).map_err(|e| map_err(CONFIG_MAP, e))?;
        array
            .set(slot, value, 0)
            .map_err(|e| map_err(CONFIG_MAP, e))
    }

    /// Lets events of process `pid` through the kernel-side filter.
    pub fn add_target(&mut self, pid: u32) -> Result<(), ProbeError> {
        let map = self.ebpf.map_mut(TARGETS_MAP).expect("map in object");
        let mut targets: BpfHashMap<_, u32, u8> =
            BpfHashMap::try_from(map).map_err(|e| map_err(TARGETS_MAP, e))?;
        targets
            .insert(pid, 1, 0)
            .map_err(|e| map_err(TARGETS_MAP, e))
    }

    /// The raw tracepoint program `name` of the object.
    fn raw_tracepoint(&mut self, name: &'static str) -> Result<&mut RawTracePoint, ProbeError> {
        self.ebpf
            .program_mut(name)
            .expect("program in object")
            .try_into()
            .map_err(|e| program_err(name, e))
    }

    /// Attaches the process-lifecycle tracepoints: thread exit, exec and
    /// fork (the fork program acts only with `--follow-forks`).
    pub fn attach_process_events(&mut self) -> Result<(), ProbeError> {
        for (name, tracepoint) in [
            (THREAD_EXIT_PROGRAM, "sched_process_exit"),
            (EXEC_PROGRAM, "sched_process_exec"),
            (FORK_PROGRAM, "sched_process_fork"),
        ] {
            let program = self.raw_tracepoint(name)?;
            program.load().map_err(|e| program_err(name, e))?;
            program.attach(tracepoint).map_err(|e| ProbeError::Attach {
                what: format!("raw tracepoint {tracepoint}"),
                source: e.into(),
            })?;
        }
        Ok(())
    }

    /// Attaches the scheduler tracepoints that keep traced threads' CPU,
    /// runnable and blocked time (see [`ferret_common::SchedState`]). For
    /// every other thread of the machine they cost a map lookup per
    /// context switch and wakeup. On failure the session goes on without
    /// the split (every span's is null).
    pub fn attach_sched(&mut self) -> Result<(), ProbeError> {
        for (name, tracepoint) in [
            (SCHED_WAKEUP_PROGRAM, "sched_wakeup"),
            (SCHED_SWITCH_PROGRAM, "sched_switch"),
        ] {
            let program = self.raw_tracepoint(name)?;
            program.load().map_err(|e| program_err(name, e))?;
            let link = program.attach(tracepoint).map_err(|e| ProbeError::Attach {
                what: format!("raw tracepoint {tracepoint}"),
                source: e.into(),
            })?;
            self.sched_links.push((name, link));
        }
        self.keep_sched_counters()
    }

    /// Stops keeping the split of time (the overhead budget found the
    /// scheduler hooks too costly): the probes stop sending counters first,
    /// so no span is split by a state the hooks no longer keep (spans open
    /// now end with a null split), then the tracepoints are detached.
    pub fn stop_sched(&mut self) -> Result<(), ProbeError> {
        self.set(config::SCHED_ON, 0)?;
        for (name, link) in std::mem::take(&mut self.sched_links) {
            let program = self.raw_tracepoint(name)?;
            program.detach(link).map_err(|e| program_err(name, e))?;
        }
        Ok(())
    }

    /// Whether the scheduler tracepoints are attached.
    pub fn sched_on(&self) -> bool {
        !self.sched_links.is_empty()
    }

    /// What the scheduler programs counted so far (slots of
    /// [`ferret_common::counts`], summed over the CPUs).
    pub fn count(&self, slot: u32) -> Result<u64, ProbeError> {
        let map = self.ebpf.map(COUNTS_MAP).expect("map in object");
        let counts: PerCpuArray<_, u64> =
            PerCpuArray::try_from(map).map_err(|e| map_err(COUNTS_MAP, e))?;
        let values = counts.get(&slot, 0).map_err(|e| map_err(COUNTS_MAP, e))?;
        Ok(values.iter().sum())
    }

    /// Makes the probes keep and send their thread's scheduler counters.
    /// [`Self::attach_sched`] does it once the tracepoints that keep them
    /// right are attached; the calibration does it alone, so the probes it
    /// times do the same work as a session's.
    pub fn keep_sched_counters(&mut self) -> Result<(), ProbeError> {
        self.set(config::SCHED_ON, 1)
    }

    /// The scheduler state the kernel keeps for thread `tid` right now, if
    /// it has any (it hit a probe and has not exited).
    pub fn sched_state(&self, tid: u32) -> Option<SchedState> {
        let map = self.ebpf.map(SCHED_MAP)?;
        let states: BpfHashMap<_, u32, SchedState> = BpfHashMap::try_from(map).ok()?;
        states.get(&tid, 0).ok()
    }

    /// Attaches entry and exit probes for `points`; the cookie of point `i`
    /// carries function id `i`. `pid` restricts the probes to that process.
    pub fn attach(&mut self, points: &[ProbePoint], pid: u32) -> Result<AttachStats, ProbeError> {
        let start = Instant::now();
        self.link_pid = pid;
        let groups = group_by_module(points, None, self.generation);
        let probes = groups.iter().map(ModuleProbes::len).sum();
        if !self.force_per_probe {
            match self.attach_multi(&groups, pid) {
                Ok(links) => {
                    self.kind = Some(LinkKind::Multi);
                    return Ok(AttachStats {
                        probes,
                        links,
                        kind: LinkKind::Multi,
                        elapsed: start.elapsed(),
                    });
                }
                Err(e) if multi_unsupported(&e) => {
                    eprintln!(
                        "warning: this kernel has no uprobe_multi links (Linux ≥ 6.6); \
                         falling back to one perf link per probe, which is slow to detach"
                    );
                    self.multi_links.clear();
                }
                Err(e) => return Err(e),
            }
        }
        self.attach_per_probe(&groups)?;
        self.kind = Some(LinkKind::PerProbe);
        Ok(AttachStats {
            probes,
            links: self.perf_links,
            kind: LinkKind::PerProbe,
            elapsed: start.elapsed(),
        })
    }

    fn attach_multi(&mut self, groups: &[ModuleProbes], pid: u32) -> Result<usize, ProbeError> {
        if self.multi_program.is_none() {
            let maps = self
                .ebpf
                .maps()
                .map(|(name, map)| {
                    let id = map_info_id(map)?;
                    let fd = multi::map_fd_by_id(id).map_err(|e| ProbeError::Map {
                        map: "(by id)",
                        source: e.into(),
                    })?;
                    Ok((name.to_owned(), fd))
                })
                .collect::<Result<Vec<_>, ProbeError>>()?;
            let fd = multi::load_program(EBPF_OBJECT, PROBE_PROGRAM, &maps)
                .map_err(|e| program_err(PROBE_PROGRAM, e))?;
            self.multi_program = Some(fd);
        }
        let program = self.multi_program.as_ref().expect("loaded above").as_fd();
        let before = self.multi_links.len();
        for group in groups {
            for (offsets, cookies, ret) in [
                (&group.entry_offsets, &group.entry_cookies, false),
                (&group.insn_offsets, &group.insn_cookies, false),
                (&group.uret_offsets, &group.uret_cookies, true),
            ] {
                if offsets.is_empty() {
                    continue;
                }
                let link = multi::attach(program, &group.path, offsets, cookies, pid, ret)
                    .map_err(|e| ProbeError::Attach {
                        what: group.path.display().to_string(),
                        source: e.into(),
                    })?;
                self.multi_links.push(link);
            }
        }
        Ok(self.multi_links.len() - before)
    }

    /// Per-probe links fire for every process mapping the file; the
    /// kernel-side target filter keeps other processes out (the perf scope
    /// is per thread, so it cannot name a process).
    fn attach_per_probe(&mut self, groups: &[ModuleProbes]) -> Result<(), ProbeError> {
        for (program_name, ret) in [(PROBE_PROGRAM, false), (PROBE_RET_PROGRAM, true)] {
            let program: &mut UProbe = self
                .ebpf
                .program_mut(program_name)
                .expect("program in object")
                .try_into()
                .map_err(|e| program_err(program_name, e))?;
            let needed = groups.iter().any(|g| {
                if ret {
                    !g.uret_offsets.is_empty()
                } else {
                    !g.entry_offsets.is_empty() || !g.insn_offsets.is_empty()
                }
            });
            if !needed {
                continue;
            }
            program.load().map_err(|e| program_err(program_name, e))?;
            for group in groups {
                let pairs: Vec<(u64, u64)> = if ret {
                    zip(&group.uret_offsets, &group.uret_cookies)
                } else {
                    let mut v = zip(&group.entry_offsets, &group.entry_cookies);
                    v.extend(zip(&group.insn_offsets, &group.insn_cookies));
                    v
                };
                for (offset, cookie) in pairs {
                    program
                        .attach(
                            UProbeAttachPoint {
                                location: UProbeAttachLocation::AbsoluteOffset(offset),
                                cookie: Some(cookie),
                            },
                            &*group.path,
                            UProbeScope::AllProcesses,
                        )
                        .map_err(|e| ProbeError::Attach {
                            what: group.path.display().to_string(),
                            source: e.into(),
                        })?;
                    self.perf_links += 1;
                }
            }
        }
        Ok(())
    }

    /// Replaces the probes with ones for `points` minus `disabled` (function
    /// ids), removing the disabled functions' breakpoints from the target
    /// (the overhead guard). The new links carry the other generation and
    /// the kernel side switches generation between creating them and
    /// closing the old ones, so no call is reported twice or lost.
    ///
    /// `unstick` is called, and what it returns held, if closing the old
    /// links takes longer than [`STUCK_AFTER`] (see [`close_links`]).
    pub fn reattach_without<G>(
        &mut self,
        points: &[ProbePoint],
        disabled: &std::collections::HashSet<u32>,
        unstick: impl FnOnce() -> G,
    ) -> Result<Duration, ProbeError> {
        if self.kind != Some(LinkKind::Multi) {
            return Err(ProbeError::NeedsMultiLinks);
        }
        let start = Instant::now();
        let next = 1 - self.generation;
        let groups = group_by_module(points, Some(disabled), next);
        let old = std::mem::take(&mut self.multi_links);
        if let Err(e) = self.attach_multi(&groups, self.link_pid) {
            self.multi_links = old;
            return Err(e);
        }
        self.set(config::GENERATION, next)?;
        self.generation = next;
        close_links(old, unstick);
        Ok(start.elapsed())
    }

    /// Detaches every probe; returns how long it took.
    pub fn detach(&mut self) -> Duration {
        self.detach_with(|| ())
    }

    /// Detaches every probe, calling `unstick` (and holding what it
    /// returns) if that takes longer than [`STUCK_AFTER`]; returns how long
    /// it took.
    pub fn detach_with<G>(&mut self, unstick: impl FnOnce() -> G) -> Duration {
        let start = Instant::now();
        self.detach_sampler();
        close_links(std::mem::take(&mut self.multi_links), unstick);
        for name in [PROBE_PROGRAM, PROBE_RET_PROGRAM] {
            if let Some(Ok(program)) = self.ebpf.program_mut(name).map(<&mut UProbe>::try_from) {
                // Unloading drops every perf link; a program never loaded reports an error.
                let _ = program.unload();
            }
        }
        for name in [
            THREAD_EXIT_PROGRAM,
            EXEC_PROGRAM,
            FORK_PROGRAM,
            SCHED_SWITCH_PROGRAM,
            SCHED_WAKEUP_PROGRAM,
        ] {
            if let Some(Ok(program)) = self
                .ebpf
                .program_mut(name)
                .map(<&mut RawTracePoint>::try_from)
            {
                let _ = program.unload();
            }
        }
        self.perf_links = 0;
        start.elapsed()
    }

    /// Takes the ring buffer for the reader.
    pub fn take_ring(&mut self) -> Result<EventRing, ProbeError> {
        let map = self.ebpf.take_map(EVENTS_MAP).expect("map in object");
        RingBuf::try_from(map)
            .map(EventRing)
            .map_err(|e| map_err(EVENTS_MAP, e))
    }

    /// Events the kernel dropped because the ring buffer was full.
    pub fn lost(&self) -> Result<u64, ProbeError> {
        let map = self.ebpf.map(LOST_MAP).expect("map in object");
        let lost: PerCpuArray<_, u64> =
            PerCpuArray::try_from(map).map_err(|e| map_err(LOST_MAP, e))?;
        let values = lost
            .get(&ferret_common::lost::EVENTS, 0)
            .map_err(|e| map_err(LOST_MAP, e))?;
        Ok(values.iter().sum())
    }
}

/// The ring buffer the probes write [`ferret_common::ProbeEvent`] records
/// into, handed out as plain bytes: the pipeline decodes them (see
/// [`decode`]) without knowing aya. Readable (for `poll`/tokio's `AsyncFd`)
/// when the kernel woke the reader.
pub struct EventRing(RingBuf<MapData>);

impl EventRing {
    /// Hands every record waiting now to `each`, oldest first.
    pub fn drain(&mut self, mut each: impl FnMut(&[u8])) {
        while let Some(record) = self.0.next() {
            each(&record);
        }
    }
}

impl std::os::fd::AsRawFd for EventRing {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}

/// How long closing links may take before it counts as stuck.
pub const STUCK_AFTER: Duration = Duration::from_millis(50);

/// Closes `links`, removing their probes. On this project's kernel (6.18)
/// removing uprobes that the target hits flat out does not finish while it
/// keeps hitting them (see `target::freeze`): the close runs on a thread
/// of its own, and if it has not finished after [`STUCK_AFTER`], `unstick`
/// is called (the session holds the target's running threads still) and
/// what it returns is held until the close is done, 10 s at most.
fn close_links<G>(links: Vec<OwnedFd>, unstick: impl FnOnce() -> G) {
    if links.is_empty() {
        return;
    }
    let (done, closed) = std::sync::mpsc::channel();
    let closer = std::thread::Builder::new()
        .name("ferret-detach".to_owned())
        .spawn(move || {
            drop(links);
            let _ = done.send(());
        });
    if closer.is_err() {
        return; // the links went with the closure; dropping it closed them
    }
    if closed.recv_timeout(STUCK_AFTER).is_err() {
        let held = unstick();
        let _ = closed.recv_timeout(Duration::from_secs(10));
        drop(held);
    }
}

fn zip(offsets: &[u64], cookies: &[u64]) -> Vec<(u64, u64)> {
    offsets
        .iter()
        .copied()
        .zip(cookies.iter().copied())
        .collect()
}

/// The probes of one module, split by link kind.
struct ModuleProbes {
    path: Arc<Path>,
    entry_offsets: Vec<u64>,
    entry_cookies: Vec<u64>,
    insn_offsets: Vec<u64>,
    insn_cookies: Vec<u64>,
    uret_offsets: Vec<u64>,
    uret_cookies: Vec<u64>,
}

impl ModuleProbes {
    fn len(&self) -> usize {
        self.entry_offsets.len() + self.insn_offsets.len() + self.uret_offsets.len()
    }
}

fn group_by_module(
    points: &[ProbePoint],
    disabled: Option<&std::collections::HashSet<u32>>,
    generation: u32,
) -> Vec<ModuleProbes> {
    let mut groups: Vec<ModuleProbes> = Vec::new();
    for (id, point) in points.iter().enumerate() {
        let id = u32::try_from(id).expect("fewer than 2^29 functions");
        if disabled.is_some_and(|d| d.contains(&id)) {
            continue;
        }
        let index = if let Some(i) = groups.iter().position(|g| g.path == point.path) {
            i
        } else {
            groups.push(ModuleProbes {
                path: point.path.clone(),
                entry_offsets: Vec::new(),
                entry_cookies: Vec::new(),
                insn_offsets: Vec::new(),
                insn_cookies: Vec::new(),
                uret_offsets: Vec::new(),
                uret_cookies: Vec::new(),
            });
            groups.len() - 1
        };
        let group = &mut groups[index];
        let cookie = |kind| go_cookie(id, kind, generation, point.goid_offset);
        group.entry_offsets.push(point.entry);
        group.entry_cookies.push(if point.go_sched != 0 {
            go_sched_cookie(
                point.go_sched,
                generation,
                point.goid_offset,
                point.go_waitreason_offset,
            )
        } else {
            cookie(if point.go_recovery {
                kind::GO_UNWIND
            } else {
                kind::ENTRY
            })
        });
        match &point.exits {
            ExitProbes::Instructions(offsets) => {
                for &offset in offsets {
                    group.insn_offsets.push(offset);
                    group.insn_cookies.push(cookie(kind::EXIT_INSN));
                }
            }
            ExitProbes::Uretprobe => {
                group.uret_offsets.push(point.entry);
                group.uret_cookies.push(cookie(kind::EXIT_URET));
            }
        }
    }
    groups
}

/// Whether the kernel lacks `uprobe_multi` links (before Linux 6.6): it
/// refuses the program's expected attach type or the link type with
/// EINVAL, or says EOPNOTSUPP, as aya's own fallback test reads it.
fn multi_unsupported(e: &ProbeError) -> bool {
    let source = std::error::Error::source(e);
    let Some(multi) = source.and_then(|s| s.downcast_ref::<multi::MultiError>()) else {
        return false;
    };
    multi.is("BPF_PROG_LOAD", &[libc::EINVAL, libc::EOPNOTSUPP])
        || multi.is("BPF_LINK_CREATE", &[libc::EINVAL, libc::EOPNOTSUPP])
}

fn map_info_id(map: &aya::maps::Map) -> Result<u32, ProbeError> {
    use aya::maps::Map;
    let data: &MapData = match map {
        Map::RingBuf(d)
        | Map::PerCpuArray(d)
        | Map::HashMap(d)
        | Map::LruHashMap(d)
        | Map::Array(d) => d,
        _ => unreachable!("ferret's object has only ring buffer, array and (LRU) hash maps"),
    };
    data.info()
        .map(|info| info.id())
        .map_err(|e| ProbeError::Map {
            map: "(info)",
            source: e.into(),
        })
}

fn map_err(map: &'static str, e: impl std::error::Error + Send + Sync + 'static) -> ProbeError {
    ProbeError::Map {
        map,
        source: Box::new(e),
    }
}

fn program_err(
    program: &'static str,
    e: impl std::error::Error + Send + Sync + 'static,
) -> ProbeError {
    ProbeError::Program {
        program,
        source: Box::new(e),
    }
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; raise it so the
/// ring buffer fits. Harmless (and unneeded) on newer kernels.
fn bump_memlock_rlimit() {
    let limit = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads a valid, initialised struct.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const limit) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(call: &'static str, errno: i32) -> multi::MultiError {
        multi::MultiError::Syscall {
            call,
            source: std::io::Error::from_raw_os_error(errno),
            log: String::new(),
        }
    }

    #[test]
    fn a_refusal_for_privilege_is_found_down_the_source_chain() {
        let boxed = program_err(PROBE_PROGRAM, refused("BPF_PROG_LOAD", libc::EPERM));
        assert!(boxed.is_permission_denied());
        let io = map_err(CONFIG_MAP, std::io::Error::from_raw_os_error(libc::EACCES));
        assert!(io.is_permission_denied());
        let other = program_err(PROBE_PROGRAM, refused("BPF_PROG_LOAD", libc::E2BIG));
        assert!(!other.is_permission_denied());
        assert!(!ProbeError::NeedsMultiLinks.is_permission_denied());
    }

    #[test]
    fn the_fallback_to_perf_links_is_decided_by_errno_and_call() {
        let attach = |e| ProbeError::Attach {
            what: "/bin/x".into(),
            source: Box::new(e),
        };
        assert!(multi_unsupported(&program_err(
            PROBE_PROGRAM,
            refused("BPF_PROG_LOAD", libc::EINVAL)
        )));
        assert!(multi_unsupported(&attach(refused(
            "BPF_LINK_CREATE(uprobe_multi)",
            libc::EOPNOTSUPP
        ))));
        assert!(!multi_unsupported(&attach(refused(
            "BPF_LINK_CREATE(uprobe_multi)",
            libc::EPERM
        ))));
        assert!(!multi_unsupported(&map_err(
            CONFIG_MAP,
            std::io::Error::from_raw_os_error(libc::EINVAL)
        )));
    }
}
