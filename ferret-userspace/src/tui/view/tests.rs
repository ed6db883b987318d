//! Snapshot tests of the views: synthetic sessions drawn into a
//! `TestBackend` at several sizes, compared as text (insta snapshots next to
//! this file), plus checks of the styles that carry meaning (unwound calls,
//! stalled spans, lost events).

use std::{path::PathBuf, sync::Arc};

use ratatui::{
    Terminal,
    backend::TestBackend,
    buffer::Buffer,
    crossterm::event::{KeyCode, KeyEvent, KeyModifiers},
    layout::Rect,
    style::Color,
};

use crate::{
    live::{
        FinishedCall, FunctionRow, MetricPoint, MetricsHistory, OpenFrame, SessionInfo, Snapshot,
        TargetState, ThreadView,
    },
    sink::MetricSample,
    stall::{Frame, LockWait, SchedState, StallReport, WaitKind, group_stalls, wait_summary},
    target::ExitStatus,
    trace::FunctionInfo,
    trace::{SpanStatus, ThreadName},
    tui::{
        app::{App, Event},
        layout::Pane,
    },
};

const S: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;
/// The session starts at 1000 s of CLOCK_MONOTONIC…
const START: u64 = 1_000 * S;
/// …which is 12:00:00.000 local time.
const LOCAL_OFFSET: i64 = 12 * 3600 * 1_000_000_000 - START as i64;
/// Snapshots are taken 65.3 s in.
const NOW: u64 = START + 65_300 * MS;

const FUNCTIONS: [&str; 7] = [
    "shop::http::handle_request",
    "shop::http::parse_request",
    "shop::db::query_db",
    "shop::index::walk_tree",
    "shop::db::decode_row",
    "shop::pool::ping",
    "shop::auth::check_token",
];

fn session() -> Arc<SessionInfo> {
    Arc::new(SessionInfo {
        pid: 4242,
        command: "./shop --port 8080".into(),
        launched: true,
        functions: FUNCTIONS
            .iter()
            .map(|name| FunctionInfo {
                name: (*name).into(),
                module: "/srv/shop/bin/shop".into(),
            })
            .collect(),
        exit_mode: "auto: ret 2, uretprobe 5".into(),
        log: Some(PathBuf::from("/tmp/ferret-watch-shop-77.log")),
        output: Some(PathBuf::from("trace.parquet")),
        started_ns: START,
        stall_ns: 5 * S,
        local_offset_ns: LOCAL_OFFSET,
        probe_cost_ns: None,
        sample_hz: 0,
        sampling_only: false,
    })
}

fn frame(span_id: u64, function: u32, ago_ms: u64, depth: u32) -> OpenFrame {
    OpenFrame {
        span_id,
        function,
        start_ns: NOW - ago_ms * MS,
        depth,
    }
}

fn thread(tid: u32, name: &str, frames: Vec<OpenFrame>) -> ThreadView {
    ThreadView {
        pid: 4242,
        tid,
        name: ThreadName::from(name),
        frames,
        maybe_incomplete: false,
        goroutine: None,
        now: None,
    }
}

fn call(
    span_id: u64,
    tid: u32,
    function: u32,
    end_ago_ms: u64,
    took_us: u64,
    status: SpanStatus,
) -> FinishedCall {
    let end_ns = NOW - end_ago_ms * MS;
    FinishedCall {
        span_id,
        parent_span_id: (function != 0).then_some(span_id - 1),
        depth: u32::from(function != 0),
        pid: 4242,
        tid,
        thread_name: ThreadName::from(if tid == 4250 {
            "scheduler"
        } else {
            "http-worker-0"
        }),
        function,
        start_ns: end_ns - took_us * 1000,
        end_ns,
        self_ns: took_us * 1000 / 2,
        status,
        overhead_ns: 0,
        sched: None,
    }
}

fn row(id: u32, calls: u64, total_ms: u64, max_us: u64) -> FunctionRow {
    let mean = total_ms * MS / calls;
    FunctionRow {
        id,
        calls,
        unwound: 0,
        calls_per_s: calls as f64 / 65.3,
        total_ns: total_ms * MS,
        self_ns: total_ms * MS / 3,
        mean_ns: mean,
        p50_ns: mean * 9 / 10,
        p95_ns: mean * 2,
        p99_ns: mean * 3,
        max_ns: max_us * 1000,
        cpu_share: None,
    }
}

fn metrics() -> Arc<MetricsHistory> {
    let points: Vec<MetricPoint> = (0..65u64)
        .map(|i| MetricPoint {
            ts_ns: START + i * S,
            cpu_percent: (i > 0).then(|| 20.0 + 15.0 * ((i as f64) / 4.0).sin()),
            rss_bytes: Some((40 << 20) + (i % 10) * (3 << 20)),
            threads: Some(7),
        })
        .collect();
    let mut latest = MetricSample::basic(
        START + 64 * S,
        4242,
        "shop".into(),
        Some(23.5),
        Some((40 << 20) + 12 * (1 << 20)),
        Some(7),
    );
    latest.extra[0] = Some(21.0);
    latest.extra[1] = Some(2.5);
    latest.unavailable = 1 << 14;
    Arc::new(MetricsHistory {
        points,
        latest: Some(latest),
    })
}

/// A busy service: four threads (one deep in recursion, one past
/// `--stall`, one idle), finished calls of every status, seven functions.
fn busy() -> Snapshot {
    let mut scheduler = thread(
        4250,
        "scheduler",
        std::iter::once(frame(900, 0, 800, 0))
            .chain((0..12).map(|d| frame(901 + d, 3, 700 - d * 10, d as u32 + 1)))
            .collect(),
    );
    scheduler.maybe_incomplete = true;
    Snapshot {
        session: session(),
        taken_ns: NOW,
        state: TargetState::Live,
        events: 1_234_567,
        events_per_s: 18_900.0,
        lost: 0,
        calls: 617_000,
        threads: vec![
            thread(
                4243,
                "http-worker-0",
                vec![
                    frame(700, 0, 1_250, 0),
                    frame(701, 2, 1_200, 1),
                    frame(702, 4, 3, 2),
                ],
            ),
            thread(4244, "http-worker-1", Vec::new()),
            thread(4249, "db-pool", vec![frame(800, 5, 6_500, 0)]),
            scheduler,
        ],
        idle_goroutines: 0,
        functions: vec![
            row(0, 20_100, 9_800, 812_000),
            row(1, 20_100, 402, 95),
            row(2, 20_100, 8_900, 805_000),
            row(3, 61_000, 1_830, 410),
            row(4, 140_700, 3_100, 88),
            row(5, 13_050, 39, 31),
            FunctionRow {
                unwound: 20,
                ..row(6, 20_100, 60, 2_900)
            },
        ],
        recent: vec![
            call(1005, 4243, 4, 2, 21, SpanStatus::Ok),
            call(1004, 4243, 2, 3, 812_000, SpanStatus::Ok),
            call(1003, 4243, 6, 9, 1_400, SpanStatus::Unwound),
            call(1002, 4250, 3, 20, 37, SpanStatus::Ok),
            call(1001, 4243, 0, 25, 2_100, SpanStatus::Ok),
            call(1000, 4250, 3, 40, 12, SpanStatus::Open),
        ]
        .into(),
        metrics: metrics(),
        stalls: Arc::from([]),
        stall_groups: Arc::from([]),
        warning: None,
        notice: None,
        otlp: None,
        overhead: (None, None),
        close: false,
        hot: Arc::default(),
        detached: Arc::default(),
        sampling: None,
    }
}

const LOCK_A: u64 = 0x5555_0000_4040;
const LOCK_B: u64 = 0x5555_0000_4080;

/// Thread `tid` stalled in `shop::db::query_db` (span `span_id`, entered
/// `ago_ms` ago) waiting for the lock `lock` that `owner` holds: the two
/// threads of [`stalled`] deadlock.
fn deadlocked(tid: u32, name: &str, span_id: u64, lock: u64, owner: (u32, &str)) -> StallReport {
    let wait = LockWait {
        addr: lock,
        kind: WaitKind::Mutex,
        owner: Some(owner.0),
        owner_name: Some(owner.1.to_owned()),
        probable: false,
    };
    let deadlock = vec![(tid, name.to_owned()), (owner.0, owner.1.to_owned())];
    let syscall = format!("futex({lock:#x}, FUTEX_WAIT_PRIVATE, 2, NULL)");
    let frame = |function: &str, file: Option<&str>, line: u32, address: u64| Frame {
        function: Some(function.to_owned()),
        file: file.map(str::to_owned),
        line: file.map(|_| line),
        address,
        module: None,
        inlined: false,
    };
    StallReport {
        pid: 4242,
        tid,
        thread_name: name.to_owned(),
        span_id,
        function: 2,
        function_name: "shop::db::query_db".to_owned(),
        depth: 1,
        since_ns: NOW - 7_200 * MS,
        before_attach: false,
        captured_ns: NOW - 2_000 * MS,
        state: SchedState::Sleeping,
        wait: wait_summary(
            SchedState::Sleeping,
            Some(&syscall),
            Some("futex_wait_queue"),
            None,
            Some(&wait),
            &deadlock,
            false,
        ),
        syscall: Some(syscall),
        wchan: Some("futex_wait_queue".to_owned()),
        lock: Some(wait),
        deadlock,
        deadlock_with: Some(owner.0),
        frames: Arc::from([
            frame("__lll_lock_wait", None, 0, 0x7f00_0000_1000),
            frame("pthread_mutex_lock", None, 0, 0x7f00_0000_2000),
            frame(
                "shop::db::query_db",
                Some("src/db.rs"),
                88,
                0x5555_0000_1234,
            ),
            frame(
                "shop::http::handle_request",
                Some("src/http.rs"),
                41,
                0x5555_0000_2345,
            ),
        ]),
        stack_note: None,
        on_stack: true,
        group: 0,
        goroutine: None,
    }
}

/// [`busy`] with two more workers deadlocked in `query_db`, found by the
/// stall watchdog.
fn stalled() -> Snapshot {
    let mut snapshot = busy();
    for (tid, name, span) in [(4245, "http-worker-2", 600), (4246, "http-worker-3", 650)] {
        snapshot.threads.push(thread(
            tid,
            name,
            vec![frame(span, 0, 7_300, 0), frame(span + 1, 2, 7_200, 1)],
        ));
    }
    set_stalls(
        &mut snapshot,
        vec![
            deadlocked(4245, "http-worker-2", 601, LOCK_B, (4246, "http-worker-3")),
            deadlocked(4246, "http-worker-3", 651, LOCK_A, (4245, "http-worker-2")),
        ],
    );
    snapshot
}

/// The stalls of `snapshot`, grouped as the watchdog groups them.
fn set_stalls(snapshot: &mut Snapshot, mut stalls: Vec<StallReport>) {
    stalls.sort_by_key(|r| (r.pid, r.tid));
    snapshot.stall_groups = group_stalls(&stalls).into();
    snapshot.stalls = stalls.into();
}

/// Thread `tid` of a pool at rest: stalled in `shop::pool::ping`, sleeping
/// in `clock_nanosleep`, called from `handle_request` (no open span shown
/// for it in the Live Stack: the pool's threads are many).
fn resting(tid: u32) -> StallReport {
    let frame = |function: &str, file: Option<&str>, line: u32, address: u64| Frame {
        function: Some(function.to_owned()),
        file: file.map(str::to_owned),
        line: file.map(|_| line),
        address,
        module: None,
        inlined: false,
    };
    let syscall = format!("clock_nanosleep(CLOCK_REALTIME, 0, {{{tid}.5s}}, NULL)");
    StallReport {
        pid: 4242,
        tid,
        thread_name: format!("pool-{}", tid - 5000),
        span_id: u64::from(tid) * 10,
        function: 5,
        function_name: "shop::pool::ping".to_owned(),
        depth: 0,
        since_ns: NOW - 9_000 * MS - u64::from(tid % 7) * 100 * MS,
        before_attach: true,
        captured_ns: NOW - 1_000 * MS,
        state: SchedState::Sleeping,
        wait: wait_summary(
            SchedState::Sleeping,
            Some(&syscall),
            Some("hrtimer_nanosleep"),
            None,
            None,
            &[],
            false,
        ),
        syscall: Some(syscall),
        wchan: Some("hrtimer_nanosleep".to_owned()),
        lock: None,
        deadlock: Vec::new(),
        deadlock_with: None,
        frames: Arc::from([
            frame("clock_nanosleep", None, 0, 0x7f00_0000_3000),
            frame(
                "shop::pool::ping",
                Some("src/pool.rs"),
                23,
                0x5555_0000_3456,
            ),
            frame(
                "shop::pool::worker",
                Some("src/pool.rs"),
                40,
                0x5555_0000_4567,
            ),
        ]),
        stack_note: None,
        on_stack: true,
        group: 0,
        goroutine: None,
    }
}

/// [`stalled`] with a pool of 1200 threads at rest besides the deadlock.
fn pool_and_deadlock() -> Snapshot {
    let mut snapshot = stalled();
    let mut stalls = snapshot.stalls.to_vec();
    stalls.extend((5000..6200).map(resting));
    set_stalls(&mut snapshot, stalls);
    snapshot
}

fn app(snapshot: Snapshot, width: u16, height: u16) -> App {
    let mut app = App::new(Arc::new(snapshot), Rect::new(0, 0, width, height));
    app.update(Event::Tick(NOW));
    app
}

fn draw(app: &App) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(app.size.width, app.size.height)).unwrap();
    terminal
        .draw(|frame| frame.render_widget(app, frame.area()))
        .unwrap();
    terminal.backend().buffer().clone()
}

/// The buffer as text, one line per row, trailing spaces kept out.
fn text(buffer: &Buffer) -> String {
    let width = usize::from(buffer.area.width);
    buffer
        .content
        .chunks(width)
        .map(|row| {
            let mut line = String::new();
            let mut skip = 0;
            for cell in row {
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                line.push_str(cell.symbol());
                skip = unicode_width(cell.symbol()).saturating_sub(1);
            }
            line.trim_end().to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn unicode_width(symbol: &str) -> usize {
    ratatui::text::Span::raw(symbol).width()
}

fn key(code: KeyCode) -> Event {
    Event::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

/// Where `needle` is on screen (first match), as (x, y).
fn find(buffer: &Buffer, needle: &str) -> Option<(u16, u16)> {
    text(buffer).lines().enumerate().find_map(|(y, line)| {
        line.find(needle).map(|byte| {
            let x = line[..byte].chars().count();
            (x as u16, y as u16)
        })
    })
}

#[test]
fn busy_session_at_120x40() {
    insta::assert_snapshot!(text(&draw(&app(busy(), 120, 40))));
}

#[test]
fn busy_session_at_80x24() {
    insta::assert_snapshot!(text(&draw(&app(busy(), 80, 24))));
}

#[test]
fn busy_session_in_a_narrow_terminal() {
    insta::assert_snapshot!(text(&draw(&app(busy(), 50, 32))));
}

#[test]
fn empty_session_at_80x24() {
    let mut app = app(Snapshot::empty(session()), 80, 24);
    app.update(Event::Tick(START + 1_500 * MS));
    insta::assert_snapshot!(text(&draw(&app)));
}

#[test]
fn terminal_too_small() {
    insta::assert_snapshot!(text(&draw(&app(busy(), 36, 10))));
}

#[test]
fn the_header_counts_spans_sent_to_the_collector_and_unsent() {
    let mut snapshot = busy();
    snapshot.otlp = Some(crate::live::OtlpProgress {
        sent: 1_200,
        unsent: 34,
    });
    let screen = text(&draw(&app(snapshot, 160, 40)));
    let header = screen.lines().nth(1).unwrap();
    assert!(header.contains("otlp 1200 sent · ⚠ 34 unsent"), "{header}");
    let screen = text(&draw(&app(busy(), 160, 40)));
    assert!(!screen.lines().nth(1).unwrap().contains("otlp"));
}

#[test]
fn the_header_shows_the_probes_cost_against_the_budget_and_the_correction() {
    let mut snapshot = busy();
    snapshot.overhead = (Some(12.34), Some(5.0));
    let mut info = (*snapshot.session).clone();
    info.probe_cost_ns = Some(18_600.0);
    snapshot.session = Arc::new(info);
    let screen = text(&draw(&app(snapshot, 200, 40)));
    let header = screen.lines().nth(1).unwrap();
    assert!(header.contains("probes 12.3%/5%"), "{header}");
    assert!(header.contains("times −≤18.6µs/call"), "{header}");
    // Uncorrected, without a budget: neither.
    let screen = text(&draw(&app(busy(), 200, 40)));
    assert!(!screen.lines().nth(1).unwrap().contains("probes"));
}

#[test]
fn target_exited_keeps_the_last_state() {
    let mut snapshot = busy();
    snapshot.state = TargetState::Exited {
        status: Some(ExitStatus::Code(3)),
        at_ns: NOW,
    };
    snapshot.threads.clear();
    let mut app = app(snapshot, 80, 24);
    // The clock goes on; the elapsed time in the header does not.
    app.update(Event::Tick(NOW + 30 * S));
    insta::assert_snapshot!(text(&draw(&app)));
}

#[test]
fn paused_display_with_lost_events() {
    let mut app = app(busy(), 80, 24);
    app.update(key(KeyCode::Char('p')));
    let mut later = busy();
    later.lost = 37;
    later.taken_ns = NOW + S;
    app.update(Event::Snapshot(Arc::new(later)));
    app.update(Event::Tick(NOW + 2 * S));
    let buffer = draw(&app);
    insta::assert_snapshot!(text(&buffer));
    // The display is frozen at the pause…
    assert!(
        text(&buffer).contains("1.2s"),
        "elapsed times stopped ticking"
    );
    // …but lost events are news: shown from the newest snapshot, in red.
    let (x, y) = find(&buffer, "37 events lost").expect("lost events shown");
    assert_eq!(buffer[(x, y)].fg, Color::Red);
}

#[test]
fn lost_events_survive_a_narrow_header() {
    let mut snapshot = busy();
    snapshot.lost = 1_234;
    let buffer = draw(&app(snapshot, 40, 24));
    assert!(
        text(&buffer)
            .lines()
            .nth(1)
            .unwrap()
            .contains("1234 events lost")
    );
}

#[test]
fn help_popup() {
    let mut app = app(busy(), 80, 24);
    app.update(key(KeyCode::Char('?')));
    insta::assert_snapshot!(text(&draw(&app)));
}

#[test]
fn details_of_an_open_span_tick_and_show_its_stack() {
    let mut app = app(busy(), 120, 40);
    // Thread row, then handle_request, then query_db.
    app.update(key(KeyCode::Down));
    app.update(key(KeyCode::Down));
    app.update(key(KeyCode::Enter));
    app.update(Event::Tick(NOW + 500 * MS));
    insta::assert_snapshot!(text(&draw(&app)));
}

#[test]
fn details_of_a_finished_call() {
    let mut app = app(busy(), 80, 24);
    app.update(key(KeyCode::Tab));
    app.update(key(KeyCode::Down));
    app.update(key(KeyCode::Down));
    app.update(key(KeyCode::Enter));
    let screen = text(&draw(&app));
    assert!(screen.contains("shop::auth::check_token"), "{screen}");
    assert!(screen.contains("unwound"), "{screen}");
    assert!(screen.contains("1.40ms"), "{screen}");
}

#[test]
fn filter_narrows_every_pane() {
    let mut app = app(busy(), 120, 40);
    app.update(key(KeyCode::Char('/')));
    for c in "DB::".chars() {
        app.update(key(KeyCode::Char(c)));
    }
    insta::assert_snapshot!(text(&draw(&app)));
}

#[test]
fn zoomed_functions_sorted_by_calls() {
    let mut app = app(busy(), 80, 24);
    app.update(key(KeyCode::Char('3')));
    app.update(key(KeyCode::Char('z')));
    app.update(key(KeyCode::Char('s')));
    app.update(key(KeyCode::Char('s')));
    insta::assert_snapshot!(text(&draw(&app)));
}

#[test]
fn expanded_recursion_and_folded_thread() {
    let mut app = app(busy(), 120, 40);
    // Select the scheduler's walk_tree run and expand it; fold http-worker-0.
    let run = app
        .stack_rows
        .iter()
        .position(|r| matches!(r, crate::tui::app::StackRow::Frames { len: 12, .. }))
        .unwrap();
    app.cursors[0].selected = run;
    app.update(key(KeyCode::Enter));
    app.cursors[0].selected = 0;
    app.update(key(KeyCode::Enter));
    insta::assert_snapshot!(text(&draw(&app)));
}

#[test]
fn meaningful_colours() {
    let buffer = draw(&app(busy(), 120, 40));
    let (x, y) = find(&buffer, "unwound").unwrap();
    assert_eq!(buffer[(x, y)].fg, Color::Magenta, "unwound calls stand out");
    // db-pool's ping has been open 6.5 s, longer than --stall 5s, but only
    // the watchdog says what is stalled (a call busy calling traced
    // children is not): not red until it does.
    let (x, y) = find(&buffer, "6.5s").unwrap();
    assert_ne!(buffer[(x, y)].fg, Color::Red, "old is not stalled");
    let mut snapshot = busy();
    let mut ping = deadlocked(4249, "db-pool", 800, LOCK_A, (4250, "scheduler"));
    (ping.function, ping.function_name) = (5, "shop::pool::ping".to_owned());
    set_stalls(&mut snapshot, vec![ping]);
    let buffer = draw(&app(snapshot, 120, 40));
    let (x, y) = find(&buffer, "6.5s").unwrap();
    assert_eq!(buffer[(x, y)].fg, Color::Red, "stalled spans stand out");
    let (x, y) = find(&buffer, "shop::pool::ping ⚠").unwrap();
    assert_eq!(buffer[(x, y)].fg, Color::Red);
    let (x, y) = find(&buffer, "1.2s").unwrap();
    assert_ne!(buffer[(x, y)].fg, Color::Red);
}

#[test]
fn stalled_threads_get_a_pane_under_the_live_stack() {
    let buffer = draw(&app(stalled(), 120, 40));
    let screen = text(&buffer);
    insta::assert_snapshot!(screen);
    let (_, stack_y) = find(&buffer, "Live Stack").unwrap();
    let (stalls_x, stalls_y) = find(&buffer, "Stalls").expect("a Stalls pane");
    let (recent_x, _) = find(&buffer, "Recent Activity").unwrap();
    assert!(
        stalls_y > stack_y && stalls_x < recent_x,
        "under the Live Stack"
    );
    assert!(
        screen.contains("2 threads stalled · DEADLOCK"),
        "header:\n{screen}"
    );
    // The stalled calls are red in the Live Stack, and their threads say so.
    let mut app = app(stalled(), 120, 40);
    app.update(key(KeyCode::Char('z')));
    let buffer = draw(&app);
    let screen = text(&buffer);
    let (x, y) = find(&buffer, "http-worker-2 4245 · 2 open ⚠ stalled").expect("thread marked");
    assert_eq!(buffer[(x + 28, y)].fg, Color::Red);
    let row = screen
        .lines()
        .find(|l| l.contains("query_db ⚠"))
        .expect("stalled frame marked");
    assert!(row.contains("7.2s"), "{row}");
}

#[test]
fn without_stalls_there_is_no_stalls_pane_and_tab_skips_it() {
    let mut app = app(busy(), 120, 40);
    assert!(!text(&draw(&app)).contains("Stalls"));
    for _ in 0..4 {
        app.update(key(KeyCode::Tab));
        assert_ne!(app.focus, Pane::Stalls);
    }
    assert_eq!(app.focus, Pane::Stack, "four panes, then round again");
    app.update(key(KeyCode::Char('5')));
    assert_eq!(app.focus, Pane::Stack, "5 does nothing without stalls");
}

#[test]
fn enter_on_a_stall_shows_where_it_is_stuck() {
    let mut app = app(stalled(), 120, 40);
    app.update(key(KeyCode::Char('5')));
    assert_eq!(app.focus, Pane::Stalls);
    app.update(key(KeyCode::Down));
    app.update(key(KeyCode::Enter));
    let screen = text(&draw(&app));
    insta::assert_snapshot!(screen);
    assert!(screen.contains("http-worker-3 (tid 4246)"), "{screen}");
    assert!(
        screen.contains("mutex 0x555500004040, held by tid 4245 (http-worker-2)"),
        "{screen}"
    );
    assert!(
        screen.contains(
            "tid 4246 (http-worker-3) waits for tid 4245 (http-worker-2) waits for tid 4246"
        ),
        "{screen}"
    );
    assert!(
        screen.contains("shop::db::query_db (src/db.rs:88)"),
        "{screen}"
    );
}

#[test]
fn when_the_stalls_end_the_pane_goes_and_the_focus_returns() {
    let mut app = app(stalled(), 120, 40);
    app.update(key(KeyCode::Char('5')));
    app.update(key(KeyCode::Enter));
    let mut later = busy();
    later.taken_ns = NOW + S;
    app.update(Event::Snapshot(Arc::new(later)));
    assert_eq!(app.focus, Pane::Stack);
    let screen = text(&draw(&app));
    assert!(!screen.contains(" Stalls "), "{screen}");
    assert!(
        screen.contains("no longer stalled: it returned or moved on"),
        "the open popup says the stall ended:\n{screen}"
    );
}

#[test]
fn a_stalled_span_s_details_include_where_it_is_stuck() {
    let mut app = app(stalled(), 120, 40);
    let row = app
        .stack_rows
        .iter()
        .position(|r| {
            matches!(r, crate::tui::app::StackRow::Frames { thread, first: 1, .. }
                if app.shown.threads[*thread].tid == 4245)
        })
        .unwrap();
    app.cursors[0].selected = row;
    app.update(key(KeyCode::Enter));
    let screen = text(&draw(&app));
    assert!(screen.contains("where it is stuck"), "{screen}");
    assert!(screen.contains("DEADLOCK"), "{screen}");
    assert!(screen.contains("(src/db.rs:88)"), "{screen}");
}

#[test]
fn a_click_on_either_line_of_a_stall_selects_it() {
    use ratatui::crossterm::event::{MouseButton, MouseEvent, MouseEventKind};
    let mut app = app(stalled(), 120, 40);
    app.update(key(KeyCode::Char('5')));
    app.update(key(KeyCode::Down));
    assert_eq!(app.cursors[Pane::Stalls.index()].selected, 1);
    let buffer = draw(&app);
    // The first stall's second line: what it waits for.
    let (_, first) = find(&buffer, "⚠ http-worke…:4245").unwrap();
    let (x, y) = find(&buffer, "DEADLOCK with tid 4246").unwrap();
    assert_eq!(y, first + 1, "two lines per stall");
    app.update(Event::Mouse(MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column: x,
        row: y,
        modifiers: KeyModifiers::NONE,
    }));
    assert_eq!(app.focus, Pane::Stalls);
    assert_eq!(app.cursors[Pane::Stalls.index()].selected, 0);
}

#[test]
fn a_pool_at_rest_is_one_entry_with_its_count_after_the_deadlock() {
    let mut app = app(pool_and_deadlock(), 160, 44);
    let screen = text(&draw(&app));
    insta::assert_snapshot!(screen);
    let lines: Vec<&str> = screen.lines().collect();
    let at = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle} not on screen:\n{screen}"))
    };
    assert!(
        screen.contains("Stalls 1202 quiet > 5.0s in 3 places"),
        "{screen}"
    );
    // The deadlocked threads first, each alone; then the pool, once.
    assert!(at("⚠ http-worke…:4245") < at("⚠ http-worke…:4246"));
    assert!(at("⚠ http-worke…:4246") < at("⚠ ▸ ×1200 threads"));
    assert_eq!(screen.matches("shop::pool::ping at pool.rs:23").count(), 1);
    assert!(screen.contains("tids 5000–6199"), "{screen}");
    assert_eq!(app.stall_rows.len(), 3);

    // Right lists the pool's threads under it; Left folds them again.
    app.update(key(KeyCode::Char('5')));
    app.update(key(KeyCode::End));
    app.update(key(KeyCode::Right));
    assert_eq!(app.stall_rows.len(), 3 + 1200);
    assert_eq!(
        app.cursors[Pane::Stalls.index()].selected,
        2,
        "still on the group"
    );
    let screen = text(&draw(&app));
    assert!(screen.contains("▾ ×1200 threads"), "{screen}");
    assert!(screen.contains("pool-0:5000"), "{screen}");
    app.update(key(KeyCode::Down));
    app.update(key(KeyCode::Left));
    assert_eq!(app.stall_rows.len(), 3);
    assert_eq!(
        app.cursors[Pane::Stalls.index()].selected,
        2,
        "back on the group"
    );

    // Enter on the group: the stack they share and their threads.
    app.update(key(KeyCode::Enter));
    let screen = text(&draw(&app));
    insta::assert_snapshot!("enter_on_a_stall_group", screen);
    assert!(screen.contains("Stalled threads"), "{screen}");
    assert!(
        screen.contains("1200 (pool-0, pool-1, pool-2, pool-3, … (1200 names))"),
        "{screen}"
    );
    assert!(screen.contains("tids 5000–6199"), "{screen}");
    assert!(
        screen.contains("shop::pool::ping (src/pool.rs:23)"),
        "{screen}"
    );
    assert!(
        screen.contains("shop::pool::worker (src/pool.rs:40)"),
        "{screen}"
    );
}

#[test]
fn a_stall_group_s_selection_follows_it_as_groups_come_and_go() {
    let mut app = app(pool_and_deadlock(), 120, 40);
    app.update(key(KeyCode::Char('5')));
    app.update(key(KeyCode::End));
    // The deadlock ends: the pool's entry moves up, the selection with it.
    let mut later = busy();
    later.taken_ns = NOW + S;
    set_stalls(&mut later, (5000..6200).map(resting).collect());
    app.update(Event::Snapshot(Arc::new(later)));
    assert_eq!(app.stall_rows.len(), 1);
    assert_eq!(app.cursors[Pane::Stalls.index()].selected, 0);
    app.update(key(KeyCode::Enter));
    let screen = text(&draw(&app));
    assert!(screen.contains("stall_group"), "{screen}");
}

/// A Go server: two goroutines inside traced calls that last ran on the
/// same thread, one of them stuck on a channel, and 812 more that ran
/// traced calls lately and have none open.
fn go_server() -> Snapshot {
    let mut snapshot = busy();
    let goroutine = |goid: u64, frames| ThreadView {
        goroutine: Some(goid),
        ..thread(4250, "srv", frames)
    };
    snapshot.threads = vec![
        goroutine(17, vec![frame(900, 0, 40, 0), frame(901, 4, 30, 1)]),
        goroutine(18, vec![frame(950, 0, 9_000, 0), frame(951, 2, 8_900, 1)]),
    ];
    snapshot.idle_goroutines = 812;
    let mut stuck = deadlocked(4250, "srv", 951, LOCK_A, (4250, "srv"));
    stuck.goroutine = Some(18);
    stuck.lock = None;
    stuck.deadlock = Vec::new();
    stuck.deadlock_with = None;
    stuck.syscall = None;
    stuck.wchan = None;
    stuck.wait = "goroutine waiting (chan receive)".to_owned();
    set_stalls(&mut snapshot, vec![stuck]);
    snapshot
}

#[test]
fn a_go_program_s_live_stack_is_grouped_by_goroutine() {
    let mut app = app(go_server(), 120, 40);
    let screen = text(&draw(&app));
    assert!(
        screen.contains("2 goroutines in calls (812 idle), 4 open"),
        "the idle ones are counted, not listed:\n{screen}"
    );
    assert!(
        screen.contains("▾ goroutine 17 on srv 4250 · 2 open"),
        "{screen}"
    );
    assert!(
        screen.contains("▾ goroutine 18 on srv 4250 · 2 open ⚠ stalled"),
        "{screen}"
    );
    assert!(
        screen.contains("⚠ goroutine 18"),
        "in the Stalls pane:\n{screen}"
    );
    assert!(
        screen.contains("goroutine waiting (chan receive)"),
        "{screen}"
    );
    // Folding goroutine 17 leaves goroutine 18 open, on the same thread.
    app.cursors[0].selected = 0;
    app.update(key(KeyCode::Enter));
    let screen = text(&draw(&app));
    assert!(
        screen.contains("▸ goroutine 17 on srv 4250 · in …ode_row"),
        "{screen}"
    );
    assert!(screen.contains("▾ goroutine 18"), "{screen}");
    // The stall's details name the goroutine.
    app.update(key(KeyCode::Char('5')));
    app.update(key(KeyCode::Enter));
    let screen = text(&draw(&app));
    assert!(
        screen.contains("goroutine   18 (last on srv tid 4250)"),
        "{screen}"
    );
}
/// A session started without -s: sampling only, nothing traced yet, and
/// where the samples of the last seconds fell.
fn sampling_only() -> Snapshot {
    use crate::{
        live::{HotRow, HotStack, HotView},
        sample::CodeAt,
        session::SamplingStatus,
    };
    let row = |name: &str, self_samples, total_samples, line: Option<&str>| HotRow {
        name: name.into(),
        module: Some("/srv/shop/bin/shop".into()),
        inlined_into: None,
        code: Some(CodeAt {
            module: "/srv/shop/bin/shop".into(),
            file_offset: 0x1234,
        }),
        self_samples,
        total_samples,
        line: line.map(Into::into),
    };
    let mut memcpy = row("__memcpy_avx_unaligned_erms", 60, 60, None);
    memcpy.module = Some("/usr/lib/x86_64-linux-gnu/libc.so.6".into());
    let mut decode = row("shop::db::decode_field", 50, 50, Some("db.rs:210"));
    decode.inlined_into = Some("shop::db::decode_row".into());
    let stack = |frames: &[&str], samples| HotStack {
        frames: frames.iter().map(|f| (*f).into()).collect(),
        samples,
    };
    let mut s = Snapshot::empty(Arc::new(SessionInfo {
        functions: Arc::from([]),
        sample_hz: 99,
        sampling_only: true,
        ..(*session()).clone()
    }));
    s.taken_ns = NOW;
    s.metrics = metrics();
    s.sampling = Some(SamplingStatus {
        asked_hz: 99,
        hz: 99,
        samples: 6_400,
        lost: 0,
        estimate: Some(0.08),
    });
    s.hot = Arc::new(HotView {
        rows: vec![
            row("shop::index::walk_tree", 610, 700, Some("index.rs:88")),
            row("shop::db::decode_row", 120, 180, Some("db.rs:201")),
            memcpy,
            decode,
            row("shop::http::handle_request", 5, 950, Some("http.rs:40")),
            row("main", 0, 990, Some("main.rs:12")),
        ],
        samples: 990,
        window_s: 10,
        stacks: vec![
            stack(
                &[
                    "shop::index::walk_tree",
                    "shop::http::handle_request",
                    "main",
                ],
                610,
            ),
            stack(
                &["shop::db::decode_row", "shop::http::handle_request", "main"],
                120,
            ),
        ],
    });
    s
}

#[test]
fn sampling_only_shows_the_hot_pane_at_120x40() {
    let app = app(sampling_only(), 120, 40);
    assert_eq!(
        app.focus,
        Pane::Hot,
        "without -s the Hot pane has the focus"
    );
    insta::assert_snapshot!(text(&draw(&app)));
}

#[test]
fn sampling_only_at_80x24() {
    insta::assert_snapshot!(text(&draw(&app(sampling_only(), 80, 24))));
}

#[test]
fn enter_on_a_hot_function_shows_the_stacks_through_it() {
    let mut app = app(sampling_only(), 120, 40);
    app.update(key(KeyCode::Enter));
    let screen = text(&draw(&app));
    assert!(screen.contains("commonest stacks through it"), "{screen}");
    assert!(screen.contains("610 samples (61.6%)"), "{screen}");
    assert!(screen.contains("index.rs:88"), "{screen}");
    assert!(screen.contains("no (t traces it)"), "{screen}");
}

#[test]
fn t_in_the_hot_pane_asks_to_trace_the_selected_function() {
    use crate::session::ProbeRequest;
    let mut app = app(sampling_only(), 120, 40);
    app.update(key(KeyCode::Char('t')));
    let requests = app.take_requests();
    let [ProbeRequest::TraceAt { code, name }] = requests.as_slice() else {
        panic!("{requests:?}");
    };
    assert_eq!(name, "shop::index::walk_tree");
    assert_eq!(
        (&*code.module, code.file_offset),
        ("/srv/shop/bin/shop", 0x1234)
    );
    assert!(text(&draw(&app)).contains("asked to trace `shop::index::walk_tree`…"));
    // Once the session traces it, the row says so and `t` asks no more.
    let mut traced = sampling_only();
    traced.session = Arc::new(SessionInfo {
        functions: Arc::from([FunctionInfo {
            name: "shop::index::walk_tree".into(),
            module: "/srv/shop/bin/shop".into(),
        }]),
        ..(*traced.session).clone()
    });
    traced.notice = Some("tracing `shop::index::walk_tree` from now on".into());
    app.update(Event::Snapshot(Arc::new(traced)));
    app.update(key(KeyCode::Char('t')));
    assert!(app.take_requests().is_empty());
    let screen = text(&draw(&app));
    assert!(screen.contains("● shop::index::walk_tree"), "{screen}");
    assert!(
        screen.contains("1 function"),
        "the header counts it: {screen}"
    );
}

#[test]
fn plus_asks_to_trace_a_pattern_and_d_detaches() {
    use crate::session::ProbeRequest;
    let mut app = app(sampling_only(), 120, 40);
    app.update(key(KeyCode::Char('+')));
    for c in "libc.so.6:mem*".chars() {
        app.update(key(KeyCode::Char(c)));
    }
    assert!(text(&draw(&app)).contains("trace functions matching"));
    app.update(key(KeyCode::Enter));
    assert_eq!(
        app.take_requests(),
        [ProbeRequest::TracePattern("libc.so.6:mem*".into())]
    );
    // In the Functions pane of a traced session, `d` detaches and `t`
    // traces the detached function again.
    let mut app = self::app(busy(), 120, 40);
    app.update(key(KeyCode::Char('3')));
    app.update(key(KeyCode::Char('d')));
    let requests = app.take_requests();
    let [ProbeRequest::Detach(id)] = requests.as_slice() else {
        panic!("{requests:?}");
    };
    let mut detached = busy();
    detached.detached = Arc::new(std::iter::once(*id).collect());
    app.update(Event::Snapshot(Arc::new(detached)));
    let screen = text(&draw(&app));
    assert!(screen.contains("(detached)"), "{screen}");
    assert!(screen.contains("6 functions (1 detached)"), "{screen}");
    app.update(key(KeyCode::Char('t')));
    assert_eq!(app.take_requests(), [ProbeRequest::Retrace(*id)]);
}

#[test]
fn shift_h_puts_the_hot_pane_in_recent_activitys_place() {
    let mut app = app(busy(), 120, 40);
    assert!(!app.shows(Pane::Hot));
    app.update(key(KeyCode::Char('H')));
    assert!(app.shows(Pane::Hot) && !app.shows(Pane::Recent));
    assert_eq!(app.focus, Pane::Hot);
    let screen = text(&draw(&app));
    assert!(screen.contains("sampling is off"), "{screen}");
    app.update(key(KeyCode::Char('2')));
    assert!(app.shows(Pane::Recent) && !app.shows(Pane::Hot));
}

#[test]
fn the_metrics_pane_shows_the_run_queue_wait_beside_cpu() {
    let mut s = busy();
    let mut history = (*s.metrics).clone();
    let latest = history.latest.as_mut().expect("a sample");
    latest.extra[crate::sink::metric::RUN_QUEUE_WAIT] = Some(37.5);
    s.metrics = Arc::new(history);
    let screen = text(&draw(&app(s, 160, 48)));
    assert!(
        screen.contains("wait 37.5 %"),
        "no run-queue wait beside CPU:\n{screen}"
    );
}

#[test]
fn a_thread_row_says_what_it_is_doing_now_and_its_calls_cpu_share() {
    use crate::{
        live::{RunState, ThreadNow},
        trace::BlockedIn,
    };
    let mut snapshot = busy();
    snapshot.threads[0].now = Some(ThreadNow {
        state: RunState::Blocked(Some(BlockedIn(202))),
        innermost_cpu_permille: Some(21),
    });
    // An idle thread says nothing of it; db-pool is running.
    for thread in &mut snapshot.threads[1..3] {
        thread.now = Some(ThreadNow {
            state: RunState::Running,
            innermost_cpu_permille: Some(996),
        });
    }
    let screen = text(&draw(&app(snapshot, 200, 40)));
    assert!(screen.contains("· blocked in futex, 2% CPU"), "{screen}");
    assert!(
        screen.contains("db-pool 4249 · 1 open · running, 100% CPU"),
        "{screen}"
    );
    assert!(!screen.contains("idle · running"), "{screen}");
}
