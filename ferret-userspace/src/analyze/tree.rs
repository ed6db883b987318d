//! The slowest root calls, each as a tree of what it called.
//!
//! One pass: every root span (a span with nothing open below it on its
//! thread, or with `--function`, an outermost call of a matching function)
//! builds a calling-context tree while it runs: calls with the same
//! function under the same tree node merge into one node with a call count,
//! total, self and max. When the root ends, its tree competes for the `N`
//! places of a min-heap keyed by the root's duration. So memory is `N`
//! finished trees plus one growing tree per thread, each bounded by its
//! number of distinct call paths rather than by its number of calls (a
//! root that calls `leaf` a million times holds one `leaf` node).

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};

use super::replay::{Ended, FnIx, Names, Started, Status, ThreadIx, Visitor};
use super::stats::SplitSum;
use crate::symbols::Glob;

/// One node of a tree: every call of `function` along one call path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeNode {
    /// The function.
    pub function: FnIx,
    /// Index of the parent node (`None` for the root).
    pub parent: Option<u32>,
    /// Calls merged into the node.
    pub calls: u64,
    /// Sum of their durations.
    pub total_ns: u64,
    /// Sum of their self times.
    pub self_ns: u64,
    /// The longest of them.
    pub max_ns: u64,
    /// How many were left without a return.
    pub unwound: u64,
    /// When the first of them started (orders nodes of equal weight).
    pub first_start_ns: i64,
    /// Child nodes, in order of first call.
    pub children: Vec<u32>,
    /// Where their time went (over the calls with a known split).
    pub split: SplitSum,
}

/// A root call and the tree of its callees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallTree {
    /// The root span's id.
    pub span_id: i64,
    /// Its thread.
    pub thread: ThreadIx,
    /// Its start.
    pub start_ns: i64,
    /// Its end.
    pub end_ns: i64,
    /// Its duration (as shown: corrected unless `--raw`).
    duration_ns: u64,
    /// How it ended.
    pub status: Status,
    /// Node 0 is the root.
    pub nodes: Vec<TreeNode>,
    /// (parent node, function) → child node.
    index: HashMap<(u32, FnIx), u32>,
    /// Order of completion, to break ties between equal durations.
    seq: u64,
}

impl CallTree {
    fn new(span: &Started, seq: u64) -> Self {
        Self {
            span_id: span.id,
            thread: span.thread,
            start_ns: span.start_ns,
            end_ns: span.start_ns,
            duration_ns: 0,
            status: Status::Ok,
            nodes: vec![TreeNode::new(span.function, None, span.start_ns)],
            index: HashMap::new(),
            seq,
        }
    }

    /// The root call's duration.
    pub fn duration_ns(&self) -> u64 {
        self.duration_ns
    }

    fn child(&mut self, parent: u32, function: FnIx, start_ns: i64) -> u32 {
        if let Some(&node) = self.index.get(&(parent, function)) {
            return node;
        }
        let node = self.nodes.len() as u32;
        self.nodes
            .push(TreeNode::new(function, Some(parent), start_ns));
        if let Some(p) = self.nodes.get_mut(parent as usize) {
            p.children.push(node);
        }
        self.index.insert((parent, function), node);
        node
    }
}

impl TreeNode {
    fn new(function: FnIx, parent: Option<u32>, start_ns: i64) -> Self {
        Self {
            function,
            parent,
            calls: 0,
            total_ns: 0,
            self_ns: 0,
            max_ns: 0,
            unwound: 0,
            first_start_ns: start_ns,
            children: Vec::new(),
            split: SplitSum::default(),
        }
    }

    fn add(&mut self, span: &Ended) {
        let duration = span.duration_ns();
        self.calls += 1;
        self.total_ns = self.total_ns.saturating_add(duration);
        self.self_ns = self.self_ns.saturating_add(span.self_ns);
        self.max_ns = self.max_ns.max(duration);
        if span.status == Status::Unwound {
            self.unwound += 1;
        }
        self.split.add(span.split.as_ref());
    }
}

/// Heap entry: smallest duration (then latest finished) on top, so it is
/// the one evicted.
struct Ranked(CallTree);

impl Ranked {
    fn key(&self) -> (u64, Reverse<u64>) {
        (self.0.duration_ns(), Reverse(self.0.seq))
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap and we want the minimum on top.
        other.key().cmp(&self.key())
    }
}

/// Builds trees during a replay and keeps the `top` slowest.
pub struct TreeVisitor {
    top: usize,
    only: Option<Glob>,
    /// Per function: does its name match `only`? (memoized glob matching)
    matches: Vec<Option<bool>>,
    /// Trees whose root is still open, by slot.
    growing: Vec<Option<CallTree>>,
    free: Vec<usize>,
    kept: BinaryHeap<Ranked>,
    seq: u64,
    /// Roots seen (finished).
    roots: u64,
}

/// Where an open span sits: a tree slot and a node, or outside every tree.
pub type TreeFrame = Option<(usize, u32)>;

impl TreeVisitor {
    /// Keep the `top` slowest roots (`0` keeps all); with `only`, roots are
    /// the outermost calls of matching functions.
    pub fn new(top: usize, only: Option<Glob>) -> Self {
        Self {
            top: if top == 0 { usize::MAX } else { top },
            only,
            matches: Vec::new(),
            growing: Vec::new(),
            free: Vec::new(),
            kept: BinaryHeap::new(),
            seq: 0,
            roots: 0,
        }
    }

    fn is_root_function(&mut self, names: &Names, function: FnIx) -> bool {
        let Some(glob) = &self.only else {
            return true;
        };
        let i = function.0 as usize;
        if i >= self.matches.len() {
            self.matches.resize(i + 1, None);
        }
        *self.matches[i].get_or_insert_with(|| glob.matches(&names.function(function).name))
    }

    /// The kept trees, slowest first, and how many roots were seen.
    pub fn finish(self) -> (Vec<CallTree>, u64) {
        let mut trees: Vec<CallTree> = self.kept.into_iter().map(|r| r.0).collect();
        trees.sort_by(|a, b| {
            b.duration_ns()
                .cmp(&a.duration_ns())
                .then(a.seq.cmp(&b.seq))
        });
        (trees, self.roots)
    }
}

impl Visitor for TreeVisitor {
    type Frame = TreeFrame;

    fn start(
        &mut self,
        names: &Names,
        span: &Started,
        parent: Option<&mut TreeFrame>,
    ) -> TreeFrame {
        let parent: Option<TreeFrame> = parent.map(|p| *p);
        if let Some(Some((slot, node))) = parent {
            let tree = self.growing.get_mut(slot)?.as_mut()?;
            return Some((slot, tree.child(node, span.function, span.start_ns)));
        }
        // Outside every tree: a root when nothing is below it (no
        // --function) or when it is the outermost matching call.
        let root = if self.only.is_none() {
            parent.is_none()
        } else {
            self.is_root_function(names, span.function)
        };
        if !root {
            return None;
        }
        self.seq += 1;
        let tree = CallTree::new(span, self.seq);
        let slot = if let Some(slot) = self.free.pop() {
            self.growing[slot] = Some(tree);
            slot
        } else {
            self.growing.push(Some(tree));
            self.growing.len() - 1
        };
        Some((slot, 0))
    }

    fn end(&mut self, _: &Names, span: &Ended, frame: TreeFrame, _: Option<&mut TreeFrame>) {
        let Some((slot, node)) = frame else {
            return;
        };
        let Some(Some(tree)) = self.growing.get_mut(slot) else {
            return;
        };
        if let Some(n) = tree.nodes.get_mut(node as usize) {
            n.add(span);
        }
        if node != 0 {
            return;
        }
        let Some(mut tree) = self.growing[slot].take() else {
            return;
        };
        self.free.push(slot);
        self.roots += 1;
        tree.start_ns = span.start_ns;
        tree.end_ns = span.end_ns;
        tree.duration_ns = span.duration_ns();
        tree.status = span.status;
        tree.index = HashMap::new();
        self.kept.push(Ranked(tree));
        if self.kept.len() > self.top {
            self.kept.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::replay::tests::replay;

    const S: bool = true;
    const E: bool = false;

    fn shape(names: &Names, tree: &CallTree) -> Vec<String> {
        // Preorder, with depth.
        let mut out = Vec::new();
        let mut stack = vec![(0u32, 0usize)];
        while let Some((n, depth)) = stack.pop() {
            let node = &tree.nodes[n as usize];
            out.push(format!(
                "{}{} x{} total {} self {} max {}",
                "  ".repeat(depth),
                names.function(node.function).name,
                node.calls,
                node.total_ns,
                node.self_ns,
                node.max_ns
            ));
            for &c in node.children.iter().rev() {
                stack.push((c, depth + 1));
            }
        }
        out
    }

    fn rows() -> Vec<(bool, i64, i32, i64, &'static str, &'static str)> {
        vec![
            // Thread 1: a root of 100 calling b twice (b calls c once).
            (S, 0, 1, 1, "a", ""),
            (S, 10, 1, 2, "b", ""),
            (S, 12, 1, 3, "c", ""),
            (E, 15, 1, 3, "c", "ok"),
            (E, 20, 1, 2, "b", "ok"),
            (S, 30, 1, 4, "b", ""),
            (E, 60, 1, 4, "b", "unwound"),
            // Thread 2 interleaved: a root of 30.
            (S, 40, 2, 5, "b", ""),
            (E, 70, 2, 5, "b", "ok"),
            (E, 100, 1, 1, "a", "ok"),
            // Thread 1 again: a root of 50.
            (S, 110, 1, 6, "a", ""),
            (E, 160, 1, 6, "a", "ok"),
        ]
    }

    #[test]
    fn keeps_the_slowest_roots_with_merged_children() {
        let mut v = TreeVisitor::new(2, None);
        let summary = replay(&rows(), None, &mut v);
        let (trees, roots) = v.finish();
        assert_eq!(roots, 3);
        assert_eq!(
            trees.iter().map(CallTree::duration_ns).collect::<Vec<_>>(),
            [100, 50]
        );
        assert_eq!(
            shape(&summary.names, &trees[0]),
            [
                "a x1 total 100 self 60 max 100",
                "  b x2 total 40 self 37 max 30",
                "    c x1 total 3 self 3 max 3",
            ]
        );
        assert_eq!(trees[0].nodes[1].unwound, 1);
        assert_eq!(
            summary.names.thread(trees[0].thread).tid,
            1,
            "the tree knows its thread"
        );
    }

    #[test]
    fn function_glob_roots_at_outermost_matching_calls() {
        let mut v = TreeVisitor::new(0, Some(Glob::new("b").unwrap()));
        let summary = replay(&rows(), None, &mut v);
        let (trees, roots) = v.finish();
        assert_eq!(roots, 3, "b on thread 1 twice, on thread 2 once");
        assert_eq!(
            trees.iter().map(CallTree::duration_ns).collect::<Vec<_>>(),
            [30, 30, 10]
        );
        // Equal durations: the one that started first comes first.
        assert_eq!(trees[0].span_id, 4);
        assert_eq!(
            shape(&summary.names, &trees[2]),
            ["b x1 total 10 self 7 max 10", "  c x1 total 3 self 3 max 3"]
        );
    }

    #[test]
    fn open_roots_end_as_cut_at_the_last_timestamp() {
        let mut v = TreeVisitor::new(5, None);
        replay(
            &[
                (S, 0, 1, 1, "a", ""),
                (S, 5, 1, 2, "b", ""),
                (S, 9, 2, 3, "x", ""),
                (E, 20, 2, 3, "x", "ok"),
            ],
            None,
            &mut v,
        );
        let (trees, _) = v.finish();
        assert_eq!(trees[0].status, Status::Cut);
        assert_eq!(trees[0].duration_ns(), 20);
        assert_eq!(trees[0].nodes[1].total_ns, 15);
    }
}
