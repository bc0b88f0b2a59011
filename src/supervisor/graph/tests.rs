use std::collections::{BTreeSet, HashMap};

use super::*;

/// A manager's view of its units, written as a table.
#[derive(Default)]
struct World {
    units: HashMap<String, Deps>,
    active: BTreeSet<String>,
    masked: BTreeSet<String>,
}

impl World {
    fn unit(mut self, name: &str, spec: &str) -> Self {
        let mut d = Deps::default();
        for part in spec.split_whitespace() {
            let (key, value) = part.split_once('=').expect("KEY=value");
            let list = match key {
                "Requires" => &mut d.requires,
                "Wants" => &mut d.wants,
                "Requisite" => &mut d.requisite,
                "BindsTo" => &mut d.binds_to,
                "PartOf" => &mut d.part_of,
                "Conflicts" => &mut d.conflicts,
                "After" => &mut d.after,
                "Before" => &mut d.before,
                "DefaultDependencies" => {
                    d.default_dependencies = value == "yes";
                    continue;
                }
                other => panic!("unknown key {other}"),
            };
            list.extend(value.split(',').map(str::to_string));
        }
        self.units.insert(name.to_string(), d);
        self
    }

    fn active(mut self, names: &[&str]) -> Self {
        self.active.extend(names.iter().map(|s| s.to_string()));
        self
    }

    fn masked(mut self, name: &str) -> Self {
        self.masked.insert(name.to_string());
        self
    }
}

impl Units for World {
    fn deps(&self, name: &str) -> Result<Deps, Missing> {
        if self.masked.contains(name) {
            return Err(Missing::Masked);
        }
        self.units.get(name).cloned().ok_or(Missing::NotFound)
    }
    fn is_active(&self, name: &str) -> bool {
        self.active.contains(name)
    }
    fn loaded(&self) -> Vec<String> {
        self.units.keys().cloned().collect()
    }
}

/// The layers as "unit/kind" strings, one Vec per layer.
fn layers(tx: &Transaction) -> Vec<Vec<String>> {
    tx.layers()
        .into_iter()
        .map(|l| {
            l.into_iter()
                .map(|j| format!("{}/{}", j.unit, j.kind))
                .collect()
        })
        .collect()
}

fn start(w: &World, unit: &str) -> Transaction {
    build(w, Verb::Start, unit).expect("transaction builds")
}

#[test]
fn requires_with_after_orders_the_dependency_first() {
    let w = World::default()
        .unit("a.service", "Requires=b.service After=b.service")
        .unit("b.service", "");
    assert_eq!(
        layers(&start(&w, "a.service")),
        vec![vec!["b.service/start"], vec!["a.service/start"]]
    );
}

#[test]
fn requires_without_after_is_unordered() {
    let w = World::default()
        .unit("a.service", "Requires=b.service")
        .unit("b.service", "");
    assert_eq!(
        layers(&start(&w, "a.service")),
        vec![vec!["a.service/start", "b.service/start"]]
    );
}

#[test]
fn before_is_the_same_relation_as_after_seen_from_the_other_side() {
    let w = World::default()
        .unit("a.service", "Wants=b.service")
        .unit("b.service", "Before=a.service");
    assert_eq!(
        layers(&start(&w, "a.service")),
        vec![vec!["b.service/start"], vec!["a.service/start"]]
    );
}

#[test]
fn wants_requires_bindsto_pull_in_transitively() {
    let w = World::default()
        .unit("a.service", "Wants=b.service BindsTo=c.service")
        .unit("b.service", "Requires=d.service")
        .unit("c.service", "")
        .unit("d.service", "")
        .unit("unrelated.service", "");
    let mut units: Vec<String> = start(&w, "a.service")
        .jobs()
        .into_iter()
        .map(|j| j.unit)
        .collect();
    units.sort();
    assert_eq!(units, ["a.service", "b.service", "c.service", "d.service"]);
}

#[test]
fn missing_wanted_unit_is_ignored_but_missing_required_unit_refuses() {
    let w = World::default()
        .unit("a.service", "Wants=ghost.service")
        .unit("b.service", "Requires=ghost.service");
    assert_eq!(start(&w, "a.service").jobs().len(), 1);
    assert_eq!(
        build(&w, Verb::Start, "b.service").unwrap_err(),
        GraphError::NotFound("ghost.service".into())
    );
    assert_eq!(
        build(&w, Verb::Start, "nope.service")
            .unwrap_err()
            .to_string(),
        "Unit nope.service not found."
    );
}

#[test]
fn masked_units_are_refused_when_required_and_skipped_when_wanted() {
    let w = World::default()
        .unit("a.service", "Wants=m.service")
        .unit("b.service", "Requires=m.service")
        .masked("m.service");
    assert_eq!(start(&w, "a.service").jobs().len(), 1);
    assert_eq!(
        build(&w, Verb::Start, "b.service").unwrap_err(),
        GraphError::Masked("m.service".into())
    );
    assert_eq!(
        build(&w, Verb::Start, "m.service").unwrap_err().to_string(),
        "Unit m.service is masked."
    );
}

#[test]
fn starting_active_units_is_dropped_but_their_dependencies_still_come() {
    let w = World::default()
        .unit("a.service", "Requires=b.service After=b.service")
        .unit("b.service", "Wants=c.service")
        .unit("c.service", "")
        .active(&["b.service"]);
    assert_eq!(
        layers(&start(&w, "a.service")),
        vec![vec!["a.service/start", "c.service/start"]]
    );
}

#[test]
fn stop_propagates_to_requires_bindsto_partof_but_not_down_to_dependencies() {
    let w = World::default()
        .unit("bus.service", "")
        .unit("req.service", "Requires=bus.service After=bus.service")
        .unit("bound.service", "BindsTo=bus.service After=bus.service")
        .unit("part.service", "PartOf=bus.service")
        .unit("wants.service", "Wants=bus.service After=bus.service")
        .unit("dep.service", "")
        .unit("x.service", "Requires=dep.service")
        .active(&[
            "bus.service",
            "req.service",
            "bound.service",
            "part.service",
            "wants.service",
            "dep.service",
        ]);
    let tx = build(&w, Verb::Stop, "bus.service").unwrap();
    assert_eq!(
        layers(&tx),
        vec![
            vec![
                "bound.service/stop",
                "part.service/stop",
                "req.service/stop"
            ],
            vec!["bus.service/stop"],
        ],
        "dependents ordered After= the bus stop before it; PartOf= without ordering is free"
    );
}

#[test]
fn stop_of_inactive_dependents_is_dropped() {
    let w = World::default()
        .unit("bus.service", "")
        .unit("req.service", "Requires=bus.service")
        .active(&["bus.service"]);
    assert_eq!(
        layers(&build(&w, Verb::Stop, "bus.service").unwrap()),
        vec![vec!["bus.service/stop"]]
    );
}

#[test]
fn conflicts_stop_the_other_side_in_both_directions() {
    // Conflicts= does not order: b is stopped first only because of After=.
    let w = World::default()
        .unit("a.service", "Conflicts=b.service After=b.service")
        .unit("b.service", "")
        .unit("c.service", "Conflicts=a.service")
        .active(&["b.service", "c.service"]);
    assert_eq!(
        layers(&start(&w, "a.service")),
        vec![
            vec!["b.service/stop", "c.service/stop"],
            vec!["a.service/start"]
        ]
    );
    let mut tx = start(&w, "a.service");
    let mut running: Vec<Job> = std::iter::from_fn(|| tx.next_ready()).collect();
    running.sort_by(|x, y| x.unit.cmp(&y.unit));
    tx.job_done(running[0].id, true);
    assert_eq!(
        tx.next_ready().map(|j| j.unit),
        Some("a.service".to_string()),
        "a waits for b's stop only, not for c's"
    );
}

#[test]
fn conflict_with_a_required_unit_refuses_the_transaction() {
    // Stopping b (Conflicts=) propagates to a (Requires=b): a would be both
    // started and stopped.
    let w = World::default()
        .unit("a.service", "Requires=b.service Conflicts=b.service")
        .unit("b.service", "");
    let err = build(&w, Verb::Start, "a.service").unwrap_err();
    assert_eq!(
        err,
        GraphError::ConflictingJobs {
            anchor: "a.service".into(),
            unit: "a.service".into()
        }
    );
}

#[test]
fn conflict_with_a_wanted_unit_drops_its_start() {
    let w = World::default()
        .unit("a.service", "Wants=b.service Conflicts=b.service")
        .unit("b.service", "")
        .active(&["b.service"]);
    assert_eq!(
        layers(&start(&w, "a.service")),
        vec![vec!["a.service/start", "b.service/stop"]]
    );
}

#[test]
fn failed_required_dependency_fails_dependents_with_the_reason() {
    let w = World::default()
        .unit("dbus.service", "")
        .unit("app.service", "Requires=dbus.service After=dbus.service")
        .unit(
            "top.service",
            "Requires=app.service After=app.service Wants=opt.service",
        )
        .unit("opt.service", "Wants=dbus.service After=dbus.service");
    let mut tx = start(&w, "top.service");
    let first = tx.next_ready().unwrap();
    assert_eq!(first.unit, "dbus.service");
    assert_eq!(tx.next_ready(), None, "everything else waits for dbus");
    let failed = tx.job_done(first.id, false);
    assert_eq!(
        failed.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [
            "app.service: dependency failed: dbus.service",
            "top.service: dependency failed: app.service"
        ]
    );
    assert_eq!(
        tx.result_of("app.service", JobKind::Start)
            .unwrap()
            .to_string(),
        "dependency failed: dbus.service"
    );
    // A unit that only wants the bus still starts.
    let next = tx.next_ready().unwrap();
    assert_eq!(next.unit, "opt.service");
    assert!(tx.job_done(next.id, true).is_empty());
    assert!(tx.is_finished());
    assert!(!tx.succeeded());
}

#[test]
fn a_dependent_already_running_is_not_failed_afterwards() {
    // Requires= without After=: both start at once; a later failure of the
    // dependency does not undo the dependent's finished job.
    let w = World::default()
        .unit("a.service", "Requires=b.service")
        .unit("b.service", "");
    let mut tx = start(&w, "a.service");
    let j1 = tx.next_ready().unwrap();
    let j2 = tx.next_ready().unwrap();
    let (a, b) = if j1.unit == "a.service" {
        (j1, j2)
    } else {
        (j2, j1)
    };
    assert!(tx.job_done(a.id, true).is_empty());
    assert!(tx.job_done(b.id, false).is_empty());
    assert!(tx.succeeded());
}

#[test]
fn skipped_condition_counts_as_done_for_dependents() {
    let w = World::default()
        .unit("a.service", "Requires=b.service After=b.service")
        .unit("b.service", "");
    let mut tx = start(&w, "a.service");
    let b = tx.next_ready().unwrap();
    assert!(tx.job_done(b.id, true).is_empty());
    let a = tx.next_ready().unwrap();
    assert_eq!(a.unit, "a.service");
}

#[test]
fn requisite_inactive_fails_at_once_and_is_never_started() {
    let w = World::default()
        .unit("a.service", "Requisite=b.service After=b.service")
        .unit("top.service", "Requires=a.service After=a.service")
        .unit("b.service", "");
    let tx = start(&w, "top.service");
    assert!(tx.job("b.service", JobKind::Start).is_none());
    assert_eq!(
        tx.initial_failures()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        [
            "a.service: dependency failed: b.service",
            "top.service: dependency failed: a.service"
        ]
    );
    assert!(tx.is_finished());
    let active = World::default()
        .unit("a.service", "Requisite=b.service After=b.service")
        .unit("b.service", "")
        .active(&["b.service"]);
    let tx = start(&active, "a.service");
    assert!(tx.initial_failures().is_empty());
    assert_eq!(layers(&tx), vec![vec!["a.service/start"]]);
}

#[test]
fn cycle_through_required_jobs_is_refused_with_its_members() {
    let w = World::default()
        .unit("a.service", "Requires=b.service After=b.service")
        .unit("b.service", "Requires=c.service After=c.service")
        .unit("c.service", "After=a.service");
    let err = build(&w, Verb::Start, "a.service").unwrap_err();
    let GraphError::OrderingCycle { cycle } = &err else {
        panic!("expected a cycle, got {err:?}");
    };
    let members: BTreeSet<&str> = cycle.iter().map(String::as_str).collect();
    assert_eq!(
        members,
        BTreeSet::from(["a.service", "b.service", "c.service"])
    );
    assert_eq!(cycle.first(), cycle.last(), "the cycle closes");
    assert_eq!(cycle.len(), 4);
    assert!(err.to_string().starts_with("ordering cycle between "));
}

#[test]
fn cycle_through_a_wanted_job_is_broken_by_dropping_it() {
    let w = World::default()
        .unit(
            "a.service",
            "Requires=b.service After=b.service Wants=w.service",
        )
        .unit("b.service", "After=w.service")
        .unit("w.service", "After=a.service Wants=x.service")
        .unit("x.service", "");
    let tx = start(&w, "a.service");
    assert_eq!(
        layers(&tx),
        vec![vec!["b.service/start"], vec!["a.service/start"]],
        "w.service is dropped, and x.service that only it pulled in goes with it"
    );
    let broken = tx.broken_cycles();
    assert_eq!(broken.len(), 1);
    assert_eq!(broken[0].dropped, "w.service");
    let members: BTreeSet<&str> = broken[0].cycle.iter().map(String::as_str).collect();
    assert_eq!(
        members,
        BTreeSet::from(["a.service", "b.service", "w.service"])
    );
}

#[test]
fn breaking_a_cycle_deletes_the_jobs_that_require_the_dropped_one() {
    // Both enabled in default.target, each Requires= and After= the other:
    // neither matters to default.target, so one is dropped, and the other,
    // which requires it, goes with it (systemd's transaction_unlink_job with
    // delete_dependencies), instead of running without it.
    let w = World::default()
        .unit(DEFAULT_TARGET, "Wants=cyc1.service,cyc2.service,ok.service")
        .unit("cyc1.service", "Requires=cyc2.service After=cyc2.service")
        .unit("cyc2.service", "Requires=cyc1.service After=cyc1.service")
        .unit("ok.service", "");
    let tx = start(&w, DEFAULT_TARGET);
    assert_eq!(
        layers(&tx),
        vec![vec!["ok.service/start"], vec!["default.target/start"]]
    );
    let broken = tx.broken_cycles();
    assert_eq!(broken.len(), 1, "{broken:?}");
    let mut gone: Vec<String> = broken[0].also.clone();
    gone.push(format!("{}/{}", broken[0].dropped, broken[0].kind));
    gone.sort();
    assert_eq!(gone, ["cyc1.service/start", "cyc2.service/start"]);
    let msg = broken[0].to_string();
    assert!(msg.contains("deleted to break it"), "{msg}");
    assert!(msg.contains("deleted with it, as they need it"), "{msg}");
}

#[test]
fn breaking_a_cycle_deletes_requirers_transitively_and_requisite_starts() {
    // w and y form a cycle; y matters (the anchor requires it), so w's job,
    // only wanted, is the one dropped. r requires w, rr is bound to r, and q
    // has Requisite= on w: they all go with it, while the unrelated wanted
    // unit stays.
    let w = World::default()
        .unit(
            "top.target",
            "Requires=y.service Wants=w.service,r.service,rr.service,q.service,free.service",
        )
        .unit("w.service", "After=y.service")
        .unit("y.service", "After=w.service")
        .unit("r.service", "Requires=w.service")
        .unit("rr.service", "BindsTo=r.service")
        .unit("q.service", "Requisite=w.service After=w.service")
        .unit("free.service", "");
    let tx = start(&w, "top.target");
    let units: BTreeSet<String> = tx.jobs().into_iter().map(|j| j.unit).collect();
    assert_eq!(
        units,
        BTreeSet::from([
            "free.service".to_string(),
            "top.target".to_string(),
            "y.service".to_string()
        ]),
        "{:?}",
        tx.broken_cycles()
    );
    assert!(
        tx.initial_failures().is_empty(),
        "q is deleted, not failed: {:?}",
        tx.initial_failures()
    );
}

#[test]
fn a_cycle_whose_wanted_job_is_also_required_is_refused() {
    // w is wanted by the anchor but also required by b, which matters: no
    // job of the cycle may be dropped, so the transaction is refused.
    let w = World::default()
        .unit(
            "a.service",
            "Wants=w.service Requires=b.service After=b.service",
        )
        .unit("b.service", "Requires=w.service After=w.service")
        .unit("w.service", "After=a.service");
    let err = build(&w, Verb::Start, "a.service").unwrap_err();
    assert!(
        matches!(err, GraphError::OrderingCycle { .. }),
        "expected a refusal, got {err:?}"
    );
}

#[test]
fn restart_stops_dependents_first_and_starts_them_again_after() {
    let w = World::default()
        .unit("bus.service", "")
        .unit("app.service", "Requires=bus.service After=bus.service")
        .unit("idle.service", "Requires=bus.service After=bus.service")
        .active(&["bus.service", "app.service"]);
    let tx = build(&w, Verb::Restart, "bus.service").unwrap();
    assert_eq!(
        layers(&tx),
        vec![
            vec!["app.service/stop"],
            vec!["bus.service/stop"],
            vec!["bus.service/start"],
            vec!["app.service/start"],
        ],
        "inactive idle.service is left alone"
    );
}

#[test]
fn restart_of_inactive_unit_just_starts_it() {
    let w = World::default().unit("a.service", "");
    let tx = build(&w, Verb::Restart, "a.service").unwrap();
    assert_eq!(layers(&tx), vec![vec!["a.service/start"]]);
}

#[test]
fn targets_order_after_what_they_pull_in() {
    let w = World::default()
        .unit(DEFAULT_TARGET, "Wants=a.service,b.service,nd.service")
        .unit("a.service", "")
        .unit("b.service", "After=a.service")
        .unit("nd.service", "DefaultDependencies=no");
    let tx = start(&w, DEFAULT_TARGET);
    assert_eq!(
        layers(&tx),
        vec![
            vec!["a.service/start", "nd.service/start"],
            vec!["b.service/start"],
            vec!["default.target/start"],
        ]
    );
    assert!(
        tx.job(DEFAULT_TARGET, JobKind::Start)
            .unwrap()
            .is_grouping()
    );
}

#[test]
fn ready_queue_hands_out_parallel_jobs_and_waits_for_reports() {
    let w = World::default()
        .unit("top.target", "Wants=a.service,b.service,c.service")
        .unit("a.service", "")
        .unit("b.service", "")
        .unit("c.service", "After=a.service");
    let mut tx = start(&w, "top.target");
    let mut first: Vec<String> = std::iter::from_fn(|| tx.next_ready())
        .map(|j| j.unit)
        .collect();
    first.sort();
    assert_eq!(first, ["a.service", "b.service"]);
    let a = tx.job("a.service", JobKind::Start).unwrap();
    tx.job_done(a.id, true);
    assert_eq!(tx.next_ready().unwrap().unit, "c.service");
    assert_eq!(tx.next_ready(), None);
    for u in ["b.service", "c.service"] {
        let j = tx.job(u, JobKind::Start).unwrap();
        tx.job_done(j.id, true);
    }
    let t = tx.next_ready().unwrap();
    assert_eq!(t.unit, "top.target");
    assert!(!tx.is_finished());
    tx.job_done(t.id, true);
    assert!(tx.is_finished());
    assert!(tx.succeeded());
}

#[test]
fn render_tree_forward_and_reverse() {
    let w = World::default()
        .unit(DEFAULT_TARGET, "Wants=mpd.service,basic.target")
        .unit("basic.target", "Requires=dbus.service")
        .unit("mpd.service", "Requires=mpd.socket")
        .unit("mpd.socket", "")
        .unit("dbus.service", "")
        .unit("helper.service", "PartOf=basic.target")
        .active(&["mpd.service", "dbus.service"]);
    assert_eq!(
        render_tree(DEFAULT_TARGET, &w, false, false),
        "default.target\n\
         ● ├─mpd.service\n\
         ○ └─basic.target\n\
         ●   ├─dbus.service\n\
         ○   └─helper.service\n"
    );
    assert_eq!(
        render_tree(DEFAULT_TARGET, &w, false, true),
        "default.target\n\
         ● ├─mpd.service\n\
         ○ │ └─mpd.socket\n\
         ○ └─basic.target\n\
         ●   ├─dbus.service\n\
         ○   └─helper.service\n"
    );
    assert_eq!(
        render_tree("dbus.service", &w, true, false),
        "dbus.service\n\
         ○ └─basic.target\n\
         ○   └─default.target\n"
    );
}

#[test]
fn render_tree_stops_at_cycles() {
    let w = World::default()
        .unit("a.target", "Wants=b.target")
        .unit("b.target", "Wants=a.target");
    assert_eq!(
        render_tree("a.target", &w, false, false),
        "a.target\n○ └─b.target\n○   └─a.target\n"
    );
}

#[test]
fn deps_come_from_real_unit_files_and_default_target_needs_no_file() {
    use crate::unit::SpecifierContext;
    let tmp = tempfile::tempdir().unwrap();
    let units = tmp.path().join("units");
    std::fs::create_dir_all(units.join("default.target.wants")).unwrap();
    std::fs::write(
        units.join("dbus.service"),
        "[Service]\nExecStart=/usr/bin/dbus-daemon --session --nofork\n",
    )
    .unwrap();
    std::fs::write(
        units.join("app.service"),
        "[Unit]\nRequires=dbus.service\nAfter=dbus.service\nPartOf=graphical.target\n\
         [Service]\nExecStart=/bin/true\n[Install]\nWantedBy=default.target\n",
    )
    .unwrap();
    std::fs::write(units.join("gone.service"), "").unwrap();
    std::os::unix::fs::symlink(
        units.join("app.service"),
        units.join("default.target.wants/app.service"),
    )
    .unwrap();
    let loader = Loader::new(vec![units], Vec::new(), SpecifierContext::current());
    let app = load_deps(&loader, "app.service").unwrap();
    assert_eq!(app.requires, ["dbus.service"]);
    assert_eq!(app.after, ["dbus.service"]);
    assert_eq!(app.part_of, ["graphical.target"]);
    assert!(app.default_dependencies);
    let target = load_deps(&loader, DEFAULT_TARGET).unwrap();
    assert_eq!(target.wants, ["app.service"]);
    assert_eq!(load_deps(&loader, "nope.service"), Err(Missing::NotFound));
    assert_eq!(load_deps(&loader, "gone.service"), Err(Missing::Masked));

    // And the transaction over them: the bus first, then the app, then the target.
    let view = LoaderView {
        loader: &loader,
        active: &|_| false,
        loaded: vec!["app.service".into(), "dbus.service".into()],
    };
    let tx = build(&view, Verb::Start, DEFAULT_TARGET).unwrap();
    assert_eq!(
        layers(&tx),
        vec![
            vec!["dbus.service/start"],
            vec!["app.service/start"],
            vec!["default.target/start"]
        ]
    );
    // Stopping the bus stops the app that requires it.
    let running = LoaderView {
        loader: &loader,
        active: &|_| true,
        loaded: vec!["app.service".into(), "dbus.service".into()],
    };
    let tx = build(&running, Verb::Stop, "dbus.service").unwrap();
    assert_eq!(
        layers(&tx),
        vec![vec!["app.service/stop"], vec!["dbus.service/stop"]]
    );
}

#[test]
fn a_dependency_on_a_bare_template_is_ignored() {
    use crate::unit::SpecifierContext;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("mc@.service"),
        "[Service]\nExecStart=/bin/true %i\n",
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("app.service"),
        "[Unit]\nWants=mc@.service mc@7.service\nRequires=mc@.service\n[Service]\nExecStart=/bin/true\n",
    )
    .unwrap();
    let loader = Loader::new(
        vec![tmp.path().to_path_buf()],
        Vec::new(),
        SpecifierContext::current(),
    );
    let app = load_deps(&loader, "app.service").unwrap();
    // systemd: "missing the instance name"; the template never becomes a job.
    assert_eq!(app.wants, ["mc@7.service"]);
    assert!(app.requires.is_empty(), "{app:?}");
}

#[test]
fn a_unit_dying_stops_only_what_is_bound_to_it() {
    let w = World::default()
        .unit("bus.service", "")
        .unit("bound.service", "BindsTo=bus.service")
        .unit("idle-bound.service", "BindsTo=bus.service")
        .unit("req.service", "Requires=bus.service")
        .active(&["bound.service", "req.service"]);
    assert_eq!(bound_by(&w, "bus.service"), ["bound.service"]);
}

/// The unit the loader reads from `text`.
fn unit_of(name: &str, text: &str) -> Unit {
    let n = UnitName::parse_strict(name).unwrap();
    let spec = crate::unit::SpecifierContext::example();
    crate::unit::loader::from_text(&n, std::path::Path::new(name), text, &spec)
}

/// A unit's dependencies as the loader reads them from `text`.
fn deps_of(name: &str, text: &str) -> Deps {
    Deps::from_unit(&unit_of(name, text))
}

#[test]
fn a_socket_is_ordered_before_its_service_and_sockets_target_implicitly() {
    let d = deps_of("x.socket", "[Socket]\nListenStream=%t/x.sock\n");
    assert_eq!(d.before, ["x.service", "sockets.target"]);
    let d = deps_of(
        "x.socket",
        "[Unit]\nDefaultDependencies=no\nBefore=a.target\n[Socket]\nListenStream=%t/x.sock\nService=y.service\n",
    );
    assert_eq!(d.before, ["a.target", "y.service"]);
    // Accept=yes triggers no single service: only the target.
    let d = deps_of("x.socket", "[Socket]\nListenStream=%t/x.sock\nAccept=yes\n");
    assert_eq!(d.before, ["sockets.target"]);

    // A service that requires its socket starts after it, with no After=.
    let mut w = World::default().unit("x.service", "Requires=x.socket");
    w.units.insert(
        "x.socket".to_string(),
        deps_of("x.socket", "[Socket]\nListenStream=%t/x.sock\n"),
    );
    assert_eq!(
        layers(&start(&w, "x.service")),
        vec![vec!["x.socket/start"], vec!["x.service/start"]]
    );
}

/// A row of the bus socket table: unit, its text, whether dbus.socket
/// exists, the Requires= and After= it ends up with.
type BusRow = (
    &'static str,
    &'static str,
    bool,
    &'static [&'static str],
    &'static [&'static str],
);

#[test]
fn a_type_dbus_service_requires_and_follows_the_bus_socket_when_it_exists() {
    let table: [BusRow; 6] = [
        (
            "a.service",
            "[Service]\nType=dbus\nBusName=org.a\nExecStart=/bin/a\n",
            true,
            &["dbus.socket"],
            &["dbus.socket"],
        ),
        // BusName= alone makes it Type=dbus.
        (
            "b.service",
            "[Service]\nBusName=org.b\nExecStart=/bin/b\n",
            true,
            &["dbus.socket"],
            &["dbus.socket"],
        ),
        // No socket unit: a bus started some other way serves.
        (
            "c.service",
            "[Service]\nType=dbus\nBusName=org.c\nExecStart=/bin/c\n",
            false,
            &[],
            &[],
        ),
        // Written already: not twice.
        (
            "d.service",
            "[Unit]\nRequires=dbus.socket x.service\nAfter=dbus.socket\n\
             [Service]\nType=dbus\nBusName=org.d\nExecStart=/bin/d\n",
            true,
            &["dbus.socket", "x.service"],
            &["dbus.socket"],
        ),
        // Other types, with a BusName= or not, get nothing.
        (
            "e.service",
            "[Service]\nType=notify\nBusName=org.e\nExecStart=/bin/e\n",
            true,
            &[],
            &[],
        ),
        ("f.target", "[Unit]\nDescription=f\n", true, &[], &[]),
    ];
    for (name, text, exists, requires, after) in table {
        let u = unit_of(name, text);
        let d = Deps::from_unit(&u).with_bus_socket(&u, || exists);
        assert_eq!(d.requires, requires, "{name} Requires= (socket: {exists})");
        assert_eq!(d.after, after, "{name} After= (socket: {exists})");
    }

    // The transaction: the bus socket listens before the service starts.
    let u = unit_of("a.service", table[0].1);
    let mut w = World::default();
    w.units.insert(
        "a.service".into(),
        Deps::from_unit(&u).with_bus_socket(&u, || true),
    );
    w.units.insert(
        "dbus.socket".into(),
        deps_of("dbus.socket", "[Socket]\nListenStream=%t/bus\n"),
    );
    assert_eq!(
        layers(&start(&w, "a.service")),
        vec![vec!["dbus.socket/start"], vec!["a.service/start"]]
    );
}

/// A [`World`] whose [`Units::reverse`] answers in another order, with
/// duplicates, as an implementation is allowed to.
struct Shuffled(World);

impl Units for Shuffled {
    fn deps(&self, name: &str) -> Result<Deps, Missing> {
        self.0.deps(name)
    }
    fn is_active(&self, name: &str) -> bool {
        self.0.is_active(name)
    }
    fn loaded(&self) -> Vec<String> {
        self.0.loaded()
    }
    fn reverse(&self, name: &str) -> Vec<(String, Rel)> {
        let mut edges = reverse_from_deps(&self.0, name);
        edges.extend(edges.clone());
        edges.reverse();
        edges
    }
}

#[test]
fn the_order_reverse_edges_come_in_does_not_change_the_transaction() {
    let world = || {
        World::default()
            .unit("bus.service", "")
            .unit("req.service", "Requires=bus.service")
            .unit("bound.service", "BindsTo=bus.service Conflicts=bus.service")
            .unit("part.service", "PartOf=bus.service")
            .unit("c.service", "Conflicts=bus.service")
            .unit("d.service", "Conflicts=bus.service")
            .active(&[
                "bus.service",
                "req.service",
                "part.service",
                "c.service",
                "d.service",
            ])
    };
    let (w, shuffled) = (world(), Shuffled(world()));
    assert_eq!(
        shuffled.reverse("bus.service").first(),
        Some(&("req.service".to_string(), Rel::PropagatesStop)),
        "the shuffled order is not the sorted one"
    );
    for verb in [Verb::Start, Verb::Stop, Verb::Restart] {
        let jobs = |u: &dyn Units| build(u, verb, "bus.service").map(|t| t.jobs());
        let got = jobs(&shuffled);
        assert!(
            got.as_ref().is_ok_and(|j| j.len() >= 2),
            "{verb:?}: {got:?}"
        );
        assert_eq!(got, jobs(&w), "{verb:?}");
    }
    assert_eq!(
        bound_by(&shuffled, "bus.service"),
        bound_by(&w, "bus.service")
    );
}
