//! `cargo run -p tinyagents-blueprint --example check -- FILE`: what
//! `tinyagents check` and `tinyagents graph` will print.
#![allow(clippy::print_stdout)]

use tinyagents_blueprint::{CapabilityGrant, CompileOptions, check_file};

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: check FILE [TOOL...]");
        std::process::exit(2);
    };
    let tools: Vec<String> = std::env::args().skip(2).collect();
    let grant = if tools.is_empty() {
        CapabilityGrant::unrestricted()
    } else {
        CapabilityGrant::tools(tools)
    };
    match check_file(std::path::Path::new(&path), &CompileOptions::new().grant(grant)) {
        Ok(c) => {
            print!("{}", c.warnings.render());
            println!("{}", c.plan.to_mermaid());
        }
        Err(report) => {
            print!("{}", report.render());
            std::process::exit(1);
        }
    }
}
