//! `tinyagents run`: load the script, build the team, run it, show it.
//!
//! The run executes on a tokio runtime on the main thread; its events go
//! through an [`FnSink`] into a channel drained by the view thread (see
//! [`crate::view`]). Children's events reach the same sink because
//! sub-agent tools run their children with `invoke_in_parent`.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use std::sync::Arc;

use tinyagents_core::{EventKind, FnSink, Message, RunConfig, RunContext, RunId, SharedModel, TeeSink};
use tinyagents_harness::steering::{ControlServer, SteeringHub, SteeringPolicy, serve_control_socket, socket_path};

use tinyagents_trace::{DetailLevel, TraceConfig, TraceSink};

use crate::cli::RunArgs;
use crate::script::{Script, ScriptError};
use crate::source::{ModelSource, ProviderArgs, ProviderKind, ScriptOptions};
use crate::team::Team;
use crate::view::{self, Answered, JsonView, LiveView, Msg, Outcome, PlainView, View};

/// Exit status: the root run answered.
pub const EXIT_OK: u8 = 0;
/// Exit status: the root run failed.
pub const EXIT_RUN_FAILED: u8 = 1;
/// Exit status: bad script or usage.
pub const EXIT_USAGE: u8 = 2;
/// Exit status: interrupted by Ctrl-C.
pub const EXIT_INTERRUPTED: u8 = 130;

/// Redraw interval of the live tree.
pub const TICK: Duration = Duration::from_millis(100);

/// The `--trace` sink (set once, by [`execute`], before models are built
/// and the run starts): every way of running goes through one view, which
/// tees it into the run's sink; script models are wrapped to record their
/// I/O into it (see [`trace_sink`]).
static TRACE_SINK: std::sync::OnceLock<Arc<TraceSink>> = std::sync::OnceLock::new();

/// The `--trace` sink of this process, if any.
pub fn trace_sink() -> Option<Arc<TraceSink>> {
    TRACE_SINK.get().cloned()
}

/// How the run is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The tree redrawn in place (stdout is a terminal).
    Live,
    /// One line per run start and finish.
    Plain,
    /// JSON lines.
    Json,
}

impl Mode {
    /// `--json` wins; else live on a capable terminal, plain otherwise.
    pub fn detect(json: bool) -> Self {
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
        if json {
            Self::Json
        } else if std::io::stdout().is_terminal() && !dumb {
            Self::Live
        } else {
            Self::Plain
        }
    }
}

/// Runs `tinyagents run` and returns the exit status.
pub fn execute(args: &RunArgs) -> ExitCode {
    let trace_config = match (&args.trace, &args.trace_db) {
        (Some(dir), _) => Some(TraceConfig::new(
            dir.clone().unwrap_or_else(tinyagents_trace::TraceStore::default_dir),
        )),
        (None, Some(db)) => Some(TraceConfig::sqlite(db)),
        (None, None) => None,
    };
    if let Some(config) = trace_config {
        let dir = config.sqlite.clone().unwrap_or_else(|| config.dir.clone());
        let detail = DetailLevel::parse(&args.trace_detail).unwrap_or_default();
        match TraceSink::new(config.detail(detail)) {
            Ok(sink) => {
                let _ = TRACE_SINK.set(sink);
            }
            Err(e) => {
                eprintln!("error: cannot record the trace in {}: {e}", dir.display());
                return ExitCode::from(EXIT_USAGE);
            }
        }
    }
    if let Some(addr) = &args.ui
        && let Err(e) = crate::live_ui::start(addr.as_deref())
    {
        eprintln!("error: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    let blueprint = match blueprint_file(args) {
        Ok(b) => b,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let main_job = args.script.is_none() && blueprint.is_none() && args.graph_example.is_none();
    let kind = effective_provider(args, main_job);
    let provider = match provider_model(args, kind) {
        Ok(p) => p,
        Err(message) => {
            eprintln!("error: {message}");
            eprintln!("hint: see `tinyagents run --help` (--provider, --model, --base-url, --api-key-env, --threads)");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Some(name) = &args.graph_example {
        return crate::blueprint_run::execute_graph_example(name, args);
    }
    if let Some(path) = blueprint {
        return crate::blueprint_run::execute_blueprint(&path, args, provider);
    }
    if let (true, Some(model)) = (main_job, &provider) {
        let task: Arc<str> = args.input.as_deref().unwrap_or(DEFAULT_TASK).into();
        let model = model.clone();
        return run_rooted(
            "orchestrator",
            RunConfig::new(),
            Mode::detect(args.json),
            !args.no_control,
            move |ctx| crate::orchestrate::body(ctx, model, task),
        );
    }
    let source = match provider {
        Some(model) => ModelSource::Provider(model),
        None => ModelSource::Script(ScriptOptions { delays: !args.no_delay }),
    };
    let (team, input) = match prepare(args, &source) {
        Ok(ready) => ready,
        Err(e) => {
            report_script_error(&e);
            return ExitCode::from(EXIT_USAGE);
        }
    };
    run_team(team, input, Mode::detect(args.json), !args.no_control)
}

/// The task of the main job when none is given.
pub const DEFAULT_TASK: &str = "Write a short guide to making good coffee at home.";

/// The provider in force: `--provider` (or `$TINYAGENTS_PROVIDER`), else
/// the embedded model for the main job (no script, blueprint or graph
/// example) when this build has it, else scripted.
pub fn effective_provider(args: &RunArgs, main_job: bool) -> ProviderKind {
    match args.provider {
        Some(kind) => kind,
        None if main_job && cfg!(feature = "local") => ProviderKind::Local,
        None => ProviderKind::Scripted,
    }
}

/// The model every agent uses (`--provider local|openai|anthropic`), or
/// `None` for scripted models; an error for a bad combination of options.
/// Says once on stderr that scripted responses are ignored.
fn provider_model(args: &RunArgs, kind: ProviderKind) -> Result<Option<SharedModel>, String> {
    let options = ProviderArgs {
        provider: Some(kind),
        threads: Some(args.threads),
        max_tokens: Some(args.max_tokens),
        base_url: args.base_url.clone(),
        model: args.model.clone(),
        api_key_env: args.api_key_env.clone(),
    };
    let model = options.build().map_err(|e| e.to_string())?;
    if let Some(model) = &model {
        if args.graph_example.is_some() {
            return Err("--provider does not apply to --graph-example (its models are built in)".into());
        }
        let name = match kind {
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Local => "local",
            _ => "openai",
        };
        if args.script.is_some() || args.responses.is_some() {
            eprintln!(
                "note: every agent calls model `{}` (--provider {name}); scripted responses are ignored",
                model.id()
            );
        } else {
            eprintln!("note: every agent calls model `{}` (--provider {name})", model.id());
        }
    }
    Ok(model)
}

/// The blueprint this run is for, if any: `--script FILE` or the positional
/// `FILE` naming an existing blueprint file (`.ta`, or `.json` with `"nodes"`).
/// A positional argument that looks like a `.ta` file but does not exist is
/// an error (not a task for the demo).
fn blueprint_file(args: &RunArgs) -> Result<Option<std::path::PathBuf>, String> {
    if let Some(path) = &args.script {
        return Ok(crate::blueprint::is_blueprint(path).then(|| path.clone()));
    }
    let Some(input) = args.input.as_deref() else {
        return Ok(None);
    };
    let path = std::path::PathBuf::from(input);
    if path.is_file() {
        return Ok(crate::blueprint::is_blueprint(&path).then_some(path));
    }
    let looks_like_file =
        !input.contains(char::is_whitespace) && path.extension().is_some_and(|e| e == "ta" || e == "json");
    if looks_like_file {
        return Err(format!("no such blueprint file: {input}"));
    }
    Ok(None)
}

/// Reads, validates and builds the script; resolves the input.
pub fn prepare(args: &RunArgs, source: &ModelSource) -> Result<(Team, String), ScriptError> {
    let (text, origin) = match &args.script {
        None => default_script(),
        Some(path) if path.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|source| ScriptError::Io {
                    path: "<stdin>".into(),
                    source,
                })?;
            (text, "<stdin>".to_string())
        }
        Some(path) => {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|source| ScriptError::Io {
                path: shown.clone(),
                source,
            })?;
            (text, shown)
        }
    };
    let script = Script::load(&text, &origin)?;
    let team = Team::build(&script, source)?;
    let input = args
        .input
        .clone()
        .or_else(|| script.input.clone())
        .ok_or(ScriptError::MissingInput)?;
    Ok((team, input))
}

/// What runs without `--script` on scripted models (`--provider scripted`):
/// the demo script embedded in the binary. With a real model, the main job
/// runs instead ([`crate::orchestrate`]).
fn default_script() -> (String, String) {
    (Script::DEMO.to_string(), "<embedded demo>".to_string())
}

fn report_script_error(e: &ScriptError) {
    eprintln!("error: {e}");
    if let Some(detail) = e.detail() {
        eprintln!("{detail}");
    }
    eprintln!("hint: {}", e.hint());
}

fn make_view(mode: Mode) -> Box<dyn View> {
    let stdout = std::io::stdout();
    match mode {
        Mode::Live => {
            let color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            Box::new(LiveView::new(stdout, color, view::terminal_size))
        }
        Mode::Plain => Box::new(PlainView::new(std::io::BufWriter::new(stdout))),
        Mode::Json => Box::new(JsonView::new(std::io::BufWriter::new(stdout))),
    }
}

/// Runs `team` on `input`, showing it in `mode`; returns the exit status.
pub fn run_team(team: Team, input: String, mode: Mode, control: bool) -> ExitCode {
    let hub = SteeringHub::new(SteeringPolicy::default());
    let config = team.config.clone().hooks(hub.clone());
    run_in_view(mode, config, move |config, runtime| {
        runtime.block_on(async {
            let ctx = team.root.root_context(&config);
            // Served for the whole run; removed when dropped.
            let _server = control.then(|| serve(&hub, ctx.run_id())).flatten();
            let run = team
                .root
                .start(&ctx, team.root.base_transcript().clone(), [Message::user(input)]);
            tokio::select! {
                result = team.root.drive(&ctx, run) => match result {
                    Ok(out) => Outcome::Completed(Box::new(out)),
                    Err(e) => Outcome::Failed(Box::new(e)),
                },
                () = interrupted() => Outcome::Interrupted,
            }
        })
    })
}

/// What a rooted run's body returns: the answer, or the error and the best
/// partial answer.
pub type BodyResult = Result<String, (String, Option<String>)>;

/// Runs `body` under a root run named `name` (a plain run context, not an
/// agent: blueprints and graphs run as its children), showing the tree in
/// `mode`. The root emits `run_started` before the body and `run_completed`
/// (or `run_failed`) with the whole tree's usage after it, so every view,
/// the `--json` events included, sees a root like an agent's.
pub fn run_rooted<F, Fut>(name: &str, config: RunConfig, mode: Mode, control: bool, body: F) -> ExitCode
where
    F: FnOnce(RunContext) -> Fut,
    Fut: Future<Output = BodyResult>,
{
    let hub = SteeringHub::new(SteeringPolicy::default());
    let config = config.hooks(hub.clone());
    let name: Arc<str> = name.into();
    run_in_view(mode, config, move |config, runtime| {
        runtime.block_on(async {
            let ctx = RunContext::root(name.clone(), &config);
            let _server = control.then(|| serve(&hub, ctx.run_id())).flatten();
            ctx.emit(EventKind::RunStarted { name });
            let result = tokio::select! {
                r = body(ctx.clone()) => Some(r),
                () = interrupted() => None,
            };
            let (total_usage, total_cost) = (ctx.total_usage(), ctx.total_cost());
            match result {
                Some(Ok(text)) => {
                    ctx.emit(EventKind::RunCompleted {
                        usage: ctx.own_usage(),
                        total_usage,
                        total_cost,
                        failures: 0,
                    });
                    Outcome::Answered(Box::new(Answered {
                        text,
                        usage: total_usage,
                        cost: total_cost,
                    }))
                }
                Some(Err((message, partial))) => {
                    ctx.emit(EventKind::RunFailed {
                        error: message.clone(),
                        total_usage,
                        total_cost,
                    });
                    Outcome::Error { message, partial }
                }
                None => Outcome::Interrupted,
            }
        })
    })
}

/// Resolves when the user presses Ctrl-C (never, if that cannot be watched).
async fn interrupted() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Serves the control socket of the tree rooted at `root_id`.
fn serve(hub: &Arc<SteeringHub>, root_id: RunId) -> Option<ControlServer> {
    let path = socket_path(root_id);
    match serve_control_socket(hub.clone(), &path) {
        Ok(server) => {
            eprintln!(
                "run {root_id}: steer it with `tinyagents steer {root_id} pause|resume|cancel|stop|say TEXT|status`"
            );
            Some(server)
        }
        Err(e) => {
            eprintln!("warning: no control socket at {}: {e}", path.display());
            None
        }
    }
}

/// Closes the trace sink and says on stderr where the trace is.
fn report_trace(trace: &TraceSink) {
    match trace.close() {
        Ok(report) => {
            let store = trace.store();
            let db = if store.is_sqlite() {
                format!(" --db {}", store.dir().display())
            } else {
                String::new()
            };
            for root in &report.roots {
                eprintln!(
                    "trace: {} (run {}; `tinyagents trace{db} show {}`)",
                    store.location(root.root_run_id),
                    root.root_run_id,
                    root.root_run_id
                );
            }
            for e in &report.errors {
                eprintln!("warning: trace: {e}");
            }
        }
        Err(e) => eprintln!("warning: trace: {e}"),
    }
}

/// Starts the view thread and a tokio runtime, gives `body` the config with
/// the view's sink, shows the outcome; returns the exit status.
fn run_in_view(
    mode: Mode,
    config: RunConfig,
    body: impl FnOnce(RunConfig, &tokio::runtime::Runtime) -> Outcome,
) -> ExitCode {
    let (tx, rx) = mpsc::channel::<Msg>();
    let viewer = std::thread::Builder::new()
        .name("tinyagents-view".into())
        .spawn(move || {
            let mut view = make_view(mode);
            view::pump(&rx, view.as_mut(), TICK);
        });
    let viewer = match viewer {
        Ok(handle) => handle,
        Err(e) => {
            eprintln!("error: cannot start the display thread: {e}");
            return ExitCode::from(EXIT_RUN_FAILED);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the tokio runtime: {e}");
            return ExitCode::from(EXIT_RUN_FAILED);
        }
    };
    let sink_tx = tx.clone();
    let sink = FnSink::new(move |event| {
        let _ = sink_tx.send(Msg::Event(Box::new(event)));
    });
    let trace = trace_sink();
    let config = match &trace {
        Some(trace) => config.sink(Arc::new(TeeSink(sink, trace.clone()))),
        None => config.sink(sink),
    };
    let config = crate::live_ui::attach(config);
    let started = Instant::now();
    let outcome = body(config, &runtime);
    let elapsed = started.elapsed();
    if let Some(trace) = trace {
        report_trace(&trace);
    }
    let (code, error) = match &outcome {
        Outcome::Completed(_) | Outcome::Answered(_) => (EXIT_OK, None),
        Outcome::Failed(e) => (EXIT_RUN_FAILED, Some(e.to_string())),
        Outcome::Error { message, .. } => (EXIT_RUN_FAILED, Some(message.clone())),
        Outcome::Interrupted => (EXIT_INTERRUPTED, Some("interrupted".to_string())),
    };
    let _ = tx.send(Msg::Done { outcome, elapsed });
    let _ = viewer.join();
    crate::live_ui::finish();
    drop(runtime);
    if let Some(error) = error {
        eprintln!("error: {error}");
    }
    ExitCode::from(code)
}
