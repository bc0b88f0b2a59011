//! journalctl's flags and outputs, checked against journalctl itself: the same
//! entries go into a corral store and (through `-o export` and
//! systemd-journal-remote) into a journal file, and `corral journal -D DIR ARGS`
//! must print what `journalctl --file FILE ARGS` (systemd 252) prints.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::journal::{corral_journal, open, to_journal_file, varied_entries as entries};
use serde_json::Value;

/// A corral store and the journal file journal-remote made of its export.
struct Pair {
    dir: tempfile::TempDir,
    jfile: std::path::PathBuf,
}

fn pair() -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let rt = common::rt();
    rt.block_on(async {
        let (_store, w) = open(dir.path());
        w.append_batch(entries()).await.unwrap();
        w.flush().await.unwrap();
    });
    let jfile = dir.path().join("remote.journal");
    to_journal_file(&corral_journal(dir.path(), &["-o", "export"]), &jfile);
    Pair { dir, jfile }
}

fn run(cmd: &mut Command) -> Output {
    cmd.env("TZ", "UTC")
        .env("SYSTEMD_COLORS", "0")
        .output()
        .unwrap()
}

impl Pair {
    fn corral(&self, args: &[&str]) -> Output {
        run(Command::new(env!("CARGO_BIN_EXE_corral"))
            .args(["journal", "--no-pager", "-D"])
            .arg(self.dir.path())
            .args(args))
    }

    fn journalctl(&self, args: &[&str]) -> Output {
        run(Command::new("journalctl")
            .args(["--no-pager", "--file"])
            .arg(&self.jfile)
            .args(args))
    }

    /// Both print the same bytes and exit 0.
    fn same(&self, args: &[&str]) -> String {
        let (c, j) = (self.corral(args), self.journalctl(args));
        assert!(c.status.success(), "corral {args:?}: {}", common::show(&c));
        assert!(
            j.status.success(),
            "journalctl {args:?}: {}",
            common::show(&j)
        );
        let (c, j) = (
            String::from_utf8_lossy(&c.stdout).into_owned(),
            String::from_utf8_lossy(&j.stdout).into_owned(),
        );
        assert_eq!(c, j, "corral journal {args:?} vs journalctl");
        c
    }
}

#[test]
fn short_outputs_print_what_journalctl_prints() {
    let p = pair();
    for o in [
        "short",
        "short-iso",
        "short-precise",
        "short-monotonic",
        "short-unix",
        "with-unit",
        "cat",
    ] {
        p.same(&["-o", o]);
        p.same(&["-o", o, "--no-hostname"]);
        p.same(&["-o", o, "-a"]);
    }
}

#[test]
fn unprintable_messages_as_journalctl_252_shows_them() {
    let p = pair();
    let out = p.same(&["-o", "short", "--no-hostname"]);
    let out: String = out
        .lines()
        .map(|l| {
            format!(
                "{}\n",
                l.split_once(": ").map_or(l.trim_start(), |(_, m)| m)
            )
        })
        .collect();
    let lines: Vec<&str> = out.lines().collect();
    // A carriage return before the end goes (ssh-agent's lines), a tab becomes
    // eight spaces, color codes go; a carriage return inside, a bell, a C1 control
    // or bad UTF-8 make the message a blob, whose size is systemd's format_bytes.
    assert_eq!(lines[1], "ssh-agent error");
    assert_eq!(lines[3], "tab        separated");
    assert_eq!(lines[4], "red text");
    assert_eq!(lines[5], "[22B blob data]");
    assert_eq!(&lines[6..8], ["two", "lines"]);
    assert_eq!(lines[8], "[5B blob data]");
    assert_eq!(lines[9], "caf\u{e9} \u{2603}");
    assert_eq!(lines[12], "[1.9K blob data]");
    // -a, and cat always: as they are.
    assert_eq!(p.same(&["-o", "cat"]), p.same(&["-o", "cat", "-a"]));
    let all = p.same(&["-o", "short", "-a"]);
    assert!(all.contains(": ssh-agent error\r\n"), "{all:?}");
    assert!(all.contains("carriage\rreturn inside\n"), "{all:?}");
    assert!(all.contains("tab\tseparated\n"), "{all:?}");
    assert!(all.contains("bell\x07\n"), "{all:?}");
    // Later lines of a message are indented under the first.
    let short = p.same(&["-o", "short", "--user-unit", "web", "-g", "two"]);
    let (first, second) = short.split_once('\n').unwrap();
    let indent = first.find("two").unwrap();
    assert_eq!(second, format!("{}lines\n", " ".repeat(indent)));
}

#[test]
fn identifiers_units_and_field_matches_filter_as_journalctl() {
    let p = pair();
    for args in [
        &["-t", "run"][..],
        &["-t", "run", "--identifier", "db"],
        &["--user-unit", "job"],
        &["--user-unit", "web.service", "-p", "warning"],
        &["_PID=202"],
        &["_PID=202", "_PID=201"],
        &["_PID=202", "PRIORITY=4"],
        &["_PID=202", "PRIORITY=6", "+", "SYSLOG_IDENTIFIER=db"],
        &["SYSLOG_IDENTIFIER=sh", "+", "_SYSTEMD_USER_UNIT=db.service"],
        &["_SYSTEMD_INVOCATION_ID=00000000000000000000000000000abc"],
        &["_TRANSPORT=journal"],
        &["_COMM=sh"],
        &["_COMM=run", "+", "_COMM=sh"],
        &["MESSAGE_ID=39f53479d3a045ac8e11786248231fbf"],
        &["_COMM=web", "MESSAGE_ID=39f53479d3a045ac8e11786248231fbf"],
        &["_SYSTEMD_UNIT=web.service"],
        &["--user-unit", "web", "_PID=102"],
        &["-t", "web", "_PID=102", "+", "_PID=101"],
    ] {
        let mut a = vec!["-o", "short"];
        a.extend_from_slice(args);
        p.same(&a);
    }
    // A match without FIELD= is refused, as by journalctl.
    let c = p.corral(&["foo"]);
    assert!(!c.status.success());
    assert!(
        String::from_utf8_lossy(&c.stderr).contains("failed to add match 'foo'"),
        "{}",
        common::show(&c)
    );
    assert!(!p.journalctl(&["foo"]).status.success());
}

#[test]
fn exclude_identifier_leaves_out_what_identifier_would_show() {
    // journalctl has -T only from systemd 256: here it is compared with -t of the rest.
    let p = pair();
    let c = p.corral(&["-T", "web", "--exclude-identifier", "sh"]);
    assert!(c.status.success(), "{}", common::show(&c));
    let j = p.journalctl(&["-t", "run", "-t", "db", "-t", "corrald"]);
    assert_eq!(
        String::from_utf8_lossy(&c.stdout),
        String::from_utf8_lossy(&j.stdout)
    );
}

#[test]
fn accepted_flags_boot_pager_end_and_spaced_times() {
    let p = pair();
    // -b with a journal file is the boot of its newest entry, for both.
    p.same(&["-b"]);
    p.same(&["-b", "--user-unit", "db"]);
    p.same(&["-b", "_PID=202"]);
    p.same(&["-x", "-a", "--user", "-o", "cat"]);
    // -e means the last 1000 lines without -n, and respects -n.
    p.same(&["-e"]);
    p.same(&["-e", "-n", "2"]);
    p.same(&["--since", "-1min", "-o", "cat"]);
    p.same(&["--since", "-1min", "--until", "+1min"]);
    p.same(&["--until", "-1min"]);
    // -b with a boot id: the one of the entries, and another one.
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let boot = boot.trim().replace('-', "");
    p.same(&["-b", &boot]);
    // One it has no entry of is an error for both.
    let other = "0123456789abcdef0123456789abcdef";
    let c = p.corral(&["-b", other]);
    assert!(!c.status.success());
    assert!(
        String::from_utf8_lossy(&c.stderr).contains("Data from the specified boot"),
        "{}",
        common::show(&c)
    );
    assert!(!p.journalctl(&["-b", other]).status.success());
    // Offsets need a list of boots, which the store does not keep: refused, saying so.
    let c = p.corral(&["-b", "-1"]);
    assert!(!c.status.success());
    assert!(
        String::from_utf8_lossy(&c.stderr).contains("no list of boots"),
        "{}",
        common::show(&c)
    );
}

/// Parses a stream of JSON objects, leaving out the cursor (each store makes its own).
fn objects(text: &str) -> Vec<serde_json::Map<String, Value>> {
    serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .map(|v| match v.unwrap() {
            Value::Object(mut m) => {
                m.remove("__CURSOR");
                m
            }
            v => panic!("not an object: {v}"),
        })
        .collect()
}

#[test]
fn json_outputs_carry_journalctls_fields_and_layout() {
    let p = pair();
    let text = |o: &Output| {
        assert!(o.status.success(), "{}", common::show(o));
        String::from_utf8(o.stdout.clone()).unwrap()
    };
    let (c, j) = (
        text(&p.corral(&["-o", "json-pretty"])),
        text(&p.journalctl(&["-o", "json-pretty"])),
    );
    let ours = objects(&c);
    assert_eq!(ours.len(), entries().len());
    for (o, t) in ours.iter().zip(objects(&j)) {
        for (k, v) in o {
            assert_eq!(t.get(k), Some(v), "field {k}: {o:?} vs {t:?}");
        }
    }
    // The same lines but for field order (journalctl's is a hash order), so the
    // same indentation and the same one-byte-a-line arrays.
    let lines = |s: &str| {
        let mut v: Vec<String> = s
            .lines()
            .filter(|l| !l.contains("__CURSOR"))
            .map(|l| l.trim_end_matches(',').to_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(lines(&c), lines(&j));
    // json-sse: each object as one `data:` line and a blank line.
    let (c, j) = (
        text(&p.corral(&["-o", "json-sse", "-n", "3"])),
        text(&p.journalctl(&["-o", "json-sse", "-n", "3"])),
    );
    for s in [&c, &j] {
        let events: Vec<&str> = s.split_terminator("\n\n").collect();
        assert_eq!(events.len(), 3, "{s:?}");
        assert!(
            events
                .iter()
                .all(|e| e.starts_with("data: {") && !e.contains('\n'))
        );
    }
    let strip = |s: &str| s.replace("data: ", "");
    for (o, t) in objects(&strip(&c)).iter().zip(objects(&strip(&j))) {
        for (k, v) in o {
            assert_eq!(t.get(k), Some(v), "field {k}: {o:?} vs {t:?}");
        }
    }
}

#[test]
fn no_entries_as_journalctl() {
    let p = pair();
    p.same(&["_PID=999"]);
    p.same(&["-o", "with-unit", "-t", "nobody"]);
    p.same(&["-o", "cat", "-t", "nobody"]);
    assert!(Path::new(&p.jfile).exists());
}
