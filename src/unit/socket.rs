//! `[Socket]`: what a `.socket` unit listens on and how it activates its
//! service, read as systemd 252 reads it (systemd.socket(5)).
//!
//! Only the definition lives here; binding the fds is
//! `supervisor::socket::listen`, the unit's life cycle
//! `supervisor::socket::machine`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::exec::{ExecCommand, path_simplify};
use super::model::{Applier, Unit, dedup_in_order, invalid};
use super::name::{UnitKind, UnitName};
use super::syntax::Directive;
use super::values::{parse_timeout, parse_timespan};
use super::{Diagnostic, DiagnosticKind, Severity, UnitError};

/// The longest path a unix socket address holds (`sun_path` less the NUL).
pub const UNIX_PATH_MAX: usize = 107;

/// systemd's default `MaxConnections=`.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 64;

/// The unit every socket is ordered before by default dependencies.
pub const SOCKETS_TARGET: &str = "sockets.target";

/// The socket type of a `Listen*=` directive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SocketType {
    /// `ListenStream=`: SOCK_STREAM (TCP, unix stream).
    Stream,
    /// `ListenDatagram=`: SOCK_DGRAM (UDP, unix datagram).
    Datagram,
    /// `ListenSequentialPacket=`: SOCK_SEQPACKET (unix only).
    SequentialPacket,
}

impl SocketType {
    /// The directive that declares a socket of this type.
    pub fn directive(self) -> &'static str {
        match self {
            SocketType::Stream => "ListenStream",
            SocketType::Datagram => "ListenDatagram",
            SocketType::SequentialPacket => "ListenSequentialPacket",
        }
    }

    /// Whether connections on it are accepted (`Accept=yes` is possible).
    pub fn accepts(self) -> bool {
        matches!(self, SocketType::Stream | SocketType::SequentialPacket)
    }
}

/// Where a socket listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SocketAddress {
    /// A unix socket in the file system.
    Path(PathBuf),
    /// A unix socket in the abstract namespace (`@name`, without the `@`).
    Abstract(String),
    /// An IPv4 or IPv6 address and port (`127.0.0.1:7777`, `[::1]:7777`).
    Inet(SocketAddr),
    /// A bare port: as systemd, `[::]:port` on every interface, dual-stack
    /// (IPv4 too, unless the kernel's `bindv6only` says otherwise).
    Port(u16),
}

impl fmt::Display for SocketAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocketAddress::Path(p) => write!(f, "{}", p.display()),
            SocketAddress::Abstract(n) => write!(f, "@{n}"),
            SocketAddress::Inet(a) => write!(f, "{a}"),
            SocketAddress::Port(p) => write!(f, "[::]:{p}"),
        }
    }
}

/// One `Listen*=` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Listen {
    /// A socket of a type at an address.
    Socket {
        /// Stream, datagram or sequential packet.
        kind: SocketType,
        /// Where.
        address: SocketAddress,
    },
    /// `ListenFIFO=`: a named pipe opened for reading.
    Fifo(PathBuf),
}

impl Listen {
    /// The file system node this entry creates, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Listen::Socket {
                address: SocketAddress::Path(p),
                ..
            }
            | Listen::Fifo(p) => Some(p),
            _ => None,
        }
    }

    /// The directive and value as `systemctl status` shows them
    /// (`ListenStream=/run/user/1000/bus`).
    pub fn describe(&self) -> String {
        match self {
            Listen::Socket { kind, address } => format!("{}={address}", kind.directive()),
            Listen::Fifo(p) => format!("ListenFIFO={}", p.display()),
        }
    }

    /// Whether `Accept=yes` can accept on it.
    pub fn accepts(&self) -> bool {
        matches!(self, Listen::Socket { kind, .. } if kind.accepts())
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// `[Socket]`, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketSection {
    /// `ListenStream=`, `ListenDatagram=`, `ListenSequentialPacket=`,
    /// `ListenFIFO=` in order: the service gets the fds in this order.
    pub listen: Vec<Listen>,
    /// `SocketMode=`: the mode of socket files and FIFOs (default 0666).
    pub socket_mode: u32,
    /// `DirectoryMode=`: the mode of parent directories created (default 0755).
    pub directory_mode: u32,
    /// `Backlog=`; `None`: the kernel's maximum (net.core.somaxconn), as
    /// systemd 252 passes INT_MAX.
    pub backlog: Option<u32>,
    /// `RemoveOnStop=`: unlink socket files, FIFOs and symlinks on stop.
    pub remove_on_stop: bool,
    /// `Symlinks=`: links to the one socket file or FIFO.
    pub symlinks: Vec<PathBuf>,
    /// `FileDescriptorName=`; `None`: the unit's name.
    pub fd_name: Option<String>,
    /// `PassCredentials=`: SO_PASSCRED on unix sockets.
    pub pass_credentials: bool,
    /// `ReusePort=`: SO_REUSEPORT.
    pub reuse_port: bool,
    /// `Priority=`: SO_PRIORITY of the listening sockets and of each
    /// connection accepted; above 6 it needs CAP_NET_ADMIN (a warning
    /// without it, as in systemd).
    pub priority: Option<i32>,
    /// `KeepAlive=`: SO_KEEPALIVE.
    pub keep_alive: bool,
    /// `KeepAliveTimeSec=`: TCP_KEEPIDLE, in whole seconds.
    pub keep_alive_time: Option<u32>,
    /// `KeepAliveIntervalSec=`: TCP_KEEPINTVL, in whole seconds.
    pub keep_alive_interval: Option<u32>,
    /// `KeepAliveProbes=`: TCP_KEEPCNT.
    pub keep_alive_probes: Option<u32>,
    /// `NoDelay=`: TCP_NODELAY.
    pub no_delay: bool,
    /// `Service=`: the service activated (Accept=no only).
    pub service: Option<UnitName>,
    /// `Accept=`: one service instance per connection.
    pub accept: bool,
    /// `MaxConnections=` (default 64).
    pub max_connections: u32,
    /// `MaxConnectionsPerSource=`; `None`: as `MaxConnections=`.
    pub max_connections_per_source: Option<u32>,
    /// `ExecStartPre=`: run before binding.
    pub exec_start_pre: Vec<ExecCommand>,
    /// `ExecStartPost=`: run after binding.
    pub exec_start_post: Vec<ExecCommand>,
    /// `ExecStopPre=`: run before closing the fds.
    pub exec_stop_pre: Vec<ExecCommand>,
    /// `ExecStopPost=`: run after closing them.
    pub exec_stop_post: Vec<ExecCommand>,
    /// `TimeoutSec=`: how long each of those commands may run; `None` is
    /// no limit. Default 90 s (systemd's DefaultTimeoutStartSec=).
    pub timeout: Option<Duration>,
    /// `TriggerLimitIntervalSec=`; `None`: the default, 2 s.
    pub trigger_limit_interval: Option<Duration>,
    /// `TriggerLimitBurst=`; `None`: the default, 20 (200 with `Accept=yes`).
    pub trigger_limit_burst: Option<u32>,
}

impl Default for SocketSection {
    fn default() -> Self {
        SocketSection {
            listen: Vec::new(),
            socket_mode: 0o666,
            directory_mode: 0o755,
            backlog: None,
            remove_on_stop: false,
            symlinks: Vec::new(),
            fd_name: None,
            pass_credentials: false,
            reuse_port: false,
            priority: None,
            keep_alive: false,
            keep_alive_time: None,
            keep_alive_interval: None,
            keep_alive_probes: None,
            no_delay: false,
            service: None,
            accept: false,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_source: None,
            exec_start_pre: Vec::new(),
            exec_start_post: Vec::new(),
            exec_stop_pre: Vec::new(),
            exec_stop_post: Vec::new(),
            timeout: Some(Duration::from_secs(90)),
            trigger_limit_interval: None,
            trigger_limit_burst: None,
        }
    }
}

/// Dependencies systemd adds to a socket unit on its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImplicitDeps {
    /// `Before=`: the triggered service (Accept=no) and, with default
    /// dependencies, `sockets.target`.
    pub before: Vec<UnitName>,
    /// `Triggers=`: the service a connection starts (Accept=no); its
    /// reverse is the service's `TriggeredBy=`.
    pub triggers: Vec<UnitName>,
}

impl SocketSection {
    /// The name passed in `LISTEN_FDNAMES` for each fd.
    pub fn fd_name<'a>(&'a self, unit: &'a UnitName) -> &'a str {
        self.fd_name.as_deref().unwrap_or(unit.as_str())
    }

    /// The limit of connections from one source address (Accept=yes).
    pub fn max_per_source(&self) -> u32 {
        self.max_connections_per_source
            .unwrap_or(self.max_connections)
    }

    /// `TriggerLimitIntervalSec=` and `TriggerLimitBurst=` with systemd
    /// 252's defaults: 2 s, and 20 activations (200 with `Accept=yes`).
    /// A zero in either turns the limit off.
    pub fn trigger_limit(&self) -> (Duration, u32) {
        let burst = if self.accept { 200 } else { 20 };
        (
            self.trigger_limit_interval
                .unwrap_or(Duration::from_secs(2)),
            self.trigger_limit_burst.unwrap_or(burst),
        )
    }

    /// The service a connection activates with `Accept=no`: `Service=`, or
    /// the socket's name with `.service` (`foo@x.socket` -> `foo@x.service`).
    /// `None` with `Accept=yes`, where each connection gets an instance of
    /// [`SocketSection::accept_template`].
    pub fn triggered_service(&self, unit: &UnitName) -> Option<UnitName> {
        if self.accept {
            return None;
        }
        Some(
            self.service
                .clone()
                .unwrap_or_else(|| unit.with_kind(UnitKind::Service)),
        )
    }

    /// The template instantiated per connection with `Accept=yes`
    /// (`foo.socket` -> `foo@.service`).
    pub fn accept_template(&self, unit: &UnitName) -> Option<UnitName> {
        if !self.accept {
            return None;
        }
        UnitName::parse_strict(&format!("{}@.service", unit.prefix())).ok()
    }

    /// The instance of [`SocketSection::accept_template`] for one accepted
    /// connection (`instance` as systemd writes it: `3-127.0.0.1:7777-127.0.0.1:40000`).
    pub fn accepted_instance(
        &self,
        unit: &UnitName,
        instance: &str,
    ) -> Result<UnitName, UnitError> {
        let template = self
            .accept_template(unit)
            .ok_or_else(|| UnitError::InvalidName {
                name: unit.to_string(),
                reason: "the socket does not accept connections (Accept=no)".to_string(),
            })?;
        template.with_instance(instance)
    }

    /// The dependencies systemd 252 adds to the socket `unit` by itself:
    /// `Before=` and `Triggers=` on the service (Accept=no) and, unless
    /// `DefaultDependencies=no`, `Before=sockets.target`. systemd's user
    /// manager also adds `Conflicts=`/`Before=shutdown.target`; corral has
    /// no shutdown.target (stopping the manager stops every unit), as for
    /// services.
    pub fn implicit_dependencies(&self, unit: &UnitName, default_deps: bool) -> ImplicitDeps {
        let mut d = ImplicitDeps::default();
        if let Some(s) = self.triggered_service(unit) {
            d.before.push(s.clone());
            d.triggers.push(s);
        }
        if default_deps && let Ok(t) = UnitName::parse_strict(SOCKETS_TARGET) {
            d.before.push(t);
        }
        d
    }
}

/// Parses a `ListenStream=`/`ListenDatagram=`/`ListenSequentialPacket=`
/// address as systemd's `socket_address_parse()`: `/path`, `@abstract`,
/// `[IPv6]:port`, `IPv4:port` or a bare port.
pub fn parse_address(v: &str) -> Result<SocketAddress, String> {
    if v.starts_with('/') {
        let p = path_simplify(v);
        if p.len() > UNIX_PATH_MAX {
            return Err(format!(
                "the path is {} bytes long; a unix socket path holds at most {UNIX_PATH_MAX}",
                p.len()
            ));
        }
        return Ok(SocketAddress::Path(PathBuf::from(p)));
    }
    if let Some(name) = v.strip_prefix('@') {
        if name.is_empty() {
            return Err("an abstract socket needs a name after '@'".to_string());
        }
        if name.len() > UNIX_PATH_MAX {
            return Err(format!(
                "the abstract name is {} bytes long; it holds at most {UNIX_PATH_MAX}",
                name.len()
            ));
        }
        return Ok(SocketAddress::Abstract(name.to_string()));
    }
    if v.bytes().all(|b| b.is_ascii_digit()) && !v.is_empty() {
        return match v.parse::<u16>() {
            Ok(0) | Err(_) => Err("a port is a number from 1 to 65535".to_string()),
            Ok(p) => Ok(SocketAddress::Port(p)),
        };
    }
    match v.parse::<SocketAddr>() {
        Ok(a) if a.port() == 0 => Err("a port is a number from 1 to 65535".to_string()),
        Ok(a) => Ok(SocketAddress::Inet(a)),
        Err(_) => Err(
            "not an address: write an absolute path, @abstract-name, IPv4:port, [IPv6]:port or a port"
                .to_string(),
        ),
    }
}

/// Parses an octal file mode (`0660`, `777`).
fn parse_mode(v: &str) -> Option<u32> {
    let m = u32::from_str_radix(v, 8).ok()?;
    (m <= 0o7777).then_some(m)
}

/// An absolute path, simplified, or why not.
fn absolute_path(v: &str) -> Result<PathBuf, String> {
    if !v.starts_with('/') {
        return Err(format!("'{v}' is not an absolute path"));
    }
    Ok(PathBuf::from(path_simplify(v)))
}

fn socket(unit: &mut Unit) -> &mut SocketSection {
    unit.socket.get_or_insert_with(Box::default)
}

impl Applier<'_> {
    /// Applies one directive of a `[Socket]` section.
    pub fn apply_socket(&mut self, unit: &mut Unit, d: &Directive) {
        let key = d.key.as_str();
        match key {
            "ListenStream" | "ListenDatagram" | "ListenSequentialPacket" | "ListenFIFO" => {
                self.listen(unit, d)
            }
            "SocketMode" | "DirectoryMode" => match parse_mode(&d.value) {
                Some(m) if key == "SocketMode" => socket(unit).socket_mode = m,
                Some(m) => socket(unit).directory_mode = m,
                None => invalid(
                    unit,
                    d,
                    format!(
                        "'{}' is not an octal file mode (like 0660); directive ignored",
                        d.value
                    ),
                ),
            },
            "Backlog" => match d.value.parse::<u32>() {
                Ok(n) => socket(unit).backlog = Some(n),
                Err(_) => invalid(
                    unit,
                    d,
                    format!("'{}' is not a count; directive ignored", d.value),
                ),
            },
            "Priority" => match d.value.trim().parse::<i32>() {
                Ok(n) => socket(unit).priority = Some(n),
                Err(_) => invalid(
                    unit,
                    d,
                    format!("'{}' is not an integer; directive ignored", d.value),
                ),
            },
            "MaxConnections" | "MaxConnectionsPerSource" => match d.value.parse::<u32>() {
                Ok(n) if n > 0 => {
                    if key == "MaxConnections" {
                        socket(unit).max_connections = n;
                    } else {
                        socket(unit).max_connections_per_source = Some(n);
                    }
                }
                _ => invalid(
                    unit,
                    d,
                    format!("'{}' is not a count above 0; directive ignored", d.value),
                ),
            },
            "RemoveOnStop" | "PassCredentials" | "ReusePort" | "Accept" | "KeepAlive"
            | "NoDelay" => {
                if let Some(b) = self.bool_value(unit, d) {
                    let s = socket(unit);
                    *match key {
                        "RemoveOnStop" => &mut s.remove_on_stop,
                        "PassCredentials" => &mut s.pass_credentials,
                        "ReusePort" => &mut s.reuse_port,
                        "KeepAlive" => &mut s.keep_alive,
                        "NoDelay" => &mut s.no_delay,
                        _ => &mut s.accept,
                    } = b;
                }
            }
            "KeepAliveTimeSec" | "KeepAliveIntervalSec" => {
                // systemd passes whole seconds to the kernel (at least 1).
                match parse_timespan(&d.value) {
                    Ok(None) => invalid(
                        unit,
                        d,
                        "a keep-alive time cannot be infinity; directive ignored".into(),
                    ),
                    Ok(Some(t)) => {
                        let secs = u32::try_from(t.as_secs().max(1)).unwrap_or(u32::MAX);
                        let s = socket(unit);
                        *if key == "KeepAliveTimeSec" {
                            &mut s.keep_alive_time
                        } else {
                            &mut s.keep_alive_interval
                        } = Some(secs);
                    }
                    Err(e) => invalid(unit, d, format!("{e}; directive ignored")),
                }
            }
            "KeepAliveProbes" => match d.value.trim().parse::<u32>() {
                Ok(n) => socket(unit).keep_alive_probes = Some(n),
                Err(_) => invalid(
                    unit,
                    d,
                    format!("'{}' is not a count; directive ignored", d.value),
                ),
            },
            "Symlinks" => {
                if d.value.is_empty() {
                    socket(unit).symlinks.clear();
                    return;
                }
                let Some(words) = self.words(unit, d) else {
                    return;
                };
                for w in words {
                    match absolute_path(&w) {
                        Ok(p) => socket(unit).symlinks.push(p),
                        Err(e) => invalid(unit, d, format!("{e}; this link is ignored")),
                    }
                }
            }
            "FileDescriptorName" => {
                let Some(v) = self.spec(unit, d, &d.value) else {
                    return;
                };
                // sd_listen_fds_with_names() splits on ':'; systemd refuses
                // control characters and names over 255 bytes.
                if v.is_empty() {
                    socket(unit).fd_name = None;
                } else if v.len() > 255 || v.contains(':') || v.chars().any(char::is_control) {
                    invalid(
                        unit,
                        d,
                        format!(
                            "'{v}' is not a valid fd name (at most 255 characters, no ':' or control characters); directive ignored"
                        ),
                    );
                } else {
                    socket(unit).fd_name = Some(v);
                }
            }
            "Service" => {
                let Some(v) = self.spec(unit, d, &d.value) else {
                    return;
                };
                match UnitName::parse_strict(&v) {
                    // In a template file `%i` is empty until an instance is
                    // loaded: `mariadb@%i.service` reads as a template there.
                    Ok(n)
                        if n.kind() == UnitKind::Service
                            && (!n.is_template() || unit.name.is_template()) =>
                    {
                        socket(unit).service = Some(n)
                    }
                    Ok(_) => invalid(
                        unit,
                        d,
                        format!(
                            "'{v}' is not a service (a template is not either); directive ignored"
                        ),
                    ),
                    Err(e) => invalid(unit, d, format!("{e}; directive ignored")),
                }
            }
            "TriggerLimitIntervalSec" => match parse_timespan(&d.value) {
                // infinity: one window for ever, as systemd's USEC_INFINITY.
                Ok(t) => socket(unit).trigger_limit_interval = Some(t.unwrap_or(Duration::MAX)),
                Err(e) => invalid(unit, d, format!("{e}; directive ignored")),
            },
            "TriggerLimitBurst" => match d.value.parse::<u32>() {
                Ok(n) => socket(unit).trigger_limit_burst = Some(n),
                Err(_) => invalid(
                    unit,
                    d,
                    format!("'{}' is not a count; directive ignored", d.value),
                ),
            },
            "TimeoutSec" => match parse_timeout(&d.value) {
                Ok(t) => socket(unit).timeout = t,
                Err(e) => invalid(unit, d, format!("{e}; directive ignored")),
            },
            "ExecStartPre" | "ExecStartPost" | "ExecStopPre" | "ExecStopPost" => {
                let commands = if d.value.is_empty() {
                    None
                } else {
                    Some(self.exec_commands(unit, d))
                };
                let s = socket(unit);
                let list = match key {
                    "ExecStartPre" => &mut s.exec_start_pre,
                    "ExecStartPost" => &mut s.exec_start_post,
                    "ExecStopPre" => &mut s.exec_stop_pre,
                    _ => &mut s.exec_stop_post,
                };
                match commands {
                    None => list.clear(),
                    Some(c) => list.extend(c),
                }
            }
            _ => self.unsupported(unit, d),
        }
    }

    fn listen(&mut self, unit: &mut Unit, d: &Directive) {
        if d.value.is_empty() {
            // An empty assignment resets the list, as for every list directive.
            socket(unit).listen.clear();
            return;
        }
        let Some(v) = self.spec(unit, d, &d.value) else {
            return;
        };
        let parsed = match d.key.as_str() {
            "ListenFIFO" => absolute_path(&v).map(Listen::Fifo),
            k => {
                let kind = match k {
                    "ListenStream" => SocketType::Stream,
                    "ListenDatagram" => SocketType::Datagram,
                    _ => SocketType::SequentialPacket,
                };
                parse_address(&v).and_then(|address| {
                    let unix =
                        matches!(address, SocketAddress::Path(_) | SocketAddress::Abstract(_));
                    if kind == SocketType::SequentialPacket && !unix {
                        Err(
                            "sequential packet sockets are unix sockets only (a path or @name)"
                                .to_string(),
                        )
                    } else {
                        Ok(Listen::Socket { kind, address })
                    }
                })
            }
        };
        match parsed {
            Ok(l) => socket(unit).listen.push(l),
            Err(e) => invalid(
                unit,
                d,
                format!("bad address '{v}': {e}; directive ignored"),
            ),
        }
    }

    /// Checks the combinations systemd 252 refuses a socket unit over.
    pub(crate) fn finish_socket(&mut self, unit: &mut Unit) {
        let Some(s) = unit.socket.as_mut() else {
            return;
        };
        dedup_in_order(&mut s.listen);
        dedup_in_order(&mut s.symlinks);
        let mut problems: Vec<(&str, String)> = Vec::new();
        if s.listen.is_empty() {
            problems.push((
                "ListenStream",
                "the socket has no Listen*= setting (ListenStream=, ListenDatagram=, ListenSequentialPacket=, ListenFIFO=); add what it listens on".to_string(),
            ));
        }
        if s.accept && s.listen.iter().any(|l| !l.accepts()) {
            problems.push((
                "Accept",
                // systemd 252's words, then what to do.
                "Unit configured for accepting sockets, but sockets are non-accepting. Refusing. (Accept=yes needs stream or sequential packet sockets only: datagram sockets and FIFOs cannot accept; set Accept=no)".to_string(),
            ));
        }
        if s.accept && s.service.is_some() {
            problems.push((
                "Service",
                "Explicit service configuration for accepting socket units not supported. Refusing. (Service= cannot be used with Accept=yes: each connection gets an instance of the NAME@.service template; remove it)".to_string(),
            ));
        }
        let links_ignored =
            !s.symlinks.is_empty() && s.listen.iter().filter(|l| l.path().is_some()).count() != 1;
        let file = unit
            .fragment()
            .or_else(|| unit.dropins.first().cloned())
            .unwrap_or_else(|| PathBuf::from(unit.name.as_str()));
        if links_ignored {
            if let Some(s) = unit.socket.as_mut() {
                s.symlinks.clear();
            }
            unit.diagnostics.push(Diagnostic {
                file: file.clone(),
                line: 0,
                directive: "Symlinks".to_string(),
                severity: Severity::Warning,
                kind: DiagnosticKind::Invalid,
                message: "Symlinks= needs exactly one socket path or FIFO to point to; ignored"
                    .to_string(),
                fatal: false,
            });
        }
        for (directive, message) in problems {
            unit.diagnostics.push(Diagnostic {
                file: file.clone(),
                line: 0,
                directive: directive.to_string(),
                severity: Severity::Error,
                kind: DiagnosticKind::Invalid,
                message,
                fatal: true,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unit::SpecifierContext;
    use crate::unit::loader::from_text;

    fn unit(name: &str, body: &str) -> Unit {
        let n = UnitName::parse_strict(name).unwrap();
        from_text(
            &n,
            Path::new(&format!("/u/{name}")),
            body,
            &SpecifierContext::example(),
        )
    }

    fn sock(body: &str) -> SocketSection {
        let u = unit("x.socket", &format!("[Socket]\n{body}"));
        let errs: Vec<String> = u.errors().map(|d| d.to_string()).collect();
        assert!(errs.is_empty(), "{errs:?}");
        *u.socket.unwrap()
    }

    fn stream(address: SocketAddress) -> Listen {
        Listen::Socket {
            kind: SocketType::Stream,
            address,
        }
    }

    #[test]
    fn addresses_as_systemd_reads_them() {
        let ok = [
            ("/run/a//b/", SocketAddress::Path("/run/a/b".into())),
            ("@bus", SocketAddress::Abstract("bus".into())),
            (
                "127.0.0.1:7777",
                SocketAddress::Inet("127.0.0.1:7777".parse().unwrap()),
            ),
            (
                "[::1]:7777",
                SocketAddress::Inet("[::1]:7777".parse().unwrap()),
            ),
            ("6600", SocketAddress::Port(6600)),
        ];
        for (v, want) in ok {
            assert_eq!(parse_address(v).unwrap(), want, "{v}");
        }
        for bad in [
            "",
            "0",
            "65536",
            "x.sock",
            "run/x",
            "@",
            "127.0.0.1",
            "127.0.0.1:0",
            "::1:80",
            "[::1]",
            "host:80",
        ] {
            assert!(parse_address(bad).is_err(), "{bad}");
        }
        let long = format!("/{}", "a".repeat(UNIX_PATH_MAX));
        assert!(parse_address(&long).unwrap_err().contains("at most 107"));
    }

    #[test]
    fn defaults() {
        let s = sock("ListenStream=%t/x\n");
        assert_eq!(
            s.listen,
            [stream(SocketAddress::Path("/run/user/1000/x".into()))]
        );
        assert_eq!((s.socket_mode, s.directory_mode), (0o666, 0o755));
        assert_eq!(s.backlog, None);
        assert!(!s.accept && !s.remove_on_stop && !s.pass_credentials && !s.reuse_port);
        assert_eq!(s.priority, None);
        assert!(!s.keep_alive && !s.no_delay);
        assert_eq!(s.keep_alive_time, None);
        assert_eq!(s.max_connections, 64);
        assert_eq!(s.max_per_source(), 64);
        assert_eq!(s.timeout, Some(Duration::from_secs(90)));
        let name = UnitName::parse_strict("x.socket").unwrap();
        assert_eq!(s.fd_name(&name), "x.socket");
        assert_eq!(s.triggered_service(&name).unwrap().as_str(), "x.service");
        assert_eq!(s.accept_template(&name), None);
        let inst = UnitName::parse_strict("foo@bar.socket").unwrap();
        assert_eq!(
            s.triggered_service(&inst).unwrap().as_str(),
            "foo@bar.service"
        );
    }

    #[test]
    fn every_supported_directive() {
        let s = sock(
            "ListenStream=/run/a.sock\nListenDatagram=127.0.0.1:5353\n\
             ListenSequentialPacket=@seq\nListenFIFO=/run/f\nListenStream=[::1]:80\n\
             SocketMode=0600\nDirectoryMode=700\nBacklog=5\nRemoveOnStop=yes\n\
             Symlinks=/run/l1 /run//l2\nFileDescriptorName=varlink\nPassCredentials=true\n\
             ReusePort=on\nService=other.service\nMaxConnections=10\nPriority=6\n\
             KeepAlive=yes\nKeepAliveTimeSec=2min\nKeepAliveIntervalSec=500ms\nKeepAliveProbes=4\n\
             NoDelay=yes\n\
             MaxConnectionsPerSource=2\nTimeoutSec=5\nExecStartPre=/bin/true a\n\
             ExecStartPost=-/bin/echo %n\nExecStopPre=/bin/true\nExecStopPost=/bin/false\n",
        );
        assert_eq!(
            s.listen,
            [
                stream(SocketAddress::Path("/run/a.sock".into())),
                Listen::Socket {
                    kind: SocketType::Datagram,
                    address: SocketAddress::Inet("127.0.0.1:5353".parse().unwrap()),
                },
                Listen::Socket {
                    kind: SocketType::SequentialPacket,
                    address: SocketAddress::Abstract("seq".into()),
                },
                Listen::Fifo("/run/f".into()),
                stream(SocketAddress::Inet("[::1]:80".parse().unwrap())),
            ]
        );
        assert_eq!((s.socket_mode, s.directory_mode), (0o600, 0o700));
        assert_eq!(s.backlog, Some(5));
        assert!(s.remove_on_stop && s.pass_credentials && s.reuse_port);
        assert_eq!(s.priority, Some(6));
        assert!(s.keep_alive && s.no_delay);
        // Whole seconds, at least one, as systemd hands them to the kernel.
        assert_eq!(
            (
                s.keep_alive_time,
                s.keep_alive_interval,
                s.keep_alive_probes
            ),
            (Some(120), Some(1), Some(4))
        );
        // Two file system nodes: Symlinks= has no single target and is dropped.
        assert!(s.symlinks.is_empty());
        assert_eq!(s.fd_name.as_deref(), Some("varlink"));
        assert_eq!(s.service.as_ref().unwrap().as_str(), "other.service");
        assert_eq!((s.max_connections, s.max_per_source()), (10, 2));
        assert_eq!(s.timeout, Some(Duration::from_secs(5)));
        assert_eq!(s.exec_start_pre[0].argv, ["/bin/true", "a"]);
        assert_eq!(s.exec_start_post[0].argv, ["/bin/echo", "x.socket"]);
        assert!(s.exec_start_post[0].flags.ignore_failure);
        assert_eq!(s.exec_start_post[0].origin.directive, "ExecStartPost");
        assert_eq!(s.exec_stop_pre.len(), 1);
        assert_eq!(s.exec_stop_post[0].argv, ["/bin/false"]);
        assert_eq!(
            s.listen.iter().map(Listen::describe).collect::<Vec<_>>()[1],
            "ListenDatagram=127.0.0.1:5353"
        );

        let s = sock(
            "ListenStream=/run/a.sock\nSymlinks=/run/l1 /run//l2\nListenStream=\nListenFIFO=/run/f\n",
        );
        assert_eq!(s.listen, [Listen::Fifo("/run/f".into())]);
        assert_eq!(
            s.symlinks,
            [PathBuf::from("/run/l1"), PathBuf::from("/run/l2")]
        );
    }

    #[test]
    fn bad_values_are_errors_on_their_line_and_the_assignment_is_dropped() {
        let u = unit(
            "x.socket",
            "[Socket]\nListenStream=/run/ok\nListenStream=bogus\nSocketMode=999\n\
             Backlog=-1\nMaxConnections=0\nService=x.target\nSymlinks=rel\n\
             FileDescriptorName=a:b\nAccept=maybe\nListenFIFO=fifo\n",
        );
        let errs: Vec<(usize, String)> =
            u.errors().map(|d| (d.line, d.directive.clone())).collect();
        let want: Vec<(usize, String)> = [
            (3, "ListenStream"),
            (4, "SocketMode"),
            (5, "Backlog"),
            (6, "MaxConnections"),
            (7, "Service"),
            (8, "Symlinks"),
            (9, "FileDescriptorName"),
            (10, "Accept"),
            (11, "ListenFIFO"),
        ]
        .into_iter()
        .map(|(l, k)| (l, k.to_string()))
        .collect();
        assert_eq!(errs, want);
        assert!(u.ensure_valid().is_ok(), "none of these is fatal alone");
        assert!(
            u.errors()
                .next()
                .unwrap()
                .message
                .contains("bad address 'bogus'")
        );
        assert_eq!(u.socket.unwrap().listen.len(), 1);
    }

    #[test]
    fn combinations_systemd_refuses() {
        let fatal = |body: &str| {
            let u = unit("x.socket", body);
            let e = u.ensure_valid().unwrap_err().to_string();
            assert!(u.errors().all(|d| d.fatal || d.line > 0), "{e}");
            e
        };
        assert!(fatal("[Unit]\nDescription=none\n").contains("no Listen*= setting"));
        assert!(fatal("[Socket]\nListenStream=bogus\n").contains("no Listen*= setting"));
        assert!(
            fatal("[Socket]\nListenDatagram=/run/d\nAccept=yes\n").contains(
                "Unit configured for accepting sockets, but sockets are non-accepting. Refusing."
            )
        );
        assert!(
            fatal("[Socket]\nListenStream=/run/s\nAccept=yes\nService=y.service\n").contains(
                "Explicit service configuration for accepting socket units not supported."
            )
        );
    }

    #[test]
    fn accept_yes_names_one_instance_per_connection() {
        let s = sock("ListenStream=127.0.0.1:7777\nAccept=yes\n");
        let n = UnitName::parse_strict("echo.socket").unwrap();
        assert_eq!(s.triggered_service(&n), None);
        assert_eq!(s.accept_template(&n).unwrap().as_str(), "echo@.service");
        assert_eq!(
            s.accepted_instance(&n, "3-127.0.0.1:7777-127.0.0.1:40000")
                .unwrap()
                .as_str(),
            "echo@3-127.0.0.1:7777-127.0.0.1:40000.service"
        );
        let d = s.implicit_dependencies(&n, true);
        assert!(d.triggers.is_empty());
        assert_eq!(d.before[0].as_str(), SOCKETS_TARGET);
    }

    #[test]
    fn unsupported_socket_directives_are_warned_with_their_line() {
        let u = unit(
            "x.socket",
            "[Socket]\nListenStream=/run/s\nBindIPv6Only=both\nSocketUser=nobody\nListenStrem=/x\n",
        );
        let w: Vec<(usize, DiagnosticKind)> =
            u.diagnostics.iter().map(|d| (d.line, d.kind)).collect();
        assert_eq!(
            w,
            [
                (3, DiagnosticKind::Unsupported),
                (4, DiagnosticKind::Unsupported),
                (5, DiagnosticKind::Unknown)
            ]
        );
        assert_eq!(
            u.last_unsupported("Socket", "BindIPv6Only").unwrap().value,
            "both"
        );
    }
}
