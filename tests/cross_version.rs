//! The whole story across major versions: a PostgreSQL 12 source, a PostgreSQL 17
//! target (server binaries from npm, see DESIGN.md), schema copy, setup, live
//! replication, cutover, writes on the new side, failback; verify passes at each end.

use std::path::PathBuf;
use std::process::Command;

use belt::local_cluster::LocalCluster;
use belt::pg::connect;
use tokio_postgres::Client;

use crate::support::{postgres_bin, text, wait_for};

const SCHEMA: &str = r#"
create type mood as enum ('sad', 'happy');
create table items (
    id serial primary key, n numeric(20, 6), f double precision, j jsonb, b bytea,
    a integer[], m mood, u uuid, at timestamptz, iv interval, g integer generated always as (id * 2) stored
);
create table notes (line text);
insert into items (n, f, j, b, a, m, u, at, iv)
select i / 7.0, i / 3.0, jsonb_build_object('i', i, 'l', array[i, i + 1]), decode(md5(i::text), 'hex'),
       array[i, null], 'happy', md5(i::text)::uuid, '2020-01-01 00:00:00+00'::timestamptz + i * interval '1 minute',
       i * interval '1 second'
  from generate_series(1, 5000) i;
insert into notes values ('one'), ('two');"#;

struct Cross {
    source: LocalCluster,
    target: LocalCluster,
    dir: PathBuf,
    config: PathBuf,
}

impl Cross {
    fn beltctl(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_beltctl"))
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.beltctl(args);
        assert!(out.status.success(), "beltctl {args:?}:\n{}", text(&out));
        text(&out)
    }

    /// The application: `app_user`, DML grants only.
    async fn session(cluster: &LocalCluster) -> Client {
        Cross::open(&cluster.app_spec("app", "app")).await
    }

    /// The superuser, to read a side the application is fenced off.
    async fn admin(cluster: &LocalCluster) -> Client {
        Cross::open(&cluster.db_spec("admin", "app")).await
    }

    async fn open(spec: &belt::pg::DbSpec) -> Client {
        let c = connect(spec).await.unwrap();
        c.batch_execute("set search_path = public; reset row_security")
            .await
            .unwrap();
        c
    }
}

impl Drop for Cross {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn postgres_12_to_17_and_back() {
    let source = LocalCluster::start_with(&postgres_bin(12)).expect("start PostgreSQL 12");
    let target = LocalCluster::start_with(&postgres_bin(17)).expect("start PostgreSQL 17");
    let dir = std::env::temp_dir().join(format!("belt-cross-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("belt.yaml");
    std::fs::write(
        &config,
        format!(
            "catalog: {}\nlisten: unix:{}\n",
            dir.join("belt.db").display(),
            dir.join("api.sock").display()
        ),
    )
    .unwrap();
    let x = Cross {
        source,
        target,
        dir,
        config,
    };
    x.source.create_app_database("app", SCHEMA).await.unwrap();
    x.target.create_app_database("app", "").await.unwrap();
    for (name, c) in [("src", &x.source), ("dst", &x.target)] {
        let mut args = vec!["add".to_string(), "db".into(), name.into()];
        args.extend(c.add_db_args("app"));
        x.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    }
    x.ok(&["add", "sync", "app", "--dbs", "src:source,dst:target"]);
    x.ok(&["precheck", "app"]);
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_belt-syncd"))
        .arg("-c")
        .arg(&x.config)
        .stderr(std::fs::File::create(x.dir.join("daemon.log")).unwrap())
        .spawn()
        .unwrap();
    let setup = x.beltctl(&["setup", "app", "--wait", "--timeout", "300"]);
    let log = || std::fs::read_to_string(x.dir.join("daemon.log")).unwrap_or_default();
    assert!(setup.status.success(), "{}\n{}", text(&setup), log());

    let src = Cross::session(&x.source).await;
    src.batch_execute("update items set j = j || '{\"x\": 1}', f = f * 2 where id % 10 = 0; delete from items where id % 97 = 0")
        .await
        .unwrap();
    x.ok(&["kick", "app", "--wait"]);
    let v = x.beltctl(&["verify", "app"]);
    assert!(
        v.status.success(),
        "PostgreSQL 12 and 17 must verify equal:\n{}",
        text(&v)
    );

    x.ok(&["cutover", "app", "--timeout", "120s"]);
    let dst = Cross::session(&x.target).await;
    dst.batch_execute(
        "insert into items (n, j, m) values (1.5, '{\"on\": 17}', 'sad'); insert into notes values ('three')",
    )
    .await
    .unwrap();
    // The fence ended the application's sessions on 12; read it as administrator.
    let src = Cross::admin(&x.source).await;
    wait_for(60, "the write on 17 to reach 12", || async {
        x.ok(&["kick", "app", "--wait"]);
        crate::support::count(&src, "items where j ? 'on'").await == 1
    })
    .await;
    x.ok(&["failback", "app", "--timeout", "120s"]);
    let v = x.beltctl(&["verify", "app"]);
    assert!(v.status.success(), "equal after failback:\n{}", text(&v));
    assert_eq!(
        crate::support::count(&src, "notes").await,
        3,
        "key-less tables follow the failback"
    );
    let _ = daemon.kill();
    let _ = daemon.wait();
}
