#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod control;
pub mod live;
pub mod server;

use std::net::SocketAddr;
use std::sync::Arc;

pub use control::{ControlAction, ControlError, ControlHandler, HubControl, NoSteering, SocketControl};
pub use live::LiveHub;
pub use server::{TreeRows, UiSource, router};

/// Errors starting the debugger.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The address is not a loopback address (the debugger only serves locally).
    #[error("{0} is not a loopback address: the debugger serves 127.0.0.1 only")]
    NotLoopback(SocketAddr),
}

/// A running debugger server.
#[derive(Debug)]
pub struct UiHandle {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl UiHandle {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The page's URL.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Stops the server: open connections get a second to finish (an
    /// update stream never does), then the server is aborted.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if tokio::time::timeout(std::time::Duration::from_secs(1), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }

    /// Waits until the server stops (it runs until shut down).
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}

/// Serves `source` on `addr` (a loopback address; port 0 picks a free one)
/// on the current tokio runtime.
pub async fn serve(
    source: UiSource,
    addr: SocketAddr,
    control: Option<Arc<dyn ControlHandler>>,
) -> Result<UiHandle, UiError> {
    if !addr.ip().is_loopback() {
        return Err(UiError::NotLoopback(addr));
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| UiError::Bind { addr, source })?;
    serve_on(source, listener, control)
}

/// Serves `source` on an already bound loopback listener (a std listener
/// bound early, to fail fast and learn the port before a runtime exists).
pub async fn serve_std(
    source: UiSource,
    listener: std::net::TcpListener,
    control: Option<Arc<dyn ControlHandler>>,
) -> Result<UiHandle, UiError> {
    let addr = listener.local_addr().map_err(|source| UiError::Bind {
        addr: loopback(0),
        source,
    })?;
    if !addr.ip().is_loopback() {
        return Err(UiError::NotLoopback(addr));
    }
    let listener = listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpListener::from_std(listener))
        .map_err(|source| UiError::Bind { addr, source })?;
    serve_on(source, listener, control)
}

fn serve_on(
    source: UiSource,
    listener: tokio::net::TcpListener,
    control: Option<Arc<dyn ControlHandler>>,
) -> Result<UiHandle, UiError> {
    let local = listener.local_addr().map_err(|source| UiError::Bind {
        addr: loopback(0),
        source,
    })?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = router(source, control);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
    });
    Ok(UiHandle {
        addr: local,
        shutdown: Some(tx),
        task,
    })
}

/// `127.0.0.1:port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}
