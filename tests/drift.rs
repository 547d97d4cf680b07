//! Schema drift: a column added on one side only stops that table with an error that
//! names table and column, the other tables go on, and the table resumes by itself,
//! with every change, once the column exists on both sides.

use crate::support::{count, rows, Pair, DST, SRC};

#[tokio::test]
async fn a_column_added_on_one_side_stops_only_that_table_until_both_match() {
    let pair =
        Pair::new("create table t (id int primary key, v text); create table u (id int primary key)").await;
    pair.add_sync("all");
    let _daemon = pair.start_daemon();
    pair.kick_wait();

    let src = pair.src().await;
    pair.as_owner(SRC, "alter table t add column extra integer").await;
    src.batch_execute("insert into t values (1, 'a', 5); insert into u values (1)")
        .await
        .unwrap();
    pair.kick_wait();
    let status = pair.status();
    let error = status["last_error"].as_str().unwrap_or_default().to_string();
    assert!(
        error.contains("table public.t stopped") && error.contains("column extra is missing on 'dst'"),
        "{status}"
    );
    let dst = pair.dst().await;
    assert_eq!(count(&dst, "u").await, 1, "other tables go on");
    assert_eq!(count(&dst, "t").await, 0, "the drifted table waits");

    pair.as_owner(DST, "alter table t add column extra integer").await;
    pair.kick_wait();
    assert_eq!(
        rows(&dst, "t").await,
        vec!["(1,a,5)"],
        "the waiting change arrives, new column included"
    );
    assert!(pair.status()["last_error"].is_null(), "{}", pair.status());
}
