//! `tinyagents steer` against a live `tinyagents run`, over the control socket.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_tinyagents");

const SLOW_SCRIPT: &str = r#"{
  "input": "go",
  "root": "boss",
  "agents": {
    "boss": {"subagents": ["sleeper"], "responses": [
      {"tool_calls": [{"name": "sleeper", "arguments": {"input": "nap"}}]},
      {"content": "never"}
    ]},
    "sleeper": {"delay_ms": 60000, "responses": [{"content": "woke"}]}
  }
}"#;

fn steer(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("steer")
        .args(args)
        .env("TINYAGENTS_CONTROL_DIR", dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts `tinyagents ARGS --script slow.json` with its own control folder
/// (`PREFIX-PID`); returns the folder, the child and its stderr lines.
fn start_slow_run(
    prefix: &str,
    args: &[&str],
    stdout: Stdio,
) -> (
    std::path::PathBuf,
    std::process::Child,
    std::sync::mpsc::Receiver<String>,
) {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("slow.json");
    std::fs::write(&script, SLOW_SCRIPT).unwrap();
    let mut run = Command::new(BIN)
        .args(args)
        .arg("--script")
        .arg(&script)
        .env("TINYAGENTS_CONTROL_DIR", &dir)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = run.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    (dir, run, rx)
}

#[test]
fn a_second_terminal_can_inspect_and_cancel_a_live_run() {
    let (dir, mut run, rx) = start_slow_run("ta-cli-steer", &["run"], Stdio::null());
    let first = rx.recv_timeout(Duration::from_secs(30)).expect("run announces its id");
    let id = first
        .strip_prefix("run ")
        .and_then(|r| r.split(':').next())
        .unwrap_or_else(|| panic!("unexpected first line: {first}"))
        .to_string();

    // Status lists the live tree (wait until the sub-agent has started).
    let mut listed = String::new();
    for _ in 0..200 {
        let (code, out, _) = steer(&dir, &[&id, "status"]);
        assert_eq!(code, 0);
        if out.contains("boss/sleeper") {
            listed = out;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(listed.contains(&id), "{listed}");
    // The sub-agent can be addressed by its own id too.
    let child_id = listed
        .lines()
        .find(|l| l.contains("boss/sleeper"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    let (code, out, _) = steer(&dir, &[&child_id, "say", "hurry up"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("accepted"));

    // Bad usage is refused without touching the run.
    let (code, _, err) = steer(&dir, &[&id, "say"]);
    assert_eq!(code, 2);
    assert!(err.contains("needs the instruction text"), "{err}");
    let (code, _, err) = steer(&dir, &["not-a-run-id", "pause"]);
    assert_eq!(code, 2);
    assert!(err.contains("invalid run id"), "{err}");

    let (code, out, err) = steer(&dir, &[&id, "cancel"]);
    assert_eq!(code, 0, "{out}{err}");
    let status = run.wait().unwrap();
    assert_eq!(status.code(), Some(1), "a cancelled root exits 1");
    // The reader thread ends at EOF (the process has exited): read to the end
    // rather than racing it with `try_iter`.
    let rest: Vec<String> = rx.iter().collect();
    assert!(rest.iter().any(|l| l.contains("run cancelled")), "{rest:?}");

    // Once the run is gone, its id is unknown to every socket.
    let (code, _, err) = steer(&dir, &[&id, "pause"]);
    assert_eq!(code, 2);
    assert!(err.contains("no live run"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A minimal HTTP/1.1 request: (status, body).
fn http(method: &str, base: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let host = base.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

#[test]
fn run_with_ui_serves_the_live_debugger_whose_buttons_steer_the_run() {
    let (dir, run, rx) = start_slow_run("ta-cli-ui", &["run", "--ui", "--no-control"], Stdio::piped());
    let announced = rx.recv_timeout(Duration::from_secs(30)).expect("the URL is printed");
    let base = announced
        .strip_prefix("debugger: ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line: {announced}"))
        .to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");

    let (status, summary) = http("GET", &base, "/api/summary");
    assert_eq!(status, 200);
    assert!(
        summary.contains(r#""mode":"live""#) && summary.contains(r#""steering":true"#),
        "{summary}"
    );
    // Wait for the sleeper to appear in the live tree.
    let mut sleeper = None;
    for _ in 0..500 {
        let (_, tree) = http("GET", &base, "/api/tree");
        let tree: serde_json::Value = serde_json::from_str(&tree).unwrap();
        sleeper = tree["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r[2] == "sleeper" && r[4] == "running")
            .map(|r| r[0].as_str().unwrap().to_string());
        if sleeper.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let sleeper = sleeper.expect("the sleeper runs");
    // Cancel it from the page: the boss gets the failure and answers.
    let (status, body) = http("POST", &base, &format!("/api/run/{sleeper}/cancel"));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("cancel accepted"), "{body}");
    let out = run.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "the root answers after its child is cancelled"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("never"));
    std::fs::remove_dir_all(&dir).ok();
}
