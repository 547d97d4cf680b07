//! belt-syncd as a systemd service: the notify protocol in order, a clean SIGTERM,
//! JSON logs, and a unit file systemd accepts.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{assert_same, count, get, sample, wait_for, Pair, DST, SRC};

#[tokio::test]
async fn the_daemon_speaks_the_notify_protocol_and_stops_cleanly() {
    let pair = Pair::with_config("create table t (id int primary key)", "log_format: json\n").await;
    pair.add_sync("t");
    let socket_path = pair.dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let log = pair.dir.join("service.log");
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_belt-syncd"))
        .arg("-c")
        .arg(&pair.config)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .stderr(std::fs::File::create(&log).unwrap())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let mut next = || {
        let n = socket.recv(&mut buf).expect("a notify message within 20s");
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    assert_eq!(next(), "READY=1");
    assert_eq!(next(), "WATCHDOG=1");
    pair.kick_wait();

    // SAFETY: signalling our own child.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    let stopping = std::iter::repeat_with(&mut next)
        .take(20)
        .find(|m| m != "WATCHDOG=1");
    assert_eq!(stopping.as_deref(), Some("STOPPING=1"));
    assert!(daemon.wait().unwrap().success(), "SIGTERM exits 0");

    // No session of belt's is left, let alone one inside a transaction.
    let src = pair.src().await;
    wait_for(10, "belt's sessions to close", || async {
        count(
            &src,
            "pg_stat_activity where application_name = 'belt' and pid <> pg_backend_pid()",
        )
        .await
            == 0
    })
    .await;

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["span"]["sync"] == "app"),
        "a sync's lines carry its name:\n{text}"
    );
}

#[test]
fn the_unit_file_passes_systemd_analyze_verify() {
    let unit =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/belt-syncd.service")).unwrap();
    let dir = std::env::temp_dir().join(format!("belt-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("belt-syncd.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/belt-syncd", env!("CARGO_BIN_EXE_belt-syncd")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze not found: apt-get install -y systemd");
    let _ = std::fs::remove_dir_all(&dir);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify:\n{said}"
    );
}

#[tokio::test]
async fn metrics_move_and_status_knows_whether_the_daemon_runs() {
    let table = "create table t (id int primary key)";
    let pair = Pair::with_schemas(
        &format!("{table}; insert into t select generate_series(1001, 1100)"),
        table,
        "",
    )
    .await;
    pair.add_sync("t");
    let mut daemon = pair.start_daemon();
    pair.kick_wait();
    assert_eq!(get(&pair, "/healthz"), ("HTTP/1.1 200 OK".into(), "ok\n".into()));
    let mode = std::fs::metadata(pair.dir.join("api.sock")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        mode.permissions().mode() & 0o777,
        0o600,
        "the API socket is private"
    );

    let (_, before) = get(&pair, "/metrics");
    let rounds = sample(&before, r#"belt_rounds_total{sync="app"}"#);
    assert_eq!(
        sample(&before, r#"belt_copy_rows_done{sync="app"}"#),
        100.0,
        "copy progress counts the copied rows"
    );
    sample(&before, r#"belt_copy_rows_estimated{sync="app"}"#);
    pair.src()
        .await
        .batch_execute("insert into t select generate_series(1, 25)")
        .await
        .unwrap();
    pair.kick_wait();
    let (code, after) = get(&pair, "/metrics");
    assert_eq!(code, "HTTP/1.1 200 OK");
    assert!(
        sample(&after, r#"belt_rounds_total{sync="app"}"#) > rounds,
        "rounds move"
    );
    assert!(
        sample(&after, r#"belt_rows_applied_total{sync="app",into="dst"}"#) >= 25.0,
        "rows move"
    );
    let password = std::fs::read_to_string(pair.cluster.password_file()).unwrap();
    assert!(!after.contains(password.trim()), "no secret in /metrics");

    let out = pair.beltctl(&["status", "app"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("belt-syncd: running"));
    daemon.kill9();
    let out = pair.beltctl(&["status", "app"]);
    assert!(out.status.success(), "status works with the daemon down");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("not answering") && said.contains("last recorded"),
        "{said}"
    );
    assert_same(&pair, "t").await;
}

#[tokio::test]
async fn readyz_names_a_failed_sync_until_then_it_is_ready() {
    let pair = Pair::new("create table t (id int primary key)").await;
    pair.add_sync("t");
    let _daemon = pair.start_daemon();
    pair.kick_wait();
    assert_eq!(
        get(&pair, "/readyz"),
        ("HTTP/1.1 200 OK".into(), "ready\n".into())
    );

    // The target stops accepting connections and belt's session there is cut: the
    // reconnect is refused for good (SQLSTATE 55000), so the sync fails once it has
    // a change to apply.
    let admin = pair.admin("postgres").await;
    admin
        .batch_execute(&format!(
            "alter database {DST} allow_connections false; \
             select pg_terminate_backend(pid) from pg_stat_activity where datname = '{DST}'"
        ))
        .await
        .unwrap();
    // An idle sync does not need its target; a change does.
    pair.src()
        .await
        .batch_execute("insert into t values (1)")
        .await
        .unwrap();
    wait_for(60, "/readyz to report the failed sync", || async {
        let (code, body) = get(&pair, "/readyz");
        code == "HTTP/1.1 503 Service Unavailable" && body.contains("sync 'app' failed") && body.contains(DST)
    })
    .await;
    assert_eq!(
        get(&pair, "/healthz").0,
        "HTTP/1.1 200 OK",
        "alive, only not ready"
    );
    admin
        .batch_execute(&format!("alter database {DST} allow_connections true"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_password_appears_in_no_output_log_catalog_or_metric() {
    const SECRET: &str = "Zq9-distinctive-S3cret";
    let pair = Pair::with_schemas("create table t (id int primary key, v text)", "", "").await;
    pair.admin(SRC)
        .await
        .batch_execute(&format!("create role mover superuser login password '{SECRET}'"))
        .await
        .unwrap();
    let mut outputs = String::new();
    let run = |args: &[&str], env: &[(&str, &str)], outputs: &mut String| {
        let out = pair.beltctl_env(args, env);
        outputs.push_str(&crate::support::text(&out));
        out
    };
    let env = [("BELT_TEST_PW", SECRET)];
    for (name, db) in [("src", crate::support::SRC), ("dst", crate::support::DST)] {
        let (port, dbname) = (format!("port={}", pair.cluster.port()), format!("dbname={db}"));
        let args = [
            "add",
            "db",
            name,
            "host=127.0.0.1",
            &port,
            &dbname,
            "user=mover",
            "password_env=BELT_TEST_PW",
        ];
        assert!(run(&args, &env, &mut outputs).status.success(), "{outputs}");
    }
    assert!(
        run(
            &["add", "sync", "app", "--dbs", "src:source,dst:target"],
            &env,
            &mut outputs
        )
        .status
        .success(),
        "{outputs}"
    );
    let port = format!("port={}", pair.cluster.port());
    run(
        &[
            "add",
            "db",
            "bad",
            "host=127.0.0.1",
            &port,
            "dbname=postgres",
            "user=mover",
            "password_env=WRONG_PW",
        ],
        &env,
        &mut outputs,
    );
    let failed = run(
        &["add", "sync", "x", "--dbs", "bad:source,dst:target"],
        &[("WRONG_PW", "not-it"), env[0]],
        &mut outputs,
    );
    assert!(!failed.status.success(), "an auth failure must fail: {outputs}");

    let log = pair.dir.join("secret-daemon.log");
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_belt-syncd"))
        .arg("-c")
        .arg(&pair.config)
        .env("BELT_TEST_PW", SECRET)
        .env("BELT_LOG", "debug")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    assert!(
        run(&["setup", "app", "--wait", "--timeout", "60"], &env, &mut outputs)
            .status
            .success(),
        "{outputs}"
    );
    pair.src()
        .await
        .batch_execute("insert into t values (1, 'x')")
        .await
        .unwrap();
    run(&["kick", "app", "--wait"], &env, &mut outputs);
    run(&["status", "--json"], &env, &mut outputs);
    run(&["list", "dbs", "--json"], &env, &mut outputs);
    let (_, metrics) = get(&pair, "/metrics");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    daemon.wait().unwrap();

    let catalog = String::from_utf8_lossy(&crate::support::catalog_bytes(&pair)).to_string();
    let daemon_log = std::fs::read_to_string(&log).unwrap();
    for (what, text) in [
        ("beltctl output", &outputs),
        ("daemon log", &daemon_log),
        ("catalog", &catalog),
        ("metrics", &metrics),
    ] {
        assert!(!text.contains(SECRET), "the password leaked into the {what}");
    }
    assert!(
        outputs.contains("refused the login"),
        "the auth failure is reported: {outputs}"
    );
}

#[test]
fn check_config_names_the_bad_line_and_exits_1() {
    let dir = std::env::temp_dir().join(format!("belt-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("belt.yaml");
    std::fs::write(&file, "catalog: /tmp/x.db\nlisten: nowhere\n").unwrap();
    let bad = Command::new(env!("CARGO_BIN_EXE_belt-syncd"))
        .arg("--check-config")
        .arg("-c")
        .arg(&file)
        .output()
        .unwrap();
    std::fs::write(&file, "catalog: /tmp/x.db\nlisten: 127.0.0.1:7999\n").unwrap();
    let good = Command::new(env!("CARGO_BIN_EXE_belt-syncd"))
        .arg("--check-config")
        .arg("-c")
        .arg(&file)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let said = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1));
    assert!(said.contains("listen") && said.contains("nowhere"), "{said}");
    assert!(good.status.success(), "{}", String::from_utf8_lossy(&good.stderr));
}
