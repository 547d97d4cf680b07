//! Where a database's password comes from, on every connect: `password_env`,
//! `password_file` (read again each time, so a rotated Kubernetes Secret works without
//! a restart), `password_command` (run with a timeout, its output kept for
//! `password_ttl`), or the pgpass file.
//!
//! A password never reaches a log line or an error message: errors name the database,
//! the program and its exit status, never what it printed on stdout.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::error::DbError;
use super::{pgpass, DbSpec};

/// How long a `password_command` may run before it is killed.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a `password_command`'s output is used before the command runs again,
/// when the database sets no `password_ttl`.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);

/// Passwords printed by commands, by database name and argv, with when they were read.
type Cache = HashMap<(String, Vec<String>), (Instant, Vec<u8>)>;
static CACHE: Mutex<Option<Cache>> = Mutex::new(None);

/// The password for `spec`, from the first source it names, else from the pgpass
/// file (matched on `config`'s host, port, database and user); `None` when there is
/// none, for servers that ask for no password.
pub async fn resolve(spec: &DbSpec, config: &tokio_postgres::Config) -> Result<Option<Vec<u8>>, DbError> {
    let settings = |message: String| DbError::Settings {
        db: spec.name.clone(),
        message,
    };
    if let Some(var) = &spec.password_env {
        return match std::env::var(var) {
            Ok(v) => Ok(Some(v.into_bytes())),
            Err(_) => Err(settings(format!(
                "the environment variable {var} named by password_env is not set"
            ))),
        };
    }
    if let Some(path) = &spec.password_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| settings(format!("cannot read password_file {}: {e}", path.display())))?;
        return Ok(Some(first_line(text.as_bytes())));
    }
    if let Some(argv) = &spec.password_command {
        return from_command(spec, argv).await.map(Some);
    }
    let Some(path) = pgpass::default_path() else {
        return Ok(None);
    };
    let Ok(contents) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let (host, port) = super::dbspec::pgpass_host_port(config);
    let user = config.get_user().unwrap_or_default();
    let dbname = config.get_dbname().unwrap_or(user);
    Ok(pgpass::lookup(&contents, &host, port, dbname, user).map(String::into_bytes))
}

/// Drops `spec`'s cached command output: the server refused it, so the next connect
/// runs the command again rather than retrying a stale password until the TTL ends.
pub fn forget(spec: &DbSpec) {
    if let Some(argv) = &spec.password_command {
        if let Some(cache) = CACHE.lock().expect("password cache").as_mut() {
            cache.remove(&(spec.name.clone(), argv.clone()));
        }
    }
}

async fn from_command(spec: &DbSpec, argv: &[String]) -> Result<Vec<u8>, DbError> {
    let key = (spec.name.clone(), argv.to_vec());
    let ttl = spec.password_ttl.unwrap_or(DEFAULT_TTL);
    if let Some((at, pw)) = CACHE
        .lock()
        .expect("password cache")
        .as_ref()
        .and_then(|c| c.get(&key))
    {
        if at.elapsed() < ttl {
            return Ok(pw.clone());
        }
    }
    let pw = run(&spec.name, argv).await?;
    CACHE
        .lock()
        .expect("password cache")
        .get_or_insert_with(HashMap::new)
        .insert(key, (Instant::now(), pw.clone()));
    Ok(pw)
}

/// Runs `argv` (no shell) and returns the first line it printed.
async fn run(db: &str, argv: &[String]) -> Result<Vec<u8>, DbError> {
    let (program, args) = argv.split_first().ok_or_else(|| DbError::Settings {
        db: db.to_string(),
        message: "password_command is empty".into(),
    })?;
    let failed = |message: String| DbError::PasswordCommand {
        db: db.to_string(),
        program: program.clone(),
        message,
    };
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| DbError::Settings {
            db: db.to_string(),
            message: format!("cannot run password_command {program}: {e}"),
        })?;
    let out = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| {
            failed(format!(
                "did not finish within {}s and was killed",
                COMMAND_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| failed(format!("cannot read its output: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let said = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
        let said: String = said.chars().take(200).collect();
        let status = match out.status.code() {
            Some(code) => format!("exit status {code}"),
            None => "killed by a signal".to_string(),
        };
        return Err(failed(if said.is_empty() {
            status
        } else {
            format!("{status}: {said}")
        }));
    }
    let pw = first_line(&out.stdout);
    if pw.is_empty() {
        return Err(failed("exit status 0 but it printed no password".into()));
    }
    Ok(pw)
}

/// The first line of a secret, without its line end (files and programs end it with
/// a newline that is not part of the password).
fn first_line(bytes: &[u8]) -> Vec<u8> {
    let end = bytes.iter().position(|&b| b == b'\n').unwrap_or(bytes.len());
    let line = &bytes[..end];
    line.strip_suffix(b"\r").unwrap_or(line).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(argv: &[&str]) -> DbSpec {
        let mut s = DbSpec::parse("src", &["host=h".to_string()]).unwrap();
        s.password_command = Some(argv.iter().map(|a| a.to_string()).collect());
        s
    }

    #[tokio::test]
    async fn a_failing_command_names_the_database_and_exit_status_but_not_its_output() {
        let s = spec(&[
            "sh",
            "-c",
            "echo hunter2; echo 'vault: permission denied' >&2; exit 3",
        ]);
        let e = from_command(&s, s.password_command.as_ref().unwrap())
            .await
            .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("'src'"), "{text}");
        assert!(text.contains("exit status 3"), "{text}");
        assert!(text.contains("permission denied"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(e.is_transient(), "a secret store may answer next time");
    }

    #[tokio::test]
    async fn output_is_cached_for_the_ttl_and_forgotten_on_demand() {
        let dir = std::env::temp_dir().join(format!("belt-pwcmd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "one\n").unwrap();
        let mut s = spec(&["cat", file.to_str().unwrap()]);
        s.password_ttl = Some(Duration::from_secs(3600));
        let argv = s.password_command.clone().unwrap();
        assert_eq!(from_command(&s, &argv).await.unwrap(), b"one");
        std::fs::write(&file, "two\n").unwrap();
        assert_eq!(from_command(&s, &argv).await.unwrap(), b"one", "cached");
        forget(&s);
        assert_eq!(from_command(&s, &argv).await.unwrap(), b"two");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
