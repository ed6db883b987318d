//! The Hot pane: where the sampled threads spent their CPU time over the
//! last seconds, per function: self share (innermost), total share
//! (anywhere on the stack), module and the hottest line. A `●` marks the
//! functions traced now; `t` traces the selected one.

use ratatui::{
    buffer::Buffer,
    layout::Rect,
    style::Style,
    text::{Line, Span},
    widgets::{Paragraph, Widget},
};

use super::{highlighted, pane_block, placeholder, position, row_style, theme};
use crate::{
    live::HotRow,
    tui::{
        app::{App, HotSort},
        format,
        layout::Pane,
    },
};

/// Width of a share column (`100.0%`).
const SHARE: usize = 6;

/// `12.3%` of `total`.
pub(crate) fn share(count: u64, total: u64) -> String {
    if total == 0 {
        return "-".to_owned();
    }
    format!("{:.1}%", count as f64 * 100.0 / total as f64)
}

/// The module's file name.
fn short_module(row: &HotRow) -> &str {
    row.module
        .as_deref()
        .map_or("?", |m| m.rsplit('/').next().unwrap_or(m))
}

/// Whether the function of `row` is traced now.
pub(crate) fn is_traced(app: &App, row: &HotRow) -> bool {
    let name = row.inlined_into.as_deref().unwrap_or(&row.name);
    app.shown
        .function_id(name, None)
        .is_some_and(|id| !app.shown.detached.contains(&id))
}

/// The Hot widget.
pub struct HotPane<'a>(pub &'a App);

impl Widget for HotPane<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let app = self.0;
        let hot = &app.shown.hot;
        let mut extra = match app.shown.sampling {
            Some(s) if s.hz != s.asked_hz => format!("{} Hz (slowed from {})", s.hz, s.asked_hz),
            Some(s) => format!("{} Hz", s.hz),
            None => String::new(),
        };
        if hot.window_s > 0 {
            extra = format!(
                "{extra} · last {} s · {} samples",
                hot.window_s,
                format::count(hot.samples)
            );
        }
        extra.push_str(match app.hot_sort {
            HotSort::SelfSamples => " · by self ▼",
            HotSort::TotalSamples => " · by total ▼",
        });
        let pos = position(app, Pane::Hot);
        if !pos.is_empty() {
            extra = format!("{extra} · {pos}");
        }
        let block = pane_block(app, Pane::Hot, extra.trim_start_matches(" · "));
        let inner = block.inner(area);
        block.render(area, buf);
        if inner.height == 0 {
            return;
        }
        let width = usize::from(inner.width);
        // self, total, then the name and where it is, sharing the rest.
        let rest = width.saturating_sub(2 * (SHARE + 1) + 2);
        let place_width = if rest >= 40 { rest * 2 / 5 } else { 0 };
        let name_width = rest.saturating_sub(place_width);
        let heading = |text: &str, marked: bool| {
            Span::styled(
                text.to_owned(),
                if marked {
                    theme::HEADING.patch(theme::KEY)
                } else {
                    theme::HEADING
                },
            )
        };
        let by_self = app.hot_sort == HotSort::SelfSamples;
        let mut line = vec![
            heading(
                &format!("{:>SHARE$}", if by_self { "self▼" } else { "self" }),
                by_self,
            ),
            heading(
                &format!(" {:>SHARE$}", if by_self { "total" } else { "total▼" }),
                !by_self,
            ),
            heading(&format!("   {:<name_width$}", "function"), false),
        ];
        if place_width > 0 {
            line.push(heading(
                &format!("{:<place_width$}", "module · line"),
                false,
            ));
        }
        Paragraph::new(Line::from(line)).render(Rect::new(inner.x, inner.y, inner.width, 1), buf);
        let heading = Pane::Hot.heading_lines() as u16;
        let body = Rect::new(
            inner.x,
            inner.y + heading,
            inner.width,
            inner.height - heading,
        );
        if app.hot_rows.is_empty() {
            let text = if app.shown.session.sample_hz == 0 || app.shown.sampling.is_none() {
                "sampling is off (--sample-hz 0, or it could not start)"
            } else if !app.active_filter().is_empty() && !hot.rows.is_empty() {
                "no sampled function matches the filter"
            } else {
                "no samples yet: the target has not been on a CPU lately"
            };
            placeholder(body, buf, text);
            return;
        }
        let cursor = app.cursors[Pane::Hot.index()];
        let filter = app.active_filter();
        let lines: Vec<Line> = app
            .hot_rows
            .iter()
            .enumerate()
            .skip(cursor.offset)
            .take(usize::from(body.height))
            .map(|(index, &i)| {
                let row = &hot.rows[i];
                let mark = if is_traced(app, row) { "● " } else { "  " };
                let name = format::function_name(&row.name, name_width.saturating_sub(1));
                let pad = name_width.saturating_sub(name.chars().count());
                let mut spans = vec![
                    Span::raw(format!("{:>SHARE$}", share(row.self_samples, hot.samples))),
                    Span::styled(
                        format!(" {:>SHARE$}", share(row.total_samples, hot.samples)),
                        theme::DIM,
                    ),
                    Span::raw(" "),
                    Span::styled(mark, theme::OK),
                ];
                spans.extend(highlighted(&name, filter, Style::new()));
                spans.push(Span::raw(" ".repeat(pad)));
                if place_width > 0 {
                    let mut place = short_module(row).to_owned();
                    if let Some(line) = &row.line {
                        place = format!("{place} · {line}");
                    }
                    if row.inlined_into.is_some() {
                        place.push_str(" (inlined)");
                    }
                    spans.push(Span::styled(
                        format::function_name(&place, place_width),
                        theme::DIM,
                    ));
                }
                Line::from(spans).style(row_style(app, Pane::Hot, index))
            })
            .collect();
        Paragraph::new(lines).render(body, buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_percent_of_the_window() {
        assert_eq!(share(1, 3), "33.3%");
        assert_eq!(share(10, 10), "100.0%");
        assert_eq!(share(0, 0), "-");
    }
}
