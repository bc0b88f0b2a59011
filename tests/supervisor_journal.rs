//! What services print reaches the journal through the manager: stdout and
//! stderr with PID, invocation id, stream and `<N>` priorities, plus the
//! manager's own events about the unit; `corral status` shows the last lines.

mod common;

use std::time::Duration;

use common::TestDaemon;
use serde_json::Value;

fn entries(td: &TestDaemon, unit: &str) -> Vec<Value> {
    let dir = td.dir.path().join("state/journal");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["journal", "--no-pager", "-o", "json", "-D"])
        .arg(&dir)
        .args(["-u", unit])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
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
    assert_eq!(field(by_msg("Started."), "CORRAL_STREAM"), "manager");
    td.ok(&["stop", "talker"]);
    let stopped = common::eventually(Duration::from_secs(5), || {
        entries(&td, "talker.service")
            .iter()
            .any(|e| field(e, "MESSAGE") == "Stopped.")
            .then_some(())
    });
    assert!(stopped.is_some(), "no Stopped. entry");
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
                    query: query.clone(),
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
                query: Query {
                    lines: Some(0),
                    ..query.clone()
                },
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
                        assert_ne!(e.invocation, first_run, "an old entry was followed");
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
