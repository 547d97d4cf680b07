//! belt without superuser (DESIGN.md rule 10): the whole story — precheck, setup under
//! writes, two-way replication, cutover, failback, teardown — with belt connecting as
//! a role given only what README's privileges table lists, the closest local
//! stand-in for RDS's `rds_superuser`. The application writes as its own ordinary
//! role throughout and never sees an error caused by belt.

use crate::support::load::{assert_converged, Load, SCHEMA};
use crate::support::{has_belt_schema, postgres_bin, text, wait_for, Pair, DST, SRC};

/// The rest of README's list for self-hosted PostgreSQL 15+, for database `db`.
fn grants(db: &str) -> String {
    format!(
        "grant create on database {db} to mover; grant app_owner to mover; \
         alter role mover createrole; grant pg_signal_backend to mover"
    )
}

#[tokio::test]
async fn belt_runs_the_whole_story_without_superuser() {
    let pair = Pair::two_servers_with_schemas(SCHEMA, "", "").await;
    pair.on_each_server("create role mover login password 'mover-pw'")
        .await;
    pair.add_dbs_as("mover", "mover-pw");
    // add sync itself refuses a role that cannot apply without echo, naming the grant.
    let out = pair.beltctl(&["add", "sync", "app", "--dbs", "src:source,dst:source"]);
    assert!(
        text(&out).contains("GRANT SET ON PARAMETER session_replication_role TO mover"),
        "{}",
        text(&out)
    );
    pair.on_each_server("grant set on parameter session_replication_role to mover")
        .await;
    pair.define_sync("src:source,dst:source", &[]);

    // Each missing privilege is named with the statement that grants it.
    let out = pair.beltctl(&["precheck", "app"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    for statement in [
        "GRANT CREATE ON DATABASE app_src TO mover",
        "GRANT CREATE ON DATABASE app_dst TO mover",
        "GRANT app_owner TO mover",
        "ALTER ROLE mover CREATEROLE",
        "GRANT pg_signal_backend TO mover",
    ] {
        assert!(
            said.contains(statement),
            "precheck does not say {statement}: {said}"
        );
    }
    for db in [SRC, DST] {
        pair.admin(db).await.batch_execute(&grants(db)).await.unwrap();
    }
    let out = pair.beltctl(&["precheck", "app"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("warning"), "{}", text(&out));

    // Setup while the application writes on the source.
    let source_writer = Load::start(vec![(pair.app_spec("src", SRC), 1_000)], 50, 10, 11);
    pair.beltctl_ok(&["setup", "app"]);
    let _daemon = pair.start_daemon();
    wait_for(120, "setup", || async { pair.status()["state"] == "replicating" }).await;

    // Both ways: the application writes on the target too.
    let target_writer = Load::start(vec![(pair.app_spec("dst", DST), 2_000_000)], 50, 10, 12);
    pair.kick_wait();
    pair.kick_wait();
    let mut models = source_writer.finish();
    models.extend(target_writer.finish());
    assert_converged(&pair, &models).await;

    // The fence ends the application's open sessions (pg_signal_backend).
    let held = pair.src().await;
    let out = pair.beltctl(&["cutover", "app", "--timeout", "60s"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        held.batch_execute("select 1").await.is_err(),
        "the fence left a session open"
    );
    let writer = Load::start(vec![(pair.app_spec("dst", DST), 3_000_000)], 50, 10, 13);
    pair.kick_wait();
    let moved = writer.finish();
    pair.kick_wait();
    let out = pair.beltctl(&["failback", "app", "--timeout", "60s"]);
    assert!(out.status.success(), "{}", text(&out));
    let writer = Load::start(vec![(pair.app_spec("src", SRC), 4_000_000)], 50, 10, 14);
    pair.kick_wait();
    let back = writer.finish();
    pair.kick_wait();
    // The application is fenced off the new side again: compare as administrator.
    for (base, model) in moved.iter().chain(&back) {
        for db in [SRC, DST] {
            let n: i64 = pair
                .admin(db)
                .await
                .query_one(
                    "select count(*) from t where id >= $1 and id < $1 + 1000000",
                    &[base],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(n as usize, model.len(), "{db}: rows of the writer from {base}");
        }
    }
    crate::support::assert_same_admin(&pair, "t").await;

    let out = pair.beltctl(&["teardown", "app"]);
    assert!(out.status.success(), "{}", text(&out));
    for db in [SRC, DST] {
        assert!(
            !has_belt_schema(&pair.admin(db).await).await,
            "{db} keeps schema belt"
        );
    }
    pair.src()
        .await
        .batch_execute("insert into t values (5000000, 'after teardown', 0, '')")
        .await
        .expect("the application writes after teardown");
}

/// Since PostgreSQL 16, CREATEROLE alters only the roles it holds ADMIN OPTION on:
/// precheck names the grant, and with it the fence works. (The schema is created on
/// both sides: the distribution's pg_dump cannot dump a newer server.)
#[tokio::test]
async fn on_postgres_17_the_fence_needs_admin_option_and_precheck_says_so() {
    let pair = Pair::two_servers_of(&postgres_bin(17), SCHEMA).await;
    pair.on_each_server("create role mover login password 'mover-pw'")
        .await;
    for db in [SRC, DST] {
        pair.admin(db)
            .await
            .batch_execute(&format!(
                "grant set on parameter session_replication_role to mover; {}",
                grants(db)
            ))
            .await
            .unwrap();
    }
    pair.add_dbs_as("mover", "mover-pw");
    pair.define_sync("src:source,dst:target", &["--no-copy"]);
    let said = pair.beltctl_ok(&["precheck", "app"]);
    assert!(
        said.contains("GRANT app_user TO mover WITH ADMIN OPTION, INHERIT FALSE, SET FALSE"),
        "{said}"
    );
    let _daemon = pair.start_daemon();
    pair.kick_wait();
    let out = pair.beltctl(&["cutover", "app", "--timeout", "30s"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("gate 'fence' failed") && shown.contains("ADMIN option"),
        "{shown}"
    );

    pair.on_each_server("grant app_user to mover with admin option, inherit false, set false")
        .await;
    let said = pair.beltctl_ok(&["precheck", "app"]);
    assert!(!said.contains("ADMIN OPTION"), "{said}");
    pair.src()
        .await
        .batch_execute("insert into t values (100, 'before cutover', 0, '')")
        .await
        .unwrap();
    let held = pair.src().await;
    let out = pair.beltctl(&["cutover", "app", "--timeout", "30s"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        held.batch_execute("select 1").await.is_err(),
        "the fence left a session open"
    );
    pair.dst()
        .await
        .batch_execute("insert into t values (101, 'on the new side', 0, '')")
        .await
        .expect("the application writes on the new side");
    pair.kick_wait();
    let out = pair.beltctl(&["failback", "app", "--timeout", "30s"]);
    assert!(out.status.success(), "{}", text(&out));
    crate::support::assert_same_admin(&pair, "t").await;
}
