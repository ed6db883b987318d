//! The Stalls pane, shown while threads are stalled: one entry per group of
//! threads stuck in the same place (a thread stuck alone, or `×N threads`
//! of a pool at rest), deadlocks and lock holders first: the stalled
//! function, where in it, for how long, and what it waits for. Right
//! expands a group into its threads; Enter opens where a thread is stuck,
//! or a group's shared stack and its threads.

use std::fmt::Write as _;

use ratatui::{
    buffer::Buffer,
    layout::Rect,
    style::Style,
    text::{Line, Span},
    widgets::{Paragraph, Widget},
};

use super::{highlighted, pane_block, placeholder, position, row_style, theme};
use crate::{
    stall::StallReport,
    tui::{
        app::{App, StallRow},
        format,
        layout::Pane,
    },
};

const THREAD: usize = 16;
const ELAPSED: usize = 8;

/// The Stalls widget.
pub struct StallsPane<'a>(pub &'a App);

/// How long a stall has lasted at `now`: `12.3s`, or `≥12.3s` for a call
/// already running when ferret attached (its start is unknown).
pub fn stalled_for(report: &StallReport, now_ns: u64) -> String {
    let elapsed = format::elapsed(now_ns.saturating_sub(report.since_ns));
    if report.before_attach {
        format!("≥{elapsed}")
    } else {
        elapsed
    }
}

/// What the thread waits for, short: `sleeping in futex — DEADLOCK with tid
/// 4246 (http-worker-3)`. The popup has the whole of it.
fn short_wait(report: &StallReport) -> (String, bool) {
    // A goroutine's is the runtime's word for it, already short.
    if report.goroutine.is_some() {
        return (report.wait.clone(), false);
    }
    let mut out = report.state.to_string();
    if let Some(call) = &report.syscall {
        out.push_str(" in ");
        out.push_str(call.split('(').next().unwrap_or(call));
    }
    let named = |tid: u32, name: &Option<String>| match name {
        Some(name) => format!("tid {tid} ({name})"),
        None => format!("tid {tid}"),
    };
    match &report.lock {
        _ if report.deadlock.len() > 1 => {
            let (tid, name) = &report.deadlock[1];
            let _ = write!(out, " — DEADLOCK with tid {tid} ({name})");
            return (out, true);
        }
        _ if report.deadlock.len() == 1 => {
            out.push_str(" — DEADLOCK: waits for a lock it holds itself");
            return (out, true);
        }
        Some(lock) if lock.kind == crate::stall::WaitKind::ThreadExit => {
            if let Some(owner) = lock.owner {
                let _ = write!(out, " — joins {}", named(owner, &lock.owner_name));
            }
        }
        Some(lock) => {
            let _ = write!(out, " — {}", lock.kind.noun());
            if let Some(owner) = lock.owner {
                let probably = if lock.probable { "probably " } else { "" };
                let _ = write!(out, " {probably}held by {}", named(owner, &lock.owner_name));
            }
        }
        None => {}
    }
    (out, false)
}

/// `db.rs:88`: where in the stalled function the thread is, if known.
fn location(report: &StallReport) -> Option<String> {
    let frame = report
        .frames
        .iter()
        .find(|f| f.function.as_deref() == Some(report.function_name.as_str()))?;
    let file = frame.file.as_deref()?;
    let base = file.rsplit('/').next().unwrap_or(file);
    Some(match frame.line {
        Some(line) => format!("{base}:{line}"),
        None => base.to_owned(),
    })
}

/// One entry of the pane, as drawn: who (a thread, or `×N threads`), the
/// stall it shows (a group's first thread), and the wait line's tail.
struct Entry<'a> {
    /// `×N threads`, for a group of several.
    count: Option<String>,
    report: &'a StallReport,
    /// A group of several: its tids (on the wait line), and whether it is
    /// expanded (`▾`) or folded (`▸`).
    group: Option<(String, bool)>,
    /// A thread listed under its group.
    member: bool,
}

fn entry(shown: &crate::live::Snapshot, row: StallRow) -> Entry<'_> {
    match row {
        StallRow::Group { group, expanded } => {
            let g = &shown.stall_groups[group];
            let report = &shown.stalls[g.members[0]];
            if g.members.len() == 1 {
                return Entry {
                    count: None,
                    report,
                    group: None,
                    member: false,
                };
            }
            let members: Vec<&StallReport> = g.members.iter().map(|&i| &shown.stalls[i]).collect();
            let noun = if report.goroutine.is_some() {
                "goroutines"
            } else {
                "threads"
            };
            Entry {
                count: Some(format!(
                    "{} ×{} {noun}",
                    if expanded { "▾" } else { "▸" },
                    g.members.len()
                )),
                report,
                group: Some((crate::stall::stall_ids(&members, 8), expanded)),
                member: false,
            }
        }
        StallRow::Thread { stall, .. } => {
            let report = &shown.stalls[stall];
            Entry {
                count: None,
                report,
                group: None,
                member: true,
            }
        }
    }
}

impl Entry<'_> {
    /// Who, in at most `width` columns: the thread (its tid kept), or the
    /// group's count.
    fn who(&self, width: usize) -> String {
        match &self.count {
            Some(count) => format::truncate(count, width),
            None if self.member => format!("  {}", who(self.report, width.saturating_sub(2))),
            None => who(self.report, width),
        }
    }
}

impl Widget for StallsPane<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let app = self.0;
        let shown = &app.shown;
        let threshold = format::elapsed(shown.session.stall_ns);
        let groups = shown.stall_groups.len();
        let mut extra = if groups < shown.stalls.len() {
            format!(
                "{} quiet > {threshold} in {groups} place{}",
                shown.stalls.len(),
                if groups == 1 { "" } else { "s" }
            )
        } else {
            format!("{} quiet > {threshold}", shown.stalls.len())
        };
        let pos = position(app, Pane::Stalls);
        if !pos.is_empty() {
            extra = format!("{extra} · {pos}");
        }
        let block = pane_block(app, Pane::Stalls, &extra);
        let inner = block.inner(area);
        block.render(area, buf);
        if app.stall_rows.is_empty() {
            placeholder(inner, buf, "no stalled call matches the filter");
            return;
        }
        let width = usize::from(inner.width);
        let now = app.clock_ns();
        let filter = app.active_filter();
        let cursor = app.cursors[Pane::Stalls.index()];
        let rows = usize::from(inner.height) / Pane::Stalls.lines_per_row();
        let visible: Vec<(usize, Entry)> = app
            .stall_rows
            .iter()
            .enumerate()
            .skip(cursor.offset)
            .take(rows.max(1))
            .map(|(index, &row)| (index, entry(shown, row)))
            .collect();
        // Threads padded to the longest shown (at most a third of the width).
        let who_width = visible
            .iter()
            .map(|(_, e)| e.who(THREAD).chars().count())
            .max()
            .unwrap_or(0)
            .min(width / 3);
        let mut lines: Vec<Line> = Vec::new();
        for (index, e) in visible {
            let report = e.report;
            let style = row_style(app, Pane::Stalls, index);
            let elapsed = format!(" {:>ELAPSED$}", stalled_for(report, now));
            let head = [
                Span::styled(if e.member { "  " } else { "⚠ " }, theme::ALARM),
                Span::raw(format!("{:<who_width$} ", e.who(who_width))),
            ];
            // The function name first; where in it, if there is room too.
            let room = width.saturating_sub(
                head.iter().map(Span::width).sum::<usize>() + elapsed.chars().count(),
            );
            let full = report.function_name.chars().count();
            let at = location(report)
                .map(|l| format!(" at {l}"))
                .filter(|at| full + at.chars().count() <= room)
                .unwrap_or_default();
            let name_width = room.saturating_sub(at.chars().count()).max(8);
            let name = format::function_name(&report.function_name, name_width);
            let mut first: Vec<Span> = head.into();
            if e.member {
                // Its group's row above says what and where.
                first.push(Span::raw(" ".repeat(room)));
            } else {
                first.extend(highlighted(&name, filter, theme::ALARM));
                let pad = room.saturating_sub(name.chars().count() + at.chars().count());
                first.push(Span::styled(at, theme::DIM));
                first.push(Span::raw(" ".repeat(pad)));
            }
            first.push(Span::styled(elapsed, theme::ALARM));
            lines.push(Line::from(first).style(style));
            let (mut wait, deadlock) = short_wait(report);
            if let Some((tids, _)) = &e.group {
                wait = format!("{wait} — {tids}");
            }
            let wait_style = if deadlock { theme::ALARM } else { Style::new() };
            let indent = if e.member { "    " } else { "  " };
            lines.push(
                Line::from(vec![
                    Span::raw(indent),
                    Span::styled(
                        format::truncate(&wait, width.saturating_sub(indent.len())),
                        wait_style,
                    ),
                ])
                .style(style),
            );
        }
        Paragraph::new(lines).render(inner, buf);
    }
}

/// Who is stalled: `name:tid`, or for a goroutine `goroutine N`.
fn who(report: &crate::stall::StallReport, width: usize) -> String {
    match report.goroutine {
        Some(goid) => format::truncate(&format!("goroutine {goid}"), width),
        None => format::thread(&report.thread_name, report.tid, width),
    }
}
