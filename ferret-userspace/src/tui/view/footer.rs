//! The footer: the main keys, the filter or the pattern to trace being
//! typed, or a word about the last key.

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
        if let Some(text) = &app.prompt {
            spans.push(Span::styled(" + ", theme::KEY));
            spans.push(Span::raw("trace functions matching (-s GLOB, LIB:GLOB): "));
            spans.push(Span::styled(format!("{text}█"), theme::MATCH));
            spans.push(Span::styled("   ⏎ trace  Esc cancel", theme::DIM));
            Paragraph::new(Line::from(spans)).render(area, buf);
            return;
        }
        if let Some(message) = &app.message {
            spans.push(Span::styled(format!(" {message}"), theme::WARN));
            Paragraph::new(Line::from(spans)).render(area, buf);
            return;
        }
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
            Pane::Hot => "stacks",
            Pane::Metrics => "",
        };
        // What traces and detaches, where it applies.
        let (t, d, plus) = match app.focus {
            Pane::Hot => ("trace", "", "add"),
            Pane::Functions => ("", "detach", ""),
            _ => ("", "", ""),
        };
        // (key, what, priority): when the line is too long, the highest
        // priorities go first.
        let keys: [(&str, &str, u8); 12] = [
            ("q", "quit", 0),
            ("p", pause, 5),
            ("Tab", "pane", 6),
            ("↑↓", "move", 7),
            ("⏎", enter, 3),
            ("t", t, 1),
            ("d", d, 1),
            ("+", plus, 2),
            ("/", "filter", 4),
            ("s", "sort", 8),
            ("z", if app.zoomed { "unzoom" } else { "zoom" }, 9),
            ("?", "help", 0),
        ];
        let room =
            usize::from(area.width).saturating_sub(spans.iter().map(Span::width).sum::<usize>());
        let mut shown: Vec<(&str, &str, u8)> = keys
            .into_iter()
            .filter(|(_, what, _)| !what.is_empty())
            .collect();
        let width = |keys: &[(&str, &str, u8)]| -> usize {
            keys.iter()
                .map(|(k, w, _)| k.chars().count() + w.chars().count() + 2)
                .sum()
        };
        while width(&shown) > room {
            let Some(last) = shown
                .iter()
                .enumerate()
                .filter(|(_, k)| k.2 > 0)
                .max_by_key(|(_, k)| k.2)
                .map(|(i, _)| i)
            else {
                break;
            };
            shown.remove(last);
        }
        for (key, what, _) in shown {
            spans.push(Span::styled(format!(" {key} "), theme::KEY));
            spans.push(Span::styled(what.to_owned(), Style::new()));
        }
        Paragraph::new(Line::from(spans)).render(area, buf);
    }
}
