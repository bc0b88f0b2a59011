//! Unit names: `foo.service`, templates `foo@.service`, instances `foo@bar.service`.

use std::fmt;
use std::str::FromStr;

use super::UnitError;

/// The longest unit name systemd accepts (UNIT_NAME_MAX).
pub const UNIT_NAME_MAX: usize = 255;

/// The type of a unit, from the suffix of its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UnitKind {
    /// `.service`: a process corral supervises.
    Service,
    /// `.target`: a synchronisation point grouping other units.
    Target,
    /// `.socket`: socket activation.
    Socket,
    /// `.timer`: timer activation.
    Timer,
    /// `.path`: path activation (read, not supported yet).
    Path,
    /// `.slice`: a cgroup slice (read, not supported yet).
    Slice,
    /// `.scope`: externally created processes (read, not supported yet).
    Scope,
    /// `.mount`: a mount point (read, not supported yet).
    Mount,
    /// `.automount`: an automount point (read, not supported yet).
    Automount,
    /// `.swap`: a swap device (read, not supported yet).
    Swap,
    /// `.device`: a kernel device (read, not supported yet).
    Device,
}

impl UnitKind {
    /// Every kind, in suffix order.
    pub const ALL: [UnitKind; 11] = [
        UnitKind::Service,
        UnitKind::Target,
        UnitKind::Socket,
        UnitKind::Timer,
        UnitKind::Path,
        UnitKind::Slice,
        UnitKind::Scope,
        UnitKind::Mount,
        UnitKind::Automount,
        UnitKind::Swap,
        UnitKind::Device,
    ];

    /// The suffix without the dot: `service`, `target`, ...
    pub fn suffix(self) -> &'static str {
        match self {
            UnitKind::Service => "service",
            UnitKind::Target => "target",
            UnitKind::Socket => "socket",
            UnitKind::Timer => "timer",
            UnitKind::Path => "path",
            UnitKind::Slice => "slice",
            UnitKind::Scope => "scope",
            UnitKind::Mount => "mount",
            UnitKind::Automount => "automount",
            UnitKind::Swap => "swap",
            UnitKind::Device => "device",
        }
    }

    /// The kind named by a suffix (without the dot).
    pub fn from_suffix(s: &str) -> Option<UnitKind> {
        UnitKind::ALL.into_iter().find(|k| k.suffix() == s)
    }

    /// The name of the type-specific section: `Service`, `Socket`, ... (`None` for targets).
    pub fn section(self) -> Option<&'static str> {
        match self {
            UnitKind::Service => Some("Service"),
            UnitKind::Target => None,
            UnitKind::Socket => Some("Socket"),
            UnitKind::Timer => Some("Timer"),
            UnitKind::Path => Some("Path"),
            UnitKind::Slice => Some("Slice"),
            UnitKind::Scope => Some("Scope"),
            UnitKind::Mount => Some("Mount"),
            UnitKind::Automount => Some("Automount"),
            UnitKind::Swap => Some("Swap"),
            UnitKind::Device => None,
        }
    }

    /// Whether corral reads this kind's section into a typed definition
    /// (services, targets, sockets, timers); the others are kept and noted
    /// as not supported yet.
    pub fn is_supported(self) -> bool {
        matches!(
            self,
            UnitKind::Service | UnitKind::Target | UnitKind::Socket | UnitKind::Timer
        )
    }
}

impl fmt::Display for UnitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.suffix())
    }
}

/// A validated unit name.
///
/// Three shapes exist: a plain name (`foo.service`), a template
/// (`foo@.service`) and an instance of a template (`foo@bar.service`).
///
/// It compares, orders and hashes as its full name does, so a map keyed by
/// `UnitName` is looked up with a `&str` ([`Borrow<str>`](std::borrow::Borrow)).
#[derive(Clone)]
pub struct UnitName {
    /// The whole name, kept so that `as_str` costs nothing; the kind, the
    /// prefix and the instance are read from it when asked.
    full: NameText,
}

// A manager keeps several names per unit (the table's key, the unit's own,
// `Wants=`, `Unit=`): 24 B each, and no allocation for most names.
const _: () = assert!(std::mem::size_of::<UnitName>() == 24);

/// Names up to this many bytes are kept inline.
const INLINE_MAX: usize = 22;

/// A name's text: inline when it fits, as most names do (`backup.timer`,
/// `pipewire.service`), else boxed. Boxed, every name was an allocation of
/// its own: a 32 B chunk of the allocator for a name of up to 24 bytes,
/// about three per unit in a manager (2.9 per timer of `bench-timers.sh`).
#[derive(Clone)]
enum NameText {
    /// The first `len` bytes of `bytes`, copied from a `str`.
    Inline { len: u8, bytes: [u8; INLINE_MAX] },
    /// A longer name.
    Boxed(Box<str>),
}

impl NameText {
    fn new(s: &str) -> NameText {
        match u8::try_from(s.len()) {
            Ok(len) if s.len() <= INLINE_MAX => {
                let mut bytes = [0; INLINE_MAX];
                bytes[..s.len()].copy_from_slice(s.as_bytes());
                NameText::Inline { len, bytes }
            }
            _ => NameText::Boxed(s.into()),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            // SAFETY: `new` copied these bytes whole from a `str`, so they
            // are UTF-8.
            NameText::Inline { len, bytes } => unsafe {
                std::str::from_utf8_unchecked(&bytes[..usize::from(*len)])
            },
            NameText::Boxed(s) => s,
        }
    }
}

fn has_type_suffix(s: &str) -> bool {
    s.rsplit_once('.')
        .is_some_and(|(_, suf)| UnitKind::from_suffix(suf).is_some())
}

fn valid_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '.' | '\\')
}

impl UnitName {
    /// Parses a full unit name; a name without a known suffix gets `.service`.
    ///
    /// `foo` is `foo.service`, `foo@bar` is `foo@bar.service`.
    pub fn parse(s: &str) -> Result<UnitName, UnitError> {
        let kind_from = s
            .rsplit_once('.')
            .and_then(|(_, suf)| UnitKind::from_suffix(suf));
        match kind_from {
            Some(_) => UnitName::parse_strict(s),
            None => UnitName::parse_strict(&format!("{s}.service")),
        }
    }

    /// The full name a typed name stands for, as systemctl mangles it: a
    /// name whose last suffix is not a unit type gets `.service`
    /// (`org.example.Sleeper` is `org.example.Sleeper.service`, `memcached@1`
    /// is `memcached@1.service`); a name with a type suffix stays as typed,
    /// valid or not, so that the error names what the user wrote.
    pub fn mangle(typed: &str) -> String {
        match UnitName::parse(typed) {
            Ok(n) => n.as_str().to_string(),
            Err(_) if has_type_suffix(typed) => typed.to_string(),
            Err(_) => format!("{typed}.service"),
        }
    }

    /// Parses a full unit name that must carry its type suffix.
    pub fn parse_strict(s: &str) -> Result<UnitName, UnitError> {
        let bad = |reason: &str| UnitError::InvalidName {
            name: s.to_string(),
            reason: reason.to_string(),
        };
        if s.is_empty() {
            return Err(bad("the name is empty"));
        }
        if s.len() > UNIT_NAME_MAX {
            return Err(bad("longer than 255 bytes"));
        }
        let (stem, suffix) = s
            .rsplit_once('.')
            .ok_or_else(|| bad("it has no type suffix such as .service"))?;
        UnitKind::from_suffix(suffix)
            .ok_or_else(|| bad(&format!("unknown unit type '.{suffix}'")))?;
        let (prefix, instance) = match stem.split_once('@') {
            Some((p, i)) => (p, Some(i)),
            None => (stem, None),
        };
        if prefix.is_empty() {
            return Err(bad("the name before the suffix (or '@') is empty"));
        }
        if let Some(c) = prefix.chars().find(|&c| !valid_char(c)) {
            return Err(bad(&format!(
                "character {c:?} is not allowed in a unit name"
            )));
        }
        if let Some(inst) = instance
            && let Some(c) = inst.chars().find(|&c| !valid_char(c) && c != '@')
        {
            return Err(bad(&format!(
                "character {c:?} is not allowed in an instance name (escape it with `systemd-escape`)"
            )));
        }
        Ok(UnitName::valid(s))
    }

    /// A name already known to be valid.
    fn valid(s: &str) -> UnitName {
        UnitName {
            full: NameText::new(s),
        }
    }

    /// The full name, with suffix.
    pub fn as_str(&self) -> &str {
        self.full.as_str()
    }

    /// The name without the type suffix, and the type.
    fn split_suffix(&self) -> (&str, UnitKind) {
        let (stem, suffix) = (self.as_str().rsplit_once('.')).expect("parse_strict checks it");
        let kind = UnitKind::from_suffix(suffix).expect("parse_strict checks it");
        (stem, kind)
    }

    /// The unit's type.
    pub fn kind(&self) -> UnitKind {
        self.split_suffix().1
    }

    /// The part before `@` (or before the suffix for plain names): `%p`.
    pub fn prefix(&self) -> &str {
        let stem = self.stem();
        stem.split_once('@').map_or(stem, |(p, _)| p)
    }

    /// What comes between `@` and the suffix: `Some("")` for a template.
    fn after_at(&self) -> Option<&str> {
        self.stem().split_once('@').map(|(_, a)| a)
    }

    /// The instance of an instantiated unit (`bar` in `foo@bar.service`): `%i`.
    ///
    /// `None` for plain names and for templates.
    pub fn instance(&self) -> Option<&str> {
        match self.after_at() {
            Some("") | None => None,
            Some(i) => Some(i),
        }
    }

    /// True for `foo@.service`.
    pub fn is_template(&self) -> bool {
        self.after_at() == Some("")
    }

    /// True for `foo@bar.service`.
    pub fn is_instance(&self) -> bool {
        self.instance().is_some()
    }

    /// The template of an instance (`foo@.service` for `foo@bar.service`).
    pub fn template(&self) -> Option<UnitName> {
        self.instance()?;
        Some(UnitName::valid(&format!(
            "{}@.{}",
            self.prefix(),
            self.kind().suffix()
        )))
    }

    /// The instance `inst` of this template (or of this instance's template).
    pub fn with_instance(&self, inst: &str) -> Result<UnitName, UnitError> {
        UnitName::parse_strict(&format!(
            "{}@{}.{}",
            self.prefix(),
            inst,
            self.kind().suffix()
        ))
    }

    /// The name with the type suffix removed: `%N`.
    pub fn stem(&self) -> &str {
        self.split_suffix().0
    }

    /// The same name with another type (`foo.socket` -> `foo.service`).
    pub fn with_kind(&self, kind: UnitKind) -> UnitName {
        UnitName::valid(&format!("{}.{}", self.stem(), kind.suffix()))
    }
}

// As the full name (`Borrow<str>` needs Eq, Ord and Hash to agree with it).
impl PartialEq for UnitName {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for UnitName {}

impl PartialOrd for UnitName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for UnitName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl std::hash::Hash for UnitName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl std::borrow::Borrow<str> for UnitName {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for UnitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("UnitName").field(&self.as_str()).finish()
    }
}

impl fmt::Display for UnitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for UnitName {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UnitName::parse(s)
    }
}

/// Undoes systemd's name escaping: `-` is `/`, `\xNN` is the byte NN.
///
/// This is what `%I`, `%P`, `%J` and `%f` produce.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'-' => {
                out.push(b'/');
                i += 1;
            }
            b'\\' if i + 3 < b.len() && b[i + 1] == b'x' => {
                let hex = std::str::from_utf8(&b[i + 2..i + 4]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 4;
                    }
                    None => {
                        out.push(b'\\');
                        i += 1;
                    }
                }
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Escapes a string the way `systemd-escape` does, for use as an instance name.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, b) in s.bytes().enumerate() {
        match b {
            b'/' => out.push('-'),
            b'.' if i == 0 => out.push_str("\\x2e"),
            b if b.is_ascii_alphanumeric() || b == b':' || b == b'_' || b == b'.' => {
                out.push(b as char)
            }
            b => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_three_words() {
        // A manager keeps several names per unit (the table's key, the
        // unit's own, its dependencies): issue 12's memory budget.
        assert_eq!(std::mem::size_of::<UnitName>(), 24);
    }

    #[test]
    fn shapes() {
        let n = UnitName::parse("foo").unwrap();
        assert_eq!(n.as_str(), "foo.service");
        assert!(!n.is_template() && !n.is_instance());
        let t = UnitName::parse("foo@.service").unwrap();
        assert!(t.is_template());
        assert_eq!(t.instance(), None);
        let i = UnitName::parse("memcached@11212").unwrap();
        assert_eq!(i.as_str(), "memcached@11212.service");
        assert_eq!(i.instance(), Some("11212"));
        assert_eq!(i.prefix(), "memcached");
        assert_eq!(i.template().unwrap().as_str(), "memcached@.service");
        assert_eq!(i.stem(), "memcached@11212");
        let s = UnitName::parse("dbus.socket").unwrap();
        assert_eq!(s.kind(), UnitKind::Socket);
        assert_eq!(
            UnitName::parse("a.b").unwrap().as_str(),
            "a.b.service",
            "an unknown suffix is part of the name"
        );
    }

    #[test]
    fn mangle_appends_service_unless_the_suffix_is_a_type() {
        for (typed, full) in [
            ("org.example.Sleeper", "org.example.Sleeper.service"),
            ("org.example.Sleeper.service", "org.example.Sleeper.service"),
            ("memcached@11212", "memcached@11212.service"),
            ("dbus.socket", "dbus.socket"),
            ("default.target", "default.target"),
            ("foo", "foo.service"),
            // Invalid names stay recognisable in the error that follows.
            ("bad name.service", "bad name.service"),
            ("bad name", "bad name.service"),
        ] {
            assert_eq!(UnitName::mangle(typed), full, "{typed}");
        }
    }

    #[test]
    fn invalid() {
        for bad in [
            "",
            "@x.service",
            ".service",
            "a b.service",
            "a/b",
            "x@y z.service",
        ] {
            assert!(UnitName::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(UnitName::parse_strict("foo").is_err());
        assert!(UnitName::parse(&"a".repeat(300)).is_err());
    }

    #[test]
    fn escaping() {
        assert_eq!(unescape("home-user-x\\x2dy"), "home/user/x-y");
        assert_eq!(escape("/home/user x"), "-home-user\\x20x");
        assert_eq!(unescape("\\"), "\\");
        assert_eq!(unescape("\\xz"), "\\xz");
    }

    #[test]
    fn maps_keyed_by_unit_name_are_looked_up_by_str() {
        let names = ["b.service", "a@x.service", "a.target", "a@.service"];
        let set: std::collections::HashSet<UnitName> =
            names.iter().map(|n| UnitName::parse(n).unwrap()).collect();
        let tree: std::collections::BTreeSet<UnitName> = set.iter().cloned().collect();
        for n in names {
            assert!(set.contains(n), "{n}");
            assert!(tree.contains(n), "{n}");
        }
        assert!(!set.contains("c.service"));
        // In the order of the full names, as a map keyed by String had it.
        let mut sorted = names.to_vec();
        sorted.sort();
        let order: Vec<&str> = tree.iter().map(UnitName::as_str).collect();
        assert_eq!(order, sorted);
    }
}
