//! The dashboard's state and the one place it changes: [`App::update`].
//!
//! `App` does no terminal I/O. Everything that happens to it (a key, the
//! mouse, a resize, the clock, a new snapshot from the ingestion thread) is
//! an [`Event`]; the views only read it. The rows each pane shows are
//! derived here, once per change, so that moving a selection, scrolling and
//! drawing all agree on what row N is.

use std::{collections::HashSet, sync::Arc};

use ratatui::{
    crossterm::event::{
        KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
    },
    layout::{Position, Rect},
};

use super::layout::{Areas, Pane};
use crate::live::{FinishedCall, FunctionRow, Snapshot, TargetState};

/// Everything that can happen to the dashboard.
#[derive(Clone, Debug)]
pub enum Event {
    /// A key was pressed.
    Key(KeyEvent),
    /// The mouse moved, clicked or scrolled.
    Mouse(MouseEvent),
    /// The terminal now has this many columns and rows.
    Resize(u16, u16),
    /// The clock: `CLOCK_MONOTONIC` ns now (elapsed times tick with it).
    Tick(u64),
    /// The ingestion thread published a new picture.
    Snapshot(Arc<Snapshot>),
}

/// The Functions pane's sort keys, in the order `s` cycles through them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    /// Total (inclusive) time.
    Total,
    /// Self time.
    SelfTime,
    /// Calls.
    Calls,
    /// Calls per second lately.
    Rate,
    /// Mean duration.
    Mean,
    /// 95th percentile.
    P95,
    /// 99th percentile.
    P99,
    /// Longest call.
    Max,
    /// Function name.
    Name,
}

impl SortKey {
    /// Every key, in cycling order.
    pub const ALL: [Self; 9] = [
        Self::Total,
        Self::SelfTime,
        Self::Calls,
        Self::Rate,
        Self::Mean,
        Self::P95,
        Self::P99,
        Self::Max,
        Self::Name,
    ];

    /// The next key in cycling order.
    #[must_use]
    pub fn next(self) -> Self {
        let i = Self::ALL.iter().position(|&k| k == self).unwrap_or(0);
        Self::ALL[(i + 1) % Self::ALL.len()]
    }

    /// The column label it sorts by.
    pub fn label(self) -> &'static str {
        match self {
            Self::Total => "total",
            Self::SelfTime => "self",
            Self::Calls => "calls",
            Self::Rate => "calls/s",
            Self::Mean => "mean",
            Self::P95 => "p95",
            Self::P99 => "p99",
            Self::Max => "max",
            Self::Name => "function",
        }
    }
}

/// What a details popup is about. An open span and a function are looked
/// up in each new snapshot, so their details keep ticking (and a span shows
/// its end when it ends); a finished call is kept whole, since on a busy
/// target it leaves the recent list within a second.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    /// A span that was open when selected.
    Span {
        /// Thread id.
        tid: u32,
        /// The span.
        span_id: u64,
        /// Its function (shown if it has ended and left the recent list).
        function: u32,
        /// Its start, `CLOCK_MONOTONIC` ns.
        start_ns: u64,
    },
    /// A finished call.
    Call(Box<FinishedCall>),
    /// A function's statistics.
    Function(u32),
    /// A stalled thread: where it is stuck (looked up in each new snapshot,
    /// so a new capture shows and the end of the stall is seen).
    Stall {
        /// Process id.
        pid: u32,
        /// Thread id.
        tid: u32,
        /// The stalled span.
        span_id: u64,
    },
}

/// A window over the dashboard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Popup {
    /// The key list.
    Help,
    /// Details of a span or function.
    Details(Subject),
}

/// A selection in a list and the first row shown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    /// Selected row.
    pub selected: usize,
    /// First row in view.
    pub offset: usize,
}

impl Cursor {
    /// Keeps the selection inside `len` rows and in a view `height` rows tall.
    fn fit(&mut self, len: usize, height: usize) {
        self.selected = self.selected.min(len.saturating_sub(1));
        let height = height.max(1);
        if self.selected < self.offset {
            self.offset = self.selected;
        } else if self.selected >= self.offset + height {
            self.offset = self.selected + 1 - height;
        }
        self.offset = self.offset.min(len.saturating_sub(height));
    }

    /// Moves the selection by `delta` rows.
    fn step(&mut self, delta: isize, len: usize) {
        self.selected = self
            .selected
            .saturating_add_signed(delta)
            .min(len.saturating_sub(1));
    }
}

/// One row of the Live Stack tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackRow {
    /// A thread (index into the snapshot's threads).
    Thread {
        /// Index into `Snapshot::threads`.
        thread: usize,
        /// Its frames are hidden.
        collapsed: bool,
    },
    /// One open span, or a run of directly recursive calls of one function
    /// shown as one row (`len` > 1) until expanded.
    Frames {
        /// Index into `Snapshot::threads`.
        thread: usize,
        /// Index of the run's outermost frame.
        first: usize,
        /// Frames in the run.
        len: usize,
        /// Nesting level in the tree (1 under the thread).
        level: usize,
        /// The run has been expanded into single rows (this is one of them).
        expanded: bool,
    },
}

/// What a Live Stack selection holds on to while rows move under it; also
/// the key of a folded thread or an expanded recursion run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackKey {
    /// A thread, by (pid, tid).
    Thread(u32, u32),
    /// A frame (or the run it starts), by span id.
    Span(u64),
}

/// The dashboard's whole state.
#[derive(Debug)]
pub struct App {
    /// The snapshot on screen (held still while paused).
    pub shown: Arc<Snapshot>,
    /// The newest snapshot received.
    pub latest: Arc<Snapshot>,
    /// The clock elapsed times are computed against (held while paused).
    pub now_ns: u64,
    /// The display is frozen; ingestion goes on.
    pub paused: bool,
    /// The pane keys act on.
    pub focus: Pane,
    /// The focused pane fills the body.
    pub zoomed: bool,
    /// Terminal size.
    pub size: Rect,
    /// Functions pane order.
    pub sort: SortKey,
    /// Only functions whose name contains this (case-insensitive).
    pub filter: String,
    /// The filter being typed, if the user is typing one.
    pub editing: Option<String>,
    /// A popup over the panes.
    pub popup: Option<Popup>,
    /// Cursors of Live Stack, Recent Activity, Functions, Metrics, Stalls.
    pub cursors: [Cursor; 5],
    /// Derived: the Live Stack's rows.
    pub stack_rows: Vec<StackRow>,
    /// Derived: indices into `shown.recent` that pass the filter.
    pub recent_rows: Vec<usize>,
    /// Derived: indices into `shown.functions`, filtered and sorted.
    pub function_rows: Vec<usize>,
    /// Derived: rows the Metrics pane has (for scrolling).
    pub metric_rows: usize,
    /// Derived: indices into `shown.stalls` that pass the filter.
    pub stall_rows: Vec<usize>,
    collapsed: HashSet<(u32, u32)>,
    expanded: HashSet<u64>,
    quit: bool,
}

impl App {
    /// A dashboard showing `snapshot`, in a terminal of `size`.
    pub fn new(snapshot: Arc<Snapshot>, size: Rect) -> Self {
        let mut app = Self {
            now_ns: snapshot.taken_ns,
            shown: snapshot.clone(),
            latest: snapshot,
            paused: false,
            focus: Pane::Stack,
            zoomed: false,
            size,
            sort: SortKey::Total,
            filter: String::new(),
            editing: None,
            popup: None,
            cursors: [Cursor::default(); 5],
            stack_rows: Vec::new(),
            recent_rows: Vec::new(),
            function_rows: Vec::new(),
            metric_rows: 0,
            stall_rows: Vec::new(),
            collapsed: HashSet::new(),
            expanded: HashSet::new(),
            quit: false,
        };
        app.rebuild();
        app
    }

    /// The user asked to quit, or the session ended by a signal.
    pub fn should_quit(&self) -> bool {
        self.quit
    }

    /// The time to draw elapsed times at: now, or when tracing ended.
    pub fn clock_ns(&self) -> u64 {
        let now = self.now_ns.max(self.shown.taken_ns);
        self.shown.state.ended_ns().map_or(now, |end| now.min(end))
    }

    /// The filter in force (the one being typed, while typing).
    pub fn active_filter(&self) -> &str {
        self.editing.as_deref().unwrap_or(&self.filter)
    }

    /// Whether `name` passes the filter.
    pub fn matches(&self, name: &str) -> bool {
        contains_ignore_case(name, self.active_filter())
    }

    /// Where everything goes on screen.
    pub fn areas(&self) -> Areas {
        Areas::new(self.size, self.focus, self.zoomed, self.shows(Pane::Stalls))
    }

    /// Whether `pane` is part of the dashboard now: the Stalls pane only
    /// while the shown snapshot has stalls.
    pub fn shows(&self, pane: Pane) -> bool {
        pane != Pane::Stalls || !self.shown.stalls.is_empty()
    }

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

    /// Applies one event.
    pub fn update(&mut self, event: Event) {
        match event {
            Event::Key(key) if key.kind != KeyEventKind::Release => self.key(key),
            Event::Key(_) => {}
            Event::Mouse(mouse) => self.mouse(mouse),
            Event::Resize(width, height) => {
                self.size = Rect::new(0, 0, width, height);
                self.fit_cursors();
            }
            Event::Tick(now) => {
                if !self.paused {
                    self.now_ns = now;
                }
            }
            Event::Snapshot(snapshot) => {
                if snapshot_requests_close(&snapshot) {
                    self.quit = true;
                }
                self.latest = snapshot;
                if !self.paused {
                    self.show_latest();
                }
            }
        }
    }

    fn show_latest(&mut self) {
        let keys = self.selection_keys();
        self.shown = self.latest.clone();
        self.rebuild_keeping(keys);
    }

    fn key(&mut self, key: KeyEvent) {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && matches!(key.code, KeyCode::Char('c' | 'C')) {
            self.quit = true;
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
            KeyCode::Char('2') => self.focus = Pane::Recent,
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

    fn mouse(&mut self, mouse: MouseEvent) {
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
                let header = usize::from(pane == Pane::Functions);
                let row = usize::from(mouse.row.saturating_sub(inner.y));
                let lines = if pane == Pane::Stalls {
                    super::view::stalls::LINES_PER_STALL
                } else {
                    1
                };
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
            Pane::Stalls => {
                if let Some(&i) = self.stall_rows.get(selected) {
                    let stall = &self.shown.stalls[i];
                    self.popup = Some(Popup::Details(Subject::Stall {
                        pid: stall.pid,
                        tid: stall.tid,
                        span_id: stall.span_id,
                    }));
                }
            }
        }
    }

    /// Right/`l` expands the selected thread or run; Left/`h` folds it (or
    /// the run the selected frame belongs to).
    fn expand(&mut self, open: bool) {
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

    fn set_thread_collapsed(&mut self, thread: usize, collapse: bool) {
        let t = &self.shown.threads[thread];
        let key = (t.pid, t.tid);
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
        let keys = (Some(StackKey::Span(span)), self.selection_keys().1);
        self.rebuild_keeping(keys);
    }

    /// How many rows pane `pane` has.
    pub fn rows_in(&self, pane: Pane) -> usize {
        match pane {
            Pane::Stack => self.stack_rows.len(),
            Pane::Recent => self.recent_rows.len(),
            Pane::Functions => self.function_rows.len(),
            Pane::Metrics => self.metric_rows,
            Pane::Stalls => self.stall_rows.len(),
        }
    }

    /// Rows of list a pane has room for (inside its border, under any
    /// column header).
    pub fn view_height(&self, pane: Pane) -> usize {
        let inner = usize::from(self.areas().pane(pane).height.saturating_sub(2));
        match pane {
            Pane::Functions => inner.saturating_sub(1),
            Pane::Stalls => inner / super::view::stalls::LINES_PER_STALL,
            _ => inner,
        }
    }

    fn fit_cursors(&mut self) {
        for pane in Pane::ALL {
            let (len, height) = (self.rows_in(pane), self.view_height(pane));
            self.cursors[pane.index()].fit(len, height);
        }
    }

    fn selection_keys(&self) -> (Option<StackKey>, [Option<u64>; 3]) {
        let stack = self
            .stack_rows
            .get(self.cursors[Pane::Stack.index()].selected)
            .map(|row| stack_key(&self.shown, *row));
        let recent = self.cursors[Pane::Recent.index()].selected;
        // The newest row stays selected as new calls arrive: following the
        // stream is what the top of the list means.
        let recent = (recent > 0)
            .then(|| self.recent_rows.get(recent))
            .flatten()
            .map(|&i| self.shown.recent[i].span_id);
        // Likewise the top of the Functions table stays selected as the
        // order changes; a selection further down follows its function.
        let function = self.cursors[Pane::Functions.index()].selected;
        let function = (function > 0)
            .then(|| self.function_rows.get(function))
            .flatten()
            .map(|&i| u64::from(self.shown.functions[i].id));
        // A stall follows its thread.
        let stall = self
            .stall_rows
            .get(self.cursors[Pane::Stalls.index()].selected)
            .map(|&i| thread_key(self.shown.stalls[i].pid, self.shown.stalls[i].tid));
        (stack, [recent, function, stall])
    }

    fn rebuild(&mut self) {
        self.rebuild_keeping((None, [None, None, None]));
    }

    /// Recomputes every pane's rows from the shown snapshot, then puts each
    /// selection back on the row it held, if that row is still there.
    fn rebuild_keeping(&mut self, keys: (Option<StackKey>, [Option<u64>; 3])) {
        self.stack_rows = stack_rows(&self.shown, self.active_filter(), |key| match key {
            StackKey::Thread(pid, tid) => self.collapsed.contains(&(pid, tid)),
            StackKey::Span(span) => self.expanded.contains(&span),
        });
        self.recent_rows = (0..self.shown.recent.len())
            .filter(|&i| self.matches(self.shown.function_name(self.shown.recent[i].function)))
            .collect();
        let mut functions: Vec<usize> = (0..self.shown.functions.len())
            .filter(|&i| self.matches(self.shown.function_name(self.shown.functions[i].id)))
            .collect();
        let shown = &self.shown;
        functions.sort_by(|&a, &b| {
            compare_rows(shown, self.sort, &shown.functions[a], &shown.functions[b])
        });
        self.function_rows = functions;
        self.metric_rows = super::view::metrics::rows(&self.shown);
        self.stall_rows = (0..self.shown.stalls.len())
            .filter(|&i| self.matches(&self.shown.stalls[i].function_name))
            .collect();
        if !self.shows(self.focus) {
            // The stalls ended: back to the Live Stack, where they were.
            self.focus = Pane::Stack;
        }

        let (stack, [recent, function, stall]) = keys;
        if let Some(key) = stack
            && let Some(i) = self
                .stack_rows
                .iter()
                .position(|row| stack_key(&self.shown, *row) == key)
        {
            self.cursors[Pane::Stack.index()].selected = i;
        }
        if let Some(span) = recent
            && let Some(i) = self
                .recent_rows
                .iter()
                .position(|&i| self.shown.recent[i].span_id == span)
        {
            self.cursors[Pane::Recent.index()].selected = i;
        }
        if let Some(id) = function
            && let Some(i) = self
                .function_rows
                .iter()
                .position(|&i| u64::from(self.shown.functions[i].id) == id)
        {
            self.cursors[Pane::Functions.index()].selected = i;
        }
        if let Some(key) = stall
            && let Some(i) = self.stall_rows.iter().position(|&i| {
                thread_key(self.shown.stalls[i].pid, self.shown.stalls[i].tid) == key
            })
        {
            self.cursors[Pane::Stalls.index()].selected = i;
        }
        self.fit_cursors();
    }
}

/// The session ended on its own terms (SIGINT, SIGTERM): nothing is left to
/// watch and the user did not ask to look at the aftermath.
fn snapshot_requests_close(snapshot: &Snapshot) -> bool {
    snapshot.close
}

/// A thread, as one number.
fn thread_key(pid: u32, tid: u32) -> u64 {
    (u64::from(pid) << 32) | u64::from(tid)
}

fn stack_key(snapshot: &Snapshot, row: StackRow) -> StackKey {
    match row {
        StackRow::Thread { thread, .. } => {
            let t = &snapshot.threads[thread];
            StackKey::Thread(t.pid, t.tid)
        }
        StackRow::Frames { thread, first, .. } => {
            StackKey::Span(snapshot.threads[thread].frames[first].span_id)
        }
    }
}

/// The index of the outermost frame of the recursion run holding `frame`.
fn run_start(snapshot: &Snapshot, thread: usize, frame: usize) -> usize {
    let frames = &snapshot.threads[thread].frames;
    let function = frames[frame].function;
    let mut start = frame;
    while start > 0 && frames[start - 1].function == function {
        start -= 1;
    }
    start
}

/// The Live Stack's rows: each thread that passes the filter (has a frame
/// whose function matches), then its frames unless folded, with runs of
/// direct recursion folded into one row unless expanded.
pub fn stack_rows(
    snapshot: &Snapshot,
    filter: &str,
    is_set: impl Fn(StackKey) -> bool,
) -> Vec<StackRow> {
    let mut rows = Vec::new();
    for (ti, thread) in snapshot.threads.iter().enumerate() {
        if !filter.is_empty()
            && !thread
                .frames
                .iter()
                .any(|f| contains_ignore_case(snapshot.function_name(f.function), filter))
        {
            continue;
        }
        let collapsed = is_set(StackKey::Thread(thread.pid, thread.tid));
        rows.push(StackRow::Thread {
            thread: ti,
            collapsed,
        });
        if collapsed {
            continue;
        }
        let frames = &thread.frames;
        let mut level = 1;
        let mut i = 0;
        while i < frames.len() {
            let mut end = i + 1;
            while end < frames.len() && frames[end].function == frames[i].function {
                end += 1;
            }
            let len = end - i;
            if len > 1 && !is_set(StackKey::Span(frames[i].span_id)) {
                rows.push(StackRow::Frames {
                    thread: ti,
                    first: i,
                    len,
                    level,
                    expanded: false,
                });
                level += 1;
            } else {
                for first in i..end {
                    rows.push(StackRow::Frames {
                        thread: ti,
                        first,
                        len: 1,
                        level,
                        expanded: len > 1,
                    });
                    level += 1;
                }
            }
            i = end;
        }
    }
    rows
}

/// Orders two function rows by `key`: largest first, names A to Z; ties
/// by name so the order is stable between snapshots.
fn compare_rows(
    snapshot: &Snapshot,
    key: SortKey,
    a: &FunctionRow,
    b: &FunctionRow,
) -> std::cmp::Ordering {
    let by_name = || {
        snapshot
            .function_name(a.id)
            .cmp(snapshot.function_name(b.id))
    };
    let ord = match key {
        SortKey::Total => b.total_ns.cmp(&a.total_ns),
        SortKey::SelfTime => b.self_ns.cmp(&a.self_ns),
        SortKey::Calls => b.calls.cmp(&a.calls),
        SortKey::Rate => b.calls_per_s.total_cmp(&a.calls_per_s),
        SortKey::Mean => b.mean_ns.cmp(&a.mean_ns),
        SortKey::P95 => b.p95_ns.cmp(&a.p95_ns),
        SortKey::P99 => b.p99_ns.cmp(&a.p99_ns),
        SortKey::Max => b.max_ns.cmp(&a.max_ns),
        SortKey::Name => std::cmp::Ordering::Equal,
    };
    ord.then_with(by_name)
}

/// Case-insensitive substring test; an empty needle matches everything.
pub fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return true;
    }
    if needle.is_ascii() && haystack.is_ascii() {
        return haystack
            .as_bytes()
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()));
    }
    haystack.to_lowercase().contains(&needle.to_lowercase())
}

/// Words for the state badge: `LIVE`, `EXITED (exit status 0)`…
pub fn state_label(state: &TargetState) -> String {
    match state {
        TargetState::Live => "LIVE".to_owned(),
        TargetState::Exited {
            status: Some(status),
            ..
        } => format!("EXITED ({status})"),
        TargetState::Exited { status: None, .. } => "EXITED".to_owned(),
        TargetState::Stopped { why, .. } => format!("STOPPED ({why})"),
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::VecDeque, io, time::Duration};

    use ratatui::{
        Terminal,
        backend::TestBackend,
        crossterm::event::{MouseEvent, MouseEventKind},
    };

    use super::*;
    use crate::{
        live::{FinishedCall, FunctionRow, OpenFrame, SessionInfo, ThreadView},
        sink::FunctionInfo,
        trace::{SpanStatus, ThreadName},
        tui::{EventSource, run},
    };

    fn session() -> Arc<SessionInfo> {
        Arc::new(SessionInfo {
            pid: 1,
            command: "prog".into(),
            functions: ["main", "work", "recurse"]
                .iter()
                .map(|n| FunctionInfo {
                    name: (*n).into(),
                    module: "/bin/prog".into(),
                })
                .collect(),
            ..SessionInfo::default()
        })
    }

    fn call(span_id: u64, function: u32) -> FinishedCall {
        FinishedCall {
            span_id,
            parent_span_id: None,
            depth: 0,
            pid: 1,
            tid: 2,
            thread_name: ThreadName::from("t"),
            function,
            start_ns: span_id * 10,
            end_ns: span_id * 10 + 5,
            self_ns: 5,
            status: SpanStatus::Ok,
        }
    }

    fn function(id: u32, calls: u64, total_ns: u64) -> FunctionRow {
        FunctionRow {
            id,
            calls,
            total_ns,
            ..FunctionRow::default()
        }
    }

    /// Recent calls `ids` (newest first), the three functions, and one
    /// thread in a recursion three deep under `main`.
    fn snapshot(ids: &[u64]) -> Arc<Snapshot> {
        let mut s = Snapshot::empty(session());
        s.recent = ids.iter().map(|&id| call(id, (id % 2) as u32)).collect();
        s.functions = vec![
            function(0, 5, 500),
            function(1, 50, 100),
            function(2, 1, 900),
        ];
        s.threads = vec![ThreadView {
            pid: 1,
            tid: 2,
            name: ThreadName::from("t"),
            frames: std::iter::once(0)
                .chain([2, 2, 2])
                .enumerate()
                .map(|(i, f)| OpenFrame {
                    span_id: 100 + i as u64,
                    function: f,
                    start_ns: 0,
                    depth: i as u32,
                })
                .collect(),
            maybe_incomplete: false,
        }];
        Arc::new(s)
    }

    fn key(code: KeyCode) -> Event {
        Event::Key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    fn app() -> App {
        App::new(snapshot(&[5, 4, 3, 2, 1]), Rect::new(0, 0, 120, 40))
    }

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
    fn recent_selection_follows_its_call_as_new_ones_arrive() {
        let mut a = app();
        a.focus = Pane::Recent;
        a.update(key(KeyCode::Down));
        let held = a.shown.recent[a.recent_rows[a.cursors[1].selected]].span_id;
        assert_eq!(held, 4);
        a.update(Event::Snapshot(snapshot(&[7, 6, 5, 4, 3, 2, 1])));
        let now = a.shown.recent[a.recent_rows[a.cursors[1].selected]].span_id;
        assert_eq!(now, 4, "the selection stays on its call");
        // At the top, the selection follows the newest call.
        a.update(key(KeyCode::Home));
        a.update(Event::Snapshot(snapshot(&[8, 7, 6])));
        assert_eq!(a.cursors[1].selected, 0);
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
    fn functions_selection_stays_on_top_or_follows_its_function() {
        let mut a = app();
        a.focus = Pane::Functions;
        let selected = |a: &App| a.shown.functions[a.function_rows[a.cursors[2].selected]].id;
        assert_eq!(selected(&a), 2);
        let mut reordered = (*snapshot(&[1])).clone();
        reordered.functions[1].total_ns = 10_000;
        a.update(Event::Snapshot(Arc::new(reordered.clone())));
        assert_eq!(selected(&a), 1, "the top row stays selected");
        a.update(key(KeyCode::Down));
        assert_eq!(selected(&a), 2);
        reordered.functions[2].total_ns = 20_000;
        a.update(Event::Snapshot(Arc::new(reordered)));
        assert_eq!(selected(&a), 2, "a row below the top follows its function");
        assert_eq!(a.cursors[2].selected, 0);
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

    #[test]
    fn a_signal_to_ferret_closes_the_dashboard_but_the_target_exiting_does_not() {
        let mut a = app();
        let mut exited = (*snapshot(&[1])).clone();
        exited.state = TargetState::Exited {
            status: None,
            at_ns: 10,
        };
        a.update(Event::Snapshot(Arc::new(exited.clone())));
        assert!(!a.should_quit());
        exited.close = true;
        a.update(Event::Snapshot(Arc::new(exited)));
        assert!(a.should_quit());
    }

    /// Events from a list, then nothing.
    struct Script(VecDeque<Event>, u64);

    impl EventSource for Script {
        fn next(&mut self, _timeout: Duration) -> io::Result<Option<Event>> {
            Ok(self.0.pop_front())
        }

        fn now_ns(&mut self) -> u64 {
            self.1 += 100_000_000;
            self.1
        }
    }

    #[test]
    fn run_loop_draws_updates_and_quits_on_a_test_backend() {
        let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
        let mut a = App::new(snapshot(&[]), Rect::default());
        let mut script = Script(
            VecDeque::from([
                Event::Snapshot(snapshot(&[3, 2, 1])),
                key(KeyCode::Char('?')),
                key(KeyCode::Esc),
                key(KeyCode::Char('q')),
            ]),
            0,
        );
        run(&mut terminal, &mut a, &mut script).unwrap();
        assert!(a.should_quit());
        assert_eq!(a.size, Rect::new(0, 0, 80, 24), "sized from the backend");
        assert_eq!(a.shown.recent.len(), 3);
        let screen: String = terminal
            .backend()
            .buffer()
            .content
            .iter()
            .map(ratatui::buffer::Cell::symbol)
            .collect();
        assert!(screen.contains("Recent Activity"));
    }
}
