//! What keys and the mouse do to the dashboard: the part of
//! [`App::update`](super::App::update) that reads input. Each handler
//! changes the state and leaves the rows to `rebuild_keeping`.

use ratatui::{
    crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind},
    layout::Position,
};

use super::{
    App, HotSort, Popup, SelectionKeys, Subject,
    rows::{StackKey, StackRow, StallKey, StallRow, run_start},
};
use crate::{session::ProbeRequest, tui::layout::Pane};

impl App {
    /// Moves the focus to the next (or previous) pane shown.
    fn cycle(&mut self, forward: bool) {
        let mut pane = self.focus;
        for _ in 0..Pane::ALL.len() {
            pane = if forward { pane.next() } else { pane.prev() };
            if self.shows(pane) {
                break;
            }
        }
        self.focus = pane;
    }

    pub(super) fn key(&mut self, key: KeyEvent) {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && matches!(key.code, KeyCode::Char('c' | 'C')) {
            self.quit = true;
            return;
        }
        self.message = None;
        if let Some(text) = &mut self.prompt {
            match key.code {
                KeyCode::Enter => {
                    let pattern = self.prompt.take().unwrap_or_default();
                    let pattern = pattern.trim();
                    if !pattern.is_empty() {
                        self.request(
                            ProbeRequest::TracePattern(pattern.to_owned()),
                            format!("asked to trace {pattern}…"),
                        );
                    }
                }
                KeyCode::Esc => self.prompt = None,
                KeyCode::Backspace => {
                    text.pop();
                }
                KeyCode::Char(c) if !ctrl => text.push(c),
                _ => {}
            }
            return;
        }
        if let Some(text) = &mut self.editing {
            match key.code {
                KeyCode::Enter => {
                    self.filter = self.editing.take().unwrap_or_default();
                }
                KeyCode::Esc => self.editing = None,
                KeyCode::Backspace => {
                    text.pop();
                }
                KeyCode::Char(c) if !ctrl => text.push(c),
                _ => return,
            }
            self.rebuild_keeping(self.selection_keys());
            return;
        }
        if self.popup.is_some() {
            match key.code {
                KeyCode::Char('q') => self.quit = true,
                KeyCode::Esc | KeyCode::Enter | KeyCode::Char('?') => self.popup = None,
                _ => {}
            }
            return;
        }
        match key.code {
            KeyCode::Char('q') => self.quit = true,
            KeyCode::Char('p' | ' ') => {
                self.paused = !self.paused;
                if !self.paused {
                    self.show_latest();
                }
            }
            KeyCode::Tab => self.cycle(true),
            KeyCode::BackTab => self.cycle(false),
            KeyCode::Char('1') => self.focus = Pane::Stack,
            KeyCode::Char('2') => {
                self.hot = false;
                self.focus = Pane::Recent;
            }
            KeyCode::Char('6') => {
                self.hot = true;
                self.focus = Pane::Hot;
            }
            KeyCode::Char('H') => {
                self.hot = !self.hot;
                self.focus = if self.hot { Pane::Hot } else { Pane::Recent };
            }
            KeyCode::Char('t') => self.trace_selected(),
            KeyCode::Char('d') => self.detach_selected(),
            KeyCode::Char('+') => self.prompt = Some(String::new()),
            KeyCode::Char('3') => self.focus = Pane::Functions,
            KeyCode::Char('4') => self.focus = Pane::Metrics,
            KeyCode::Char('5') if self.shows(Pane::Stalls) => self.focus = Pane::Stalls,
            KeyCode::Up | KeyCode::Char('k') => self.step(-1),
            KeyCode::Down | KeyCode::Char('j') => self.step(1),
            KeyCode::PageUp => self.step(-(self.page() as isize)),
            KeyCode::PageDown => self.step(self.page() as isize),
            KeyCode::Home | KeyCode::Char('g') => self.step(isize::MIN / 2),
            KeyCode::End | KeyCode::Char('G') => self.step(isize::MAX / 2),
            KeyCode::Enter => self.enter(),
            KeyCode::Right | KeyCode::Char('l') => self.expand(true),
            KeyCode::Left | KeyCode::Char('h') => self.expand(false),
            KeyCode::Char('/') => self.editing = Some(String::new()),
            KeyCode::Char('s') if self.focus == Pane::Hot => {
                self.hot_sort = match self.hot_sort {
                    HotSort::SelfSamples => HotSort::TotalSamples,
                    HotSort::TotalSamples => HotSort::SelfSamples,
                };
                self.rebuild_keeping(self.selection_keys());
            }
            KeyCode::Char('s') => {
                self.sort = self.sort.next();
                self.rebuild_keeping(self.selection_keys());
            }
            KeyCode::Char('z') => self.zoomed = !self.zoomed,
            KeyCode::Char('?') => self.popup = Some(Popup::Help),
            KeyCode::Esc => {
                if self.filter.is_empty() {
                    self.zoomed = false;
                } else {
                    self.filter.clear();
                    self.rebuild_keeping(self.selection_keys());
                }
            }
            _ => return,
        }
        self.fit_cursors();
    }

    pub(super) fn mouse(&mut self, mouse: MouseEvent) {
        let at = Position::new(mouse.column, mouse.row);
        let areas = self.areas();
        let Some(pane) = Pane::ALL.into_iter().find(|&p| areas.pane(p).contains(at)) else {
            return;
        };
        match mouse.kind {
            MouseEventKind::ScrollDown => self.step_pane(pane, 3),
            MouseEventKind::ScrollUp => self.step_pane(pane, -3),
            MouseEventKind::Down(MouseButton::Left) if self.popup.is_none() => {
                self.focus = pane;
                let inner = areas.pane(pane).inner(ratatui::layout::Margin::new(1, 1));
                let header = pane.heading_lines();
                let row = usize::from(mouse.row.saturating_sub(inner.y));
                let lines = pane.lines_per_row();
                if mouse.row >= inner.y && row >= header {
                    let cursor = &mut self.cursors[pane.index()];
                    cursor.selected = cursor.offset + (row - header) / lines;
                }
            }
            _ => return,
        }
        self.fit_cursors();
    }

    /// Rows a page-down moves: the focused pane's height.
    fn page(&self) -> usize {
        self.view_height(self.focus).max(1)
    }

    fn step(&mut self, delta: isize) {
        self.step_pane(self.focus, delta);
    }

    fn step_pane(&mut self, pane: Pane, delta: isize) {
        let len = self.rows_in(pane);
        if pane == Pane::Metrics {
            // A plain list: scroll it rather than select in it.
            let height = self.view_height(pane);
            let cursor = &mut self.cursors[pane.index()];
            cursor.offset = cursor
                .offset
                .saturating_add_signed(delta)
                .min(len.saturating_sub(height));
            cursor.selected = cursor.offset;
            return;
        }
        self.cursors[pane.index()].step(delta, len);
    }

    fn enter(&mut self) {
        let selected = self.cursors[self.focus.index()].selected;
        match self.focus {
            Pane::Stack => match self.stack_rows.get(selected).copied() {
                Some(StackRow::Thread { thread, collapsed }) => {
                    self.set_thread_collapsed(thread, !collapsed);
                }
                Some(StackRow::Frames {
                    thread, first, len, ..
                }) if len > 1 => self.set_run_expanded(thread, first, true),
                Some(StackRow::Frames { thread, first, .. }) => {
                    let t = &self.shown.threads[thread];
                    let frame = t.frames[first];
                    self.popup = Some(Popup::Details(Subject::Span {
                        tid: t.tid,
                        span_id: frame.span_id,
                        function: frame.function,
                        start_ns: frame.start_ns,
                    }));
                }
                None => {}
            },
            Pane::Recent => {
                if let Some(&i) = self.recent_rows.get(selected) {
                    let call = Box::new(self.shown.recent[i].clone());
                    self.popup = Some(Popup::Details(Subject::Call(call)));
                }
            }
            Pane::Functions => {
                if let Some(&i) = self.function_rows.get(selected) {
                    self.popup = Some(Popup::Details(Subject::Function(
                        self.shown.functions[i].id,
                    )));
                }
            }
            Pane::Metrics => {}
            Pane::Hot => {
                if let Some(row) = self.selected_hot() {
                    self.popup = Some(Popup::Details(Subject::Hot {
                        name: row.name.clone(),
                    }));
                }
            }
            Pane::Stalls => match self.stall_rows.get(selected).copied() {
                Some(StallRow::Group { group, .. }) => {
                    let group = &self.shown.stall_groups[group];
                    self.popup = Some(Popup::Details(match group.members[..] {
                        [only] => self.stall_subject(only),
                        _ => Subject::StallGroup(group.id),
                    }));
                }
                Some(StallRow::Thread { stall, .. }) => {
                    self.popup = Some(Popup::Details(self.stall_subject(stall)));
                }
                None => {}
            },
        }
    }

    /// `t`: in the Hot pane, trace the selected function (the one a probe
    /// can catch, if it was inlined); in the Functions pane, trace a
    /// detached function again.
    fn trace_selected(&mut self) {
        match self.focus {
            Pane::Hot => {
                let Some(row) = self.selected_hot() else {
                    return;
                };
                let name = row.name.to_string();
                let traced = self
                    .shown
                    .function_id(row.inlined_into.as_deref().unwrap_or(&name), None)
                    .filter(|id| !self.shown.detached.contains(id));
                match (&row.code, traced) {
                    (_, Some(_)) => self.message = Some(format!("`{name}` is traced already")),
                    (Some(code), None) => {
                        let request = ProbeRequest::TraceAt {
                            code: code.clone(),
                            name: name.clone(),
                        };
                        self.request(request, format!("asked to trace `{name}`…"));
                    }
                    (None, None) => {
                        self.message = Some(format!(
                            "`{name}` cannot be traced: its code is not in a mapped file"
                        ));
                    }
                }
            }
            Pane::Functions => {
                let Some(id) = self.selected_function() else {
                    return;
                };
                let name = self.shown.function_name(id).to_owned();
                if self.shown.detached.contains(&id) {
                    self.request(
                        ProbeRequest::Retrace(id),
                        format!("asked to trace `{name}` again…"),
                    );
                } else {
                    self.message = Some(format!("`{name}` is traced already"));
                }
            }
            _ => {
                self.message =
                    Some("t traces the function selected in the Hot or Functions pane".to_owned());
            }
        }
    }

    /// `d`: in the Functions pane, stop tracing the selected function.
    fn detach_selected(&mut self) {
        if self.focus != Pane::Functions {
            self.message = Some("d detaches the function selected in the Functions pane".into());
            return;
        }
        let Some(id) = self.selected_function() else {
            return;
        };
        let name = self.shown.function_name(id).to_owned();
        if self.shown.detached.contains(&id) {
            self.message = Some(format!("`{name}` is detached already (t traces it again)"));
        } else {
            self.request(
                ProbeRequest::Detach(id),
                format!("asked to detach `{name}`…"),
            );
        }
    }

    /// The Functions pane's selected function.
    fn selected_function(&self) -> Option<u32> {
        let i = *self
            .function_rows
            .get(self.cursors[Pane::Functions.index()].selected)?;
        Some(self.shown.functions[i].id)
    }

    /// Right/`l` expands the selected thread or run; Left/`h` folds it (or
    /// the run the selected frame belongs to).
    fn expand(&mut self, open: bool) {
        if self.focus == Pane::Stalls {
            self.expand_stall_group(open);
            return;
        }
        if self.focus != Pane::Stack {
            return;
        }
        let selected = self.cursors[Pane::Stack.index()].selected;
        match self.stack_rows.get(selected).copied() {
            Some(StackRow::Thread { thread, .. }) => self.set_thread_collapsed(thread, !open),
            Some(StackRow::Frames {
                thread,
                first,
                len,
                expanded,
                ..
            }) => {
                if open && len > 1 {
                    self.set_run_expanded(thread, first, true);
                } else if !open && expanded {
                    let start = run_start(&self.shown, thread, first);
                    self.set_run_expanded(thread, start, false);
                }
            }
            None => {}
        }
    }

    /// The details of stall `stall` (an index into the shown stalls).
    fn stall_subject(&self, stall: usize) -> Subject {
        let report = &self.shown.stalls[stall];
        Subject::Stall {
            pid: report.pid,
            tid: report.tid,
            span_id: report.span_id,
        }
    }

    /// Right/`l` lists the threads of the selected stall group; Left/`h`
    /// folds it again (from the group or from one of its threads, which
    /// then leaves the selection on the group).
    fn expand_stall_group(&mut self, open: bool) {
        let selected = self.cursors[Pane::Stalls.index()].selected;
        let Some(StallRow::Group { group, .. } | StallRow::Thread { group, .. }) =
            self.stall_rows.get(selected).copied()
        else {
            return;
        };
        let group = &self.shown.stall_groups[group];
        if group.members.len() < 2 {
            return;
        }
        let id = group.id;
        if open {
            self.expanded_stalls.insert(id);
        } else {
            self.expanded_stalls.remove(&id);
        }
        let keys = SelectionKeys {
            stall: Some(StallKey::Group(id)),
            ..self.selection_keys()
        };
        self.rebuild_keeping(keys);
    }

    fn set_thread_collapsed(&mut self, thread: usize, collapse: bool) {
        let key = super::rows::head_key(&self.shown.threads[thread]);
        if collapse {
            self.collapsed.insert(key);
        } else {
            self.collapsed.remove(&key);
        }
        self.rebuild_keeping(self.selection_keys());
    }

    fn set_run_expanded(&mut self, thread: usize, first: usize, expand: bool) {
        let span = self.shown.threads[thread].frames[first].span_id;
        if expand {
            self.expanded.insert(span);
        } else {
            self.expanded.remove(&span);
        }
        let keys = SelectionKeys {
            stack: Some(StackKey::Span(span)),
            ..self.selection_keys()
        };
        self.rebuild_keeping(keys);
    }
}

#[cfg(test)]
mod tests {
    use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseEvent, MouseEventKind};

    use super::super::{
        App, Event, Popup, SortKey, Subject,
        tests::{app, key, snapshot},
    };
    use crate::tui::{app::StackRow, layout::Pane};

    #[test]
    fn q_and_ctrl_c_quit_even_while_typing_a_filter() {
        let mut a = app();
        a.update(key(KeyCode::Char('q')));
        assert!(a.should_quit());

        let mut a = app();
        a.update(key(KeyCode::Char('/')));
        a.update(key(KeyCode::Char('q')));
        assert!(!a.should_quit(), "q is a letter of the filter");
        assert_eq!(a.active_filter(), "q");
        a.update(Event::Key(KeyEvent::new(
            KeyCode::Char('c'),
            KeyModifiers::CONTROL,
        )));
        assert!(a.should_quit());
    }

    #[test]
    fn pause_freezes_the_display_and_the_clock() {
        let mut a = app();
        a.update(Event::Tick(1_000));
        a.update(key(KeyCode::Char(' ')));
        a.update(Event::Snapshot(snapshot(&[9])));
        a.update(Event::Tick(5_000));
        assert_eq!(a.shown.recent.len(), 5, "still the paused picture");
        assert_eq!(a.latest.recent.len(), 1, "ingestion went on");
        assert_eq!(a.now_ns, 1_000);
        a.update(key(KeyCode::Char('p')));
        assert_eq!(a.shown.recent.len(), 1);
        a.update(Event::Tick(6_000));
        assert_eq!(a.now_ns, 6_000);
    }

    #[test]
    fn sort_cycles_and_orders_functions() {
        let mut a = app();
        let order = |a: &App| -> Vec<u32> {
            a.function_rows
                .iter()
                .map(|&i| a.shown.functions[i].id)
                .collect()
        };
        assert_eq!(a.sort, SortKey::Total);
        assert_eq!(order(&a), [2, 0, 1]);
        a.update(key(KeyCode::Char('s')));
        a.update(key(KeyCode::Char('s')));
        assert_eq!(a.sort, SortKey::Calls);
        assert_eq!(order(&a), [1, 0, 2]);
        for _ in 0..SortKey::ALL.len() - 2 {
            a.update(key(KeyCode::Char('s')));
        }
        assert_eq!(a.sort, SortKey::Total, "s cycles back");
    }

    #[test]
    fn filter_applies_to_every_pane_and_esc_cancels() {
        let mut a = app();
        a.update(key(KeyCode::Char('/')));
        for c in "WORK".chars() {
            a.update(key(KeyCode::Char(c)));
        }
        assert_eq!(a.function_rows.len(), 1);
        assert!(
            a.recent_rows
                .iter()
                .all(|&i| a.shown.recent[i].function == 1)
        );
        assert!(a.stack_rows.is_empty(), "no open frame is `work`");
        a.update(key(KeyCode::Enter));
        assert_eq!(a.filter, "WORK");
        a.update(key(KeyCode::Esc));
        assert_eq!(a.filter, "");
        assert_eq!(a.function_rows.len(), 3);
        // Esc while typing restores the previous filter.
        a.update(key(KeyCode::Char('/')));
        a.update(key(KeyCode::Char('x')));
        a.update(key(KeyCode::Esc));
        assert_eq!(a.active_filter(), "");
    }

    #[test]
    fn recursion_folds_into_one_row_and_expands() {
        let mut a = app();
        // Thread, main, recurse ×3.
        assert_eq!(a.stack_rows.len(), 3);
        assert!(matches!(a.stack_rows[2], StackRow::Frames { len: 3, .. }));
        a.update(key(KeyCode::End));
        a.update(key(KeyCode::Enter));
        assert_eq!(a.stack_rows.len(), 5, "expanded into single frames");
        assert_eq!(a.popup, None);
        a.update(key(KeyCode::Left));
        assert_eq!(a.stack_rows.len(), 3, "folded again");
        // Enter on a single frame opens its details.
        a.update(key(KeyCode::Up));
        a.update(key(KeyCode::Enter));
        assert_eq!(
            a.popup,
            Some(Popup::Details(Subject::Span {
                tid: 2,
                span_id: 100,
                function: 0,
                start_ns: 0,
            }))
        );
        a.update(key(KeyCode::Esc));
        assert_eq!(a.popup, None);
        // Enter on the thread folds it.
        a.update(key(KeyCode::Home));
        a.update(key(KeyCode::Enter));
        assert_eq!(a.stack_rows.len(), 1);
    }

    #[test]
    fn wheel_scrolls_the_pane_under_the_mouse() {
        let mut a = app();
        let recent = a.areas().pane(Pane::Recent);
        a.update(Event::Mouse(MouseEvent {
            kind: MouseEventKind::ScrollDown,
            column: recent.x + 3,
            row: recent.y + 3,
            modifiers: KeyModifiers::NONE,
        }));
        assert_eq!(a.cursors[Pane::Recent.index()].selected, 3);
        assert_eq!(a.focus, Pane::Stack, "scrolling does not move the focus");
    }

    #[test]
    fn tab_cycles_panes_both_ways() {
        let mut a = app();
        a.update(key(KeyCode::Tab));
        assert_eq!(a.focus, Pane::Recent);
        a.update(key(KeyCode::BackTab));
        a.update(key(KeyCode::BackTab));
        assert_eq!(a.focus, Pane::Metrics);
    }
}
