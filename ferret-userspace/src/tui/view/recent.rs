//! The Recent Activity pane: finished calls, newest first.

use ratatui::{
    buffer::Buffer,
    layout::Rect,
    style::Style,
    text::{Line, Span},
    widgets::{Paragraph, Widget},
};

use super::{highlighted, pane_block, placeholder, position, row_style, theme};
use crate::{
    live::FinishedCall,
    trace::SpanStatus,
    tui::{app::App, format, layout::Pane},
};

const TIME: usize = 12;
const THREAD: usize = 16;
const DURATION: usize = 7;
const STATUS: usize = 7;

/// The Recent Activity widget.
pub struct RecentPane<'a>(pub &'a App);

/// Which optional columns fit in `width`.
fn columns(width: usize) -> (bool, bool) {
    (width >= 56, width >= 44)
}

impl Widget for RecentPane<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let app = self.0;
        let shown = &app.shown;
        let block = pane_block(app, Pane::Recent, &position(app, Pane::Recent));
        let inner = block.inner(area);
        block.render(area, buf);
        if inner.height == 0 {
            return;
        }
        let width = usize::from(inner.width);
        let (show_time, show_thread) = columns(width);
        let fixed = DURATION
            + 1
            + STATUS
            + if show_time { TIME + 1 } else { 0 }
            + if show_thread { THREAD + 1 } else { 0 };
        let name_width = width.saturating_sub(fixed + 1).max(8);

        let heading = format!(
            "{}{}{:<name_width$} {:>DURATION$} {:<STATUS$}",
            if show_time {
                format!("{:<TIME$} ", "ended")
            } else {
                String::new()
            },
            if show_thread {
                format!("{:<THREAD$} ", "thread")
            } else {
                String::new()
            },
            "function",
            "took",
            "status"
        );
        Paragraph::new(Span::styled(heading, theme::HEADING))
            .render(Rect::new(inner.x, inner.y, inner.width, 1), buf);
        let body = Rect::new(inner.x, inner.y + 1, inner.width, inner.height - 1);
        if app.recent_rows.is_empty() {
            let text = if !app.active_filter().is_empty() && !shown.recent.is_empty() {
                "no finished call matches the filter"
            } else {
                "no call has finished yet"
            };
            placeholder(body, buf, text);
            return;
        }
        let cursor = app.cursors[Pane::Recent.index()];
        let filter = app.active_filter();
        let offset = shown.session.local_offset_ns;
        let lines: Vec<Line> = app
            .recent_rows
            .iter()
            .enumerate()
            .skip(cursor.offset)
            .take(usize::from(body.height))
            .map(|(index, &i)| {
                let call: &FinishedCall = &shown.recent[i];
                let mut spans = Vec::new();
                if show_time {
                    spans.push(Span::styled(
                        format!("{} ", format::time_of_day(call.end_ns as i64 + offset)),
                        theme::DIM,
                    ));
                }
                if show_thread {
                    spans.push(Span::raw(format!(
                        "{:<THREAD$} ",
                        format::thread(&call.thread_name, call.tid, THREAD)
                    )));
                }
                let name = format::function_name(shown.function_name(call.function), name_width);
                let pad = name_width.saturating_sub(name.chars().count());
                spans.extend(highlighted(&name, filter, Style::new()));
                spans.push(Span::raw(" ".repeat(pad + 1)));
                spans.push(Span::raw(format!(
                    "{:>DURATION$} ",
                    format::duration(call.duration_ns())
                )));
                let status_style = match call.status {
                    SpanStatus::Ok => theme::OK,
                    SpanStatus::Unwound => theme::UNWOUND,
                    SpanStatus::Open => theme::OPEN,
                };
                spans.push(Span::styled(
                    format!("{:<STATUS$}", call.status.as_str()),
                    status_style,
                ));
                Line::from(spans).style(row_style(app, Pane::Recent, index))
            })
            .collect();
        Paragraph::new(lines).render(body, buf);
    }
}
