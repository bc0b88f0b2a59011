//! Round trip of a request through a real socket, server and blocking client.

use std::sync::Arc;

use corral::ipc::{Client, Handler, IpcError, PeerCred, Replies, bind_private, serve};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
enum Req {
    Echo(String),
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Resp {
    Echoed(String, u32),
}

struct Echo;

impl Handler for Echo {
    type Request = Req;
    type Response = Resp;

    async fn handle(
        &self,
        peer: &PeerCred,
        request: Req,
        replies: &mut Replies<'_, Resp>,
    ) -> Result<(), IpcError> {
        match request {
            Req::Echo(s) => replies.reply(&Resp::Echoed(s, peer.uid)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corral/control.sock");
    let listener = bind_private(&path).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, Arc::new(Echo), rx));
    let p = path.clone();
    let answer = tokio::task::spawn_blocking(move || {
        let mut c = Client::<Req, Resp>::connect(&p).unwrap();
        c.request(&Req::Echo("hi".into())).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        answer,
        Resp::Echoed("hi".into(), nix::unistd::geteuid().as_raw())
    );
    tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}
