//! The Live Stack pane: per thread, the spans open right now, nested, each
//! with its elapsed time ticking. A call the stall watchdog found stalled is
//! red and marked `⚠`; its thread says `stalled`. A Go program's calls are
//! grouped by goroutine (with the thread it last ran on); the goroutines
//! with nothing open are only counted, in the title.

use ratatui::{
    buffer::Buffer,
    layout::Rect,
    style::Style,
    text::{Line, Span},
    widgets::{Paragraph, Widget},
};

use super::{highlighted, pane_block, placeholder, position, row_style, theme};
use crate::{
    live::{RunState, ThreadNow, ThreadView},
    tui::{
        app::{App, StackRow},
        format,
        layout::Pane,
    },
};

/// Width of the elapsed column.
const ELAPSED: usize = 8;

/// The Live Stack widget.
pub struct StackPane<'a>(pub &'a App);

impl Widget for StackPane<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let app = self.0;
        let shown = &app.shown;
        let threads = shown.threads.iter().filter(|t| t.goroutine.is_none());
        let busy = threads.clone().filter(|t| !t.frames.is_empty()).count();
        let goroutines = shown.threads.len() - threads.count();
        let open: usize = shown.threads.iter().map(|t| t.frames.len()).sum();
        let mut extra = if goroutines + shown.idle_goroutines > 0 {
            format!(
                "{goroutines} goroutines in calls ({} idle), {open} open",
                shown.idle_goroutines
            )
        } else {
            format!("{busy}/{} threads busy, {open} open", shown.threads.len())
        };
        let pos = position(app, Pane::Stack);
        if !pos.is_empty() {
            extra = format!("{extra} · {pos}");
        }
        let block = pane_block(app, Pane::Stack, &extra);
        let inner = block.inner(area);
        block.render(area, buf);
        if app.stack_rows.is_empty() {
            let text = if !app.active_filter().is_empty() {
                "no open span matches the filter"
            } else if shown.state.ended_ns().is_some() {
                "tracing has ended: nothing is open"
            } else if app.latest.traced() == 0 {
                "nothing traced yet (t in the Hot pane)"
            } else {
                "no thread has entered a traced function yet"
            };
            placeholder(inner, buf, text);
            return;
        }
        let cursor = app.cursors[Pane::Stack.index()];
        let width = usize::from(inner.width);
        let now = app.clock_ns();
        let filter = app.active_filter();
        let lines: Vec<Line> = app
            .stack_rows
            .iter()
            .enumerate()
            .skip(cursor.offset)
            .take(usize::from(inner.height))
            .map(|(index, row)| {
                let style = row_style(app, Pane::Stack, index);
                let line = match *row {
                    StackRow::Thread { thread, collapsed } => {
                        thread_line(app, &shown.threads[thread], collapsed, width, now)
                    }
                    StackRow::Frames {
                        thread,
                        first,
                        len,
                        level,
                        ..
                    } => {
                        let frame = shown.threads[thread].frames[first];
                        let name = shown.function_name(frame.function);
                        let elapsed = now.saturating_sub(frame.start_ns);
                        // Stalled as the watchdog says (quiet inside its
                        // innermost call past --stall), not merely old: a
                        // parent busy calling traced children is not stuck.
                        let frames = &shown.threads[thread].frames;
                        let stalled = shown.stall_of(frames[first + len - 1].span_id).is_some();
                        let style = if stalled { theme::ALARM } else { Style::new() };
                        // A stack is a chain, so "└" is exact at every level;
                        // deep recursion stops indenting at a third of the width.
                        let indent = (2 * level).min(width / 3).max(2);
                        let prefix = format!("{}└ ", " ".repeat(indent - 1));
                        let suffix = if len > 1 {
                            format!(" ×{len}")
                        } else {
                            String::new()
                        };
                        let marker = if stalled { " ⚠" } else { "" };
                        let room = width.saturating_sub(
                            prefix.chars().count()
                                + suffix.len()
                                + marker.chars().count()
                                + ELAPSED
                                + 1,
                        );
                        let mut spans = vec![Span::styled(prefix, theme::DIM)];
                        spans.extend(highlighted(
                            &format::function_name(name, room),
                            filter,
                            style,
                        ));
                        spans.push(Span::styled(suffix, theme::WARN));
                        spans.push(Span::styled(marker, theme::ALARM));
                        let used: usize = spans.iter().map(Span::width).sum();
                        spans.push(Span::raw(
                            " ".repeat(width.saturating_sub(used + ELAPSED).max(1)),
                        ));
                        spans.push(Span::styled(
                            format!("{:>ELAPSED$}", format::elapsed(elapsed)),
                            style,
                        ));
                        Line::from(spans)
                    }
                };
                line.style(style)
            })
            .collect();
        Paragraph::new(lines).render(inner, buf);
    }
}

/// A thread's row: name, tid, and what it is doing (idle, N open, or, when
/// folded, its innermost open function).
fn thread_line(
    app: &App,
    thread: &ThreadView,
    collapsed: bool,
    width: usize,
    now: u64,
) -> Line<'static> {
    let marker = match (thread.frames.is_empty(), collapsed) {
        (true, _) => "  ",
        (false, true) => "▸ ",
        (false, false) => "▾ ",
    };
    let heading = theme::HEADING.remove_modifier(ratatui::style::Modifier::DIM);
    let mut spans = match thread.goroutine {
        Some(goid) => vec![
            Span::styled(marker, theme::DIM),
            Span::styled(format!("goroutine {goid}"), heading),
            Span::styled(format!(" on {} {}", thread.name, thread.tid), theme::DIM),
        ],
        None => vec![
            Span::styled(marker, theme::DIM),
            Span::styled(thread.name.to_string(), heading),
            Span::styled(format!(" {}", thread.tid), theme::DIM),
        ],
    };
    if thread.frames.is_empty() {
        spans.push(Span::styled(" · idle", theme::DIM));
    } else if collapsed {
        let top = thread.frames[thread.frames.len() - 1];
        let name = app.shown.function_name(top.function);
        spans.push(Span::styled(" · in ", theme::DIM));
        let room = width.saturating_sub(spans.iter().map(Span::width).sum::<usize>() + 12);
        spans.push(Span::raw(format::function_name(name, room)));
        spans.push(Span::styled(
            format!(" {}", format::elapsed(now.saturating_sub(top.start_ns))),
            theme::DIM,
        ));
    } else {
        spans.push(Span::styled(
            format!(" · {} open", thread.frames.len()),
            theme::DIM,
        ));
    }
    if app.shown.stall_of_stack(thread).is_some() {
        spans.push(Span::styled(" ⚠ stalled", theme::ALARM));
    }
    if thread.maybe_incomplete {
        spans.push(Span::styled(" ⚠ may be incomplete", theme::WARN));
    }
    // Last, so a narrow pane cuts it rather than the warnings.
    if let Some(now) = thread.now.filter(|_| !thread.frames.is_empty()) {
        spans.push(Span::styled(format!(" · {}", run_state(now)), theme::DIM));
    }
    Line::from(spans)
}

/// What a thread is doing now, and how much of its innermost call's time so
/// far was on a CPU: `running, 97% CPU`, `blocked in futex, 2% CPU`.
fn run_state(now: ThreadNow) -> String {
    let state = match now.state {
        RunState::Running => "running".to_owned(),
        RunState::Runnable => "waiting for a CPU".to_owned(),
        RunState::Blocked(Some(call)) => format!("blocked in {}", call.name()),
        RunState::Blocked(None) => "blocked".to_owned(),
    };
    match now.innermost_cpu_permille {
        Some(permille) => format!("{state}, {}% CPU", (permille + 5) / 10),
        None => state,
    }
}
