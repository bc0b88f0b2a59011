//! What services print reaches the journal through the manager: stdout and
//! stderr with PID, invocation id, stream and `<N>` priorities, plus the
//! manager's own events about the unit; `corral status` shows the last lines.

mod common;

use std::time::Duration;

use common::TestDaemon;
use serde_json::Value;

fn entries(td: &TestDaemon, unit: &str) -> Vec<Value> {
    td.journal(unit, &["-o", "json"])
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn field<'a>(e: &'a Value, k: &str) -> &'a str {
    e[k].as_str().unwrap_or("")
}

#[test]
fn service_output_and_manager_events_land_in_the_journal() {
    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "talker.service",
            "[Service]\nSyslogIdentifier=talk\n\
             ExecStart=/bin/bash -c 'echo to-stdout; echo to-stderr >&2; echo \"<3>bad thing\"; exec sleep 1000'\n",
        )
    }) else {
        return;
    };
    td.ok(&["start", "talker"]);
    let main = td.prop("talker", "MainPID");
    let inv = td.prop("talker", "InvocationID");
    let got = common::eventually(Duration::from_secs(5), || {
        let e = entries(&td, "talker.service");
        (e.len() >= 4).then_some(e)
    })
    .expect("four entries in the journal");
    let by_msg = |m: &str| {
        got.iter()
            .find(|e| field(e, "MESSAGE") == m)
            .unwrap_or_else(|| panic!("no entry {m:?} in {got:?}"))
    };
    let out = by_msg("to-stdout");
    assert_eq!(field(out, "CORRAL_STREAM"), "stdout");
    assert_eq!(field(out, "_PID"), main);
    assert_eq!(field(out, "_SYSTEMD_INVOCATION_ID"), inv);
    assert_eq!(field(out, "SYSLOG_IDENTIFIER"), "talk");
    assert_eq!(field(out, "PRIORITY"), "6");
    assert_eq!(field(by_msg("to-stderr"), "CORRAL_STREAM"), "stderr");
    assert_eq!(field(by_msg("bad thing"), "PRIORITY"), "3");
    assert_eq!(
        field(by_msg("Started talker.service."), "CORRAL_STREAM"),
        "manager"
    );
    td.ok(&["stop", "talker"]);
    let stopped = common::eventually(Duration::from_secs(5), || {
        entries(&td, "talker.service")
            .iter()
            .any(|e| field(e, "MESSAGE") == "Stopped talker.service.")
            .then_some(())
    });
    assert!(stopped.is_some(), "no Stopped entry");
    // status ends with the unit's last journal lines.
    let o = td.corral(&["status", "talker"]);
    assert!(
        o.stdout.contains("talk[") && o.stdout.contains("bad thing"),
        "{o:?}"
    );
}

#[test]
fn journal_queries_and_follow_over_the_control_socket() {
    use corral::ipc::AsyncClient;
    use corral::ipc::proto::{Request, Response};
    use corral::journal::Query;

    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "chatty.service",
            "[Service]\nType=oneshot\nExecStart=/bin/bash -c 'echo line-one; echo line-two'\n",
        )
    }) else {
        return;
    };
    td.ok(&["start", "chatty"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let query = Query {
            units: vec!["chatty.service".into()],
            ..Query::default()
        };
        let mut c: AsyncClient<Request, Response> = AsyncClient::connect(&td.socket).await.unwrap();
        // The oneshot's lines are committed within milliseconds of its end.
        let mut messages = Vec::new();
        for _ in 0..100 {
            messages.clear();
            let mut s = c
                .request_stream(&Request::Journal {
                    query: Box::new(query.clone()),
                    follow: false,
                })
                .await
                .unwrap();
            while let Some(item) = s.next().await {
                if let Response::Entries(batch) = item.unwrap() {
                    messages.extend(
                        batch
                            .into_iter()
                            .map(|e| String::from_utf8_lossy(&e.message).into_owned()),
                    );
                }
            }
            if messages.iter().any(|m| m == "line-two") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(messages.contains(&"line-one".to_string()), "{messages:?}");
        assert!(messages.contains(&"line-two".to_string()), "{messages:?}");

        // Follow from now on: the next run's lines arrive as they are committed.
        let first_run = u128::from_str_radix(&td.prop("chatty", "InvocationID"), 16).unwrap();
        let mut f: AsyncClient<Request, Response> = AsyncClient::connect(&td.socket).await.unwrap();
        let mut s = f
            .request_stream(&Request::Journal {
                query: Box::new(Query {
                    lines: Some(0),
                    ..query.clone()
                }),
                follow: true,
            })
            .await
            .unwrap();
        td.ok(&["start", "chatty"]);
        let got = tokio::time::timeout(Duration::from_secs(10), async {
            let mut seen = Vec::new();
            while let Some(item) = s.next().await {
                if let Response::Entries(batch) = item.unwrap() {
                    for e in batch {
                        // The manager's own lines about the first run may be
                        // committed after the follow began; that run's output
                        // must not come again.
                        if e.invocation == first_run {
                            assert_eq!(
                                e.stream,
                                corral::journal::Stream::Manager,
                                "an old line was followed: {e:?}"
                            );
                            continue;
                        }
                        seen.push(String::from_utf8_lossy(&e.message).into_owned());
                    }
                }
                if seen.iter().any(|m| m == "line-two") {
                    break;
                }
            }
            seen
        })
        .await
        .expect("followed entries arrive");
        assert!(got.contains(&"line-one".to_string()), "{got:?}");
    });
}

/// `corral journal` with `--socket`/`$CORRAL_SOCKET` asks that manager, both
/// for a query and for `-f`; an unreachable socket is an error, never a quiet
/// read of some other store (regression: it fell back to the caller's own).
#[test]
fn the_journal_cli_asks_the_manager_named_by_the_socket() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let Some(td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "echoer.service",
            "[Service]\nType=oneshot\nExecStart=/bin/echo hello-from-echoer\n",
        )
    }) else {
        return;
    };
    td.ok(&["start", "echoer"]);
    let got = common::eventually(Duration::from_secs(5), || {
        let o = td.corral(&["journal", "--no-pager", "-u", "echoer", "-o", "cat"]);
        o.stdout.contains("hello-from-echoer").then_some(o)
    });
    assert!(got.is_some(), "the manager did not answer the query");
    // journalctl's filters travel to the manager with the query: -t, -T, -b and
    // field matches with + between groups.
    let cat = |args: &[&str]| {
        let mut a = vec![
            "journal",
            "--no-pager",
            "--user-unit",
            "echoer",
            "-o",
            "cat",
        ];
        a.extend_from_slice(args);
        let o = td.corral(&a);
        assert_eq!(o.code, 0, "{args:?}: {}", o.stderr);
        o.stdout
    };
    assert_eq!(cat(&["-t", "echo", "-b"]), "hello-from-echoer\n");
    assert_eq!(cat(&["_TRANSPORT=stdout", "-b"]), "hello-from-echoer\n");
    assert!(!cat(&["-T", "echo"]).contains("hello-from-echoer"));
    let both = cat(&["_PID=1", "+", "SYSLOG_IDENTIFIER=echo"]);
    assert_eq!(both, "hello-from-echoer\n");
    // cat says nothing when nothing matched, as journalctl's.
    assert_eq!(cat(&["_PID=1", "SYSLOG_IDENTIFIER=echo"]), "");

    // Follow: the stream stays open and brings the next invocation's line.
    let mut follower = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["journal", "-f", "-n", "0", "-u", "echoer", "-o", "cat"])
        .env("CORRAL_SOCKET", &td.socket)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = follower.stdout.take().unwrap();
    let follower = Kill(follower);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    td.ok(&["start", "echoer"]);
    // The manager's own lines about the first run ("Deactivated ...") may be
    // committed after the follower began: they come first, and are fine.
    let end = std::time::Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while !seen.iter().any(|l| l == "hello-from-echoer") {
        let left = end.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("the follower did not see the new line; it saw {seen:?}"),
        }
    }
    drop(follower);

    let missing = td.dir.path().join("no-such.sock");
    let o = td.corral(&["--socket", missing.to_str().unwrap(), "journal", "-n", "5"]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("no-such.sock"), "{o:?}");
}

#[test]
fn each_command_s_lines_carry_its_comm_and_the_manager_s_lines_their_message_id() {
    use std::os::unix::fs::PermissionsExt;
    let Some(td) = TestDaemon::start_with(|td| {
        // A script's process is named after the script, cut to 15 bytes; it prints
        // what the kernel calls it, to compare with what the journal says.
        let script = td.dir.path().join("report-my-own-comm.sh");
        std::fs::write(
            &script,
            "#!/bin/sh\nread c < /proc/$$/comm\necho \"kernel-comm=$c\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        td.write_unit(
            "commer.service",
            &format!(
                "[Service]\nType=oneshot\nExecStartPre=/bin/echo from-pre\n\
                 ExecStart={}\nExecStart=/bin/sh -c 'echo from-sh'\n",
                script.display()
            ),
        )
    }) else {
        return;
    };
    td.ok(&["start", "commer"]);
    let got = common::eventually(Duration::from_secs(5), || {
        let e = entries(&td, "commer.service");
        e.iter()
            .any(|e| field(e, "MESSAGE").starts_with("Finished"))
            .then_some(e)
    })
    .expect("the oneshot's lines and its Finished line");
    let by_msg = |m: &str| {
        got.iter()
            .find(|e| field(e, "MESSAGE").starts_with(m))
            .unwrap_or_else(|| panic!("no entry {m:?} in {got:?}"))
    };
    assert_eq!(field(by_msg("from-pre"), "_COMM"), "echo");
    assert_eq!(field(by_msg("from-sh"), "_COMM"), "sh");
    let script = by_msg("kernel-comm=");
    assert_eq!(
        field(script, "MESSAGE"),
        format!("kernel-comm={}", field(script, "_COMM"))
    );
    assert_eq!(field(script, "_COMM"), "report-my-own-c");
    let finished = by_msg("Finished commer.service");
    assert_eq!(
        field(finished, "MESSAGE_ID"),
        "39f53479d3a045ac8e11786248231fbf"
    );
    assert_eq!(field(finished, "_COMM"), "");
    assert_eq!(field(by_msg("from-sh"), "MESSAGE_ID"), "");
    // Both are fields a match can name, as in journalctl.
    let cat = |args: &[&str]| {
        let mut a = vec!["-o", "cat"];
        a.extend_from_slice(args);
        let o = td.journal("commer", &a);
        assert_eq!(o.code, 0, "{args:?}: {}", o.stderr);
        o.stdout
    };
    assert_eq!(cat(&["_COMM=echo"]), "from-pre\n");
    assert_eq!(cat(&["_COMM=sh", "+", "_COMM=echo"]), "from-pre\nfrom-sh\n");
    assert_eq!(
        cat(&["MESSAGE_ID=39f53479d3a045ac8e11786248231fbf"]),
        "Finished commer.service.\n"
    );
    // The export format carries them too (what journal-upload sends).
    let export = td.journal("commer", &["-o", "export"]).stdout;
    assert!(export.contains("\n_COMM=echo\n"), "{export}");
    assert!(
        export.contains("\nMESSAGE_ID=39f53479d3a045ac8e11786248231fbf\n"),
        "{export}"
    );
}

/// A manager that stops cleanly leaves no note; one killed with SIGKILL is followed
/// by a manager that says, once, on stderr and in the journal (unit `corrald`), that
/// its predecessor did not close the journal and what may be missing.
#[test]
fn the_manager_after_a_kill_says_what_may_be_missing() {
    let Some(mut td) = TestDaemon::start_with(|td| {
        td.write_unit(
            "said.service",
            "[Service]\nType=oneshot\nExecStart=/bin/echo said before\n",
        )
    }) else {
        return;
    };
    td.ok(&["start", "said"]);
    const NOTE: &str = "ended without closing it";
    td.restart();
    assert!(!td.log().contains(NOTE), "a clean stop is not noted");
    td.signal(nix::sys::signal::Signal::SIGKILL);
    assert_eq!(td.wait_exit(Duration::from_secs(30)), None);
    td.relaunch();
    assert_eq!(td.log().matches(NOTE).count(), 1, "{}", td.log());
    let notes: Vec<Value> = entries(&td, "corrald")
        .into_iter()
        .filter(|e| field(e, "MESSAGE").contains(NOTE))
        .collect();
    assert_eq!(notes.len(), 1, "{notes:?}");
    let msg = field(&notes[0], "MESSAGE");
    assert_eq!(field(&notes[0], "PRIORITY"), "4");
    let window = corral::journal::writer::WINDOW_BYTES / 1024;
    assert!(msg.contains(&format!("at most {window} KiB")), "{msg}");
    assert!(msg.contains("replayed from its side log"), "{msg}");
    assert!(msg.contains("the last entry being seq"), "{msg}");
    let said = entries(&td, "said.service");
    assert!(
        said.iter().any(|e| field(e, "MESSAGE") == "said before"),
        "what was committed before the kill is kept: {said:?}"
    );
}

/// SIGTERM of the manager mid-flood: it stops the unit, then reads every
/// pipe to its end before the journal closes, so that every line the unit
/// wrote (and its unterminated last one) is stored: no hole, no lost tail.
#[test]
fn sigterm_of_the_manager_mid_flood_loses_no_line() {
    for round in 0..3 {
        let Some(mut td) = TestDaemon::start() else {
            return;
        };
        let count = td.dir.path().join("count");
        // $n is the last number echo returned from: written entirely. The
        // trap's unterminated "end" is the partial line the reader holds at EOF.
        td.write_unit(
            "flood.service",
            &format!(
                "[Service]\nExecStart=/bin/sh -c 'stop() {{ echo $$n > {c}; printf end; exit 0; }}; \
                 trap stop TERM; n=0; i=0; while :; do i=$$((i+1)); echo $$i && n=$$i; done'\n",
                c = count.display()
            ),
        );
        td.ok(&["start", "flood"]);
        common::wait_until(10, "the flood's first lines", || {
            td.journal("flood", &["-o", "cat", "-n", "1"])
                .stdout
                .trim()
                .parse::<u64>()
                .is_ok_and(|n| n > 1000)
        });
        std::thread::sleep(Duration::from_millis(200 * round));
        td.terminate();
        let written: u64 = std::fs::read_to_string(&count)
            .expect("the flood's trap wrote its count")
            .trim()
            .parse()
            .expect("a count");
        let out = td
            .journal("flood", &["-o", "cat", "--stream", "stdout"])
            .stdout;
        let mut lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines.pop(),
            Some("end"),
            "round {round}: the last partial line"
        );
        let seqs: Vec<u64> = lines.iter().map(|l| l.parse().expect(l)).collect();
        let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert!(
            seqs == expected,
            "round {round}: a hole or a duplicate in {} lines",
            seqs.len()
        );
        // The echo the signal interrupted may have been written, not counted.
        let last = seqs.len() as u64;
        assert!(
            last == written || last == written + 1,
            "round {round}: the unit wrote {written} lines, the journal has {last}"
        );
        assert!(!td.log().contains("ended without closing it"));
    }
}
