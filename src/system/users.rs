//! The user database: who a uid is, and the groups they get at login.
//!
//! These calls go through NSS (files, LDAP, sssd...) and may block, so the
//! async side calls them from `spawn_blocking`.

use std::ffi::CString;
use std::path::PathBuf;

use nix::unistd::{Gid, Uid, User, getgrouplist};

use super::SystemError;

/// What the system manager needs to start a user's manager as that user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// The uid.
    pub uid: u32,
    /// The primary gid (setgid target).
    pub gid: u32,
    /// Supplementary groups from the user database, as initgroups(3) would set
    /// them; includes the primary group.
    pub groups: Vec<u32>,
    /// Login name (USER, LOGNAME, linger file name).
    pub name: String,
    /// Home directory (HOME, working directory).
    pub home: PathBuf,
    /// Login shell (SHELL).
    pub shell: PathBuf,
}

/// Looks up `uid` and its supplementary groups; `Ok(None)` if no such user.
pub fn lookup_uid(uid: u32) -> Result<Option<UserInfo>, SystemError> {
    let user = User::from_uid(Uid::from_raw(uid)).map_err(|e| SystemError::UserDb {
        what: format!("uid {uid}"),
        source: e.into(),
    })?;
    user.map(complete).transpose()
}

/// Looks up a login name and its supplementary groups; `Ok(None)` if unknown.
pub fn lookup_name(name: &str) -> Result<Option<UserInfo>, SystemError> {
    let user = User::from_name(name).map_err(|e| SystemError::UserDb {
        what: format!("user {name:?}"),
        source: e.into(),
    })?;
    user.map(complete).transpose()
}

fn complete(user: User) -> Result<UserInfo, SystemError> {
    let cname = CString::new(user.name.clone()).map_err(|_| SystemError::UserDb {
        what: format!("user {:?}", user.name),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "NUL in user name"),
    })?;
    let groups = getgrouplist(&cname, user.gid).map_err(|e| SystemError::UserDb {
        what: format!("groups of user {:?} (getgrouplist)", user.name),
        source: e.into(),
    })?;
    Ok(UserInfo {
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        groups: groups.into_iter().map(Gid::as_raw).collect(),
        name: user.name,
        home: user.dir,
        shell: user.shell,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_found_with_its_primary_group() {
        let root = lookup_uid(0).unwrap().expect("uid 0 in the user database");
        assert_eq!(root.name, "root");
        assert_eq!(root.gid, 0);
        assert!(root.groups.contains(&0), "{:?}", root.groups);
        assert_eq!(lookup_name("root").unwrap(), Some(root));
    }

    #[test]
    fn unknown_users_are_none() {
        assert_eq!(lookup_name("corral-no-such-user-x").unwrap(), None);
        assert_eq!(lookup_uid(3_999_999_917).unwrap(), None);
    }
}
