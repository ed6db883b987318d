//! The Functions pane: per-function statistics, sortable.
//!
//! Columns drop out by priority as the pane narrows (p50 first, the call
//! count last) so the function name keeps room to be read.

use ratatui::{
    buffer::Buffer,
    layout::Rect,
    style::Style,
    text::{Line, Span},
    widgets::{Paragraph, Widget},
};

use super::{highlighted, pane_block, placeholder, position, row_style, theme};
use crate::{
    live::FunctionRow,
    tui::{
        app::{App, SortKey},
        format,
        layout::Pane,
    },
};

/// A statistic column.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Column {
    Calls,
    Rate,
    Total,
    SelfTime,
    Mean,
    P50,
    P95,
    P99,
    Max,
    /// The share of the calls' time on a CPU (shown when the recording
    /// knows it).
    Cpu,
}

/// Display order.
const ORDER: [Column; 10] = [
    Column::Calls,
    Column::Rate,
    Column::Total,
    Column::SelfTime,
    Column::Cpu,
    Column::Mean,
    Column::P50,
    Column::P95,
    Column::P99,
    Column::Max,
];

/// Which columns survive first as the pane narrows.
const PRIORITY: [Column; 10] = [
    Column::Calls,
    Column::Total,
    Column::Cpu,
    Column::P95,
    Column::Max,
    Column::Rate,
    Column::SelfTime,
    Column::Mean,
    Column::P99,
    Column::P50,
];

/// Columns are this wide (plus one space).
const WIDTH: usize = 7;
/// The name column keeps at least this much before a column is added.
const MIN_NAME: usize = 18;

impl Column {
    fn label(self) -> &'static str {
        match self {
            Self::Calls => "calls",
            Self::Rate => "calls/s",
            Self::Total => "total",
            Self::SelfTime => "self",
            Self::Mean => "mean",
            Self::P50 => "p50",
            Self::P95 => "p95",
            Self::P99 => "p99",
            Self::Max => "max",
            Self::Cpu => "cpu%",
        }
    }

    /// Whether the table can be sorted by it.
    fn sortable(self) -> bool {
        !matches!(self, Self::P50 | Self::Cpu)
    }

    fn sort_key(self) -> SortKey {
        match self {
            Self::Calls => SortKey::Calls,
            Self::Rate => SortKey::Rate,
            Self::Total => SortKey::Total,
            Self::SelfTime => SortKey::SelfTime,
            Self::Mean => SortKey::Mean,
            // Not sort keys: never marked.
            Self::P50 | Self::Cpu => SortKey::Name,
            Self::P95 => SortKey::P95,
            Self::P99 => SortKey::P99,
            Self::Max => SortKey::Max,
        }
    }

    fn value(self, row: &FunctionRow) -> String {
        match self {
            Self::Calls => format::count(row.calls),
            Self::Rate => format::rate(row.calls_per_s),
            Self::Total => format::duration(row.total_ns),
            Self::SelfTime => format::duration(row.self_ns),
            Self::Mean => format::duration(row.mean_ns),
            Self::P50 => format::duration(row.p50_ns),
            Self::P95 => format::duration(row.p95_ns),
            Self::P99 => format::duration(row.p99_ns),
            Self::Max => format::duration(row.max_ns),
            Self::Cpu => row
                .cpu_share
                .map_or_else(|| "–".to_owned(), |share| format!("{:.0}%", share * 100.0)),
        }
    }
}

/// The columns that fit in `width`, in display order; the CPU share only
/// `with_cpu` (some function's split is known).
fn fitting(width: usize, sort: SortKey, with_cpu: bool) -> Vec<Column> {
    let mut chosen = Vec::new();
    let mut left = width.saturating_sub(MIN_NAME);
    for column in PRIORITY
        .into_iter()
        .filter(|&c| with_cpu || c != Column::Cpu)
    {
        if left < WIDTH + 1 {
            break;
        }
        chosen.push(column);
        left -= WIDTH + 1;
    }
    // The column being sorted by is always shown (in place of the last one).
    if let Some(sorted) = PRIORITY
        .into_iter()
        .find(|c| c.sort_key() == sort && c.sortable())
        && !chosen.contains(&sorted)
        && !chosen.is_empty()
    {
        chosen.pop();
        chosen.push(sorted);
    }
    ORDER.into_iter().filter(|c| chosen.contains(c)).collect()
}

/// The Functions widget.
pub struct FunctionsPane<'a>(pub &'a App);

impl Widget for FunctionsPane<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let app = self.0;
        let shown = &app.shown;
        let mut extra = format!("by {} ▼", app.sort.label());
        let pos = position(app, Pane::Functions);
        if !pos.is_empty() {
            extra = format!("{extra} · {pos}");
        }
        let block = pane_block(app, Pane::Functions, &extra);
        let inner = block.inner(area);
        block.render(area, buf);
        if inner.height == 0 {
            return;
        }
        let width = usize::from(inner.width);
        let with_cpu = shown.functions.iter().any(|f| f.cpu_share.is_some());
        let columns = fitting(width, app.sort, with_cpu);
        let name_width = width.saturating_sub(columns.len() * (WIDTH + 1));

        let mut heading = vec![Span::styled(
            format!(
                "{:<name_width$}",
                if app.sort == SortKey::Name {
                    "function ▲"
                } else {
                    "function"
                }
            ),
            theme::HEADING,
        )];
        for column in &columns {
            let marked = column.sort_key() == app.sort && column.sortable();
            let label = if marked {
                format!("{}▼", column.label())
            } else {
                column.label().to_owned()
            };
            let style = if marked {
                theme::HEADING.patch(theme::KEY)
            } else {
                theme::HEADING
            };
            heading.push(Span::styled(format!(" {label:>WIDTH$}"), style));
        }
        Paragraph::new(Line::from(heading))
            .render(Rect::new(inner.x, inner.y, inner.width, 1), buf);
        let heading = Pane::Functions.heading_lines() as u16;
        let body = Rect::new(
            inner.x,
            inner.y + heading,
            inner.width,
            inner.height - heading,
        );
        if app.function_rows.is_empty() {
            let text = if !app.active_filter().is_empty() && !shown.functions.is_empty() {
                "no function matches the filter"
            } else {
                "no traced function has returned yet"
            };
            placeholder(body, buf, text);
            return;
        }
        let cursor = app.cursors[Pane::Functions.index()];
        let filter = app.active_filter();
        let lines: Vec<Line> = app
            .function_rows
            .iter()
            .enumerate()
            .skip(cursor.offset)
            .take(usize::from(body.height))
            .map(|(index, &i)| {
                let row = &shown.functions[i];
                // Detached (by the guard or with `d`): its numbers stop
                // growing; say so.
                let detached = app.latest.detached.contains(&row.id);
                let suffix = if detached { " (detached)" } else { "" };
                let name = format::function_name(
                    shown.function_name(row.id),
                    name_width.saturating_sub(1 + suffix.len()),
                );
                let pad = name_width.saturating_sub(name.chars().count() + suffix.chars().count());
                let base = if detached { theme::DIM } else { Style::new() };
                let mut spans = highlighted(&name, filter, base);
                spans.push(Span::styled(suffix, theme::DIM));
                spans.push(Span::raw(" ".repeat(pad)));
                for column in &columns {
                    spans.push(Span::raw(format!(" {:>WIDTH$}", column.value(row))));
                }
                Line::from(spans).style(row_style(app, Pane::Functions, index))
            })
            .collect();
        Paragraph::new(lines).render(body, buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_drop_by_priority_and_keep_the_sorted_one() {
        let wide = fitting(200, SortKey::Total, false);
        assert_eq!(wide.len(), 9);
        let narrow = fitting(18 + 3 * 8, SortKey::Total, false);
        assert!(narrow == [Column::Calls, Column::Total, Column::P95]);
        let sorted = fitting(18 + 3 * 8, SortKey::Mean, false);
        assert!(sorted == [Column::Calls, Column::Total, Column::Mean]);
        assert!(fitting(10, SortKey::Max, false).is_empty());
    }

    #[test]
    fn the_cpu_share_shows_when_a_split_is_known_and_is_never_a_sort_key() {
        assert_eq!(fitting(200, SortKey::Total, true).len(), 10);
        let narrow = fitting(18 + 3 * 8, SortKey::Total, true);
        assert!(narrow == [Column::Calls, Column::Total, Column::Cpu]);
        // Sorted by name, no column is swapped in for it.
        let by_name = fitting(18 + 3 * 8, SortKey::Name, true);
        assert!(by_name == [Column::Calls, Column::Total, Column::Cpu]);
        let row = FunctionRow {
            cpu_share: Some(0.254),
            ..FunctionRow::default()
        };
        assert_eq!(Column::Cpu.value(&row), "25%");
        assert_eq!(Column::Cpu.value(&FunctionRow::default()), "–");
    }
}
