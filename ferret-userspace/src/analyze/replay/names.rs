//! The functions and threads of a recording, interned: spans refer to them
//! by index ([`FnIx`], [`ThreadIx`]), so a visitor keeps a few bytes per
//! span, not strings.

use std::collections::HashMap;
use std::path::Path;

use rustc_hash::FxHashMap;

/// Index of a function in [`Names`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FnIx(pub u32);

/// Index of a thread in [`Names`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ThreadIx(pub u32);

/// A traced function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    /// Demangled name.
    pub name: String,
    /// Binary or library path (empty when the file has no `module`).
    pub module: String,
}

/// A thread seen in the recording, or in a Go program's a goroutine (whose
/// calls nest on its own stack, whatever threads ran them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Thread {
    /// Process id (0 when the file has no `pid`).
    pub pid: i32,
    /// Thread id; a goroutine's first thread.
    pub tid: i32,
    /// Its latest name; `goroutine N` for a goroutine.
    pub name: String,
    /// The goroutine, for a Go program's.
    pub goroutine: Option<i64>,
}

impl Thread {
    /// What tells its timeline apart from the others of its process in an
    /// export: the goroutine's id, or the thread's.
    pub fn track(&self) -> i64 {
        self.goroutine.unwrap_or(i64::from(self.tid))
    }
}

/// The functions and threads met so far, interned: spans refer to them by
/// index, so a visitor keeps a few bytes per span, not strings.
#[derive(Clone, Debug, Default)]
pub struct Names {
    functions: Vec<Function>,
    /// name → (module, index) pairs; one name rarely has two modules.
    function_index: HashMap<String, Vec<(String, FnIx)>>,
    threads: Vec<Thread>,
    /// Fx, not SipHash: looked up once per row, with keys read from the
    /// file, where SipHash's protection against chosen keys buys nothing
    /// and cost a tenth of the replay.
    /// Keyed by (pid, tid or goroutine id, whether a goroutine).
    thread_index: FxHashMap<(i32, i64, bool), ThreadIx>,
}

impl Names {
    /// The function at `ix`.
    pub fn function(&self, ix: FnIx) -> &Function {
        &self.functions[ix.0 as usize]
    }

    /// The thread at `ix`.
    pub fn thread(&self, ix: ThreadIx) -> &Thread {
        &self.threads[ix.0 as usize]
    }

    /// Every function, in order of first appearance.
    pub fn functions(&self) -> &[Function] {
        &self.functions
    }

    /// Every thread, in order of first appearance.
    pub fn threads(&self) -> &[Thread] {
        &self.threads
    }

    /// A label per function: its name, or `name [library]` when two traced
    /// functions share the name (a `malloc` in the program and in libc).
    pub fn labels(&self) -> Vec<String> {
        self.functions
            .iter()
            .map(|f| {
                let shared = self
                    .function_index
                    .get(&f.name)
                    .is_some_and(|modules| modules.len() > 1);
                if shared {
                    let file = Path::new(&f.module)
                        .file_name()
                        .map_or_else(|| f.module.clone(), |n| n.to_string_lossy().into_owned());
                    format!("{} [{file}]", f.name)
                } else {
                    f.name.clone()
                }
            })
            .collect()
    }

    /// Intern a function (public for tests that build spans by hand).
    pub fn intern_function(&mut self, name: &str, module: &str) -> FnIx {
        if let Some(modules) = self.function_index.get(name)
            && let Some(&(_, ix)) = modules.iter().find(|(m, _)| m == module)
        {
            return ix;
        }
        let ix = FnIx(self.functions.len() as u32);
        self.functions.push(Function {
            name: name.to_owned(),
            module: module.to_owned(),
        });
        self.function_index
            .entry(name.to_owned())
            .or_default()
            .push((module.to_owned(), ix));
        ix
    }

    /// Intern a thread (public for tests that build spans by hand).
    ///
    /// A thread that renames itself (most do, right after they start) is
    /// shown under its latest name.
    pub fn intern_thread(&mut self, pid: i32, tid: i32, name: &str) -> ThreadIx {
        let ix = self.thread_ix(pid, tid);
        self.rename_thread(ix, name);
        ix
    }

    pub(super) fn thread_ix(&mut self, pid: i32, tid: i32) -> ThreadIx {
        *self
            .thread_index
            .entry((pid, i64::from(tid), false))
            .or_insert_with(|| {
                self.threads.push(Thread {
                    pid,
                    tid,
                    name: String::new(),
                    goroutine: None,
                });
                ThreadIx(self.threads.len() as u32 - 1)
            })
    }

    /// Intern goroutine `goid` of process `pid`, first seen on thread `tid`.
    pub fn goroutine_ix(&mut self, pid: i32, goid: i64, tid: i32) -> ThreadIx {
        *self
            .thread_index
            .entry((pid, goid, true))
            .or_insert_with(|| {
                self.threads.push(Thread {
                    pid,
                    tid,
                    name: format!("goroutine {goid}"),
                    goroutine: Some(goid),
                });
                ThreadIx(self.threads.len() as u32 - 1)
            })
    }

    pub(super) fn rename_thread(&mut self, ix: ThreadIx, name: &str) {
        let thread = &mut self.threads[ix.0 as usize];
        if thread.name != name && !name.is_empty() {
            name.clone_into(&mut thread.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_name_in_two_modules_gets_labels_that_tell_them_apart() {
        let mut names = Names::default();
        names.intern_function("malloc", "/usr/lib/libc.so.6");
        names.intern_function("malloc", "/opt/app");
        names.intern_function("main", "/opt/app");
        assert_eq!(
            names.labels(),
            ["malloc [libc.so.6]", "malloc [app]", "main"]
        );
    }
}
