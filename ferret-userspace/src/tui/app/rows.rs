//! The rows each pane shows, derived from a snapshot: the Live Stack's
//! tree (threads, frames, folded recursion), the order of the Functions
//! table, the Metrics pane's list, and the keys a selection holds on to
//! while rows move. Pure functions of the snapshot and the user's choices,
//! so the app, the views and the tests agree on what row N is.

use super::SortKey;
use crate::{
    live::{FunctionRow, Snapshot},
    sink::MetricSample,
};

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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StackKey {
    /// A thread, by (pid, tid).
    Thread(u32, u32),
    /// A goroutine of a Go program, by (pid, goid): its thread changes.
    Goroutine(u32, u64),
    /// A frame (or the run it starts), by span id.
    Span(u64),
}

/// The key of a thread's (goroutine's) own row.
pub(super) fn head_key(thread: &crate::live::ThreadView) -> StackKey {
    match thread.goroutine {
        Some(goid) => StackKey::Goroutine(thread.pid, goid),
        None => StackKey::Thread(thread.pid, thread.tid),
    }
}

pub(super) fn stack_key(snapshot: &Snapshot, row: StackRow) -> StackKey {
    match row {
        StackRow::Thread { thread, .. } => head_key(&snapshot.threads[thread]),
        StackRow::Frames { thread, first, .. } => {
            StackKey::Span(snapshot.threads[thread].frames[first].span_id)
        }
    }
}

/// The index of the outermost frame of the recursion run holding `frame`.
pub(super) fn run_start(snapshot: &Snapshot, thread: usize, frame: usize) -> usize {
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
        let collapsed = is_set(head_key(thread));
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

/// One row of the Stalls pane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StallRow {
    /// A group (index into `Snapshot::stall_groups`): one thread's stall,
    /// or several threads stuck in one place, folded unless expanded.
    Group {
        /// Index into `Snapshot::stall_groups`.
        group: usize,
        /// Its threads are listed below it.
        expanded: bool,
    },
    /// A thread of an expanded group.
    Thread {
        /// Index into `Snapshot::stall_groups`.
        group: usize,
        /// Index into `Snapshot::stalls`.
        stall: usize,
    },
}

/// What a Stalls selection holds on to while rows move under it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StallKey {
    /// A group, by its number.
    Group(u64),
    /// A thread (goroutine) listed under its group, by whose stall it is.
    Thread(u32, crate::trace::StackKey),
}

pub(super) fn stall_key(snapshot: &Snapshot, row: StallRow) -> StallKey {
    match row {
        StallRow::Group { group, .. } => StallKey::Group(snapshot.stall_groups[group].id),
        StallRow::Thread { stall, .. } => {
            let (pid, key) = snapshot.stalls[stall].key();
            StallKey::Thread(pid, key)
        }
    }
}

/// The Stalls pane's rows: each group whose function passes the filter, in
/// the snapshot's order (deadlocks and lock holders first, then the
/// smallest groups), and under a group of several that is expanded, its
/// threads.
pub fn stall_rows(
    snapshot: &Snapshot,
    filter: &str,
    expanded: impl Fn(u64) -> bool,
) -> Vec<StallRow> {
    let mut rows = Vec::new();
    for (gi, group) in snapshot.stall_groups.iter().enumerate() {
        let Some(&first) = group.members.first() else {
            continue;
        };
        let Some(report) = snapshot.stalls.get(first) else {
            continue;
        };
        if !contains_ignore_case(&report.function_name, filter) {
            continue;
        }
        let open = group.members.len() > 1 && expanded(group.id);
        rows.push(StallRow::Group {
            group: gi,
            expanded: open,
        });
        if open {
            rows.extend(
                group
                    .members
                    .iter()
                    .map(|&stall| StallRow::Thread { group: gi, stall }),
            );
        }
    }
    rows
}

/// Orders two function rows by `key`: largest first, names A to Z; ties
/// by name so the order is stable between snapshots.
pub(super) fn compare_rows(
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

/// The metrics listed under the Metrics pane's sparklines, as (label, value).
pub fn metric_lines(sample: &MetricSample) -> Vec<(&'static str, String)> {
    crate::tui::format::metric_values(sample)
}

/// Rows of the Metrics pane's scrollable list (under the sparklines).
pub fn metric_rows(snapshot: &Snapshot) -> usize {
    snapshot
        .metrics
        .latest
        .as_ref()
        .map_or(0, |s| metric_lines(s).len())
}
