//! `%` specifiers (`%i`, `%h`, `%t`, ...) as a user manager resolves them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Group, Uid, User};

use super::UnitError;
use super::name::{UnitName, unescape};

/// Everything specifiers can expand to that does not come from the unit itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecifierContext {
    /// `%U`: the uid of the manager.
    pub uid: u32,
    /// `%G`: the gid of the manager.
    pub gid: u32,
    /// `%u`: the user name.
    pub user: String,
    /// `%g`: the group name.
    pub group: String,
    /// `%h`: the home directory.
    pub home: PathBuf,
    /// `%s`: the login shell.
    pub shell: PathBuf,
    /// `%t`: `$XDG_RUNTIME_DIR`.
    pub runtime_dir: PathBuf,
    /// `%S`: state root. systemd 252 documents `$XDG_CONFIG_HOME` for user managers.
    pub state_dir: PathBuf,
    /// `%C`: `$XDG_CACHE_HOME`.
    pub cache_dir: PathBuf,
    /// `%L`: log root, `%S/log` as systemd 252 documents it.
    pub logs_dir: PathBuf,
    /// `%E`: `$XDG_CONFIG_HOME`.
    pub config_dir: PathBuf,
    /// `%T`: `$TMPDIR`, `$TEMP`, `$TMP` or /tmp.
    pub tmp_dir: PathBuf,
    /// `%V`: like `%T` but /var/tmp when none is set.
    pub var_tmp_dir: PathBuf,
    /// `%H`: the host name.
    pub hostname: String,
    /// `%b`: the boot id (32 hex digits).
    pub boot_id: String,
    /// `%m`: the machine id (32 hex digits).
    pub machine_id: String,
    /// `%v`: the kernel release.
    pub kernel_release: String,
    /// `%a`: the architecture, systemd spelling (`x86-64`, `arm64`).
    pub architecture: String,
    /// os-release fields: `%o` ID, `%w` VERSION_ID, `%W` VARIANT_ID, `%B` BUILD_ID,
    /// `%M` IMAGE_ID, `%A` IMAGE_VERSION.
    pub os_release: HashMap<String, String>,
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Parses os-release text (`KEY=value`, optionally quoted).
pub fn parse_os_release(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            out.insert(
                k.trim().to_string(),
                v.replace("\\\"", "\"").replace("\\\\", "\\"),
            );
        }
    }
    out
}

impl SpecifierContext {
    /// The context of the running process's user, from the passwd database,
    /// the XDG variables and /proc.
    pub fn current() -> SpecifierContext {
        let uid = Uid::current();
        let gid = Gid::current();
        let pw = User::from_uid(uid).ok().flatten();
        let user = pw
            .as_ref()
            .map(|u| u.name.clone())
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| uid.to_string());
        let home = env_path("HOME")
            .or_else(|| pw.as_ref().map(|u| u.dir.clone()))
            .unwrap_or_else(|| PathBuf::from("/"));
        let shell = pw
            .as_ref()
            .map(|u| u.shell.clone())
            .unwrap_or_else(|| PathBuf::from("/bin/sh"));
        let group = Group::from_gid(gid)
            .ok()
            .flatten()
            .map(|g| g.name)
            .unwrap_or_else(|| gid.to_string());
        let config_dir = env_path("XDG_CONFIG_HOME").unwrap_or_else(|| home.join(".config"));
        let cache_dir = env_path("XDG_CACHE_HOME").unwrap_or_else(|| home.join(".cache"));
        let runtime_dir = env_path("XDG_RUNTIME_DIR")
            .unwrap_or_else(|| PathBuf::from(format!("/run/user/{uid}")));
        let tmp = env_path("TMPDIR")
            .or_else(|| env_path("TEMP"))
            .or_else(|| env_path("TMP"));
        let hostname = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".to_string());
        let uname = nix::sys::utsname::uname().ok();
        let machine = uname
            .as_ref()
            .map(|u| u.machine().to_string_lossy().into_owned())
            .unwrap_or_default();
        let os_text = std::fs::read_to_string("/etc/os-release")
            .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
            .unwrap_or_default();
        SpecifierContext {
            uid: uid.as_raw(),
            gid: gid.as_raw(),
            user,
            group,
            home,
            shell,
            runtime_dir,
            state_dir: config_dir.clone(),
            cache_dir,
            logs_dir: config_dir.join("log"),
            config_dir,
            tmp_dir: tmp.clone().unwrap_or_else(|| PathBuf::from("/tmp")),
            var_tmp_dir: tmp.unwrap_or_else(|| PathBuf::from("/var/tmp")),
            hostname,
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id").replace('-', ""),
            machine_id: read_trimmed("/etc/machine-id"),
            kernel_release: uname
                .as_ref()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_default(),
            architecture: systemd_arch(&machine),
            os_release: parse_os_release(&os_text),
        }
    }

    /// A fixed context (uid 1000, user `user`, home /home/user, runtime dir
    /// /run/user/1000, host `host`) for tests, fuzzing and examples, so that
    /// results do not depend on who runs them.
    pub fn example() -> SpecifierContext {
        SpecifierContext {
            uid: 1000,
            gid: 1000,
            user: "user".into(),
            group: "user".into(),
            home: "/home/user".into(),
            shell: "/bin/sh".into(),
            runtime_dir: "/run/user/1000".into(),
            state_dir: "/home/user/.config".into(),
            cache_dir: "/home/user/.cache".into(),
            logs_dir: "/home/user/.config/log".into(),
            config_dir: "/home/user/.config".into(),
            tmp_dir: "/tmp".into(),
            var_tmp_dir: "/var/tmp".into(),
            hostname: "host.example.org".into(),
            boot_id: "0123456789abcdef0123456789abcdef".into(),
            machine_id: "fedcba9876543210fedcba9876543210".into(),
            kernel_release: "6.1.0".into(),
            architecture: "x86-64".into(),
            os_release: HashMap::from([("ID".to_string(), "debian".to_string())]),
        }
    }

    fn os(&self, key: &str) -> String {
        self.os_release.get(key).cloned().unwrap_or_default()
    }

    /// Expands every `%x` in `s` for unit `name` whose fragment is `fragment`,
    /// as systemd 252's `specifier_printf()` does: `%%` is a `%`; `%` and a
    /// letter or digit that is not a specifier is an error; `%` followed by
    /// anything else (`50% off`, `printf "%-5s"`) and a `%` at the very end
    /// are kept as written.
    pub fn expand(
        &self,
        s: &str,
        name: &UnitName,
        fragment: Option<&Path>,
    ) -> Result<String, UnitError> {
        if !s.contains('%') {
            return Ok(s.to_string());
        }
        let mut out = String::with_capacity(s.len() + 16);
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let Some(spec) = chars.next() else {
                // A stray % at the end stays.
                out.push('%');
                break;
            };
            match self.lookup(spec, s, name, fragment)? {
                Some(v) => out.push_str(&v),
                // Not a letter or digit: both characters stay as written.
                None => {
                    out.push('%');
                    out.push(spec);
                }
            }
        }
        Ok(out)
    }

    /// The value of specifier `spec`; `None` when `spec` is not a letter,
    /// digit or `%` (then `%` and `spec` are literal text).
    fn lookup(
        &self,
        spec: char,
        s: &str,
        name: &UnitName,
        fragment: Option<&Path>,
    ) -> Result<Option<String>, UnitError> {
        let prefix = name.prefix();
        let last_component = prefix.rsplit('-').next().unwrap_or(prefix);
        let p = |p: &Path| p.to_string_lossy().into_owned();
        let err = |message: String| UnitError::Specifier {
            value: s.to_string(),
            message,
        };
        let v: String = match spec {
            '%' => "%".to_string(),
            'a' => self.architecture.clone(),
            'A' => self.os("IMAGE_VERSION"),
            'b' => self.boot_id.clone(),
            'B' => self.os("BUILD_ID"),
            'C' => p(&self.cache_dir),
            // systemd 252: the unit's credentials directory below the runtime root.
            'd' => format!("{}/credentials/{}", p(&self.runtime_dir), name.as_str()),
            'E' => p(&self.config_dir),
            'f' => {
                let base = name.instance().unwrap_or(prefix);
                let u = unescape(base);
                if u.starts_with('/') {
                    u
                } else {
                    format!("/{u}")
                }
            }
            'g' => self.group.clone(),
            'G' => self.gid.to_string(),
            'h' => p(&self.home),
            'H' => self.hostname.clone(),
            'i' => name.instance().unwrap_or("").to_string(),
            'I' => unescape(name.instance().unwrap_or("")),
            'j' => last_component.to_string(),
            'J' => unescape(last_component),
            'l' => self.hostname.split('.').next().unwrap_or("").to_string(),
            'L' => p(&self.logs_dir),
            'm' => self.machine_id.clone(),
            'M' => self.os("IMAGE_ID"),
            'n' => name.as_str().to_string(),
            'N' => name.stem().to_string(),
            'o' => self.os("ID"),
            'p' => prefix.to_string(),
            'P' => unescape(prefix),
            'q' => self.hostname.split('.').next().unwrap_or("").to_string(),
            's' => p(&self.shell),
            'S' => p(&self.state_dir),
            't' => p(&self.runtime_dir),
            'T' => p(&self.tmp_dir),
            'u' => self.user.clone(),
            'U' => self.uid.to_string(),
            'v' => self.kernel_release.clone(),
            'V' => p(&self.var_tmp_dir),
            'w' => self.os("VERSION_ID"),
            'W' => self.os("VARIANT_ID"),
            'y' | 'Y' => {
                let Some(frag) = fragment else {
                    return Err(err(format!(
                        "%{spec} needs a unit file, and this unit has none"
                    )));
                };
                if spec == 'y' {
                    p(frag)
                } else {
                    frag.parent().map(p).unwrap_or_default()
                }
            }
            'c' | 'r' | 'R' => {
                return Err(err(format!(
                    "%{spec} (a control group path) is deprecated in systemd and not expanded by corral; write the path out"
                )));
            }
            other if other.is_ascii_alphanumeric() => {
                return Err(err(format!(
                    "unknown specifier %{other}; write %% for a percent sign"
                )));
            }
            _ => return Ok(None),
        };
        Ok(Some(v))
    }
}

/// systemd's architecture names for `uname -m`.
fn systemd_arch(machine: &str) -> String {
    match machine {
        "x86_64" => "x86-64",
        "i386" | "i486" | "i586" | "i686" => "x86",
        "aarch64" => "arm64",
        "aarch64_be" => "arm64-be",
        "ppc64le" => "ppc64-le",
        "riscv64" => "riscv64",
        other => other,
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> SpecifierContext {
        let mut c = SpecifierContext::current();
        c.home = "/home/u".into();
        c.runtime_dir = "/run/user/1000".into();
        c.hostname = "box.example.org".into();
        c
    }

    #[test]
    fn table() {
        let c = ctx();
        let n = UnitName::parse("mariadb@home-x\\x2dy.service").unwrap();
        let cases = [
            ("%i", "home-x\\x2dy"),
            ("%I", "home/x-y"),
            ("%n", "mariadb@home-x\\x2dy.service"),
            ("%N", "mariadb@home-x\\x2dy"),
            ("%p", "mariadb"),
            ("%f", "/home/x-y"),
            ("%h/x", "/home/u/x"),
            ("%t/keyring", "/run/user/1000/keyring"),
            ("%H %l", "box.example.org box"),
            ("100%%", "100%"),
            ("none", "none"),
        ];
        for (input, want) in cases {
            assert_eq!(c.expand(input, &n, None).unwrap(), want, "{input}");
        }
        let plain = UnitName::parse("a-b.service").unwrap();
        assert_eq!(
            c.expand("%i|%p|%P|%j|%f", &plain, None).unwrap(),
            "|a-b|a/b|b|/a/b"
        );
        assert_eq!(
            c.expand("%y", &plain, Some(Path::new("/u/a-b.service")))
                .unwrap(),
            "/u/a-b.service"
        );
    }

    #[test]
    fn percent_signs_as_systemd_252_keeps_them() {
        let c = ctx();
        let n = UnitName::parse("x.service").unwrap();
        let kept = [
            ("50%", "50%"),
            ("Load at 100% for tests", "Load at 100% for tests"),
            ("%-5s|", "%-5s|"),
            ("a %/ b %. %", "a %/ b %. %"),
            ("%%%", "%%"),
            ("x%%y%n", "x%yx.service"),
        ];
        for (input, want) in kept {
            assert_eq!(c.expand(input, &n, None).unwrap(), want, "{input:?}");
        }
        assert_eq!(
            c.expand("%d", &n, None).unwrap(),
            "/run/user/1000/credentials/x.service"
        );
        // A letter or digit that is no specifier is an error, as -EBADSLT in systemd.
        for bad in ["%z", "%0", "%9x", "a%Z", "%y", "%c"] {
            assert!(c.expand(bad, &n, None).is_err(), "{bad:?}");
        }
        // Not ASCII: not a specifier character, kept.
        assert_eq!(c.expand("%é", &n, None).unwrap(), "%é");
    }

    #[test]
    fn os_release() {
        let m = parse_os_release("ID=debian\nVERSION_ID=\"12\"\n# c\nPRETTY_NAME='x y'\n");
        assert_eq!(m["ID"], "debian");
        assert_eq!(m["VERSION_ID"], "12");
        assert_eq!(m["PRETTY_NAME"], "x y");
    }
}
