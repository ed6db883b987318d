//! The dashboard's state and the one place it changes: [`App::update`].
//!
//! `App` does no terminal I/O. Everything that happens to it (a key, the
//! mouse, a resize, the clock, a new snapshot from the ingestion thread) is
//! an [`Event`]; the views only read it. The rows each pane shows are
//! derived here ([`rows`]), once per change, so that moving a selection,
//! scrolling and drawing all agree on what row N is; what keys and the
//! mouse do is in `keys`.

mod keys;
pub(crate) mod rows;

use std::{collections::HashSet, sync::Arc};

use ratatui::{
    crossterm::event::{KeyEvent, KeyEventKind, MouseEvent},
    layout::Rect,
};

pub use self::rows::{StackKey, StackRow, StallKey, StallRow, contains_ignore_case, stack_rows};
use self::rows::{compare_rows, metric_rows, stack_key, stall_key, stall_rows};
use super::layout::{Areas, Pane};
use crate::{
    live::{FinishedCall, HotRow, Snapshot, TargetState},
    session::ProbeRequest,
};

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

/// The Hot pane's orders, in the order `s` cycles through them there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HotSort {
    /// Samples with the function innermost.
    SelfSamples,
    /// Samples with the function anywhere on the stack.
    TotalSamples,
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
    /// A function of the Hot pane: the commonest stacks through it.
    Hot {
        /// Its name.
        name: Arc<str>,
    },
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
    /// A group of threads stuck in one place: the stack they share and the
    /// threads (looked up in each new snapshot).
    StallGroup(u64),
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

/// The dashboard's whole state.
#[derive(Debug)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent toggles of the display (pause, zoom, Hot pane) and the quit flag"
)]
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
    /// The Hot pane is shown (in Recent Activity's place).
    pub hot: bool,
    /// The Hot pane's order.
    pub hot_sort: HotSort,
    /// A pattern of functions to trace being typed (`+`), if one is.
    pub prompt: Option<String>,
    /// A word for the user about the last key (a request sent, or why
    /// not), until the next key.
    pub message: Option<String>,
    /// Cursors of Live Stack, Recent Activity, Functions, Metrics, Stalls,
    /// Hot.
    pub cursors: [Cursor; 6],
    /// Derived: the Live Stack's rows.
    pub stack_rows: Vec<StackRow>,
    /// Derived: indices into `shown.recent` that pass the filter.
    pub recent_rows: Vec<usize>,
    /// Derived: indices into `shown.functions`, filtered and sorted.
    pub function_rows: Vec<usize>,
    /// Derived: rows the Metrics pane has (for scrolling).
    pub metric_rows: usize,
    /// Derived: the Stalls pane's rows (groups, and the threads of those
    /// expanded) that pass the filter.
    pub stall_rows: Vec<StallRow>,
    /// Derived: indices into `shown.hot.rows`, filtered and sorted.
    pub hot_rows: Vec<usize>,
    /// What the user asked of the session, not yet sent.
    requests: Vec<ProbeRequest>,
    collapsed: HashSet<StackKey>,
    expanded: HashSet<u64>,
    /// Stall groups expanded to their threads, by number.
    expanded_stalls: HashSet<u64>,
    quit: bool,
}

impl App {
    /// A dashboard showing `snapshot`, in a terminal of `size`.
    pub fn new(snapshot: Arc<Snapshot>, size: Rect) -> Self {
        // Started without -s: the samples are all there is to look at.
        let hot = snapshot.session.sampling_only;
        let mut app = Self {
            now_ns: snapshot.taken_ns,
            shown: snapshot.clone(),
            latest: snapshot,
            paused: false,
            focus: if hot { Pane::Hot } else { Pane::Stack },
            zoomed: false,
            size,
            sort: SortKey::Total,
            filter: String::new(),
            editing: None,
            popup: None,
            hot,
            hot_sort: HotSort::SelfSamples,
            prompt: None,
            message: None,
            cursors: [Cursor::default(); 6],
            stack_rows: Vec::new(),
            recent_rows: Vec::new(),
            function_rows: Vec::new(),
            metric_rows: 0,
            stall_rows: Vec::new(),
            hot_rows: Vec::new(),
            requests: Vec::new(),
            collapsed: HashSet::new(),
            expanded: HashSet::new(),
            expanded_stalls: HashSet::new(),
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
        Areas::new(
            self.size,
            self.focus,
            self.zoomed,
            self.shows(Pane::Stalls),
            self.hot,
        )
    }

    /// Whether `pane` is part of the dashboard now: the Stalls pane only
    /// while the shown snapshot has stalls; the Hot pane or Recent
    /// Activity, whichever is in their shared place.
    pub fn shows(&self, pane: Pane) -> bool {
        match pane {
            Pane::Stalls => !self.shown.stalls.is_empty(),
            Pane::Recent => !self.hot,
            Pane::Hot => self.hot,
            _ => true,
        }
    }

    /// What the user asked of the session since the last call (the run
    /// loop hands it on).
    pub fn take_requests(&mut self) -> Vec<ProbeRequest> {
        std::mem::take(&mut self.requests)
    }

    /// The Hot pane's selected row, if any.
    pub fn selected_hot(&self) -> Option<&HotRow> {
        let i = *self
            .hot_rows
            .get(self.cursors[Pane::Hot.index()].selected)?;
        self.shown.hot.rows.get(i)
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
                // The session's answer to a request replaces "asked to…".
                if snapshot.notice != self.latest.notice {
                    self.message = None;
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

    /// Asks the session for `request`, saying `what` in the footer.
    fn request(&mut self, request: ProbeRequest, what: String) {
        self.requests.push(request);
        self.message = Some(what);
    }

    /// How many rows pane `pane` has.
    pub fn rows_in(&self, pane: Pane) -> usize {
        match pane {
            Pane::Stack => self.stack_rows.len(),
            Pane::Recent => self.recent_rows.len(),
            Pane::Functions => self.function_rows.len(),
            Pane::Metrics => self.metric_rows,
            Pane::Stalls => self.stall_rows.len(),
            Pane::Hot => self.hot_rows.len(),
        }
    }

    /// Rows of list a pane has room for (inside its border, under any
    /// column header).
    pub fn view_height(&self, pane: Pane) -> usize {
        let inner = usize::from(self.areas().pane(pane).height.saturating_sub(2));
        match pane {
            Pane::Functions | Pane::Hot => inner.saturating_sub(pane.heading_lines()),
            Pane::Stalls => inner / Pane::Stalls.lines_per_row(),
            _ => inner,
        }
    }

    fn fit_cursors(&mut self) {
        for pane in Pane::ALL {
            let (len, height) = (self.rows_in(pane), self.view_height(pane));
            self.cursors[pane.index()].fit(len, height);
        }
    }

    fn selection_keys(&self) -> SelectionKeys {
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
        // A stall follows its group, or its thread.
        let stall = self
            .stall_rows
            .get(self.cursors[Pane::Stalls.index()].selected)
            .map(|&row| stall_key(&self.shown, row));
        // The Hot pane's top row stays selected as the order changes, like
        // the Functions table's; one further down follows its function.
        let hot = (self.cursors[Pane::Hot.index()].selected > 0)
            .then(|| self.selected_hot().map(|r| r.name.clone()))
            .flatten();
        SelectionKeys {
            stack,
            recent,
            function,
            stall,
            hot,
        }
    }

    fn rebuild(&mut self) {
        self.rebuild_keeping(SelectionKeys::default());
    }

    /// Recomputes every pane's rows from the shown snapshot, then puts each
    /// selection back on the row it held, if that row is still there.
    fn rebuild_keeping(&mut self, keys: SelectionKeys) {
        self.stack_rows = stack_rows(&self.shown, self.active_filter(), |key| match key {
            StackKey::Thread(..) | StackKey::Goroutine(..) => self.collapsed.contains(&key),
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
        self.metric_rows = metric_rows(&self.shown);
        self.stall_rows = stall_rows(&self.shown, self.active_filter(), |id| {
            self.expanded_stalls.contains(&id)
        });
        let rows = &self.shown.hot.rows;
        let mut hot: Vec<usize> = (0..rows.len())
            .filter(|&i| self.matches(&rows[i].name))
            .collect();
        if self.hot_sort == HotSort::TotalSamples {
            hot.sort_by(|&a, &b| {
                rows[b]
                    .total_samples
                    .cmp(&rows[a].total_samples)
                    .then(rows[b].self_samples.cmp(&rows[a].self_samples))
                    .then_with(|| rows[a].name.cmp(&rows[b].name))
            });
        }
        self.hot_rows = hot;
        if !self.shows(self.focus) {
            // The stalls ended: back to the Live Stack, where they were.
            self.focus = Pane::Stack;
        }

        let SelectionKeys {
            stack,
            recent,
            function,
            stall,
            hot,
        } = keys;
        if let Some(name) = hot
            && let Some(i) = self
                .hot_rows
                .iter()
                .position(|&i| self.shown.hot.rows[i].name == name)
        {
            self.cursors[Pane::Hot.index()].selected = i;
        }
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
            && let Some(i) = self
                .stall_rows
                .iter()
                .position(|&row| stall_key(&self.shown, row) == key)
        {
            self.cursors[Pane::Stalls.index()].selected = i;
        }
        self.fit_cursors();
    }
}

/// What keeps each pane's selection on its row when the rows change: the
/// Live Stack's row, the selected recent call and function, the stall
/// group or thread, and the Hot pane's function.
#[derive(Clone, Debug, Default)]
pub(super) struct SelectionKeys {
    stack: Option<StackKey>,
    recent: Option<u64>,
    function: Option<u64>,
    stall: Option<StallKey>,
    hot: Option<Arc<str>>,
}

/// The session ended on its own terms (SIGINT, SIGTERM): nothing is left to
/// watch and the user did not ask to look at the aftermath.
fn snapshot_requests_close(snapshot: &Snapshot) -> bool {
    snapshot.close
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
        crossterm::event::{KeyCode, KeyEvent, KeyModifiers},
    };

    use super::*;
    use crate::{
        live::{FunctionRow, OpenFrame, SessionInfo, ThreadView},
        trace::FunctionInfo,
        trace::{SpanStatus, ThreadName},
        tui::{EventSource, run},
    };

    pub(super) fn session() -> Arc<SessionInfo> {
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

    pub(super) fn call(span_id: u64, function: u32) -> FinishedCall {
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
            overhead_ns: 0,
            sched: None,
        }
    }

    pub(super) fn function(id: u32, calls: u64, total_ns: u64) -> FunctionRow {
        FunctionRow {
            id,
            calls,
            total_ns,
            ..FunctionRow::default()
        }
    }

    /// Recent calls `ids` (newest first), the three functions, and one
    /// thread in a recursion three deep under `main`.
    pub(super) fn snapshot(ids: &[u64]) -> Arc<Snapshot> {
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
            now: None,
            goroutine: None,
        }];
        Arc::new(s)
    }

    pub(super) fn key(code: KeyCode) -> Event {
        Event::Key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    pub(super) fn app() -> App {
        App::new(snapshot(&[5, 4, 3, 2, 1]), Rect::new(0, 0, 120, 40))
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
