//! The local time zone of calendar timers, and how a change of it is
//! noticed: as systemd 252, by the modification time of `/etc/localtime`
//! (the symlink itself: replacing it is how the zone is changed), and the
//! zone then read again from `$TZ` or that file.
//!
//! `CORRAL_LOCALTIME` names another file to read and watch instead of
//! `/etc/localtime`. It is for tests, which must not change the machine's
//! zone; nothing else should set it.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use jiff::tz::TimeZone;

/// The environment variable that replaces `/etc/localtime` (for tests).
pub const LOCALTIME_ENV: &str = "CORRAL_LOCALTIME";

/// The file whose changes are zone changes: `$CORRAL_LOCALTIME`, else
/// `/etc/localtime`.
pub fn localtime_path() -> PathBuf {
    std::env::var_os(LOCALTIME_ENV)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("/etc/localtime"), PathBuf::from)
}

/// What tells one state of the file from the next: the modification time
/// of the link itself (lstat), `None` while it does not exist.
pub fn stamp(path: &Path) -> Option<SystemTime> {
    std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
}

/// The local zone: `$TZ` when set (as tzset(3) reads it), else the TZif
/// file at `path`, named after its link into a zoneinfo directory; UTC
/// when neither can be read, as glibc falls back.
pub fn read_local(path: &Path) -> TimeZone {
    if std::env::var_os("TZ").is_some_and(|v| !v.is_empty()) {
        return TimeZone::system();
    }
    let Ok(bytes) = std::fs::read(path) else {
        return TimeZone::UTC;
    };
    let name = std::fs::read_link(path).ok().and_then(|target| {
        let t = target.to_str()?;
        let at = t.find("zoneinfo/")?;
        Some(t[at + "zoneinfo/".len()..].to_string())
    });
    TimeZone::tzif(name.as_deref().unwrap_or("localtime"), &bytes).unwrap_or(TimeZone::UTC)
}

/// The local zone as [`read_local`] reads it from [`localtime_path`],
/// kept while that file's [`stamp`] stays the same: what the unit loader
/// parses calendar values with, once per `OnCalendar=`.
/// `TimeZone::system()` would load jiff's index of the whole tz database
/// (108 KB for the manager's life) for a zone the parse takes only the
/// abbreviations of.
pub fn current_local() -> TimeZone {
    static CACHE: Mutex<Option<(Option<SystemTime>, TimeZone)>> = Mutex::new(None);
    let path = localtime_path();
    let now = stamp(&path);
    let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((at, tz)) = cache.as_ref()
        && *at == now
    {
        return tz.clone();
    }
    let tz = read_local(&path);
    *cache = Some((now, tz.clone()));
    tz
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_zone_is_read_from_the_link_and_a_replaced_link_is_a_change() {
        if std::env::var_os("TZ").is_some() {
            // The test reads the file; $TZ would override it.
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("localtime");
        assert_eq!(stamp(&link), None);
        assert_eq!(read_local(&link), TimeZone::UTC);
        std::os::unix::fs::symlink("/usr/share/zoneinfo/Europe/Berlin", &link).unwrap();
        let first = stamp(&link);
        assert!(first.is_some());
        let z = read_local(&link);
        assert_eq!(z.iana_name(), Some("Europe/Berlin"));
        // At midsummer Berlin is two hours ahead of UTC.
        let t = jiff::Timestamp::from_second(1_719_835_200).unwrap();
        assert_eq!(z.to_offset_info(t).offset().seconds(), 2 * 3600);
        // Replaced as timedatectl does: a new link renamed over the old.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let tmp = dir.path().join(".localtime.new");
        std::os::unix::fs::symlink("/usr/share/zoneinfo/Asia/Tokyo", &tmp).unwrap();
        std::fs::rename(&tmp, &link).unwrap();
        assert_ne!(stamp(&link), first);
        let z = read_local(&link);
        assert_eq!(z.iana_name(), Some("Asia/Tokyo"));
        assert_eq!(z.to_offset_info(t).offset().seconds(), 9 * 3600);
    }
}
