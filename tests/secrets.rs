//! Secrets that change under a running daemon: after a rotation, the next connect
//! uses the new password without a restart, whether it comes from a file (a
//! Kubernetes Secret mounted as files), a command (a secret store's CLI) or a pgpass
//! file (mounted the same way).

use crate::support::{assert_same, count, wait_for, Pair, SRC};

/// Where the test's daemon finds the password of role `mover`.
#[derive(Clone, Copy)]
enum Source {
    File,
    Command,
    Pgpass,
}

#[tokio::test]
async fn a_rotated_password_file_is_read_again_on_the_next_connect() {
    rotation_keeps_rows_flowing(Source::File).await;
}

#[tokio::test]
async fn a_rotated_password_command_is_run_again_after_the_old_password_is_refused() {
    rotation_keeps_rows_flowing(Source::Command).await;
}

#[tokio::test]
async fn a_rotated_pgpass_file_is_read_again_on_the_next_connect() {
    rotation_keeps_rows_flowing(Source::Pgpass).await;
}

/// The secret's file content for `password` as `source` reads it.
fn secret_text(source: Source, password: &str) -> String {
    match source {
        Source::Pgpass => format!("# mounted from a Secret\n*:*:*:mover:{password}\n"),
        Source::File | Source::Command => format!("{password}\n"),
    }
}

/// Role `mover` replicates with its password from `source`. The role's password and
/// the secret change and belt's sessions are cut: rows written after that arrive
/// through the same daemon process, and the tables end equal.
async fn rotation_keeps_rows_flowing(source: Source) {
    let pair = Pair::new("create table t (id int primary key, v text)").await;
    let admin = pair.admin(SRC).await;
    admin
        .batch_execute("create role mover login superuser password 'first-pw'")
        .await
        .unwrap();
    let secret = pair.dir.join("mounted-secret");
    std::fs::write(&secret, secret_text(source, "first-pw")).unwrap();
    let shown = secret.display().to_string();
    let env: Vec<(&str, &str)> = match source {
        Source::Pgpass => vec![("PGPASSFILE", shown.as_str())],
        _ => vec![],
    };
    let extra = match source {
        Source::File => vec![format!("password_file={shown}")],
        // A TTL far longer than the test: the new password can only come from
        // running the command again once the server refuses the cached one.
        Source::Command => vec![
            format!("password_command=head -n 1 {shown}"),
            "password_ttl=3600".to_string(),
        ],
        Source::Pgpass => vec![],
    };
    pair.add_dbs_as_with("mover", &extra, &env);
    for args in [
        &[
            "add",
            "sync",
            "app",
            "--dbs",
            "src:source,dst:target",
            "--tables",
            "t",
        ][..],
        &["setup", "app"],
    ] {
        let out = pair.beltctl_env(args, &env);
        assert!(out.status.success(), "{}", crate::support::text(&out));
    }
    let mut daemon = pair.start_daemon_env(&env);
    pair.kick_wait();
    let src = pair.src().await;
    src.batch_execute("insert into t select g, 'before' from generate_series(1, 10) g")
        .await
        .unwrap();
    pair.kick_wait();

    admin
        .batch_execute("alter role mover password 'second-pw'")
        .await
        .unwrap();
    std::fs::write(&secret, secret_text(source, "second-pw")).unwrap();
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
    for secret in ["first-pw", "second-pw"] {
        assert!(!daemon.log().contains(secret), "a password in the daemon's log");
    }
    assert_same(&pair, "t").await;
}
