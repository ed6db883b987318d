//! The Hot pane's numbers: where the sampled threads spent their CPU time
//! over the last [`HOT_WINDOW_S`] seconds, per function: self (the
//! innermost frame of a sample) and total (anywhere on its stack) shares,
//! the line most self samples fell on, and the commonest stacks.
//!
//! Samples go into one bucket per second; a view merges the buckets of the
//! window, so old samples leave it as the window moves. Functions and
//! lines are interned once; memory is the distinct functions and stacks
//! seen in the window (plus the interned names, bounded by the program's
//! own functions).

use std::{collections::VecDeque, sync::Arc};

use rustc_hash::FxHashMap;

use crate::sample::{CodeAt, Sample, unknown_name};

/// Seconds of samples the Hot pane shows.
pub const HOT_WINDOW_S: u64 = 10;
/// Rows a view keeps (the most self, then total, samples).
pub const HOT_ROWS_KEPT: usize = 200;
/// Distinct stacks a view keeps (the commonest).
pub const HOT_STACKS_KEPT: usize = 200;

/// One function of the Hot pane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HotRow {
    /// Its name (`0x… in MODULE` when it has none).
    pub name: Arc<str>,
    /// The binary or library it is in.
    pub module: Option<Arc<str>>,
    /// It was inlined into this function (which a probe can catch); `None`
    /// for a function of its own.
    pub inlined_into: Option<Arc<str>>,
    /// A sampled address in it: what tracing it from the pane uses.
    pub code: Option<CodeAt>,
    /// Samples with it innermost.
    pub self_samples: u64,
    /// Samples with it anywhere on the stack (once per sample).
    pub total_samples: u64,
    /// `file:line` most of its self samples fell on.
    pub line: Option<Arc<str>>,
}

/// A stack seen in the window and how often: function names, innermost
/// first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HotStack {
    /// Innermost first.
    pub frames: Arc<[Arc<str>]>,
    /// Samples with exactly this stack.
    pub samples: u64,
}

/// What the Hot pane draws.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HotView {
    /// Most self samples first.
    pub rows: Vec<HotRow>,
    /// Samples in the window.
    pub samples: u64,
    /// Seconds the window covers (less than [`HOT_WINDOW_S`] at the start).
    pub window_s: u64,
    /// The commonest stacks, commonest first.
    pub stacks: Vec<HotStack>,
}

/// A function as interned.
#[derive(Clone, Debug)]
struct Interned {
    name: Arc<str>,
    module: Option<Arc<str>>,
    inlined_into: Option<Arc<str>>,
    code: Option<CodeAt>,
}

/// Counts of one function in one bucket.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    self_samples: u64,
    total_samples: u64,
}

/// One second of samples.
#[derive(Debug, Default)]
struct Bucket {
    second: u64,
    samples: u64,
    counts: FxHashMap<u32, Counts>,
    /// Self samples by (function, line).
    lines: FxHashMap<(u32, u32), u64>,
    stacks: FxHashMap<Arc<[u32]>, u64>,
}

/// The live sample aggregates.
#[derive(Debug, Default)]
pub struct HotProfile {
    keys: FxHashMap<(Arc<str>, Option<Arc<str>>), u32>,
    functions: Vec<Interned>,
    line_keys: FxHashMap<Arc<str>, u32>,
    lines: Vec<Arc<str>>,
    buckets: VecDeque<Bucket>,
    /// The last view, and whether samples came since.
    view: Arc<HotView>,
    dirty: bool,
    viewed_second: u64,
    first_second: Option<u64>,
}

impl HotProfile {
    /// Nothing sampled yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts a sample.
    pub fn add(&mut self, sample: &Sample) {
        let second = sample.ts_ns / 1_000_000_000;
        self.first_second.get_or_insert(second);
        let mut ids: Vec<u32> = Vec::with_capacity(sample.stack.len() + 4);
        let mut innermost_line = None;
        for location in &sample.stack {
            for frame in &location.frames {
                let name: Arc<str> = match &frame.function {
                    Some(name) => Arc::from(name.as_str()),
                    None => Arc::from(unknown_name(frame.address, frame.module.as_deref())),
                };
                let module = frame.module.as_deref().map(Arc::from);
                let id = self.intern(name, module, || Interned {
                    name: Arc::from(""),
                    module: None,
                    inlined_into: frame
                        .inlined
                        .then(|| location.symbol().map(Arc::from))
                        .flatten(),
                    code: location.code.clone(),
                });
                if ids.is_empty()
                    && let Some(file) = &frame.file
                {
                    let short = file.rsplit('/').next().unwrap_or(file);
                    let text = match frame.line {
                        Some(line) => format!("{short}:{line}"),
                        None => short.to_owned(),
                    };
                    innermost_line = Some(self.intern_line(&text));
                }
                ids.push(id);
            }
        }
        let bucket = self.bucket(second);
        bucket.samples += 1;
        if let Some(&first) = ids.first() {
            bucket.counts.entry(first).or_default().self_samples += 1;
            if let Some(line) = innermost_line {
                *bucket.lines.entry((first, line)).or_default() += 1;
            }
        }
        for (i, &id) in ids.iter().enumerate() {
            // Once per sample, however deep a recursion.
            if !ids[..i].contains(&id) {
                bucket.counts.entry(id).or_default().total_samples += 1;
            }
        }
        *bucket.stacks.entry(Arc::from(ids)).or_default() += 1;
        self.dirty = true;
    }

    /// The view of the window ending at `now_ns` (`CLOCK_MONOTONIC`);
    /// the same `Arc` while nothing changed.
    pub fn view(&mut self, now_ns: u64) -> Arc<HotView> {
        let now = now_ns / 1_000_000_000;
        if !self.dirty && now == self.viewed_second {
            return self.view.clone();
        }
        let oldest = now.saturating_sub(HOT_WINDOW_S - 1);
        while self.buckets.front().is_some_and(|b| b.second < oldest) {
            self.buckets.pop_front();
        }
        let mut counts: FxHashMap<u32, Counts> = FxHashMap::default();
        let mut lines: FxHashMap<(u32, u32), u64> = FxHashMap::default();
        let mut stacks: FxHashMap<Arc<[u32]>, u64> = FxHashMap::default();
        let mut samples = 0;
        for bucket in &self.buckets {
            samples += bucket.samples;
            for (&id, c) in &bucket.counts {
                let into = counts.entry(id).or_default();
                into.self_samples += c.self_samples;
                into.total_samples += c.total_samples;
            }
            for (&key, &n) in &bucket.lines {
                *lines.entry(key).or_default() += n;
            }
            for (stack, &n) in &bucket.stacks {
                *stacks.entry(stack.clone()).or_default() += n;
            }
        }
        let mut best_line: FxHashMap<u32, (u64, u32)> = FxHashMap::default();
        for (&(function, line), &n) in &lines {
            let best = best_line.entry(function).or_insert((0, line));
            if n > best.0 || (n == best.0 && line < best.1) {
                *best = (n, line);
            }
        }
        let mut rows: Vec<HotRow> = counts
            .iter()
            .map(|(&id, c)| {
                let f = &self.functions[id as usize];
                HotRow {
                    name: f.name.clone(),
                    module: f.module.clone(),
                    inlined_into: f.inlined_into.clone(),
                    code: f.code.clone(),
                    self_samples: c.self_samples,
                    total_samples: c.total_samples,
                    line: best_line
                        .get(&id)
                        .map(|&(_, line)| self.lines[line as usize].clone()),
                }
            })
            .collect();
        rows.sort_by(|a, b| {
            b.self_samples
                .cmp(&a.self_samples)
                .then(b.total_samples.cmp(&a.total_samples))
                .then_with(|| a.name.cmp(&b.name))
        });
        rows.truncate(HOT_ROWS_KEPT);
        let mut stacks: Vec<(Arc<[u32]>, u64)> = stacks.into_iter().collect();
        stacks.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        stacks.truncate(HOT_STACKS_KEPT);
        let stacks = stacks
            .into_iter()
            .map(|(ids, samples)| HotStack {
                frames: ids
                    .iter()
                    .map(|&id| self.functions[id as usize].name.clone())
                    .collect(),
                samples,
            })
            .collect();
        let window_s = self
            .first_second
            .map_or(0, |first| (now + 1).saturating_sub(first.max(oldest)));
        self.view = Arc::new(HotView {
            rows,
            samples,
            window_s,
            stacks,
        });
        self.dirty = false;
        self.viewed_second = now;
        self.view.clone()
    }

    fn intern(
        &mut self,
        name: Arc<str>,
        module: Option<Arc<str>>,
        rest: impl FnOnce() -> Interned,
    ) -> u32 {
        let key = (name, module);
        if let Some(&id) = self.keys.get(&key) {
            return id;
        }
        let id = self.functions.len() as u32;
        let mut interned = rest();
        interned.name = key.0.clone();
        interned.module.clone_from(&key.1);
        self.functions.push(interned);
        self.keys.insert(key, id);
        id
    }

    fn intern_line(&mut self, text: &str) -> u32 {
        if let Some(&id) = self.line_keys.get(text) {
            return id;
        }
        let id = self.lines.len() as u32;
        let text: Arc<str> = Arc::from(text);
        self.lines.push(text.clone());
        self.line_keys.insert(text, id);
        id
    }

    fn bucket(&mut self, second: u64) -> &mut Bucket {
        if self.buckets.back().is_none_or(|b| b.second < second) {
            if self.buckets.len() as u64 >= HOT_WINDOW_S {
                self.buckets.pop_front();
            }
            self.buckets.push_back(Bucket {
                second,
                ..Bucket::default()
            });
        }
        // A sample a little late for its second (batches cross a second
        // boundary) counts in the bucket it belongs to, if still kept.
        let index = self
            .buckets
            .iter()
            .rposition(|b| b.second <= second)
            .unwrap_or(0);
        &mut self.buckets[index]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{sample::Location, stall::Frame, trace::ThreadName};

    fn frame(name: &str, line: u32, inlined: bool) -> Frame {
        Frame {
            function: Some(name.into()),
            file: Some("/src/prog.c".into()),
            line: Some(line),
            address: 0x1000,
            module: Some("/bin/prog".into()),
            inlined,
        }
    }

    /// A sample at `second` with `stack` (names innermost first; a name
    /// ending in `+` is inlined into the next one).
    fn sample(second: u64, stack: &[(&str, u32)]) -> Sample {
        let mut locations = Vec::new();
        let mut pending = Vec::new();
        for &(name, line) in stack {
            if let Some(inlined) = name.strip_suffix('+') {
                pending.push(frame(inlined, line, true));
                continue;
            }
            pending.push(frame(name, line, false));
            locations.push(Arc::new(Location::new(
                std::mem::take(&mut pending),
                Some(CodeAt {
                    module: "/bin/prog".into(),
                    file_offset: u64::from(line),
                }),
            )));
        }
        Sample {
            ts_ns: second * 1_000_000_000 + 5,
            pid: 1,
            tid: 1,
            thread_name: ThreadName::from("t"),
            stack: locations,
            stack_note: None,
            in_kernel: false,
        }
    }

    #[test]
    fn self_and_total_shares_with_the_hot_line_and_inlined_calls() {
        let mut hot = HotProfile::new();
        for _ in 0..6 {
            hot.add(&sample(100, &[("crunch", 17), ("loop", 25), ("main", 40)]));
        }
        for _ in 0..3 {
            hot.add(&sample(100, &[("crunch", 18), ("loop", 25), ("main", 40)]));
        }
        hot.add(&sample(101, &[("memcpy+", 9), ("loop", 26), ("main", 40)]));
        // Recursion counts once in total.
        hot.add(&sample(101, &[("walk", 3), ("walk", 4), ("main", 41)]));
        let view = hot.view(101 * 1_000_000_000);
        assert_eq!(view.samples, 11);
        assert_eq!(view.window_s, 2);
        let row = |name: &str| view.rows.iter().find(|r| &*r.name == name).unwrap();
        assert_eq!(&*view.rows[0].name, "crunch");
        assert_eq!(
            (row("crunch").self_samples, row("crunch").total_samples),
            (9, 9)
        );
        assert_eq!(row("crunch").line.as_deref(), Some("prog.c:17"));
        assert_eq!(
            (row("main").self_samples, row("main").total_samples),
            (0, 11)
        );
        assert_eq!(
            (row("walk").self_samples, row("walk").total_samples),
            (1, 1)
        );
        assert_eq!(row("memcpy").inlined_into.as_deref(), Some("loop"));
        assert_eq!(row("loop").inlined_into, None);
        assert_eq!(view.stacks[0].samples, 9, "the commonest stack first");
        assert_eq!(
            view.stacks[0]
                .frames
                .iter()
                .map(|f| &**f)
                .collect::<Vec<_>>(),
            ["crunch", "loop", "main"]
        );
    }

    #[test]
    fn old_samples_leave_the_window() {
        let mut hot = HotProfile::new();
        hot.add(&sample(100, &[("old", 1)]));
        hot.add(&sample(100 + HOT_WINDOW_S, &[("new", 1)]));
        let view = hot.view((100 + HOT_WINDOW_S) * 1_000_000_000);
        let names: Vec<&str> = view.rows.iter().map(|r| &*r.name).collect();
        assert_eq!(names, ["new"]);
        assert_eq!(view.samples, 1);
        assert_eq!(view.window_s, HOT_WINDOW_S);
        // Nothing new: the same view.
        let again = hot.view((100 + HOT_WINDOW_S) * 1_000_000_000 + 10);
        assert!(Arc::ptr_eq(&view, &again));
        // Later still, it empties.
        let later = hot.view((100 + 3 * HOT_WINDOW_S) * 1_000_000_000);
        assert!(later.rows.is_empty());
    }
}
