//! Turning a [`RunTree`] into text: live frames and plain progress lines.
//!
//! A frame is one row per run, indented by depth: status icon, agent name,
//! depth, status, subtree tokens, subtree cost, elapsed time and what the
//! run is doing (or why it failed). Rows are cut to the terminal width and a
//! frame to its height (the rest is summarized on one line), so redrawing in
//! place never scrolls. Colors are optional; the text is the same without
//! them.
//!
//! ```
//! use tinyagents_cli::tree::RunTree;
//! use tinyagents_cli::tree::render::{frame, FrameStyle};
//! use tinyagents_core::{Event, EventKind, RunId};
//!
//! let id = RunId::new();
//! let mut tree = RunTree::new();
//! tree.apply(&Event {
//!     root_run_id: id, parent_run_id: None, run_id: id, depth: 0, seq: 0, timestamp_us: 0,
//!     kind: EventKind::RunStarted { name: "orchestrator".into() },
//! });
//! let style = FrameStyle { width: 80, height: 10, color: false, spinner: 0 };
//! let lines = frame(&tree, 500_000, &style, true);
//! assert!(lines[0].contains("orchestrator") && lines[0].contains("running"));
//! assert!(lines[1].contains("1 running"));
//! ```

use std::time::Duration;

use tinyagents_core::{Cost, RunId, Usage};

use super::{FailedCall, GraphInfo, Row, RunNode, RunStatus, RunTree};

/// Frames of the running-run spinner.
pub const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

/// Deepest indentation drawn; deeper runs still show their depth.
const MAX_INDENT_DEPTH: u32 = 12;
/// Widest name column.
const MAX_NAME_COLUMN: usize = 40;

const GREEN: &str = "32";
const RED: &str = "31";
const YELLOW: &str = "33";
const DIM: &str = "2";

/// Size and look of a live frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameStyle {
    /// Terminal columns.
    pub width: usize,
    /// Most lines a frame may take.
    pub height: usize,
    /// Use ANSI colors.
    pub color: bool,
    /// Spinner phase (advance once per frame).
    pub spinner: usize,
}

/// A line made of optionally colored pieces, cut to a width by visible
/// characters (escape codes do not count).
#[derive(Debug, Default)]
struct Line(Vec<(String, Option<&'static str>)>);

impl Line {
    fn push(&mut self, text: impl Into<String>, color: Option<&'static str>) -> &mut Self {
        self.0.push((text.into(), color));
        self
    }

    fn finish(&self, width: usize, color: bool) -> String {
        let mut out = String::new();
        let mut left = width;
        for (text, code) in &self.0 {
            if left == 0 {
                break;
            }
            let n = text.chars().count();
            let piece: String = if n > left {
                let mut cut: String = text.chars().take(left.saturating_sub(1)).collect();
                cut.push('…');
                cut
            } else {
                text.clone()
            };
            left = left.saturating_sub(n.min(left));
            match code.filter(|_| color) {
                Some(code) => {
                    out.push_str("\x1b[");
                    out.push_str(code);
                    out.push('m');
                    out.push_str(&piece);
                    out.push_str("\x1b[0m");
                }
                None => out.push_str(&piece),
            }
        }
        out.trim_end().to_string()
    }
}

/// The rows of `tree` as text, plus (when `footer`) a summary line:
/// runs running, runs seen, tokens, cost and time since the first event.
pub fn frame(tree: &RunTree, now_us: u64, style: &FrameStyle, footer: bool) -> Vec<String> {
    let totals = tree.subtree_totals();
    let rows = tree.rows();
    let budget = style.height.saturating_sub(usize::from(footer)).max(1);
    let (shown, hidden) = if rows.len() > budget {
        (
            rows.get(..budget.saturating_sub(1)).unwrap_or(&[]),
            rows.len() - budget.saturating_sub(1),
        )
    } else {
        (&rows[..], 0)
    };
    // Sized over all rows, not just those shown, so the column stays put.
    let name_width = rows
        .iter()
        .map(|row| match row {
            Row::Run(id) => tree.get(*id).map_or(0, |n| indent(n.depth) + n.label.chars().count()),
            Row::FailedCall { run, index } => tree.get(*run).map_or(0, |n| {
                indent(n.depth + 1) + n.failed_calls.get(*index).map_or(0, |c| c.tool.chars().count())
            }),
        })
        .max()
        .unwrap_or(0)
        .min(MAX_NAME_COLUMN);
    let mut out = Vec::with_capacity(shown.len() + 2);
    for row in shown {
        let line = match row {
            Row::Run(id) => tree.get(*id).map(|node| {
                run_row(
                    node,
                    totals.get(id).copied().unwrap_or_default(),
                    now_us,
                    name_width,
                    style,
                )
            }),
            Row::FailedCall { run, index } => tree.get(*run).and_then(|node| {
                node.failed_calls
                    .get(*index)
                    .map(|c| failed_call_row(node.depth + 1, c, name_width))
            }),
        };
        if let Some(line) = line {
            out.push(line.finish(style.width, style.color));
        }
    }
    if hidden > 0 {
        let running = rows
            .iter()
            .skip(shown.len())
            .filter(|r| matches!(r, Row::Run(id) if tree.get(*id).is_some_and(RunNode::is_running)))
            .count();
        let mut line = Line::default();
        line.push(
            format!(
                "… {} more rows ({} running)",
                thousands(hidden as u64),
                thousands(running as u64)
            ),
            Some(DIM),
        );
        out.push(line.finish(style.width, style.color));
    }
    if footer {
        let stats = tree.stats();
        let since = tree.first_timestamp_us().map_or(0, |t| now_us.saturating_sub(t));
        let mut line = Line::default();
        line.push(
            format!(
                "{} running · {} · {} tokens · {} · {}",
                stats.running,
                if stats.runs == 1 {
                    "1 run".to_string()
                } else {
                    format!("{} runs", stats.runs)
                },
                thousands(stats.usage.total_tokens()),
                stats.cost,
                duration(Duration::from_micros(since)),
            ),
            Some(DIM),
        );
        out.push(line.finish(style.width, style.color));
    }
    out
}

fn indent(depth: u32) -> usize {
    2 * depth.min(MAX_INDENT_DEPTH) as usize + 2
}

fn run_row(node: &RunNode, (usage, cost): (Usage, Cost), now_us: u64, name_width: usize, style: &FrameStyle) -> Line {
    let (icon, icon_color, status, detail) = match &node.status {
        RunStatus::Running => {
            let spin = SPINNER.get(style.spinner % SPINNER.len()).copied().unwrap_or("*");
            (spin, YELLOW, "running", activity(node))
        }
        RunStatus::Done => ("✓", GREEN, "done", failed_calls_note(node)),
        RunStatus::Failed(reason) => ("✗", RED, "failed", reason.clone()),
    };
    let pad = indent(node.depth) - 2;
    let mut line = Line::default();
    line.push(" ".repeat(pad), None)
        .push(icon, Some(icon_color))
        .push(
            format!(" {:<w$}", node.label, w = name_width.saturating_sub(pad + 2)),
            None,
        )
        .push(format!(" d{:<3}", node.depth), Some(DIM))
        .push(format!("{status:<8}"), Some(icon_color))
        .push(
            format!(
                "{:>9} tok {:>10} {:>7}",
                thousands(usage.total_tokens()),
                cost.to_string(),
                duration(Duration::from_micros(node.elapsed_us(now_us)))
            ),
            None,
        );
    if !detail.is_empty() {
        line.push(format!("  {detail}"), Some(DIM));
    }
    line
}

fn failed_call_row(depth: u32, call: &FailedCall, name_width: usize) -> Line {
    let pad = indent(depth) - 2;
    let status = if call.refused.is_some() { "refused" } else { "failed" };
    let mut line = Line::default();
    line.push(" ".repeat(pad), None)
        .push("✗", Some(RED))
        .push(
            format!(" {:<w$}", call.tool, w = name_width.saturating_sub(pad + 2)),
            None,
        )
        .push(format!(" d{depth:<3}"), Some(DIM))
        .push(format!("{status:<8}"), Some(RED))
        .push(format!("{:>9}     {:>10} {:>7}", "-", "-", "-"), None)
        .push(format!("  {}", call.reason), Some(DIM));
    line
}

/// Characters of a run's streamed text shown in its row.
const STREAM_SHOWN: usize = 48;

fn activity(node: &RunNode) -> String {
    if let Some(g) = &node.graph {
        return graph_activity(node, g);
    }
    if node.thinking && !node.streamed.is_empty() {
        // The newest words: the line is cut at the terminal's right edge.
        let skip = node.streamed.chars().count().saturating_sub(STREAM_SHOWN);
        format!("› {}", node.streamed.chars().skip(skip).collect::<String>())
    } else if node.thinking {
        format!("thinking (turn {})", node.turn + 1)
    } else if node.children_running > 0 {
        plural(
            u64::from(node.children_running),
            "waiting on 1 sub-agent",
            "sub-agents",
            "waiting on",
        )
    } else if node.tools_in_flight > 0 {
        plural(u64::from(node.tools_in_flight), "running 1 tool", "tools", "running")
    } else if let Some(why) = &node.rationale {
        format!("why: {why}")
    } else {
        String::new()
    }
}

/// `graph step 2: write, research (3 tasks done)`.
fn graph_activity(node: &RunNode, g: &GraphInfo) -> String {
    if let Some(at) = &g.interrupted_at {
        return format!("graph interrupted at {at}");
    }
    let done = plural(g.tasks_done, "1 task done", "tasks done", "");
    let done = done.trim_start();
    if !node.is_running() {
        return format!("graph: {} step(s), {done}", g.steps_done);
    }
    if g.running.is_empty() {
        return format!("graph step {} ({done})", g.step);
    }
    let mut names: Vec<&str> = Vec::new();
    for (_, n) in &g.running {
        if !names.contains(&n.as_ref()) {
            names.push(n);
        }
    }
    let count = g.running.len();
    let tasks = if count > names.len() {
        format!("{} ({count} tasks)", names.join(", "))
    } else {
        names.join(", ")
    };
    format!("graph step {}: {tasks} ({done})", g.step)
}

/// `[  0.01s] task     report/report: write`, or `task ✗` with the error.
pub fn task_line(
    tree: &RunTree,
    run: RunId,
    node: &str,
    error: Option<&str>,
    started: bool,
    at_us: u64,
) -> Option<String> {
    let graph = tree.get(run)?;
    let verb = match (started, error) {
        (true, _) => "task",
        (false, None) => "task ok",
        (false, Some(_)) => "task ✗",
    };
    let head = format!("{} {verb:<8} {}: {node}", stamp(tree, at_us), graph.path);
    Some(match error {
        Some(e) => format!("{head}: {}", super::short_reason(e)),
        None => head,
    })
}

fn failed_calls_note(node: &RunNode) -> String {
    match node.failed_call_count {
        0 => String::new(),
        1 => "1 failed call".into(),
        n => format!("{n} failed calls"),
    }
}

fn plural(n: u64, one: &str, many: &str, verb: &str) -> String {
    if n == 1 {
        one.to_string()
    } else {
        format!("{verb} {n} {many}")
    }
}

/// `[  0.15s] start    orchestrator/researcher (depth 1)`.
pub fn started_line(tree: &RunTree, id: RunId, at_us: u64) -> Option<String> {
    let node = tree.get(id)?;
    let why = node
        .rationale
        .as_ref()
        .map(|r| format!("  why: {r}"))
        .unwrap_or_default();
    Some(format!(
        "{} start    {} (depth {}){why}",
        stamp(tree, at_us),
        node.path,
        node.depth
    ))
}

/// `[  0.62s] done     orchestrator/researcher (depth 1)  640 tokens  $0.000384  0.47s`,
/// with `failed` and the reason for a failed run.
pub fn finished_line(tree: &RunTree, id: RunId, at_us: u64) -> Option<String> {
    let node = tree.get(id)?;
    let (usage, cost) = node.reported_total.unwrap_or((node.own_usage, node.own_cost));
    let head = format!(
        "{} {:<8} {} (depth {})  {} tokens  {}  {}",
        stamp(tree, at_us),
        if matches!(node.status, RunStatus::Failed(_)) {
            "failed"
        } else {
            "done"
        },
        node.path,
        node.depth,
        thousands(usage.total_tokens()),
        cost,
        duration(Duration::from_micros(node.elapsed_us(at_us))),
    );
    Some(match &node.status {
        RunStatus::Failed(reason) => format!("{head}: {reason}"),
        _ => match failed_calls_note(node) {
            note if note.is_empty() => head,
            note => format!("{head}  ({note})"),
        },
    })
}

/// `[  0.70s] refused  orchestrator/planner -> detailer: sub-agent depth 2 exceeds max_depth 1`.
pub fn failed_call_line(tree: &RunTree, run: RunId, call: &FailedCall, at_us: u64) -> Option<String> {
    let node = tree.get(run)?;
    let word = if call.refused.is_some() { "refused" } else { "error" };
    Some(format!(
        "{} {word:<8} {} -> {}: {}",
        stamp(tree, at_us),
        node.path,
        call.tool,
        call.reason
    ))
}

fn stamp(tree: &RunTree, at_us: u64) -> String {
    let since = tree.first_timestamp_us().map_or(0, |t| at_us.saturating_sub(t));
    format!("[{:>7.2}s]", since as f64 / 1e6)
}

/// What the totals line reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Totals {
    /// Runs in the tree.
    pub runs: u64,
    /// Runs that failed.
    pub failed_runs: u64,
    /// Usage of all model calls.
    pub usage: Usage,
    /// Cost of all model calls.
    pub cost: Cost,
    /// Wall-clock time of the whole run.
    pub elapsed: Duration,
    /// Failed tool calls anywhere, plus a failed root.
    pub failures: u64,
}

/// `totals: runs 6 | tokens 2,140 (in 1,800, out 340) | cost $0.004120 | elapsed 1.36s | failures 0`.
pub fn totals_line(t: &Totals) -> String {
    let runs = if t.failed_runs > 0 {
        format!("{} ({} failed)", t.runs, t.failed_runs)
    } else {
        t.runs.to_string()
    };
    format!(
        "totals: runs {runs} | tokens {} (in {}, out {}) | cost {} | elapsed {} | failures {}",
        thousands(t.usage.total_tokens()),
        thousands(t.usage.input_tokens),
        thousands(t.usage.output_tokens),
        t.cost,
        duration(t.elapsed),
        t.failures
    )
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
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

/// `0.35s`, `12.0s`, `3m05s`.
pub fn duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 10.0 {
        format!("{secs:.2}s")
    } else if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_and_durations_scaled() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(duration(Duration::from_millis(350)), "0.35s");
        assert_eq!(duration(Duration::from_secs(185)), "3m05s");
    }

    #[test]
    fn lines_are_cut_to_width_without_counting_escapes() {
        let mut line = Line::default();
        line.push("✓", Some(GREEN)).push(" a-very-long-agent-name", None);
        let plain = line.finish(10, false);
        assert_eq!(plain.chars().count(), 10);
        assert!(plain.ends_with('…'));
        let colored = line.finish(10, true);
        assert!(colored.starts_with("\x1b[32m✓\x1b[0m"));
        assert_eq!(colored.replace("\x1b[32m", "").replace("\x1b[0m", ""), plain);
    }
}
