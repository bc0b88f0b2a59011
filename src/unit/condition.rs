//! Evaluation of `Condition*=` and `Assert*=` with systemd's rules.
//!
//! A start whose conditions are not met is *skipped*: the unit stays
//! inactive, not failed, and `status` shows why ("ConditionUser=!root was not
//! met"). A false assert fails the start. Within each of the two lists, every
//! plain entry must hold, and when there are triggering entries (`|` prefix)
//! at least one of them must hold too. `!` negates an entry.
//!
//! Conditions corral does not know are kept, evaluated as met and reported
//! as unsupported, so that a unit written for a newer systemd still runs.
//! The checks run in the manager (as the user): paths are checked with the
//! user's permissions, `User=`/`Group=` against the manager's credentials,
//! `Environment=` against the manager's environment block.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fmt;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use thiserror::Error;

/// The conditions (and asserts) corral evaluates, by name without the
/// `Condition`/`Assert` prefix.
pub const SUPPORTED: &[&str] = &[
    "Architecture",
    "CPUs",
    "DirectoryNotEmpty",
    "Environment",
    "FileIsExecutable",
    "FileNotEmpty",
    "Group",
    "Host",
    "KernelCommandLine",
    "KernelVersion",
    "Memory",
    "OSRelease",
    "PathExists",
    "PathExistsGlob",
    "PathIsDirectory",
    "PathIsMountPoint",
    "PathIsReadWrite",
    "PathIsSymbolicLink",
    "User",
    "Virtualization",
];

/// Errors of reading a condition line.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConditionError {
    /// The directive is neither `Condition…=` nor `Assert…=`.
    #[error("{0}= is not a condition or assert directive")]
    NotACondition(String),
}

/// One `ConditionX=`/`AssertX=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// `Assert…=` (fails the start) rather than `Condition…=` (skips it).
    pub assert: bool,
    /// The check, without the prefix: `PathExists`, `User`, ….
    pub kind: String,
    /// `|`: a triggering entry; one of them is enough.
    pub trigger: bool,
    /// `!`: the check is negated.
    pub negate: bool,
    /// The argument, after the prefixes.
    pub param: String,
    /// The value as written, for messages (`|!/run/foo`).
    pub raw: String,
}

impl Condition {
    /// Reads `directive=value` (e.g. `ConditionUser`, `!root`).
    pub fn parse(directive: &str, value: &str) -> Result<Condition, ConditionError> {
        let (assert, kind) = if let Some(k) = directive.strip_prefix("Condition") {
            (false, k)
        } else if let Some(k) = directive.strip_prefix("Assert") {
            (true, k)
        } else {
            return Err(ConditionError::NotACondition(directive.to_string()));
        };
        if kind.is_empty() {
            return Err(ConditionError::NotACondition(directive.to_string()));
        }
        let raw = value.trim().to_string();
        let mut rest = raw.as_str();
        let trigger = rest.starts_with('|');
        if trigger {
            rest = rest[1..].trim_start();
        }
        let negate = rest.starts_with('!');
        if negate {
            rest = rest[1..].trim_start();
        }
        Ok(Condition {
            assert,
            kind: kind.to_string(),
            trigger,
            negate,
            param: rest.to_string(),
            raw,
        })
    }

    /// The directive name, `ConditionUser` or `AssertUser`.
    pub fn directive(&self) -> String {
        format!(
            "{}{}",
            if self.assert { "Assert" } else { "Condition" },
            self.kind
        )
    }

    /// Whether corral knows how to evaluate it.
    pub fn is_supported(&self) -> bool {
        SUPPORTED.contains(&self.kind.as_str())
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.directive(), self.raw)
    }
}

/// What the checks compare against: the manager's identity, environment and host.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The manager's uid.
    pub uid: u32,
    /// The manager's user name.
    pub user_name: String,
    /// The manager's primary gid.
    pub gid: u32,
    /// Its supplementary gids.
    pub groups: Vec<u32>,
    /// The manager's environment block (for `ConditionEnvironment=`).
    pub env: BTreeMap<String, String>,
    /// The host name.
    pub hostname: String,
    /// /etc/machine-id, when there is one.
    pub machine_id: Option<String>,
    /// /proc/cmdline.
    pub kernel_cmdline: String,
    /// The kernel release (`uname -r`).
    pub kernel_release: String,
    /// The container manager we run in, as systemd names it (`docker`, `lxc`…).
    pub container: Option<String>,
    /// The hypervisor we run under, as systemd names it (`kvm`, `qemu`…).
    pub vm: Option<String>,
    /// /etc/os-release (or /usr/lib/os-release) as key/value pairs.
    pub os_release: BTreeMap<String, String>,
    /// The number of CPUs this process may run on.
    pub cpus: u64,
    /// Physical memory in bytes.
    pub memory: u64,
}

impl Context {
    /// The context of this process, with `env` as the environment block.
    /// Reads a few small files from /proc, /sys and /etc: call it off the
    /// async runtime.
    pub fn from_system(env: BTreeMap<String, String>) -> Context {
        let uid = nix::unistd::getuid().as_raw();
        let user_name = nix::unistd::User::from_uid(uid.into())
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_default();
        let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
        let uname = nix::sys::utsname::uname().ok();
        let os_release = {
            let text = fs::read_to_string("/etc/os-release")
                .or_else(|_| fs::read_to_string("/usr/lib/os-release"))
                .unwrap_or_default();
            parse_os_release(&text)
        };
        let memory = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024);
        let cpus = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
            .map(|set| {
                (0..nix::sched::CpuSet::count())
                    .filter(|&i| set.is_set(i).unwrap_or(false))
                    .count() as u64
            })
            .unwrap_or(1);
        Context {
            uid,
            user_name,
            gid: nix::unistd::getgid().as_raw(),
            groups: nix::unistd::getgroups()
                .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
                .unwrap_or_default(),
            env,
            hostname: nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_default(),
            machine_id: Some(read("/etc/machine-id").trim().to_string()).filter(|s| !s.is_empty()),
            kernel_cmdline: read("/proc/cmdline").trim().to_string(),
            kernel_release: uname
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_default(),
            container: detect_container(),
            vm: detect_vm(),
            os_release,
            cpus,
            memory,
        }
    }
}

fn parse_os_release(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            (k.trim().to_string(), v.to_string())
        })
        .collect()
}

/// The container manager this process runs in, named as
/// `systemd-detect-virt --container` names it.
pub fn detect_container() -> Option<String> {
    if let Ok(s) = fs::read_to_string("/run/systemd/container") {
        let s = s.trim();
        if !s.is_empty() {
            return Some(s.to_string());
        }
    }
    if Path::new("/run/.containerenv").exists() {
        return Some("podman".into());
    }
    if Path::new("/.dockerenv").exists() {
        return Some("docker".into());
    }
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    if release.contains("Microsoft") || release.contains("WSL") {
        return Some("wsl".into());
    }
    None
}

/// The hypervisor this machine runs under, named as
/// `systemd-detect-virt --vm` names it: from the DMI strings, then Xen's
/// sysfs file, then the `hypervisor` CPU flag (`vm-other` when unnamed).
pub fn detect_vm() -> Option<String> {
    let dmi: Vec<String> = ["product_name", "sys_vendor", "board_vendor", "bios_vendor"]
        .iter()
        .filter_map(|f| fs::read_to_string(format!("/sys/class/dmi/id/{f}")).ok())
        .collect();
    const DMI: &[(&str, &str)] = &[
        ("KVM", "kvm"),
        ("Amazon EC2", "amazon"),
        ("QEMU", "qemu"),
        ("VMware", "vmware"),
        ("VMW", "vmware"),
        ("innotek GmbH", "oracle"),
        ("VirtualBox", "oracle"),
        ("Xen", "xen"),
        ("Bochs", "bochs"),
        ("Parallels", "parallels"),
        ("BHYVE", "bhyve"),
        ("Hyper-V", "microsoft"),
        ("Apple Virtualization", "apple"),
        ("Google Compute Engine", "google"),
    ];
    for s in &dmi {
        if let Some((_, id)) = DMI.iter().find(|(p, _)| s.starts_with(p)) {
            return Some((*id).to_string());
        }
    }
    if fs::read_to_string("/sys/hypervisor/type").is_ok_and(|t| t.trim() == "xen") {
        return Some("xen".into());
    }
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flagged = cpuinfo
        .lines()
        .any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "hypervisor"));
    flagged.then(|| "vm-other".to_string())
}

/// The outcome of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The entry.
    pub condition: Condition,
    /// Its result after negation; unsupported entries count as met.
    pub met: bool,
    /// The check is not known to corral (or its argument is not usable), so
    /// it was not evaluated; the text says why.
    pub unsupported: Option<String>,
}

/// What the conditions and asserts of a unit decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Start the unit.
    Start,
    /// Do not start: the unit is skipped (inactive, not failed), for the reason given.
    Skip(String),
    /// Do not start: the start fails (an assert was false), for the reason given.
    Fail(String),
}

/// The evaluation of a unit's conditions and asserts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// The decision.
    pub verdict: Verdict,
    /// Every entry with its result, in the order given.
    pub checked: Vec<Checked>,
}

impl Evaluation {
    /// Warnings for entries that were not evaluated, with the directive:
    /// `ConditionSecurity=selinux: unsupported, ignored (treated as met)`.
    pub fn unsupported(&self) -> Vec<String> {
        self.checked
            .iter()
            .filter_map(|c| {
                c.unsupported
                    .as_ref()
                    .map(|why| format!("{}: {why}, ignored (treated as met)", c.condition))
            })
            .collect()
    }
}

/// Evaluates `conditions` (Condition* and Assert* entries mixed, in file
/// order). Conditions are decided first: when they skip the unit, the
/// asserts are not looked at, as in systemd.
pub fn evaluate(conditions: &[Condition], ctx: &Context) -> Evaluation {
    let checked: Vec<Checked> = conditions.iter().map(|c| check(c, ctx)).collect();
    let decide = |assert: bool| -> Option<String> {
        let list: Vec<&Checked> = checked
            .iter()
            .filter(|c| c.condition.assert == assert)
            .collect();
        if let Some(c) = list.iter().find(|c| !c.condition.trigger && !c.met) {
            return Some(format!("{} was not met", c.condition));
        }
        let triggers: Vec<&&Checked> = list.iter().filter(|c| c.condition.trigger).collect();
        if !triggers.is_empty() && !triggers.iter().any(|c| c.met) {
            let names: Vec<String> = triggers.iter().map(|c| c.condition.to_string()).collect();
            return Some(format!(
                "none of the triggering {} was met ({})",
                if assert { "asserts" } else { "conditions" },
                names.join(", ")
            ));
        }
        None
    };
    let verdict = if let Some(r) = decide(false) {
        Verdict::Skip(r)
    } else if let Some(r) = decide(true) {
        Verdict::Fail(r)
    } else {
        Verdict::Start
    };
    Evaluation { verdict, checked }
}

fn check(c: &Condition, ctx: &Context) -> Checked {
    let result = if c.is_supported() {
        test(c, ctx)
    } else {
        Err("unsupported by corral".to_string())
    };
    match result {
        Ok(v) => Checked {
            condition: c.clone(),
            met: v != c.negate,
            unsupported: None,
        },
        Err(why) => Checked {
            condition: c.clone(),
            met: true,
            unsupported: Some(why),
        },
    }
}

/// The raw test, before negation. `Err` when it cannot be evaluated.
fn test(c: &Condition, ctx: &Context) -> Result<bool, String> {
    let p = c.param.as_str();
    let path = || -> Result<&Path, String> {
        if p.starts_with('/') {
            Ok(Path::new(p))
        } else {
            Err(format!("path {p:?} is not absolute"))
        }
    };
    Ok(match c.kind.as_str() {
        "PathExists" => path()?.exists(),
        "PathExistsGlob" => glob_matches(p)?,
        "PathIsDirectory" => path()?.is_dir(),
        "PathIsSymbolicLink" => path()?.is_symlink(),
        "PathIsMountPoint" => is_mount_point(path()?),
        "PathIsReadWrite" => is_read_write(path()?),
        "DirectoryNotEmpty" => fs::read_dir(path()?).is_ok_and(|mut d| d.next().is_some()),
        "FileNotEmpty" => fs::metadata(path()?).is_ok_and(|m| m.is_file() && m.len() > 0),
        "FileIsExecutable" => {
            fs::metadata(path()?).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        }
        "User" => test_user(p, ctx),
        "Group" => test_group(p, ctx)?,
        "Environment" => match p.split_once('=') {
            Some((k, v)) => ctx.env.get(k).is_some_and(|cur| cur == v),
            None => ctx.env.contains_key(p),
        },
        "Host" => {
            p.eq_ignore_ascii_case(&ctx.hostname)
                || ctx
                    .machine_id
                    .as_deref()
                    .is_some_and(|id| id.eq_ignore_ascii_case(&p.replace('-', "")))
                || fnmatch(p, &ctx.hostname)
        }
        "KernelCommandLine" => test_cmdline(p, &ctx.kernel_cmdline),
        "KernelVersion" => p
            .split_whitespace()
            .map(|term| compare_term(term, &ctx.kernel_release, true))
            .collect::<Result<Vec<bool>, String>>()?
            .into_iter()
            .all(|b| b),
        "Architecture" => arch_matches(p),
        "Virtualization" => test_virtualization(p, ctx),
        "CPUs" => compare_number(p, ctx.cpus)?,
        "Memory" => compare_number(p, ctx.memory)?,
        "OSRelease" => test_os_release(p, &ctx.os_release)?,
        other => return Err(format!("unsupported by corral ({other})")),
    })
}

fn test_user(p: &str, ctx: &Context) -> bool {
    if p == "@system" {
        // systemd's SYSTEM_UID_MAX on Debian.
        return ctx.uid <= 999;
    }
    if let Ok(uid) = p.parse::<u32>() {
        return uid == ctx.uid;
    }
    p == ctx.user_name
        || nix::unistd::User::from_name(p)
            .ok()
            .flatten()
            .is_some_and(|u| u.uid.as_raw() == ctx.uid)
}

fn test_group(p: &str, ctx: &Context) -> Result<bool, String> {
    let gid = match p.parse::<u32>() {
        Ok(g) => g,
        Err(_) => match nix::unistd::Group::from_name(p) {
            Ok(Some(g)) => g.gid.as_raw(),
            // A group that does not exist is not one of ours.
            Ok(None) => return Ok(false),
            Err(e) => return Err(format!("cannot look up group {p:?}: {e}")),
        },
    };
    Ok(gid == ctx.gid || ctx.groups.contains(&gid))
}

fn test_cmdline(p: &str, cmdline: &str) -> bool {
    cmdline.split_whitespace().any(|word| {
        if p.contains('=') {
            word == p
        } else {
            word == p || word.split_once('=').is_some_and(|(k, _)| k == p)
        }
    })
}

fn test_virtualization(p: &str, ctx: &Context) -> bool {
    match p {
        "yes" | "true" | "on" | "1" => ctx.container.is_some() || ctx.vm.is_some(),
        "no" | "false" | "off" | "0" => ctx.container.is_none() && ctx.vm.is_none(),
        "vm" => ctx.vm.is_some(),
        "container" => ctx.container.is_some(),
        // The most specific detection wins, as in systemd: the container.
        id => ctx.container.as_deref().or(ctx.vm.as_deref()) == Some(id),
    }
}

fn arch_matches(p: &str) -> bool {
    let ours = match std::env::consts::ARCH {
        "x86_64" => "x86-64",
        "x86" => "x86",
        "aarch64" => "arm64",
        "arm" => "arm",
        "riscv64" => "riscv64",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        "loongarch64" => "loongarch64",
        other => other,
    };
    p == ours || p == "native"
}

fn test_os_release(p: &str, os: &BTreeMap<String, String>) -> Result<bool, String> {
    Ok(p.split_whitespace()
        .map(|term| {
            let at = term
                .find(['<', '>', '=', '!', '$'])
                .ok_or_else(|| format!("{term:?} is not KEY=value or KEY<op>value"))?;
            let (key, rest) = term.split_at(at);
            let value = os.get(key).map(String::as_str).unwrap_or("");
            compare_term(rest, value, false)
        })
        .collect::<Result<Vec<bool>, String>>()?
        .into_iter()
        .all(|b| b))
}

/// `op value` against `actual` with systemd's operators (`<`, `<=`, `=`,
/// `!=`, `>=`, `>`, and `$=`/none for a shell-glob match when `glob_default`).
fn compare_term(term: &str, actual: &str, glob_default: bool) -> Result<bool, String> {
    let ops = ["<=", ">=", "!=", "$=", "=", "<", ">"];
    let (op, want) = match ops.iter().find(|op| term.starts_with(**op)) {
        Some(op) => (*op, term[op.len()..].trim()),
        None if glob_default => ("$=", term),
        None => return Err(format!("{term:?} has no comparison operator")),
    };
    let ord = version_cmp(actual, want);
    Ok(match op {
        "<=" => ord.is_le(),
        ">=" => ord.is_ge(),
        "<" => ord.is_lt(),
        ">" => ord.is_gt(),
        "=" => actual == want,
        "!=" => actual != want,
        _ => fnmatch(want, actual),
    })
}

/// Compares versions by their numeric and other runs, as strverscmp does
/// for the common cases (`6.1.0-13-amd64` vs `5.10`).
fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn runs(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                if start < i {
                    out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                }
                start = i;
            }
        }
        out
    }
    let (ra, rb) = (runs(a), runs(b));
    for (x, y) in ra.iter().zip(rb.iter()) {
        let ord = match (x, y) {
            ((true, x), (true, y)) => {
                let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                x.len().cmp(&y.len()).then_with(|| x.cmp(y))
            }
            ((_, x), (_, y)) => x.cmp(y),
        };
        if ord.is_ne() {
            return ord;
        }
    }
    // Extra runs: "6.1.0" > "6.1", but what follows a separator on the
    // shorter side only ("-rc1") is not a newer version.
    ra.len().cmp(&rb.len())
}

fn compare_number(p: &str, actual: u64) -> Result<bool, String> {
    let ops = ["<=", ">=", "!=", "=", "<", ">"];
    let (op, want) = match ops.iter().find(|op| p.starts_with(**op)) {
        Some(op) => (*op, p[op.len()..].trim()),
        None => ("=", p.trim()),
    };
    let want = parse_size(want).ok_or_else(|| format!("{want:?} is not a number"))?;
    Ok(match op {
        "<=" => actual <= want,
        ">=" => actual >= want,
        "<" => actual < want,
        ">" => actual > want,
        "!=" => actual != want,
        _ => actual == want,
    })
}

/// A number with an optional 1024-based suffix (K, M, G, T).
fn parse_size(s: &str) -> Option<u64> {
    let (num, mult) = match s.chars().last()? {
        'K' => (&s[..s.len() - 1], 1u64 << 10),
        'M' => (&s[..s.len() - 1], 1 << 20),
        'G' => (&s[..s.len() - 1], 1 << 30),
        'T' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

fn fnmatch(pattern: &str, s: &str) -> bool {
    let (Ok(p), Ok(s)) = (CString::new(pattern), CString::new(s)) else {
        return false;
    };
    // SAFETY: both are valid NUL-terminated strings that outlive the call.
    unsafe { libc::fnmatch(p.as_ptr(), s.as_ptr(), 0) == 0 }
}

fn glob_matches(pattern: &str) -> Result<bool, String> {
    if !pattern.starts_with('/') {
        return Err(format!("path {pattern:?} is not absolute"));
    }
    let p = CString::new(pattern).map_err(|_| "pattern contains NUL".to_string())?;
    // SAFETY: glob fills `g`, which is zeroed before and released with
    // globfree after; `p` outlives the call.
    unsafe {
        let mut g: libc::glob_t = std::mem::zeroed();
        let rc = libc::glob(p.as_ptr(), libc::GLOB_NOSORT, None, &mut g);
        let found = rc == 0 && g.gl_pathc > 0;
        libc::globfree(&mut g);
        Ok(found)
    }
}

fn is_mount_point(path: &Path) -> bool {
    let Ok(canon) = fs::canonicalize(path) else {
        return false;
    };
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let target = canon.to_string_lossy();
    mountinfo.lines().any(|l| {
        l.split(' ')
            .nth(4)
            .is_some_and(|m| unescape_mountinfo(m) == target)
    })
}

fn unescape_mountinfo(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let oct: String = chars.by_ref().take(3).collect();
            if let Ok(n) = u8::from_str_radix(&oct, 8) {
                out.push(n as char);
                continue;
            }
            out.push(c);
            out.push_str(&oct);
        } else {
            out.push(c);
        }
    }
    out
}

fn is_read_write(path: &Path) -> bool {
    match nix::sys::statvfs::statvfs(path) {
        Ok(st) => !st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests;
