//! systemctl's way to the user manager, for the one thing units ask of it:
//! the environment block.
//!
//! `systemctl --user` talks to its manager over a private D-Bus connection
//! at `$XDG_RUNTIME_DIR/systemd/private`, and only without one falls back to
//! the session bus. Packaged units call it: Debian's dbus.socket runs
//! `systemctl --user set-environment DBUS_SESSION_BUS_ADDRESS=...` as its
//! `ExecStartPost=`, and session scripts run `systemctl --user
//! import-environment DISPLAY ...`. Under corral, with nobody at the private
//! socket, that systemctl went to the session bus, the very socket being
//! started, and hung there 90 s before its failure was ignored; a session
//! script's variables never arrived. So corrald listens there too (when no
//! systemd user manager does) and answers `SetEnvironment`,
//! `UnsetEnvironment` and `UnsetAndSetEnvironment` of
//! `org.freedesktop.systemd1.Manager` from the same block `corral
//! set-environment` changes. Every other call gets an error that names
//! the `corral` command to use instead.
//!
//! The protocol part is small: SASL EXTERNAL (the peer's uid, from
//! SO_PEERCRED, must be ours or root's), no file descriptors, and method
//! calls whose arguments are arrays of strings (supervisor::dbus).

use std::io;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use super::control::Query;
use super::dbus::{self, Message, Value};
use super::manager::Input;

/// The manager's queue.
type InputTx = tokio::sync::mpsc::UnboundedSender<Input>;
use crate::ipc::proto::Response;

/// The socket's path below the runtime directory, as systemctl looks for it.
pub const SOCKET: &str = "systemd/private";

/// The manager's interface, as systemctl calls it.
const MANAGER: &str = "org.freedesktop.systemd1.Manager";

/// Longest SASL line we read before giving up on a peer.
const MAX_LINE: usize = 4096;

/// Binds `runtime_dir/systemd/private` unless a live manager (systemd's)
/// already answers there; a stale socket file is replaced. `None` when it
/// is taken or cannot be made (the reason goes to stderr): systemctl then
/// behaves as it would without us.
pub fn bind(runtime_dir: &Path) -> Option<(UnixListener, PathBuf)> {
    let path = runtime_dir.join(SOCKET);
    if std::os::unix::net::UnixStream::connect(&path).is_ok() {
        eprintln!(
            "corrald: {} belongs to a running systemd user manager; systemctl --user talks to it, not to corral",
            path.display()
        );
        return None;
    }
    let dir = path.parent().expect("SOCKET has a directory");
    let made = std::fs::create_dir_all(dir)
        .and_then(|()| match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
        .and_then(|()| UnixListener::bind(&path));
    match made {
        Ok(l) => Some((l, path)),
        Err(e) => {
            eprintln!(
                "corrald: cannot listen on {} for systemctl --user: {e}",
                path.display()
            );
            None
        }
    }
}

/// Serves systemctl's connections until the task is dropped.
pub async fn serve(listener: UnixListener, tx: InputTx) {
    let own = nix::unistd::geteuid().as_raw();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // A client that gave up before the accept concerns nobody else.
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
            // Out of fds or memory: retrying at once would spin, and nothing
            // tells when it is over; systemctl does without us, as before.
            Err(e) => {
                eprintln!("corrald: stopped answering systemctl --user: {e}");
                return;
            }
        };
        let allowed = stream
            .peer_cred()
            .is_ok_and(|c| c.uid() == own || c.uid() == 0);
        if !allowed {
            // The socket's directory is the user's; a stranger learns nothing.
            continue;
        }
        let tx = tx.clone();
        tokio::spawn(async move {
            // A peer that breaks the protocol or goes away ends its connection only.
            let _ = connection(stream, tx).await;
        });
    }
}

/// One peer: the SASL exchange, then its method calls.
async fn connection(mut stream: UnixStream, tx: InputTx) -> io::Result<()> {
    let mut buf = Vec::new();
    if !authenticate(&mut stream, &mut buf).await? {
        return Ok(());
    }
    let mut serial = 0u32;
    loop {
        let (n, call) = loop {
            match dbus::next_message(&buf) {
                Ok(Some(m)) => break m,
                Ok(None) => {}
                Err(_) => return Ok(()),
            }
            if read_more(&mut stream, &mut buf).await? == 0 {
                return Ok(());
            }
        };
        buf.drain(..n);
        // Only method calls are answered; a call that asked for no reply gets none.
        if call.kind != 1 {
            continue;
        }
        let answer = answer(&call, &tx).await;
        if call.flags & 1 != 0 {
            continue;
        }
        serial = serial.wrapping_add(1).max(1);
        let bytes = match answer {
            Ok(()) => dbus::method_return(serial, call.serial),
            Err((name, message)) => dbus::error_reply(serial, call.serial, name, &message),
        };
        stream.write_all(&bytes).await?;
    }
}

async fn read_more(stream: &mut UnixStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut chunk = [0u8; 4096];
    let n = stream.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

/// The server's side of SASL, up to BEGIN (what follows stays in `buf`).
/// EXTERNAL is the one mechanism: the kernel's peer credentials were
/// checked at accept. Unix fds are not offered.
async fn authenticate(stream: &mut UnixStream, buf: &mut Vec<u8>) -> io::Result<bool> {
    // The client's first byte is a NUL (credentials passing on old systems).
    while buf.is_empty() {
        if read_more(stream, buf).await? == 0 {
            return Ok(false);
        }
    }
    if buf[0] != 0 {
        return Ok(false);
    }
    buf.remove(0);
    // systemctl does not check the server GUID; it only has to be 32 hex digits.
    let guid: String = format!("{:032x}", crate::journal::random_id());
    let mut sasl = Sasl::default();
    loop {
        let line = loop {
            if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&buf[..i]).into_owned();
                buf.drain(..i + 2);
                break line;
            }
            if buf.len() > MAX_LINE || read_more(stream, buf).await? == 0 {
                return Ok(false);
            }
        };
        let reply = match sasl.reply(&line, &guid) {
            SaslStep::Reply(r) => r,
            SaslStep::Begin => return Ok(true),
        };
        stream.write_all(reply.as_bytes()).await?;
    }
}

/// What the server answers to one SASL command.
#[derive(Debug, PartialEq, Eq)]
enum SaslStep {
    Reply(String),
    Begin,
}

/// Where the server is in the exchange: EXTERNAL without an initial
/// response (sd-bus's way: `AUTH EXTERNAL`, then an empty `DATA`) is
/// challenged with `DATA` and accepted on the client's answer.
#[derive(Default)]
struct Sasl {
    awaiting_data: bool,
}

impl Sasl {
    fn reply(&mut self, line: &str, guid: &str) -> SaslStep {
        let mut words = line.split(' ');
        let step = match (words.next(), words.next(), words.next()) {
            (Some("AUTH"), Some("EXTERNAL"), None) => {
                self.awaiting_data = true;
                return SaslStep::Reply("DATA\r\n".into());
            }
            (Some("AUTH"), Some("EXTERNAL"), Some(_)) => SaslStep::Reply(format!("OK {guid}\r\n")),
            (Some("DATA"), _, _) if self.awaiting_data => SaslStep::Reply(format!("OK {guid}\r\n")),
            (Some("AUTH" | "CANCEL" | "DATA" | "ERROR"), _, _) => {
                SaslStep::Reply("REJECTED EXTERNAL\r\n".into())
            }
            (Some("NEGOTIATE_UNIX_FD"), _, _) => {
                SaslStep::Reply("ERROR \"file descriptors are not passed here\"\r\n".into())
            }
            (Some("BEGIN"), _, _) => SaslStep::Begin,
            _ => SaslStep::Reply("ERROR \"unknown command\"\r\n".into()),
        };
        self.awaiting_data = false;
        step
    }
}

/// The answer to one method call: done, or (error name, message).
async fn answer(call: &Message, tx: &InputTx) -> Result<(), (&'static str, String)> {
    let member = call.member.as_deref().unwrap_or("");
    let ours = matches!(call.interface.as_deref(), None | Some(MANAGER));
    let list = |i: usize| match call.args.get(i) {
        Some(Value::StrList(l)) => Some(l.clone()),
        _ => None,
    };
    let invalid = || {
        (
            "org.freedesktop.DBus.Error.InvalidArgs",
            format!("{member} takes an array of strings"),
        )
    };
    let queries = match (ours, member) {
        (_, "Ping") if call.interface.as_deref() == Some("org.freedesktop.DBus.Peer") => {
            return Ok(());
        }
        (true, "SetEnvironment") => vec![Query::SetEnvironment {
            assignments: list(0).ok_or_else(invalid)?,
        }],
        (true, "UnsetEnvironment") => vec![Query::UnsetEnvironment {
            names: list(0).ok_or_else(invalid)?,
        }],
        (true, "UnsetAndSetEnvironment") => vec![
            Query::UnsetEnvironment {
                names: list(0).ok_or_else(invalid)?,
            },
            Query::SetEnvironment {
                assignments: list(1).ok_or_else(invalid)?,
            },
        ],
        _ => {
            return Err((
                "org.freedesktop.DBus.Error.NotSupported",
                format!(
                    "this is corral's user manager: systemctl --user can set-environment, \
                     unset-environment and import-environment here; for {member:?} use `corral` \
                     (see corral --help)"
                ),
            ));
        }
    };
    for query in queries {
        let answer = super::control::ask(tx, query).await.ok_or((
            "org.freedesktop.DBus.Error.NoServer",
            "the corral manager is shutting down".to_string(),
        ))?;
        if let Response::Error(f) = answer {
            return Err(("org.freedesktop.DBus.Error.InvalidArgs", f.message));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_takes_external_and_refuses_the_rest() {
        let g = "0123456789abcdef0123456789abcdef";
        let ok = || SaslStep::Reply(format!("OK {g}\r\n"));
        let rejected = || SaslStep::Reply("REJECTED EXTERNAL\r\n".into());
        // Each conversation from a fresh server: (client line, answer)...
        let conversations: [&[(&str, SaslStep)]; 5] = [
            // sd-bus: EXTERNAL without an initial response, then empty DATA.
            &[
                ("AUTH EXTERNAL", SaslStep::Reply("DATA\r\n".into())),
                ("DATA", ok()),
                (
                    "NEGOTIATE_UNIX_FD",
                    SaslStep::Reply("ERROR \"file descriptors are not passed here\"\r\n".into()),
                ),
                ("BEGIN", SaslStep::Begin),
            ],
            // libdbus: the uid as the initial response.
            &[("AUTH EXTERNAL 30", ok()), ("BEGIN", SaslStep::Begin)],
            // DATA out of turn, other mechanisms, CANCEL: refused.
            &[
                ("DATA", rejected()),
                ("AUTH DBUS_COOKIE_SHA1 30", rejected()),
            ],
            &[
                ("AUTH", rejected()),
                ("AUTH EXTERNAL", SaslStep::Reply("DATA\r\n".into())),
                ("CANCEL", rejected()),
                ("DATA", rejected()),
            ],
            &[(
                "HELLO",
                SaslStep::Reply("ERROR \"unknown command\"\r\n".into()),
            )],
        ];
        for conversation in conversations {
            let mut sasl = Sasl::default();
            for (line, want) in conversation {
                assert_eq!(&sasl.reply(line, g), want, "{line} in {conversation:?}");
            }
        }
    }

    #[test]
    fn replies_parse_back() {
        let (n, m) = dbus::next_message(&dbus::method_return(7, 42))
            .unwrap()
            .unwrap();
        assert_eq!(n, dbus::method_return(7, 42).len());
        assert_eq!((m.kind, m.serial, m.reply_serial), (2, 7, Some(42)));
        let e = dbus::error_reply(8, 43, "org.freedesktop.DBus.Error.NotSupported", "no");
        let (_, m) = dbus::next_message(&e).unwrap().unwrap();
        assert_eq!((m.kind, m.serial, m.reply_serial), (3, 8, Some(43)));
        assert_eq!(
            m.error_name.as_deref(),
            Some("org.freedesktop.DBus.Error.NotSupported")
        );
        assert_eq!(m.str_arg(0), Some("no"));
    }
}
