//! Folded stacks (`main;parse;read 1234`) weighted by self time in ns, and
//! the SVG flame graph inferno draws from them.
//!
//! Spans merge by call path as they end, into one tree over all threads
//! (a flame graph aggregates), so memory is the number of distinct call
//! paths, not calls. Each path's weight is the self time of its spans, so
//! the weights add up to the time covered by root spans and a frame's
//! width in the flame graph is its total (inclusive) time. A `SPAN_END`
//! without a start becomes a root frame weighted by its whole duration.
//!
//! Frame names are the functions' labels (name, plus the library when two
//! functions share a name); `;` separates frames in this format, so a `;`
//! inside a name (Rust's `[u8; 4]`) is written as `:`.

use std::collections::HashMap;
use std::io::{self, Write};

use crate::analyze::replay::{Ended, FnIx, Names, Started, Visitor};

#[derive(Clone, Copy, Debug)]
struct Node {
    parent: u32,
    function: FnIx,
    self_ns: u64,
}

/// The call-path tree; node 0 is the root above all threads' stacks.
#[derive(Debug)]
pub struct Folded {
    nodes: Vec<Node>,
    index: HashMap<(u32, FnIx), u32>,
}

impl Default for Folded {
    fn default() -> Self {
        Self::new()
    }
}

impl Folded {
    /// An empty tree.
    pub fn new() -> Self {
        Self {
            nodes: vec![Node {
                parent: 0,
                function: FnIx(u32::MAX),
                self_ns: 0,
            }],
            index: HashMap::new(),
        }
    }

    fn child(&mut self, parent: u32, function: FnIx) -> u32 {
        *self.index.entry((parent, function)).or_insert_with(|| {
            self.nodes.push(Node {
                parent,
                function,
                self_ns: 0,
            });
            self.nodes.len() as u32 - 1
        })
    }

    /// Call `line` with each folded line (without newline), depth-first
    /// with siblings in name order, so output is stable across runs.
    pub fn for_each_line(
        &self,
        names: &Names,
        mut line: impl FnMut(&str) -> io::Result<()>,
    ) -> io::Result<u64> {
        let labels: Vec<String> = names
            .labels()
            .into_iter()
            .map(|l| l.replace(';', ":"))
            .collect();
        let label = |n: u32| {
            labels
                .get(self.nodes[n as usize].function.0 as usize)
                .map_or("?", String::as_str)
        };
        let mut children: Vec<Vec<u32>> = vec![Vec::new(); self.nodes.len()];
        for (i, n) in self.nodes.iter().enumerate().skip(1) {
            children[n.parent as usize].push(i as u32);
        }
        for c in &mut children {
            c.sort_by(|&a, &b| label(a).cmp(label(b)));
        }
        // Explicit stack: a 10 000-deep recursion must not overflow ours.
        let mut stack: Vec<(u32, usize)> = children[0].iter().rev().map(|&c| (c, 0)).collect();
        let mut path: Vec<&str> = Vec::new();
        let mut text = String::new();
        let mut lines = 0u64;
        while let Some((n, depth)) = stack.pop() {
            path.truncate(depth);
            path.push(label(n));
            let node = &self.nodes[n as usize];
            if node.self_ns > 0 {
                text.clear();
                for (i, frame) in path.iter().enumerate() {
                    if i > 0 {
                        text.push(';');
                    }
                    text.push_str(frame);
                }
                text.push(' ');
                text.push_str(&node.self_ns.to_string());
                line(&text)?;
                lines += 1;
            }
            for &c in children[n as usize].iter().rev() {
                stack.push((c, depth + 1));
            }
        }
        Ok(lines)
    }

    /// Write the folded lines; returns how many.
    pub fn write(&self, w: &mut impl Write, names: &Names) -> io::Result<u64> {
        self.for_each_line(names, |l| writeln!(w, "{l}"))
    }

    /// Draw the flame graph with inferno; `title` heads it. Returns
    /// `Ok(false)` (writing nothing) when there is no time to draw.
    pub fn write_svg(
        &self,
        w: &mut impl Write,
        names: &Names,
        title: &str,
        subtitle: Option<String>,
    ) -> io::Result<bool> {
        let mut lines = Vec::new();
        self.for_each_line(names, |l| {
            lines.push(l.to_owned());
            Ok(())
        })?;
        if lines.is_empty() {
            return Ok(false);
        }
        let mut options = inferno::flamegraph::Options::default();
        title.clone_into(&mut options.title);
        options.subtitle = subtitle;
        "ns".clone_into(&mut options.count_name);
        "Function:".clone_into(&mut options.name_type);
        // Colour by name, so a function keeps its colour across exports.
        options.hash = true;
        options.deterministic = true;
        inferno::flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), w)?;
        Ok(true)
    }
}

impl Visitor for Folded {
    type Frame = u32;

    fn start(&mut self, _: &Names, span: &Started, parent: Option<&mut u32>) -> u32 {
        self.child(parent.map_or(0, |p| *p), span.function)
    }

    fn end(&mut self, _: &Names, span: &Ended, node: u32, _: Option<&mut u32>) {
        if let Some(n) = self.nodes.get_mut(node as usize) {
            n.self_ns = n.self_ns.saturating_add(span.self_ns);
        }
    }

    fn orphan(&mut self, _: &Names, span: &Ended) {
        let node = self.child(0, span.function);
        self.nodes[node as usize].self_ns = self.nodes[node as usize]
            .self_ns
            .saturating_add(span.duration_ns());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::replay::tests::replay;

    #[test]
    fn paths_weighted_by_self_time_merge_across_threads() {
        let mut f = Folded::new();
        let summary = replay(
            &[
                (true, 0, 1, 1, "main", ""),
                (true, 10, 1, 2, "work", ""),
                (true, 12, 2, 3, "main", ""),
                (true, 14, 2, 4, "work", ""),
                (false, 20, 2, 4, "work", "ok"),
                (false, 22, 2, 3, "main", "ok"),
                (false, 30, 1, 2, "work", "ok"),
                (true, 30, 1, 5, "a;b", ""),
                (false, 40, 1, 5, "a;b", "ok"),
                (false, 100, 1, 1, "main", "ok"),
                (false, 101, 1, 9, "lonely", "ok"),
            ],
            None,
            &mut f,
        );
        let mut out = Vec::new();
        let lines = f.write(&mut out, &summary.names).unwrap();
        let text = String::from_utf8(out).unwrap();
        // main: (100 - 20 - 10) + (10 - 6); work: 20 + 6; the orphan
        // `lonely` lasted 0 ns and draws nothing.
        assert_eq!(text, "main 74\nmain;a:b 10\nmain;work 26\n");
        assert_eq!(lines, 3);
    }

    #[test]
    fn svg_draws_the_frames() {
        let mut f = Folded::new();
        let summary = replay(
            &[
                (true, 0, 1, 1, "main", ""),
                (true, 10, 1, 2, "work", ""),
                (false, 30, 1, 2, "work", "ok"),
                (false, 100, 1, 1, "main", "ok"),
            ],
            None,
            &mut f,
        );
        let mut svg = Vec::new();
        assert!(
            f.write_svg(&mut svg, &summary.names, "title", None)
                .unwrap()
        );
        let svg = String::from_utf8(svg).unwrap();
        assert!(svg.starts_with("<?xml"), "{}", &svg[..100]);
        assert!(
            svg.contains("work (20 ns, 20.00%)"),
            "frame titles carry ns"
        );
        let mut empty = Vec::new();
        assert!(
            !Folded::new()
                .write_svg(&mut empty, &Names::default(), "t", None)
                .unwrap()
        );
        assert!(empty.is_empty());
    }
}
