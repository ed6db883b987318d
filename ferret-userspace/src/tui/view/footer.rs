//! The footer: the main keys, or the filter being typed.

use ratatui::{
    buffer::Buffer,
    layout::Rect,
    style::Style,
    text::{Line, Span},
    widgets::{Paragraph, Widget},
};

use super::theme;
use crate::tui::{app::App, layout::Pane};

/// The footer widget.
pub struct Footer<'a>(pub &'a App);

impl Widget for Footer<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let app = self.0;
        let mut spans = Vec::new();
        if let Some(text) = &app.editing {
            spans.push(Span::styled(" / ", theme::KEY));
            spans.push(Span::raw("filter functions: "));
            spans.push(Span::styled(format!("{text}█"), theme::MATCH));
            spans.push(Span::styled("   ⏎ keep  Esc cancel", theme::DIM));
            Paragraph::new(Line::from(spans)).render(area, buf);
            return;
        }
        if !app.filter.is_empty() {
            spans.push(Span::styled(" filter ", theme::DIM));
            spans.push(Span::styled(app.filter.clone(), theme::MATCH));
            spans.push(Span::styled(" (Esc clears) │", theme::DIM));
        }
        let pause = if app.paused { "resume" } else { "pause" };
        let enter = match app.focus {
            Pane::Stack => "expand/details",
            Pane::Recent | Pane::Functions => "details",
            Pane::Stalls => "details  → threads",
            Pane::Metrics => "",
        };
        let keys: [(&str, &str); 9] = [
            ("q", "quit"),
            ("p", pause),
            ("Tab", "pane"),
            ("↑↓", "move"),
            ("⏎", enter),
            ("/", "filter"),
            ("s", "sort"),
            ("z", if app.zoomed { "unzoom" } else { "zoom" }),
            ("?", "help"),
        ];
        for (key, what) in keys {
            if what.is_empty() {
                continue;
            }
            spans.push(Span::styled(format!(" {key} "), theme::KEY));
            spans.push(Span::styled(what.to_owned(), Style::new()));
        }
        Paragraph::new(Line::from(spans)).render(area, buf);
    }
}
