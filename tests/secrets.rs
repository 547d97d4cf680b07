//! Secrets that change under a running daemon: a rotated password file is read again
//! on the next connect, without a restart (a Kubernetes Secret mounted as files).

use crate::support::{assert_same, count, wait_for, Pair, SRC};

#[tokio::test]
async fn a_rotated_password_file_is_read_again_on_the_next_connect() {
    let pair = Pair::new("create table t (id int primary key, v text)").await;
    let admin = pair.admin(SRC).await;
    admin
        .batch_execute("create role mover login superuser password 'first-pw'")
        .await
        .unwrap();
    pair.add_dbs_as("mover", "first-pw");
    pair.add_app_sync("t", "src:source,dst:target");
    let mut daemon = pair.start_daemon();
    pair.kick_wait();
    let src = pair.src().await;
    src.batch_execute("insert into t select g, 'before' from generate_series(1, 10) g")
        .await
        .unwrap();
    pair.kick_wait();

    // Rotate: the role's password and the file change; belt's sessions are cut.
    admin
        .batch_execute("alter role mover password 'second-pw'")
        .await
        .unwrap();
    std::fs::write(pair.dir.join("mover-password"), "second-pw").unwrap();
    admin
        .batch_execute("select pg_terminate_backend(pid) from pg_stat_activity where usename = 'mover'")
        .await
        .unwrap();
    src.batch_execute("insert into t select g, 'after' from generate_series(11, 20) g")
        .await
        .unwrap();
    let dst = pair.dst().await;
    wait_for(60, "the rows written after the rotation", || async {
        count(&dst, "t where v = 'after'").await == 10
    })
    .await;
    assert!(daemon.is_running(), "the same daemon, not a restarted one");
    let with_new: i64 = admin
        .query_one(
            "select count(*) from pg_stat_activity where usename = 'mover'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(with_new > 0, "belt is connected again, with the new password");
    assert_same(&pair, "t").await;
}
