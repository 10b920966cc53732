//! Blueprint commands: `check`, `fmt`, `schema` and `graph FILE`.
//!
//! Thin glue over `tinyagents-blueprint`: diagnostics are rendered by its
//! [`Report`] (with `miette`), the plan drawn by [`Plan::to_mermaid`] /
//! [`Plan::to_dot`](tinyagents_blueprint::Plan::to_dot). The capability
//! grant of a file run from the command line is the set of tools the CLI
//! can provide ([`CLI_TOOLS`], or `--tools`): an agent asking for any other
//! tool is refused by `check` with a diagnostic naming it.
//!
//! [`Plan::to_mermaid`]: tinyagents_blueprint::Plan::to_mermaid

use std::path::Path;
use std::process::ExitCode;

use std::collections::BTreeMap;

use tinyagents_blueprint::{CapabilityGrant, Checked, CompileOptions, Report, check_file, format_file};
use tinyagents_core::PriceTable;

use crate::script::PriceSpec;

use crate::cli::{CheckArgs, FmtArgs, GraphArgs};

/// Tools the CLI provides to blueprint agents, and so the default
/// capability grant: [`STUB_TOOLS`] and `spawn_agents` (runtime spawning,
/// see [`crate::blueprint_run`]).
pub const CLI_TOOLS: &[&str] = &["web_search", "read_file", tinyagents_blueprint::SPAWN_TOOL];

/// The scripted stand-in tools: they return a labelled placeholder.
pub const STUB_TOOLS: &[&str] = &["web_search", "read_file"];

/// Exit status: success.
const OK: u8 = 0;
/// Exit status: diagnostics with errors, or a file not in canonical form.
const FAILED: u8 = 1;
/// Exit status: bad usage.
const USAGE: u8 = 2;

/// True when `path` looks like a blueprint: a `.ta` file, or a `.json`
/// file whose top-level object has a `"nodes"` field (a script has `"agents"`).
pub fn is_blueprint(path: &Path) -> bool {
    match path.extension().and_then(|e| e.to_str()) {
        Some("ta") => true,
        Some("json") => std::fs::read_to_string(path)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some_and(|v| v.get("nodes").is_some() && v.get("agents").is_none()),
        _ => false,
    }
}

/// The compile options of the CLI: the grant is `tools` (default
/// [`CLI_TOOLS`]), the prices `prices`.
pub fn compile_options(tools: Option<&[String]>, prices: PriceTable) -> CompileOptions {
    let grant = match tools {
        Some(list) => CapabilityGrant::tools(list.iter().filter(|t| !t.is_empty()).cloned()),
        None => CapabilityGrant::tools(CLI_TOOLS.iter().copied()),
    };
    CompileOptions::new().grant(grant).prices(prices)
}

/// Reads a `--prices FILE` (a script's `"prices"` object); none: no prices.
pub fn load_prices(path: Option<&Path>) -> Result<PriceTable, String> {
    let mut table = PriceTable::new();
    let Some(path) = path else { return Ok(table) };
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let specs: BTreeMap<String, PriceSpec> =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    for (model, price) in &specs {
        table.insert(model.clone(), price.to_price());
    }
    Ok(table)
}

/// Loads and compiles `path`; on errors prints the rendered report (or the
/// prices file's error) to stderr.
pub fn load_checked(path: &Path, tools: Option<&[String]>, prices: Option<&Path>) -> Result<Checked, ExitCode> {
    let prices = load_prices(prices).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(USAGE)
    })?;
    check_file(path, &compile_options(tools, prices)).map_err(|report| {
        print_report(&report);
        ExitCode::from(FAILED)
    })
}

fn print_report(report: &Report) {
    eprint!("{}", report.render());
    if report.has_errors() {
        eprintln!(
            "error: {} error(s) in {}",
            report.error_count(),
            report.source.as_ref().map_or("the blueprint", |s| s.name.as_str())
        );
    }
}

/// `tinyagents check FILE`.
pub fn check(args: &CheckArgs) -> ExitCode {
    let checked = match load_checked(&args.file, args.tools.as_deref(), args.prices.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if !checked.warnings.diagnostics.is_empty() {
        eprint!("{}", checked.warnings.render());
    }
    println!("{}", summary(&args.file, &checked));
    ExitCode::from(OK)
}

/// The one-line summary of a checked blueprint.
pub fn summary(path: &Path, checked: &Checked) -> String {
    use tinyagents_blueprint::PlanNodeKind as K;
    let plan = &checked.plan;
    let mut kinds: Vec<(&str, usize)> = Vec::new();
    for node in &plan.nodes {
        let kind = match node.kind {
            K::Agent(_) => "agent",
            K::Map(_) => "map",
            K::Reduce { .. } => "reduce",
            K::Router { .. } => "router",
            K::Join { .. } => "join",
            _ => "subgraph",
        };
        match kinds.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => kinds.push((kind, 1)),
        }
    }
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
    format!(
        "ok: {} ({}): {} node(s) ({}), {} stage(s), {} pruned, {} warning(s); estimate: {}",
        path.display(),
        plan.name,
        plan.nodes.len(),
        kinds.join(", "),
        plan.stages.len(),
        plan.pruned.len(),
        checked.warnings.diagnostics.len(),
        plan.estimate
    )
}

/// `tinyagents fmt FILE [--check] [--write]`.
pub fn fmt(args: &FmtArgs) -> ExitCode {
    if let Some(form) = &args.to {
        return match tinyagents_blueprint::load_file(&args.file) {
            Ok(loaded) if form == "json" => {
                println!("{}", tinyagents_blueprint::to_json(&loaded.blueprint));
                ExitCode::from(OK)
            }
            Ok(loaded) => {
                print!("{}", tinyagents_blueprint::format_blueprint(&loaded.blueprint));
                ExitCode::from(OK)
            }
            Err(report) => {
                print_report(&report);
                ExitCode::from(FAILED)
            }
        };
    }
    let formatted = match format_file(&args.file) {
        Ok(text) => text,
        Err(report) => {
            print_report(&report);
            return ExitCode::from(FAILED);
        }
    };
    let current = std::fs::read_to_string(&args.file).unwrap_or_default();
    let same = current == formatted;
    if args.check {
        if same {
            return ExitCode::from(OK);
        }
        eprintln!(
            "{}: not in canonical form (run `tinyagents fmt --write {0}`)",
            args.file.display()
        );
        return ExitCode::from(FAILED);
    }
    if args.write {
        if !same && let Err(e) = std::fs::write(&args.file, &formatted) {
            eprintln!("error: cannot write {}: {e}", args.file.display());
            return ExitCode::from(USAGE);
        }
        return ExitCode::from(OK);
    }
    print!("{formatted}");
    ExitCode::from(OK)
}

/// `tinyagents schema`: the JSON Schema of the JSON blueprint form.
pub fn schema() -> ExitCode {
    match serde_json::to_string_pretty(&tinyagents_blueprint::blueprint_json_schema()) {
        Ok(text) => {
            println!("{text}");
            ExitCode::from(OK)
        }
        Err(e) => {
            eprintln!("error: cannot serialize the schema: {e}");
            ExitCode::from(FAILED)
        }
    }
}

/// `tinyagents graph FILE` / `tinyagents graph --example NAME`.
pub fn graph(args: &GraphArgs) -> ExitCode {
    match (&args.file, &args.example) {
        // `tinyagents graph review_loop`: a built-in example named like a file.
        (Some(file), None) if !file.exists() && crate::graphs::NAMES.iter().any(|n| file.as_os_str() == *n) => {
            crate::graphs::print(&file.to_string_lossy(), args.dot)
        }
        (Some(file), None) => graph_file(file, args),
        (None, Some(name)) => crate::graphs::print(name, args.dot),
        _ => {
            eprintln!(
                "error: give a blueprint FILE or --example NAME (examples: {})",
                crate::graphs::NAMES.join(", ")
            );
            ExitCode::from(USAGE)
        }
    }
}

fn graph_file(file: &Path, args: &GraphArgs) -> ExitCode {
    let dot = args.dot;
    let checked = match load_checked(file, args.tools.as_deref(), args.prices.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if dot {
        print!("{}", checked.plan.to_dot());
    } else {
        print!("{}", checked.plan.to_mermaid());
    }
    ExitCode::from(OK)
}
