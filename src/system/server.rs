//! The system socket: reachable by every local user, every request authorised
//! from SO_PEERCRED before it reaches the state task.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};

use super::SystemError;
use super::state::Event;
use crate::ipc::server::{Handler, Replies, ServerConfig, serve_with};
use crate::ipc::system_proto::{SystemErrorKind, SystemRequest, SystemResponse, authorize};
use crate::ipc::{IpcError, PeerCred, socket};

/// Binds the system socket: directory 0755, socket 0666 (access is decided
/// per request, not by file mode).
pub fn bind_public(path: &Path) -> Result<UnixListener, SystemError> {
    Ok(socket::bind_shared(path)?)
}

/// Forwards authorised requests to the state task and sends its answers.
struct SystemHandler {
    /// The state task's inbox.
    events: mpsc::Sender<Event>,
}

impl Handler for SystemHandler {
    type Request = SystemRequest;
    type Response = SystemResponse;

    async fn handle(
        &self,
        peer: &PeerCred,
        request: SystemRequest,
        replies: &mut Replies<'_, SystemResponse>,
    ) -> Result<(), IpcError> {
        if let Err(refusal) = authorize(peer.uid, &request) {
            return replies.reply(&refusal).await;
        }
        let (reply, answer) = oneshot::channel();
        let event = Event::Request {
            peer_uid: peer.uid,
            peer_pid: peer.pid,
            request,
            reply,
        };
        let response = if self.events.send(event).await.is_err() {
            shutting_down()
        } else {
            // A `Login { wait }` answer may take as long as the manager needs
            // to become ready; the client chooses how long it waits.
            answer.await.unwrap_or_else(|_| shutting_down())
        };
        replies.reply(&response).await
    }
}

fn shutting_down() -> SystemResponse {
    SystemResponse::Error {
        kind: SystemErrorKind::Internal,
        message: "corrald --system is shutting down; try again once it is restarted".into(),
    }
}

/// Serves the system socket until `shutdown` resolves.
pub async fn serve(
    listener: UnixListener,
    events: mpsc::Sender<Event>,
    shutdown: impl Future,
) -> Result<(), IpcError> {
    let handler = Arc::new(SystemHandler { events });
    serve_with(listener, handler, ServerConfig::anyone(), shutdown).await
}
