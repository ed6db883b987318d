//! Who holds the lock a thread waits for, and whether the waits form a
//! cycle (a deadlock).
//!
//! A thread blocked in `pthread_mutex_lock` sleeps in a `futex` wait on the
//! mutex's lock word, which is the first field of glibc's `pthread_mutex_t`;
//! so the futex address is the mutex address. glibc records the owner's
//! thread id in the `__owner` field (offset 8) once it takes the lock, for
//! every mutex kind. Priority-inheritance futexes carry the owner's thread id
//! in the lock word itself. Both readings are checked against the target's
//! live threads, so a futex that is not a mutex (a condition variable, a
//! semaphore) is not mistaken for one.
//!
//! The analysis is pure over the words read from the target; the cycle
//! search is pure over a wait-for relation.

use std::{collections::HashMap, hash::BuildHasher};

/// Offset of `__owner` in glibc's x86-64 `pthread_mutex_t`.
pub const MUTEX_OWNER_OFFSET: u64 = 8;
/// Offset of `__kind`.
pub const MUTEX_KIND_OFFSET: u64 = 16;
/// Bytes of the mutex read for the analysis (`__lock` … `__kind`).
pub const MUTEX_PREFIX_LEN: usize = 20;
/// The thread-id bits of a priority-inheritance futex word.
const FUTEX_TID_MASK: u32 = 0x3fff_ffff;
/// glibc's mutex kinds are small (type 0–3 plus flag bits below 1024:
/// robust, priority inheritance/protection, process-shared, elision).
const MAX_MUTEX_KIND: i32 = 1024;

/// The lock word a thread sleeps on and what was read around it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockWords {
    /// The futex address.
    pub addr: u64,
    /// The first 20 bytes at `addr`: `__lock`, `__count`, `__owner`,
    /// `__nusers`, `__kind` if it is a glibc mutex.
    pub bytes: [u8; MUTEX_PREFIX_LEN],
    /// The wait was `FUTEX_LOCK_PI`: the word holds the owner's tid.
    pub pi: bool,
}

/// What the futex a thread waits on turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockHolder {
    /// A locked mutex (glibc `pthread_mutex_t` or a PI futex) held by thread `owner`.
    Mutex {
        /// The mutex address.
        addr: u64,
        /// The holder's thread id.
        owner: u32,
    },
    /// A lock that records no owner (Rust's std mutex, glibc's low-level
    /// locks) whose holder was inferred: the one other blocked thread with a
    /// reference to the lock near the top of its stack (a lock guard points
    /// at its mutex). Probable, not certain.
    Probable {
        /// The lock address.
        addr: u64,
        /// The probable holder's thread id.
        owner: u32,
    },
    /// A futex whose holder cannot be told (condition variable, semaphore,
    /// a mutex whose owner is gone or in another process).
    Unknown {
        /// The futex address.
        addr: u64,
        /// The futex word's value.
        word: u32,
    },
}

impl LockHolder {
    /// The holder's thread id, if known.
    pub fn owner(&self) -> Option<u32> {
        match self {
            Self::Mutex { owner, .. } | Self::Probable { owner, .. } => Some(*owner),
            Self::Unknown { .. } => None,
        }
    }

    /// Whether the word says "locked" in the way that records no owner:
    /// 1 (locked) or 2 (locked, with waiters), as Rust's std mutex and
    /// glibc's low-level locks write it.
    pub fn looks_locked_without_owner(&self) -> bool {
        matches!(self, Self::Unknown { word: 1 | 2, .. })
    }
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

/// Decides who holds the lock at `words.addr`. `is_thread(tid)` says whether
/// `tid` is a live thread of the target: an owner field naming anything else
/// means the memory is not a mutex (or its owner died).
pub fn lock_holder(words: &LockWords, is_thread: &dyn Fn(u32) -> bool) -> LockHolder {
    let word = le_u32(&words.bytes, 0);
    let unknown = LockHolder::Unknown {
        addr: words.addr,
        word,
    };
    let owner = if words.pi {
        word & FUTEX_TID_MASK
    } else {
        let owner = le_u32(&words.bytes, MUTEX_OWNER_OFFSET as usize) as i32;
        let kind = le_u32(&words.bytes, MUTEX_KIND_OFFSET as usize) as i32;
        // An unlocked word cannot make anyone wait for long: the wait is
        // about to end (or it is not a mutex).
        if word == 0 || owner <= 0 || !(0..MAX_MUTEX_KIND).contains(&kind) {
            return unknown;
        }
        owner as u32
    };
    if owner != 0 && is_thread(owner) {
        LockHolder::Mutex {
            addr: words.addr,
            owner,
        }
    } else {
        unknown
    }
}

/// Follows the wait-for relation from `start` (thread → the thread holding
/// what it waits for) and returns the cycle through `start`, `start` first,
/// if the chain comes back to it: those threads are deadlocked. A chain that
/// ends, or loops without `start`, is no deadlock of `start`'s.
pub fn cycle_through<S: BuildHasher>(
    start: u32,
    waits_for: &HashMap<u32, u32, S>,
) -> Option<Vec<u32>> {
    let mut chain = vec![start];
    let mut at = start;
    while let Some(&next) = waits_for.get(&at) {
        if next == start {
            return Some(chain);
        }
        if chain.contains(&next) {
            return None;
        }
        chain.push(next);
        at = next;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A glibc mutex prefix: lock word, count, owner, nusers, kind.
    fn mutex(lock: u32, owner: i32, kind: i32) -> [u8; MUTEX_PREFIX_LEN] {
        let mut bytes = [0u8; MUTEX_PREFIX_LEN];
        bytes[0..4].copy_from_slice(&lock.to_le_bytes());
        bytes[8..12].copy_from_slice(&owner.to_le_bytes());
        bytes[12..16].copy_from_slice(&1u32.to_le_bytes());
        bytes[16..20].copy_from_slice(&kind.to_le_bytes());
        bytes
    }

    fn threads(tid: u32) -> bool {
        [1234, 1235, 1236].contains(&tid)
    }

    #[test]
    fn a_contended_mutex_names_its_owner() {
        let words = LockWords {
            addr: 0x55d0_c0a0_2040,
            bytes: mutex(2, 1235, 0),
            pi: false,
        };
        assert_eq!(
            lock_holder(&words, &threads),
            LockHolder::Mutex {
                addr: 0x55d0_c0a0_2040,
                owner: 1235
            }
        );
    }

    #[test]
    fn an_owner_that_is_no_thread_of_the_target_is_not_trusted() {
        // A condition variable's fields, or a mutex whose owner exited.
        let words = LockWords {
            addr: 0x1000,
            bytes: mutex(2, 777, 0),
            pi: false,
        };
        assert_eq!(
            lock_holder(&words, &threads),
            LockHolder::Unknown {
                addr: 0x1000,
                word: 2
            }
        );
    }

    #[test]
    fn unlocked_or_implausible_words_are_unknown() {
        for bytes in [mutex(0, 1235, 0), mutex(2, 0, 0), mutex(2, 1235, 99_999)] {
            let words = LockWords {
                addr: 0x1000,
                bytes,
                pi: false,
            };
            assert!(lock_holder(&words, &threads).owner().is_none(), "{bytes:?}");
        }
    }

    #[test]
    fn a_pi_futex_holds_the_owner_in_its_word() {
        // FUTEX_WAITERS (bit 31) set, owner 1236 (0x4d4).
        let words = LockWords {
            addr: 0x2000,
            bytes: mutex(0x8000_0000 | 0x4d4, 0, 0),
            pi: true,
        };
        assert_eq!(lock_holder(&words, &threads).owner(), Some(1236));
    }

    proptest::proptest! {
        /// Whatever the target's memory holds, the analysis answers.
        #[test]
        fn any_lock_words_are_judged(bytes in proptest::array::uniform20(proptest::num::u8::ANY), pi: bool) {
            let words = LockWords { addr: 0x1000, bytes, pi };
            let holder = lock_holder(&words, &threads);
            if let Some(owner) = holder.owner() {
                proptest::prop_assert!(threads(owner));
            }
        }

        /// Any wait-for relation: a cycle found is a real cycle through the start.
        #[test]
        fn cycles_are_real(edges in proptest::collection::hash_map(0u32..8, 0u32..8, 0..8), start in 0u32..8) {
            if let Some(cycle) = cycle_through(start, &edges) {
                proptest::prop_assert_eq!(cycle[0], start);
                for (i, tid) in cycle.iter().enumerate() {
                    let next = cycle.get(i + 1).copied().unwrap_or(start);
                    proptest::prop_assert_eq!(edges.get(tid).copied(), Some(next));
                }
            }
        }
    }

    #[test]
    fn two_threads_waiting_on_each_other_are_a_cycle() {
        let waits: HashMap<u32, u32> = [(1234, 1235), (1235, 1234)].into();
        assert_eq!(cycle_through(1234, &waits), Some(vec![1234, 1235]));
        assert_eq!(cycle_through(1235, &waits), Some(vec![1235, 1234]));
    }

    #[test]
    fn a_longer_cycle_and_a_self_deadlock() {
        let waits: HashMap<u32, u32> = [(1, 2), (2, 3), (3, 1), (9, 9)].into();
        assert_eq!(cycle_through(2, &waits), Some(vec![2, 3, 1]));
        assert_eq!(
            cycle_through(9, &waits),
            Some(vec![9]),
            "relocking its own mutex"
        );
    }

    #[test]
    fn a_chain_into_someone_elses_cycle_is_not_a_deadlock_of_the_start() {
        // 5 waits for 1, which is in a cycle with 2; 5 is blocked by the
        // deadlock but not part of it. A chain that ends is no cycle.
        let waits: HashMap<u32, u32> = [(5, 1), (1, 2), (2, 1), (7, 8)].into();
        assert_eq!(cycle_through(5, &waits), None);
        assert_eq!(cycle_through(7, &waits), None);
        assert_eq!(cycle_through(42, &waits), None);
    }
}
