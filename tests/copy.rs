//! Rule 6: the initial copy leaves no gap, resumes from its checkpoints after a crash,
//! and ends with the target equal to the source while writes go on.

use crate::support::{assert_same, count, wait_for, Pair, SRC};

const SCHEMA: &str = "
create table big (id bigint primary key, v text, n integer);
create table audit_log (at timestamptz default now(), line text);
create table parent (id serial primary key, name text);
create table child (id serial primary key, parent_id integer references parent (id) on delete cascade, v text);";

const SEED: &str = "
insert into big select i, md5(i::text), i % 1000 from generate_series(1, 500000) i;
insert into audit_log (line) select 'line ' || i from generate_series(1, 1000) i;
insert into parent (name) select 'p' || i from generate_series(1, 100) i;
insert into child (parent_id, v) select 1 + i % 100, 'c' || i from generate_series(1, 2000) i;";

async fn seeded(extra_config: &str) -> Pair {
    let pair = Pair::with_config(SCHEMA, extra_config).await;
    pair.src().await.batch_execute(SEED).await.unwrap();
    pair.as_owner(SRC, "analyze").await;
    pair
}

#[tokio::test]
async fn the_copy_misses_no_write_made_while_it_runs() {
    let pair = seeded("copy_chunk_rows: 20000\n").await;
    pair.add_sync("all");
    let _daemon = pair.start_daemon();

    let writer = pair.src().await;
    let mut i: i64 = 0;
    // Write until the copy is done, and a little after.
    while pair.status()["state"] != "replicating" || i < 50 {
        writer
            .batch_execute(&format!(
                "update big set n = -n where id = {a}; delete from big where id = {d}; \
                 insert into big values ({new}, 'new', 0); \
                 insert into child (parent_id, v) values ({p}, 'during copy'); \
                 delete from parent where id = {gone}",
                a = 1 + (i * 7919) % 500000,
                d = 1 + (i * 104729) % 500000,
                new = 1_000_000 + i,
                p = 1 + i % 50,
                gone = 51 + i % 50,
            ))
            .await
            .unwrap();
        i += 1;
        assert!(i < 100_000, "the copy never finished: {}", pair.status());
    }
    wait_for(120, "catch-up", || async {
        pair.kick_wait();
        pair.status()["pending_rows"] == 0
    })
    .await;
    for t in ["big", "audit_log", "parent", "child"] {
        assert_same(&pair, t).await;
    }
    let status = pair.status();
    assert!(status["copy_rows"].as_i64().unwrap() >= 500_000, "{status}");
    let q = "select last_value from child_id_seq";
    let s: i64 = pair.src().await.query_one(q, &[]).await.unwrap().get(0);
    let d: i64 = pair.dst().await.query_one(q, &[]).await.unwrap().get(0);
    assert!(d >= s, "target sequence {d} is behind the source's {s}");
}

#[tokio::test]
async fn kill_9_during_the_copy_resumes_at_the_next_chunk() {
    // Two jobs: the big table is split into two key ranges copied in parallel.
    let pair = seeded("copy_chunk_rows: 20000\ncopy_jobs: 2\n").await;
    pair.add_sync("big");
    let mut daemon = pair.start_daemon();
    wait_for(120, "some chunks to be copied", || async {
        pair.status()["copy_rows"].as_i64().unwrap() > 0
    })
    .await;
    daemon.kill9();
    let before = pair.status()["copy_rows"].as_i64().unwrap();
    assert!(before < 500_000, "the copy ended before the kill; use more rows");

    let _daemon = pair.start_daemon();
    wait_for(180, "the copy to finish", || async {
        pair.status()["state"] == "replicating"
    })
    .await;
    pair.kick_wait();
    assert_same(&pair, "big").await;
    let after = pair.status()["copy_rows"].as_i64().unwrap();
    // A restart from zero would copy all 500k rows again on top of `before`.
    assert!(
        after <= 500_000 + 20_000,
        "copied {after} rows in all: the copy started over"
    );
    assert_eq!(count(&pair.dst().await, "big").await, 500_000);
    let catalog = belt::catalog::Catalog::open(&pair.dir.join("belt.db")).unwrap();
    let parts = catalog.copy_parts("app", "public", "big").unwrap();
    assert_eq!(
        parts.len(),
        2,
        "the big table is copied as two key ranges: {parts:?}"
    );
    assert!(parts.iter().all(|p| p.done), "{parts:?}");
}

const SHOP: &str = "
create type mood as enum ('new', 'shipped');
create table parent (id serial primary key, name text unique);
create table child (id serial primary key, parent_id integer references parent (id) on delete cascade, m mood);
create index child_parent on child (parent_id);
create function stamp() returns trigger language plpgsql as $$ begin return new; end $$;
create trigger stamp before insert on child for each row execute function stamp();
create table notes (line text);
insert into parent (name) select 'p' || i from generate_series(1, 100) i;
insert into child (parent_id, m) select 1 + i % 100, 'new' from generate_series(1, 10000) i;
insert into notes select 'n' || i from generate_series(1, 50) i;";

#[tokio::test]
async fn an_empty_target_gets_the_schema_then_the_rows_then_the_indexes() {
    let pair = Pair::with_schemas(SHOP, "", "").await;
    pair.add_sync("all");
    let _daemon = pair.start_daemon();
    wait_for(60, "setup to finish", || async {
        pair.status()["state"] == "replicating"
    })
    .await;
    pair.src()
        .await
        .batch_execute("delete from parent where id = 7; insert into notes values ('late')")
        .await
        .unwrap();
    pair.kick_wait();
    for t in ["parent", "child"] {
        assert_same(&pair, t).await;
    }
    let dst = pair.dst().await;
    assert_eq!(
        count(&dst, "notes").await,
        50,
        "a key-less table is copied whole, not replicated"
    );
    assert_eq!(
        count(&dst, "pg_indexes where indexname = 'child_parent'").await,
        1,
        "indexes are built"
    );
    assert_eq!(
        count(&dst, "pg_trigger where tgname = 'stamp'").await,
        1,
        "triggers are copied"
    );
    let fk: bool = dst
        .query_one(
            "select convalidated from pg_constraint where contype = 'f' and conrelid = 'child'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!fk, "foreign keys are created NOT VALID after the copy");
}

#[tokio::test]
async fn a_failing_schema_statement_is_named_and_nothing_is_left_half_done() {
    let pair = Pair::with_schemas(SHOP, "create type mood as enum ('other')", "").await;
    pair.add_sync("all");
    let _daemon = pair.start_daemon();
    wait_for(60, "the sync to fail", || async {
        pair.status()["state"] == "failed"
    })
    .await;
    let error = pair.status()["last_error"].as_str().unwrap().to_string();
    assert!(
        error.contains("schema copy to database 'dst' stopped at TYPE mood"),
        "{error}"
    );
    assert!(error.contains("CREATE TYPE public.mood"), "{error}");
    assert!(error.contains("already exists"), "{error}");
    assert_eq!(
        count(&pair.dst().await, "pg_tables where schemaname = 'public'").await,
        0
    );
}
