//! The local control socket: steering from another terminal.
//!
//! A Unix domain socket speaking JSON lines. Each request line is a
//! [`ControlRequest`]; each gets one [`ControlResponse`] line. The socket is a
//! human control surface: every command is sent as [`Actor::Human`] and goes
//! through the same policy checks as any other steering. A malformed line gets
//! an error response naming the line and the parse error, and the connection
//! stays usable; nothing is applied for it.
//!
//! Sockets live in [`control_dir`], one per root run, named
//! `<root-run-id>.sock`; [`find_socket_for`] finds the one that knows a run.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tinyagents_core::{Actor, CorrelationId, RunId, SteeringCommand, SteeringRequest, SteeringTarget};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::{RunStatus, SteeringAck, SteeringHub};

/// The longest request line accepted.
const MAX_LINE: usize = 64 * 1024;

/// A request on the control socket.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ControlRequest {
    /// Steer a run.
    Steer {
        /// The target.
        target: SteeringTarget,
        /// The command.
        command: SteeringCommand,
        /// Who is steering (recorded as `Actor::Human { id }`).
        #[serde(default)]
        human: Option<String>,
    },
    /// List live runs.
    Status,
}

/// A response on the control socket.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ControlResponse {
    /// The command was accepted.
    Accepted {
        /// Details.
        ack: SteeringAck,
    },
    /// Policy or the target refused it.
    Rejected {
        /// The request.
        correlation_id: CorrelationId,
        /// The deciding policy.
        policy_id: String,
        /// Why.
        reason: String,
    },
    /// Live runs.
    Status {
        /// One entry per live run.
        runs: Vec<RunStatus>,
    },
    /// The request could not be read.
    Error {
        /// What was wrong.
        message: String,
    },
}

/// Where control sockets live: `$TINYAGENTS_CONTROL_DIR`, or
/// `<temp dir>/tinyagents-control`.
pub fn control_dir() -> PathBuf {
    std::env::var_os("TINYAGENTS_CONTROL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("tinyagents-control"))
}

/// The socket path for a root run.
pub fn socket_path(root: RunId) -> PathBuf {
    control_dir().join(format!("{root}.sock"))
}

/// A running control socket; removed when dropped.
#[derive(Debug)]
pub struct ControlServer {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl ControlServer {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Serves `hub` on a Unix socket at `path` (a stale file there is replaced).
pub fn serve_control_socket(hub: Arc<SteeringHub>, path: &Path) -> std::io::Result<ControlServer> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let hub = hub.clone();
            tokio::spawn(async move {
                let _ = serve_connection(hub, stream).await;
            });
        }
    });
    Ok(ControlServer {
        path: path.to_path_buf(),
        task,
    })
}

async fn serve_connection(hub: Arc<SteeringHub>, stream: UnixStream) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = String::new();
    let mut n = 0u64;
    loop {
        line.clear();
        let read = (&mut reader).take(MAX_LINE as u64 + 1).read_line(&mut line).await?;
        if read == 0 {
            return Ok(());
        }
        n += 1;
        let too_long = line.len() > MAX_LINE && !line.ends_with('\n');
        let response = if too_long {
            ControlResponse::Error {
                message: format!("request line {n} is longer than {MAX_LINE} bytes; closing"),
            }
        } else if line.trim().is_empty() {
            continue;
        } else {
            handle(&hub, &line, n)
        };
        let mut out = serde_json::to_string(&response)
            .unwrap_or_else(|e| format!("{{\"result\":\"error\",\"message\":\"{e}\"}}"));
        out.push('\n');
        write.write_all(out.as_bytes()).await?;
        if too_long {
            return Ok(());
        }
    }
}

fn handle(hub: &SteeringHub, line: &str, n: u64) -> ControlResponse {
    let request: ControlRequest = match serde_json::from_str(line) {
        Ok(r) => r,
        Err(e) => {
            return ControlResponse::Error {
                message: format!("malformed request on line {n}: {e}"),
            };
        }
    };
    match request {
        ControlRequest::Status => ControlResponse::Status { runs: hub.live_runs() },
        ControlRequest::Steer { target, command, human } => {
            let actor = Actor::Human {
                id: human.unwrap_or_else(|| "control-socket".into()).into(),
            };
            match hub.steer(SteeringRequest::new(actor, target, command)) {
                Ok(ack) => ControlResponse::Accepted { ack },
                Err(r) => ControlResponse::Rejected {
                    correlation_id: r.correlation_id,
                    policy_id: r.policy_id.to_string(),
                    reason: r.reason,
                },
            }
        }
    }
}

/// A client of a control socket.
#[derive(Debug)]
pub struct ControlClient {
    reader: BufReader<tokio::net::unix::OwnedReadHalf>,
    writer: tokio::net::unix::OwnedWriteHalf,
}

impl ControlClient {
    /// Connects to the socket at `path`.
    pub async fn connect(path: &Path) -> std::io::Result<Self> {
        let (read, writer) = UnixStream::connect(path).await?.into_split();
        Ok(Self {
            reader: BufReader::new(read),
            writer,
        })
    }

    /// Sends one request and reads its response.
    pub async fn request(&mut self, request: &ControlRequest) -> std::io::Result<ControlResponse> {
        let mut line = serde_json::to_string(request).map_err(std::io::Error::other)?;
        line.push('\n');
        self.send_raw(&line).await
    }

    /// Sends raw text (one line) and reads the response; for tests of bad input.
    pub async fn send_raw(&mut self, line: &str) -> std::io::Result<ControlResponse> {
        self.writer.write_all(line.as_bytes()).await?;
        let mut resp = String::new();
        if self.reader.read_line(&mut resp).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "control socket closed",
            ));
        }
        serde_json::from_str(&resp).map_err(std::io::Error::other)
    }
}

/// Finds the control socket of the tree that has `run` live.
pub async fn find_socket_for(run: RunId) -> Option<PathBuf> {
    let direct = socket_path(run);
    if direct.exists() {
        return Some(direct);
    }
    let entries = std::fs::read_dir(control_dir()).ok()?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "sock") {
            continue;
        }
        let Ok(mut client) = ControlClient::connect(&path).await else {
            continue;
        };
        if let Ok(ControlResponse::Status { runs }) = client.request(&ControlRequest::Status).await
            && runs.iter().any(|r| r.run_id == run)
        {
            return Some(path);
        }
    }
    None
}
