//! Text rendering of a run tree: a pure function from a [`RunTree`] to
//! lines, shared by `tinyagents trace show` and the live view of
//! `tinyagents run`.
//!
//! # Staying readable at 10,000 agents
//! * A header gives the counts (done, failed, running) and a progress bar.
//! * A finished subtree larger than [`RenderOptions::collapse_finished_over`]
//!   without failures is one line with its counts and totals.
//! * A parent shows at most [`RenderOptions::max_children`] children:
//!   failed ones first, then running ones, then the rest in spawn order; the
//!   others are summarized in one line (`… 9,980 more: …`).
//! * Indentation stops growing at [`RenderOptions::max_indent`] levels (the
//!   depth is printed instead), so a 10,000-deep chain stays on screen.
//!
//! The output depends only on the tree and the options: no clock, no
//! terminal queries. A caller that is not on a terminal prints the same
//! lines without colour ([`RenderOptions::color`] `false`).
//!
//! ```
//! use tinyagents_core::{Event, EventKind, RunId};
//! use tinyagents_trace::{RenderOptions, RunTree, render_tree};
//!
//! let root = RunId::new();
//! let ev = |seq, kind| Event { root_run_id: root, parent_run_id: None, run_id: root, depth: 0, seq, timestamp_us: 1_000 * seq, kind };
//! let tree = RunTree::from_events(&[
//!     ev(0, EventKind::RunStarted { name: "orchestrator".into() }),
//!     ev(1, EventKind::RunCompleted { usage: Default::default(), total_usage: Default::default(), total_cost: Default::default(), failures: 0 }),
//! ]);
//! let lines = render_tree(&tree, &RenderOptions::default());
//! assert!(lines[0].contains("1 run"));
//! assert!(lines.iter().any(|l| l.contains("✓ orchestrator")));
//! ```

use tinyagents_core::{Cost, Usage};

use crate::tree::{RunNode, RunStatus, RunTree, TreeCounts};

/// How [`render_tree`] lays the tree out (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderOptions {
    /// A finished, failure-free subtree with more runs than this is one line.
    pub collapse_finished_over: u64,
    /// Children shown per parent.
    pub max_children: usize,
    /// Indentation levels before indentation stops growing.
    pub max_indent: u32,
    /// ANSI colours (errors red, running yellow).
    pub color: bool,
    /// Show the short run id of each run.
    pub ids: bool,
    /// Width of the progress bar.
    pub bar_width: usize,
    /// Stop after this many lines (a last line says how many were left out).
    pub max_lines: Option<usize>,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self {
            collapse_finished_over: 25,
            max_children: 25,
            max_indent: 24,
            color: false,
            ids: true,
            bar_width: 30,
            max_lines: None,
        }
    }
}

impl RenderOptions {
    /// Every run on its own line (no collapsing): for small trees and tests.
    pub fn full() -> Self {
        Self {
            collapse_finished_over: u64::MAX,
            max_children: usize::MAX,
            max_indent: u32::MAX,
            ..Self::default()
        }
    }
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A latency in µs, for people (`850µs`, `12.3ms`, `4.20s`, `3m07s`).
pub fn latency(us: u64) -> String {
    if us < 1_000 {
        format!("{us}µs")
    } else if us < 1_000_000 {
        format!("{:.1}ms", us as f64 / 1e3)
    } else if us < 60_000_000 {
        format!("{:.2}s", us as f64 / 1e6)
    } else {
        let s = us / 1_000_000;
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// µs since the epoch as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn utc(us: u64) -> String {
    let secs = us / 1_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days to civil date (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// A progress bar: `[██████░░░░]`.
pub fn progress_bar(done: u64, total: u64, width: usize) -> String {
    let filled = if total == 0 {
        0
    } else {
        ((done as u128 * width as u128) / total as u128) as usize
    };
    let filled = filled.min(width);
    format!("[{}{}]", "█".repeat(filled), "░".repeat(width - filled))
}

fn glyph(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Completed => "✓",
        RunStatus::Failed => "✗",
        RunStatus::Running => "▶",
    }
}

fn paint(color: bool, s: RunStatus, text: String) -> String {
    if !color {
        return text;
    }
    match s {
        RunStatus::Failed => format!("\x1b[31m{text}\x1b[0m"),
        RunStatus::Running => format!("\x1b[33m{text}\x1b[0m"),
        RunStatus::Completed => text,
    }
}

fn usage_cost(u: &Usage, c: Cost) -> String {
    format!("{} tok {}", thousands(u.total_tokens()), c)
}

fn counts_text(c: &TreeCounts) -> String {
    let mut parts = vec![format!("{} done", thousands(c.completed))];
    if c.failed > 0 {
        parts.push(format!("{} failed", thousands(c.failed)));
    }
    if c.running > 0 {
        parts.push(format!("{} running", thousands(c.running)));
    }
    parts.join(", ")
}

/// The header lines: totals, counts and a progress bar.
pub fn render_header(tree: &RunTree, opts: &RenderOptions) -> Vec<String> {
    let s = tree.summary();
    let c = &s.counts;
    let mut head = format!(
        "{} {} · {} run{} ({}) · depth {} · {}",
        if s.name.is_empty() { "(unnamed)" } else { &s.name },
        s.status.as_str(),
        thousands(c.runs),
        if c.runs == 1 { "" } else { "s" },
        counts_text(c),
        c.max_depth,
        usage_cost(&s.total_usage, s.total_cost),
    );
    if let Some(l) = s.latency_us {
        head.push_str(&format!(" · {}", latency(l)));
    }
    let finished = c.completed + c.failed;
    let pct = (finished * 100).checked_div(c.runs).unwrap_or(100);
    vec![
        head,
        format!(
            "{} {}% ({}/{} finished)",
            progress_bar(finished, c.runs, opts.bar_width),
            pct,
            thousands(finished),
            thousands(c.runs)
        ),
    ]
}

fn node_line(n: &RunNode, totals: (Usage, Cost), opts: &RenderOptions, indent: &str) -> String {
    let mut line = format!(
        "{indent}{} {}",
        glyph(n.status),
        if n.name.is_empty() { "?" } else { &n.name }
    );
    if opts.ids {
        line.push_str(&format!(" [{}]", n.run_id.short()));
    }
    line.push_str(&format!(
        " d{} {} {}",
        n.depth,
        n.status.as_str(),
        usage_cost(&totals.0, totals.1)
    ));
    if let Some(l) = n.latency_us() {
        line.push_str(&format!(" {}", latency(l)));
    }
    if n.summarized {
        line.push_str(" (summarized)");
    }
    if let Some(r) = &n.rationale {
        line.push_str(&format!(" — {r}"));
    }
    if let Some(e) = &n.error {
        line.push_str(&format!("  ERROR: {}", one_line(e, 160)));
    }
    paint(opts.color, n.status, line)
}

fn one_line(s: &str, max: usize) -> String {
    let flat: String = s.chars().map(|c| if c == '\n' { ' ' } else { c }).collect();
    if flat.chars().count() <= max {
        flat
    } else {
        let mut t: String = flat.chars().take(max).collect();
        t.push('…');
        t
    }
}

fn indent_for(rel_depth: u32, opts: &RenderOptions) -> String {
    if rel_depth <= opts.max_indent {
        "  ".repeat(rel_depth as usize)
    } else {
        format!("{}·{} ", "  ".repeat(opts.max_indent as usize), rel_depth)
    }
}

enum Item {
    Node(usize, u32),
    Line(String),
}

/// Renders the tree as lines (see the module docs).
pub fn render_tree(tree: &RunTree, opts: &RenderOptions) -> Vec<String> {
    let mut out = render_header(tree, opts);
    let counts = tree.subtree_counts();
    let totals = tree.subtree_totals();
    let mut stack: Vec<Item> = tree.roots().iter().rev().map(|&i| Item::Node(i, 0)).collect();
    let limit = opts.max_lines.unwrap_or(usize::MAX);
    let mut printed_nodes = 0u64;
    while let Some(item) = stack.pop() {
        if out.len() >= limit {
            let left = tree.len() as u64 - printed_nodes.min(tree.len() as u64);
            out.push(format!(
                "… output stopped at {limit} lines ({} runs not shown)",
                thousands(left)
            ));
            break;
        }
        let (i, rel) = match item {
            Item::Line(l) => {
                out.push(l);
                continue;
            }
            Item::Node(i, rel) => (i, rel),
        };
        let Some(n) = tree.node_at(i) else { continue };
        let c = counts.get(i).copied().unwrap_or_default();
        let t = totals.get(i).copied().unwrap_or((Usage::default(), Cost::ZERO));
        let indent = indent_for(rel, opts);
        printed_nodes += 1;
        let collapsible =
            rel > 0 && n.is_finished() && c.failed == 0 && c.running == 0 && c.runs > opts.collapse_finished_over;
        if collapsible {
            let mut line = node_line(n, t, opts, &indent);
            line.push_str(&format!(" (+{} runs below, collapsed)", thousands(c.runs - 1)));
            out.push(line);
            continue;
        }
        out.push(node_line(n, t, opts, &indent));
        if n.children.is_empty() {
            continue;
        }
        // Choose which children to show.
        let shown: Vec<usize> = if n.children.len() <= opts.max_children {
            n.children.clone()
        } else {
            let mut pick: Vec<usize> = Vec::with_capacity(opts.max_children);
            let by = |want: &dyn Fn(&TreeCounts, &RunNode) -> bool, pick: &mut Vec<usize>| {
                for &ch in &n.children {
                    if pick.len() >= opts.max_children {
                        break;
                    }
                    if let (Some(cc), Some(cn)) = (counts.get(ch), tree.node_at(ch))
                        && want(cc, cn)
                        && !pick.contains(&ch)
                    {
                        pick.push(ch);
                    }
                }
            };
            by(&|cc, _| cc.failed > 0, &mut pick);
            by(&|cc, _| cc.running > 0, &mut pick);
            by(&|_, _| true, &mut pick);
            // Keep spawn order among the shown ones.
            let order: std::collections::HashMap<usize, usize> =
                n.children.iter().enumerate().map(|(k, &c)| (c, k)).collect();
            pick.sort_by_key(|c| order.get(c).copied().unwrap_or(usize::MAX));
            pick
        };
        if shown.len() < n.children.len() {
            let mut hidden = TreeCounts::default();
            let mut hidden_children = 0u64;
            for &ch in &n.children {
                if !shown.contains(&ch)
                    && let Some(cc) = counts.get(ch)
                {
                    hidden_children += 1;
                    hidden.runs += cc.runs;
                    hidden.completed += cc.completed;
                    hidden.failed += cc.failed;
                    hidden.running += cc.running;
                }
            }
            stack.push(Item::Line(format!(
                "{}… {} more children ({} runs: {})",
                indent_for(rel + 1, opts),
                thousands(hidden_children),
                thousands(hidden.runs),
                counts_text(&hidden)
            )));
        }
        for &ch in shown.iter().rev() {
            stack.push(Item::Node(ch, rel + 1));
        }
    }
    out
}
