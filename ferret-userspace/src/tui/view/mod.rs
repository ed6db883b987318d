//! The views: pure functions of [`App`] onto a ratatui buffer.
//!
//! `impl Widget for &App` draws the whole screen; each pane is a small
//! widget over the same `&App`. Nothing here changes state or talks to the
//! terminal, so the snapshot tests draw synthetic states into a
//! `TestBackend` and compare text.

mod footer;
mod functions;
mod header;
pub(crate) mod hot;
pub(crate) mod metrics;
mod popup;
mod recent;
mod stack;
pub(crate) mod stalls;
#[cfg(test)]
mod tests;

use ratatui::{
    buffer::Buffer,
    layout::{Alignment, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, BorderType, Paragraph, Widget},
};

use super::{
    app::App,
    layout::{MIN_HEIGHT, MIN_WIDTH, Pane},
};

/// The few styles the dashboard uses, in one place.
pub(crate) mod theme {
    use ratatui::style::{Color, Modifier, Style};

    /// Pane border with focus.
    pub const FOCUSED: Style = Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD);
    /// Pane border without focus.
    pub const BORDER: Style = Style::new().fg(Color::DarkGray);
    /// Column headers.
    pub const HEADING: Style = Style::new().fg(Color::Gray).add_modifier(Modifier::BOLD);
    /// Secondary text.
    pub const DIM: Style = Style::new().fg(Color::DarkGray);
    /// The selected row in the focused pane.
    pub const SELECTED: Style = Style::new().add_modifier(Modifier::REVERSED);
    /// The selected row in another pane.
    pub const SELECTED_UNFOCUSED: Style = Style::new().bg(Color::DarkGray);
    /// A call left without returning.
    pub const UNWOUND: Style = Style::new().fg(Color::Magenta).add_modifier(Modifier::BOLD);
    /// A call still open when tracing stopped.
    pub const OPEN: Style = Style::new().fg(Color::Cyan);
    /// A call that returned.
    pub const OK: Style = Style::new().fg(Color::Green);
    /// Something is wrong (lost events, a span past `--stall`).
    pub const ALARM: Style = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);
    /// Something may be wrong.
    pub const WARN: Style = Style::new().fg(Color::Yellow);
    /// Text matching the filter.
    pub const MATCH: Style = Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD);
    /// Key names in the footer and help.
    pub const KEY: Style = Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD);
}

impl Widget for &App {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let areas = self.areas();
        if areas.too_small {
            too_small(area, buf);
            return;
        }
        header::Header(self).render(areas.header, buf);
        for pane in Pane::ALL {
            let rect = areas.pane(pane);
            if rect.is_empty() {
                continue;
            }
            match pane {
                Pane::Stack => stack::StackPane(self).render(rect, buf),
                Pane::Recent => recent::RecentPane(self).render(rect, buf),
                Pane::Functions => functions::FunctionsPane(self).render(rect, buf),
                Pane::Metrics => metrics::MetricsPane(self).render(rect, buf),
                Pane::Stalls => stalls::StallsPane(self).render(rect, buf),
                Pane::Hot => hot::HotPane(self).render(rect, buf),
            }
        }
        footer::Footer(self).render(areas.footer, buf);
        if let Some(p) = &self.popup {
            popup::PopupView {
                app: self,
                popup: p,
            }
            .render(area, buf);
        }
    }
}

fn too_small(area: Rect, buf: &mut Buffer) {
    let text = vec![
        Line::from(Span::styled("ferret watch", theme::HEADING)),
        Line::from(format!(
            "terminal {}×{} is too small: needs {MIN_WIDTH}×{MIN_HEIGHT}",
            area.width, area.height
        )),
        Line::from(Span::styled("q quits", theme::DIM)),
    ];
    Paragraph::new(text)
        .alignment(Alignment::Center)
        .wrap(ratatui::widgets::Wrap { trim: true })
        .render(area, buf);
}

/// A pane's frame: rounded border, title with `extra` (counts, position),
/// highlighted when focused.
fn pane_block(app: &App, pane: Pane, extra: &str) -> Block<'static> {
    let focused = app.focus == pane;
    let style = if focused {
        theme::FOCUSED
    } else {
        theme::BORDER
    };
    let title_style = if focused {
        theme::FOCUSED
    } else {
        Style::new().fg(Color::Gray)
    };
    let mut title = vec![Span::styled(format!(" {} ", pane.title()), title_style)];
    if !extra.is_empty() {
        title.push(Span::styled(format!("{extra} "), theme::DIM));
    }
    Block::bordered()
        .border_type(BorderType::Rounded)
        .border_style(style)
        .title(Line::from(title))
}

/// The style of row `index` of `pane`: highlighted when selected.
fn row_style(app: &App, pane: Pane, index: usize) -> Style {
    if app.cursors[pane.index()].selected != index || app.rows_in(pane) == 0 {
        Style::new()
    } else if app.focus == pane {
        theme::SELECTED
    } else {
        theme::SELECTED_UNFOCUSED
    }
}

/// "12/500" while scrolled or selected below the top; empty otherwise.
fn position(app: &App, pane: Pane) -> String {
    let len = app.rows_in(pane);
    let selected = app.cursors[pane.index()].selected;
    if len == 0 || (selected == 0 && app.cursors[pane.index()].offset == 0) {
        String::new()
    } else {
        format!("{}/{len}", selected + 1)
    }
}

/// A line of empty-state text, dim and centred.
fn placeholder(area: Rect, buf: &mut Buffer, text: &str) {
    if area.height == 0 {
        return;
    }
    let y = area.y + area.height.saturating_sub(1) / 2;
    Paragraph::new(Span::styled(
        text.to_owned(),
        theme::DIM.add_modifier(Modifier::ITALIC),
    ))
    .alignment(Alignment::Center)
    .render(Rect::new(area.x, y, area.width, 1), buf);
}

/// Spans for `name` with the parts matching `filter` highlighted.
fn highlighted(name: &str, filter: &str, base: Style) -> Vec<Span<'static>> {
    if filter.is_empty() || !name.is_ascii() || !filter.is_ascii() {
        return vec![Span::styled(name.to_owned(), base)];
    }
    let lower = name.to_ascii_lowercase();
    let needle = filter.to_ascii_lowercase();
    let mut spans = Vec::new();
    let mut at = 0;
    while let Some(found) = lower[at..].find(&needle) {
        let start = at + found;
        if start > at {
            spans.push(Span::styled(name[at..start].to_owned(), base));
        }
        let end = start + needle.len();
        spans.push(Span::styled(
            name[start..end].to_owned(),
            base.patch(theme::MATCH),
        ));
        at = end;
    }
    if at < name.len() {
        spans.push(Span::styled(name[at..].to_owned(), base));
    }
    spans
}
