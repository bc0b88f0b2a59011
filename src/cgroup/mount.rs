//! Finding the cgroup2 mount, a process's cgroup, and the delegated root
//! corral may create unit cgroups under.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{Cgroup, CgroupError, Op, Result};

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// One cgroup2 mount: where it is mounted and which directory of the
/// hierarchy it shows (not `/` for bind mounts of a subtree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup2Mount {
    /// Mount point, e.g. `/sys/fs/cgroup/unified` on hybrid hosts.
    pub mount_point: PathBuf,
    /// The hierarchy path the mount shows (field 4 of mountinfo).
    pub root: PathBuf,
}

/// The cgroup2 mount point of this process's mount namespace.
pub fn find_mount() -> Result<PathBuf> {
    find_mount_info().map(|m| m.mount_point)
}

/// Like [`find_mount`], with the hierarchy root the mount shows.
pub fn find_mount_info() -> Result<Cgroup2Mount> {
    let text = std::fs::read(MOUNTINFO).map_err(|e| CgroupError::io(Op::Read, MOUNTINFO, e))?;
    let mounts = parse_mountinfo(&text);
    pick_mount(mounts).ok_or(CgroupError::NoCgroup2Mount)
}

/// Every cgroup2 mount listed in mountinfo text, in order.
pub fn parse_mountinfo(text: &[u8]) -> Vec<Cgroup2Mount> {
    let mut out = Vec::new();
    for line in text.split(|&b| b == b'\n') {
        let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        // Optional fields (shared:N, master:N ...) end with a lone "-",
        // after which come fstype, source and super options.
        let Some(sep) = fields.iter().position(|f| *f == b"-") else {
            continue;
        };
        if sep < 6 || fields.get(sep + 1) != Some(&&b"cgroup2"[..]) {
            continue;
        }
        out.push(Cgroup2Mount {
            root: PathBuf::from(OsString::from_vec(unescape(fields[3]))),
            mount_point: PathBuf::from(OsString::from_vec(unescape(fields[4]))),
        });
    }
    out
}

/// Prefers the conventional places (unified, then hybrid), so a stray
/// second cgroup2 mount (a container bind mount) does not win by order.
fn pick_mount(mounts: Vec<Cgroup2Mount>) -> Option<Cgroup2Mount> {
    for preferred in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        if let Some(m) = mounts
            .iter()
            .find(|m| m.mount_point == Path::new(preferred))
        {
            return Some(m.clone());
        }
    }
    mounts.into_iter().next()
}

/// Decodes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`,
/// `\134`); anything else is kept as is.
pub fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\' && i + 3 < field.len() {
            let digits = &field[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let v = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(b) = u8::try_from(v) {
                    out.push(b);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(field[i]);
        i += 1;
    }
    out
}

/// The cgroup2 path (relative to the hierarchy root) in `/proc/PID/cgroup` text.
pub fn parse_proc_cgroup(text: &[u8]) -> Option<PathBuf> {
    text.split(|&b| b == b'\n').find_map(|line| {
        let rest = line.strip_prefix(b"0::")?;
        // A removed cgroup shows as "/path (deleted)".
        let rest = rest.strip_suffix(b" (deleted)").unwrap_or(rest);
        Some(PathBuf::from(std::ffi::OsStr::from_bytes(rest)))
    })
}

/// Joins a hierarchy path from /proc/PID/cgroup to the mount that shows it.
fn join_to_mount(mount: &Cgroup2Mount, rel: &Path) -> PathBuf {
    let inner = rel.strip_prefix(&mount.root).unwrap_or(rel);
    let inner = inner.strip_prefix("/").unwrap_or(inner);
    if inner.as_os_str().is_empty() {
        mount.mount_point.clone()
    } else {
        mount.mount_point.join(inner)
    }
}

/// The cgroup directory this process lives in.
pub fn own_cgroup() -> Result<PathBuf> {
    cgroup_of("/proc/self/cgroup")
}

/// The cgroup directory process `pid` lives in.
pub fn cgroup_of_pid(pid: i32) -> Result<PathBuf> {
    cgroup_of(&format!("/proc/{pid}/cgroup"))
}

fn cgroup_of(file: &str) -> Result<PathBuf> {
    let mount = find_mount_info()?;
    let text = std::fs::read(file).map_err(|e| CgroupError::io(Op::Read, file, e))?;
    let rel = parse_proc_cgroup(&text).ok_or_else(|| CgroupError::NotInCgroup2 {
        path: PathBuf::from(file),
    })?;
    Ok(join_to_mount(&mount, &rel))
}

/// The root corral creates unit cgroups under: `explicit` (`--cgroup-root`)
/// if given, else this process's own cgroup when it was delegated to us,
/// else for root `<mount>/corral/user-0/`, else an error saying how to fix it.
pub fn pick_root(explicit: Option<PathBuf>) -> Result<Cgroup> {
    let mount = find_mount()?;
    let own = own_cgroup()?;
    pick_root_from(explicit, &mount, &own, nix::unistd::geteuid().as_raw())
}

/// [`pick_root`]'s decision for a given mount, own cgroup and euid.
pub fn pick_root_from(
    explicit: Option<PathBuf>,
    mount: &Path,
    own: &Path,
    euid: u32,
) -> Result<Cgroup> {
    if let Some(path) = explicit {
        if !path.starts_with(mount) {
            return Err(CgroupError::NotCgroup2 { path });
        }
        return Cgroup::create_all(mount, &path);
    }
    if own != mount && is_delegated(own, euid) {
        return Cgroup::open(own);
    }
    if euid == 0 {
        return Cgroup::create_all(mount, &mount.join("corral").join("user-0"));
    }
    Err(CgroupError::NoDelegatedRoot {
        own: own.into(),
        uid: euid,
    })
}

/// Whether `dir` was handed to `uid`: owned by it with cgroup.procs and
/// cgroup.subtree_control writable. Root can write everywhere, so for root
/// only a cgroup marked delegated by its manager (systemd's
/// `trusted.delegate` / `user.delegate` xattr) counts: creating children in
/// a service's cgroup that nobody delegated would fight that manager.
pub fn is_delegated(dir: &Path, uid: u32) -> bool {
    let Ok(meta) = std::fs::metadata(dir) else {
        return false;
    };
    if uid == 0 {
        return ["trusted.delegate", "user.delegate"]
            .iter()
            .any(|name| xattr_is_one(dir, name));
    }
    meta.uid() == uid
        && ["cgroup.procs", "cgroup.subtree_control"]
            .iter()
            .all(|f| nix::unistd::access(&dir.join(f), nix::unistd::AccessFlags::W_OK).is_ok())
}

fn xattr_is_one(dir: &Path, name: &str) -> bool {
    let (Ok(p), Ok(n)) = (
        std::ffi::CString::new(dir.as_os_str().as_bytes()),
        std::ffi::CString::new(name),
    ) else {
        return false;
    };
    let mut buf = [0u8; 8];
    // SAFETY: both strings are NUL-terminated and buf is valid for its length.
    let len = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    len > 0 && buf[..len as usize].starts_with(b"1")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 1 0:23 / /sys rw,nosuid shared:7 - sysfs sysfs rw
31 25 0:27 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
42 31 0:39 / /sys/fs/cgroup/systemd rw shared:11 - cgroup cgroup rw,name=systemd
";

    #[test]
    fn finds_hybrid_mount() {
        let m = pick_mount(parse_mountinfo(HYBRID.as_bytes())).unwrap();
        assert_eq!(m.mount_point, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(m.root, Path::new("/"));
    }

    #[test]
    fn prefers_unified_and_hybrid_places_over_others() {
        let text = "\
50 1 0:40 / /mnt/my\\040cg rw - cgroup2 none rw
51 1 0:40 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw
";
        let all = parse_mountinfo(text.as_bytes());
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].mount_point, Path::new("/mnt/my cg"));
        assert_eq!(
            pick_mount(all).unwrap().mount_point,
            Path::new("/sys/fs/cgroup")
        );
    }

    #[test]
    fn no_optional_fields_and_no_cgroup2() {
        assert!(parse_mountinfo(b"1 0 0:1 / / rw - ext4 /dev/sda1 rw\n").is_empty());
        let m = parse_mountinfo(b"1 0 0:1 /sub /cg rw - cgroup2 x rw");
        assert_eq!(m[0].root, Path::new("/sub"));
    }

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape(b"a\\040b\\011c\\012d\\134e"), b"a b\tc\nd\\e");
        // Not an escape: kept verbatim.
        assert_eq!(unescape(b"x\\9y\\04"), b"x\\9y\\04");
        assert_eq!(unescape(b"end\\"), b"end\\");
    }

    #[test]
    fn proc_cgroup_line() {
        let text = b"9:name=systemd:/\n1:cpu:/\n0::/user.slice/user-1000.slice/x (deleted)\n";
        assert_eq!(
            parse_proc_cgroup(text).unwrap(),
            Path::new("/user.slice/user-1000.slice/x")
        );
        assert!(parse_proc_cgroup(b"1:cpu:/\n").is_none());
    }

    #[test]
    fn joins_relative_to_the_mount_root() {
        let m = Cgroup2Mount {
            mount_point: "/sys/fs/cgroup".into(),
            root: "/".into(),
        };
        assert_eq!(
            join_to_mount(&m, Path::new("/")),
            Path::new("/sys/fs/cgroup")
        );
        assert_eq!(
            join_to_mount(&m, Path::new("/a/b")),
            Path::new("/sys/fs/cgroup/a/b")
        );
        let bind = Cgroup2Mount {
            mount_point: "/cg".into(),
            root: "/machine/c1".into(),
        };
        assert_eq!(
            join_to_mount(&bind, Path::new("/machine/c1/svc")),
            Path::new("/cg/svc")
        );
    }
}
