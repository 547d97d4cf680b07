//! Rule 7, two sources: while both databases take inserts, serial and identity
//! columns never hand out the same value on both sides, so no row is lost to a
//! conflict; teardown puts the sequences back.

use std::time::{Duration, Instant};

use crate::support::{assert_same, count, text, Pair, DST, SRC};

const SCHEMA: &str = "
create table notes (id serial primary key, origin text not null);
create table events (id bigint generated always as identity primary key, origin text not null);";

const SEED: &str = "
insert into notes (origin) select 'seed' from generate_series(1, 50);
insert into events (origin) select 'seed' from generate_series(1, 50);";

/// Inserts through the defaults on `db` for `secs` seconds; returns how many rows.
async fn insert_for(pair: &Pair, db: &str, secs: u64) -> i64 {
    let app = pair.connect(db).await;
    let until = Instant::now() + Duration::from_secs(secs);
    let mut n = 0;
    while Instant::now() < until {
        app.execute("insert into notes (origin) values ($1)", &[&db])
            .await
            .expect("insert through serial");
        app.execute("insert into events (origin) values ($1)", &[&db])
            .await
            .expect("insert through identity");
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    n
}

#[tokio::test]
async fn two_sources_never_hand_out_the_same_value() {
    let pair = Pair::two_servers_with_schemas(&format!("{SCHEMA}{SEED}"), SCHEMA, "").await;
    pair.add_sync_with("all", "src:source,dst:source");
    let _daemon = pair.start_daemon();
    crate::support::wait_for(60, "setup", || async { pair.status()["state"] == "replicating" }).await;
    pair.kick_wait();

    let (a, b) = tokio::join!(insert_for(&pair, SRC, 10), insert_for(&pair, DST, 10));
    pair.kick_wait();
    pair.kick_wait();
    for t in ["notes", "events"] {
        assert_same(&pair, t).await;
        assert_eq!(count(&pair.src().await, t).await, 50 + a + b, "{t}: rows lost");
    }
    assert_eq!(pair.status()["conflicts"], 0, "{}", pair.status());

    // Cutover and failback keep each side to its own values.
    let out = pair.beltctl(&["cutover", "app", "--timeout", "60s"]);
    assert!(out.status.success(), "{}", text(&out));
    let c = insert_for(&pair, DST, 1).await;
    pair.kick_wait();
    let out = pair.beltctl(&["failback", "app", "--timeout", "60s"]);
    assert!(out.status.success(), "{}", text(&out));
    let d = insert_for(&pair, SRC, 1).await;
    pair.kick_wait();
    for t in ["notes", "events"] {
        crate::support::assert_same_admin(&pair, t).await;
        assert_eq!(
            count(&pair.admin(DST).await, t).await,
            50 + a + b + c + d,
            "{t}: rows lost"
        );
    }
    assert_eq!(pair.status()["conflicts"], 0, "{}", pair.status());

    let out = pair.beltctl(&["teardown", "app"]);
    assert!(out.status.success(), "{}", text(&out));
    for db in [SRC, DST] {
        let admin = pair.admin(db).await;
        let increments: Vec<i64> = admin
            .query(
                "select increment_by from pg_sequences where schemaname = 'public'",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(increments, [1, 1], "{db}: increments put back");
        // Whichever side goes on alone hands out no value used on either side.
        let next: i32 = admin
            .query_one("select nextval('notes_id_seq')::int", &[])
            .await
            .unwrap()
            .get(0);
        let max: i32 = admin
            .query_one("select max(id) from notes", &[])
            .await
            .unwrap()
            .get(0);
        assert!(next > max, "{db}: next id {next} is not above {max}");
    }
}
