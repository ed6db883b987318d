//! Stalls grouped by where they are, and what is news about them.
//!
//! A thread pool at rest is hundreds of threads stalled in one place: the
//! same stalled function, the same stack, the same state and system call.
//! Told thread by thread, the one thread that is really stuck drowns among
//! them; so, as py-spy dump and Go's goroutine dumps group identical
//! stacks, the watchdog groups stalls ([`Grouper::group`]) and tells a
//! group once ([`Grouper::news`]): when it appears, and when threads leave
//! it. The same group seen again, or a thread joining one already told, is
//! not news. A thread in a deadlock, or holding a lock another stalled
//! thread waits for, is a group of its own: those are the ones to look at.
//!
//! Pure: the detector feeds it the current reports; tested on literals.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    fmt::Write as _,
};

use super::{
    detector::Key,
    report::{StallReport, WaitKind, stalled_for, wait_summary},
};
use crate::trace::StackKey;

/// A group not told yet waits this long at most for the captures still
/// queued, so that it is told with its whole count rather than with the
/// first thread captured.
pub(super) const ANNOUNCE_WAIT_NS: u64 = 2_000_000_000;
/// Threads leaving a group are told together, at most this often per group
/// (at once when the group empties).
pub(super) const LEFT_EVERY_NS: u64 = 2_000_000_000;
/// Runs of tids a line lists before it says how many more.
const TID_RUNS: usize = 8;

/// Why a stall is a group of its own, whoever else is stuck beside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Alone {
    /// The thread is in a deadlock.
    Deadlock,
    /// It holds a lock another stalled thread waits for.
    Holder,
}

/// Stalls in one place: threads of one process stuck in the same stalled
/// function, with the same stack (the call sites, and the innermost
/// function), state, system call and lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StallGroup {
    /// Its number, the `stall_group` column: from 1, in the order groups
    /// were first seen; a place keeps its number for the whole session.
    pub id: u64,
    /// Its threads: indices into the current stalls
    /// ([`super::Watchdog::stalls`], ordered by (pid, tid)).
    pub members: Vec<usize>,
    /// Why it is a group of one, if it is.
    pub alone: Option<Alone>,
}

/// What a look at the stalls brings the consumers.
#[derive(Clone, Debug, Default)]
pub struct StallNews {
    /// New `STALL` rows: the captures that are new, or whose location
    /// changed (one per thread and location), each with its group.
    pub rows: Vec<StallReport>,
    /// What is news about the groups: a line each, for a terminal.
    pub groups: Vec<GroupNews>,
}

impl StallNews {
    /// Nothing new.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.groups.is_empty()
    }
}

/// What makes two stalls one group.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct GroupKey {
    pid: u32,
    function: u32,
    /// [`StallReport::location_key`]: state, system call, stack, lock.
    location: String,
    /// A thread that is a group of its own.
    alone: Option<u32>,
}

/// A line for the user about a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupNews {
    /// The group.
    pub group: u64,
    /// What happened.
    pub kind: NewsKind,
    /// The line to print (it begins `stall: `).
    pub line: String,
}

/// What happened to a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NewsKind {
    /// It is told for the first time, with this many threads.
    Appeared(usize),
    /// This many threads left it (their stall ended, or moved elsewhere).
    Left(usize),
}

/// A group as last told.
struct Told {
    /// Its threads (goroutines) as last known, with their names.
    members: HashMap<Key, String>,
    /// `idle_wait at idle_wait (pool.c:23)`.
    what: String,
    /// Told as one thread.
    single: bool,
    /// Threads gone since the last line, not told yet, with their names.
    left: Vec<(StackKey, String)>,
    /// When the last line about it was told.
    last_ns: u64,
}

/// Groups stalls and tells what is news about the groups; see the module.
#[derive(Default)]
pub(super) struct Grouper {
    ids: HashMap<GroupKey, u64>,
    told: HashMap<u64, Told>,
    /// Groups not told yet, and when each was first seen.
    waiting: HashMap<u64, u64>,
}

impl Grouper {
    /// Groups `reports` (the current stalls, ordered by (pid, tid)), in
    /// the order to show them: deadlocks, lock holders, then by size,
    /// smallest first (a thread stuck alone says more than a pool at
    /// rest), then the longest stalled first.
    pub(super) fn group(&mut self, reports: &[&StallReport]) -> Vec<StallGroup> {
        // Threads another stalled thread waits for (a join waits for no lock).
        let holders: HashSet<(u32, u32)> = reports
            .iter()
            .filter_map(|r| {
                let lock = r.lock.as_ref()?;
                let owner = lock.owner?;
                (lock.kind != WaitKind::ThreadExit && owner != r.tid).then_some((r.pid, owner))
            })
            .collect();
        let mut groups: Vec<StallGroup> = Vec::new();
        let mut index: HashMap<u64, usize> = HashMap::new();
        for (i, report) in reports.iter().enumerate() {
            let alone = if report.deadlocked() {
                Some(Alone::Deadlock)
            } else if holders.contains(&(report.pid, report.tid)) {
                Some(Alone::Holder)
            } else {
                None
            };
            let key = GroupKey {
                pid: report.pid,
                function: report.function,
                location: report.location_key(),
                alone: alone.map(|_| report.tid),
            };
            let next = self.ids.len() as u64 + 1;
            let id = *self.ids.entry(key).or_insert(next);
            if let Some(&at) = index.get(&id) {
                groups[at].members.push(i);
            } else {
                index.insert(id, groups.len());
                groups.push(StallGroup {
                    id,
                    members: vec![i],
                    alone,
                });
            }
        }
        let since = |g: &StallGroup| {
            g.members
                .iter()
                .map(|&i| reports[i].since_ns)
                .min()
                .unwrap_or(0)
        };
        groups.sort_by_key(|g| {
            (
                g.alone.map_or(2, |a| a as u8),
                g.members.len(),
                since(g),
                g.id,
            )
        });
        groups
    }

    /// What is news about `groups` (of `reports`, as [`Self::group`] made
    /// them) at `now_ns`: a group appearing, threads leaving a group told
    /// before. A group is told once `settled` (no stalled thread waits for
    /// its first capture), or after [`ANNOUNCE_WAIT_NS`]; a deadlock or a
    /// lock holder at once. `flush` (the end of the session) tells
    /// everything pending now.
    pub(super) fn news(
        &mut self,
        groups: &[StallGroup],
        reports: &[&StallReport],
        now_ns: u64,
        settled: bool,
        flush: bool,
    ) -> Vec<GroupNews> {
        let mut news = Vec::new();
        let current: HashMap<u64, &StallGroup> = groups.iter().map(|g| (g.id, g)).collect();
        let key = |i: usize| reports[i].key();
        let mut over = Vec::new();
        for (&id, told) in &mut self.told {
            let now: HashSet<Key> = current
                .get(&id)
                .map(|g| g.members.iter().map(|&i| key(i)).collect())
                .unwrap_or_default();
            let gone: Vec<Key> = told
                .members
                .keys()
                .filter(|m| !now.contains(m))
                .copied()
                .collect();
            for member in gone {
                let name = told.members.remove(&member).unwrap_or_default();
                told.left.push((member.1, name));
            }
            // Joining a group already told is not news, but leaving it later is.
            if let Some(group) = current.get(&id) {
                for &i in &group.members {
                    told.members
                        .entry(key(i))
                        .or_insert_with(|| reports[i].thread_name.clone());
                }
            }
            let due = flush
                || told.members.is_empty()
                || now_ns.saturating_sub(told.last_ns) >= LEFT_EVERY_NS;
            if !told.left.is_empty() && due {
                news.push(left_news(id, told));
                told.last_ns = now_ns;
            }
            if told.members.is_empty() && told.left.is_empty() {
                over.push(id);
            }
        }
        for id in over {
            self.told.remove(&id);
        }
        self.waiting.retain(|id, _| current.contains_key(id));
        for group in groups {
            if self.told.contains_key(&group.id) {
                continue;
            }
            let first = *self.waiting.entry(group.id).or_insert(now_ns);
            let ready = flush
                || settled
                || group.alone.is_some()
                || now_ns.saturating_sub(first) >= ANNOUNCE_WAIT_NS;
            if !ready {
                continue;
            }
            self.waiting.remove(&group.id);
            let members: Vec<&StallReport> = group.members.iter().map(|&i| reports[i]).collect();
            let line = if members.len() == 1 {
                members[0].headline()
            } else {
                group_headline(group.id, &members)
            };
            news.push(GroupNews {
                group: group.id,
                kind: NewsKind::Appeared(members.len()),
                line,
            });
            self.told.insert(
                group.id,
                Told {
                    members: members
                        .iter()
                        .map(|r| (r.key(), r.thread_name.clone()))
                        .collect(),
                    what: what(members[0]),
                    single: members.len() == 1,
                    left: Vec::new(),
                    last_ns: now_ns,
                },
            );
        }
        news
    }
}

/// Groups `reports` (ordered by (pid, tid)) as the watchdog does, the
/// groups numbered from 1: for a view built from reports alone.
pub fn group_stalls(reports: &[StallReport]) -> Vec<StallGroup> {
    let refs: Vec<&StallReport> = reports.iter().collect();
    Grouper::default().group(&refs)
}

/// `idle_wait at idle_wait (/src/pool.c:23)`: the stalled function and the
/// frame that says where in it.
fn what(report: &StallReport) -> String {
    match report.place() {
        Some(frame) => format!("{} at {}", report.function_name, frame.display()),
        None => report.function_name.clone(),
    }
}

/// The line telling that threads left a told group.
fn left_news(id: u64, told: &mut Told) -> GroupNews {
    let left = std::mem::take(&mut told.left);
    let line = if told.single && left.len() == 1 && told.members.is_empty() {
        let (who, name) = &left[0];
        let who = match who {
            StackKey::Goroutine(goid) => format!("goroutine {goid}"),
            StackKey::Thread(tid) => format!("tid {tid} ({name})"),
        };
        format!("stall: {who} no longer stalled in {}", told.what)
    } else {
        let keys: Vec<StackKey> = left.iter().map(|&(key, _)| key).collect();
        let still = match told.members.len() {
            0 => "none still is".to_owned(),
            1 => "1 still is".to_owned(),
            n => format!("{n} still are"),
        };
        format!(
            "stall: {} no longer stalled in {}, {still}: {}",
            threads(&keys),
            told.what,
            id_runs(&keys, TID_RUNS)
        )
    };
    GroupNews {
        group: id,
        kind: NewsKind::Left(left.len()),
        line,
    }
}

/// `1 thread`, `3 threads`; `3 goroutines` for a Go program's.
fn threads(keys: &[StackKey]) -> String {
    let n = keys.len();
    let noun = if goroutines(keys) {
        "goroutine"
    } else {
        "thread"
    };
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// Whether `keys` are all goroutines (a Go program's stalls).
fn goroutines(keys: &[StackKey]) -> bool {
    !keys.is_empty() && keys.iter().all(|k| matches!(k, StackKey::Goroutine(_)))
}

/// One line for a group of several threads: how many, which, in what, for
/// how long, where, waiting for what, and its number in the recording.
fn group_headline(id: u64, members: &[&StallReport]) -> String {
    let first = members[0];
    let keys: Vec<StackKey> = members.iter().map(|r| r.key().1).collect();
    // Threads by name (a goroutine's thread says nothing of it).
    let mut names: Vec<&str> = Vec::new();
    for report in members {
        if !names.contains(&report.thread_name.as_str()) {
            names.push(&report.thread_name);
        }
    }
    let mut named = names.iter().take(3).copied().collect::<Vec<_>>().join(", ");
    if names.len() > 3 {
        named.push_str(", …");
    }
    let named = if goroutines(&keys) {
        String::new()
    } else {
        format!(" ({named})")
    };
    let shortest = members
        .iter()
        .map(|r| r.captured_ns.saturating_sub(r.since_ns))
        .min()
        .unwrap_or(0);
    let since = if members.iter().all(|r| r.before_attach) {
        stalled_for(shortest, true)
    } else {
        format!("for ≥ {:.1} s", shortest as f64 / 1e9)
    };
    let at = first
        .place()
        .map(|f| format!(" at {}", f.display()))
        .unwrap_or_default();
    // Their system calls' arguments may differ (a timeout left, a file
    // descriptor); what they wait in and for does not.
    let wait = if members.iter().all(|r| r.wait == first.wait) {
        first.wait.clone()
    } else {
        let call = first
            .syscall
            .as_deref()
            .map(|c| c.split('(').next().unwrap_or(c));
        wait_summary(
            first.state,
            call,
            first.wchan.as_deref(),
            None,
            first.lock.as_ref(),
            &[],
            false,
        )
    };
    format!(
        "stall: {}{named} in {} {since}{at}: {wait} — {} (stall_group {id})",
        threads(&keys),
        first.function_name,
        id_runs(&keys, TID_RUNS)
    )
}

/// Who `reports` are, as runs (see [`tid_runs`]): their tids, or for a Go
/// program's goroutines, `goroutines 1, 5–9`.
pub fn stall_ids(reports: &[&StallReport], max_runs: usize) -> String {
    let keys: Vec<StackKey> = reports.iter().map(|r| r.key().1).collect();
    id_runs(&keys, max_runs)
}

fn id_runs(keys: &[StackKey], max_runs: usize) -> String {
    if goroutines(keys) {
        let ids: Vec<u64> = keys
            .iter()
            .filter_map(|k| match k {
                StackKey::Goroutine(goid) => Some(*goid),
                StackKey::Thread(_) => None,
            })
            .collect();
        runs(("goroutine", "goroutines"), &ids, max_runs)
    } else {
        let ids: Vec<u64> = keys
            .iter()
            .filter_map(|k| match k {
                StackKey::Thread(tid) => Some(u64::from(*tid)),
                StackKey::Goroutine(_) => None,
            })
            .collect();
        runs(("tid", "tids"), &ids, max_runs)
    }
}

/// `tid 7`, `tids 14926–16925`, `tids 3, 5–9, 12, … (2000 in all)`.
pub fn tid_list(tids: &[u32]) -> String {
    tid_runs(tids, TID_RUNS)
}

/// [`tid_list`] with at most `max_runs` runs before it says how many in all.
pub fn tid_runs(tids: &[u32], max_runs: usize) -> String {
    let ids: Vec<u64> = tids.iter().copied().map(u64::from).collect();
    runs(("tid", "tids"), &ids, max_runs)
}

/// `ids` as runs of consecutive numbers, named `noun.0` (one) or `noun.1`.
fn runs(noun: (&str, &str), ids: &[u64], max_runs: usize) -> String {
    let sorted: BTreeSet<u64> = ids.iter().copied().collect();
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for id in sorted {
        match runs.last_mut() {
            Some((_, end)) if *end + 1 == id => *end = id,
            _ => runs.push((id, id)),
        }
    }
    let mut out = format!("{} ", if ids.len() == 1 { noun.0 } else { noun.1 });
    for (i, &(start, end)) in runs.iter().take(max_runs).enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = if start == end {
            write!(out, "{start}")
        } else {
            write!(out, "{start}–{end}")
        };
    }
    if runs.len() > max_runs {
        let _ = write!(out, ", … ({} in all)", ids.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::stall::{Frame, LockWait, SchedState};

    const S: u64 = 1_000_000_000;

    fn frame(function: &str, line: u32, address: u64) -> Frame {
        Frame {
            function: Some(function.to_owned()),
            file: Some("/src/pool.c".to_owned()),
            line: Some(line),
            address,
            module: None,
            inlined: false,
        }
    }

    /// Thread `tid` sleeping in `idle_wait`, called from `worker`.
    fn idle(tid: u32) -> StallReport {
        StallReport {
            pid: 1,
            tid,
            thread_name: format!("pool-{tid}"),
            span_id: u64::from(tid),
            function: 0,
            function_name: "idle_wait".to_owned(),
            depth: 0,
            since_ns: 0,
            before_attach: false,
            captured_ns: 3 * S,
            state: SchedState::Sleeping,
            syscall: Some(format!(
                "clock_nanosleep(CLOCK_REALTIME, 0, {{{tid}.0s}}, NULL)"
            )),
            wchan: Some("hrtimer_nanosleep".to_owned()),
            lock: None,
            deadlock: Vec::new(),
            deadlock_with: None,
            frames: Arc::from([
                frame("clock_nanosleep", 48, 0x7000),
                frame("idle_wait", 23, 0x1100),
                frame("worker", 30, 0x1200),
            ]),
            stack_note: None,
            wait: format!("sleeping in clock_nanosleep({{{tid}.0s}})"),
            on_stack: true,
            group: 0,
            goroutine: None,
        }
    }

    /// Thread `tid` waiting for mutex 0x40 held by `owner`.
    fn waiting(tid: u32, owner: u32, deadlock: &[u32]) -> StallReport {
        StallReport {
            function: 1,
            function_name: "take".to_owned(),
            syscall: Some("futex(0x40, FUTEX_WAIT_PRIVATE, 2, NULL)".to_owned()),
            lock: Some(LockWait {
                addr: 0x40,
                kind: WaitKind::Mutex,
                owner: Some(owner),
                owner_name: None,
                probable: false,
            }),
            deadlock: deadlock.iter().map(|&t| (t, format!("t{t}"))).collect(),
            frames: Arc::from([frame("futex_wait", 1, 0x7100), frame("take", 9, 0x1300)]),
            ..idle(tid)
        }
    }

    fn groups_of(grouper: &mut Grouper, reports: &[StallReport]) -> Vec<StallGroup> {
        let refs: Vec<&StallReport> = reports.iter().collect();
        grouper.group(&refs)
    }

    fn news_of(
        grouper: &mut Grouper,
        reports: &[StallReport],
        now_ns: u64,
        settled: bool,
    ) -> Vec<GroupNews> {
        let refs: Vec<&StallReport> = reports.iter().collect();
        let groups = grouper.group(&refs);
        grouper.news(&groups, &refs, now_ns, settled, false)
    }

    #[test]
    fn threads_stuck_in_one_place_are_one_group() {
        let mut grouper = Grouper::default();
        let reports: Vec<StallReport> = (10..15).map(idle).collect();
        let groups = groups_of(&mut grouper, &reports);
        assert_eq!(groups.len(), 1, "{groups:?}");
        assert_eq!(groups[0].members, [0, 1, 2, 3, 4]);
        assert_eq!((groups[0].id, groups[0].alone), (1, None));
    }

    #[test]
    fn another_stack_state_call_or_process_is_another_group() {
        let base = idle(10);
        let mut other_caller = idle(11);
        Arc::make_mut(&mut other_caller.frames)[2].address = 0x1280;
        let mut blocked = idle(12);
        blocked.state = SchedState::DiskSleep;
        let mut reading = idle(13);
        reading.syscall = Some("read(3, 0x1, 4)".to_owned());
        let mut elsewhere = idle(14);
        elsewhere.pid = 2;
        let mut other_function = idle(15);
        other_function.function = 7;
        // Another line of the same loop, running: the same place.
        let mut spinning = idle(16);
        spinning.state = SchedState::Running;
        spinning.syscall = None;
        let mut spinning_on = spinning.clone();
        spinning_on.tid = 17;
        Arc::make_mut(&mut spinning_on.frames)[0].line = Some(49);
        Arc::make_mut(&mut spinning_on.frames)[0].address = 0x7004;
        let mut grouper = Grouper::default();
        let reports = [
            base,
            other_caller,
            blocked,
            reading,
            elsewhere,
            other_function,
            spinning,
            spinning_on,
        ];
        let groups = groups_of(&mut grouper, &reports);
        assert_eq!(groups.len(), 7, "{groups:?}");
        let spin = groups.iter().find(|g| g.members.contains(&6)).unwrap();
        assert_eq!(spin.members, [6, 7]);
    }

    #[test]
    fn deadlocked_threads_and_lock_holders_stay_alone_and_come_first() {
        let mut reports: Vec<StallReport> = (10..14).map(idle).collect();
        // 20 and 21 are deadlocked; 30 and 31 wait for 22, which sleeps.
        reports.push(waiting(20, 21, &[20, 21]));
        reports.push(waiting(21, 20, &[21, 20]));
        reports.push(idle(22));
        reports.push(waiting(30, 22, &[]));
        reports.push(waiting(31, 22, &[]));
        let mut grouper = Grouper::default();
        let groups = groups_of(&mut grouper, &reports);
        let shape: Vec<(Option<Alone>, Vec<u32>)> = groups
            .iter()
            .map(|g| (g.alone, g.members.iter().map(|&i| reports[i].tid).collect()))
            .collect();
        assert_eq!(
            shape,
            [
                (Some(Alone::Deadlock), vec![20]),
                (Some(Alone::Deadlock), vec![21]),
                (Some(Alone::Holder), vec![22]),
                (None, vec![30, 31]),
                (None, vec![10, 11, 12, 13]),
            ],
            "22 sleeps like the pool but holds the lock 30 and 31 wait for"
        );
    }

    #[test]
    fn a_place_keeps_its_number() {
        let mut grouper = Grouper::default();
        let first = groups_of(&mut grouper, &[idle(1), waiting(2, 9, &[])]);
        let ids: Vec<u64> = first.iter().map(|g| g.id).collect();
        let again = groups_of(&mut grouper, &[waiting(5, 9, &[]), idle(6)]);
        let mut again_ids: Vec<u64> = again.iter().map(|g| g.id).collect();
        again_ids.sort_unstable();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        assert_eq!(again_ids, sorted, "same places, same numbers");
        let mut moved = idle(7);
        moved.function = 3;
        let third = groups_of(&mut grouper, &[moved]);
        assert_eq!(third[0].id, 3, "a new place, the next number");
    }

    #[test]
    fn a_group_is_news_once_and_the_same_group_again_is_not() {
        let mut grouper = Grouper::default();
        let reports: Vec<StallReport> = (10..2010).map(idle).collect();
        let news = news_of(&mut grouper, &reports, 3 * S, true);
        assert_eq!(news.len(), 1, "{news:?}");
        assert_eq!(news[0].kind, NewsKind::Appeared(2000));
        assert_eq!(
            news[0].line,
            "stall: 2000 threads (pool-10, pool-11, pool-12, …) in idle_wait for ≥ 3.0 s at \
             idle_wait (/src/pool.c:23): sleeping in clock_nanosleep [kernel: hrtimer_nanosleep] \
             — tids 10–2009 (stall_group 1)"
        );
        assert!(news_of(&mut grouper, &reports, 4 * S, true).is_empty());
        // A thread joining a group already told is not news either.
        let mut more = reports.clone();
        more.push(idle(5000));
        assert!(news_of(&mut grouper, &more, 5 * S, true).is_empty());
    }

    #[test]
    fn a_single_stall_is_told_as_before() {
        let mut grouper = Grouper::default();
        let report = waiting(20, 21, &[20, 21]);
        let news = news_of(&mut grouper, std::slice::from_ref(&report), S, false);
        assert_eq!(news.len(), 1);
        assert_eq!(
            news[0].line,
            report.headline(),
            "a deadlock is told at once"
        );
    }

    #[test]
    fn a_group_waits_for_the_captures_still_queued() {
        let mut grouper = Grouper::default();
        let few: Vec<StallReport> = (10..12).map(idle).collect();
        assert!(
            news_of(&mut grouper, &few, S, false).is_empty(),
            "unsettled"
        );
        let all: Vec<StallReport> = (10..20).map(idle).collect();
        let news = news_of(&mut grouper, &all, S + S / 2, true);
        assert_eq!(
            news[0].kind,
            NewsKind::Appeared(10),
            "told whole once settled"
        );
        // Captures that never settle: told after ANNOUNCE_WAIT_NS all the same.
        let mut other = idle(30);
        other.function = 5;
        let mut more = all.clone();
        more.push(other);
        assert!(news_of(&mut grouper, &more, 2 * S, false).is_empty());
        let news = news_of(&mut grouper, &more, 2 * S + ANNOUNCE_WAIT_NS, false);
        assert_eq!(news.len(), 1, "{news:?}");
        assert_eq!(news[0].kind, NewsKind::Appeared(1));
    }

    #[test]
    fn threads_leaving_a_group_are_news_together() {
        let mut grouper = Grouper::default();
        let all: Vec<StallReport> = (10..20).map(idle).collect();
        news_of(&mut grouper, &all, S, true);
        // Two leave, then one more: told together once due.
        assert!(news_of(&mut grouper, &all[2..], S + S / 4, true).is_empty());
        assert!(news_of(&mut grouper, &all[3..], S + S / 2, true).is_empty());
        let news = news_of(&mut grouper, &all[3..], S + LEFT_EVERY_NS, true);
        assert_eq!(news.len(), 1, "{news:?}");
        assert_eq!(news[0].kind, NewsKind::Left(3));
        assert_eq!(
            news[0].line,
            "stall: 3 threads no longer stalled in idle_wait at idle_wait (/src/pool.c:23), \
             7 still are: tids 10–12"
        );
        // The last ones leaving are told at once.
        let news = news_of(&mut grouper, &[], S + LEFT_EVERY_NS + S / 4, true);
        assert_eq!(news[0].kind, NewsKind::Left(7));
        assert!(
            news[0].line.ends_with(", none still is: tids 13–19"),
            "{news:?}"
        );
        assert!(grouper.told.is_empty(), "forgotten once empty and told");
    }

    #[test]
    fn a_thread_moving_leaves_its_group_and_makes_a_new_one() {
        let mut grouper = Grouper::default();
        let report = idle(10);
        news_of(&mut grouper, std::slice::from_ref(&report), S, true);
        let mut moved = report.clone();
        Arc::make_mut(&mut moved.frames)[1].address = 0x1180;
        let news = news_of(&mut grouper, &[moved.clone()], 2 * S, true);
        assert_eq!(
            news.iter().map(|n| &n.line).collect::<Vec<_>>(),
            [
                &"stall: tid 10 (pool-10) no longer stalled in idle_wait at idle_wait \
                  (/src/pool.c:23)"
                    .to_owned(),
                &moved.headline()
            ]
        );
    }

    #[test]
    fn goroutines_stuck_alike_are_one_group_though_they_last_ran_on_one_thread() {
        let goroutine = |goid: u64| StallReport {
            goroutine: Some(goid),
            tid: 77,
            thread_name: "srv".to_owned(),
            syscall: None,
            wchan: None,
            wait: "goroutine waiting (chan receive)".to_owned(),
            ..idle(77)
        };
        let mut grouper = Grouper::default();
        let reports: Vec<StallReport> = (17..20).chain([40]).map(goroutine).collect();
        let news = news_of(&mut grouper, &reports, 3 * S, true);
        assert_eq!(news.len(), 1, "{news:?}");
        assert_eq!(
            news[0].kind,
            NewsKind::Appeared(4),
            "four goroutines, one thread"
        );
        assert_eq!(
            news[0].line,
            "stall: 4 goroutines in idle_wait for ≥ 3.0 s at idle_wait (/src/pool.c:23): \
             goroutine waiting (chan receive) — goroutines 17–19, 40 (stall_group 1)"
        );
        // One of them moves on: it leaves the group, the others stay.
        let news = news_of(&mut grouper, &reports[1..], 3 * S + LEFT_EVERY_NS, true);
        assert_eq!(
            news[0].line,
            "stall: 1 goroutine no longer stalled in idle_wait at idle_wait (/src/pool.c:23), \
             3 still are: goroutine 17"
        );
    }

    #[test]
    fn tid_lists_are_runs() {
        assert_eq!(tid_list(&[7]), "tid 7");
        assert_eq!(tid_list(&[3, 5, 6, 7, 9]), "tids 3, 5–7, 9");
        let scattered: Vec<u32> = (0..40).map(|i| i * 2).collect();
        assert_eq!(
            tid_list(&scattered),
            "tids 0, 2, 4, 6, 8, 10, 12, 14, … (40 in all)"
        );
    }
}
