//! A connection from accept to close: the login phase (`login_phase.rs`), then the
//! full-feature phase (`connection/`) with the session it established.
//!
//! This is the one module that knows both phases. They meet only through the handoff types
//! of `ffp.rs` ([`Established`](crate::ffp::Established), [`ConnEnd`]), so the dependency
//! runs one way: `serve` → `login_phase`, `serve` → `connection`, both → `ffp`.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use drivers::executor;

use crate::admission::PendingLogin;
use crate::connection;
use crate::ffp::ConnEnd;
use crate::login_phase;
use crate::server::{Portal, Server};
use crate::transport::tcp::{self, TcpTransport};
use crate::transport::Transport;
use crate::writer;

/// Serves one accepted TCP connection until it ends, then closes its socket. `pending` is the
/// connection's place among those that have not logged in (`admission.rs`); it is given back
/// once the login completes.
pub async fn serve_connection(
    server: Arc<Server>,
    fd: OwnedFd,
    portal: Portal,
    shard: usize,
    pending: PendingLogin,
) {
    let transport = TcpTransport::new(fd.as_raw_fd());
    serve(server, transport, portal, shard, pending).await;
    tcp::close(fd).await;
}

/// Serves one connection over `transport` until it ends: login, then the full-feature phase.
async fn serve<T: Transport>(
    server: Arc<Server>,
    transport: T,
    portal: Portal,
    shard: usize,
    pending: PendingLogin,
) {
    let (sender, writer_fut) = writer::writer(&transport);
    let writer_task = executor::spawn(writer_fut);
    let established =
        login_phase::login(&server, &transport, &sender, portal, pending.source()).await;
    let registered = match established {
        Some(established) => {
            // A logged-in session no longer counts toward the pending-login caps.
            drop(pending);
            let tsih = established.tsih;
            let end = connection::full_feature_phase(
                transport.clone(),
                Arc::clone(&server),
                sender.clone(),
                established,
                server.keepalive,
            )
            .await;
            if let ConnEnd::Protocol(why) = &end {
                log::warn!("shard {shard}: connection dropped: {why}");
            }
            Some(tsih)
        }
        None => None,
    };
    // Let queued responses (logout, reject, login failure) reach the initiator.
    sender.close();
    let _ = executor::timeout_after(Duration::from_secs(2), writer_task).await;
    if let Some(tsih) = registered {
        server.sessions.remove(tsih, transport.registry_handle());
    }
    transport.shutdown();
}
