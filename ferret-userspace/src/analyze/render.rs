//! Text and JSON output of `ferret analyze`.
//!
//! The table puts the function name last, as perf and py-spy do, so long
//! C++ and Rust names never push the numbers out of line or get cut. Trees
//! colour each line by its share of the root's duration when writing to a
//! terminal.

use std::fmt::Write as _;
use std::io::{self, Write};

use serde::Serialize;

use super::replay::Status;
use super::stats::FunctionStats;
use super::tree::CallTree;
use super::{FunctionReport, Overview, TreeReport};

/// Lines drawn per tree before the rest is summarised: a 10 000-deep
/// recursion must not print 10 000 ever-wider lines.
pub const TREE_LINES: usize = 100;

/// ANSI styling, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    /// Whether to emit escape sequences.
    pub color: bool,
}

impl Style {
    fn paint(self, code: &str, text: &str) -> String {
        if self.color && !code.is_empty() {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    /// Red from half the root's time, yellow from a fifth, dim below 1 %.
    fn by_share(self, share: f64, text: &str) -> String {
        let code = if share >= 0.5 {
            "1;31"
        } else if share >= 0.2 {
            "33"
        } else if share < 0.01 {
            "2"
        } else {
            ""
        };
        self.paint(code, text)
    }
}

/// A duration for people: three significant digits and a unit.
pub fn duration(ns: u64) -> String {
    #[expect(
        clippy::cast_precision_loss,
        reason = "three significant digits are shown"
    )]
    let scaled = |div: f64, unit: &str| {
        let v = ns as f64 / div;
        if v >= 100.0 {
            format!("{v:.0} {unit}")
        } else if v >= 10.0 {
            format!("{v:.1} {unit}")
        } else {
            format!("{v:.2} {unit}")
        }
    };
    match ns {
        0..1_000 => format!("{ns} ns"),
        1_000..1_000_000 => scaled(1e3, "µs"),
        1_000_000..1_000_000_000 => scaled(1e6, "ms"),
        _ => scaled(1e9, "s"),
    }
}

/// An integer with thousands separators.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn percent(share: f64) -> String {
    if share <= 0.0 {
        "-".to_owned()
    } else if share < 0.001 {
        "<0.1%".to_owned()
    } else {
        format!("{:.1}%", share * 100.0)
    }
}

/// The lines above a table or trees: what was recorded, how much of it.
fn header(w: &mut dyn Write, o: &Overview) -> io::Result<()> {
    let span_ns = o
        .last_ts_ns
        .zip(o.first_ts_ns)
        .map_or(0, |(l, f)| l.abs_diff(f));
    let mut line = format!(
        "{}: {} calls of {} functions on {} threads over {}",
        o.file,
        count(o.spans),
        count(o.functions),
        count(o.threads),
        duration(span_ns)
    );
    if let Some(target) = &o.info.target {
        let _ = write!(line, "  (target: {target})");
    }
    writeln!(w, "{line}")?;
    writeln!(w, "{}", o.times_line())
}

/// Write the function table: the first `top` rows (all when 0).
pub fn table(
    w: &mut dyn Write,
    report: &FunctionReport,
    top: usize,
    style: Style,
) -> io::Result<()> {
    header(w, &report.overview)?;
    let rows = &report.functions;
    let shown = if top == 0 {
        rows.len()
    } else {
        top.min(rows.len())
    };
    let all_self: u64 = report.all_self_ns.max(1);
    writeln!(w)?;
    let head = format!(
        "{:>11} {:>9} {:>9} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}  {}",
        "calls",
        "total",
        "self",
        "self%",
        "mean",
        "min",
        "p50",
        "p95",
        "p99",
        "max",
        "unwound",
        "function"
    );
    writeln!(w, "{}", style.paint("1", &head))?;
    for r in &rows[..shown] {
        #[expect(clippy::cast_precision_loss, reason = "a percentage")]
        let self_share = r.self_ns as f64 / all_self as f64;
        writeln!(
            w,
            "{:>11} {:>9} {:>9} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}  {}",
            count(r.calls),
            duration(r.total_ns),
            duration(r.self_ns),
            format!("{:.1}", self_share * 100.0),
            duration(r.mean_ns),
            duration(r.min_ns),
            duration(r.p50_ns),
            duration(r.p95_ns),
            duration(r.p99_ns),
            duration(r.max_ns),
            percent(r.unwound),
            r.label
        )?;
    }
    if rows[..shown].iter().any(|r| r.split_calls > 0) {
        split_table(w, &rows[..shown], style)?;
    }
    let open: u64 = rows.iter().map(|r| r.open_calls).sum();
    if open > 0 {
        writeln!(
            w,
            "({} calls were still running when the recording stopped; their time counts up to \
             the stop)",
            count(open)
        )?;
    }
    if rows.is_empty() {
        writeln!(w, "(no calls)")?;
    } else if shown < rows.len() {
        writeln!(
            w,
            "… {} more functions (--top 0 shows all)",
            count((rows.len() - shown) as u64)
        )?;
    }
    Ok(())
}

/// Where the functions' time went: on a CPU, waiting for one, blocked,
/// and in what (over the calls whose split is known).
fn split_table(w: &mut dyn Write, rows: &[FunctionStats], style: Style) -> io::Result<()> {
    writeln!(w)?;
    let head = format!(
        "{:>11} {:>9} {:>6} {:>9} {:>9} {:>16}  {}",
        "split of", "cpu", "cpu%", "runnable", "blocked", "blocked in", "function"
    );
    writeln!(w, "{}", style.paint("1", &head))?;
    for r in rows {
        let (Some(cpu), Some(runnable), Some(blocked)) = (r.cpu_ns, r.runnable_ns, r.blocked_ns)
        else {
            continue;
        };
        let all = (cpu + runnable + blocked).max(1);
        #[expect(clippy::cast_precision_loss, reason = "a percentage")]
        let share = cpu as f64 / all as f64;
        writeln!(
            w,
            "{:>11} {:>9} {:>6} {:>9} {:>9} {:>16}  {}",
            format!("{} calls", count(r.split_calls)),
            duration(cpu),
            format!("{:.1}", share * 100.0),
            duration(runnable),
            duration(blocked),
            r.blocked_in.as_deref().unwrap_or("-"),
            r.label
        )?;
    }
    Ok(())
}

/// Write the trees as indented text.
pub fn trees(w: &mut dyn Write, report: &TreeReport, style: Style) -> io::Result<()> {
    header(w, &report.overview)?;
    let names = &report.names;
    let labels = names.labels();
    if report.trees.is_empty() {
        writeln!(w, "\n(no root calls)")?;
    }
    let first = report.overview.first_ts_ns.unwrap_or(0);
    for (i, tree) in report.trees.iter().enumerate() {
        let thread = names.thread(tree.thread);
        let root = &tree.nodes[0];
        let status = match tree.status {
            Status::Ok => String::new(),
            other => format!("  [{}]", other.as_str()),
        };
        writeln!(w)?;
        let title = format!(
            "#{}  {}  {}",
            i + 1,
            labels[root.function.0 as usize],
            duration(tree.duration_ns())
        );
        let whose = match thread.goroutine {
            Some(goid) => format!("goroutine {goid} (from tid {})", thread.tid),
            None => format!("thread {} ({})", thread.tid, thread.name),
        };
        writeln!(
            w,
            "{}  {whose}  at +{}{status}",
            style.paint("1", &title),
            duration(tree.start_ns.abs_diff(first)),
        )?;
        tree_lines(w, tree, &labels, style)?;
    }
    if report.roots > report.trees.len() as u64 {
        writeln!(
            w,
            "\n{} of {} root calls shown (--top N for more)",
            report.trees.len(),
            count(report.roots)
        )?;
    }
    Ok(())
}

/// Children sorted heaviest first, then by first call.
fn sorted_children(tree: &CallTree, node: u32) -> Vec<u32> {
    let mut children = tree.nodes[node as usize].children.clone();
    children.sort_by(|&a, &b| {
        let (a, b) = (&tree.nodes[a as usize], &tree.nodes[b as usize]);
        b.total_ns
            .cmp(&a.total_ns)
            .then(a.first_start_ns.cmp(&b.first_start_ns))
    });
    children
}

fn tree_lines(
    w: &mut dyn Write,
    tree: &CallTree,
    labels: &[String],
    style: Style,
) -> io::Result<()> {
    let root_ns = tree.duration_ns().max(1);
    // (node, prefix for its children, its own connector)
    let mut stack: Vec<(u32, String, String)> = vec![(0, String::new(), String::new())];
    let mut lines = 0usize;
    while let Some((n, prefix, connector)) = stack.pop() {
        if lines == TREE_LINES {
            writeln!(
                w,
                "    … {} more of {} nodes not shown (--format json has them all)",
                tree.nodes.len() - lines,
                tree.nodes.len()
            )?;
            break;
        }
        lines += 1;
        let node = &tree.nodes[n as usize];
        #[expect(clippy::cast_precision_loss, reason = "a percentage")]
        let share = node.total_ns as f64 / root_ns as f64;
        let mut name = format!("{connector}{}", labels[node.function.0 as usize]);
        if node.calls > 1 {
            let _ = write!(name, " ×{}", count(node.calls));
        }
        let mut detail = String::new();
        if !node.children.is_empty() {
            let _ = write!(detail, "  self {}", duration(node.self_ns));
        }
        if node.calls > 1 {
            let _ = write!(detail, "  max {}", duration(node.max_ns));
        }
        if node.unwound > 0 {
            let _ = write!(detail, "  unwound {}", count(node.unwound));
        }
        if node.split.calls > 0 {
            let _ = write!(
                detail,
                "  cpu {} runnable {} blocked {}",
                duration(node.split.cpu_ns),
                duration(node.split.runnable_ns),
                duration(node.split.blocked_ns)
            );
            if let Some(syscall) = node.split.top_blocked_in() {
                let _ = write!(detail, " in {}", syscall.name());
            }
        }
        let numbers = format!(
            "{:>9} {:>6}",
            duration(node.total_ns),
            format!("{:.1}%", share * 100.0)
        );
        writeln!(
            w,
            "  {}  {name}{}",
            style.by_share(share, &numbers),
            style.paint("2", &detail)
        )?;
        let children = sorted_children(tree, n);
        let last = children.len().saturating_sub(1);
        for (i, &c) in children.iter().enumerate().rev() {
            let (branch, more) = if i == last {
                ("└─ ", "   ")
            } else {
                ("├─ ", "│  ")
            };
            let child_connector = format!("{prefix}{branch}");
            let child_prefix = format!("{prefix}{more}");
            stack.push((c, child_prefix, child_connector));
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct JsonHeader<'a> {
    file: &'a str,
    ferret_version: Option<&'a str>,
    target: Option<&'a str>,
    probes: Option<&'a str>,
    lost_events: Option<u64>,
    complete: Option<bool>,
    spans: u64,
    threads: u64,
    first_ts_ns: Option<i64>,
    last_ts_ns: Option<i64>,
    /// `corrected` (ferret's probe cost taken out) or `measured`.
    times: &'static str,
    /// The dearest traced call's probe cost, ns, when measured.
    probe_cost_ns: Option<f64>,
}

impl<'a> JsonHeader<'a> {
    fn new(o: &'a Overview) -> Self {
        Self {
            file: &o.file,
            ferret_version: o.info.version.as_deref(),
            target: o.info.target.as_deref(),
            probes: o.info.probes.as_deref(),
            lost_events: o.info.lost_events,
            complete: o.info.complete,
            spans: o.spans,
            threads: o.threads,
            first_ts_ns: o.first_ts_ns,
            last_ts_ns: o.last_ts_ns,
            times: if o.corrected { "corrected" } else { "measured" },
            probe_cost_ns: o
                .info
                .calibration
                .filter(|c| !c.is_none())
                .map(|c| c.typical_call_ns().round()),
        }
    }
}

/// Write the function table as JSON: the first `top` rows (all when 0).
pub fn table_json(
    w: &mut dyn Write,
    report: &FunctionReport,
    top: usize,
    sort: &str,
) -> io::Result<()> {
    #[derive(Serialize)]
    struct Out<'a> {
        #[serde(flatten)]
        header: JsonHeader<'a>,
        sort: &'a str,
        functions: &'a [FunctionStats],
    }
    let shown = if top == 0 {
        report.functions.len()
    } else {
        top.min(report.functions.len())
    };
    let out = Out {
        header: JsonHeader::new(&report.overview),
        sort,
        functions: &report.functions[..shown],
    };
    serde_json::to_writer_pretty(&mut *w, &out)?;
    writeln!(w)
}

/// Write the trees as JSON; each tree's nodes are a flat preorder list
/// with `parent` and `depth` (a 10 000-deep recursion would break parsers
/// that limit nesting).
pub fn trees_json(w: &mut dyn Write, report: &TreeReport) -> io::Result<()> {
    #[derive(Serialize)]
    struct Node<'a> {
        id: u32,
        parent: Option<u32>,
        depth: u32,
        function: &'a str,
        module: &'a str,
        calls: u64,
        total_ns: u64,
        self_ns: u64,
        max_ns: u64,
        unwound_calls: u64,
    }
    #[derive(Serialize)]
    struct Tree<'a> {
        span_id: i64,
        function: &'a str,
        pid: i32,
        tid: i32,
        thread_name: &'a str,
        /// A Go program's goroutine (its calls nest per goroutine; `tid`
        /// is then the first thread it ran on).
        #[serde(skip_serializing_if = "Option::is_none")]
        goroutine: Option<i64>,
        start_ns: i64,
        duration_ns: u64,
        status: &'a str,
        nodes: Vec<Node<'a>>,
    }
    #[derive(Serialize)]
    struct Out<'a> {
        #[serde(flatten)]
        header: JsonHeader<'a>,
        roots: u64,
        trees: Vec<Tree<'a>>,
    }
    let names = &report.names;
    let trees = report
        .trees
        .iter()
        .map(|tree| {
            let thread = names.thread(tree.thread);
            let mut nodes = Vec::with_capacity(tree.nodes.len());
            // Preorder with new ids, so `parent` always precedes.
            let mut stack = vec![(0u32, None::<u32>, 0u32)];
            while let Some((n, parent, depth)) = stack.pop() {
                let node = &tree.nodes[n as usize];
                let f = names.function(node.function);
                let id = nodes.len() as u32;
                nodes.push(Node {
                    id,
                    parent,
                    depth,
                    function: &f.name,
                    module: &f.module,
                    calls: node.calls,
                    total_ns: node.total_ns,
                    self_ns: node.self_ns,
                    max_ns: node.max_ns,
                    unwound_calls: node.unwound,
                });
                for &c in sorted_children(tree, n).iter().rev() {
                    stack.push((c, Some(id), depth + 1));
                }
            }
            Tree {
                span_id: tree.span_id,
                function: &names.function(tree.nodes[0].function).name,
                pid: thread.pid,
                tid: thread.tid,
                thread_name: &thread.name,
                goroutine: thread.goroutine,
                start_ns: tree.start_ns,
                duration_ns: tree.duration_ns(),
                status: tree.status.as_str(),
                nodes,
            }
        })
        .collect();
    let out = Out {
        header: JsonHeader::new(&report.overview),
        roots: report.roots,
        trees,
    };
    serde_json::to_writer_pretty(&mut *w, &out)?;
    writeln!(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(0), "0 ns");
        assert_eq!(duration(999), "999 ns");
        assert_eq!(duration(1_000), "1.00 µs");
        assert_eq!(duration(12_345), "12.3 µs");
        assert_eq!(duration(123_456_789), "123 ms");
        assert_eq!(duration(1_500_000_000), "1.50 s");
        assert_eq!(duration(4_000_000_000_000), "4000 s");
    }

    #[test]
    fn counts_get_separators() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
    }

    #[test]
    fn colour_only_when_asked() {
        let plain = Style { color: false };
        assert_eq!(plain.by_share(0.9, "x"), "x");
        let tty = Style { color: true };
        assert_eq!(tty.by_share(0.9, "x"), "\x1b[1;31mx\x1b[0m");
        assert_eq!(tty.by_share(0.3, "x"), "\x1b[33mx\x1b[0m");
        assert_eq!(tty.by_share(0.1, "x"), "x");
    }
}
