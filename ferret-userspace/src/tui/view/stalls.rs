//! The Stalls pane, shown while threads are stalled: one row per stalled
//! thread (its thread, the stalled function, for how long, and what it
//! waits for); Enter opens where it is stuck, stack and all.

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
    tui::{app::App, format, layout::Pane},
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

impl Widget for StallsPane<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let app = self.0;
        let shown = &app.shown;
        let threshold = format::elapsed(shown.session.stall_ns);
        let mut extra = format!("{} quiet > {threshold}", shown.stalls.len());
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
        // Threads padded to the longest shown (at most THREAD columns).
        let thread_width = app
            .stall_rows
            .iter()
            .map(|&i| who(&shown.stalls[i], THREAD).chars().count())
            .max()
            .unwrap_or(0)
            .min(width / 3);
        let now = app.clock_ns();
        let filter = app.active_filter();
        let cursor = app.cursors[Pane::Stalls.index()];
        let rows = usize::from(inner.height) / Pane::Stalls.lines_per_row();
        let mut lines: Vec<Line> = Vec::new();
        for (index, &i) in app
            .stall_rows
            .iter()
            .enumerate()
            .skip(cursor.offset)
            .take(rows.max(1))
        {
            let report = &shown.stalls[i];
            let style = row_style(app, Pane::Stalls, index);
            let elapsed = format!(" {:>ELAPSED$}", stalled_for(report, now));
            let head = [
                Span::styled("⚠ ", theme::ALARM),
                Span::raw(format!("{:<thread_width$} ", who(report, thread_width))),
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
            first.extend(highlighted(&name, filter, theme::ALARM));
            let pad = room.saturating_sub(name.chars().count() + at.chars().count());
            first.push(Span::styled(at, theme::DIM));
            first.push(Span::raw(" ".repeat(pad)));
            first.push(Span::styled(elapsed, theme::ALARM));
            lines.push(Line::from(first).style(style));
            let (wait, deadlock) = short_wait(report);
            let wait_style = if deadlock { theme::ALARM } else { Style::new() };
            lines.push(
                Line::from(vec![
                    Span::raw("  "),
                    Span::styled(format::truncate(&wait, width.saturating_sub(2)), wait_style),
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
