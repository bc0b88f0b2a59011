//! `Condition*=` and `Assert*=`: checks made before a unit starts.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::specifier::SpecifierContext;

/// The checks corral evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConditionKind {
    /// `PathExists=`.
    PathExists,
    /// `PathExistsGlob=` (with `{a,b}` braces, `*`, `?`, `[...]`).
    PathExistsGlob,
    /// `PathIsDirectory=`.
    PathIsDirectory,
    /// `PathIsSymbolicLink=`.
    PathIsSymbolicLink,
    /// `PathIsMountPoint=`.
    PathIsMountPoint,
    /// `PathIsReadWrite=`.
    PathIsReadWrite,
    /// `DirectoryNotEmpty=`.
    DirectoryNotEmpty,
    /// `FileNotEmpty=`.
    FileNotEmpty,
    /// `FileIsExecutable=`.
    FileIsExecutable,
    /// `User=`: a name, a uid, or `@system`.
    User,
    /// `Group=`: a name or gid the manager is a member of.
    Group,
    /// `Environment=`: `NAME` is set, or `NAME=value` matches.
    Environment,
    /// `Host=`: the host name (glob) or machine id.
    Host,
    /// `KernelCommandLine=`: a word (or `key=value`) on /proc/cmdline.
    KernelCommandLine,
    /// `Capability=`: in the manager's bounding set.
    Capability,
    /// `ACPower=`: whether the system is on AC power.
    ACPower,
    /// `CPUs=`: a comparison against the number of usable CPUs (`>1`).
    CPUs,
    /// `Virtualization=`: yes/no, vm, container or a technology name.
    Virtualization,
    /// `Architecture=`: systemd's architecture name.
    Architecture,
}

impl ConditionKind {
    /// The kind for the part after `Condition`/`Assert`.
    pub fn from_name(name: &str) -> Option<ConditionKind> {
        Some(match name {
            "PathExists" => ConditionKind::PathExists,
            "PathExistsGlob" => ConditionKind::PathExistsGlob,
            "PathIsDirectory" => ConditionKind::PathIsDirectory,
            "PathIsSymbolicLink" => ConditionKind::PathIsSymbolicLink,
            "PathIsMountPoint" => ConditionKind::PathIsMountPoint,
            "PathIsReadWrite" => ConditionKind::PathIsReadWrite,
            "DirectoryNotEmpty" => ConditionKind::DirectoryNotEmpty,
            "FileNotEmpty" => ConditionKind::FileNotEmpty,
            "FileIsExecutable" => ConditionKind::FileIsExecutable,
            "User" => ConditionKind::User,
            "Group" => ConditionKind::Group,
            "Environment" => ConditionKind::Environment,
            "Host" => ConditionKind::Host,
            "KernelCommandLine" => ConditionKind::KernelCommandLine,
            "Capability" => ConditionKind::Capability,
            "ACPower" => ConditionKind::ACPower,
            "CPUs" => ConditionKind::CPUs,
            "Virtualization" => ConditionKind::Virtualization,
            "Architecture" => ConditionKind::Architecture,
            _ => return None,
        })
    }

    /// The name after `Condition`/`Assert`.
    pub fn name(self) -> &'static str {
        match self {
            ConditionKind::PathExists => "PathExists",
            ConditionKind::PathExistsGlob => "PathExistsGlob",
            ConditionKind::PathIsDirectory => "PathIsDirectory",
            ConditionKind::PathIsSymbolicLink => "PathIsSymbolicLink",
            ConditionKind::PathIsMountPoint => "PathIsMountPoint",
            ConditionKind::PathIsReadWrite => "PathIsReadWrite",
            ConditionKind::DirectoryNotEmpty => "DirectoryNotEmpty",
            ConditionKind::FileNotEmpty => "FileNotEmpty",
            ConditionKind::FileIsExecutable => "FileIsExecutable",
            ConditionKind::User => "User",
            ConditionKind::Group => "Group",
            ConditionKind::Environment => "Environment",
            ConditionKind::Host => "Host",
            ConditionKind::KernelCommandLine => "KernelCommandLine",
            ConditionKind::Capability => "Capability",
            ConditionKind::ACPower => "ACPower",
            ConditionKind::CPUs => "CPUs",
            ConditionKind::Virtualization => "Virtualization",
            ConditionKind::Architecture => "Architecture",
        }
    }

    fn is_path(self) -> bool {
        matches!(
            self,
            ConditionKind::PathExists
                | ConditionKind::PathExistsGlob
                | ConditionKind::PathIsDirectory
                | ConditionKind::PathIsSymbolicLink
                | ConditionKind::PathIsMountPoint
                | ConditionKind::PathIsReadWrite
                | ConditionKind::DirectoryNotEmpty
                | ConditionKind::FileNotEmpty
                | ConditionKind::FileIsExecutable
        )
    }

    /// Checks the value's syntax (after `|`, `!` and specifiers).
    pub fn validate(self, value: &str) -> Result<(), String> {
        if self.is_path() && !value.starts_with('/') {
            return Err(format!("'{value}' is not an absolute path"));
        }
        match self {
            ConditionKind::ACPower if super::values::parse_bool(value).is_none() => {
                Err(format!("'{value}' is not a boolean"))
            }
            ConditionKind::CPUs if parse_comparison(value).is_none() => {
                Err(format!("'{value}' is not a comparison such as >1 or <=4"))
            }
            ConditionKind::Capability if capability_number(value).is_none() => Err(format!(
                "'{value}' is not a capability name such as CAP_SYS_ADMIN"
            )),
            _ => Ok(()),
        }
    }
}

/// One condition or assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// What is checked.
    pub kind: ConditionKind,
    /// `Assert*`: failing fails the start instead of skipping it.
    pub assert: bool,
    /// `|` prefix: a triggering condition (at least one of them must hold).
    pub trigger: bool,
    /// `!` prefix: the check is negated.
    pub negate: bool,
    /// The argument, specifiers expanded.
    pub value: String,
    /// Where it was written.
    pub file: PathBuf,
    /// Its line.
    pub line: usize,
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}{}={}{}{}",
            if self.assert { "Assert" } else { "Condition" },
            self.kind.name(),
            if self.trigger { "|" } else { "" },
            if self.negate { "!" } else { "" },
            self.value
        )
    }
}

impl Condition {
    /// Whether the condition holds now (negation applied), for the manager
    /// described by `ctx` and its environment `env`.
    pub fn holds(&self, ctx: &SpecifierContext, env: &dyn Fn(&str) -> Option<String>) -> bool {
        self.check(ctx, env) != self.negate
    }

    fn check(&self, ctx: &SpecifierContext, env: &dyn Fn(&str) -> Option<String>) -> bool {
        let v = self.value.as_str();
        let p = Path::new(v);
        match self.kind {
            ConditionKind::PathExists => p.symlink_metadata().is_ok() && p.exists(),
            ConditionKind::PathExistsGlob => glob_any(v),
            ConditionKind::PathIsDirectory => p.is_dir(),
            ConditionKind::PathIsSymbolicLink => p.is_symlink(),
            ConditionKind::PathIsMountPoint => is_mount_point(p),
            ConditionKind::PathIsReadWrite => nix::sys::statvfs::statvfs(p)
                .is_ok_and(|s| !s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY)),
            ConditionKind::DirectoryNotEmpty => std::fs::read_dir(p).is_ok_and(|mut d| {
                d.any(|e| e.is_ok_and(|e| !e.file_name().to_string_lossy().starts_with('.')))
            }),
            ConditionKind::FileNotEmpty => {
                std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.len() > 0)
            }
            ConditionKind::FileIsExecutable => std::fs::metadata(p)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0),
            ConditionKind::User => {
                if v == "@system" {
                    ctx.uid < 1000
                } else if let Ok(n) = v.parse::<u32>() {
                    n == ctx.uid
                } else {
                    v == ctx.user
                }
            }
            ConditionKind::Group => {
                let groups = nix::unistd::getgroups().unwrap_or_default();
                match v.parse::<u32>() {
                    Ok(n) => n == ctx.gid || groups.iter().any(|g| g.as_raw() == n),
                    Err(_) => {
                        v == ctx.group
                            || nix::unistd::Group::from_name(v)
                                .ok()
                                .flatten()
                                .is_some_and(|g| {
                                    g.gid.as_raw() == ctx.gid || groups.contains(&g.gid)
                                })
                    }
                }
            }
            ConditionKind::Environment => match v.split_once('=') {
                Some((k, val)) => env(k).as_deref() == Some(val),
                None => env(v).is_some(),
            },
            ConditionKind::Host => {
                v.eq_ignore_ascii_case(&ctx.machine_id)
                    || wildcard_match(&v.to_ascii_lowercase(), &ctx.hostname.to_ascii_lowercase())
            }
            ConditionKind::KernelCommandLine => {
                let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
                cmdline.split_whitespace().any(|w| {
                    w == v || (!v.contains('=') && w.split_once('=').is_some_and(|(k, _)| k == v))
                })
            }
            ConditionKind::Capability => capability_number(v)
                .is_some_and(|n| bounding_set().is_some_and(|b| b & (1u64 << n) != 0)),
            ConditionKind::ACPower => {
                let want = super::values::parse_bool(v).unwrap_or(true);
                on_ac_power() == want
            }
            ConditionKind::CPUs => {
                let n = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
                parse_comparison(v).is_some_and(|(op, k)| op.apply(n, k))
            }
            ConditionKind::Virtualization => virtualization_matches(v),
            ConditionKind::Architecture => v == ctx.architecture || v == "native",
        }
    }
}

/// Evaluates a list of conditions as systemd does: every non-trigger
/// condition must hold, and if there are trigger (`|`) conditions at least
/// one of them must hold. Returns the first failing condition.
pub fn evaluate<'a>(
    conds: &'a [Condition],
    ctx: &SpecifierContext,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), &'a Condition> {
    let mut first_trigger: Option<&Condition> = None;
    let mut trigger_ok = false;
    for c in conds {
        let ok = c.holds(ctx, env);
        if c.trigger {
            first_trigger.get_or_insert(c);
            trigger_ok |= ok;
        } else if !ok {
            return Err(c);
        }
    }
    match first_trigger {
        Some(c) if !trigger_ok => Err(c),
        _ => Ok(()),
    }
}

#[derive(Debug, Clone, Copy)]
enum Cmp {
    Lt,
    Le,
    Eq,
    Ne,
    Ge,
    Gt,
}

impl Cmp {
    fn apply(self, a: u64, b: u64) -> bool {
        match self {
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
            Cmp::Ge => a >= b,
            Cmp::Gt => a > b,
        }
    }
}

fn parse_comparison(v: &str) -> Option<(Cmp, u64)> {
    let v = v.trim();
    let (op, rest) = [
        ("<=", Cmp::Le),
        (">=", Cmp::Ge),
        ("!=", Cmp::Ne),
        ("=", Cmp::Eq),
        ("<", Cmp::Lt),
        (">", Cmp::Gt),
    ]
    .iter()
    .find_map(|(p, op)| v.strip_prefix(p).map(|r| (*op, r)))
    .unwrap_or((Cmp::Eq, v));
    rest.trim().parse().ok().map(|n| (op, n))
}

const CAPABILITIES: [&str; 41] = [
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

fn capability_number(name: &str) -> Option<u32> {
    let n = name.to_ascii_lowercase();
    let n = n.strip_prefix("cap_").unwrap_or(&n);
    CAPABILITIES.iter().position(|c| *c == n).map(|i| i as u32)
}

fn bounding_set() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("CapBnd:"))?;
    u64::from_str_radix(line["CapBnd:".len()..].trim(), 16).ok()
}

fn on_ac_power() -> bool {
    // As systemd: with no mains supply listed at all, assume AC power.
    let Ok(dir) = std::fs::read_dir("/sys/class/power_supply") else {
        return true;
    };
    let mut found_mains = false;
    for e in dir.flatten() {
        let p = e.path();
        let ty = std::fs::read_to_string(p.join("type")).unwrap_or_default();
        if ty.trim() != "Mains" {
            continue;
        }
        found_mains = true;
        if std::fs::read_to_string(p.join("online")).is_ok_and(|s| s.trim() == "1") {
            return true;
        }
    }
    !found_mains
}

fn detect_container() -> Option<String> {
    if let Ok(s) = std::fs::read_to_string("/run/systemd/container") {
        return Some(s.trim().to_string());
    }
    if Path::new("/run/.containerenv").exists() {
        return Some("podman".to_string());
    }
    if Path::new("/.dockerenv").exists() {
        return Some("docker".to_string());
    }
    if let Ok(env) = std::fs::read("/proc/1/environ") {
        for kv in env.split(|&b| b == 0) {
            if let Some(v) = kv.strip_prefix(b"container=") {
                return Some(String::from_utf8_lossy(v).into_owned());
            }
        }
    }
    None
}

fn detect_vm() -> Option<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let vendor = std::fs::read_to_string("/sys/class/dmi/id/sys_vendor")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let product = std::fs::read_to_string("/sys/class/dmi/id/product_name")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let table = [
        ("qemu", "qemu"),
        ("kvm", "kvm"),
        ("vmware", "vmware"),
        ("virtualbox", "oracle"),
        ("microsoft", "microsoft"),
        ("xen", "xen"),
        ("amazon", "amazon"),
        ("google", "google"),
    ];
    for (tech, needle) in table {
        if vendor.contains(needle) || product.contains(needle) {
            return Some(tech.to_string());
        }
    }
    cpuinfo
        .lines()
        .any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "hypervisor"))
        .then(|| "vm-other".to_string())
}

fn virtualization_matches(v: &str) -> bool {
    let container = detect_container();
    let vm = if container.is_some() {
        None
    } else {
        detect_vm()
    };
    match super::values::parse_bool(v) {
        Some(b) => b == (container.is_some() || vm.is_some()),
        None => match v {
            "vm" => vm.is_some(),
            "container" => container.is_some(),
            "private-users" => std::fs::read_to_string("/proc/self/uid_map").is_ok_and(|m| {
                m.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"]
            }),
            tech => container.as_deref() == Some(tech) || vm.as_deref() == Some(tech),
        },
    }
}

fn is_mount_point(p: &Path) -> bool {
    let Ok(canon) = p.canonicalize() else {
        return false;
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let target = canon.to_string_lossy();
    if info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| unescape_mountinfo(m) == target)
    {
        return true;
    }
    // Fallback for mounts hidden from this namespace's table: a device change.
    match (
        std::fs::metadata(&canon),
        canon.parent().map(std::fs::metadata),
    ) {
        (Ok(a), Some(Ok(b))) => a.dev() != b.dev(),
        _ => false,
    }
}

fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Shell-style match of `*`, `?` and `[...]` (with `!`/`^` negation and ranges).
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative matcher with single-star backtracking: linear-ish, no recursion blow-up.
    let (mut pi, mut ni) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ni));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, len)) = class_match(&p[pi..], n[ni]) {
                        if matched {
                            pi += len;
                            ni += 1;
                            continue;
                        }
                    } else if n[ni] == '[' {
                        pi += 1;
                        ni += 1;
                        continue;
                    }
                }
                '\\' if pi + 1 < p.len() && p[pi + 1] == n[ni] => {
                    pi += 2;
                    ni += 1;
                    continue;
                }
                c if c == n[ni] => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sn)) => {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Matches a `[...]` class at the start of `p`; returns (matched, length).
fn class_match(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(i), Some('!') | Some('^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < p.len() {
        let ch = p[i];
        if ch == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            if p[i] <= c && c <= p[i + 2] {
                matched = true;
            }
            i += 3;
        } else {
            if ch == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

/// Expands `{a,b}` alternatives (nested ones too) into plain patterns.
///
/// At most 16 groups are expanded and at most ~4096 patterns produced; braces
/// beyond that stay literal, so hostile input cannot exhaust memory or stack.
pub fn brace_expand(pattern: &str) -> Vec<String> {
    brace_expand_depth(pattern, 0)
}

fn brace_expand_depth(pattern: &str, depth: usize) -> Vec<String> {
    if depth >= 16 {
        return vec![pattern.to_string()];
    }
    let b: Vec<char> = pattern.chars().collect();
    let Some(open) = b.iter().position(|&c| c == '{') else {
        return vec![pattern.to_string()];
    };
    let mut nest = 0;
    let mut close = None;
    let mut commas = Vec::new();
    for (i, &c) in b.iter().enumerate().skip(open) {
        match c {
            '{' => nest += 1,
            '}' => {
                nest -= 1;
                if nest == 0 {
                    close = Some(i);
                    break;
                }
            }
            ',' if nest == 1 => commas.push(i),
            _ => {}
        }
    }
    let Some(close) = close else {
        return vec![pattern.to_string()];
    };
    let pre: String = b[..open].iter().collect();
    let post: String = b[close + 1..].iter().collect();
    let mut bounds = vec![open];
    bounds.extend(&commas);
    bounds.push(close);
    let mut out = Vec::new();
    for w in bounds.windows(2) {
        let alt: String = b[w[0] + 1..w[1]].iter().collect();
        for e in brace_expand_depth(&format!("{pre}{alt}{post}"), depth + 1) {
            out.push(e);
        }
        if out.len() > 4096 {
            break;
        }
    }
    out
}

/// Whether any path matches the glob pattern (absolute, with braces).
pub fn glob_any(pattern: &str) -> bool {
    brace_expand(pattern)
        .iter()
        .any(|p| glob_one(Path::new("/"), p.trim_start_matches('/')))
}

fn glob_one(base: &Path, rest: &str) -> bool {
    if rest.is_empty() {
        return base.exists();
    }
    let (comp, tail) = match rest.split_once('/') {
        Some((c, t)) => (c, t),
        None => (rest, ""),
    };
    if comp.is_empty() {
        return glob_one(base, tail);
    }
    if !comp.contains(['*', '?', '[']) {
        return glob_one(&base.join(comp), tail);
    }
    let Ok(dir) = std::fs::read_dir(base) else {
        return false;
    };
    dir.flatten().any(|e| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        (!name.starts_with('.') || comp.starts_with('.'))
            && wildcard_match(comp, &name)
            && glob_one(&base.join(&*name), tail)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("main.c[vl]d", "main.cvd"));
        assert!(!wildcard_match("main.c[vl]d", "main.cxd"));
        assert!(wildcard_match("MD_UUID_*", "MD_UUID_abc"));
        assert!(wildcard_match("a?c", "abc"));
        assert!(wildcard_match("*", ""));
        assert!(!wildcard_match("a*b", "ac"));
        assert!(wildcard_match("[!a]x", "bx"));
        assert!(wildcard_match("a*b*c", "aXXbYYbc"));
    }

    #[test]
    fn braces() {
        assert_eq!(
            brace_expand("/v/main.{c[vl]d,inc}"),
            ["/v/main.c[vl]d", "/v/main.inc"]
        );
        assert_eq!(brace_expand("{a,{b,c}}x"), ["ax", "bx", "cx"]);
        assert_eq!(brace_expand("no{brace"), ["no{brace"]);
        // Hostile input: bounded output, no deep recursion.
        let many = "{a,b}".repeat(40);
        assert!(brace_expand(&many).len() <= 8192);
        assert_eq!(brace_expand(&"{a}".repeat(100_000)).len(), 1);
    }

    #[test]
    fn globs_on_real_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("daily.cld"), "x").unwrap();
        let base = d.path().display();
        assert!(glob_any(&format!("{base}/daily.{{c[vl]d,inc}}")));
        assert!(!glob_any(&format!("{base}/main.{{c[vl]d,inc}}")));
    }

    #[test]
    fn evaluation() {
        let ctx = SpecifierContext::current();
        let env = |k: &str| (k == "WAYLAND_DISPLAY").then(|| "wayland-0".to_string());
        let mk = |kind, value: &str, negate, trigger| Condition {
            kind,
            assert: false,
            trigger,
            negate,
            value: value.to_string(),
            file: PathBuf::new(),
            line: 1,
        };
        assert!(mk(ConditionKind::PathExists, "/", false, false).holds(&ctx, &env));
        assert!(mk(ConditionKind::PathExists, "/nonexistent", true, false).holds(&ctx, &env));
        assert!(mk(ConditionKind::PathIsDirectory, "/proc", false, false).holds(&ctx, &env));
        assert!(mk(ConditionKind::PathIsMountPoint, "/proc", false, false).holds(&ctx, &env));
        assert!(mk(ConditionKind::Environment, "WAYLAND_DISPLAY", false, false).holds(&ctx, &env));
        assert!(
            !mk(
                ConditionKind::Environment,
                "WAYLAND_DISPLAY=x",
                false,
                false
            )
            .holds(&ctx, &env)
        );
        assert!(mk(ConditionKind::User, &ctx.user, false, false).holds(&ctx, &env));
        assert!(mk(ConditionKind::User, &ctx.uid.to_string(), false, false).holds(&ctx, &env));
        assert!(mk(ConditionKind::CPUs, ">=1", false, false).holds(&ctx, &env));
        assert!(!mk(ConditionKind::CPUs, ">100000", false, false).holds(&ctx, &env));
        let list = [
            mk(ConditionKind::PathExists, "/nonexistent-a", false, true),
            mk(ConditionKind::PathExists, "/", false, true),
            mk(ConditionKind::PathExists, "/proc", false, false),
        ];
        assert!(evaluate(&list, &ctx, &env).is_ok());
        let list = [
            mk(ConditionKind::PathExists, "/nonexistent-a", false, true),
            mk(ConditionKind::PathExists, "/nonexistent-b", false, true),
        ];
        assert_eq!(
            evaluate(&list, &ctx, &env).unwrap_err().value,
            "/nonexistent-a"
        );
        assert!(ConditionKind::CPUs.validate("x").is_err());
        assert!(ConditionKind::PathExists.validate("rel").is_err());
        assert!(ConditionKind::Capability.validate("CAP_SYS_TIME").is_ok());
    }
}
