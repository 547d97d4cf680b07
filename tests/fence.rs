//! Fencing and cleaning up: revoke-logins / restore-logins change exactly the roles
//! they should, teardown leaves no belt object behind and can run again.

use crate::support::{can_login, count, has_belt_schema, text, Pair, SRC};

#[tokio::test]
async fn restore_logins_gives_back_only_what_revoke_took() {
    let pair = Pair::new("create table t (id int primary key)").await;
    pair.admin(SRC)
        .await
        .batch_execute("create role app1 login password 'pw1'; create role app2 nologin; create role app3 login password 'pw3'")
        .await
        .unwrap();
    pair.add_sync("t");
    let pw = pair.dir.join("app1-password");
    std::fs::write(&pw, "pw1").unwrap();
    let mut app1 = pair.spec("app1", SRC);
    app1.conninfo = app1.conninfo.replace("user=postgres", "user=app1");
    app1.password_file = Some(pw);
    let session = belt::pg::connect(&app1).await.unwrap();

    let out = pair.beltctl(&[
        "revoke-logins",
        "app",
        "--db",
        "src",
        "--terminate",
        "--exclude",
        "app3",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!can_login(&pair, "app1").await, "app1 is fenced");
    assert!(can_login(&pair, "app3").await, "an excluded role is left alone");
    assert!(
        can_login(&pair, "postgres").await,
        "belt's own role is never touched"
    );
    assert!(
        session.simple_query("select 1").await.is_err(),
        "--terminate ends app1's session"
    );

    pair.beltctl_ok(&["restore-logins", "app", "--db", "src"]);
    assert!(can_login(&pair, "app1").await, "app1 is back");
    assert!(
        !can_login(&pair, "app2").await,
        "a role that was NOLOGIN before stays NOLOGIN"
    );
}

#[tokio::test]
async fn teardown_removes_every_belt_object_and_can_run_again() {
    let pair = Pair::new("create table t (id int primary key, v text)").await;
    pair.add_sync_with("t", "src:source,dst:source");
    let _daemon = pair.start_daemon();
    pair.kick_wait();
    pair.src()
        .await
        .batch_execute("insert into t values (1, 'kept')")
        .await
        .unwrap();
    pair.kick_wait();
    assert!(has_belt_schema(&pair.src().await).await && has_belt_schema(&pair.dst().await).await);

    let out = pair.beltctl(&["teardown", "app"]);
    assert!(out.status.success(), "{}", text(&out));
    for c in [pair.src().await, pair.dst().await] {
        assert!(!has_belt_schema(&c).await, "schema belt must be gone");
        assert_eq!(
            count(&c, "pg_trigger where tgname like 'belt%'").await,
            0,
            "no belt trigger may stay"
        );
        assert_eq!(count(&c, "t").await, 1, "user data stays");
    }
    assert_eq!(pair.beltctl_ok(&["list", "syncs", "--json"]).trim(), "[]");
    let again = pair.beltctl_ok(&["teardown", "app"]);
    assert!(again.contains("nothing to tear down"), "{again}");
}
