//! The run tree: [`RunContext`] is one run's handle on its identity, its
//! budget, its event sink and its usage counters.
//!
//! There is exactly one spawn path, [`RunContext::spawn_child`], used by
//! sub-agents, sub-agent tools, sessions and (later) graph nodes. It checks
//! the depth cap and the deadline, reserves a descendant slot, and only then
//! creates the child, one level deeper, with narrowed limits. Usage rolls up
//! through [`RunContext::absorb_child`], which the spawner calls when the
//! child ends, on every exit path (success, error, panic), so a parent's
//! total is always the exact sum of its subtree.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::budget::{BudgetScope, LimitKind, RunLimits};
use crate::error::{PartialResult, RunError};
use crate::event::{Event, EventKind, NullSink, SharedSink, now_us};
use crate::ids::{RunId, RunMeta, RunPath};
use crate::usage::{Cost, PriceTable, Usage, UsageCounters};

/// Hooks a control plane installs on a whole tree (steering, registries).
///
/// Called on the one spawn path, so every kind of child (sub-agent, tool,
/// session, graph node) is seen and can be refused.
pub trait RunHooks: Send + Sync + 'static {
    /// A root run was created.
    fn on_root(&self, root: &RunContext) {
        let _ = root;
    }
    /// Called before a child named `child_name` is created under `parent`;
    /// an `Err(reason)` refuses the spawn with [`RunError::SpawnDenied`].
    fn before_spawn(&self, parent: &RunContext, child_name: &str) -> Result<(), String> {
        let _ = (parent, child_name);
        Ok(())
    }
    /// A child was created.
    fn on_spawned(&self, parent: &RunContext, child: &RunContext) {
        let _ = (parent, child);
    }
    /// For downcasting to the concrete control plane.
    fn as_any(&self) -> &dyn std::any::Any;
}

/// Watches the spawns of one subtree (see [`RunContext::spawn_watched_child`]).
///
/// Unlike [`RunHooks`] (one set per tree, installed at the root), a watcher
/// is attached to a child run and sees every run spawned anywhere below it,
/// at any depth, without the subtree's events being built: the one spawn
/// path calls it. A graph task uses it to find the runs of its sub-agent's
/// subtree (for interrupts and task scratch from their tools).
pub trait SpawnWatcher: Send + Sync + 'static {
    /// `child` was spawned by `parent`, a run of the watched subtree.
    fn on_spawn(&self, parent: &RunContext, child: &RunContext);
}

/// The sink of children whose events are discarded: one for the process,
/// so a discarded child allocates no sink of its own.
fn null_sink() -> SharedSink {
    static NULL: OnceLock<SharedSink> = OnceLock::new();
    NULL.get_or_init(|| Arc::new(NullSink)).clone()
}

/// How a root run is configured.
#[derive(Clone)]
pub struct RunConfig {
    /// Limits of the root run (and so of the whole tree).
    pub limits: RunLimits,
    /// Where events go.
    pub sink: SharedSink,
    /// Prices by model id, for cost.
    pub prices: Arc<PriceTable>,
    /// Control-plane hooks (steering), if any.
    pub hooks: Option<Arc<dyn RunHooks>>,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            limits: RunLimits::default(),
            sink: null_sink(),
            prices: Arc::new(PriceTable::default()),
            hooks: None,
        }
    }
}

impl RunConfig {
    /// Default configuration: default limits, no sink, no prices.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the limits.
    #[must_use]
    pub fn limits(mut self, limits: RunLimits) -> Self {
        self.limits = limits;
        self
    }
    /// Sets the sink.
    #[must_use]
    pub fn sink(mut self, sink: SharedSink) -> Self {
        self.sink = sink;
        self
    }
    /// Sets the price table.
    #[must_use]
    pub fn prices(mut self, prices: PriceTable) -> Self {
        self.prices = Arc::new(prices);
        self
    }
    /// Installs control-plane hooks (e.g. a steering hub).
    #[must_use]
    pub fn hooks(mut self, hooks: Arc<dyn RunHooks>) -> Self {
        self.hooks = Some(hooks);
        self
    }
}

impl std::fmt::Debug for RunConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunConfig")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

struct TreeShared {
    prices: Arc<PriceTable>,
    hooks: Option<Arc<dyn RunHooks>>,
    seq: SeqCounter,
}

/// The tree's event sequence counter, on a cache line of its own: every
/// event of every run of the tree increments it, from whichever thread runs
/// that run, and next to the `Arc`'s reference count and the price table
/// (read at every model call) each increment also evicted those from the
/// other threads' caches.
#[repr(align(128))]
struct SeqCounter(AtomicU64);

/// One run of the tree. Kept small (a fan-out of N sub-agents keeps N of
/// them): the name is the last segment of the path, the limits and deadline
/// are shared with the parent when the child did not narrow them, and the
/// descendants' counters exist only once a child has finished.
struct RunNode {
    meta: RunMeta,
    tree: Arc<TreeShared>,
    budget: BudgetScope,
    limits: Arc<Bounds>,
    sink: SharedSink,
    own: UsageCounters,
    descendants: OnceLock<Box<Descendants>>,
    failures: AtomicU32,
}

/// What a run passes down to its children unless they change it: its
/// effective limits and deadline, and the watcher of its subtree. Shared
/// (one `Arc`) by the runs that did not change it, so a fan-out of children
/// that ask for nothing stores it once.
struct Bounds {
    limits: RunLimits,
    deadline: Option<Instant>,
    watcher: Option<Arc<dyn SpawnWatcher>>,
}

impl Bounds {
    /// Same limits, deadline and watcher (the same watcher object).
    fn same_as(&self, other: &Self) -> bool {
        self.limits == other.limits
            && self.deadline == other.deadline
            && match (&self.watcher, &other.watcher) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
    }
}

/// A parent's side of its children, created at its first spawn: what
/// finished descendants have used, how many of them failed, and the path of
/// the last child spawned (the next child of the same name shares it, so a
/// fan-out of N same-named children stores one path node, not N).
#[derive(Default)]
struct Descendants {
    usage: UsageCounters,
    failures: AtomicU64,
    last_path: std::sync::Mutex<Option<RunPath>>,
}

impl RunNode {
    fn descendants(&self) -> &Descendants {
        self.descendants.get_or_init(Box::default)
    }

    /// The path of a child named `name`.
    fn child_path(&self, name: Arc<str>) -> RunPath {
        let Ok(mut last) = self.descendants().last_path.lock() else {
            return self.meta.path.child(name);
        };
        if let Some(path) = last.as_ref()
            && path
                .leaf_arc()
                .is_some_and(|leaf| Arc::ptr_eq(leaf, &name) || **leaf == *name)
        {
            return path.clone();
        }
        let path = self.meta.path.child(name);
        *last = Some(path.clone());
        path
    }
}

/// Where a child's own events go.
#[derive(Clone)]
pub enum ChildEvents {
    /// To the parent's sink: one observer sees the whole tree.
    Parent,
    /// To this sink.
    To(SharedSink),
    /// Nowhere (the parent still emits `SubAgentStarted`/`Completed`).
    Discard,
}

/// A run's handle on the tree. Cheap to clone.
#[derive(Clone)]
pub struct RunContext(Arc<RunNode>);

impl std::fmt::Debug for RunContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunContext")
            .field("run_id", &self.0.meta.run_id)
            .field("path", &self.0.meta.path)
            .field("depth", &self.0.meta.depth)
            .finish_non_exhaustive()
    }
}

impl RunContext {
    /// A new root run named `name`.
    pub fn root(name: impl Into<Arc<str>>, config: &RunConfig) -> Self {
        let ctx = Self::build_root(RunMeta::root(name.into()), config);
        if let Some(h) = &ctx.0.tree.hooks {
            h.on_root(&ctx);
        }
        ctx
    }

    /// A root run that continues a checkpointed one: same identity, fresh
    /// counters (restore them with [`RunContext::restore_usage`]).
    pub fn resume_root(meta: RunMeta, config: &RunConfig) -> Self {
        let ctx = Self::build_root(meta, config);
        if let Some(h) = &ctx.0.tree.hooks {
            h.on_root(&ctx);
        }
        ctx
    }

    fn build_root(meta: RunMeta, config: &RunConfig) -> Self {
        Self(Arc::new(RunNode {
            meta,
            tree: Arc::new(TreeShared {
                seq: SeqCounter(AtomicU64::new(0)),
                prices: config.prices.clone(),
                hooks: config.hooks.clone(),
            }),
            budget: BudgetScope::root(&config.limits),
            limits: Arc::new(Bounds {
                limits: config.limits.clone(),
                deadline: config.limits.timeout.map(|t| Instant::now() + t),
                watcher: None,
            }),
            sink: config.sink.clone(),
            own: UsageCounters::default(),
            descendants: OnceLock::new(),
            failures: AtomicU32::new(0),
        }))
    }

    /// Adds usage recorded before a crash to this run's own counters and
    /// budget, so totals and limits continue where they stopped.
    pub fn restore_usage(&self, usage: &Usage, cost: Cost) {
        self.0.own.add(usage, cost);
        let _ = self.0.budget.charge(usage, cost);
    }

    /// Spawns a child run: the one spawn path of the tree.
    ///
    /// Fails with [`RunError::SubAgentDepth`] when the child's depth would
    /// exceed `min(self.max_depth, asked.max_depth)`, and with
    /// [`RunError::BudgetExceeded`] when the deadline has passed or no
    /// descendant slot is left. Nothing is reserved on failure.
    pub fn spawn_child(
        &self,
        name: impl Into<Arc<str>>,
        asked: &RunLimits,
        events: ChildEvents,
    ) -> Result<RunContext, RunError> {
        self.spawn(name.into(), asked, events, None)
    }

    /// [`spawn_child`](Self::spawn_child), with `watcher` told of every run
    /// spawned below the child, at any depth (the child itself is not
    /// reported to it; the spawner has it). The child's subtree reports to
    /// this watcher instead of one inherited from above; a watcher set
    /// further down takes over for its own subtree.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use tinyagents_core::{ChildEvents, RunConfig, RunContext, RunId, RunLimits, SpawnWatcher};
    ///
    /// #[derive(Default)]
    /// struct Below(Mutex<Vec<RunId>>);
    /// impl SpawnWatcher for Below {
    ///     fn on_spawn(&self, _parent: &RunContext, child: &RunContext) {
    ///         self.0.lock().unwrap().push(child.run_id());
    ///     }
    /// }
    ///
    /// let below = Arc::new(Below::default());
    /// let root = RunContext::root("graph", &RunConfig::new());
    /// let task = root
    ///     .spawn_watched_child("worker", &RunLimits::new(), ChildEvents::Discard, below.clone())
    ///     .unwrap();
    /// let tool = task.spawn_child("helper", &RunLimits::new(), ChildEvents::Parent).unwrap();
    /// let deep = tool.spawn_child("deeper", &RunLimits::new(), ChildEvents::Parent).unwrap();
    /// assert_eq!(*below.0.lock().unwrap(), [tool.run_id(), deep.run_id()]);
    /// ```
    pub fn spawn_watched_child(
        &self,
        name: impl Into<Arc<str>>,
        asked: &RunLimits,
        events: ChildEvents,
        watcher: Arc<dyn SpawnWatcher>,
    ) -> Result<RunContext, RunError> {
        self.spawn(name.into(), asked, events, Some(watcher))
    }

    fn spawn(
        &self,
        name: Arc<str>,
        asked: &RunLimits,
        events: ChildEvents,
        watcher: Option<Arc<dyn SpawnWatcher>>,
    ) -> Result<RunContext, RunError> {
        let parent = &self.0;
        let child_depth = parent.meta.depth.saturating_add(1);
        let limits = parent.limits.limits.narrow(asked);
        if child_depth > limits.max_depth {
            self.emit(EventKind::BudgetExceeded {
                limit: LimitKind::Depth,
            });
            return Err(RunError::SubAgentDepth {
                path: parent.meta.path.child(name),
                depth: child_depth,
                max_depth: limits.max_depth,
            });
        }
        let refuse = |limit: LimitKind| {
            self.emit(EventKind::BudgetExceeded { limit });
            RunError::BudgetExceeded {
                path: parent.meta.path.child(name.clone()),
                depth: child_depth,
                limit,
                partial: Box::default(),
            }
        };
        let now = Instant::now();
        if parent.limits.deadline.is_some_and(|d| now >= d) {
            return Err(refuse(LimitKind::Deadline));
        }
        if let Some(h) = &parent.tree.hooks
            && let Err(reason) = h.before_spawn(self, &name)
        {
            return Err(RunError::SpawnDenied {
                path: parent.meta.path.child(name),
                depth: child_depth,
                reason,
            });
        }
        parent.budget.reserve_descendant().map_err(refuse)?;
        let deadline = match (parent.limits.deadline, asked.timeout.map(|t| now + t)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let bounds = Bounds {
            limits,
            deadline,
            watcher: watcher.or_else(|| parent.limits.watcher.clone()),
        };
        let limits = if bounds.same_as(&parent.limits) {
            parent.limits.clone()
        } else {
            Arc::new(bounds)
        };
        let sink = match events {
            ChildEvents::Parent => parent.sink.clone(),
            ChildEvents::To(s) => s,
            ChildEvents::Discard => null_sink(),
        };
        let child = Self(Arc::new(RunNode {
            meta: RunMeta {
                run_id: RunId::new(),
                parent_run_id: Some(parent.meta.run_id),
                root_run_id: parent.meta.root_run_id,
                depth: child_depth,
                path: parent.child_path(name),
            },
            tree: parent.tree.clone(),
            budget: parent.budget.child(asked),
            limits,
            sink,
            own: UsageCounters::default(),
            descendants: OnceLock::new(),
            failures: AtomicU32::new(0),
        }));
        if let Some(h) = &parent.tree.hooks {
            h.on_spawned(self, &child);
        }
        if let Some(w) = &parent.limits.watcher {
            w.on_spawn(self, &child);
        }
        Ok(child)
    }

    /// Adds a finished child's usage, cost and failures to this run's
    /// descendants. Call exactly once per child, whatever its outcome.
    pub fn absorb_child(&self, child: &RunContext) {
        let c = &child.0;
        let mine = self.0.descendants();
        mine.usage.add(&c.own.usage(), c.own.cost());
        let mut f = u64::from(c.failures.load(Ordering::Relaxed));
        if let Some(theirs) = c.descendants.get() {
            mine.usage.add(&theirs.usage.usage(), theirs.usage.cost());
            f += theirs.failures.load(Ordering::Relaxed);
        }
        mine.failures.fetch_add(f, Ordering::Relaxed);
    }

    /// Checks the deadline and the token and cost budgets before a model call.
    pub fn check_before_model_call(&self) -> Result<(), LimitKind> {
        if self.deadline_passed() {
            return Err(LimitKind::Deadline);
        }
        self.0.budget.check_before_call()
    }

    /// Records a finished model call: prices it, adds it to this run's own
    /// counters and charges the budget chain. Returns the call's cost, and
    /// the limit it broke, if any (the usage is counted either way).
    pub fn charge_model_call(&self, model_id: &str, usage: &Usage) -> (Cost, Result<(), LimitKind>) {
        let cost = self.0.tree.prices.cost(model_id, usage);
        self.0.own.add(usage, cost);
        (cost, self.0.budget.charge(usage, cost))
    }

    /// Counts one failure of this run (a failed tool call or child).
    pub fn record_failure(&self) {
        self.0.failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Emits an event from this run (no-op when the sink is disabled or
    /// does not accept the kind).
    pub fn emit(&self, kind: EventKind) {
        let sink = &self.0.sink;
        if sink.enabled() {
            self.emit_accepted(sink, kind);
        }
    }

    /// Emits an event built only if the sink is enabled.
    pub fn emit_with(&self, kind: impl FnOnce() -> EventKind) {
        let sink = &self.0.sink;
        if sink.enabled() {
            self.emit_accepted(sink, kind());
        }
    }

    /// Emits `kind` to `sink` (enabled) unless it declines its class or the
    /// kind itself.
    fn emit_accepted(&self, sink: &SharedSink, kind: EventKind) {
        if kind.class().is_none_or(|c| sink.accepts_class(c)) && sink.accepts(&kind) {
            sink.emit(self.event(kind));
        }
    }

    /// Emits an event of `class`, built only if the sink is enabled and
    /// keeps that class (a filtered event costs one call, not its fields).
    pub fn emit_class_with(&self, class: crate::EventClass, kind: impl FnOnce() -> EventKind) {
        let sink = &self.0.sink;
        if sink.enabled() && sink.accepts_class(class) {
            let kind = kind();
            if sink.accepts(&kind) {
                sink.emit(self.event(kind));
            }
        }
    }

    /// Whether this run's sink keeps events of `class` (with
    /// [`EventClass::ModelDelta`](crate::EventClass::ModelDelta): whether
    /// model calls should stream).
    pub fn wants(&self, class: crate::EventClass) -> bool {
        let sink = &self.0.sink;
        sink.enabled() && sink.accepts_class(class)
    }

    /// Whether this run should emit `SubAgentStarted` and a successful
    /// `SubAgentCompleted` about `child`, a child that emits its own start
    /// and end events: false when they reach this run's own sink and the
    /// sink says it does not need the repetition
    /// ([`EventSink::wants_parent_view`](crate::EventSink::wants_parent_view)).
    /// A failed child's `SubAgentCompleted` is always worth emitting (the
    /// child may have died before its own end event).
    pub fn parent_view_needed(&self, child: &RunContext) -> bool {
        let sink = &self.0.sink;
        sink.enabled() && (sink.wants_parent_view() || !Arc::ptr_eq(sink, &child.0.sink))
    }

    fn event(&self, kind: EventKind) -> Event {
        let m = &self.0.meta;
        Event {
            root_run_id: m.root_run_id,
            parent_run_id: m.parent_run_id,
            run_id: m.run_id,
            depth: m.depth,
            seq: self.0.tree.seq.0.fetch_add(1, Ordering::Relaxed),
            timestamp_us: now_us(),
            kind,
        }
    }

    /// The partial result of a run stopped now, given its transcript state.
    pub fn partial(&self, text: Option<Arc<str>>, transcript: crate::message::Transcript, turns: u32) -> PartialResult {
        PartialResult {
            text,
            transcript,
            usage: self.total_usage(),
            cost: self.total_cost(),
            turns,
        }
    }

    /// Identity.
    pub fn meta(&self) -> &RunMeta {
        &self.0.meta
    }
    /// The run's name (the last segment of its path).
    pub fn name(&self) -> &Arc<str> {
        static UNNAMED: OnceLock<Arc<str>> = OnceLock::new();
        match self.0.meta.path.leaf_arc() {
            Some(name) => name,
            None => UNNAMED.get_or_init(|| Arc::from("")),
        }
    }
    /// The run id.
    pub fn run_id(&self) -> RunId {
        self.0.meta.run_id
    }
    /// The root's run id.
    pub fn root_run_id(&self) -> RunId {
        self.0.meta.root_run_id
    }
    /// Depth (0 at the root).
    pub fn depth(&self) -> u32 {
        self.0.meta.depth
    }
    /// Namespace path.
    pub fn path(&self) -> &RunPath {
        &self.0.meta.path
    }
    /// Effective limits (already narrowed).
    pub fn limits(&self) -> &RunLimits {
        &self.0.limits.limits
    }
    /// Effective deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.0.limits.deadline
    }
    /// True when the deadline has passed.
    pub fn deadline_passed(&self) -> bool {
        self.0.limits.deadline.is_some_and(|d| Instant::now() >= d)
    }
    /// The budget scope chain.
    pub fn budget(&self) -> &BudgetScope {
        &self.0.budget
    }
    /// The event sink of this run.
    pub fn sink(&self) -> &SharedSink {
        &self.0.sink
    }
    /// The tree's control-plane hooks, if any.
    pub fn hooks(&self) -> Option<&Arc<dyn RunHooks>> {
        self.0.tree.hooks.as_ref()
    }
    /// The tree's price table.
    pub fn prices(&self) -> &PriceTable {
        &self.0.tree.prices
    }
    /// Usage of this run's own model calls.
    pub fn own_usage(&self) -> Usage {
        self.0.own.usage()
    }
    /// Cost of this run's own model calls.
    pub fn own_cost(&self) -> Cost {
        self.0.own.cost()
    }
    /// Usage of finished descendants.
    pub fn descendants_usage(&self) -> Usage {
        self.0.descendants.get().map(|d| d.usage.usage()).unwrap_or_default()
    }
    /// Own plus descendants' usage.
    pub fn total_usage(&self) -> Usage {
        self.0.own.usage() + self.descendants_usage()
    }
    /// Own plus descendants' cost.
    pub fn total_cost(&self) -> Cost {
        self.0.own.cost() + self.0.descendants.get().map_or(Cost::ZERO, |d| d.usage.cost())
    }
    /// Failures recorded by this run itself.
    pub fn failures(&self) -> u32 {
        self.0.failures.load(Ordering::Relaxed)
    }
    /// Failures recorded anywhere below this run.
    pub fn descendant_failures(&self) -> u64 {
        self.0
            .descendants
            .get()
            .map_or(0, |d| d.failures.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::CollectingSink;

    #[test]
    fn spawn_child_refuses_past_max_depth_and_names_the_path() {
        let root = RunContext::root("a", &RunConfig::new().limits(RunLimits::new().max_depth(1)));
        let child = root.spawn_child("b", &RunLimits::new(), ChildEvents::Parent).unwrap();
        assert_eq!(child.depth(), 1);
        let err = child
            .spawn_child("c", &RunLimits::new(), ChildEvents::Parent)
            .unwrap_err();
        assert!(matches!(
            err,
            RunError::SubAgentDepth {
                depth: 2,
                max_depth: 1,
                ..
            }
        ));
        assert_eq!(err.path().to_string(), "a/b/c");
    }

    #[test]
    fn child_cannot_widen_depth() {
        let root = RunContext::root("a", &RunConfig::new().limits(RunLimits::new().max_depth(2)));
        let child = root
            .spawn_child("b", &RunLimits::new().max_depth(50), ChildEvents::Parent)
            .unwrap();
        assert_eq!(child.limits().max_depth, 2);
    }

    /// Takes run lifecycle events only, and no parent views.
    struct LifecycleOnly(CollectingSink);

    impl crate::event::EventSink for LifecycleOnly {
        fn emit(&self, event: Event) {
            self.0.emit(event);
        }
        fn accepts(&self, kind: &EventKind) -> bool {
            matches!(kind, EventKind::RunStarted { .. } | EventKind::RunCompleted { .. })
        }
        fn wants_parent_view(&self) -> bool {
            false
        }
        fn accepts_class(&self, class: crate::EventClass) -> bool {
            class == crate::EventClass::ToolCallStarted
        }
    }

    #[test]
    fn classes_a_sink_declines_are_never_built_and_turn_streaming_off() {
        use crate::EventClass;
        let sink = Arc::new(LifecycleOnly(CollectingSink::default()));
        let root = RunContext::root("a", &RunConfig::new().sink(sink.clone()));
        let built = std::sync::atomic::AtomicU32::new(0);
        let build = || {
            built.fetch_add(1, Ordering::Relaxed);
            EventKind::RunStarted { name: "a".into() }
        };
        root.emit_class_with(EventClass::ModelCall, build);
        root.emit_class_with(EventClass::ModelDelta, build);
        assert_eq!(built.load(Ordering::Relaxed), 0, "declined classes are not built");
        root.emit_class_with(EventClass::ToolCallStarted, build);
        assert_eq!(built.load(Ordering::Relaxed), 1);
        assert_eq!(sink.0.events().len(), 1);
        assert!(!root.wants(EventClass::ModelDelta));
        assert!(root.wants(EventClass::ToolCallStarted));
        // A tee keeps a class when either side does; a disabled sink keeps none.
        let tee = Arc::new(crate::TeeSink(sink.clone(), CollectingSink::new()));
        let teed = RunContext::root("t", &RunConfig::new().sink(tee));
        assert!(teed.wants(EventClass::ModelDelta));
        let null = RunContext::root("n", &RunConfig::new());
        assert!(!null.wants(EventClass::ToolCallStarted));
    }

    #[test]
    fn kinds_a_sink_does_not_accept_are_not_emitted_and_use_no_sequence_number() {
        let sink = Arc::new(LifecycleOnly(CollectingSink::default()));
        let root = RunContext::root("a", &RunConfig::new().sink(sink.clone()));
        root.emit(EventKind::RunStarted { name: "a".into() });
        root.emit(EventKind::BudgetExceeded {
            limit: LimitKind::Depth,
        });
        root.emit_with(|| EventKind::BudgetExceeded {
            limit: LimitKind::Depth,
        });
        root.emit(EventKind::RunStarted { name: "a".into() });
        let seqs: Vec<u64> = sink.0.events().iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [0, 1]);
    }

    #[test]
    fn the_parent_view_is_needed_unless_the_child_reports_to_a_sink_that_declines_it() {
        let declining: SharedSink = Arc::new(LifecycleOnly(CollectingSink::default()));
        let root = RunContext::root("a", &RunConfig::new().sink(declining.clone()));
        let same = root.spawn_child("b", &RunLimits::new(), ChildEvents::Parent).unwrap();
        assert!(!root.parent_view_needed(&same));
        let silent = root.spawn_child("c", &RunLimits::new(), ChildEvents::Discard).unwrap();
        assert!(root.parent_view_needed(&silent));
        let elsewhere = root
            .spawn_child("d", &RunLimits::new(), ChildEvents::To(CollectingSink::new()))
            .unwrap();
        assert!(root.parent_view_needed(&elsewhere));
        let shared = root
            .spawn_child("e", &RunLimits::new(), ChildEvents::To(declining.clone()))
            .unwrap();
        assert!(!root.parent_view_needed(&shared));
        // A sink that keeps the default wants the view; a disabled one needs nothing.
        let collecting = RunContext::root("f", &RunConfig::new().sink(CollectingSink::new()));
        let kid = collecting
            .spawn_child("g", &RunLimits::new(), ChildEvents::Parent)
            .unwrap();
        assert!(collecting.parent_view_needed(&kid));
        let quiet = RunContext::root("h", &RunConfig::new());
        let kid = quiet.spawn_child("i", &RunLimits::new(), ChildEvents::Parent).unwrap();
        assert!(!quiet.parent_view_needed(&kid));
    }

    #[test]
    fn absorb_child_rolls_up_usage_and_failures() {
        let root = RunContext::root("a", &RunConfig::new());
        let child = root.spawn_child("b", &RunLimits::new(), ChildEvents::Parent).unwrap();
        let grandchild = child.spawn_child("c", &RunLimits::new(), ChildEvents::Parent).unwrap();
        grandchild.charge_model_call("m", &Usage::call(3, 4)).1.unwrap();
        grandchild.record_failure();
        child.charge_model_call("m", &Usage::call(1, 1)).1.unwrap();
        child.absorb_child(&grandchild);
        root.absorb_child(&child);
        assert_eq!(root.total_usage(), Usage::call(3, 4) + Usage::call(1, 1));
        assert_eq!(root.descendant_failures(), 1);
    }

    #[test]
    fn a_child_that_does_not_narrow_shares_its_parents_limits() {
        let root = RunContext::root("a", &RunConfig::new().limits(RunLimits::new().max_depth(3)));
        let same = root
            .spawn_child("b", &RunLimits::inherit(), ChildEvents::Parent)
            .unwrap();
        assert!(Arc::ptr_eq(&root.0.limits, &same.0.limits));
        let narrowed = root
            .spawn_child("c", &RunLimits::inherit().max_depth(2), ChildEvents::Parent)
            .unwrap();
        assert!(!Arc::ptr_eq(&root.0.limits, &narrowed.0.limits));
        assert_eq!(narrowed.limits().max_depth, 2);
        assert_eq!(same.limits().max_depth, 3);
        assert_eq!(&**same.name(), "b");
    }

    #[test]
    fn children_of_the_same_name_share_their_path() {
        let root = RunContext::root("a", &RunConfig::new());
        let b1 = root.spawn_child("b", &RunLimits::new(), ChildEvents::Parent).unwrap();
        let b2 = root.spawn_child("b", &RunLimits::new(), ChildEvents::Parent).unwrap();
        let c = root.spawn_child("c", &RunLimits::new(), ChildEvents::Parent).unwrap();
        assert!(b1.path().ptr_eq(b2.path()));
        assert_ne!(b1.run_id(), b2.run_id());
        assert_eq!(b2.path().to_string(), "a/b");
        assert_eq!(c.path().to_string(), "a/c");
        assert_eq!(&**c.name(), "c");
    }

    #[test]
    fn a_spawn_watcher_sees_every_run_below_its_child_and_yields_to_a_nearer_one() {
        #[derive(Default)]
        struct Seen(std::sync::Mutex<Vec<(String, String)>>);
        impl SpawnWatcher for Seen {
            fn on_spawn(&self, parent: &RunContext, child: &RunContext) {
                self.0
                    .lock()
                    .unwrap()
                    .push((parent.path().to_string(), child.path().to_string()));
            }
        }
        let seen = |w: &Seen| w.0.lock().unwrap().iter().map(|(_, c)| c.clone()).collect::<Vec<_>>();
        let (outer, inner) = (Arc::new(Seen::default()), Arc::new(Seen::default()));
        let root = RunContext::root("a", &RunConfig::new());
        let task = root
            .spawn_watched_child("t", &RunLimits::new(), ChildEvents::Discard, outer.clone())
            .unwrap();
        // Discarded events, a narrowed child: still seen.
        let tool = task
            .spawn_child("tool", &RunLimits::inherit().max_depth(5), ChildEvents::Discard)
            .unwrap();
        let deep = tool
            .spawn_child("deep", &RunLimits::new(), ChildEvents::Parent)
            .unwrap();
        let nested = deep
            .spawn_watched_child("nested", &RunLimits::new(), ChildEvents::Parent, inner.clone())
            .unwrap();
        nested
            .spawn_child("leaf", &RunLimits::new(), ChildEvents::Parent)
            .unwrap();
        // Outside the watched subtree: not seen.
        root.spawn_child("sibling", &RunLimits::new(), ChildEvents::Parent)
            .unwrap();
        assert_eq!(seen(&outer), ["a/t/tool", "a/t/tool/deep", "a/t/tool/deep/nested"]);
        assert_eq!(seen(&inner), ["a/t/tool/deep/nested/leaf"]);
        assert_eq!(outer.0.lock().unwrap()[0].0, "a/t");
        assert!(!task.sink().enabled(), "no event stream is needed to watch spawns");
    }

    #[test]
    fn discarded_children_share_one_null_sink() {
        let root = RunContext::root("a", &RunConfig::new());
        let b = root.spawn_child("b", &RunLimits::new(), ChildEvents::Discard).unwrap();
        let c = root.spawn_child("c", &RunLimits::new(), ChildEvents::Discard).unwrap();
        assert!(Arc::ptr_eq(b.sink(), c.sink()));
        assert!(!b.sink().enabled());
    }

    #[test]
    fn events_carry_ids_depth_and_increasing_seq() {
        let sink = CollectingSink::new();
        let root = RunContext::root("a", &RunConfig::new().sink(sink.clone()));
        let child = root.spawn_child("b", &RunLimits::new(), ChildEvents::Parent).unwrap();
        root.emit(EventKind::RunStarted { name: "a".into() });
        child.emit(EventKind::RunStarted { name: "b".into() });
        let ev = sink.events();
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[1].parent_run_id, Some(root.run_id()));
        assert_eq!(ev[1].root_run_id, root.run_id());
        assert_eq!(ev[1].depth, 1);
        assert!(ev[0].seq < ev[1].seq);
    }
}
