//! From a target and patterns to a list of probe points: open the modules,
//! select functions, choose how exits are observed, and say what was chosen.

use std::{
    collections::HashMap,
    ffi::OsString,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{Context as _, Result, bail};

use crate::{
    cli::{ExitMode, ProbeConfig, Target},
    probe::{ExitProbes, ProbePoint},
    symbols::{self, Function, Module, UnwindPolicy, debuginfo::DebugSearch},
    target::{self, Launched, ProcessInfo, Redirect},
    trace::FunctionInfo,
};

/// The process to trace, resolved but not yet attached.
pub enum ResolvedTarget {
    /// An existing process.
    Pid(ProcessInfo),
    /// A command to launch: resolved executable and argv.
    Command {
        /// Executable path.
        exe: PathBuf,
        /// argv.
        args: Vec<OsString>,
    },
}

impl ResolvedTarget {
    /// Checks that the pid exists, or finds the command.
    pub fn resolve(target: &Target) -> Result<Self> {
        match target {
            Target::Pid(pid) => Ok(Self::Pid(target::process_info(*pid)?)),
            Target::Command(args) => {
                let exe = target::resolve_command(&args[0])?;
                Ok(Self::Command {
                    exe,
                    args: args.clone(),
                })
            }
        }
    }

    /// Human description for metadata and messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Pid(info) => format!("pid {} ({})", info.pid, info.cmdline),
            Self::Command { args, .. } => args
                .iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    /// Opens the executable and the shared libraries patterns may address:
    /// those mapped by a running process, or for a command those the dynamic
    /// loader will load (DT_NEEDED, resolved as ld.so would).
    pub fn modules(&self, need_libraries: bool) -> Result<(Module, Vec<Module>)> {
        match self {
            Self::Pid(info) => {
                let exe = open_module(&target::path_in_process(info.pid, &info.exe), &info.exe)?;
                let mut libs = Vec::new();
                if need_libraries {
                    let maps = std::fs::read_to_string(format!("/proc/{}/maps", info.pid))
                        .with_context(|| format!("reading /proc/{}/maps", info.pid))?;
                    for path in symbols::parse_maps_executables(&maps) {
                        if path == info.exe {
                            continue;
                        }
                        let real = target::path_in_process(info.pid, &path);
                        match open_module(&real, &path) {
                            Ok(m) => libs.push(m),
                            Err(e) => eprintln!("ferret: skipping {}: {e:#}", path.display()),
                        }
                    }
                }
                Ok((exe, libs))
            }
            Self::Command { exe, .. } => {
                let exe_module = open_module(exe, exe)?;
                let mut libs = Vec::new();
                if need_libraries {
                    let ld_path = std::env::var("LD_LIBRARY_PATH").ok();
                    let (found, missing) = symbols::resolve_needed(&exe_module, ld_path.as_deref());
                    for name in missing {
                        eprintln!("ferret: warning: shared library {name} not found");
                    }
                    for path in found {
                        match open_module(&path, &path) {
                            Ok(m) => libs.push(m),
                            Err(e) => eprintln!("ferret: skipping {}: {e:#}", path.display()),
                        }
                    }
                }
                Ok((exe_module, libs))
            }
        }
    }
}

/// Opens `real` (the path ferret and the kernel use) for a module the target
/// knows as `shown`.
fn open_module(real: &Path, shown: &Path) -> Result<Module> {
    let module = Module::open(real).with_context(|| format!("reading {}", shown.display()))?;
    Ok(module)
}

/// A probe plan that must not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// `--exit-probes uretprobe` asked for uretprobes in a Go program.
    #[error(
        "--exit-probes uretprobe would kill {module}: it is a Go program, and Go's runtime \
         dies (`unknown caller pc`) on the return addresses uretprobes replace when it moves \
         a goroutine's stack"
    )]
    UretprobeInGo {
        /// The module, as the user knows it.
        module: String,
    },
}

/// How a module's exits are observed.
#[derive(Clone, Copy)]
enum ModuleExits {
    Ret,
    Uretprobe,
    /// uretprobes, except for directly recursive functions: the kernel keeps
    /// at most 64 pending uretprobes per thread and drops deeper exits.
    UretprobeUnlessRecursive,
}

/// The functions chosen and their probes.
pub struct Plan {
    /// Function `i` has cookie id `i`. Go programs' recovery markers (see
    /// [`ProbePoint::go_recovery`]) follow the functions chosen at the
    /// start; functions traced later from the dashboard come after them.
    pub points: Vec<ProbePoint>,
    /// Names and modules, indexed like `points`.
    pub functions: Arc<[FunctionInfo]>,
    /// One line per module on how its exits are observed.
    pub exit_notes: Vec<String>,
}

/// Selects functions and plans their probes. `shown_path` maps a module's
/// real path to the path shown to the user (they differ for `/proc/PID/root`).
pub fn plan(target: &ResolvedTarget, config: &ProbeConfig) -> Result<Plan> {
    // Every module opened from here on, the stall symbolizer's included,
    // finds its debug file this way.
    DebugSearch::from_env(&config.debug_dirs).install();
    if config.includes.is_empty() {
        // No `-s`: the session samples, and functions are traced later
        // (from the dashboard) or not at all.
        return Ok(Plan {
            points: Vec::new(),
            functions: Arc::from([]),
            exit_notes: Vec::new(),
        });
    }
    let need_libraries = config
        .includes
        .iter()
        .chain(&config.excludes)
        .any(|p| p.library.is_some());
    let (exe, libs) = target.modules(need_libraries)?;
    let selection = symbols::select(&exe, &libs, &config.includes, &config.excludes)?;
    report_skipped(&selection.skipped);
    if selection.functions.is_empty() {
        bail!("no probe-able function matched (all matches were skipped)");
    }
    let modules: Vec<&Module> = std::iter::once(&exe).chain(libs.iter()).collect();
    let shown = |path: &Path| -> String { shown_path(target, path) };

    let mut points = Vec::with_capacity(selection.functions.len());
    let mut infos = Vec::with_capacity(selection.functions.len());
    let mut exit_notes = Vec::new();
    let mut unprobeable = Vec::new();
    let mut entry_only: Vec<String> = Vec::new();
    let mut recovery_marks = Vec::new();
    for module in &modules {
        let functions: Vec<&Function> = selection
            .functions
            .iter()
            .filter(|f| f.module == module.path)
            .collect();
        if functions.is_empty() {
            continue;
        }
        report_symbol_source(module);
        let go = module.go();
        if go.is_some() && config.exit_mode == ExitMode::Uretprobe {
            return Err(PlanError::UretprobeInGo {
                module: shown(&module.path),
            }
            .into());
        }
        let go_layout = register_abi_layout(module);
        if let Some(go) = go {
            exit_notes.push(go_note(&shown(&module.path), go, go_layout.as_ref()));
        }
        let goid = go_layout.as_ref().and_then(readable_goid);
        recovery_marks.extend(go_markers(module, go_layout.as_ref(), true));
        let (ret_mode, why) = module_exits(config.exit_mode, module);
        let mut counts = [0usize; 3];
        for function in functions {
            let goid_offset = goid
                .filter(|_| module.is_go_function(function))
                .unwrap_or(0);
            let (point, entry_only_here) =
                match probe_point(module, function, ret_mode, goid_offset)? {
                    Ok(planned) => planned,
                    Err(why) => {
                        unprobeable.push(format!("{} ({why})", function.name));
                        continue;
                    }
                };
            if entry_only_here {
                // No return address to hijack (the entry point's slot holds
                // argc) and nothing to probe on the way out: entry only.
                entry_only.push(function.name.clone());
                counts[2] += 1;
            } else {
                counts[usize::from(matches!(point.exits, ExitProbes::Instructions(_)))] += 1;
            }
            points.push(point);
            infos.push(FunctionInfo {
                name: function.name.clone(),
                module: shown(&module.path),
            });
        }
        let [uret, ret, none] = counts;
        exit_notes.push(format!(
            "{}: {} function{}; exits by return-instruction probes for {ret}, uretprobes for \
             {uret}{} ({why})",
            shown(&module.path),
            ret + uret + none,
            if ret + uret + none == 1 { "" } else { "s" },
            if none > 0 {
                format!(", none for {none} that never return")
            } else {
                String::new()
            },
        ));
    }
    if !entry_only.is_empty() {
        let shown_names: Vec<&str> = entry_only.iter().take(5).map(String::as_str).collect();
        exit_notes.push(format!(
            "{} function{} never return{} normally (the program's entry point, or no return \
             instruction): entry probes only, so nothing touches their stack: {}{}",
            entry_only.len(),
            if entry_only.len() == 1 { "" } else { "s" },
            if entry_only.len() == 1 { "s" } else { "" },
            shown_names.join(", "),
            if entry_only.len() > shown_names.len() {
                format!(", and {} more", entry_only.len() - shown_names.len())
            } else {
                String::new()
            }
        ));
    }
    if !unprobeable.is_empty() {
        eprintln!(
            "ferret: skipped {} function{} whose entry cannot carry a uprobe: {}",
            unprobeable.len(),
            if unprobeable.len() == 1 { "" } else { "s" },
            unprobeable.join(", ")
        );
    }
    if points.is_empty() {
        bail!("none of the matching functions can be probed");
    }
    for (point, path, name) in recovery_marks {
        points.push(point);
        infos.push(FunctionInfo {
            module: shown(&path),
            name: name.to_owned(),
        });
    }
    Ok(Plan {
        points,
        functions: infos.into(),
        exit_notes,
    })
}

impl Plan {
    /// How many functions are traced (the probe points that are not Go
    /// recovery markers).
    pub fn traced_functions(&self) -> usize {
        self.points.iter().filter(|p| !p.is_go_marker()).count()
    }
}

/// A Go module's marker probes (see [`ProbePoint::is_go_marker`]), for
/// when the first of its functions is traced: the recovery mark, and, with
/// `hand_offs` (the split is on), the scheduler hand-off probes that keep
/// each goroutine's own counters. Without them a goroutine's counters
/// would grow with its thread's while other goroutines ran there. None
/// where the goroutine cannot be read.
fn go_markers(
    module: &Module,
    layout: Option<&symbols::go::GLayout>,
    hand_offs: bool,
) -> Vec<(ProbePoint, Arc<Path>, &'static str)> {
    let Some(goid) = layout.and_then(readable_goid) else {
        return Vec::new();
    };
    let mut marks: Vec<_> = go_recovery_mark(module, goid).into_iter().collect();
    if hand_offs {
        let waitreason = layout.and_then(|l| l.waitreason);
        let probes = go_hand_offs(module, goid, waitreason.unwrap_or(0));
        if waitreason.is_some() && !probes.is_empty() {
            // A parked goroutine's time is then named by its reason
            // (`go:chan receive`), not its number.
            if let Some(reasons) = module.go_wait_reasons() {
                crate::trace::BlockedIn::register_go_wait_reasons(&reasons);
            }
        }
        marks.extend(probes);
    }
    marks
}

/// The probe on a Go program's `runtime.deferreturn` entry, which a
/// function that recovered a panic calls as it resumes: without it, the
/// frames the panic unwound would only end when the goroutine next returned
/// from an outer traced call or called one at their depth, late, and calls
/// made in between would nest under the dead frames.
fn go_recovery_mark(
    module: &Module,
    goid_offset: u16,
) -> Option<(ProbePoint, Arc<Path>, &'static str)> {
    let (functions, _) = module.functions().ok()?;
    let deferreturn = functions
        .iter()
        .find(|f| f.name == "runtime.deferreturn" && module.is_go_function(f))?;
    let entry = module.entry_probe(deferreturn).ok()?;
    Some((
        ProbePoint {
            path: module.path.clone(),
            entry,
            exits: ExitProbes::Instructions(Vec::new()),
            goid_offset,
            go_recovery: true,
            go_sched: 0,
            go_waitreason_offset: 0,
        },
        module.path.clone(),
        "runtime.deferreturn",
    ))
}

/// The probes on a Go program's scheduler hand-off points
/// ([`symbols::go::HAND_OFFS`]) that it has.
fn go_hand_offs(
    module: &Module,
    goid_offset: u16,
    waitreason: u16,
) -> Vec<(ProbePoint, Arc<Path>, &'static str)> {
    symbols::go::HAND_OFFS
        .iter()
        .filter_map(|&(name, op)| {
            let function = module.go_hand_off(name)?;
            let entry = module.entry_probe(&function).ok()?;
            Some((
                ProbePoint {
                    path: module.path.clone(),
                    entry,
                    exits: ExitProbes::Instructions(Vec::new()),
                    goid_offset,
                    go_recovery: false,
                    go_sched: op,
                    go_waitreason_offset: waitreason,
                },
                module.path.clone(),
                name,
            ))
        })
        .collect()
}

/// What the user is told about a Go module: its version and where the
/// goroutine comes from, or why calls are kept per thread instead.
fn go_note(
    module: &str,
    go: &symbols::go::GoBinary,
    layout: Option<&symbols::go::GLayout>,
) -> String {
    let version = go.version.as_deref().unwrap_or("Go of an unknown version");
    match layout {
        Some(layout)
            if layout.goid % 8 != 0
                || u64::from(layout.goid) > ferret_common::GO_G_MAX_GOID_OFFSET =>
        {
            format!(
                "{module}: {version}; WARNING: g.goid is at offset {}, beyond what the probes \
                 read, so calls are kept per thread and a goroutine that changes threads \
                 mid-call mis-nests",
                layout.goid
            )
        }
        Some(layout) => format!(
            "{module}: {version}; calls kept per goroutine (g.goid at offset {}, from {})",
            layout.goid, layout.source
        ),
        None if !go.has_register_abi() => format!(
            "{module}: {version}; WARNING: before Go 1.17 the goroutine is not in a register, \
             so calls are kept per thread and a goroutine that changes threads mid-call mis-nests"
        ),
        None => format!(
            "{module}: {version}; WARNING: no DWARF and no known layout for runtime.g, so calls \
             are kept per thread and a goroutine that changes threads mid-call mis-nests"
        ),
    }
}

/// How a module's exits are observed under `mode`, and why, in words.
fn module_exits(mode: ExitMode, module: &Module) -> (ModuleExits, String) {
    if module.go().is_some() {
        return (
            ModuleExits::Ret,
            "a Go program: uretprobes would kill it when its runtime moves a stack".to_owned(),
        );
    }
    match (mode, module.unwind_policy()) {
        (ExitMode::Ret, _) => (ModuleExits::Ret, "--exit-probes ret".to_owned()),
        (ExitMode::Uretprobe, UnwindPolicy::MayUnwind { reason }) => (
            ModuleExits::Uretprobe,
            format!(
                "--exit-probes uretprobe; WARNING: the target may unwind ({reason}), \
                 which aborts it"
            ),
        ),
        (ExitMode::Uretprobe, UnwindPolicy::CannotUnwind) => {
            (ModuleExits::Uretprobe, "--exit-probes uretprobe".to_owned())
        }
        (ExitMode::Auto, UnwindPolicy::MayUnwind { reason }) => {
            (ModuleExits::Ret, format!("it may unwind: {reason}"))
        }
        (ExitMode::Auto, UnwindPolicy::CannotUnwind) => (
            ModuleExits::UretprobeUnlessRecursive,
            "it cannot unwind, so uretprobes, which cost less; \
             return instructions for functions that call themselves"
                .to_owned(),
        ),
    }
}

/// Where a Go module's probes read the goroutine id (`runtime.g`'s `goid`
/// offset), from its `runtime.g` layout, when the window the probe copies
/// covers it (see GO_G_WORDS).
fn readable_goid(layout: &symbols::go::GLayout) -> Option<u16> {
    Some(layout.goid)
        .filter(|&goid| goid % 8 == 0 && u64::from(goid) <= ferret_common::GO_G_MAX_GOID_OFFSET)
}

/// The layout of `runtime.g` the probes use in a Go program built with the
/// register ABI (read from the binary's DWARF, or known for its release);
/// `None` otherwise, and calls are then kept per thread.
fn register_abi_layout(module: &Module) -> Option<symbols::go::GLayout> {
    module
        .go()
        .filter(|go| go.has_register_abi())
        .and_then(|_| module.go_layout())
}

/// The probes for `function` of `module`: its entry, and its exits as
/// `ret_mode` says, reading the goroutine at `goid_offset` (0: not Go).
/// The flag is set when the function never returns and is probed by its
/// entry alone. `Ok(Err(why))` when it cannot carry the probes it needs.
fn probe_point(
    module: &Module,
    function: &Function,
    ret_mode: ModuleExits,
    goid_offset: u16,
) -> Result<Result<(ProbePoint, bool), String>> {
    let entry = match module.entry_probe(function) {
        Ok(entry) => entry,
        Err(refusal) => return Ok(Err(refusal.to_string())),
    };
    let point = |exits| ProbePoint {
        path: module.path.clone(),
        entry,
        exits,
        goid_offset,
        go_recovery: false,
        go_sched: 0,
        go_waitreason_offset: 0,
    };
    let all = module
        .exit_points(function)
        .with_context(|| format!("decoding {}", function.name))?;
    if never_returns(module, function, &all) {
        return Ok(Ok((point(ExitProbes::Instructions(Vec::new())), true)));
    }
    let use_ret = match ret_mode {
        ModuleExits::Ret => true,
        ModuleExits::Uretprobe => false,
        ModuleExits::UretprobeUnlessRecursive => module.calls_itself(function),
    };
    let exits = if use_ret {
        let accepted: Vec<u64> = all
            .iter()
            .copied()
            .filter(|&offset| module.accepts_probe_at(offset))
            .collect();
        if accepted.len() < all.len() {
            eprintln!(
                "ferret: warning: {} has {} exit instruction(s) that cannot carry a uprobe; \
                 calls leaving through them will end as `unwound`",
                function.name,
                all.len() - accepted.len()
            );
        }
        if accepted.contains(&entry) && module.go().is_some() {
            // A bare `ret` in Go, where no uretprobe may go.
            return Ok(Err("its body is a bare return".to_owned()));
        } else if accepted.contains(&entry) {
            // A function that is a bare `ret`: an entry and an exit
            // probe at one address would race; nothing can unwind
            // through it, so a uretprobe is safe.
            ExitProbes::Uretprobe
        } else {
            ExitProbes::Instructions(accepted)
        }
    } else {
        ExitProbes::Uretprobe
    };
    Ok(Ok((point(exits), false)))
}

/// Probe points for functions chosen while the session runs (traced from
/// the dashboard): each with its module's exit policy, as at the start,
/// and, for each Go module among them, its marker probes as at the start
/// (the hand-off probes only while `split_on`), for the caller to add if
/// it has not yet. Returns the points and their table entries, in order,
/// and the functions refused (`name (why)`).
pub(crate) fn plan_more(
    target: &ResolvedTarget,
    exit_mode: ExitMode,
    chosen: &[(&Module, &Function)],
    split_on: bool,
) -> Result<(Vec<ProbePoint>, Vec<FunctionInfo>, Vec<String>)> {
    let (mut points, mut infos, mut refused) = (Vec::new(), Vec::new(), Vec::new());
    // Per module, once: both read the binary (its debug file, its DWARF).
    let mut per_module: HashMap<&Path, (ModuleExits, Option<u16>)> = HashMap::new();
    for &(module, function) in chosen {
        let &mut (ret_mode, goid) = per_module.entry(&module.path).or_insert_with(|| {
            let layout = register_abi_layout(module);
            for (point, path, name) in go_markers(module, layout.as_ref(), split_on) {
                points.push(point);
                infos.push(FunctionInfo {
                    name: name.to_owned(),
                    module: shown_path(target, &path),
                });
            }
            (
                module_exits(exit_mode, module).0,
                layout.as_ref().and_then(readable_goid),
            )
        });
        let goid_offset = goid
            .filter(|_| module.is_go_function(function))
            .unwrap_or(0);
        match probe_point(module, function, ret_mode, goid_offset)? {
            Ok((point, _)) => {
                points.push(point);
                infos.push(FunctionInfo {
                    name: function.name.clone(),
                    module: shown_path(target, &module.path),
                });
            }
            Err(why) => refused.push(format!("{} ({why})", function.name)),
        }
    }
    Ok((points, infos, refused))
}

/// Whether calls of `f` never come back through a return: the program's
/// entry point (the kernel jumps to it; the slot a uretprobe would hijack
/// holds `argc`), the `_init`/`_fini` stubs the loader runs, and functions
/// with no return or tail-jump instruction at all (`exit`, `abort`,
/// `__restore_rt`, what the compiler marked noreturn). A uretprobe on
/// them could only ever corrupt the stack, and there is no exit to probe.
fn never_returns(module: &Module, f: &Function, exits: &[u64]) -> bool {
    exits.is_empty()
        || module.is_entry_point(f)
        || matches!(f.name.as_str(), "_start" | "_init" | "_fini")
}

fn shown_path(target: &ResolvedTarget, path: &Path) -> String {
    if let ResolvedTarget::Pid(info) = target {
        let root = PathBuf::from(format!("/proc/{}/root", info.pid));
        if let Ok(rest) = path.strip_prefix(&root) {
            return Path::new("/").join(rest).display().to_string();
        }
    }
    path.display().to_string()
}

/// One line when a module's symbols come from elsewhere than its own
/// `.symtab`: its debug file, or only its exports.
fn report_symbol_source(module: &Module) {
    if let Some(debug) = module.symbols_debug_file() {
        eprintln!(
            "ferret: {}: symbols from {} ({})",
            module.shown_path().display(),
            debug.path.display(),
            debug.via
        );
    } else if let Some(stripped) = module.stripped_error() {
        eprintln!("ferret: warning: {stripped}; only its exported functions can be traced");
    } else if module.is_stripped() && module.go().is_some() {
        eprintln!(
            "ferret: {}: no symbol table; Go function names from .gopclntab",
            module.shown_path().display()
        );
    }
}

fn report_skipped(skipped: &[symbols::Skipped]) {
    // Split-off parts (`.cold`) are probed as part of their function.
    let skipped: Vec<&symbols::Skipped> = skipped
        .iter()
        .filter(|s| s.reason != symbols::SkipReason::Fragment)
        .collect();
    if skipped.is_empty() {
        return;
    }
    let shown: Vec<String> = skipped
        .iter()
        .take(5)
        .map(|s| format!("{} ({})", s.name, s.reason))
        .collect();
    let more = skipped.len().saturating_sub(shown.len());
    eprintln!(
        "ferret: skipped {} matching function{} that cannot be probed: {}{}",
        skipped.len(),
        if skipped.len() == 1 { "" } else { "s" },
        shown.join(", "),
        if more > 0 {
            format!(", and {more} more")
        } else {
            String::new()
        },
    );
}

/// A target made ready to run: launched and held at the gate, or a pid.
pub enum Started {
    /// An existing process.
    Pid(u32),
    /// A command held before exec.
    Launched(Launched),
}

impl Started {
    /// The pid.
    pub fn pid(&self) -> u32 {
        match self {
            Self::Pid(pid) => *pid,
            Self::Launched(l) => l.pid,
        }
    }
}

/// Forks a command (held at the gate, its streams optionally redirected),
/// or just names the pid.
pub fn start(target: &ResolvedTarget, redirect: Option<&Redirect>) -> Result<Started> {
    match target {
        ResolvedTarget::Pid(info) => Ok(Started::Pid(info.pid)),
        ResolvedTarget::Command { exe, args } => {
            Ok(Started::Launched(Launched::spawn(exe, args, redirect)?))
        }
    }
}
