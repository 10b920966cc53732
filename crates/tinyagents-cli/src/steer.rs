//! `tinyagents steer`: one steering command to a live run, over the control
//! socket its `tinyagents run` serves.

use std::process::ExitCode;

use tinyagents_core::{RunId, SteeringCommand, SteeringTarget};
use tinyagents_harness::steering::{ControlClient, ControlRequest, ControlResponse, control_dir, find_socket_for};

use crate::cli::{SteerAction, SteerArgs};

/// Exit status: the command was accepted.
pub const EXIT_ACCEPTED: u8 = 0;
/// Exit status: the command was rejected.
pub const EXIT_REJECTED: u8 = 1;
/// Exit status: bad usage or no such live run.
pub const EXIT_USAGE: u8 = 2;

/// Runs `tinyagents steer` and returns the exit status.
pub fn execute(args: &SteerArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the tokio runtime: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    ExitCode::from(runtime.block_on(steer(args)))
}

fn command(args: &SteerArgs) -> Result<Option<SteeringCommand>, String> {
    Ok(Some(match args.action {
        SteerAction::Pause => SteeringCommand::Pause,
        SteerAction::Resume => SteeringCommand::Resume,
        SteerAction::Cancel => SteeringCommand::Cancel,
        SteerAction::Stop => SteeringCommand::Stop,
        SteerAction::Say => match &args.text {
            Some(text) if !text.trim().is_empty() => SteeringCommand::AddInstruction { text: text.clone() },
            _ => return Err("`say` needs the instruction text: tinyagents steer RUN_ID say \"...\"".into()),
        },
        SteerAction::Status => return Ok(None),
    }))
}

async fn steer(args: &SteerArgs) -> u8 {
    let run_id: RunId = match args.run_id.parse() {
        Ok(id) => id,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let command = match command(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let Some(path) = find_socket_for(run_id).await else {
        eprintln!(
            "error: no live run {run_id} found (looked for control sockets in {})",
            control_dir().display()
        );
        eprintln!("hint: is `tinyagents run` still running, and was it started without --no-control?");
        return EXIT_USAGE;
    };
    let mut client = match ControlClient::connect(&path).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: cannot connect to {}: {e}", path.display());
            return EXIT_USAGE;
        }
    };
    let request = match command {
        None => ControlRequest::Status,
        Some(command) => ControlRequest::Steer {
            target: SteeringTarget::ParentRun { run_id },
            command,
            human: std::env::var("USER").ok().or_else(|| Some("cli".into())),
        },
    };
    match client.request(&request).await {
        Ok(ControlResponse::Accepted { ack }) => {
            println!("accepted: {} (correlation id {})", args.run_id, ack.correlation_id);
            EXIT_ACCEPTED
        }
        Ok(ControlResponse::Rejected { reason, policy_id, .. }) => {
            eprintln!("rejected by policy {policy_id}: {reason}");
            EXIT_REJECTED
        }
        Ok(ControlResponse::Status { runs }) => {
            for r in runs {
                println!(
                    "{}  {:<40} depth {}  {}{}  turns {}  tokens {}",
                    r.run_id,
                    r.path,
                    r.depth,
                    r.phase,
                    if r.paused { " (paused)" } else { "" },
                    r.turns,
                    r.usage.total_tokens()
                );
            }
            EXIT_ACCEPTED
        }
        Ok(ControlResponse::Error { message }) => {
            eprintln!("error: {message}");
            EXIT_USAGE
        }
        Err(e) => {
            eprintln!("error: control socket {}: {e}", path.display());
            EXIT_USAGE
        }
    }
}
