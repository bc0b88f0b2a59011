//! The loader on the fixtures in tests/fixtures/units: search-path
//! precedence, templates, drop-ins (template, instance, prefix, masked),
//! masking, aliases, `.wants/`, list-unit-files, runit directories, and the
//! run-time halves (PATH lookup, environment composition, finish arguments)
//! with real processes.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use corral::unit::runit::RunitService;
use corral::unit::{
    Loader, RestartPolicy, SpecifierContext, UnitError, UnitFileState, UnitName, UnitSource,
};

fn fixtures() -> PathBuf {
    common::fixture("units")
}

fn loader() -> Loader {
    let s = fixtures().join("search");
    Loader::new(
        vec![s.join("user"), s.join("etc"), s.join("lib")],
        vec![fixtures().join("runit")],
        SpecifierContext::current(),
    )
}

fn name(s: &str) -> UnitName {
    UnitName::parse(s).unwrap()
}

#[test]
fn user_directory_wins_and_dropins_merge_by_name() {
    let u = loader().load(&name("precedence")).unwrap();
    assert_eq!(u.unit.description.as_deref(), Some("from user"));
    assert!(
        u.fragment()
            .unwrap()
            .starts_with(fixtures().join("search/user"))
    );
    let s = u.service.unwrap();
    // 50-who.conf exists in etc and lib: etc wins. 60-gone.conf is masked by
    // a /dev/null link in user.
    assert_eq!(s.environment, [("WHO".to_string(), "etc".to_string())]);
    assert_eq!(u.dropins.len(), 1);
    assert!(u.dropins[0].starts_with(fixtures().join("search/etc")));
}

#[test]
fn template_instance_with_template_and_instance_dropins() {
    let l = loader();
    let u = l.load(&name("memcached@11212")).unwrap();
    assert_eq!(u.name.as_str(), "memcached@11212.service");
    assert_eq!(
        u.unit.description.as_deref(),
        Some("memcached on port 11212")
    );
    let names: Vec<String> = u
        .dropins
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["10-mem.conf", "20-inst.conf"]);
    let s = u.service.as_ref().unwrap();
    assert_eq!(
        s.environment,
        [
            ("MEM".to_string(), "128".to_string()),
            ("EXTRA".to_string(), "1".to_string())
        ]
    );
    assert_eq!(s.restart_sec, Duration::from_secs(2));
    assert_eq!(s.restart, RestartPolicy::OnFailure);
    let cmd = &s.exec_start[0];
    assert_eq!(cmd.program, "memcached");
    assert_eq!(
        cmd.expand(&s.environment),
        ["memcached", "-p", "11212", "-U", "0", "-m", "128"]
    );
    // Another instance: only the template drop-in.
    let other = l.load(&name("memcached@11213")).unwrap();
    let os = other.service.as_ref().unwrap();
    assert_eq!(os.environment, [("MEM".to_string(), "64".to_string())]);
    assert_eq!(os.restart_sec, Duration::from_millis(100));
}

#[test]
fn relative_program_is_found_on_path() {
    let u = loader().load(&name("memcached@11212")).unwrap();
    let cmd = &u.service.as_ref().unwrap().exec_start[0];
    let line = u.service.as_ref().unwrap().exec_start_line;
    assert_eq!(line, 7);
    assert_eq!(cmd.origin.line, 7);
    assert_eq!(cmd.origin.unit, "memcached@11212.service");
    match cmd.resolve_program("/usr/local/bin:/usr/bin:/bin") {
        Ok(p) => {
            assert!(p.is_absolute() && p.ends_with("memcached"));
            // Really run it: prove the resolved path is the program.
            let out = Command::new(&p).arg("-h").output().unwrap();
            assert!(String::from_utf8_lossy(&out.stdout).contains("memcached"));
        }
        Err(e) => {
            // memcached is installed by scripts/test; without it the error must be the documented one.
            assert!(
                e.to_string().starts_with(
                    "memcached@11212.service:7: ExecStart= must be an absolute path or a name on PATH"
                ),
                "{e}"
            );
        }
    }
    let err = cmd.resolve_program("/nonexistent").unwrap_err().to_string();
    assert!(
        err.starts_with(
            "memcached@11212.service:7: ExecStart= must be an absolute path or a name on PATH"
        ),
        "{err}"
    );
}

#[test]
fn prefix_dropin_and_own_dropin() {
    let u = loader().load(&name("app-web.service")).unwrap();
    let s = u.service.as_ref().unwrap();
    assert_eq!(
        s.environment,
        [
            ("TIER".to_string(), "app".to_string()),
            ("NAME".to_string(), "web".to_string())
        ]
    );
    assert_eq!(
        s.restart_sec,
        Duration::from_secs(7),
        "drop-in beats the fragment"
    );
}

#[test]
fn masked_unit() {
    let u = loader().load(&name("masked")).unwrap();
    assert!(u.masked);
    assert!(
        u.fragment()
            .unwrap()
            .starts_with(fixtures().join("search/user"))
    );
    assert!(u.diagnostics.is_empty());
}

#[test]
fn alias_symlink_and_alias_directive() {
    let u = loader().load(&name("alias-name")).unwrap();
    assert_eq!(u.name.as_str(), "real-name.service");
    assert_eq!(u.unit.description.as_deref(), Some("the real one"));
    let aliases: Vec<&str> = u.aliases.iter().map(UnitName::as_str).collect();
    assert_eq!(aliases, ["alias-name.service", "other-name.service"]);
}

#[test]
fn dropin_empties_exec_start_and_resets_list() {
    let u = loader().load(&name("emptied")).unwrap();
    let s = u.service.unwrap();
    assert!(s.exec_start_pre.is_empty());
    assert_eq!(s.exec_start.len(), 1);
    assert_eq!(s.exec_start[0].argv, ["/bin/true"]);
    assert!(u.diagnostics.is_empty(), "{:?}", u.diagnostics);
}

#[test]
fn wants_directory_adds_dependencies() {
    let u = loader().load(&name("default.target")).unwrap();
    assert_eq!(u.unit.wants, [name("app-web.service")]);
    assert!(u.service.is_none());
}

#[test]
fn socket_units_load_into_a_socket_definition() {
    let u = loader().load(&name("thing.socket")).unwrap();
    assert!(u.diagnostics.is_empty(), "{:?}", u.diagnostics);
    let s = u.socket.as_ref().unwrap();
    let runtime = corral::unit::SpecifierContext::current().runtime_dir;
    assert_eq!(
        s.listen,
        [corral::unit::Listen::Socket {
            kind: corral::unit::SocketType::Stream,
            address: corral::unit::SocketAddress::Path(runtime.join("x.sock")),
        }]
    );
    assert_eq!(s.triggered_service(&u.name).unwrap(), name("thing.service"));
}

#[test]
fn not_found_names_the_directories() {
    let e = loader().load(&name("nope")).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, UnitError::NotFound { .. }));
    assert!(
        msg.contains("nope.service") && msg.contains("search/user"),
        "{msg}"
    );
}

#[test]
fn list_unit_files_states() {
    let list = loader().list();
    let get = |n: &str| {
        list.iter()
            .find(|(u, _, _)| u.as_str() == n)
            .map(|(_, _, s)| s.clone())
            .unwrap_or_else(|| panic!("{n} not listed in {list:?}"))
    };
    assert_eq!(get("masked.service"), UnitFileState::Masked);
    assert_eq!(get("app-web.service"), UnitFileState::Enabled);
    assert_eq!(get("memcached@.service"), UnitFileState::Template);
    assert_eq!(get("real-name.service"), UnitFileState::Disabled);
    assert_eq!(get("emptied.service"), UnitFileState::Static);
    assert_eq!(
        get("alias-name.service"),
        UnitFileState::Alias(name("real-name.service"))
    );
    assert_eq!(get("echoer.service"), UnitFileState::Enabled);
    assert_eq!(get("downed.service"), UnitFileState::Disabled);
    // `broken/run` is not executable: not a service.
    assert!(!list.iter().any(|(u, _, _)| u.as_str() == "broken.service"));
    let names: Vec<&str> = list.iter().map(|(u, _, _)| u.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
}

#[test]
fn runit_directory_is_a_service() {
    let u = loader().load(&name("echoer")).unwrap();
    let UnitSource::Runit(r) = &u.source else {
        panic!("expected a runit source, got {:?}", u.source)
    };
    let dir = fixtures().join("runit/echoer");
    assert_eq!(r.dir, dir);
    assert_eq!(r.finish.as_deref(), Some(dir.join("finish").as_path()));
    assert_eq!(r.log_run.as_deref(), Some(dir.join("log/run").as_path()));
    assert!(!r.down);
    let s = u.service.as_ref().unwrap();
    assert_eq!(s.restart, RestartPolicy::Always);
    assert_eq!(s.restart_sec, Duration::from_secs(3), "set by the drop-in");
    assert_eq!(u.unit.start_limit_interval, Duration::ZERO);
    assert_eq!(s.working_directory.as_ref().unwrap().path, dir);
    let cmd = &s.exec_start[0];
    assert_eq!(cmd.program, dir.join("run").to_string_lossy());
    assert_eq!(cmd.argv, ["./run"]);
    // Run it as the supervisor would: argv0 ./run, in its directory.
    let out = Command::new(&cmd.program)
        .current_dir(&s.working_directory.as_ref().unwrap().path)
        .env("PATH", "/usr/bin:/bin")
        .arg0(&cmd.argv[0])
        .spawn_and_first_line();
    // The kernel hands a script its path, not argv[0], so $0 is the absolute
    // path here (runsv execs "./run"); the working directory is the same.
    assert_eq!(
        out,
        format!(
            "running in {} as {}",
            dir.display(),
            dir.join("run").display()
        )
    );
    // A drop-in in the unit search path applies to the runit service.
    assert_eq!(u.dropins.len(), 1);
    assert_eq!(
        s.environment,
        [("GREETING".to_string(), "hello".to_string())]
    );
    let downed = loader().load(&name("downed")).unwrap();
    let UnitSource::Runit(d) = &downed.source else {
        panic!()
    };
    assert!(d.down && d.finish.is_none() && d.log_run.is_none());
}

/// Reads the first stdout line of a command that may keep running, then kills it.
trait FirstLine {
    fn spawn_and_first_line(&mut self) -> String;
}

impl FirstLine for Command {
    fn spawn_and_first_line(&mut self) -> String {
        use std::io::BufRead;
        let mut child = self.stdout(std::process::Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        line.trim_end().to_string()
    }
}

use std::os::unix::process::CommandExt;

#[test]
fn finish_gets_runsv_arguments_from_real_exits() {
    let dir = fixtures().join("runit/echoer");
    let r = RunitService::probe(&dir).unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("finish.out");
    let cases: [(&str, [&str; 2]); 2] = [("exit 3", ["3", "0"]), ("kill -KILL $$", ["-1", "9"])];
    for (script, want) in cases {
        let status = Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .status()
            .unwrap();
        let args = RunitService::finish_args(status.into_raw());
        assert_eq!(args, want, "{script}");
        let st = Command::new(r.finish.as_ref().unwrap())
            .current_dir(&r.dir)
            .args(&args)
            .env("FINISH_OUT", &out)
            .status()
            .unwrap();
        assert!(st.success());
        assert_eq!(
            std::fs::read_to_string(&out).unwrap().trim(),
            format!("{} {}", want[0], want[1])
        );
    }
}

#[test]
fn environment_composition_reads_files_at_start() {
    let d = tempfile::tempdir().unwrap();
    let envfile = d.path().join("env");
    std::fs::write(
        &envfile,
        "# defaults\nA=\"from file\"\nB='single $X'\nC=multi\\\nline\n",
    )
    .unwrap();
    let unit_dir = d.path().join("units");
    std::fs::create_dir(&unit_dir).unwrap();
    std::fs::write(
        unit_dir.join("e.service"),
        format!(
            "[Service]\nExecStart=/bin/true\nEnvironment=A=inline D=keep U=drop\nEnvironmentFile={}\nEnvironmentFile=-/nonexistent/file\nPassEnvironment=PASSME\nUnsetEnvironment=U\n",
            envfile.display()
        ),
    )
    .unwrap();
    let l = Loader::new(vec![unit_dir], Vec::new(), SpecifierContext::current());
    let u = l.load(&name("e")).unwrap();
    let s = u.service.as_ref().unwrap();
    let env = s
        .resolve_environment(
            &[
                ("HOME".to_string(), "/h".to_string()),
                ("A".to_string(), "manager".to_string()),
            ],
            &|k| (k == "PASSME").then(|| "passed".to_string()),
        )
        .unwrap();
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("A"), Some("from file"));
    assert_eq!(get("B"), Some("single $X"));
    assert_eq!(get("C"), Some("multiline"));
    assert_eq!(get("D"), Some("keep"));
    assert_eq!(get("HOME"), Some("/h"));
    assert_eq!(get("PASSME"), Some("passed"));
    assert_eq!(get("U"), None);
    // A required file that is missing is an error naming it.
    let mut s2 = s.clone();
    s2.environment_files[1].optional = false;
    let e = s2
        .resolve_environment(&[], &|_| None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/file"), "{e}");
}

#[test]
fn load_file_by_path_with_sibling_dropins() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("x.service"), "[Service]\nExecStart=/bin/a\n").unwrap();
    std::fs::create_dir(d.path().join("x.service.d")).unwrap();
    std::fs::write(
        d.path().join("x.service.d/o.conf"),
        "[Service]\nExecStart=\nExecStart=/bin/b\n",
    )
    .unwrap();
    let u = Loader::new(Vec::new(), Vec::new(), SpecifierContext::current())
        .load_file(&d.path().join("x.service"))
        .unwrap();
    assert_eq!(u.service.unwrap().exec_start[0].argv, ["/bin/b"]);
}

#[test]
fn dropins_follow_systemd_252_precedence() {
    // systemd 252 lists the drop-in directories of the unit's own name in
    // every search directory first (per directory: the name, its template,
    // its prefixes with the instance kept), the type-wide service.d last;
    // among same-named files the first directory in that list wins.
    let d = tempfile::tempdir().unwrap();
    let (user, etc) = (d.path().join("user"), d.path().join("etc"));
    let put = |dir: &Path, rel: &str, text: &str| {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    put(&etc, "foo-bar@.service", "[Service]\nExecStart=/bin/true\n");
    let env = |k: &str, v: &str| format!("[Service]\nEnvironment={k}={v}\n");
    // The template's drop-in in the higher directory beats the instance's in the lower.
    put(
        &user,
        "foo-bar@.service.d/a.conf",
        &env("A", "user-template"),
    );
    put(
        &etc,
        "foo-bar@x.service.d/a.conf",
        &env("A", "etc-instance"),
    );
    // A prefix directory keeps the instance: foo-@x.service.d.
    put(
        &user,
        "foo-@x.service.d/b.conf",
        &env("B", "user-prefix-instance"),
    );
    put(
        &etc,
        "foo-bar@x.service.d/b.conf",
        &env("B", "etc-instance"),
    );
    // In one directory: the instance before the plain prefix.
    put(&user, "foo-.service.d/c.conf", &env("C", "user-prefix"));
    put(
        &user,
        "foo-bar@x.service.d/c.conf",
        &env("C", "user-instance"),
    );
    // The type-wide service.d comes after every named directory.
    put(&user, "service.d/d.conf", &env("D", "user-service.d"));
    put(
        &etc,
        "foo-bar@x.service.d/d.conf",
        &env("D", "etc-instance"),
    );
    put(
        &etc,
        "foo-@.service.d/e.conf",
        &env("E", "etc-prefix-template"),
    );
    let l = Loader::new(
        vec![user.clone(), etc.clone()],
        Vec::new(),
        SpecifierContext::current(),
    );
    let u = l.load(&name("foo-bar@x")).unwrap();
    assert!(!u.has_errors(), "{:?}", u.diagnostics);
    let got: Vec<(String, String)> = u.service.unwrap().environment;
    let want = [
        ("A", "user-template"),
        ("B", "user-prefix-instance"),
        ("C", "user-instance"),
        ("D", "etc-instance"),
        ("E", "etc-prefix-template"),
    ];
    assert_eq!(got, want.map(|(k, v)| (k.to_string(), v.to_string())));
    let dirs: Vec<PathBuf> = u
        .dropins
        .iter()
        .map(|p| p.strip_prefix(d.path()).unwrap().to_path_buf())
        .collect();
    assert_eq!(
        dirs,
        [
            "user/foo-bar@.service.d/a.conf",
            "user/foo-@x.service.d/b.conf",
            "user/foo-bar@x.service.d/c.conf",
            "etc/foo-bar@x.service.d/d.conf",
            "etc/foo-@.service.d/e.conf",
        ]
        .map(PathBuf::from)
    );
}

#[test]
fn a_one_word_plain_file_is_a_unit_file_not_a_link() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("one.service"), "nothere.service").unwrap();
    std::fs::write(d.path().join("two.service"), "/dev/null").unwrap();
    std::fs::write(
        d.path().join("nothere.service"),
        "[Service]\nExecStart=/bin/true\n",
    )
    .unwrap();
    let l = Loader::new(
        vec![d.path().to_path_buf()],
        Vec::new(),
        SpecifierContext::current(),
    );
    for n in ["one", "two"] {
        let u = l.load(&name(n)).unwrap();
        assert_eq!(u.name.as_str(), format!("{n}.service"));
        assert!(!u.masked);
        let errors: Vec<String> = u.errors().map(|e| e.to_string()).collect();
        assert!(errors[0].contains(":1: error: missing '='"), "{errors:?}");
        // As systemd: the line is ignored, and a service without ExecStart= is refused.
        assert!(u.ensure_valid().is_err());
    }
    let states: Vec<(String, UnitFileState)> = l
        .list()
        .into_iter()
        .map(|(n, _, s)| (n.to_string(), s))
        .collect();
    assert!(states.contains(&("two.service".to_string(), UnitFileState::Static)));
    // Real symlinks are links.
    std::os::unix::fs::symlink("/dev/null", d.path().join("three.service")).unwrap();
    std::os::unix::fs::symlink("nothere.service", d.path().join("four.service")).unwrap();
    assert!(l.load(&name("three")).unwrap().masked);
    assert_eq!(
        l.load(&name("four")).unwrap().name.as_str(),
        "nothere.service"
    );
    // Stored symlinks on request (trees extracted without symlinks).
    let stored = l.clone().with_stored_symlinks(true);
    assert!(stored.load(&name("two")).unwrap().masked);
    assert_eq!(
        stored.load(&name("one")).unwrap().name.as_str(),
        "nothere.service"
    );
}
