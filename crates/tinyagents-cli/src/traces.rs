//! `tinyagents trace list|show`, `tinyagents ui` and `tinyagents replay`:
//! thin glue over `tinyagents_trace` (the store, the tree, rendering,
//! replay) and `tinyagents_ui` (the web debugger).

use std::process::ExitCode;
use std::sync::Arc;

use tinyagents_trace::{LoadedTrace, RenderOptions, ReplayOptions, Retention, TraceStore, render_list, render_tree};

use crate::cli::{ReplayArgs, TraceArgs, TraceCommand, UiArgs};
use crate::run::{EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE};

/// Runs `tinyagents trace`.
pub fn trace(args: &TraceArgs) -> ExitCode {
    let store = args.dir.store();
    match &args.command {
        TraceCommand::List { json } => list(&store, *json),
        TraceCommand::Show { run, json } => show(&store, run, *json),
        TraceCommand::Prune {
            older_than,
            max_size,
            max_traces,
            dry_run,
            json,
        } => prune(
            &store,
            older_than.as_deref(),
            max_size.as_deref(),
            *max_traces,
            *dry_run,
            *json,
        ),
    }
}

/// `tinyagents trace prune`: never silent (every removal is printed).
fn prune(
    store: &TraceStore,
    older_than: Option<&str>,
    max_size: Option<&str>,
    max_traces: Option<usize>,
    dry_run: bool,
    json: bool,
) -> ExitCode {
    if older_than.is_none() && max_size.is_none() && max_traces.is_none() {
        return usage_error("give at least one rule: --older-than AGE, --max-size SIZE or --max-traces N");
    }
    let retention = match (
        older_than.map(Retention::parse_age).transpose(),
        max_size.map(Retention::parse_size).transpose(),
    ) {
        (Ok(max_age), Ok(max_total_bytes)) => Retention {
            max_age,
            max_total_bytes,
            max_traces,
        },
        (Err(e), _) | (_, Err(e)) => return usage_error(&e),
    };
    let report = if dry_run {
        store.prune_plan(&retention)
    } else {
        store.prune(&retention)
    };
    let report = match report {
        Ok(r) => r,
        Err(e) => return usage_error(&e.to_string()),
    };
    if json {
        let body = serde_json::json!({ "dry_run": dry_run, "report": report });
        println!("{body}");
    } else {
        for line in report.lines() {
            if dry_run {
                println!("{}", line.replacen("pruned", "would prune", 1));
            } else {
                println!("{line}");
            }
        }
    }
    ExitCode::from(EXIT_OK)
}

fn list(store: &TraceStore, json: bool) -> ExitCode {
    let entries = match store.list() {
        Ok(entries) => entries,
        Err(e) => return usage_error(&e.to_string()),
    };
    if json {
        match serde_json::to_string_pretty(&entries) {
            Ok(text) => println!("{text}"),
            Err(e) => return usage_error(&e.to_string()),
        }
    } else if entries.is_empty() {
        println!(
            "no traces in {} (record one with `tinyagents run --trace`)",
            store.dir().display()
        );
    } else {
        for line in render_list(&entries) {
            println!("{line}");
        }
    }
    ExitCode::from(EXIT_OK)
}

fn show(store: &TraceStore, run: &str, json: bool) -> ExitCode {
    let Some(loaded) = load(store, Some(run)) else {
        return ExitCode::from(EXIT_USAGE);
    };
    if json {
        println!("{}", loaded.tree.to_json());
    } else {
        let color = std::io::IsTerminal::is_terminal(&std::io::stdout())
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        let options = RenderOptions {
            color,
            ..RenderOptions::default()
        };
        for line in render_tree(&loaded.tree, &options) {
            println!("{line}");
        }
    }
    ExitCode::from(EXIT_OK)
}

/// Loads `run` (or the newest trace), printing damage warnings; `None`
/// after printing the error.
fn load(store: &TraceStore, run: Option<&str>) -> Option<LoadedTrace> {
    let id = match run {
        Some(run) => run.to_string(),
        None => match store.list() {
            Ok(entries) => match entries.iter().max_by_key(|e| e.manifest.started_us) {
                Some(newest) => newest.manifest.root_run_id.to_string(),
                None => {
                    eprintln!(
                        "error: no traces in {} (record one with `tinyagents run --trace`)",
                        store.dir().display()
                    );
                    return None;
                }
            },
            Err(e) => {
                eprintln!("error: {e}");
                return None;
            }
        },
    };
    match store.load(&id) {
        Ok(loaded) => {
            for damage in &loaded.damage {
                eprintln!("warning: {damage} (showing what was readable)");
            }
            Some(loaded)
        }
        Err(e) => {
            eprintln!("error: {e}");
            eprintln!(
                "hint: `tinyagents trace list --{} {}` lists the recorded runs",
                if store.is_sqlite() { "db" } else { "dir" },
                store.dir().display()
            );
            None
        }
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(EXIT_USAGE)
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("error: cannot start the tokio runtime: {e}");
            None
        }
    }
}

/// Runs `tinyagents ui`: serves a recorded trace until Ctrl-C (following
/// it while its run is still writing it).
pub fn ui(args: &UiArgs) -> ExitCode {
    let store = args.dir.store();
    let Some(loaded) = load(&store, args.run.as_deref()) else {
        return ExitCode::from(EXIT_USAGE);
    };
    let Some(runtime) = runtime() else {
        return ExitCode::from(EXIT_RUN_FAILED);
    };
    // A trace whose run is still live (its control socket exists): the
    // buttons steer it over the socket.
    let control: Option<Arc<dyn tinyagents_ui::ControlHandler>> = loaded
        .tree
        .summary()
        .root_run_id
        .map(tinyagents_harness::steering::socket_path)
        .filter(|path| path.exists())
        .map(|path| {
            eprintln!(
                "the run is live (control socket {}): the page's buttons steer it",
                path.display()
            );
            tinyagents_ui::SocketControl::new(path) as Arc<dyn tinyagents_ui::ControlHandler>
        });
    // A trace whose root has not ended is followed: the page updates as
    // the run flushes its trace (a crashed run simply stops updating).
    let running = loaded.tree.root().is_none_or(|r| !r.is_finished());
    runtime.block_on(async {
        let source = if running {
            eprintln!("the run has not ended: following its trace, the page updates as it is written");
            tinyagents_ui::UiSource::Live(tinyagents_ui::LiveHub::follow(loaded.location))
        } else {
            tinyagents_ui::UiSource::recorded(loaded)
        };
        let handle = match tinyagents_ui::serve(source, tinyagents_ui::loopback(args.port), control).await {
            Ok(handle) => handle,
            Err(e) => return usage_error(&e.to_string()),
        };
        println!("{}", handle.url());
        eprintln!("serving the debugger; press Ctrl-C to stop");
        let _ = tokio::signal::ctrl_c().await;
        handle.shutdown().await;
        ExitCode::from(EXIT_OK)
    })
}

/// Runs `tinyagents replay`.
pub fn replay(args: &ReplayArgs) -> ExitCode {
    let store = args.dir.store();
    // A trace file, or one root of a SQLite trace database (`--db`).
    let location = match store.resolve(&args.run) {
        Ok(id) => store.location(id),
        Err(e) => return usage_error(&e.to_string()),
    };
    let Some(runtime) = runtime() else {
        return ExitCode::from(EXIT_RUN_FAILED);
    };
    match runtime.block_on(tinyagents_trace::replay_location(&location, &ReplayOptions::default())) {
        Ok(report) => {
            for line in report.lines() {
                println!("{line}");
            }
            if report.is_faithful() {
                ExitCode::from(EXIT_OK)
            } else {
                ExitCode::from(EXIT_RUN_FAILED)
            }
        }
        Err(e) => usage_error(&e.to_string()),
    }
}
