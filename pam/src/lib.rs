//! `pam_corral.so`: a PAM session module for corral.
//!
//! `open_session` registers a session of the user with `corrald --system`
//! and waits (up to `timeout=` seconds) until the user's manager is ready, then
//! exports `XDG_RUNTIME_DIR` and, when `$XDG_RUNTIME_DIR/bus` is a socket,
//! `DBUS_SESSION_BUS_ADDRESS`. `close_session` unregisters it.
//!
//! A PAM module runs inside sshd, login, su...: it must never block or fail a
//! login because corral is absent or broken. Every failure is logged to syslog
//! and the module returns `PAM_SUCCESS`. It uses a blocking std socket with
//! timeouts (no async runtime inside another program), all of one call —
//! connect, handshake, answer — within one `timeout=` (a hung daemon, even
//! one whose listen queue is full, delays a login by at most that), and holds
//! SIGPIPE back while it talks, so a vanished daemon cannot kill the host
//! process.
//!
//! The session belongs to the process calling `open_session` (the daemon
//! watches it): if that process dies without `close_session`, the daemon
//! ends the session by itself.
//!
//! Arguments: `norundir` (export neither XDG_RUNTIME_DIR nor
//! DBUS_SESSION_BUS_ADDRESS: another module such as pam_systemd/pam_elogind
//! does), `socket=PATH` (default
//! `/run/corral/system.sock`), `timeout=SECONDS` (default 30).

mod wire;

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use corral::ipc::system_proto::{DEFAULT_SYSTEM_SOCKET, SystemRequest, SystemResponse};
use pam_sys::PamHandle;

const PAM_SUCCESS: c_int = 0;
const LOG_ERR: c_int = 3;
const LOG_NOTICE: c_int = 5;

/// Key of the marker `open_session` leaves for `close_session`: only a session
/// that was registered is unregistered.
const DATA_KEY: &CStr = c"pam_corral_session";

unsafe extern "C" {
    fn pam_syslog(pamh: *const PamHandle, priority: c_int, fmt: *const c_char, ...);
}

/// The module's arguments from the /etc/pam.d line.
#[derive(Debug, Clone, PartialEq)]
struct Args {
    norundir: bool,
    socket: PathBuf,
    timeout: Duration,
}

impl Args {
    fn parse<'a>(args: impl IntoIterator<Item = &'a str>) -> (Args, Vec<String>) {
        let mut parsed = Args {
            norundir: false,
            socket: PathBuf::from(DEFAULT_SYSTEM_SOCKET),
            timeout: Duration::from_secs(30),
        };
        let mut unknown = Vec::new();
        for arg in args {
            if arg == "norundir" {
                parsed.norundir = true;
            } else if let Some(path) = arg.strip_prefix("socket=") {
                parsed.socket = PathBuf::from(path);
            } else if let Some(secs) = arg.strip_prefix("timeout=") {
                match secs.parse::<f64>() {
                    Ok(s) if s > 0.0 && s.is_finite() => {
                        parsed.timeout = Duration::from_secs_f64(s)
                    }
                    _ => unknown.push(arg.to_owned()),
                }
            } else {
                unknown.push(arg.to_owned());
            }
        }
        (parsed, unknown)
    }
}

struct Pam(*mut PamHandle);

impl Pam {
    fn log(&self, priority: c_int, message: &str) {
        let text = CString::new(message.replace('\0', " ")).unwrap_or_default();
        // SAFETY: pamh comes from libpam; "%s" with a NUL-terminated string.
        unsafe { pam_syslog(self.0, priority, c"%s".as_ptr(), text.as_ptr()) };
    }

    fn user(&self) -> Option<String> {
        let mut ptr: *const c_char = std::ptr::null();
        // SAFETY: libpam writes a pointer to a string it owns into `ptr`.
        let rc = unsafe { pam_sys::raw::pam_get_user(self.0, &mut ptr, std::ptr::null()) };
        if rc != PAM_SUCCESS || ptr.is_null() {
            return None;
        }
        // SAFETY: non-null, NUL-terminated, owned by libpam for the call.
        Some(
            unsafe { CStr::from_ptr(ptr) }
                .to_string_lossy()
                .into_owned(),
        )
    }

    fn putenv(&self, name: &str, value: &str) {
        let Ok(pair) = CString::new(format!("{name}={value}")) else {
            return;
        };
        // SAFETY: libpam copies the string.
        let rc = unsafe { pam_sys::raw::pam_putenv(self.0, pair.as_ptr()) };
        if rc != PAM_SUCCESS {
            self.log(
                LOG_ERR,
                &format!("pam_corral: pam_putenv {name} failed ({rc})"),
            );
        }
    }

    fn mark_registered(&self, registered: bool) {
        // The marker's value is only tested for presence: a static, no cleanup.
        static MARK: u8 = 1;
        let data = if registered {
            &MARK as *const u8 as *mut c_void
        } else {
            std::ptr::null_mut()
        };
        // SAFETY: the key is 'static and the data pointer is never freed.
        unsafe { pam_sys::raw::pam_set_data(self.0, DATA_KEY.as_ptr(), data, None) };
    }

    fn registered(&self) -> bool {
        let mut data: *const c_void = std::ptr::null();
        // SAFETY: libpam writes the stored pointer into `data`.
        let rc = unsafe { pam_sys::raw::pam_get_data(self.0, DATA_KEY.as_ptr(), &mut data) };
        rc == PAM_SUCCESS && !data.is_null()
    }
}

fn args_of(argc: c_int, argv: *const *const c_char) -> Vec<String> {
    (0..argc.max(0) as usize)
        .filter_map(|i| {
            // SAFETY: libpam passes argc valid NUL-terminated strings.
            let ptr = unsafe { *argv.add(i) };
            (!ptr.is_null()).then(|| {
                unsafe { CStr::from_ptr(ptr) }
                    .to_string_lossy()
                    .into_owned()
            })
        })
        .collect()
}

fn setup(pam: &Pam, argc: c_int, argv: *const *const c_char) -> Option<(Args, u32)> {
    let raw = args_of(argc, argv);
    let (args, unknown) = Args::parse(raw.iter().map(String::as_str));
    for arg in unknown {
        pam.log(
            LOG_ERR,
            &format!("pam_corral: ignoring unknown argument {arg:?}"),
        );
    }
    let Some(name) = pam.user() else {
        pam.log(
            LOG_ERR,
            "pam_corral: no user name in the PAM handle; session not registered",
        );
        return None;
    };
    match nix::unistd::User::from_name(&name) {
        Ok(Some(user)) => Some((args, user.uid.as_raw())),
        Ok(None) => {
            pam.log(
                LOG_ERR,
                &format!("pam_corral: user {name:?} not in the user database"),
            );
            None
        }
        Err(e) => {
            pam.log(
                LOG_ERR,
                &format!("pam_corral: looking up user {name:?}: {e}"),
            );
            None
        }
    }
}

fn open_session(pam: &Pam, argc: c_int, argv: *const *const c_char) {
    let Some((args, uid)) = setup(pam, argc, argv) else {
        return;
    };
    // The session belongs to this login process: should it die without
    // close_session, the daemon ends the session by itself.
    let request = SystemRequest::OpenSession { uid, wait: true };
    let mut sent = false;
    let reply = wire::call(&args.socket, args.timeout, &request, &mut sent);
    // Once the request is out the daemon counts the session, even if we stop
    // waiting: close_session must then unregister it.
    pam.mark_registered(sent);
    let runtime_dir = match reply {
        Ok(SystemResponse::LoggedIn { runtime_dir, .. }) => runtime_dir,
        Ok(SystemResponse::Error { message, .. }) => {
            pam.log(
                LOG_ERR,
                &format!("pam_corral: login of uid {uid}: {message}"),
            );
            return;
        }
        Ok(other) => {
            pam.log(
                LOG_ERR,
                &format!("pam_corral: unexpected reply to login: {other:?}"),
            );
            return;
        }
        Err(e) if !sent => {
            // No daemon: logins proceed as if corral were not installed.
            pam.log(
                LOG_NOTICE,
                &format!("pam_corral: {e}; continuing without corral"),
            );
            return;
        }
        Err(e) => {
            pam.log(
                LOG_ERR,
                &format!("pam_corral: waiting for uid {uid}'s manager: {e}; continuing"),
            );
            // The daemon made the directory before starting the manager.
            let dir = PathBuf::from(format!("/run/user/{uid}"));
            if !dir.is_dir() {
                return;
            }
            dir
        }
    };
    export_env(pam, &args, &runtime_dir);
}

fn export_env(pam: &Pam, args: &Args, runtime_dir: &Path) {
    if args.norundir {
        return;
    }
    let Some(dir) = runtime_dir.to_str() else {
        return;
    };
    pam.putenv("XDG_RUNTIME_DIR", dir);
    let bus = runtime_dir.join("bus");
    if std::fs::symlink_metadata(&bus).is_ok_and(|m| m.file_type().is_socket()) {
        pam.putenv(
            "DBUS_SESSION_BUS_ADDRESS",
            &format!("unix:path={}", bus.display()),
        );
    }
}

fn close_session(pam: &Pam, argc: c_int, argv: *const *const c_char) {
    if !pam.registered() {
        return;
    }
    let Some((args, uid)) = setup(pam, argc, argv) else {
        return;
    };
    let mut sent = false;
    match wire::call(
        &args.socket,
        args.timeout,
        &SystemRequest::Logout { uid },
        &mut sent,
    ) {
        Ok(SystemResponse::LoggedOut { .. }) => pam.mark_registered(false),
        Ok(SystemResponse::Error { message, .. }) => {
            pam.log(
                LOG_ERR,
                &format!("pam_corral: logout of uid {uid}: {message}"),
            );
        }
        Ok(other) => pam.log(
            LOG_ERR,
            &format!("pam_corral: unexpected reply to logout: {other:?}"),
        ),
        Err(e) => pam.log(LOG_ERR, &format!("pam_corral: logout of uid {uid}: {e}")),
    }
}

/// Catches a panic so it never unwinds into libpam's C frames.
fn guarded(pamh: *mut PamHandle, f: impl FnOnce(&Pam)) -> c_int {
    let pam = Pam(pamh);
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&pam))) {
        Ok(()) => PAM_SUCCESS,
        // Even a bug in this module must not block the login.
        Err(_) => {
            pam.log(
                LOG_ERR,
                "pam_corral: internal error (panic); continuing without corral",
            );
            PAM_SUCCESS
        }
    }
}

/// PAM entry point: registers the session and waits for the user's manager.
///
/// # Safety
/// Called by libpam with a valid handle and `argc` valid argument strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_open_session(
    pamh: *mut PamHandle,
    _flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    guarded(pamh, |pam| open_session(pam, argc, argv))
}

/// PAM entry point: unregisters the session `pam_sm_open_session` registered.
///
/// # Safety
/// Called by libpam with a valid handle and `argc` valid argument strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_close_session(
    pamh: *mut PamHandle,
    _flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    guarded(pamh, |pam| close_session(pam, argc, argv))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_parse_and_unknown_ones_are_reported() {
        let (args, unknown) = Args::parse([]);
        assert_eq!(args.socket, PathBuf::from("/run/corral/system.sock"));
        assert_eq!(args.timeout, Duration::from_secs(30));
        assert!(!args.norundir && unknown.is_empty());
        let (args, unknown) = Args::parse([
            "norundir",
            "socket=/tmp/s.sock",
            "timeout=2.5",
            "timeout=-1",
            "debug",
        ]);
        assert!(args.norundir);
        assert_eq!(args.socket, PathBuf::from("/tmp/s.sock"));
        assert_eq!(args.timeout, Duration::from_millis(2500));
        assert_eq!(unknown, ["timeout=-1", "debug"]);
    }
}
