//! Rule 9: capture installs and uninstalls idempotently and leaves nothing behind.

use std::time::Duration;

use belt::capture::{self, doorbell, TriggerMode, KICK_CHANNEL};
use belt::pg::connect_listening;
use belt::pg::introspect::{describe_table, TableName};

use crate::support::{count, has_belt_schema, Pair, SRC};

#[tokio::test]
async fn install_and_uninstall_are_idempotent() {
    let pair = Pair::new(r#"create table "Mixed Case" (id int primary key, v text)"#).await;
    // belt's role installs; the application writes.
    let mut src = pair.admin(SRC).await;
    let app = pair.src().await;
    let name = TableName {
        schema: "public".into(),
        name: "Mixed Case".into(),
    };
    let table = describe_table(&src, "src", &name).await.unwrap().unwrap();
    let tables = [table];

    let first = capture::install(&mut src, "src", &tables, TriggerMode::Statement)
        .await
        .unwrap();
    let again = capture::install(&mut src, "src", &tables, TriggerMode::Statement)
        .await
        .unwrap();
    assert_eq!(first[0].delta, again[0].delta);
    let triggers = r#"pg_trigger where tgrelid = '"Mixed Case"'::regclass and tgname like 'belt%'"#;
    assert_eq!(
        count(&src, triggers).await,
        4,
        "insert, update, delete and truncate triggers"
    );

    app.batch_execute(
        r#"insert into "Mixed Case" values (1, 'a'), (2, 'b'); update "Mixed Case" set id = 3 where id = 2"#,
    )
    .await
    .unwrap();
    let delta = format!("belt.\"{}\"", first[0].delta);
    // Two inserted keys, then the key update records both the old and the new key.
    assert_eq!(count(&src, &delta).await, 4);

    capture::uninstall_tables(&src, "src", &tables).await.unwrap();
    capture::uninstall_tables(&src, "src", &tables).await.unwrap();
    assert_eq!(count(&src, triggers).await, 0);
    capture::uninstall_all(&src, "src").await.unwrap();
    capture::uninstall_all(&src, "src").await.unwrap();
    assert!(!has_belt_schema(&src).await);
    assert_eq!(
        count(&src, r#""Mixed Case""#).await,
        2,
        "user data is never touched"
    );
}

#[tokio::test]
async fn a_restarted_daemon_does_not_wait_for_open_application_transactions() {
    let pair = Pair::new("create table t (id int primary key, v text)").await;
    pair.add_sync("t");
    let mut daemon = pair.start_daemon();
    pair.kick_wait();
    daemon.kill9();

    // An application transaction holds the table (and its delta table) open.
    let app = pair.src().await;
    app.batch_execute("begin; insert into t values (1, 'open')")
        .await
        .unwrap();

    let _daemon = pair.start_daemon();
    let out = pair.beltctl(&["kick", "app", "--wait", "--timeout", "15"]);
    assert!(
        out.status.success(),
        "capture already in place must not be locked again: {}",
        crate::support::text(&out)
    );
    app.batch_execute("commit").await.unwrap();
    pair.kick_wait();
    assert_eq!(count(&pair.dst().await, "t").await, 1);
}

#[tokio::test]
async fn long_multibyte_names_get_delta_tables_of_their_own() {
    // 29 two-byte letters: the names differ only in their last byte, and each is
    // within PostgreSQL's 63 bytes while its schema-prefixed form is not.
    let stem = "ä".repeat(29);
    let (one, two) = (format!("{stem}_a1"), format!("{stem}_a2"));
    let pair = Pair::new(&format!(
        "create table \"{one}\" (id int primary key, v text); create table \"{two}\" (id int primary key, v text)"
    ))
    .await;
    pair.add_sync("all");
    let _daemon = pair.start_daemon();
    pair.kick_wait();
    let admin = pair.admin(SRC).await;
    let names: Vec<String> = admin
        .query(
            "select belt.delta_name('public', t) from unnest($1::text[]) t",
            &[&vec![one.clone(), two.clone()]],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_ne!(names[0], names[1]);
    for n in &names {
        let table = format!("belt.\"{n}\"");
        assert!(
            count(
                &admin,
                &format!(
                    "pg_class where oid = to_regclass('{}')",
                    table.replace('\'', "''")
                )
            )
            .await
                == 1,
            "{table} missing"
        );
    }
    assert!(names.iter().all(|n| n.len() <= 63), "{names:?}");
    let app = pair.src().await;
    for t in [&one, &two] {
        app.batch_execute(&format!(
            "insert into \"{t}\" select g, '{t}' from generate_series(1, 10) g"
        ))
        .await
        .unwrap();
    }
    pair.kick_wait();
    for t in [&one, &two] {
        crate::support::assert_same(&pair, &format!("\"{t}\"")).await;
    }
}

/// A notifying transaction holds a cluster-wide lock until its commit is flushed, so
/// the triggers notify only while a daemon waits for them (`belt.listeners`) and its
/// lease runs, on plain and on partitioned tables; every change is captured either
/// way.
#[tokio::test]
async fn commits_notify_only_while_a_daemon_waits() {
    let pair = Pair::new(
        "create table t (id int primary key, v text);
         create table p (id int primary key, at date) partition by range (id);
         create table p1 partition of p for values from (0) to (100)",
    )
    .await;
    let mut admin = pair.admin(SRC).await;
    let mut tables = Vec::new();
    for name in ["t", "p"] {
        let name = TableName {
            schema: "public".into(),
            name: name.into(),
        };
        tables.push(describe_table(&admin, SRC, &name).await.unwrap().unwrap());
    }
    let captured = capture::install(&mut admin, SRC, &tables, TriggerMode::Statement)
        .await
        .unwrap();
    let (tx, mut heard) = tokio::sync::mpsc::unbounded_channel();
    let listener = connect_listening(&pair.spec(SRC, SRC), tx).await.unwrap();
    listener
        .batch_execute(&format!("listen {KICK_CHANNEL}; listen probe"))
        .await
        .unwrap();
    let app = pair.src().await;
    let first = "insert into t values (1, 'a'); insert into p values (1, now())";
    let heard_first = commit(&app, &mut heard, first).await;
    assert_eq!(heard_first, "probe", "no daemon waits: nothing to notify");

    // A wait whose lease ran out (a sync paused, a daemon gone) counts for nothing.
    doorbell::wait(&admin, SRC, "app", true, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        commit(&app, &mut heard, "insert into t values (4, 'd')").await,
        "probe",
        "the lease ran out"
    );

    doorbell::renew(&admin, SRC, "app", doorbell::DEFAULT_LEASE)
        .await
        .unwrap();
    let plain = commit(&app, &mut heard, "insert into t values (2, 'b')").await;
    assert_eq!(plain, KICK_CHANNEL, "a plain table's commit rings");
    assert_eq!(next(&mut heard).await, "probe");
    let partition = commit(&app, &mut heard, "insert into p values (2, now())").await;
    assert_eq!(partition, KICK_CHANNEL, "a partition's commit rings");
    assert_eq!(next(&mut heard).await, "probe");

    doorbell::wait(&admin, SRC, "app", false, doorbell::DEFAULT_LEASE)
        .await
        .unwrap();
    let after = commit(&app, &mut heard, "update t set v = 'c'; delete from p").await;
    assert_eq!(after, "probe", "the daemon stopped waiting");

    for c in &captured {
        let delta = format!("belt.\"{}\"", c.delta);
        assert!(count(&admin, &delta).await >= 3, "every change captured: {delta}");
    }
}

/// The application commits `sql`, then notifies `probe`: the channel the listener
/// hears next is the commit's kick, or the probe (notifications arrive in commit
/// order).
async fn commit(
    app: &tokio_postgres::Client,
    heard: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    sql: &str,
) -> String {
    app.batch_execute(sql).await.unwrap();
    app.batch_execute("notify probe").await.unwrap();
    next(heard).await
}

/// The next notification's channel, within 10 s.
async fn next(heard: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(10), heard.recv())
        .await
        .expect("a notification within 10 s")
        .unwrap()
}
