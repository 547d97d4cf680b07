//! Rule 8: every kind of value and name survives the trip, through the daemon and
//! `beltctl kick --wait` as an operator would drive it.

use crate::support::{assert_same, Pair, SRC};

const SCHEMA: &str = r#"
create type mood as enum ('sad', 'ok', 'happy');
create domain posint as integer check (value > 0);
create schema "Sales";
create table "Sales"."Order Items" (
    "Id" bigint generated always as identity primary key,
    "select" text,
    "ünïcødé" text,
    n numeric(30, 10),
    b bytea,
    j jsonb,
    arr integer[],
    m mood,
    p posint,
    u uuid,
    ts timestamptz,
    big text,
    g integer generated always as (coalesce(p, 0) * 2) stored
);
create table parent (id serial primary key, name text);
create table child (id integer primary key, parent_id integer references parent (id) on delete cascade);
create table composite (a integer, b text, v text, primary key (a, b));
create table uniq (code text not null unique, v text);
"#;

const TABLES: [&str; 5] = [
    "\"Sales\".\"Order Items\"",
    "parent",
    "child",
    "composite",
    "uniq",
];

async fn assert_all_same(pair: &Pair) {
    for t in TABLES {
        assert_same(pair, t).await;
    }
}

#[tokio::test]
async fn every_value_and_name_survives() {
    let pair = Pair::new(SCHEMA).await;
    pair.add_sync("all");
    let _daemon = pair.start_daemon();
    pair.kick_wait();

    let src = pair.src().await;
    src.batch_execute(r#"
        insert into "Sales"."Order Items" ("select", "ünïcødé", n, b, j, arr, m, p, u, ts, big) values
          ('a', 'ß∂ƒ', 12345678901234567890.0123456789, '\x00ff10', '{"k": [1, null, "x"]}',
           '{1,NULL,3}', 'happy', 7, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2024-02-29 23:59:59.123456+05:30',
           (select string_agg(md5(i::text), '') from generate_series(1, 4000) i)),
          (null, null, null, null, null, null, null, null, null, null, null),
          ('''quoted'' "double"', '', -0.0000000001, '', 'null', '{}', 'sad', 1, null, 'infinity', 'x');
        insert into parent (name) select 'p' || i from generate_series(1, 5) i;
        insert into child select i, 1 + i % 5 from generate_series(1, 20) i;
        insert into composite values (1, 'x', 'one'), (2, 'y', 'two'), (3, 'z', 'three');
        insert into uniq values ('A', 'a'), ('B', 'b');
    "#).await.unwrap();
    pair.kick_wait();
    assert_all_same(&pair).await;

    src.batch_execute(
        r#"
        update "Sales"."Order Items" set j = j || '{"more": true}', big = big || 'tail' where "select" = 'a';
        update composite set a = 10 where a = 1;          -- key update
        update uniq set code = 'C' where code = 'A';      -- key update on a unique-index key
        delete from parent where id = 2;                  -- cascades to child on the source
        delete from composite where a = 2;
    "#,
    )
    .await
    .unwrap();
    pair.kick_wait();
    assert_all_same(&pair).await;

    // An application that truncates holds TRUNCATE on the table, nothing more.
    pair.owner(SRC)
        .await
        .batch_execute("grant truncate on child to app_user")
        .await
        .unwrap();
    src.batch_execute("truncate child; insert into child values (100, 1)")
        .await
        .unwrap();
    pair.kick_wait();
    assert_all_same(&pair).await;

    let dst = pair.dst().await;
    let generated: Vec<i32> = dst
        .query(
            r#"select g from "Sales"."Order Items" where p is not null order by 1"#,
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        generated,
        vec![2, 14],
        "generated columns are computed by the target"
    );
    for seq in ["public.parent_id_seq", "\"Sales\".\"Order Items_Id_seq\""] {
        let q = format!("select last_value from {seq}");
        let s: i64 = src.query_one(&q, &[]).await.unwrap().get(0);
        let d: i64 = dst.query_one(&q, &[]).await.unwrap().get(0);
        assert!(d >= s, "{seq}: target {d} is behind source {s}");
    }
    // A new row on the target after cutover must not reuse a source id.
    let next: i64 = dst
        .query_one("select nextval('public.parent_id_seq')", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        next > 5,
        "target sequence hands out {next}, already used on the source"
    );
}
