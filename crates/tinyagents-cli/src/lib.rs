#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod blueprint;
pub mod blueprint_run;
pub mod cli;
pub mod echo;
pub mod graphs;
pub mod live_ui;
pub mod local;
pub mod model;
pub mod orchestrate;
pub mod run;
pub mod script;
pub mod source;
pub mod steer;
pub mod team;
pub mod traces;
pub mod tree;
pub mod view;

use std::process::ExitCode;

use clap::Parser;

/// Parses `std::env::args` and runs the command.
pub fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match &cli.command {
        cli::Command::Run(args) => run::execute(args),
        cli::Command::Steer(args) => steer::execute(args),
        cli::Command::Check(args) => blueprint::check(args),
        cli::Command::Fmt(args) => blueprint::fmt(args),
        cli::Command::Schema => blueprint::schema(),
        cli::Command::Graph(args) => blueprint::graph(args),
        cli::Command::Trace(args) => traces::trace(args),
        cli::Command::Ui(args) => traces::ui(args),
        cli::Command::Replay(args) => traces::replay(args),
        cli::Command::Model(args) => model::execute(args),
    }
}
