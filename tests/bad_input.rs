//! Bad input gets an error that names the database, table or line and says what to
//! do, and nothing changes on either database.

use crate::support::{has_belt_schema, text, Pair, DST, SRC};

const SCHEMA: &str = "create table t (id int primary key, v text); create table nokey (v text);";

async fn assert_untouched(pair: &Pair) {
    assert!(
        !has_belt_schema(&pair.src().await).await,
        "source must be untouched"
    );
    assert!(
        !has_belt_schema(&pair.dst().await).await,
        "target must be untouched"
    );
    let syncs = pair.beltctl_ok(&["list", "syncs", "--json"]);
    assert_eq!(syncs.trim(), "[]", "no sync may be stored");
}

fn add_db(pair: &Pair, name: &str, extra: &[&str]) {
    let mut args = vec!["add", "db", name];
    args.extend(extra);
    pair.beltctl_ok(&args);
}

fn fail(pair: &Pair, args: &[&str]) -> String {
    let out = pair.beltctl(args);
    assert!(
        !out.status.success(),
        "beltctl {args:?} should fail:\n{}",
        text(&out)
    );
    text(&out)
}

#[tokio::test]
async fn unreachable_host_and_wrong_password_name_the_database() {
    let pair = Pair::new(SCHEMA).await;
    add_db(
        &pair,
        "down",
        &[
            "host=127.0.0.1",
            "port=1",
            "dbname=app",
            "user=postgres",
            "connect_timeout=5",
        ],
    );
    let pw = pair.dir.join("wrong-password");
    std::fs::write(&pw, "Sw0rdf1sh-not-it").unwrap();
    let port = pair.cluster.port().to_string();
    let pw_arg = format!("password_file={}", pw.display());
    let port_arg = format!("port={port}");
    let db_arg = format!("dbname={SRC}");
    add_db(
        &pair,
        "badpw",
        &["host=127.0.0.1", &port_arg, &db_arg, "user=postgres", &pw_arg],
    );
    let mut dst = vec!["add".to_string(), "db".into(), "dst".into()];
    dst.extend(pair.cluster.add_db_args(DST));
    pair.beltctl_ok(&dst.iter().map(String::as_str).collect::<Vec<_>>());

    let e = fail(&pair, &["add", "sync", "s", "--dbs", "down:source,dst:target"]);
    assert!(
        e.contains("cannot connect to database 'down'") && e.contains("port=1"),
        "{e}"
    );

    let e = fail(&pair, &["add", "sync", "s", "--dbs", "badpw:source,dst:target"]);
    assert!(e.contains("database 'badpw' refused the login"), "{e}");
    assert!(e.contains("password"), "{e}");
    assert!(
        !e.contains("Sw0rdf1sh"),
        "the password must never be printed: {e}"
    );
    assert_untouched(&pair).await;
}

#[tokio::test]
async fn unknown_and_keyless_tables_are_reported() {
    let pair = Pair::new(SCHEMA).await;
    for (name, db) in [("src", SRC), ("dst", DST)] {
        let mut args = vec!["add".to_string(), "db".into(), name.into()];
        args.extend(pair.cluster.add_db_args(db));
        pair.beltctl_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    }
    let e = fail(
        &pair,
        &[
            "add",
            "sync",
            "s",
            "--dbs",
            "src:source,dst:target",
            "--tables",
            "t,nope",
        ],
    );
    assert!(e.contains("table public.nope not found in database 'src'"), "{e}");

    pair.as_owner(DST, "create table only_src (id int primary key)")
        .await;
    pair.as_owner(SRC, "create table gone (id int primary key)").await;
    let e = fail(
        &pair,
        &[
            "add",
            "sync",
            "s",
            "--dbs",
            "src:source,dst:target",
            "--tables",
            "gone",
        ],
    );
    assert!(
        e.contains("public.gone exists in 'src' but not in 'dst'") && e.contains("pg_dump --schema-only"),
        "{e}"
    );
    pair.as_owner(SRC, "drop table gone").await;
    pair.as_owner(DST, "drop table only_src; alter table t add column extra int")
        .await;
    let e = fail(
        &pair,
        &[
            "add",
            "sync",
            "s",
            "--dbs",
            "src:source,dst:target",
            "--tables",
            "t",
        ],
    );
    assert!(e.contains("column extra exists only on the target"), "{e}");
    assert_untouched(&pair).await;
    pair.as_owner(DST, "alter table t drop column extra").await;

    let out = pair.beltctl(&[
        "add",
        "sync",
        "s",
        "--dbs",
        "src:source,dst:target",
        "--tables",
        "all",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("public.nokey has no primary key"), "{stderr}");
    let tables = pair.beltctl_ok(&["list", "tables", "s"]);
    assert!(tables.contains("none (not captured)"), "{tables}");

    let e = fail(
        &pair,
        &[
            "add",
            "sync",
            "s2",
            "--dbs",
            "src:source,dst:target",
            "--tables",
            "t",
        ],
    );
    assert!(
        e.contains("table public.t of database 'src' is already replicated from there by sync 's'"),
        "{e}"
    );
}

#[tokio::test]
async fn malformed_config_and_db_settings_name_the_spot() {
    let pair = Pair::new(SCHEMA).await;
    std::fs::write(
        &pair.config,
        "catalog: /tmp/x.db\nlisten: 127.0.0.1:7543\nchunk_keyz: 5\n",
    )
    .unwrap();
    let e = fail(&pair, &["list", "syncs"]);
    assert!(e.contains("belt.yaml:3:1") && e.contains("chunk_keyz"), "{e}");

    std::fs::write(&pair.config, "catalog: [unclosed\n").unwrap();
    let e = fail(&pair, &["list", "syncs"]);
    assert!(e.contains("belt.yaml:"), "{e}");

    std::fs::write(
        &pair.config,
        format!("catalog: {}\n", pair.dir.join("belt.db").display()),
    )
    .unwrap();
    let e = fail(&pair, &["add", "db", "x", "host=h", "password=hunter2"]);
    assert!(e.contains("password_env") && !e.contains("hunter2"), "{e}");
    let e = fail(&pair, &["add", "db", "x", "hostname"]);
    assert!(e.contains("'hostname' is not key=value"), "{e}");
    assert_untouched(&pair).await;
}
