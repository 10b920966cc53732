//! The `tinyagents` binary: thin glue over the `tinyagents_cli` library.

fn main() -> std::process::ExitCode {
    tinyagents_cli::main()
}
