//! The three ways a run is shown: a live tree, plain lines, JSON lines.
//!
//! Events reach the view through a channel: the run's [`EventSink`] only
//! sends (it is called on the emitting task and must not block), and a
//! dedicated thread owns the terminal. That thread ([`pump`]) puts events
//! back in `seq` order (runs on different worker threads can hand them over
//! slightly out of order; `seq` is the tree's total order), feeds them to
//! the [`View`], and calls [`View::tick`] every interval (10 Hz) however
//! busy the stream is, which is when the live view redraws.
//!
//! * [`LiveView`] (stdout is a terminal): redraws the whole tree in place
//!   with ANSI escapes: cursor up to the first line of the previous frame,
//!   clear to the end of the screen, print the new frame. Rows are cut to the
//!   terminal width and frames to its height so a redraw never scrolls.
//! * [`PlainView`] (stdout is a pipe or file): one line per run start and
//!   finish and per failed call, never an escape code.
//! * [`JsonView`] (`--json`): every event as one JSON line, then one
//!   `{"type":"result",...}` line; nothing else on stdout.
//!
//! [`EventSink`]: tinyagents_core::EventSink

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use tinyagents_core::{Event, RunError};
use tinyagents_harness::AgentOutput;

use crate::tree::render::{self, FrameStyle, Totals};
use crate::tree::{Change, RunTree};

/// How the run ended.
#[derive(Debug)]
pub enum Outcome {
    /// The root answered.
    Completed(Box<AgentOutput>),
    /// The root failed.
    Failed(Box<RunError>),
    /// The user pressed Ctrl-C.
    Interrupted,
    /// A blueprint or graph run answered (its root is a plain run context,
    /// not an agent).
    Answered(Box<Answered>),
    /// A blueprint or graph run failed.
    Error {
        /// The error, rendered.
        message: String,
        /// The best partial answer, if any.
        partial: Option<String>,
    },
}

/// The result of a blueprint or graph run.
#[derive(Debug, Clone)]
pub struct Answered {
    /// The answer.
    pub text: String,
    /// Usage of the whole tree.
    pub usage: tinyagents_core::Usage,
    /// Cost of the whole tree.
    pub cost: tinyagents_core::Cost,
}

/// What the view thread receives.
#[derive(Debug)]
pub enum Msg {
    /// An event of the run tree.
    Event(Box<Event>),
    /// The run is over; no event follows.
    Done {
        /// How it ended.
        outcome: Outcome,
        /// Wall-clock time of the run.
        elapsed: Duration,
    },
}

/// A way of showing a run.
pub trait View: Send {
    /// One event, in `seq` order.
    fn event(&mut self, event: &Event);
    /// Called every interval; the live view redraws here.
    fn tick(&mut self) {}
    /// The run is over: print the result.
    fn finish(&mut self, outcome: &Outcome, elapsed: Duration);
}

/// Events held back until the ones before them arrive.
#[derive(Debug, Default)]
struct SeqOrder {
    next: u64,
    held: BTreeMap<u64, Event>,
}

/// Held events past this many are released anyway (a gap that never fills).
const MAX_HELD: usize = 4096;

impl SeqOrder {
    fn push(&mut self, event: Event, mut deliver: impl FnMut(&Event)) {
        if event.seq < self.next {
            deliver(&event);
            return;
        }
        self.held.insert(event.seq, event);
        while let Some(e) = self.held.remove(&self.next) {
            self.next = e.seq + 1;
            deliver(&e);
        }
        while self.held.len() > MAX_HELD {
            if let Some((_, e)) = self.held.pop_first() {
                self.next = self.next.max(e.seq + 1);
                deliver(&e);
            }
        }
    }

    fn drain(&mut self, mut deliver: impl FnMut(&Event)) {
        while let Some((_, e)) = self.held.pop_first() {
            deliver(&e);
        }
    }
}

/// Runs the view until [`Msg::Done`] (or until every sender is gone).
pub fn pump(rx: &Receiver<Msg>, view: &mut dyn View, interval: Duration) {
    let mut order = SeqOrder::default();
    let mut next_tick = Instant::now() + interval;
    loop {
        let wait = next_tick.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(Msg::Event(event)) => order.push(*event, |e| view.event(e)),
            Ok(Msg::Done { outcome, elapsed }) => {
                order.drain(|e| view.event(e));
                view.finish(&outcome, elapsed);
                return;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                order.drain(|e| view.event(e));
                return;
            }
        }
        if Instant::now() >= next_tick {
            view.tick();
            next_tick = Instant::now() + interval;
        }
    }
}

fn totals(tree: &RunTree, outcome: &Outcome, elapsed: Duration) -> Totals {
    let stats = tree.stats();
    let (usage, cost, failures) = match outcome {
        Outcome::Completed(out) => (
            out.total_usage,
            out.total_cost,
            out.failures.len() as u64 + out.descendant_failures,
        ),
        Outcome::Answered(a) => (a.usage, a.cost, stats.failures()),
        _ => (stats.usage, stats.cost, stats.failures()),
    };
    Totals {
        runs: stats.runs,
        failed_runs: stats.failed_runs,
        usage,
        cost,
        elapsed,
        failures,
    }
}

/// The answer (or partial answer) and the totals line, for humans.
fn write_result(out: &mut dyn Write, tree: &RunTree, outcome: &Outcome, elapsed: Duration) -> std::io::Result<()> {
    writeln!(out)?;
    match outcome {
        Outcome::Completed(o) => writeln!(out, "answer:\n{}\n", o.text)?,
        Outcome::Failed(e) => match e.partial().and_then(|p| p.text.as_deref()) {
            Some(text) => writeln!(out, "partial answer:\n{text}\n")?,
            None => writeln!(out, "no answer: the root run failed\n")?,
        },
        Outcome::Interrupted => writeln!(out, "interrupted\n")?,
        Outcome::Answered(a) => writeln!(out, "answer:\n{}\n", a.text)?,
        Outcome::Error { partial, .. } => match partial {
            Some(text) => writeln!(out, "partial answer:\n{text}\n")?,
            None => writeln!(out, "no answer: the run failed\n")?,
        },
    }
    writeln!(out, "{}", render::totals_line(&totals(tree, outcome, elapsed)))?;
    out.flush()
}

/// Terminal size in columns and rows.
pub type SizeFn = fn() -> (usize, usize);

/// The size of the terminal on stdout, else `COLUMNS`/`LINES`, else 100×30.
pub fn terminal_size() -> (usize, usize) {
    if let Some((terminal_size::Width(w), terminal_size::Height(h))) = terminal_size::terminal_size() {
        return (usize::from(w), usize::from(h));
    }
    let env = |k: &str, d: usize| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    (env("COLUMNS", 100), env("LINES", 30))
}

/// The live tree (see the module docs).
pub struct LiveView<W: Write + Send> {
    out: W,
    tree: RunTree,
    color: bool,
    size: SizeFn,
    drawn: usize,
    spinner: usize,
    cursor_hidden: bool,
}

impl<W: Write + Send> LiveView<W> {
    /// A live view writing to `out`, sized by `size`.
    pub fn new(out: W, color: bool, size: SizeFn) -> Self {
        Self {
            out,
            tree: RunTree::new(),
            color,
            size,
            drawn: 0,
            spinner: 0,
            cursor_hidden: false,
        }
    }

    /// The writer (for tests that inspect what was drawn).
    pub fn get_ref(&self) -> &W {
        &self.out
    }

    fn draw(&mut self, last: bool) {
        let (w, h) = (self.size)();
        let style = FrameStyle {
            width: w.saturating_sub(1).max(20),
            height: h.saturating_sub(1).max(3),
            color: self.color,
            spinner: self.spinner,
        };
        self.spinner = self.spinner.wrapping_add(1);
        let lines = render::frame(&self.tree, tinyagents_core::event::now_us(), &style, !last);
        let mut buf = String::new();
        if !self.cursor_hidden {
            buf.push_str("\x1b[?25l");
            self.cursor_hidden = true;
        }
        if self.drawn > 0 {
            buf.push_str(&format!("\x1b[{}F", self.drawn));
        }
        buf.push_str("\x1b[J");
        for line in &lines {
            buf.push_str(line);
            buf.push('\n');
        }
        if last {
            buf.push_str("\x1b[?25h");
            self.cursor_hidden = false;
        }
        self.drawn = lines.len();
        let _ = self.out.write_all(buf.as_bytes()).and_then(|()| self.out.flush());
    }
}

impl<W: Write + Send> View for LiveView<W> {
    fn event(&mut self, event: &Event) {
        self.tree.apply(event);
    }

    fn tick(&mut self) {
        if !self.tree.is_empty() {
            self.draw(false);
        }
    }

    fn finish(&mut self, outcome: &Outcome, elapsed: Duration) {
        self.draw(true);
        let _ = write_result(&mut self.out, &self.tree, outcome, elapsed);
    }
}

impl<W: Write + Send> Drop for LiveView<W> {
    fn drop(&mut self) {
        if self.cursor_hidden {
            let _ = self.out.write_all(b"\x1b[?25h").and_then(|()| self.out.flush());
        }
    }
}

/// Plain progress lines (see the module docs).
pub struct PlainView<W: Write + Send> {
    out: W,
    tree: RunTree,
}

impl<W: Write + Send> PlainView<W> {
    /// A plain view writing to `out`.
    pub fn new(out: W) -> Self {
        Self {
            out,
            tree: RunTree::new(),
        }
    }
}

impl<W: Write + Send> View for PlainView<W> {
    fn event(&mut self, event: &Event) {
        let at = event.timestamp_us;
        let line = match self.tree.apply(event) {
            Change::None => None,
            Change::Started(id) => render::started_line(&self.tree, id, at),
            Change::Finished(id) => render::finished_line(&self.tree, id, at),
            Change::CallFailed { run, call } => render::failed_call_line(&self.tree, run, &call, at),
            Change::TaskStarted { run, node } => render::task_line(&self.tree, run, &node, None, true, at),
            Change::TaskFinished { run, node, error } => {
                render::task_line(&self.tree, run, &node, error.as_deref(), false, at)
            }
        };
        if let Some(line) = line {
            let _ = writeln!(self.out, "{line}");
        }
    }

    fn tick(&mut self) {
        let _ = self.out.flush();
    }

    fn finish(&mut self, outcome: &Outcome, elapsed: Duration) {
        let _ = write_result(&mut self.out, &self.tree, outcome, elapsed);
    }
}

/// JSON lines (see the module docs).
pub struct JsonView<W: Write + Send> {
    out: W,
    tree: RunTree,
}

impl<W: Write + Send> JsonView<W> {
    /// A JSON view writing to `out`.
    pub fn new(out: W) -> Self {
        Self {
            out,
            tree: RunTree::new(),
        }
    }
}

impl<W: Write + Send> View for JsonView<W> {
    fn event(&mut self, event: &Event) {
        self.tree.apply(event);
        if serde_json::to_writer(&mut self.out, event).is_ok() {
            let _ = self.out.write_all(b"\n");
        }
    }

    fn tick(&mut self) {
        let _ = self.out.flush();
    }

    fn finish(&mut self, outcome: &Outcome, elapsed: Duration) {
        let t = totals(&self.tree, outcome, elapsed);
        let (answer, error, path, depth, partial) = match outcome {
            Outcome::Completed(o) => (Some(o.text.to_string()), None, None, None, None),
            Outcome::Failed(e) => (
                None,
                Some(e.to_string()),
                Some(e.path().to_string()),
                Some(e.depth()),
                e.partial().and_then(|p| p.text.as_deref()).map(str::to_string),
            ),
            Outcome::Interrupted => (None, Some("interrupted".to_string()), None, None, None),
            Outcome::Answered(a) => (Some(a.text.clone()), None, None, None, None),
            Outcome::Error { message, partial } => (None, Some(message.clone()), None, None, partial.clone()),
        };
        let line = ResultLine {
            kind: "result",
            ok: matches!(outcome, Outcome::Completed(_) | Outcome::Answered(_)),
            answer,
            error,
            path,
            depth,
            partial,
            runs: t.runs,
            failed_runs: t.failed_runs,
            failures: t.failures,
            total_tokens: t.usage.total_tokens(),
            usage: t.usage,
            cost: t.cost,
            cost_usd: t.cost.usd(),
            elapsed_ms: elapsed.as_millis() as u64,
        };
        if serde_json::to_writer(&mut self.out, &line).is_ok() {
            let _ = self.out.write_all(b"\n");
        }
        let _ = self.out.flush();
    }
}

/// The last line of `--json` output.
#[derive(Debug, serde::Serialize)]
struct ResultLine {
    #[serde(rename = "type")]
    kind: &'static str,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    answer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    depth: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    partial: Option<String>,
    runs: u64,
    failed_runs: u64,
    failures: u64,
    total_tokens: u64,
    usage: tinyagents_core::Usage,
    cost: tinyagents_core::Cost,
    cost_usd: f64,
    elapsed_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinyagents_core::{EventKind, RunId};

    fn ev(seq: u64) -> Event {
        let id = RunId::from_u128(1);
        Event {
            root_run_id: id,
            parent_run_id: None,
            run_id: id,
            depth: 0,
            seq,
            timestamp_us: seq,
            kind: EventKind::ModelCallStarted {
                model: "m".into(),
                turn: 0,
            },
        }
    }

    #[test]
    fn the_live_view_redraws_in_place_and_restores_the_cursor() {
        let mut view = LiveView::new(Vec::new(), false, || (80, 24));
        let id = RunId::from_u128(7);
        let mut started = ev(0);
        started.run_id = id;
        started.root_run_id = id;
        started.kind = EventKind::RunStarted { name: "boss".into() };
        view.event(&started);
        view.tick();
        view.tick();
        view.finish(&Outcome::Interrupted, Duration::from_millis(5));
        let out = String::from_utf8_lossy(view.get_ref()).into_owned();
        assert!(out.starts_with("\x1b[?25l\x1b[J"), "hides the cursor, clears: {out:?}");
        // A frame is the run row and the footer: the next one moves up 2.
        assert_eq!(out.matches("\x1b[2F\x1b[J").count(), 2, "{out:?}");
        assert!(out.contains("boss"), "{out:?}");
        assert!(out.contains("\x1b[?25h"), "shows the cursor again: {out:?}");
        assert!(out.contains("interrupted") && out.contains("totals: runs 1"), "{out:?}");
    }

    #[test]
    fn events_are_released_in_seq_order() {
        let mut order = SeqOrder::default();
        let mut seen = Vec::new();
        for s in [1, 0, 3, 2, 4] {
            order.push(ev(s), |e| seen.push(e.seq));
        }
        assert_eq!(seen, vec![0, 1, 2, 3, 4]);
        order.push(ev(7), |e| seen.push(e.seq));
        assert_eq!(seen.len(), 5, "7 waits for 5 and 6");
        order.drain(|e| seen.push(e.seq));
        assert_eq!(seen.last(), Some(&7));
    }
}
