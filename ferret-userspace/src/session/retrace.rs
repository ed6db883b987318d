//! Tracing chosen while the session runs: the dashboard asks
//! ([`ProbeRequest`]) to trace the function under a sampled address, the
//! functions a pattern matches, or to detach or re-trace a function of the
//! table, and the session's loop does it between two drains of the ring
//! buffer.
//!
//! The probe table only grows. A function traced live is appended (ids are
//! indices, and spans already written name the old ones), a detached one
//! keeps its entry and joins the overhead guard's set of detached
//! functions, so the guard's own swaps leave it out too, and tracing it
//! again takes it out of that set. Every change is one generation swap of
//! the `uprobe_multi` links ([`Engine::reattach_without`]): the new
//! generation's links are created, the kernel side switches generation,
//! the old links close. A call made after the switch is reported by the
//! new links only, so the functions that stay traced keep exact counts,
//! and a newly traced one's spans begin at the switch. Consumers hear of a
//! grown table ([`Consumer::functions_changed`]) before any span can name
//! a new entry.
//!
//! A call already running when its function is traced has no entry event:
//! its exit is an orphan, ignored. A call running when its function is
//! detached gets no exit event: its span ends as the reconstructor ends
//! any span whose exit was lost (when its thread's stack moves past it,
//! as `unwound`; at the end of the session, as `open`).

use std::{collections::HashSet, sync::Arc};

use anyhow::Result;

use super::{
    Consumer,
    guard::OverheadGuard,
    pipeline::Pipeline,
    plan::{self, Plan, ResolvedTarget},
};
use crate::{
    cli::ExitMode,
    clock::monotonic_ns,
    cost::{self, Calibration, EntryKind},
    probe::Engine,
    sample::CodeAt,
    stall::Watchdog,
    symbols::{self, Function, Module, Pattern},
    target,
    trace::{FunctionCost, FunctionInfo},
};

/// What the dashboard asks of the session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeRequest {
    /// Trace the function whose code holds `code` (the Hot pane's `t`);
    /// `name` is what the user saw there.
    TraceAt {
        /// A sampled address, as the process maps it.
        code: CodeAt,
        /// The name shown.
        name: String,
    },
    /// Trace every function a pattern matches (the `+` prompt), as `-s`
    /// would.
    TracePattern(String),
    /// Trace again a function of the table that was detached.
    Retrace(u32),
    /// Stop tracing a function of the table.
    Detach(u32),
}

/// One change, for the recording's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Change {
    ts_ns: u64,
    traced: bool,
    function: String,
    module: String,
}

/// The session's part that traces and detaches while it runs.
pub struct Retrace {
    pid: u32,
    exit_mode: ExitMode,
    excludes: Vec<Pattern>,
    /// The running process's executable and libraries, opened at the first
    /// request (again when a request names a module not among them).
    modules: Option<(Module, Vec<Module>)>,
    changes: Vec<Change>,
}

/// What a request changes: the session's parts it touches.
pub struct Parts<'a> {
    /// The links.
    pub engine: &'a mut Engine,
    /// The probe table and its points.
    pub plan: &'a mut Plan,
    /// Which functions are detached.
    pub guard: &'a mut OverheadGuard,
    /// Costs per function, and where notices go.
    pub pipeline: &'a mut Pipeline,
    /// Names functions in stall reports.
    pub watchdog: Option<&'a mut Watchdog>,
    /// The probes' cost, for the new functions' costs.
    pub calibration: &'a Calibration,
    /// How each point's entry probe fires.
    pub entry_kinds: &'a mut Vec<EntryKind>,
}

impl Retrace {
    /// For process `pid`, traced with `exit_mode` and `-x` `excludes`.
    pub fn new(pid: u32, exit_mode: ExitMode, excludes: Vec<Pattern>) -> Self {
        Self {
            pid,
            exit_mode,
            excludes,
            modules: None,
            changes: Vec::new(),
        }
    }

    /// Does what `request` asks; what happened (or why not) becomes a
    /// notice. Only a consumer's error is an error.
    pub fn apply(
        &mut self,
        request: ProbeRequest,
        parts: Parts<'_>,
        consumers: &mut [&mut dyn Consumer],
    ) -> Result<()> {
        match request {
            ProbeRequest::TraceAt { code, name } => match self.function_at(&code) {
                Ok(chosen) => {
                    let note = if chosen.1.name == name {
                        String::new()
                    } else {
                        format!(" (`{name}` is inlined into it)")
                    };
                    self.add(&[chosen], &note, parts, consumers)?;
                }
                Err(why) => parts
                    .pipeline
                    .notices
                    .push(format!("cannot trace `{name}`: {why}")),
            },
            ProbeRequest::TracePattern(text) => match self.matching(&text) {
                Ok(chosen) => self.add(&chosen, "", parts, consumers)?,
                Err(why) => parts
                    .pipeline
                    .notices
                    .push(format!("cannot trace {text}: {why}")),
            },
            ProbeRequest::Retrace(id) => self.set_traced(&[id], true, parts),
            ProbeRequest::Detach(id) => self.set_traced(&[id], false, parts),
        }
        Ok(())
    }

    /// The changes so far, JSON for [`crate::sink::meta_key::PROBE_CHANGES`].
    pub fn metadata(&self) -> String {
        serde_json::Value::Array(
            self.changes
                .iter()
                .map(|c| {
                    serde_json::json!({
                        "ts_ns": c.ts_ns,
                        "change": if c.traced { "trace" } else { "detach" },
                        "function": c.function,
                        "module": c.module,
                    })
                })
                .collect(),
        )
        .to_string()
    }

    /// The running process's modules, opened once.
    fn modules(&mut self, fresh: bool) -> Result<&(Module, Vec<Module>), String> {
        if fresh || self.modules.is_none() {
            let info = target::process_info(self.pid).map_err(|e| e.to_string())?;
            let modules = ResolvedTarget::Pid(info)
                .modules(true)
                .map_err(|e| format!("{e:#}"))?;
            self.modules = Some(modules);
        }
        Ok(self.modules.as_ref().expect("opened above"))
    }

    /// The function whose code holds `code`, and its module.
    fn function_at(&mut self, code: &CodeAt) -> Result<(usize, Function), String> {
        let find = |(exe, libs): &(Module, Vec<Module>)| {
            std::iter::once(exe)
                .chain(libs)
                .position(|m| m.shown_path().display().to_string() == *code.module)
        };
        let index = match find(self.modules(false)?) {
            Some(index) => index,
            None => find(self.modules(true)?)
                .ok_or_else(|| format!("{} is not mapped by pid {}", code.module, self.pid))?,
        };
        let (exe, libs) = self.modules(false)?;
        let module = std::iter::once(exe).chain(libs).nth(index).expect("found");
        let (functions, _) = module.functions().map_err(|e| e.to_string())?;
        functions
            .into_iter()
            .find(|f| {
                (f.file_offset..f.file_offset.saturating_add(f.size)).contains(&code.file_offset)
            })
            .map(|f| (index, f))
            .ok_or_else(|| {
                format!(
                    "no function symbol of {} covers offset {:#x}",
                    code.module, code.file_offset
                )
            })
    }

    /// The functions `text` matches, as `-s text` would choose them.
    fn matching(&mut self, text: &str) -> Result<Vec<(usize, Function)>, String> {
        let pattern: Pattern = text.trim().parse().map_err(|e| format!("{e}"))?;
        let excludes = self.excludes.clone();
        let (exe, libs) = self.modules(true)?;
        let selection = symbols::select(exe, libs, &[pattern], &excludes).map_err(|e| {
            anyhow::Error::new(e)
                .chain()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(": ")
        })?;
        if selection.functions.is_empty() {
            return Err("every match is a symbol that cannot be probed".to_owned());
        }
        let modules: Vec<&Module> = std::iter::once(exe).chain(libs).collect();
        Ok(selection
            .functions
            .into_iter()
            .filter_map(|f| {
                let index = modules.iter().position(|m| m.path == f.module)?;
                Some((index, f))
            })
            .collect())
    }

    /// Appends the `chosen` functions not yet in the table, re-traces those
    /// in it but detached, and swaps the links once.
    fn add(
        &mut self,
        chosen: &[(usize, Function)],
        note: &str,
        parts: Parts<'_>,
        consumers: &mut [&mut dyn Consumer],
    ) -> Result<()> {
        let Parts {
            engine,
            plan,
            guard,
            pipeline,
            watchdog,
            calibration,
            entry_kinds,
        } = parts;
        let Some((exe, libs)) = self.modules.as_ref() else {
            return Ok(());
        };
        let modules: Vec<&Module> = std::iter::once(exe).chain(libs).collect();
        let chosen: Vec<(&Module, &Function)> =
            chosen.iter().map(|(i, f)| (modules[*i], f)).collect();
        let target = ResolvedTarget::Pid(match target::process_info(self.pid) {
            Ok(info) => info,
            Err(e) => {
                pipeline.notices.push(format!("cannot trace: {e}"));
                return Ok(());
            }
        });
        let split_on = engine.sched_on();
        let (points, infos, refused) =
            match plan::plan_more(&target, self.exit_mode, &chosen, split_on) {
                Ok(planned) => planned,
                Err(e) => {
                    pipeline.notices.push(format!("cannot trace: {e:#}"));
                    return Ok(());
                }
            };
        // Already in the table: the same module and entry.
        let known = |info: &FunctionInfo, entry: u64| {
            plan.functions
                .iter()
                .zip(&plan.points)
                .position(|(f, p)| f.module == info.module && p.entry == entry)
        };
        let mut disabled = guard.disabled().clone();
        let (mut retraced, mut already) = (Vec::new(), 0usize);
        let (mut new_points, mut new_infos) = (Vec::new(), Vec::new());
        let mut markers = 0usize;
        for (point, info) in points.into_iter().zip(infos) {
            if point.is_go_marker() {
                // A Go module's markers go in with its first function
                // traced, once; detached by the budget, they stay so.
                if known(&info, point.entry).is_none() {
                    new_points.push(point);
                    new_infos.push(info);
                    markers += 1;
                }
                continue;
            }
            match known(&info, point.entry) {
                Some(id) if disabled.remove(&(id as u32)) => retraced.push(id as u32),
                Some(_) => already += 1,
                None => {
                    new_points.push(point);
                    new_infos.push(info);
                }
            }
        }
        if !refused.is_empty() {
            pipeline.notices.push(format!(
                "cannot trace {}: the entry cannot carry a uprobe",
                refused.join(", ")
            ));
        }
        if new_points.len() == markers && retraced.is_empty() {
            if already > 0 {
                pipeline.notices.push(format!(
                    "{} already traced",
                    if already == 1 {
                        "it is".to_owned()
                    } else {
                        format!("all {already} are")
                    }
                ));
            }
            return Ok(());
        }
        let first_new = plan.points.len();
        if !new_points.is_empty() {
            entry_kinds.extend(cost::entry_kinds(&new_points));
            plan.points.extend(new_points);
            let mut table = plan.functions.to_vec();
            table.extend(new_infos);
            plan.functions = table.into();
            let costs: Arc<[FunctionCost]> = calibration.costs(&plan.points, entry_kinds).into();
            pipeline.reconstructor.set_costs(costs.clone());
            guard.set_costs(costs);
            guard.grow(plan.points.len());
            if let Some(watchdog) = watchdog {
                watchdog.set_functions(plan.functions.clone());
            }
            for consumer in consumers.iter_mut() {
                consumer.functions_changed(&plan.functions)?;
            }
        }
        // What the user chose, for the log and the notice: not the markers.
        let ids: Vec<u32> = retraced
            .iter()
            .copied()
            .chain((first_new..plan.points.len()).map(|id| id as u32))
            .filter(|&id| !plan.points[id as usize].is_go_marker())
            .collect();
        let pid = self.pid;
        match engine.reattach_without(&plan.points, &disabled, || {
            crate::target::freeze::running_threads(pid)
        }) {
            Ok(took) => {
                guard.set_disabled(disabled);
                let ts_ns = monotonic_ns();
                log(&mut self.changes, plan, &ids, true, ts_ns);
                pipeline.notices.push(format!(
                    "tracing {}{note} from now on (probes re-attached in {:.1} ms)",
                    names(plan, &ids),
                    took.as_secs_f64() * 1e3
                ));
            }
            Err(e) => {
                // The new entries stay in the table, never attached: they
                // count as detached, so no later swap attaches them.
                let mut disabled = guard.disabled().clone();
                disabled.extend((first_new..plan.points.len()).map(|id| id as u32));
                guard.set_disabled(disabled);
                pipeline.notices.push(format!(
                    "cannot trace {}: {}",
                    names(plan, &ids),
                    anyhow::Error::new(e)
                ));
            }
        }
        Ok(())
    }

    /// Detaches (`traced` false) or re-traces functions of the table.
    fn set_traced(&mut self, ids: &[u32], traced: bool, parts: Parts<'_>) {
        let Parts {
            engine,
            plan,
            guard,
            pipeline,
            ..
        } = parts;
        let mut disabled: HashSet<u32> = guard.disabled().clone();
        let ids: Vec<u32> = ids
            .iter()
            .copied()
            .filter(|&id| (id as usize) < plan.points.len())
            .filter(|id| {
                if traced {
                    disabled.remove(id)
                } else {
                    disabled.insert(*id)
                }
            })
            .collect();
        if ids.is_empty() {
            pipeline.notices.push(format!(
                "nothing to do: already {}",
                if traced { "traced" } else { "detached" }
            ));
            return;
        }
        let pid = self.pid;
        match engine.reattach_without(&plan.points, &disabled, || {
            crate::target::freeze::running_threads(pid)
        }) {
            Ok(took) => {
                guard.set_disabled(disabled);
                log(&mut self.changes, plan, &ids, traced, monotonic_ns());
                pipeline.notices.push(format!(
                    "{} {} (probes re-attached in {:.1} ms)",
                    if traced {
                        "tracing again"
                    } else {
                        "stopped tracing"
                    },
                    names(plan, &ids),
                    took.as_secs_f64() * 1e3
                ));
            }
            Err(e) => pipeline.notices.push(format!(
                "cannot {} {}: {}",
                if traced { "trace" } else { "detach" },
                names(plan, &ids),
                anyhow::Error::new(e)
            )),
        }
    }
}

/// Notes that `ids` were traced (or detached) at `ts_ns`.
fn log(changes: &mut Vec<Change>, plan: &Plan, ids: &[u32], traced: bool, ts_ns: u64) {
    for &id in ids {
        if let Some(info) = plan.functions.get(id as usize) {
            changes.push(Change {
                ts_ns,
                traced,
                function: info.name.clone(),
                module: info.module.clone(),
            });
        }
    }
}

/// `` `a` ``, `` `a`, `b` `` or `` `a` and 11 more ``.
fn names(plan: &Plan, ids: &[u32]) -> String {
    let name = |id: u32| {
        plan.functions
            .get(id as usize)
            .map_or_else(|| format!("#{id}"), |f| format!("`{}`", f.name))
    };
    match ids {
        [] => "nothing".to_owned(),
        [one] => name(*one),
        [a, b] => format!("{}, {}", name(*a), name(*b)),
        [first, rest @ ..] => format!("{} and {} more", name(*first), rest.len()),
    }
}
