//! Windows over the panes: the key list, and details of a span, a function,
//! or a stalled thread (where it is stuck: what it waits for, who holds the
//! lock, its stack with file:line).

use std::fmt::Write as _;

use ratatui::{
    buffer::Buffer,
    layout::{Constraint, Flex, Layout, Rect},
    style::Style,
    text::{Line, Span},
    widgets::{Block, BorderType, Clear, Paragraph, Widget, Wrap},
};

use super::theme;
use crate::{
    live::{FinishedCall, Snapshot},
    stall::StallReport,
    tui::{
        app::{App, Popup, Subject},
        format,
    },
};

/// A popup drawn over `area`.
pub struct PopupView<'a> {
    /// The state.
    pub app: &'a App,
    /// Which popup.
    pub popup: &'a Popup,
}

const HELP: &[(&str, &str)] = &[
    ("q  Ctrl-C", "quit: detach, finish the recording"),
    ("p  space", "pause the display (tracing goes on)"),
    ("Tab  S-Tab  1-6", "next / previous pane, or pane by number"),
    ("H", "Hot pane (sampled CPU time) or Recent Activity"),
    (
        "t  d  +",
        "trace / detach the selected function; trace a glob",
    ),
    ("↑ ↓  j k  wheel", "move the selection"),
    ("PgUp PgDn  g G", "page up / down, first / last row"),
    ("⏎", "fold a thread, expand recursion, or details"),
    ("", "(of a stall: its stack and what it waits for;"),
    ("", " of a stall group: its threads and shared stack)"),
    (
        "→ ←  l h",
        "expand / fold the selected thread, run or group",
    ),
    ("/", "filter by function name (⏎ keep, Esc cancel)"),
    ("s", "next sort (Functions: total, self…; Hot: self, total)"),
    ("z", "zoom the focused pane"),
    ("Esc", "close this window, clear the filter, unzoom"),
    ("?", "this help"),
];

impl Widget for PopupView<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let (title, lines) = match self.popup {
            Popup::Help => ("Keys", help_lines()),
            Popup::Details(subject) => details(self.app, subject),
        };
        let content = lines.iter().map(Line::width).max().unwrap_or(0) as u16;
        let width = (content + 3).min(area.width.saturating_sub(4)).min(100);
        // Long lines wrap: count the rows they take.
        let inner = usize::from(width.saturating_sub(2)).max(1);
        let rows: usize = lines.iter().map(|l| l.width().max(1).div_ceil(inner)).sum();
        let height = u16::try_from(rows + 2)
            .unwrap_or(u16::MAX)
            .min(area.height.saturating_sub(2));
        let [row] = Layout::vertical([Constraint::Length(height)])
            .flex(Flex::Center)
            .areas(area);
        let [rect] = Layout::horizontal([Constraint::Length(width)])
            .flex(Flex::Center)
            .areas(row);
        Clear.render(rect, buf);
        let block = Block::bordered()
            .border_type(BorderType::Rounded)
            .border_style(theme::FOCUSED)
            .title(Span::styled(format!(" {title} "), theme::FOCUSED))
            .title_bottom(Span::styled(" Esc closes ", theme::DIM));
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block)
            .render(rect, buf);
    }
}

fn help_lines() -> Vec<Line<'static>> {
    let key_width = HELP
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0)
        + 2;
    let mut lines: Vec<Line> = HELP
        .iter()
        .map(|(key, what)| {
            let pad = key_width - key.chars().count();
            Line::from(vec![
                Span::styled(format!(" {key}{}", " ".repeat(pad)), theme::KEY),
                Span::raw(*what),
            ])
        })
        .collect();
    lines.push(Line::default());
    for text in [
        " Red ⚠: a thread quiet past --stall inside a traced call;",
        " the Stalls pane (5) lists them while there are any,",
        " threads stuck in the same place as one group (×N).",
        " `unwound`: left without returning (exception, panic,",
        " longjmp, exit).",
    ] {
        lines.push(Line::from(Span::styled(text, theme::DIM)));
    }
    lines
}

fn field(label: &str, value: String) -> Line<'static> {
    Line::from(vec![
        Span::styled(format!(" {label:<12}"), theme::DIM),
        Span::raw(value),
    ])
}

fn details(app: &App, subject: &Subject) -> (&'static str, Vec<Line<'static>>) {
    let shown = &app.shown;
    match subject {
        Subject::Function(id) => ("Function", function_details(shown, *id)),
        Subject::Span {
            tid,
            span_id,
            function,
            start_ns,
        } => (
            "Span",
            span_details(app, *tid, *span_id, *function, *start_ns),
        ),
        Subject::Call(call) => ("Call", call_details(shown, call)),
        Subject::Stall { pid, tid, span_id } => ("Stall", stall_details(app, *pid, *tid, *span_id)),
        Subject::StallGroup(id) => ("Stalled threads", group_details(app, *id)),
        Subject::Hot { name } => ("Hot", hot_details(app, name)),
    }
}

/// Runs of tids a group's details list before they say how many in all.
const GROUP_TID_RUNS: usize = 64;

/// A group of threads stuck in one place: how many, which, for how long,
/// then what they wait in and the stack they share.
fn group_details(app: &App, id: u64) -> Vec<Line<'static>> {
    let shown = &app.shown;
    let Some(group) = shown.stall_group(id) else {
        return vec![
            field("group", format!("stall_group {id}")),
            field(
                "status",
                "no longer stalled: its threads returned or moved on".to_owned(),
            ),
        ];
    };
    let members: Vec<&StallReport> = group
        .members
        .iter()
        .filter_map(|&i| shown.stalls.get(i))
        .collect();
    let Some(first) = members.first().copied() else {
        return Vec::new();
    };
    let mut names: Vec<&str> = Vec::new();
    for report in &members {
        if !names.contains(&report.thread_name.as_str()) {
            names.push(&report.thread_name);
        }
    }
    let mut named = names.iter().take(4).copied().collect::<Vec<_>>().join(", ");
    if names.len() > 4 {
        let _ = write!(named, ", … ({} names)", names.len());
    }
    let now = app.clock_ns();
    let shortest = members
        .iter()
        .map(|r| now.saturating_sub(r.since_ns))
        .min()
        .unwrap_or(0);
    let longest = members
        .iter()
        .map(|r| now.saturating_sub(r.since_ns))
        .max()
        .unwrap_or(0);
    let ever = if members.iter().all(|r| r.before_attach) {
        " (already running when ferret attached)"
    } else {
        ""
    };
    let mut lines = vec![
        field("function", first.function_name.clone()),
        if first.goroutine.is_some() {
            field("goroutines", members.len().to_string())
        } else {
            field("threads", format!("{} ({named})", members.len()))
        },
        field("", crate::stall::stall_ids(&members, GROUP_TID_RUNS)),
        field("group", format!("stall_group {id}")),
        Line::from(vec![
            Span::styled(format!(" {:<12}", "stalled"), theme::ALARM),
            Span::styled(
                format!(
                    "≥{} (the longest {}){ever}",
                    format::elapsed(shortest),
                    format::elapsed(longest)
                ),
                theme::ALARM,
            ),
        ]),
        Line::default(),
        Line::from(Span::styled(
            format!(" all {} threads, as the first of them:", members.len()),
            theme::DIM,
        )),
    ];
    lines.extend(where_lines(first));
    lines
}

/// Stacks shown for a Hot function, and frames per stack at most.
const HOT_STACKS: usize = 4;
const HOT_FRAMES: usize = 12;

fn hot_details(app: &App, name: &str) -> Vec<Line<'static>> {
    let hot = &app.shown.hot;
    let Some(row) = hot.rows.iter().find(|r| &*r.name == name) else {
        return vec![field(
            "function",
            format!("{name} (no samples in the last {} s)", hot.window_s),
        )];
    };
    let share = super::hot::share;
    let mut lines = vec![
        field("function", name.to_owned()),
        field("module", row.module.as_deref().unwrap_or("?").to_owned()),
    ];
    if let Some(into) = &row.inlined_into {
        lines.push(field("inlined into", into.to_string()));
    }
    if let Some(line) = &row.line {
        lines.push(field("line", line.to_string()));
    }
    lines.push(field(
        "self",
        format!(
            "{} of {} samples ({})",
            format::count(row.self_samples),
            format::count(hot.samples),
            share(row.self_samples, hot.samples)
        ),
    ));
    lines.push(field(
        "total",
        format!(
            "{} ({})",
            format::count(row.total_samples),
            share(row.total_samples, hot.samples)
        ),
    ));
    lines.push(field(
        "traced",
        if super::hot::is_traced(app, row) {
            "yes".to_owned()
        } else {
            "no (t traces it)".to_owned()
        },
    ));
    lines.push(Line::default());
    lines.push(Line::from(Span::styled(
        " commonest stacks through it, innermost first:",
        theme::DIM,
    )));
    for stack in hot
        .stacks
        .iter()
        .filter(|s| s.frames.iter().any(|f| &**f == name))
        .take(HOT_STACKS)
    {
        lines.push(Line::from(Span::styled(
            format!(
                "  {} samples ({})",
                format::count(stack.samples),
                share(stack.samples, hot.samples)
            ),
            theme::HEADING,
        )));
        for (i, frame) in stack.frames.iter().take(HOT_FRAMES).enumerate() {
            let style = if &**frame == name {
                theme::MATCH
            } else {
                Style::new()
            };
            lines.push(Line::from(vec![
                Span::styled(format!("  {i:>2} "), theme::DIM),
                Span::styled(frame.to_string(), style),
            ]));
        }
        if stack.frames.len() > HOT_FRAMES {
            lines.push(Line::from(Span::styled(
                format!("     … {} more", stack.frames.len() - HOT_FRAMES),
                theme::DIM,
            )));
        }
    }
    lines
}

fn stall_details(app: &App, pid: u32, tid: u32, span_id: u64) -> Vec<Line<'static>> {
    let shown = &app.shown;
    // A goroutine's stall by its span: goroutines share threads.
    match shown
        .stall_of(span_id)
        .or_else(|| shown.stall_of_thread(pid, tid))
    {
        Some(report) => {
            let mut lines = vec![
                field("function", report.function_name.clone()),
                match report.goroutine {
                    Some(goid) => field(
                        "goroutine",
                        format!("{goid} (last on {} tid {})", report.thread_name, report.tid),
                    ),
                    None => field(
                        "thread",
                        format!("{} (tid {})", report.thread_name, report.tid),
                    ),
                },
                field(
                    "span",
                    format!("#{}, depth {}", report.span_id, report.depth),
                ),
            ];
            if report.span_id != span_id {
                lines.push(Line::from(Span::styled(
                    " (a newer stall of the same thread)",
                    theme::WARN,
                )));
            }
            lines.extend(stuck_lines(app, report));
            lines
        }
        None => vec![
            field("thread", format!("tid {tid}")),
            field("span", format!("#{span_id}")),
            field(
                "status",
                "no longer stalled: it returned or moved on".to_owned(),
            ),
        ],
    }
}

/// Where a stalled thread is stuck: for how long, what it waits for, the
/// deadlock it is part of, and its stack, innermost first.
fn stuck_lines(app: &App, report: &StallReport) -> Vec<Line<'static>> {
    let offset = app.shown.session.local_offset_ns;
    let at = |ns: u64| format::time_of_day(ns as i64 + offset);
    let since = if report.before_attach {
        format!(
            "{} (already running when ferret attached)",
            super::stalls::stalled_for(report, app.clock_ns())
        )
    } else {
        format!(
            "{} (since {})",
            super::stalls::stalled_for(report, app.clock_ns()),
            at(report.since_ns)
        )
    };
    let mut lines = vec![
        Line::from(vec![
            Span::styled(format!(" {:<12}", "stalled"), theme::DIM),
            Span::styled(since, theme::ALARM),
        ]),
        field("captured", at(report.captured_ns)),
    ];
    lines.extend(where_lines(report));
    lines
}

/// What a stalled thread waits in and for, the deadlock it is part of, and
/// its stack, innermost first (all that threads of one group share).
fn where_lines(report: &StallReport) -> Vec<Line<'static>> {
    let mut lines = vec![field("state", report.state.to_string())];
    if let Some(call) = &report.syscall {
        lines.push(field("syscall", call.clone()));
    }
    if let Some(wchan) = &report.wchan {
        lines.push(field("kernel wait", wchan.clone()));
    }
    if let Some(lock) = &report.lock {
        let holder = match (lock.owner, &lock.owner_name) {
            (Some(owner), Some(name)) => format!("tid {owner} ({name})"),
            (Some(owner), None) => format!("tid {owner}"),
            (None, _) => "unknown".to_owned(),
        };
        let probable = if lock.probable { ", probably" } else { "" };
        let (label, held) = if lock.kind == crate::stall::WaitKind::ThreadExit {
            ("joins", "which is")
        } else {
            ("lock", "held by")
        };
        lines.push(field(
            label,
            format!(
                "{} {:#x}, {held} {holder}{probable}",
                lock.kind.noun(),
                lock.addr
            ),
        ));
    }
    if !report.deadlock.is_empty() {
        let mut cycle: Vec<String> = report
            .deadlock
            .iter()
            .map(|(tid, name)| format!("tid {tid} ({name})"))
            .collect();
        cycle.push(format!("tid {}", report.deadlock[0].0));
        lines.push(Line::from(vec![
            Span::styled(format!(" {:<12}", "DEADLOCK"), theme::ALARM),
            Span::styled(cycle.join(" waits for "), theme::ALARM),
        ]));
    }
    lines.push(Line::default());
    lines.push(Line::from(Span::styled(
        " stack, innermost first:",
        theme::DIM,
    )));
    if report.frames.is_empty() {
        lines.push(Line::from(Span::styled("   (none captured)", theme::DIM)));
    }
    // The frame of the stalled function is the line that says most.
    let own = report
        .frames
        .iter()
        .position(|f| f.function.as_deref() == Some(report.function_name.as_str()));
    for (i, frame) in report.frames.iter().enumerate() {
        let style = if Some(i) == own {
            theme::HEADING
        } else {
            Style::new()
        };
        lines.push(Line::from(vec![
            Span::styled(format!(" {i:>3} "), theme::DIM),
            Span::styled(without_toolchain_prefix(&frame.display()), style),
        ]));
    }
    if let Some(note) = &report.stack_note {
        lines.push(Line::from(Span::styled(format!("     {note}"), theme::DIM)));
    }
    lines
}

fn function_details(shown: &Snapshot, id: u32) -> Vec<Line<'static>> {
    let info = shown.session.functions.get(id as usize);
    let mut lines = vec![
        field("function", shown.function_name(id).to_owned()),
        field(
            "module",
            info.map_or_else(String::new, |f| f.module.clone()),
        ),
    ];
    let Some(row) = shown.functions.iter().find(|r| r.id == id) else {
        lines.push(field("calls", "none finished yet".to_owned()));
        return lines;
    };
    lines.extend([
        field(
            "calls",
            format!(
                "{} ({} unwound) · {}/s lately",
                row.calls,
                row.unwound,
                format::rate(row.calls_per_s)
            ),
        ),
        field(
            "total",
            format!(
                "{} · self {}",
                format::duration(row.total_ns),
                format::duration(row.self_ns)
            ),
        ),
        field(
            "mean",
            format!(
                "{} · p50 {} · p95 {} · p99 {}",
                format::duration(row.mean_ns),
                format::duration(row.p50_ns),
                format::duration(row.p95_ns),
                format::duration(row.p99_ns)
            ),
        ),
        field("max", format::duration(row.max_ns)),
    ]);
    let open: usize = shown
        .threads
        .iter()
        .map(|t| t.frames.iter().filter(|f| f.function == id).count())
        .sum();
    lines.push(field("open now", open.to_string()));
    lines
}

fn span_details(
    app: &App,
    tid: u32,
    span_id: u64,
    function: u32,
    start_ns: u64,
) -> Vec<Line<'static>> {
    let shown = &app.shown;
    let offset = shown.session.local_offset_ns;
    let at = |ns: u64| format::time_of_day(ns as i64 + offset);
    // Still open?
    for thread in shown.threads.iter().filter(|t| t.tid == tid) {
        if let Some(index) = thread.frames.iter().position(|f| f.span_id == span_id) {
            let frame = thread.frames[index];
            let elapsed = app.clock_ns().saturating_sub(frame.start_ns);
            let stalled = shown.stall_of(span_id);
            let mut lines = vec![
                field("function", shown.function_name(frame.function).to_owned()),
                match thread.goroutine {
                    Some(goid) => field(
                        "goroutine",
                        format!("{goid} (last on {} tid {})", thread.name, thread.tid),
                    ),
                    None => field("thread", format!("{} (tid {})", thread.name, thread.tid)),
                },
                field("span", format!("#{span_id}, depth {}", frame.depth)),
                field("started", at(frame.start_ns)),
                Line::from(vec![
                    Span::styled(format!(" {:<12}", "status"), theme::DIM),
                    Span::styled("open", theme::OPEN),
                    Span::raw(format!(" for {}", format::elapsed(elapsed))),
                    Span::styled(
                        if stalled.is_some() { "  (stalled)" } else { "" },
                        theme::ALARM,
                    ),
                ]),
                Line::default(),
                Line::from(Span::styled(" stack, outermost first:", theme::DIM)),
            ];
            for (i, f) in thread.frames[..=index].iter().enumerate() {
                let style = if i == index {
                    theme::HEADING
                } else {
                    Style::new()
                };
                lines.push(Line::from(vec![
                    Span::raw(format!(" {i:>3} ")),
                    Span::styled(shown.function_name(f.function).to_owned(), style),
                ]));
            }
            if let Some(report) = stalled {
                lines.push(Line::default());
                lines.push(Line::from(Span::styled(
                    " where it is stuck:",
                    theme::ALARM,
                )));
                lines.extend(stuck_lines(app, report));
            }
            return lines;
        }
    }
    if let Some(call) = shown.recent.iter().find(|c| c.span_id == span_id) {
        return call_details(shown, call);
    }
    vec![
        field("function", shown.function_name(function).to_owned()),
        field("span", format!("#{span_id}")),
        field("started", at(start_ns)),
        field(
            "status",
            "ended; already out of the recent list (p pauses the display)".to_owned(),
        ),
    ]
}

fn call_details(shown: &Snapshot, call: &FinishedCall) -> Vec<Line<'static>> {
    let offset = shown.session.local_offset_ns;
    let at = |ns: u64| format::time_of_day(ns as i64 + offset);
    let span_id = call.span_id;
    let status_style = match call.status {
        crate::trace::SpanStatus::Ok => theme::OK,
        crate::trace::SpanStatus::Unwound => theme::UNWOUND,
        crate::trace::SpanStatus::Open => theme::OPEN,
    };
    let parent = call
        .parent_span_id
        .map_or_else(|| "none (outermost)".to_owned(), |p| format!("#{p}"));
    // Where the time went, with ferret's probe time out of the CPU time
    // as out of the duration.
    let split = call.sched.map_or_else(
        || "not known (events lost, or a Go program)".to_owned(),
        |s| {
            let cpu = s.cpu_ns.saturating_sub(call.overhead_ns);
            let mut text = format!(
                "cpu {}, runnable {}, blocked {}",
                format::duration(cpu),
                format::duration(s.runnable_ns),
                format::duration(s.blocked_ns)
            );
            if let Some(syscall) = s.blocked_in {
                text.push_str(" in ");
                text.push_str(&syscall.name());
            }
            text
        },
    );
    vec![
        field("function", shown.function_name(call.function).to_owned()),
        field(
            "module",
            shown
                .session
                .functions
                .get(call.function as usize)
                .map_or_else(String::new, |f| f.module.clone()),
        ),
        field("thread", format!("{} (tid {})", call.thread_name, call.tid)),
        field(
            "span",
            format!("#{span_id}, depth {}, parent {parent}", call.depth),
        ),
        field("started", at(call.start_ns)),
        field("ended", at(call.end_ns)),
        field(
            "took",
            format!(
                "{} (self {})",
                format::duration(call.duration_ns()),
                format::duration(call.self_ns)
            ),
        ),
        field(
            "probes",
            if call.overhead_ns > 0 {
                format!(
                    "{} of {} measured were ferret's probes",
                    format::duration(call.overhead_ns),
                    format::duration(call.measured_ns())
                )
            } else {
                "none counted (times as measured)".to_owned()
            },
        ),
        field("split", split),
        Line::from(vec![
            Span::styled(format!(" {:<12}", "status"), theme::DIM),
            Span::styled(call.status.as_str(), status_style),
        ]),
    ]
}

/// A frame with the Rust toolchain's source prefix cut
/// (`/rustc/<commit>/library/std/…` → `std/…`), which otherwise takes half
/// a line for every standard-library frame.
fn without_toolchain_prefix(frame: &str) -> String {
    let Some(at) = frame.find("/rustc/") else {
        return frame.to_owned();
    };
    let rest = &frame[at + "/rustc/".len()..];
    match rest.split_once("/library/") {
        Some((commit, path)) if commit.bytes().all(|b| b.is_ascii_hexdigit()) => {
            format!("{}{path}", &frame[..at])
        }
        _ => frame.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{call_details, without_toolchain_prefix};
    use crate::{
        live::{FinishedCall, SessionInfo, Snapshot},
        trace::{BlockedIn, SchedSplit, SpanStatus, ThreadName},
    };

    #[test]
    fn a_finished_calls_details_show_its_split_with_probe_time_out_of_cpu() {
        let shown = Snapshot::empty(std::sync::Arc::new(SessionInfo::default()));
        let mut call = FinishedCall {
            span_id: 1,
            parent_span_id: None,
            depth: 0,
            pid: 1,
            tid: 2,
            thread_name: ThreadName::from("t"),
            function: 0,
            start_ns: 0,
            end_ns: 900_000_000,
            self_ns: 900_000_000,
            status: SpanStatus::Ok,
            overhead_ns: 1_000_000,
            sched: Some(SchedSplit {
                cpu_ns: 301_000_000,
                runnable_ns: 0,
                blocked_ns: 599_000_000,
                blocked_in: Some(BlockedIn(202)),
            }),
        };
        let text = |call: &FinishedCall| -> String {
            call_details(&shown, call)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        };
        let shown_text = text(&call);
        assert!(
            shown_text.contains("cpu 300ms, runnable 0ns, blocked 599ms in futex"),
            "{shown_text}"
        );
        call.sched = None;
        assert!(
            text(&call).contains("split       not known"),
            "{}",
            text(&call)
        );
    }

    #[test]
    fn toolchain_sources_are_shortened() {
        assert_eq!(
            without_toolchain_prefix(
                "std::thread::sleep (/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/std/src/thread/functions.rs:289)"
            ),
            "std::thread::sleep (std/src/thread/functions.rs:289)"
        );
        let own = "myapp::run (/src/rustc/library/x.rs:1)";
        assert_eq!(without_toolchain_prefix(own), own);
        assert_eq!(without_toolchain_prefix("lock (a.c:3)"), "lock (a.c:3)");
    }
}
