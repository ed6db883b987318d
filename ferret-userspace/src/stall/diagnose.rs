//! From a raw capture to a [`StallReport`]: symbolizes the walked stack,
//! tells whether it shows the stalled call itself or shows the call ended
//! unseen (a [`StaleSpan`]), names what a futex wait is for and who holds
//! the lock, follows the holders to a deadlock, and writes the wait summary.
//! Runs on the watchdog's capture thread.

use super::{
    capture::Capturer,
    detector::{Look, Outcome, Request},
    futex::LockHolder,
    procfs,
    report::{Frame, LockWait, StaleSpan, StallReport, WaitKind, wait_summary},
    unwind,
};
use crate::trace::FunctionInfo;

/// Whether a symbolized name and a probe-table name are one function:
/// equal up to a parameter list, which one demangler writes and the other
/// may not.
fn same_function(a: &str, b: &str) -> bool {
    let bare = |s: &str| {
        let s = s.split('(').next().unwrap_or(s).trim();
        // A Rust legacy hash suffix (`::h0123456789abcdef`).
        match s.rsplit_once("::h") {
            Some((path, hash))
                if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                path.to_owned()
            }
            _ => s.to_owned(),
        }
    };
    !a.is_empty() && bare(a) == bare(b)
}

/// Captures the stall `request` asks for; a [`Look::Again`] at a thread
/// blocked exactly as at its last capture answers
/// [`Outcome::Unchanged`] instead.
pub(super) fn capture_stall(
    capturer: &mut Capturer,
    request: &Request,
    functions: &[FunctionInfo],
) -> Outcome {
    if request.look == Look::Again && capturer.unmoved(request.tid, request.span_id) {
        return Outcome::Unchanged {
            pid: request.pid,
            tid: request.tid,
            goroutine: None,
            span_id: request.span_id,
        };
    }
    let Some(capture) = capturer.capture(request.tid) else {
        capturer.forget(request.tid);
        return Outcome::Gone {
            pid: request.pid,
            tid: request.tid,
            span_id: request.span_id,
            goroutine: None,
        };
    };
    capturer.remember(request.tid, request.span_id, capture.proc.syscall);
    let captured_ns = crate::clock::monotonic_ns();
    let mut on_stack = false;
    let (frames, stack_note) = match &capture.stack {
        Ok(unwound) => {
            let symbolized = capturer.symbolize_each(unwound);
            let per_frame = &symbolized.per_frame;
            // Did the walk meet the stalled call itself? A frame entered at
            // its stack pointer is not enough (a sibling call reuses the
            // slot); the frame must also be its function.
            let function_name = functions
                .get(request.function as usize)
                .map_or("", |f| f.name.as_str());
            let is_function = |f: &Frame| {
                f.function
                    .as_deref()
                    .is_some_and(|name| same_function(name, function_name))
            };
            on_stack = unwound.frames.iter().zip(per_frame).any(|(raw, syms)| {
                raw.entry_sp == Some(request.sp) && syms.iter().any(is_function)
            });
            let frames = std::sync::Arc::clone(&symbolized.frames);
            // A complete walk, all by CFI, on which neither the span's entry
            // stack pointer nor its function appears shows the call ended
            // unseen (an adopted call whose exit has no probe, a lost exit).
            // Anything less certain keeps the stall.
            let present = unwound
                .frames
                .iter()
                .any(|f| f.entry_sp == Some(request.sp))
                || frames.iter().any(is_function);
            let certain = unwound.end == unwind::StackEnd::Complete
                && unwound.frames.len() > 1
                && unwound.frames.iter().all(|f| !f.scanned);
            if !present && certain {
                return Outcome::Stale(StaleSpan {
                    pid: request.pid,
                    tid: request.tid,
                    span_id: request.span_id,
                    seen_ns: captured_ns,
                    goroutine: None,
                });
            }
            let note = if unwound.end == unwind::StackEnd::UretprobeTrampoline
                && !request.callers.is_empty()
            {
                let names: Vec<&str> = request
                    .callers
                    .iter()
                    .filter_map(|&f| functions.get(f as usize).map(|f| f.name.as_str()))
                    .collect();
                Some(format!(
                    "[callers hidden by a uretprobe (--exit-probes ret keeps them); \
                     traced callers: {}]",
                    names.join(" ← ")
                ))
            } else {
                unwound.end_note()
            };
            (frames, note)
        }
        Err(why) => (std::sync::Arc::from([]), Some(format!("[no stack: {why}]"))),
    };
    let pid = request.pid;
    let name_of = |tid: u32| procfs::thread_name(pid, tid).unwrap_or_else(|| "?".to_owned());
    let kind = WaitKind::from_stack(frames.iter().filter_map(|f| f.function.as_deref()));
    // A mutex that records no owner (Rust's std mutex): look for the thread
    // whose stack refers to it.
    let holder = capture.lock.map(|holder| match kind {
        WaitKind::Mutex | WaitKind::Futex => capturer.with_probable_holder(request.tid, holder),
        _ => holder,
    });
    let lock = holder.map(|holder| match (holder, kind) {
        // A live owner recorded in the lock (or found on a stack) makes it
        // a mutex, whatever the stack says (a stripped libc names nothing).
        (LockHolder::Mutex { addr, owner } | LockHolder::Probable { addr, owner }, _) => LockWait {
            addr,
            kind: if kind == WaitKind::Futex {
                WaitKind::Mutex
            } else {
                kind
            },
            owner: Some(owner),
            owner_name: Some(name_of(owner)),
            probable: matches!(holder, LockHolder::Probable { .. }),
        },
        // glibc's join sleeps on the joined thread's tid, which the kernel
        // clears when that thread exits.
        (LockHolder::Unknown { addr, word }, WaitKind::ThreadExit)
            if word != 0 && procfs::thread_name(pid, word).is_some() =>
        {
            LockWait {
                addr,
                kind,
                owner: Some(word),
                owner_name: procfs::thread_name(pid, word),
                probable: false,
            }
        }
        (LockHolder::Unknown { addr, .. }, _) => LockWait {
            addr,
            kind,
            owner: None,
            owner_name: None,
            probable: false,
        },
    });
    let (deadlock, deadlock_probable): (Vec<(u32, String)>, bool) = lock
        .as_ref()
        .and_then(|l| Some((l.owner?, l.probable)))
        .and_then(|(owner, probable)| {
            let (cycle, more) = capturer.deadlock_cycle(request.tid, owner)?;
            Some((cycle, probable || more))
        })
        .map(|(cycle, probable)| {
            (
                cycle.into_iter().map(|tid| (tid, name_of(tid))).collect(),
                probable,
            )
        })
        .unwrap_or_default();
    let deadlock_with = deadlock.get(1).map(|&(tid, _)| tid).or_else(|| {
        // A thread relocking its own mutex is deadlocked with itself.
        (deadlock.len() == 1).then_some(request.tid)
    });
    let state = capture.proc.stat.state;
    let mut wait = wait_summary(
        state,
        capture.call.as_deref(),
        capture.proc.wchan.as_deref(),
        capture.proc.stat.processor,
        lock.as_ref(),
        &deadlock,
        deadlock_probable,
    );
    if request.before_attach {
        wait.push_str(" — in this call since before ferret attached");
    }
    Outcome::Report(Box::new(StallReport {
        pid: request.pid,
        tid: request.tid,
        thread_name: if capture.proc.stat.comm.is_empty() {
            request.thread_name.clone()
        } else {
            capture.proc.stat.comm.clone()
        },
        span_id: request.span_id,
        function: request.function,
        function_name: functions
            .get(request.function as usize)
            .map_or_else(|| format!("#{}", request.function), |f| f.name.clone()),
        depth: request.depth,
        since_ns: request.since_ns,
        before_attach: request.before_attach,
        captured_ns,
        state,
        syscall: capture.call.clone(),
        wchan: capture.proc.wchan.clone(),
        lock,
        deadlock,
        deadlock_with,
        frames,
        stack_note,
        wait,
        on_stack,
        group: 0,
        goroutine: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names_match_across_demanglers() {
        assert!(same_function("lock_b", "lock_b"));
        assert!(same_function("ns::f(int, char)", "ns::f(int, char)"));
        assert!(same_function("ns::f(int)", "ns::f"));
        assert!(same_function("app::work::h0123456789abcdef", "app::work"));
        assert!(!same_function("app::work", "app::worker"));
        assert!(!same_function("", ""));
    }
}
