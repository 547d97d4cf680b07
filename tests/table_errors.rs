//! A table's own error stops only that table, named in status, while the tables after
//! it go on; deferrable keys (which cannot arbitrate ON CONFLICT) replicate.

use crate::support::{assert_same, text, Pair, DST};

#[tokio::test]
async fn deferrable_keys_replicate_both_ways() {
    let pair = Pair::new(
        "create table dk (id int primary key deferrable initially deferred, v text); \
         create table du (code text not null, v text, constraint du_code unique (code) deferrable)",
    )
    .await;
    pair.add_sync_with("all", "src:source,dst:source");
    let _daemon = pair.start_daemon();
    pair.kick_wait();
    let (src, dst) = (pair.src().await, pair.dst().await);
    src.batch_execute(
        "insert into dk select g, 'src' from generate_series(1, 20) g; \
         insert into du select 'c' || g, 'src' from generate_series(1, 20) g",
    )
    .await
    .unwrap();
    pair.kick_wait();
    dst.batch_execute(
        "update dk set v = 'dst' where id <= 5; delete from dk where id = 20; \
         insert into dk values (21, 'dst'); update du set v = 'dst' where code = 'c1'; \
         delete from du where code = 'c2'",
    )
    .await
    .unwrap();
    pair.kick_wait();
    src.batch_execute("update dk set v = 'again' where id = 1")
        .await
        .unwrap();
    pair.kick_wait();
    for t in ["dk", "du"] {
        assert_same(&pair, t).await;
    }
    let status = pair.status();
    assert!(status["last_error"].is_null(), "{status}");
}

#[tokio::test]
async fn a_failing_table_stops_alone_and_resumes_when_fixed() {
    let pair = Pair::new(
        "create table a_ruled (id int primary key, v text); create table b_after (id int primary key, v text)",
    )
    .await;
    // An INSERT rule on the target, enabled ALWAYS (so also for belt's replica-mode
    // session), makes belt's upsert fail for that table alone.
    pair.as_owner(
        DST,
        "create table a_log (id int); \
             create rule a_ruled_insert as on insert to a_ruled do also insert into a_log values (new.id); \
             alter table a_ruled enable always rule a_ruled_insert",
    )
    .await;
    pair.add_sync("all");
    let out = pair.beltctl(&["precheck", "app"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("rule a_ruled_insert on public.a_ruled is ENABLE ALWAYS"),
        "precheck names the rule: {said}"
    );
    let _daemon = pair.start_daemon();
    pair.kick_wait();
    pair.src()
        .await
        .batch_execute(
            "insert into a_ruled select g, 'a' from generate_series(1, 10) g; \
             insert into b_after select g, 'b' from generate_series(1, 10) g",
        )
        .await
        .unwrap();
    pair.kick_wait();
    assert_same(&pair, "b_after").await;
    let status = pair.status();
    assert_eq!(status["state"], "replicating", "{status}");
    let error = status["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("table public.a_ruled stopped") && error.contains("rules"),
        "{status}"
    );

    pair.as_owner(DST, "drop rule a_ruled_insert on a_ruled").await;
    pair.kick_wait();
    assert_same(&pair, "a_ruled").await;
    assert_same(&pair, "b_after").await;
}
