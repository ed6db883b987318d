//! The two header lines: what is traced and how it is going.
//!
//! Line one: state badge, pid, command and its log file. Line two:
//! elapsed, lost events
//! (early in the line, so a narrow terminal never cuts them off), stalls,
//! spans sent to an OpenTelemetry collector and unsent, events/s,
//! calls, functions traced (and detached) and exit-probe mode, the
//! sampling rate, log file, Parquet output.

use ratatui::{
    buffer::Buffer,
    layout::Rect,
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Paragraph, Widget},
};

use super::theme;
use crate::{
    live::TargetState,
    tui::{
        app::{App, state_label},
        format,
    },
};

/// The header widget.
pub struct Header<'a>(pub &'a App);

impl Widget for Header<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let app = self.0;
        let shown = &app.shown;
        let latest = &app.latest;
        let session = &shown.session;

        let badge = |text: String, bg: Color| {
            Span::styled(
                format!(" {text} "),
                Style::new()
                    .bg(bg)
                    .fg(Color::Black)
                    .add_modifier(Modifier::BOLD),
            )
        };
        let mut first = vec![Span::styled(
            " ferret ",
            Style::new()
                .fg(Color::Cyan)
                .add_modifier(Modifier::BOLD | Modifier::REVERSED),
        )];
        first.push(Span::raw(" "));
        if app.paused {
            first.push(badge("PAUSED".into(), Color::Yellow));
            first.push(Span::raw(" "));
        }
        // The state comes from the newest snapshot even while paused: the
        // target exiting is news whatever the display shows.
        let state_color = match latest.state {
            TargetState::Live => Color::Green,
            TargetState::Exited { .. } => Color::Red,
            TargetState::Stopped { .. } => Color::Yellow,
        };
        first.push(badge(state_label(&latest.state), state_color));
        first.push(Span::styled(
            format!(" pid {} ", session.pid),
            Style::new().add_modifier(Modifier::BOLD),
        ));
        // The log file of a launched command shares the first line; the
        // command line gives way to it when the terminal is narrow.
        let log = session
            .log
            .as_ref()
            .map(|log| log.display().to_string())
            .unwrap_or_default();
        let used: usize = first.iter().map(Span::width).sum();
        let log_room = if log.is_empty() {
            0
        } else {
            log.chars().count() + 7
        };
        let command_room = usize::from(area.width)
            .saturating_sub(used + log_room)
            .max(12);
        first.push(Span::raw(format::truncate(&session.command, command_room)));
        if !log.is_empty() {
            first.push(Span::styled(" │ log ", theme::DIM));
            first.push(Span::raw(log));
        }

        let sep = || Span::styled(" │ ", theme::DIM);
        let start = session.started_ns;
        let end = latest.state.ended_ns().unwrap_or(app.clock_ns());
        let mut second = vec![Span::raw(format!(
            " ⏱ {}",
            format::elapsed(end.saturating_sub(start))
        ))];
        second.push(sep());
        // Lost events come from the newest snapshot and sit early in the
        // line: never hidden, not even when paused or narrow.
        if latest.lost > 0 {
            second.push(Span::styled(
                format!("⚠ {} events lost", format::count(latest.lost)),
                theme::ALARM,
            ));
        } else {
            second.push(Span::styled("0 lost", theme::DIM));
        }
        // Stalls, like lost events, come from the newest snapshot.
        if !latest.stalls.is_empty() {
            second.push(sep());
            let n = latest.stalls.len();
            let goroutines = latest.stalls.iter().all(|s| s.goroutine.is_some());
            let what = if goroutines { "goroutine" } else { "thread" };
            second.push(Span::styled(
                format!("⚠ {n} {what}{} stalled", if n == 1 { "" } else { "s" }),
                theme::ALARM,
            ));
            if latest.stalls.iter().any(|s| !s.deadlock.is_empty()) {
                second.push(Span::styled(" · DEADLOCK", theme::ALARM));
            }
        }
        // OTLP export, from the newest snapshot: unsent spans are news.
        if let Some(otlp) = latest.otlp {
            second.push(sep());
            second.push(Span::raw(format!("otlp {} sent", format::count(otlp.sent))));
            if otlp.unsent > 0 {
                second.push(Span::styled(
                    format!(" · ⚠ {} unsent", format::count(otlp.unsent)),
                    theme::WARN,
                ));
            }
        }
        if let Some(warning) = &latest.warning {
            second.push(sep());
            second.push(Span::styled(format!("⚠ {warning}"), theme::ALARM));
        }
        // What the session just did (a function traced or detached from
        // the dashboard) is news: before the counters, so a narrow
        // terminal cuts them, not it.
        if let Some(notice) = &latest.notice {
            second.push(sep());
            second.push(Span::styled(notice.clone(), theme::WARN));
        }
        second.push(sep());
        // From the newest snapshot: functions traced or detached live are news.
        let functions = latest.traced();
        second.push(Span::raw(format!(
            "{functions} function{}",
            if functions == 1 { "" } else { "s" },
        )));
        if !latest.detached.is_empty() {
            second.push(Span::styled(
                format!(" ({} detached)", latest.detached.len()),
                theme::DIM,
            ));
        }
        if functions > 0 || !latest.detached.is_empty() {
            second.push(Span::raw(format!(" · exits {}", session.exit_mode)));
        }
        second.push(sep());
        second.push(Span::raw(format!(
            "{} ev/s",
            format::rate(shown.events_per_s)
        )));
        second.push(sep());
        second.push(Span::raw(format!("{} calls", format::count(shown.calls))));
        // ferret's own cost: the guard's estimate against the budget, and
        // how much times were corrected by.
        if let (Some(estimate), budget) = latest.overhead {
            second.push(sep());
            let text = match budget {
                Some(budget) => format!("probes {estimate:.1}%/{budget}%"),
                None => format!("probes {estimate:.1}%"),
            };
            let over = budget.is_some_and(|b| estimate > b);
            second.push(if over {
                Span::styled(text, theme::WARN)
            } else {
                Span::raw(text)
            });
        }
        if let Some(cost) = session.probe_cost_ns {
            second.push(Span::styled(
                format!(" · times −≤{}/call", format::duration(cost as u64)),
                theme::DIM,
            ));
        }
        if let Some(sampling) = latest.sampling {
            second.push(sep());
            second.push(Span::raw(format!("sampling {} Hz", sampling.hz)));
        }
        if let Some(output) = &session.output {
            second.push(sep());
            second.push(Span::styled("→ ", theme::DIM));
            second.push(Span::raw(output.display().to_string()));
        }
        Paragraph::new(vec![Line::from(first), Line::from(second)]).render(area, buf);
    }
}
