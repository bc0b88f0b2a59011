//! The decision taken before a unit starts, from its `Condition*=` and
//! `Assert*=` lists (evaluated by [`super::condition`]), with the reason
//! `status` shows.
//!
//! systemd's rules: the conditions are decided first; when they do not hold,
//! the unit is *skipped* (it stays inactive, not failed) and the asserts are
//! not looked at. When they hold, a false assert *fails* the start. In each
//! list every plain entry must hold and, if there are triggering entries
//! (`|`), at least one of those must hold.

use std::fmt;

use super::SpecifierContext;
use super::condition::{Condition, evaluate};
use super::model::UnitSection;

/// What to do with a start request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartCheck {
    /// Start the unit.
    Start,
    /// Do not start; the unit stays inactive (result "condition"), not failed.
    Skip(String),
    /// Do not start; the start fails (result "assert").
    Fail(String),
}

impl fmt::Display for StartCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartCheck::Start => f.write_str("all conditions and asserts met"),
            StartCheck::Skip(r) | StartCheck::Fail(r) => f.write_str(r),
        }
    }
}

/// Checks a unit's conditions, then its asserts, for the manager described
/// by `ctx` with environment block `env`. The reason names the entry that
/// failed ("ConditionUser=!root was not met"), or every triggering entry
/// when none of them held. Path checks touch the file system: call it off
/// the async runtime.
pub fn check(
    unit: &UnitSection,
    ctx: &SpecifierContext,
    env: &dyn Fn(&str) -> Option<String>,
) -> StartCheck {
    if let Some(reason) = failed(&unit.conditions, ctx, env, "conditions") {
        return StartCheck::Skip(reason);
    }
    if let Some(reason) = failed(&unit.asserts, ctx, env, "asserts") {
        return StartCheck::Fail(reason);
    }
    StartCheck::Start
}

fn failed(
    list: &[Condition],
    ctx: &SpecifierContext,
    env: &dyn Fn(&str) -> Option<String>,
    what: &str,
) -> Option<String> {
    let bad = evaluate(list, ctx, env).err()?;
    if !bad.trigger {
        return Some(format!("{bad} was not met"));
    }
    let triggers: Vec<String> = list
        .iter()
        .filter(|c| c.trigger)
        .map(ToString::to_string)
        .collect();
    Some(format!(
        "none of the triggering {what} was met ({})",
        triggers.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;
    use crate::unit::condition::ConditionKind;

    fn cond(line: &str) -> Condition {
        let (key, value) = line.split_once('=').expect("Directive=value");
        let (assert, kind) = match key.strip_prefix("Condition") {
            Some(k) => (false, k),
            None => (
                true,
                key.strip_prefix("Assert").expect("Condition or Assert"),
            ),
        };
        let mut v = value;
        let trigger = v.starts_with('|');
        v = v.trim_start_matches('|');
        let negate = v.starts_with('!');
        v = v.trim_start_matches('!');
        Condition {
            kind: ConditionKind::from_name(kind).expect("a known condition"),
            assert,
            trigger,
            negate,
            value: v.to_string(),
            file: "test.service".into(),
            line: 1,
        }
    }

    fn section(lines: &[&str]) -> UnitSection {
        let mut u = crate::unit::Unit::new(crate::unit::UnitName::parse("t.service").unwrap());
        for l in lines {
            let c = cond(l);
            if c.assert {
                u.unit.asserts.push(c);
            } else {
                u.unit.conditions.push(c);
            }
        }
        u.unit.into_inner()
    }

    fn user() -> SpecifierContext {
        SpecifierContext {
            uid: 1000,
            gid: 1000,
            user: "alice".into(),
            group: "alice".into(),
            hostname: "builder".into(),
            ..SpecifierContext::current()
        }
    }

    fn root() -> SpecifierContext {
        SpecifierContext {
            uid: 0,
            gid: 0,
            user: "root".into(),
            group: "root".into(),
            ..user()
        }
    }

    fn env_of<'a>(map: &'a HashMap<&'a str, &'a str>) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| map.get(k).map(|v| v.to_string())
    }

    #[test]
    fn table_of_single_conditions() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("full"), b"x").unwrap();
        std::fs::write(d.join("empty"), b"").unwrap();
        std::fs::write(d.join("script"), b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(d.join("script"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir(d.join("emptydir")).unwrap();
        std::fs::create_dir(d.join("fulldir")).unwrap();
        std::fs::write(d.join("fulldir/a.conf"), b"").unwrap();
        symlink(d.join("full"), d.join("link")).unwrap();
        symlink(d.join("nowhere"), d.join("dangling")).unwrap();
        let p = |name: &str| d.join(name).display().to_string();
        let vars = HashMap::from([("DISPLAY", ":0"), ("EMPTY", "")]);
        let env = env_of(&vars);
        let (alice, root) = (user(), root());
        let table: Vec<(String, &SpecifierContext, bool)> = vec![
            (format!("ConditionPathExists={}", p("full")), &alice, true),
            (
                format!("ConditionPathExists={}", p("missing")),
                &alice,
                false,
            ),
            (
                format!("ConditionPathExists=!{}", p("missing")),
                &alice,
                true,
            ),
            (
                format!("ConditionPathExists={}", p("dangling")),
                &alice,
                false,
            ),
            (
                format!("ConditionPathExistsGlob={}", p("fulldir/*.conf")),
                &alice,
                true,
            ),
            (
                format!("ConditionPathExistsGlob={}", p("emptydir/*")),
                &alice,
                false,
            ),
            (
                format!("ConditionPathIsDirectory={}", p("emptydir")),
                &alice,
                true,
            ),
            (
                format!("ConditionPathIsDirectory={}", p("full")),
                &alice,
                false,
            ),
            (
                format!("ConditionPathIsSymbolicLink={}", p("link")),
                &alice,
                true,
            ),
            (
                format!("ConditionPathIsSymbolicLink={}", p("full")),
                &alice,
                false,
            ),
            (
                format!("ConditionPathIsReadWrite={}", p("full")),
                &alice,
                true,
            ),
            ("ConditionPathIsMountPoint=/proc".to_string(), &alice, true),
            (
                format!("ConditionPathIsMountPoint={}", p("fulldir")),
                &alice,
                false,
            ),
            (
                format!("ConditionDirectoryNotEmpty={}", p("fulldir")),
                &alice,
                true,
            ),
            (
                format!("ConditionDirectoryNotEmpty={}", p("emptydir")),
                &alice,
                false,
            ),
            (format!("ConditionFileNotEmpty={}", p("full")), &alice, true),
            (
                format!("ConditionFileNotEmpty={}", p("empty")),
                &alice,
                false,
            ),
            (
                format!("ConditionFileIsExecutable={}", p("script")),
                &alice,
                true,
            ),
            (
                format!("ConditionFileIsExecutable={}", p("full")),
                &alice,
                false,
            ),
            ("ConditionUser=alice".to_string(), &alice, true),
            ("ConditionUser=1000".to_string(), &alice, true),
            ("ConditionUser=!root".to_string(), &alice, true),
            ("ConditionUser=!root".to_string(), &root, false),
            ("ConditionUser=root".to_string(), &root, true),
            ("ConditionUser=@system".to_string(), &alice, false),
            ("ConditionUser=@system".to_string(), &root, true),
            ("ConditionEnvironment=DISPLAY".to_string(), &alice, true),
            ("ConditionEnvironment=DISPLAY=:0".to_string(), &alice, true),
            ("ConditionEnvironment=DISPLAY=:1".to_string(), &alice, false),
            ("ConditionEnvironment=EMPTY=".to_string(), &alice, true),
            (
                "ConditionEnvironment=!WAYLAND_DISPLAY".to_string(),
                &alice,
                true,
            ),
            ("ConditionHost=builder".to_string(), &alice, true),
            ("ConditionHost=build*".to_string(), &alice, true),
            ("ConditionHost=other".to_string(), &alice, false),
            ("ConditionCPUs=>=1".to_string(), &alice, true),
            ("ConditionCPUs=<1".to_string(), &alice, false),
            ("ConditionArchitecture=native".to_string(), &alice, true),
        ];
        for (line, ctx, want) in table {
            let got = check(&section(&[&line]), ctx, &env);
            assert_eq!(got == StartCheck::Start, want, "{line}: {got}");
            if !want {
                assert_eq!(got, StartCheck::Skip(format!("{line} was not met")));
            }
        }
    }

    #[test]
    fn not_root_run_as_root_is_skipped_with_the_reason() {
        let none = HashMap::new();
        assert_eq!(
            check(&section(&["ConditionUser=!root"]), &root(), &env_of(&none)),
            StartCheck::Skip("ConditionUser=!root was not met".into())
        );
    }

    #[test]
    fn asserts_fail_and_conditions_are_decided_first() {
        let none = HashMap::new();
        let env = env_of(&none);
        assert_eq!(
            check(&section(&["AssertPathExists=/no/such/path"]), &user(), &env),
            StartCheck::Fail("AssertPathExists=/no/such/path was not met".into())
        );
        assert_eq!(
            check(
                &section(&["AssertPathExists=/no/such/path", "ConditionUser=root"]),
                &user(),
                &env
            ),
            StartCheck::Skip("ConditionUser=root was not met".into())
        );
    }

    #[test]
    fn triggering_entries_need_one_and_plain_ones_need_all() {
        let none = HashMap::new();
        let env = env_of(&none);
        let ctx = user();
        assert_eq!(
            check(
                &section(&[
                    "ConditionPathExists=|/no/such",
                    "ConditionPathExists=|/proc"
                ]),
                &ctx,
                &env
            ),
            StartCheck::Start
        );
        assert_eq!(
            check(
                &section(&["ConditionPathExists=|/no/such", "ConditionPathExists=|!/proc"]),
                &ctx,
                &env
            ),
            StartCheck::Skip(
                "none of the triggering conditions was met (ConditionPathExists=|/no/such, ConditionPathExists=|!/proc)"
                    .into()
            )
        );
        assert_eq!(
            check(
                &section(&["ConditionPathExists=|/proc", "ConditionUser=root"]),
                &ctx,
                &env
            ),
            StartCheck::Skip("ConditionUser=root was not met".into())
        );
        assert_eq!(
            check(
                &section(&["ConditionPathExists=|/proc", "AssertPathExists=|/no/such"]),
                &ctx,
                &env
            ),
            StartCheck::Fail(
                "none of the triggering asserts was met (AssertPathExists=|/no/such)".into()
            )
        );
        assert_eq!(check(&section(&[]), &ctx, &env), StartCheck::Start);
    }

    #[test]
    fn conditions_come_through_the_real_unit_file_parser() {
        let dir = tempfile::tempdir().unwrap();
        let units = dir.path().join("units");
        std::fs::create_dir_all(&units).unwrap();
        std::fs::write(
            units.join("only-users.service"),
            "[Unit]\nConditionUser=!root\nConditionSecurity=selinux\n[Service]\nExecStart=/bin/true\n",
        )
        .unwrap();
        let loader = crate::unit::Loader::new(vec![units], Vec::new(), root());
        let u = loader
            .load(&crate::unit::UnitName::parse("only-users").unwrap())
            .unwrap();
        assert!(
            u.diagnostics
                .iter()
                .any(|d| d.to_string().contains("ConditionSecurity")),
            "an unknown condition is reported, not fatal: {:?}",
            u.diagnostics
        );
        let none = HashMap::new();
        assert_eq!(
            check(&u.unit, &root(), &env_of(&none)),
            StartCheck::Skip("ConditionUser=!root was not met".into())
        );
        assert_eq!(check(&u.unit, &user(), &env_of(&none)), StartCheck::Start);
    }
}
