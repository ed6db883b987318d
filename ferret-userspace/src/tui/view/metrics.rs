//! The Metrics pane: CPU and resident memory as sparklines with their
//! current values, the thread count, then every other metric the sampler
//! measures, as a scrollable list.

use ratatui::{
    buffer::Buffer,
    layout::Rect,
    style::{Color, Style},
    text::{Line, Span},
    widgets::{Paragraph, Sparkline, SparklineBar, Widget},
};

use super::{pane_block, theme};
use crate::{
    live::MetricPoint,
    tui::{
        app::{App, rows},
        format,
        layout::Pane,
    },
};

/// Width of the label column left of a sparkline.
const LABEL: u16 = 14;

/// The Metrics widget.
pub struct MetricsPane<'a>(pub &'a App);

impl Widget for MetricsPane<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let app = self.0;
        let history = &app.shown.metrics;
        let extra = history
            .latest
            .as_ref()
            .map(|s| format!("{} ({})", s.process_name, s.pid))
            .unwrap_or_default();
        let block = pane_block(app, Pane::Metrics, &extra);
        let inner = block.inner(area);
        block.render(area, buf);
        if inner.height == 0 || inner.width < LABEL + 2 {
            return;
        }
        let Some(latest) = history.latest.as_ref() else {
            super::placeholder(inner, buf, "waiting for the first sample");
            return;
        };
        let spark_rows: u16 = match inner.height {
            11.. => 3,
            7.. => 2,
            _ => 1,
        };
        let points = &history.points;
        let spark_width = usize::from(inner.width - LABEL);
        let window = &points[points.len().saturating_sub(spark_width)..];
        let mut y = inner.y;
        let bottom = inner.y + inner.height;

        // CPU: scaled to the busiest sample in view (at least 10 %), so a
        // mostly idle process still shows its movement.
        let cpu: Vec<Option<u64>> = window
            .iter()
            .map(|p| p.cpu_percent.map(|c| (c * 10.0).round() as u64))
            .collect();
        let peak = window
            .iter()
            .filter_map(|p| p.cpu_percent)
            .fold(0.0f64, f64::max);
        let cpu_now = latest
            .cpu_percent
            .map_or_else(|| "–".to_owned(), |c| format!("{c:.1} %"));
        let lines = [
            Line::from(vec![
                Span::styled("CPU ", theme::HEADING),
                Span::raw(cpu_now),
            ]),
            Line::from(Span::styled(format!("peak {peak:.1} %"), theme::DIM)),
            // Beside CPU: how long its threads waited for one.
            latest.extra[crate::sink::metric::RUN_QUEUE_WAIT].map_or_else(Line::default, |wait| {
                Line::from(Span::styled(format!("wait {wait:.1} %"), theme::DIM))
            }),
        ];
        let rows = spark_rows.min(bottom - y);
        sparkline_block(
            buf,
            Rect::new(inner.x, y, inner.width, rows),
            &lines,
            &cpu,
            ((peak.max(10.0)) * 10.0).round() as u64,
            Color::Green,
        );
        y += rows;
        if y >= bottom {
            return;
        }

        // RSS: drawn above the lowest value in view, so that a few MiB of
        // movement on a large heap is visible; the range says how much.
        let (low, high) = window
            .iter()
            .filter_map(|p| p.rss_bytes)
            .fold((u64::MAX, 0), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let rss: Vec<Option<u64>> = window
            .iter()
            .map(|p: &MetricPoint| p.rss_bytes.map(|v| v.saturating_sub(low) + 1))
            .collect();
        let rss_now = latest
            .rss_bytes
            .map_or_else(|| "–".to_owned(), format::bytes);
        let range = if high >= low {
            format!("±{}", format::bytes(high - low))
        } else {
            String::new()
        };
        let lines = [
            Line::from(vec![
                Span::styled("RSS ", theme::HEADING),
                Span::raw(rss_now),
            ]),
            Line::from(Span::styled(range, theme::DIM)),
            Line::default(),
        ];
        let rows = spark_rows.min(bottom - y);
        sparkline_block(
            buf,
            Rect::new(inner.x, y, inner.width, rows),
            &lines,
            &rss,
            high.saturating_sub(low) + 1,
            Color::Blue,
        );
        y += rows;
        if y >= bottom {
            return;
        }

        let threads = latest
            .threads
            .map_or_else(|| "–".to_owned(), |t| t.to_string());
        Paragraph::new(Line::from(vec![
            Span::styled("threads ", theme::HEADING),
            Span::raw(threads),
        ]))
        .render(Rect::new(inner.x, y, inner.width, 1), buf);
        y += 1;
        if y >= bottom {
            return;
        }

        let list = rows::metric_lines(latest);
        let offset = app.cursors[Pane::Metrics.index()].offset;
        // Labels get what the values (up to 11 columns) leave.
        let label_width = (list.iter().map(|(l, _)| l.len()).max().unwrap_or(0) + 1)
            .min(usize::from(inner.width).saturating_sub(11));
        let lines: Vec<Line> = list
            .iter()
            .skip(offset)
            .take(usize::from(bottom - y))
            .map(|(label, value)| {
                let style = if value == "unavailable" {
                    theme::DIM
                } else {
                    Style::new()
                };
                Line::from(vec![
                    Span::styled(
                        format!(
                            "{:<label_width$}",
                            format::truncate(label, label_width.saturating_sub(1))
                        ),
                        theme::DIM,
                    ),
                    Span::styled(value.clone(), style),
                ])
            })
            .collect();
        Paragraph::new(lines).render(Rect::new(inner.x, y, inner.width, bottom - y), buf);
    }
}

/// Labels on the left (as many lines as fit), the sparkline on the right,
/// newest sample at the right edge.
fn sparkline_block(
    buf: &mut Buffer,
    area: Rect,
    labels: &[Line<'static>],
    data: &[Option<u64>],
    max: u64,
    color: Color,
) {
    if area.height == 0 {
        return;
    }
    let label_area = Rect::new(area.x, area.y, LABEL.min(area.width), area.height);
    Paragraph::new(labels[..usize::from(area.height).min(labels.len())].to_vec())
        .render(label_area, buf);
    let spark_area = Rect::new(
        area.x + LABEL,
        area.y,
        area.width.saturating_sub(LABEL),
        area.height,
    );
    // Right-align: pad the left with absent bars when there is less
    // history than width.
    let pad = usize::from(spark_area.width).saturating_sub(data.len());
    let bars = std::iter::repeat_n(SparklineBar::from(None::<u64>), pad)
        .chain(data.iter().map(|&v| SparklineBar::from(v)));
    Sparkline::default()
        .data(bars)
        .max(max.max(1))
        .style(Style::new().fg(color))
        .absent_value_symbol(" ")
        .render(spark_area, buf);
}
