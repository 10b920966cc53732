//! Replay: re-run a recorded run from its recorded model responses and
//! report where the new run tree diverges from the original.
//!
//! # What is replayed
//! A trace written at [`DetailLevel::ModelIo`](crate::DetailLevel) holds, for
//! every model call, what was new in the prompt and the reply. From it
//! [`Recording`] rebuilds each call's *full* prompt and indexes the reply by
//! `(agent, depth, turn, prompt fingerprint)`. A [`ReplayModel`] answers a
//! request by looking its key up: the same prompt gets the same reply (or
//! the same error), and a prompt the recording never saw is a divergence
//! (the model errors, the run tree shows it, the report names it).
//!
//! Keys are content, not run ids, so replay does not depend on the order in
//! which concurrent children happen to run.
//!
//! # Two ways to replay
//! * [`replay_trace`] needs nothing but the trace: it rebuilds every agent
//!   from the recording (name, system prompt, model id), makes each agent
//!   that was spawned as a child a sub-agent tool again (children are re-run
//!   through the real harness: spawning, budgets, roll-up), and answers
//!   other tools with their recorded outputs. This is `tinyagents replay`.
//! * With your own agents (real tools, real limits), build their models with
//!   [`Recording::model_for`] and compare with [`compare_trees`].
//!
//! Costs depend on a price table the trace does not store: pass the one the
//! run used in [`ReplayOptions::prices`] to compare costs too.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};

use tinyagents_core::{
    BoxFuture, CollectingSink, Message, Model, ModelError, ModelRequest, ModelResponse, PriceTable, RunConfig, RunId,
    RunLimits, SharedModel, Tool, ToolContext, ToolError, into_dyn,
};
use tinyagents_harness::{Agent, SubAgent, SubAgentArgs};

use crate::error::TraceError;
use crate::format::{ModelIoRecord, Record};
use crate::model_io::TracedModel;
use crate::reader::{TraceContents, read_trace};
use crate::sink::{IoRecorder, keeps};
use crate::store::TraceLocation;
use crate::tree::{RunTree, TreeSummary};

fn fingerprint(messages: &[Message]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    for m in messages {
        serde_json::to_string(m).unwrap_or_default().hash(&mut h);
    }
    h.finish()
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    agent: Arc<str>,
    depth: u32,
    turn: u32,
    prompt: u64,
}

#[derive(Clone, Debug)]
enum Answer {
    Reply(ModelResponse),
    Error(String),
}

/// Recorded outputs by (tool, call id, arguments): (content, is_error).
type ToolOutputs = HashMap<(Arc<str>, Arc<str>, Arc<str>), VecDeque<(Arc<str>, bool)>>;

/// What the recording knows about one agent.
#[derive(Clone, Debug, Default)]
struct AgentInfo {
    model: Option<Arc<str>>,
    system: Option<Arc<str>>,
    tools: Vec<Arc<str>>,
}

/// Recorded model calls, indexed for replay (see the module docs).
pub struct Recording {
    answers: Mutex<HashMap<Key, VecDeque<Answer>>>,
    tool_outputs: Mutex<ToolOutputs>,
    agents: HashMap<Arc<str>, AgentInfo>,
    children: HashSet<Arc<str>>,
    root: Option<(Arc<str>, Arc<str>)>,
    max_depth: u32,
    misses: Mutex<Vec<String>>,
    served: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Recording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recording")
            .field("agents", &self.agents.len())
            .finish_non_exhaustive()
    }
}

impl Recording {
    /// Indexes the model I/O records of a trace.
    pub fn from_records(records: &[Record]) -> Self {
        let mut by_run: HashMap<RunId, Vec<&ModelIoRecord>> = HashMap::new();
        let mut root_run: Option<RunId> = None;
        let mut children: HashSet<Arc<str>> = HashSet::new();
        let mut max_depth = 0;
        for r in records {
            match r {
                Record::ModelIo(m) => by_run.entry(m.run_id).or_default().push(m),
                Record::Event(e) => {
                    max_depth = max_depth.max(e.depth);
                    if e.parent_run_id.is_none() && root_run.is_none() {
                        root_run = Some(e.run_id);
                    }
                    match &e.kind {
                        tinyagents_core::EventKind::SubAgentStarted { name, child_depth, .. } => {
                            children.insert(name.clone());
                            max_depth = max_depth.max(*child_depth);
                        }
                        tinyagents_core::EventKind::RunStarted { name } if e.parent_run_id.is_some() => {
                            children.insert(name.clone());
                        }
                        _ => {}
                    }
                }
                Record::Other(_) => {}
            }
        }
        let mut answers: HashMap<Key, VecDeque<Answer>> = HashMap::new();
        let mut tool_outputs: ToolOutputs = HashMap::new();
        let mut agents: HashMap<Arc<str>, AgentInfo> = HashMap::new();
        let mut root = None;
        for (run, mut calls) in by_run {
            calls.sort_by_key(|m| (m.turn, m.timestamp_us));
            let mut prompt: Vec<Message> = Vec::new();
            let mut args_of: HashMap<Arc<str>, Arc<str>> = HashMap::new();
            for m in calls {
                for msg in &m.messages {
                    if let Message::Tool {
                        call_id,
                        name,
                        content,
                        is_error,
                    } = msg
                        && !children.contains(name)
                    {
                        let args = args_of.get(call_id).cloned().unwrap_or_else(|| Arc::from(""));
                        tool_outputs
                            .entry((name.clone(), call_id.clone(), args))
                            .or_default()
                            .push_back((content.clone(), *is_error));
                    }
                }
                prompt.extend(m.messages.iter().cloned());
                let info = agents.entry(m.agent.clone()).or_default();
                info.model.get_or_insert_with(|| m.model.clone());
                if m.turn == 0
                    && info.system.is_none()
                    && let Some(Message::System { content }) = m.messages.first()
                {
                    info.system = Some(content.clone());
                }
                if Some(run) == root_run && m.turn == 0 {
                    let input = m.messages.iter().find_map(|x| match x {
                        Message::User { content } => Some(content.clone()),
                        _ => None,
                    });
                    if let Some(input) = input {
                        root = Some((m.agent.clone(), input));
                    }
                }
                let key = Key {
                    agent: m.agent.clone(),
                    depth: m.depth,
                    turn: m.turn,
                    prompt: fingerprint(&prompt),
                };
                let answer = match (&m.response, &m.error) {
                    (Some(r), _) => Answer::Reply(r.clone()),
                    (None, Some(e)) => Answer::Error(e.clone()),
                    (None, None) => Answer::Error("no reply recorded".into()),
                };
                if let Answer::Reply(r) = &answer {
                    for c in &r.tool_calls {
                        args_of.insert(c.id.clone(), c.arguments.clone());
                        if !info.tools.contains(&c.name) {
                            info.tools.push(c.name.clone());
                        }
                    }
                    prompt.push(Message::Assistant {
                        content: r.content.clone(),
                        tool_calls: r.tool_calls.clone(),
                    });
                }
                answers.entry(key).or_default().push_back(answer);
            }
        }
        Self {
            answers: Mutex::new(answers),
            tool_outputs: Mutex::new(tool_outputs),
            agents,
            children,
            root,
            max_depth,
            misses: Mutex::new(Vec::new()),
            served: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// A model for agent `agent` answering from the recording.
    pub fn model_for(self: &Arc<Self>, agent: &str) -> ReplayModel {
        let id = self
            .agents
            .get(agent)
            .and_then(|a| a.model.clone())
            .unwrap_or_else(|| Arc::from("replay"));
        ReplayModel {
            recording: self.clone(),
            id,
        }
    }

    /// Requests the recording could not answer, described.
    pub fn misses(&self) -> Vec<String> {
        self.misses.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Recorded replies served so far.
    pub fn served(&self) -> u64 {
        self.served.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn answer(&self, request: &ModelRequest) -> Result<ModelResponse, ModelError> {
        let prompt: Vec<Message> = request.messages.iter().cloned().collect();
        let key = Key {
            agent: request.agent.clone(),
            depth: request.depth,
            turn: request.turn,
            prompt: fingerprint(&prompt),
        };
        let got = self
            .answers
            .lock()
            .ok()
            .and_then(|mut a| a.get_mut(&key).and_then(VecDeque::pop_front));
        match got {
            Some(Answer::Reply(r)) => {
                self.served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(r)
            }
            Some(Answer::Error(e)) => {
                self.served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Err(ModelError::Other { message: e })
            }
            None => {
                let what = format!(
                    "{} (depth {}) turn {}: no recorded reply for this prompt",
                    request.agent, request.depth, request.turn
                );
                if let Ok(mut m) = self.misses.lock() {
                    m.push(what.clone());
                }
                Err(ModelError::Other {
                    message: format!("replay diverged: {what}"),
                })
            }
        }
    }

    fn tool_output(&self, tool: &Arc<str>, call_id: &Arc<str>, args: &Arc<str>) -> Result<Arc<str>, ToolError> {
        let got = self.tool_outputs.lock().ok().and_then(|mut t| {
            t.get_mut(&(tool.clone(), call_id.clone(), args.clone()))
                .and_then(VecDeque::pop_front)
        });
        match got {
            Some((content, false)) => Ok(content),
            Some((content, true)) => {
                // Recorded as "error (Kind): message".
                let message = content
                    .strip_prefix("error (Failed): ")
                    .map_or_else(|| content.to_string(), str::to_string);
                Err(ToolError::failed(message))
            }
            None => {
                let what = format!("tool {tool} call {call_id}: no recorded output");
                if let Ok(mut m) = self.misses.lock() {
                    m.push(what.clone());
                }
                Err(ToolError::failed(format!("replay diverged: {what}")))
            }
        }
    }
}

/// A model answering from a [`Recording`].
pub struct ReplayModel {
    recording: Arc<Recording>,
    id: Arc<str>,
}

impl std::fmt::Debug for ReplayModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayModel").field("id", &self.id).finish()
    }
}

impl Model for ReplayModel {
    fn id(&self) -> &str {
        &self.id
    }
    fn complete<'a>(&'a self, request: &'a ModelRequest) -> BoxFuture<'a, Result<ModelResponse, ModelError>> {
        Box::pin(async move { self.recording.answer(request) })
    }
}

/// A sub-agent tool resolving its agent lazily (agents may call
/// themselves, so they cannot all be built bottom-up).
struct LazySubAgent {
    name: String,
    agents: Weak<Mutex<HashMap<Arc<str>, Agent>>>,
}

impl Tool for LazySubAgent {
    type Args = SubAgentArgs;
    type Output = Arc<str>;
    type Error = ToolError;
    fn name(&self) -> &str {
        &self.name
    }
    fn description(&self) -> &str {
        "A recorded sub-agent, re-run from its recorded replies."
    }
    async fn call(&self, ctx: ToolContext, args: SubAgentArgs) -> Result<Arc<str>, ToolError> {
        let agent = self
            .agents
            .upgrade()
            .and_then(|m| m.lock().ok().and_then(|m| m.get(self.name.as_str()).cloned()))
            .ok_or_else(|| ToolError::failed(format!("replay: agent {} is not available", self.name)))?;
        match SubAgent::new(agent).invoke_in_parent(&ctx.run, args.input).await {
            Ok(out) => Ok(out.text),
            Err(e) => Err(ToolError::ChildRun(Box::new(e))),
        }
    }
}

/// A plain tool answering with its recorded outputs.
struct RecordedTool {
    name: Arc<str>,
    recording: Arc<Recording>,
}

impl tinyagents_core::DynTool for RecordedToolDyn {
    fn spec(&self) -> &tinyagents_core::ToolSpec {
        &self.spec
    }
    fn call_json<'a>(&'a self, ctx: ToolContext, arguments: &'a str) -> BoxFuture<'a, Result<Arc<str>, ToolError>> {
        Box::pin(async move {
            let t = &self.tool;
            t.recording.tool_output(&t.name, &ctx.call_id, &Arc::from(arguments))
        })
    }
}

struct RecordedToolDyn {
    tool: RecordedTool,
    spec: tinyagents_core::ToolSpec,
}

/// How [`replay_trace`] runs.
#[derive(Clone, Debug, Default)]
pub struct ReplayOptions {
    /// The price table of the original run; without it costs are not compared.
    pub prices: Option<PriceTable>,
}

/// One difference between the original and the replayed tree.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Divergence {
    /// Names from the root down to the run.
    pub path: String,
    /// What differs.
    pub what: String,
}

/// The result of a replay.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ReplayReport {
    /// The original tree's roll-up.
    pub original: TreeSummary,
    /// The replayed tree's roll-up.
    pub replayed: TreeSummary,
    /// Recorded replies served.
    pub served: u64,
    /// Requests the recording could not answer.
    pub misses: Vec<String>,
    /// Differences between the trees.
    pub divergences: Vec<Divergence>,
    /// The replay's final answer, or its error.
    pub outcome: Result<String, String>,
}

impl ReplayReport {
    /// True when the replayed tree matches the original.
    pub fn is_faithful(&self) -> bool {
        self.divergences.is_empty() && self.misses.is_empty()
    }

    /// The report for people.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!(
            "replayed {} ({} runs, {} recorded replies served): {}",
            self.original.name,
            self.replayed.counts.runs,
            self.served,
            if self.is_faithful() {
                "no divergence".to_string()
            } else {
                format!("{} divergence(s)", self.divergences.len() + self.misses.len())
            }
        )];
        for m in &self.misses {
            out.push(format!("  miss: {m}"));
        }
        for d in &self.divergences {
            out.push(format!("  {}: {}", d.path, d.what));
        }
        out
    }
}

#[derive(Default)]
struct Collected(Mutex<Vec<ModelIoRecord>>);

impl IoRecorder for Collected {
    fn wants_model_io(&self) -> bool {
        true
    }
    fn record_model_io(&self, record: ModelIoRecord) {
        if let Ok(mut v) = self.0.lock() {
            v.push(record);
        }
    }
}

/// Replays a trace file (see the module docs). Call from async code.
pub async fn replay_trace(path: &Path, options: &ReplayOptions) -> Result<ReplayReport, TraceError> {
    replay_contents(read_trace(path)?, &path.display().to_string(), options).await
}

/// Replays the trace of one root wherever it is stored: a `.jsonl.zst`
/// file or a SQLite trace database (`tinyagents replay --db`).
pub async fn replay_location(location: &TraceLocation, options: &ReplayOptions) -> Result<ReplayReport, TraceError> {
    replay_contents(location.read()?, &location.to_string(), options).await
}

/// Replays a trace already read (`name` names it in errors).
pub async fn replay_contents(
    contents: TraceContents,
    name: &str,
    options: &ReplayOptions,
) -> Result<ReplayReport, TraceError> {
    if contents.header.detail == crate::DetailLevel::Lifecycle.as_str() {
        return Err(TraceError::Replay(format!(
            "{name} was recorded at the lifecycle level; replay needs model I/O (record with detail model_io)"
        )));
    }
    if let Some(d) = contents.damage.first() {
        return Err(TraceError::Replay(format!("the trace is damaged: {d}")));
    }
    let recording = Arc::new(Recording::from_records(&contents.records));
    let Some((root_name, input)) = recording.root.clone() else {
        return Err(TraceError::Replay(
            "the trace holds no model I/O of its root run".into(),
        ));
    };
    // Build every agent; sub-agents resolve lazily through the registry.
    let registry: Arc<Mutex<HashMap<Arc<str>, Agent>>> = Arc::default();
    let collected = Arc::new(Collected::default());
    for (name, info) in &recording.agents {
        let model: SharedModel = Arc::new(recording.model_for(name));
        let mut b = Agent::builder(name.clone()).shared_model(TracedModel::shared(model, collected.clone()));
        if let Some(s) = &info.system {
            b = b.system(s.clone());
        }
        for t in &info.tools {
            if recording.children.contains(t) {
                b = b.tool(into_dyn(LazySubAgent {
                    name: t.to_string(),
                    agents: Arc::downgrade(&registry),
                }));
            } else {
                b = b.tool(Arc::new(RecordedToolDyn {
                    spec: tinyagents_core::ToolSpec {
                        name: t.clone(),
                        description: "A recorded tool.".into(),
                        parameters: Arc::new(serde_json::json!({"type": "object"})),
                    },
                    tool: RecordedTool {
                        name: t.clone(),
                        recording: recording.clone(),
                    },
                }));
            }
        }
        if let Ok(mut r) = registry.lock() {
            r.insert(name.clone(), b.build());
        }
    }
    let root = registry
        .lock()
        .ok()
        .and_then(|r| r.get(&root_name).cloned())
        .ok_or_else(|| TraceError::Replay(format!("no agent {root_name} in the recording")))?;
    let events = CollectingSink::new();
    let mut config = RunConfig::new()
        .sink(events.clone())
        .limits(RunLimits::new().max_depth(recording.max_depth.max(RunLimits::DEFAULT_MAX_DEPTH)));
    if let Some(p) = &options.prices {
        config = config.prices(p.clone());
    }
    let outcome = root.run_with(&config, input).await;
    drop(root);
    let detail = crate::DetailLevel::parse(&contents.header.detail).unwrap_or(crate::DetailLevel::ModelIo);
    let seen: Vec<_> = events.events().into_iter().filter(|e| keeps(detail, &e.kind)).collect();
    let replayed = RunTree::from_events(&seen);
    let original = RunTree::from_records(&contents.records);
    let original_inputs = inputs(contents.records.iter().filter_map(|r| match r {
        Record::ModelIo(m) => Some(m),
        _ => None,
    }));
    let replay_records = collected.0.lock().map(|v| v.clone()).unwrap_or_default();
    let replay_inputs = inputs(replay_records.iter());
    let divergences = compare_trees(
        &original,
        &original_inputs,
        &replayed,
        &replay_inputs,
        options.prices.is_some(),
    );
    if let Ok(mut r) = registry.lock() {
        r.clear();
    }
    Ok(ReplayReport {
        original: original.summary(),
        replayed: replayed.summary(),
        served: recording.served(),
        misses: recording.misses(),
        divergences,
        outcome: outcome.map(|o| o.text.to_string()).map_err(|e| e.to_string()),
    })
}

/// The first user message of each run's first model call.
pub fn inputs<'a>(records: impl Iterator<Item = &'a ModelIoRecord>) -> HashMap<RunId, Arc<str>> {
    let mut out = HashMap::new();
    for m in records {
        if m.turn == 0
            && let Some(input) = m.messages.iter().find_map(|x| match x {
                Message::User { content } => Some(content.clone()),
                _ => None,
            })
        {
            out.insert(m.run_id, input);
        }
    }
    out
}

/// Compares two run trees: children are matched by name, input and
/// position among equals (not by run id, not by timing); matched runs are
/// compared on status, own and total usage, model calls, children and,
/// with `costs`, total cost.
pub fn compare_trees(
    a: &RunTree,
    a_inputs: &HashMap<RunId, Arc<str>>,
    b: &RunTree,
    b_inputs: &HashMap<RunId, Arc<str>>,
    costs: bool,
) -> Vec<Divergence> {
    let mut out = Vec::new();
    let (Some(ra), Some(rb)) = (a.root(), b.root()) else {
        if a.root().is_some() != b.root().is_some() {
            out.push(Divergence {
                path: String::new(),
                what: "one of the trees is empty".into(),
            });
        }
        return out;
    };
    let (ia, ib) = (a.index_of(ra.run_id), b.index_of(rb.run_id));
    let mut stack: Vec<(usize, usize, String)> = match (ia, ib) {
        (Some(x), Some(y)) => vec![(x, y, ra.name.to_string())],
        _ => Vec::new(),
    };
    while let Some((x, y, path)) = stack.pop() {
        let (Some(na), Some(nb)) = (a.node_at(x), b.node_at(y)) else {
            continue;
        };
        let mut diff = |what: String| {
            out.push(Divergence {
                path: path.clone(),
                what,
            })
        };
        if na.name != nb.name {
            diff(format!("name {} → {}", na.name, nb.name));
        }
        if na.status != nb.status {
            diff(format!("status {} → {}", na.status.as_str(), nb.status.as_str()));
        }
        if na.usage != nb.usage {
            diff(format!(
                "own tokens {} → {}",
                na.usage.total_tokens(),
                nb.usage.total_tokens()
            ));
        }
        if na.total_usage != nb.total_usage {
            diff(format!(
                "total tokens {} → {}",
                na.total_usage.total_tokens(),
                nb.total_usage.total_tokens()
            ));
        }
        if costs && na.total_cost != nb.total_cost {
            diff(format!("total cost {} → {}", na.total_cost, nb.total_cost));
        }
        if na.model_calls != nb.model_calls {
            diff(format!("model calls {} → {}", na.model_calls, nb.model_calls));
        }
        if na.error.is_some() != nb.error.is_some() {
            diff(format!("error {:?} → {:?}", na.error, nb.error));
        }
        // Match children.
        let key = |t: &RunTree, ins: &HashMap<RunId, Arc<str>>, c: usize| -> (String, String) {
            let n = t.node_at(c);
            (
                n.map(|n| n.name.to_string()).unwrap_or_default(),
                n.and_then(|n| ins.get(&n.run_id))
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
            )
        };
        let mut pool: HashMap<(String, String), VecDeque<usize>> = HashMap::new();
        for &c in &nb.children {
            pool.entry(key(b, b_inputs, c)).or_default().push_back(c);
        }
        for &c in &na.children {
            let k = key(a, a_inputs, c);
            match pool.get_mut(&k).and_then(VecDeque::pop_front) {
                Some(m) => stack.push((c, m, format!("{path}/{}", k.0))),
                None => out.push(Divergence {
                    path: format!("{path}/{}", k.0),
                    what: format!("missing in the replay (input {:?})", k.1),
                }),
            }
        }
        for (k, rest) in pool {
            for _ in rest {
                out.push(Divergence {
                    path: format!("{path}/{}", k.0),
                    what: format!("new in the replay (input {:?})", k.1),
                });
            }
        }
    }
    out
}
