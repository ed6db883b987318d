//! Where the header, the panes and the footer go, for any terminal size.
//! One function decides it, so drawing, scrolling and mouse hits agree.
//!
//! Wide terminals get two rows of two panes; at 80 columns the Live Stack
//! shares its row with Metrics and the two tables get full-width rows; very
//! narrow ones stack everything. While threads are stalled, the Stalls pane
//! takes the lower part of the Live Stack's place. The Hot pane (sampled
//! CPU time) takes Recent Activity's place while it is shown. The row
//! holding the focused pane gets more height, and `z` gives the focused
//! pane the whole body.

use ratatui::layout::{Constraint, Layout, Rect};

/// Below this the dashboard shows only a "too small" notice.
pub const MIN_WIDTH: u16 = 40;
/// Below this the dashboard shows only a "too small" notice.
pub const MIN_HEIGHT: u16 = 12;
/// From this width on, two panes share every row.
pub const WIDE: u16 = 110;
/// From this width on, the Live Stack shares its row with Metrics.
pub const MEDIUM: u16 = 60;

/// The panes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pane {
    /// Open spans per thread.
    Stack,
    /// Recently finished calls.
    Recent,
    /// Per-function statistics.
    Functions,
    /// Process metrics.
    Metrics,
    /// Stalled threads and where they are stuck; shown only while there
    /// are some.
    Stalls,
    /// Where the sampled threads spend their CPU time; in Recent
    /// Activity's place while shown.
    Hot,
}

impl Pane {
    /// Every pane, in Tab order (key `1`… is `ALL[0]`…).
    pub const ALL: [Self; 6] = [
        Self::Stack,
        Self::Recent,
        Self::Functions,
        Self::Metrics,
        Self::Stalls,
        Self::Hot,
    ];

    /// Position in [`Self::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The next pane in Tab order.
    #[must_use]
    pub fn next(self) -> Self {
        Self::ALL[(self.index() + 1) % Self::ALL.len()]
    }

    /// The previous pane in Tab order.
    #[must_use]
    pub fn prev(self) -> Self {
        Self::ALL[(self.index() + Self::ALL.len() - 1) % Self::ALL.len()]
    }

    /// Lines each row of the pane's list takes: a stall shows what it waits
    /// for on a second line. Drawing, scrolling and mouse hits use it.
    pub const fn lines_per_row(self) -> usize {
        match self {
            Self::Stalls => 2,
            _ => 1,
        }
    }

    /// Lines of column headings above the pane's list, inside its border.
    pub const fn heading_lines(self) -> usize {
        match self {
            Self::Functions | Self::Hot => 1,
            _ => 0,
        }
    }

    /// Its title.
    pub fn title(self) -> &'static str {
        match self {
            Self::Stack => "Live Stack",
            Self::Recent => "Recent Activity",
            Self::Functions => "Functions",
            Self::Metrics => "Metrics",
            Self::Stalls => "Stalls",
            Self::Hot => "Hot",
        }
    }
}

/// The screen, divided.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Areas {
    /// Two lines at the top.
    pub header: Rect,
    /// One line at the bottom.
    pub footer: Rect,
    /// By [`Pane::index`]; an empty `Rect` for a pane not shown.
    pub panes: [Rect; 6],
    /// The terminal is below [`MIN_WIDTH`] × [`MIN_HEIGHT`].
    pub too_small: bool,
}

impl Areas {
    /// The layout of a terminal of `size`, with `focus` focused; `stalls`:
    /// the Stalls pane is shown (else `focus` must not be it); `hot`: the
    /// Hot pane is shown, in Recent Activity's place (else `focus` must
    /// not be it; with it, `focus` must not be Recent Activity).
    pub fn new(size: Rect, focus: Pane, zoomed: bool, stalls: bool, hot: bool) -> Self {
        if size.width < MIN_WIDTH || size.height < MIN_HEIGHT {
            return Self {
                too_small: true,
                ..Self::default()
            };
        }
        let [header, body, footer] = Layout::vertical([
            Constraint::Length(2),
            Constraint::Min(0),
            Constraint::Length(1),
        ])
        .areas(size);
        let mut panes = [Rect::default(); 6];
        // Recent Activity's place, or the Hot pane's.
        let slot = if hot { Pane::Hot } else { Pane::Recent };
        // Below four rows a pane shows nothing useful: when the rows of
        // panes do not fit, show the focused one alone (Tab still cycles).
        let rows_of_panes = match size.width {
            WIDE.. => 2,
            MEDIUM.. => 3,
            _ => 4,
        } + u16::from(stalls);
        // The Live Stack's place, shared with the Stalls pane below it.
        let split_stack = |area: Rect| -> (Rect, Rect) {
            if !stalls {
                return (area, Rect::default());
            }
            let weight = |pane| if focus == pane { 3 } else { 2 };
            let [stack, stalled] = Layout::vertical([
                Constraint::Fill(weight(Pane::Stack)),
                Constraint::Fill(weight(Pane::Stalls)),
            ])
            .areas(area);
            (stack, stalled)
        };
        if zoomed || body.height < rows_of_panes * 5 {
            panes[focus.index()] = body;
        } else if size.width >= WIDE {
            // [Stack | Recent] over [Functions | Metrics].
            let top_focused =
                matches!(focus, Pane::Stack | Pane::Recent | Pane::Stalls | Pane::Hot);
            let [top, bottom] = Layout::vertical([
                Constraint::Fill(if top_focused { 6 } else { 5 }),
                Constraint::Fill(if top_focused { 5 } else { 6 }),
            ])
            .areas(body);
            // Recent Activity has more columns to fit than the Live Stack,
            // the Hot pane more still.
            let right = if hot { 62 } else { 55 };
            let [stack, recent] =
                Layout::horizontal([Constraint::Fill(100 - right), Constraint::Fill(right)])
                    .areas(top);
            let [functions, metrics] =
                Layout::horizontal([Constraint::Fill(62), Constraint::Fill(38)]).areas(bottom);
            let (stack, stalled) = split_stack(stack);
            panes[Pane::Stack.index()] = stack;
            panes[slot.index()] = recent;
            panes[Pane::Functions.index()] = functions;
            panes[Pane::Metrics.index()] = metrics;
            panes[Pane::Stalls.index()] = stalled;
        } else if size.width >= MEDIUM {
            // [Stack | Metrics] over Recent over Functions.
            let weight = |row: &[Pane]| if row.contains(&focus) { 6 } else { 3 };
            let [top, middle, bottom] = Layout::vertical([
                Constraint::Fill(weight(&[Pane::Stack, Pane::Metrics, Pane::Stalls]) + 1),
                Constraint::Fill(weight(&[Pane::Recent, Pane::Hot])),
                Constraint::Fill(weight(&[Pane::Functions])),
            ])
            .areas(body);
            let [stack, metrics] =
                Layout::horizontal([Constraint::Fill(62), Constraint::Fill(38)]).areas(top);
            let (stack, stalled) = split_stack(stack);
            panes[Pane::Stack.index()] = stack;
            panes[slot.index()] = middle;
            panes[Pane::Functions.index()] = bottom;
            panes[Pane::Metrics.index()] = metrics;
            panes[Pane::Stalls.index()] = stalled;
        } else {
            // Every pane in a column; the focused one takes what the
            // others, at a sixth of the body each (four rows at least), leave.
            let other = (body.height / 6).max(4);
            let shown: Vec<Pane> = Pane::ALL
                .into_iter()
                .filter(|&p| (stalls || p != Pane::Stalls) && p != Pane::Hot)
                .map(|p| if p == Pane::Recent { slot } else { p })
                .collect();
            let rects = Layout::vertical(shown.iter().map(|&p| {
                if p == focus {
                    Constraint::Fill(1)
                } else {
                    Constraint::Length(other)
                }
            }))
            .split(body);
            for (pane, rect) in shown.iter().zip(rects.iter()) {
                panes[pane.index()] = *rect;
            }
        }
        Self {
            header,
            footer,
            panes,
            too_small: false,
        }
    }

    /// Where `pane` goes (empty when hidden).
    pub fn pane(&self, pane: Pane) -> Rect {
        self.panes[pane.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covered(areas: &Areas) -> u32 {
        areas
            .panes
            .iter()
            .map(|r| u32::from(r.width) * u32::from(r.height))
            .sum()
    }

    #[test]
    fn panes_tile_the_body_at_every_size() {
        for (w, h) in [
            (80, 24),
            (120, 40),
            (200, 60),
            (50, 30),
            (40, 23),
            (110, 13),
            (60, 18),
        ] {
            for focus in Pane::ALL {
                let stalls = focus == Pane::Stalls;
                let hot = focus == Pane::Hot;
                let areas = Areas::new(Rect::new(0, 0, w, h), focus, false, stalls, hot);
                assert!(!areas.too_small);
                assert_eq!(covered(&areas), u32::from(w) * u32::from(h - 3), "{w}x{h}");
                let alone = areas.panes.iter().filter(|r| !r.is_empty()).count() == 1;
                for pane in Pane::ALL {
                    let shown = (stalls || pane != Pane::Stalls)
                        && pane != if hot { Pane::Recent } else { Pane::Hot };
                    if alone {
                        assert_eq!(!areas.pane(pane).is_empty(), pane == focus, "{w}x{h}");
                    } else if shown {
                        assert!(areas.pane(pane).height >= 3, "{w}x{h} {pane:?}");
                    } else {
                        assert!(areas.pane(pane).is_empty(), "{w}x{h} {pane:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn focus_gets_more_room() {
        let size = Rect::new(0, 0, 80, 24);
        let recent = |focus| {
            Areas::new(size, focus, false, false, false)
                .pane(Pane::Recent)
                .height
        };
        assert!(recent(Pane::Recent) > recent(Pane::Stack));
    }

    #[test]
    fn zoom_gives_the_focused_pane_the_body() {
        let areas = Areas::new(Rect::new(0, 0, 80, 24), Pane::Functions, true, true, false);
        assert_eq!(areas.pane(Pane::Functions), Rect::new(0, 2, 80, 21));
        assert_eq!(areas.pane(Pane::Stack), Rect::default());
    }

    #[test]
    fn short_terminals_show_the_focused_pane_alone() {
        for (w, h) in [(40, 12), (80, 17), (120, 12)] {
            let areas = Areas::new(Rect::new(0, 0, w, h), Pane::Recent, false, false, false);
            assert!(!areas.too_small);
            assert_eq!(areas.pane(Pane::Recent).height, h - 3, "{w}x{h}");
            assert_eq!(areas.pane(Pane::Stack), Rect::default(), "{w}x{h}");
        }
    }

    #[test]
    fn stalls_take_the_lower_part_of_the_live_stacks_place() {
        for (w, h) in [(120, 40), (80, 24)] {
            let size = Rect::new(0, 0, w, h);
            let without = Areas::new(size, Pane::Stack, false, false, false);
            let with = Areas::new(size, Pane::Stack, false, true, false);
            let (stack, stalls) = (with.pane(Pane::Stack), with.pane(Pane::Stalls));
            assert_eq!(stack.union(stalls), without.pane(Pane::Stack), "{w}x{h}");
            assert_eq!(stalls.y, stack.bottom(), "{w}x{h}: below the Live Stack");
            assert_eq!(with.pane(Pane::Recent), without.pane(Pane::Recent));
        }
    }

    #[test]
    fn the_hot_pane_takes_recent_activitys_place() {
        for (w, h) in [(120, 40), (80, 24), (50, 30)] {
            let size = Rect::new(0, 0, w, h);
            let recent = Areas::new(size, Pane::Stack, false, false, false);
            let hot = Areas::new(size, Pane::Stack, false, false, true);
            let (r, h2) = (recent.pane(Pane::Recent), hot.pane(Pane::Hot));
            // Its row and right edge; wide, it takes a little more width.
            assert_eq!(
                (h2.y, h2.height, h2.right()),
                (r.y, r.height, r.right()),
                "{w}x{h}"
            );
            assert!(h2.width >= r.width, "{w}x{h}");
            assert_eq!(hot.pane(Pane::Recent), Rect::default(), "{w}x{h}");
            assert_eq!(recent.pane(Pane::Hot), Rect::default(), "{w}x{h}");
        }
    }

    #[test]
    fn tiny_terminals_are_too_small() {
        assert!(Areas::new(Rect::new(0, 0, 39, 24), Pane::Stack, false, false, false).too_small);
        assert!(Areas::new(Rect::new(0, 0, 80, 11), Pane::Stack, false, false, false).too_small);
    }
}
