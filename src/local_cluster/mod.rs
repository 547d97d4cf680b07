//! Throwaway PostgreSQL clusters on this machine, for tests, benchmarks and the demo.
//!
//! `initdb` runs once per PostgreSQL version into a template directory that later
//! runs reuse; each cluster is a copy of it, started with `pg_ctl` on a free port of
//! 127.0.0.1 with a private unix socket directory, and stopped (and deleted) on drop,
//! also when a test panics. initdb refuses to run as root, so as root the server runs
//! as the `postgres` user through `runuser`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::pg::DbSpec;

mod app;
pub use app::{grant_dml, AppError, APP_OWNER, APP_USER};

/// Where to get the server binaries when they are missing.
pub const INSTALL_HINT: &str =
    "install the PostgreSQL server (Debian/Ubuntu: apt-get install -y postgresql) \
     or set BELT_PG_BIN to the directory holding initdb and pg_ctl";

/// A local cluster could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("PostgreSQL server binaries (initdb, pg_ctl) not found: {INSTALL_HINT}")]
    NotFound,
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} failed ({status}): {output}")]
    Command {
        what: String,
        status: String,
        output: String,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
    let context = context.into();
    move |source| ClusterError::Io { context, source }
}

/// A running throwaway cluster; stopped and deleted on drop.
pub struct LocalCluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    password_file: PathBuf,
    stopped: bool,
}

/// The superuser of every local cluster.
pub const SUPERUSER: &str = "postgres";

impl LocalCluster {
    /// Starts a new cluster from the local server binaries.
    pub fn start() -> Result<LocalCluster, ClusterError> {
        LocalCluster::start_with(&find_bin_dir()?)
    }

    /// Starts a new cluster from the server binaries in `bin` (another major version,
    /// for cross-version tests).
    pub fn start_with(bin: &Path) -> Result<LocalCluster, ClusterError> {
        let bin = bin.to_path_buf();
        let template = template_dir(&bin)?;
        let dir = unique_dir("belt-cluster");
        run(
            Command::new("cp").arg("-a").arg(&template).arg(&dir),
            "copy cluster template",
        )?;
        let mut last = None;
        for _ in 0..3 {
            let port = free_port()?;
            let conf = format!(
                "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n",
                dir.display()
            );
            append(&dir.join("postgresql.auto.conf"), &conf)?;
            let mut cluster = LocalCluster {
                password_file: dir.join("pwfile"),
                bin: bin.clone(),
                dir: dir.clone(),
                port,
                stopped: true,
            };
            match cluster.pg_ctl(&["start", "-w", "-t", "60", "-l"], Some(&dir.join("server.log"))) {
                Ok(_) => {
                    cluster.stopped = false;
                    return Ok(cluster);
                }
                Err(e) => {
                    std::mem::forget(cluster);
                    last = Some(e);
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        Err(last.expect("tried at least once"))
    }

    /// TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Directory of the server binaries in use.
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// File holding the superuser's password (readable by the current user).
    pub fn password_file(&self) -> &Path {
        &self.password_file
    }

    /// libpq keys for `dbname` as the superuser, without the password.
    pub fn conninfo(&self, dbname: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={SUPERUSER} dbname={dbname}",
            self.port
        )
    }

    /// A database definition for `dbname`, password from the cluster's password file.
    pub fn db_spec(&self, name: &str, dbname: &str) -> DbSpec {
        DbSpec {
            name: name.to_string(),
            conninfo: self.conninfo(dbname),
            password_env: None,
            password_file: Some(self.password_file.clone()),
            password_command: None,
            password_ttl: None,
        }
    }

    /// `beltctl add db` arguments for `dbname`.
    pub fn add_db_args(&self, dbname: &str) -> Vec<String> {
        let mut args: Vec<String> = self.conninfo(dbname).split(' ').map(String::from).collect();
        args.push(format!("password_file={}", self.password_file.display()));
        args
    }

    /// Runs `pg_ctl ARGS -D dir` as the server's user.
    fn pg_ctl(&self, args: &[&str], log: Option<&Path>) -> Result<Output, ClusterError> {
        let mut cmd = as_server_user(&self.bin.join("pg_ctl"));
        cmd.args(args);
        if let Some(log) = log {
            cmd.arg(log);
        }
        cmd.arg("-D").arg(&self.dir);
        run(&mut cmd, &format!("pg_ctl {}", args[0]))
    }

    /// Restarts the server (`-m immediate`: like a crash).
    pub fn restart_immediate(&self) -> Result<(), ClusterError> {
        self.pg_ctl(
            &["restart", "-w", "-m", "immediate", "-l"],
            Some(&self.dir.join("server.log")),
        )
        .map(|_| ())
    }

    /// Appends `settings` (postgresql.conf lines) and restarts the server, for
    /// settings that need a restart (`wal_level = logical` for a benchmark).
    pub fn configure(&self, settings: &str) -> Result<(), ClusterError> {
        append(&self.dir.join("postgresql.auto.conf"), &format!("\n{settings}\n"))?;
        self.pg_ctl(
            &["restart", "-w", "-m", "fast", "-l"],
            Some(&self.dir.join("server.log")),
        )
        .map(|_| ())
    }

    /// Turns TLS on with the given certificate and key (PEM), as the server's user.
    pub fn enable_ssl(&self, cert: &Path, key: &Path) -> Result<(), ClusterError> {
        for (from, name) in [(cert, "server.crt"), (key, "server.key")] {
            let to = self.dir.join(name);
            std::fs::copy(from, &to).map_err(io(format!("copy {}", from.display())))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600))
                .map_err(io(format!("chmod {}", to.display())))?;
            if is_root() {
                run(
                    Command::new("chown").arg(format!("{SUPERUSER}:")).arg(&to),
                    "chown certificate",
                )?;
            }
        }
        append(&self.dir.join("postgresql.auto.conf"), "\nssl = on\n")?;
        self.pg_ctl(&["reload"], None).map(|_| ())
    }

    /// Accepts TCP connections only over TLS with a client certificate signed by
    /// `ca` (PEM), as a hardened production server does; the unix socket stays open
    /// for pg_ctl. Call after [`LocalCluster::enable_ssl`].
    pub fn require_client_certificates(&self, ca: &Path) -> Result<(), ClusterError> {
        let to = self.dir.join("client-ca.crt");
        std::fs::copy(ca, &to).map_err(io(format!("copy {}", ca.display())))?;
        if is_root() {
            run(
                Command::new("chown").arg(format!("{SUPERUSER}:")).arg(&to),
                "chown client CA",
            )?;
        }
        std::fs::write(
            self.dir.join("pg_hba.conf"),
            "local all all trust
             hostssl all all 127.0.0.1/32 scram-sha-256 clientcert=verify-ca
             host all all 127.0.0.1/32 reject
",
        )
        .map_err(io("write pg_hba.conf"))?;
        append(
            &self.dir.join("postgresql.auto.conf"),
            "
ssl_ca_file = 'client-ca.crt'
",
        )?;
        self.pg_ctl(&["reload"], None).map(|_| ())
    }

    /// The server log so far, for failing tests.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.pg_ctl(&["stop", "-m", "immediate"], None);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", SUPERUSER, "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn run(cmd: &mut Command, what: &str) -> Result<Output, ClusterError> {
    let out = cmd.output().map_err(io(format!("run {what}")))?;
    if !out.status.success() {
        return Err(ClusterError::Command {
            what: what.to_string(),
            status: out.status.to_string(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    }
    Ok(out)
}

fn append(path: &Path, text: &str) -> Result<(), ClusterError> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io(format!("open {}", path.display())))?;
    f.write_all(text.as_bytes())
        .map_err(io(format!("write {}", path.display())))
}

fn free_port() -> Result<u16, ClusterError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("find a free port"))?;
    Ok(listener.local_addr().map_err(io("find a free port"))?.port())
}

fn unique_dir(prefix: &str) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Finds initdb and pg_ctl (see [`crate::pg::binaries::search_dirs`]).
pub fn find_bin_dir() -> Result<PathBuf, ClusterError> {
    crate::pg::binaries::find_dir_with(&["initdb", "pg_ctl"]).ok_or(ClusterError::NotFound)
}

/// The initdb'd template for this binary directory, made once and reused.
fn template_dir(bin: &Path) -> Result<PathBuf, ClusterError> {
    static TEMPLATES: OnceLock<Mutex<HashMap<PathBuf, Result<PathBuf, String>>>> = OnceLock::new();
    let mut templates = TEMPLATES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    templates
        .entry(bin.to_path_buf())
        .or_insert_with(|| make_template(bin).map_err(|e| e.to_string()))
        .clone()
        .map_err(|output| ClusterError::Command {
            what: "initdb".into(),
            status: "failed".into(),
            output,
        })
}

fn make_template(bin: &Path) -> Result<PathBuf, ClusterError> {
    let version = run(
        Command::new(bin.join("initdb")).arg("--version"),
        "initdb --version",
    )?;
    let version = String::from_utf8_lossy(&version.stdout);
    let tag: String = version
        .split_whitespace()
        .last()
        .unwrap_or("unknown")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
        .collect();
    let target = std::env::temp_dir().join(format!("belt-pg-template-{tag}-v2"));
    if target.join("PG_VERSION").is_file() && target.join("pwfile").is_file() {
        return Ok(target);
    }
    let staging = unique_dir("belt-pg-template-staging");
    std::fs::create_dir_all(&staging).map_err(io("create template directory"))?;
    let pwfile = std::env::temp_dir().join(format!("belt-pw-{}", std::process::id()));
    let password = format!(
        "belt-{}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(7)
    );
    std::fs::write(&pwfile, &password).map_err(io("write password file"))?;
    if is_root() {
        run(
            Command::new("chown")
                .arg(format!("{SUPERUSER}:"))
                .arg(&staging)
                .arg(&pwfile),
            "chown template to postgres",
        )?;
    }
    let mut initdb = as_server_user(&bin.join("initdb"));
    initdb
        .args([
            "-U",
            SUPERUSER,
            "-E",
            "UTF8",
            "--locale=C",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--no-sync",
        ])
        .arg(format!("--pwfile={}", pwfile.display()))
        .arg("-D")
        .arg(&staging);
    let result = run(&mut initdb, "initdb");
    let _ = std::fs::remove_file(&pwfile);
    result?;
    // fsync off for speed; synchronous_commit stays on, so that a test's immediate
    // restart (a crash of the server process) loses no committed transaction.
    append(
        &staging.join("postgresql.conf"),
        "\nfsync = off\nfull_page_writes = off\nmax_connections = 100\n\
         shared_buffers = 64MB\nmax_wal_size = 1GB\nlog_min_messages = warning\n",
    )?;
    std::fs::write(staging.join("pwfile"), &password).map_err(io("write password file"))?;
    match std::fs::rename(&staging, &target) {
        Ok(()) => Ok(target),
        Err(_) if target.join("pwfile").is_file() => {
            let _ = std::fs::remove_dir_all(&staging);
            Ok(target)
        }
        Err(e) => Err(io("move template into place")(e)),
    }
}
