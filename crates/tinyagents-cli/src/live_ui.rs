//! `tinyagents run --ui[=ADDR]`: the web debugger on a run in progress.
//!
//! [`start`] (called by `tinyagents run` before models are built) creates a
//! [`LiveHub`] and serves the debugger on 127.0.0.1 from a thread of its
//! own, printing the URL on stderr. [`attach`] (called when the run's
//! config is final) tees the run's events into the hub, so the page is told
//! of every change over server-sent events, and binds the page's
//! pause / resume / cancel buttons to the run's [`SteeringHub`]: a button
//! is an [`Actor::Human`] steering request, checked by the same policy as
//! `tinyagents steer` (a refusal is shown in the page with its reason).
//! [`recorder`] gives scripted models the hub as an I/O recorder, so the
//! page shows transcripts.
//!
//! The server stops when the run ends: [`finish`] (called by `tinyagents
//! run` before it exits) stops accepting connections and lets requests in
//! flight (a button's answer) complete, for at most a second, so a click
//! that ends the run still gets its reply.
//!
//! [`SteeringHub`]: tinyagents_harness::steering::SteeringHub
//! [`Actor::Human`]: tinyagents_core::Actor::Human

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use tinyagents_core::{RunConfig, TeeSink};
use tinyagents_trace::{IoRecorder, TeeRecorder};
use tinyagents_ui::{HubControl, LiveHub, UiSource};

struct LiveUi {
    hub: Arc<LiveHub>,
    control: Arc<HubControl>,
    /// Tells the server thread to stop; its handle, to wait for it.
    stop: Mutex<Option<(tokio::sync::oneshot::Sender<()>, std::thread::JoinHandle<()>)>>,
}

static LIVE_UI: OnceLock<LiveUi> = OnceLock::new();

/// Parses `--ui`'s value: nothing (a free port), `PORT`, or `HOST:PORT`
/// (a loopback host).
pub fn parse_addr(value: Option<&str>) -> Result<SocketAddr, String> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(tinyagents_ui::loopback(0));
    };
    if let Ok(port) = value.parse::<u16>() {
        return Ok(tinyagents_ui::loopback(port));
    }
    let addr: SocketAddr = value
        .parse()
        .map_err(|_| format!("--ui={value}: expected PORT or 127.0.0.1:PORT"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "--ui={value}: the debugger serves on a loopback address only (127.0.0.1)"
        ));
    }
    Ok(addr)
}

/// Starts the debugger for this process's run (see the module docs);
/// prints its URL on stderr.
pub fn start(value: Option<&str>) -> Result<SocketAddr, String> {
    let addr = parse_addr(value)?;
    let hub = LiveHub::new();
    let control = HubControl::late();
    let listener = std::net::TcpListener::bind(addr).map_err(|e| format!("--ui: cannot listen on {addr}: {e}"))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("--ui: cannot listen on {addr}: {e}"))?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<String, String>>();
    let source = UiSource::Live(hub.clone());
    let handler: Arc<dyn tinyagents_ui::ControlHandler> = control.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("tinyagents-ui".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("--ui: cannot start the server runtime: {e}")));
                    return;
                }
            };
            runtime.block_on(async move {
                match tinyagents_ui::serve_std(source, listener, Some(handler)).await {
                    Ok(handle) => {
                        let _ = ready_tx.send(Ok(handle.url()));
                        let _ = stop_rx.await;
                        handle.shutdown().await;
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("--ui: {e}")));
                    }
                }
            });
        })
        .map_err(|e| format!("--ui: cannot start the server thread: {e}"))?;
    let url = ready_rx
        .recv()
        .map_err(|_| "--ui: the server thread exited".to_string())??;
    eprintln!("debugger: {url} (live; its buttons pause, resume and cancel runs)");
    let _ = LIVE_UI.set(LiveUi {
        hub,
        control,
        stop: Mutex::new(Some((stop_tx, thread))),
    });
    Ok(local)
}

/// Stops the debugger started by [`start`], if any: no new connections,
/// requests in flight finish (at most a second). Called once the run ended.
pub fn finish() {
    let Some(ui) = LIVE_UI.get() else { return };
    let stop = ui.stop.lock().ok().and_then(|mut s| s.take());
    if let Some((tx, thread)) = stop {
        let _ = tx.send(());
        let _ = thread.join();
    }
}

/// Tees `config`'s events into the debugger and binds its buttons to the
/// config's steering hub; `config` unchanged without `--ui`.
pub fn attach(config: RunConfig) -> RunConfig {
    let Some(ui) = LIVE_UI.get() else {
        return config;
    };
    if let Some(hooks) = &config.hooks {
        ui.control.bind(hooks.clone());
    }
    let sink = config.sink.clone();
    config.sink(Arc::new(TeeSink(sink, ui.hub.clone())))
}

/// The I/O recorder scripted models are wrapped with: the `--trace` sink,
/// the `--ui` hub, both, or none.
pub fn recorder() -> Option<Arc<dyn IoRecorder>> {
    let trace: Option<Arc<dyn IoRecorder>> = crate::run::trace_sink().map(|t| t as Arc<dyn IoRecorder>);
    let live: Option<Arc<dyn IoRecorder>> = LIVE_UI.get().map(|ui| ui.hub.clone() as Arc<dyn IoRecorder>);
    match (trace, live) {
        (Some(a), Some(b)) => Some(Arc::new(TeeRecorder(a, b))),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ui_addresses_are_loopback_ports() {
        assert_eq!(parse_addr(None), Ok(tinyagents_ui::loopback(0)));
        assert_eq!(parse_addr(Some("8123")), Ok(tinyagents_ui::loopback(8123)));
        assert_eq!(parse_addr(Some("127.0.0.1:9")), Ok(tinyagents_ui::loopback(9)));
        assert!(parse_addr(Some("0.0.0.0:80")).is_err_and(|e| e.contains("loopback")));
        assert!(parse_addr(Some("nowhere")).is_err_and(|e| e.contains("expected PORT")));
    }
}
