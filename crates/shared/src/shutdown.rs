//! Shutdown: SIGTERM or SIGINT cancel one token, which every long-lived loop watches.
//!
//! Order, service by service: stop consuming; let in-flight work finish within a deadline;
//! acknowledge what completed (the broker redelivers the rest, which is why handlers are
//! idempotent); close channels and the connection; flush telemetry last.

use tokio_util::sync::CancellationToken;

/// A token cancelled on the first SIGTERM or SIGINT. The only signal handling in the workspace.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        cancel.cancel();
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
