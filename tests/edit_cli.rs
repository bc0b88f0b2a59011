//! `corral edit`: a drop-in or a whole unit file written through the
//! user's editor (a script here), then the running manager reloads.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{TestDaemon, write_script};

/// `corral edit ARGS` against `td` with `editor` as $EDITOR.
fn edit(td: &TestDaemon, editor: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_corral"));
    cmd.arg("edit")
        .args(args)
        .env("CORRAL_SOCKET", &td.socket)
        .env("EDITOR", editor)
        .env_remove("SYSTEMD_EDITOR")
        .env_remove("VISUAL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn a_drop_in_is_written_between_the_markers_and_the_manager_reloads() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "ed.service",
            "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'echo foo=$FOO > %t/ed.out'\n",
        );
    }) else {
        return;
    };
    let bin = tempfile::tempdir().unwrap();
    // Keeps a copy of what it was shown, then adds $ADD below the first marker.
    let adder = bin.path().join("adder");
    write_script(
        &adder,
        "#!/bin/sh\ncp \"$1\" \"$SEEN\"\n\
         awk -v add=\"$ADD\" '{print} /^### Anything between here/{print add}' \"$1\" > \"$1.new\" \
         && mv \"$1.new\" \"$1\"\n",
    );
    let seen = bin.path().join("seen");
    let seen_s = seen.to_str().unwrap();
    let o = edit(
        &td,
        &adder,
        &["ed"],
        &[("ADD", "[Service]\\nEnvironment=FOO=bar"), ("SEEN", seen_s)],
    );
    assert!(o.status.success(), "{}", text(&o));
    let dropin = td.units_dir().join("ed.service.d/override.conf");
    assert_eq!(
        std::fs::read_to_string(&dropin).unwrap(),
        "[Service]\nEnvironment=FOO=bar\n"
    );
    let shown = std::fs::read_to_string(&seen).unwrap();
    assert!(
        shown.starts_with(&format!("### Editing {}\n", dropin.display())),
        "{shown}"
    );
    assert!(
        shown.contains("### Lines below this comment will be discarded")
            && shown.contains("# ExecStart=/bin/sh -c"),
        "the unit's file, commented out, below the markers: {shown}"
    );
    // The manager read it: the next start has the variable.
    td.ok(&["start", "ed"]);
    assert_eq!(
        std::fs::read_to_string(td.run_dir().join("ed.out")).unwrap(),
        "foo=bar\n"
    );

    // An editor that leaves nothing cancels; the drop-in stays as it was.
    let emptier = bin.path().join("emptier");
    write_script(&emptier, "#!/bin/sh\n: > \"$1\"\n");
    let o = edit(&td, &emptier, &["ed"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("canceled: temporary file is empty"),
        "{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read_to_string(&dropin).unwrap(),
        "[Service]\nEnvironment=FOO=bar\n"
    );

    // A failing editor changes nothing and leaves no temporary file.
    let failing = bin.path().join("failing");
    write_script(&failing, "#!/bin/sh\necho junk >> \"$1\"\nexit 3\n");
    let o = edit(&td, &failing, &["ed", "--drop-in", "other"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("the editor failed"), "{}", text(&o));
    let left: Vec<_> = std::fs::read_dir(td.units_dir().join("ed.service.d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, ["override.conf"]);

    // --full: the whole file, edited in place in the first directory.
    let o = edit(
        &td,
        &adder,
        &["ed", "--full"],
        &[("ADD", ""), ("SEEN", seen_s)],
    );
    assert!(o.status.success(), "{}", text(&o));
    let sed = bin.path().join("sed");
    write_script(
        &sed,
        "#!/bin/sh\nsed -i 's/^\\[Service\\]/[Unit]\\nDescription=edited in full\\n[Service]/' \"$1\"\n",
    );
    let o = edit(&td, &sed, &["ed", "--full"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        std::fs::read_to_string(td.units_dir().join("ed.service"))
            .unwrap()
            .starts_with("[Unit]\nDescription=edited in full\n[Service]\nType=oneshot\n")
    );
    assert_eq!(td.prop("ed", "Description"), "edited in full");

    // A unit without a file is refused unless --force.
    let o = edit(
        &td,
        &adder,
        &["nope"],
        &[("ADD", "[Unit]"), ("SEEN", seen_s)],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("No files found for nope.service"),
        "{}",
        text(&o)
    );
    assert!(!td.units_dir().join("nope.service.d").exists());
    // With --force --full, a new unit file, loaded at once.
    let writer = bin.path().join("writer");
    write_script(
        &writer,
        "#!/bin/sh\nprintf '[Service]\\nType=oneshot\\nExecStart=/bin/true\\n' > \"$1\"\n",
    );
    let o = edit(&td, &writer, &["nope", "--force", "--full"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    td.ok(&["start", "nope"]);
    assert_eq!(td.prop("nope", "Result"), "success");
}
