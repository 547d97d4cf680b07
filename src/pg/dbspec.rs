//! A database as the operator declared it: libpq connection keys without a password,
//! plus where the password comes from.
//!
//! The catalog stores exactly this, so a password never lands in it: `password=` and
//! URIs with a password are refused with a pointer to `password_env`, `password_file`,
//! `password_command` or the pgpass file.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::tls::TlsSettings;

/// A database belt can connect to, as stored in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DbSpec {
    /// The operator's name for it (`src`, `dst`, …).
    pub name: String,
    /// libpq key/value string or URI, never holding a password.
    pub conninfo: String,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password.
    pub password_file: Option<PathBuf>,
    /// Program (argv, no shell) that prints the password on its first line.
    pub password_command: Option<Vec<String>>,
    /// How long `password_command`'s output is used before it runs again.
    #[serde(serialize_with = "as_secs")]
    pub password_ttl: Option<Duration>,
}

fn as_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_some(&d.map(|d| d.as_secs()))
}

/// A `beltctl add db` argument list that cannot be a database definition.
#[derive(Debug, thiserror::Error)]
pub enum DbSpecError {
    #[error("database '{db}': a password may not be given inline; use password_env=VAR, password_file=PATH, password_command=PROGRAM or a pgpass file so that it is never stored")]
    InlinePassword { db: String },
    #[error("database '{db}': '{arg}' is not key=value (e.g. host=10.0.0.5 port=5432 dbname=app user=belt) or a postgres:// URI")]
    NotKeyValue { db: String, arg: String },
    #[error("database '{db}': invalid connection settings: {message}")]
    Invalid { db: String, message: String },
    #[error("database '{db}': {message}")]
    PasswordSource { db: String, message: String },
    #[error("database name '{0}' is not valid: use letters, digits, '_' and '-'")]
    BadName(String),
}

impl DbSpec {
    /// Builds a spec from `beltctl add db NAME ARGS…`.
    pub fn parse(name: &str, args: &[String]) -> Result<DbSpec, DbSpecError> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(DbSpecError::BadName(name.to_string()));
        }
        let mut spec = DbSpec {
            name: name.to_string(),
            conninfo: String::new(),
            password_env: None,
            password_file: None,
            password_command: None,
            password_ttl: None,
        };
        let mut pairs = Vec::new();
        for arg in args {
            if arg.starts_with("postgres://") || arg.starts_with("postgresql://") {
                spec.conninfo = arg.clone();
                continue;
            }
            let (key, value) = arg.split_once('=').ok_or_else(|| DbSpecError::NotKeyValue {
                db: name.to_string(),
                arg: arg.clone(),
            })?;
            match key.trim() {
                "password" => return Err(DbSpecError::InlinePassword { db: name.to_string() }),
                "password_env" => spec.password_env = Some(value.to_string()),
                "password_file" => spec.password_file = Some(PathBuf::from(value)),
                "password_command" => {
                    spec.password_command = Some(value.split_whitespace().map(String::from).collect())
                }
                "password_ttl" => {
                    let secs = value.trim().parse().map_err(|_| DbSpecError::PasswordSource {
                        db: name.to_string(),
                        message: format!("password_ttl '{value}' is not a number of seconds"),
                    })?;
                    spec.password_ttl = Some(Duration::from_secs(secs));
                }
                k => pairs.push(format!("{k}={}", quote_value(value))),
            }
        }
        if !pairs.is_empty() {
            if !spec.conninfo.is_empty() {
                return Err(DbSpecError::Invalid {
                    db: name.to_string(),
                    message: "give either a URI or key=value pairs, not both".into(),
                });
            }
            spec.conninfo = pairs.join(" ");
        }
        spec.check_password_source()?;
        let config = spec.config()?;
        if config.get_password().is_some() {
            return Err(DbSpecError::InlinePassword { db: name.to_string() });
        }
        Ok(spec)
    }

    /// At most one password source, a command that names a program, a TTL only with
    /// a command.
    pub fn check_password_source(&self) -> Result<(), DbSpecError> {
        let bad = |message: &str| {
            Err(DbSpecError::PasswordSource {
                db: self.name.clone(),
                message: message.to_string(),
            })
        };
        let sources = [
            self.password_env.is_some(),
            self.password_file.is_some(),
            self.password_command.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() > 1 {
            return bad("give one of password_env, password_file and password_command, not several");
        }
        if self.password_command.as_ref().is_some_and(Vec::is_empty) {
            return bad("password_command is empty: give the program and its arguments");
        }
        if self.password_ttl.is_some() && self.password_command.is_none() {
            return bad("password_ttl applies only to password_command");
        }
        Ok(())
    }

    /// The tokio-postgres configuration, without a password.
    pub fn config(&self) -> Result<tokio_postgres::Config, DbSpecError> {
        self.settings().map(|(config, _)| config)
    }

    /// The settings, parsed once: the tokio-postgres configuration (without a
    /// password) and the TLS settings. The libpq environment (`PGHOST`, `PGPORT`,
    /// `PGUSER`, `PGDATABASE`, `PGSSL*`) fills in what they leave out, as with psql.
    pub fn settings(&self) -> Result<(tokio_postgres::Config, TlsSettings), DbSpecError> {
        let invalid = |message: String| DbSpecError::Invalid {
            db: self.name.clone(),
            message,
        };
        let (rest, tls) = super::tls::split(&self.conninfo).map_err(invalid)?;
        let mut config = tokio_postgres::Config::from_str(&rest).map_err(|e| invalid(e.to_string()))?;
        config.ssl_mode(tls.mode.negotiation());
        if config.get_hosts().is_empty() {
            match std::env::var("PGHOST") {
                Ok(h) => config.host(&h),
                Err(_) => config.host("/var/run/postgresql"),
            };
        }
        if config.get_ports().is_empty() {
            if let Some(p) = std::env::var("PGPORT").ok().and_then(|p| p.parse().ok()) {
                config.port(p);
            }
        }
        if config.get_user().is_none() {
            if let Ok(u) = std::env::var("PGUSER").or_else(|_| std::env::var("USER")) {
                config.user(&u);
            }
        }
        if config.get_dbname().is_none() {
            if let Ok(d) = std::env::var("PGDATABASE") {
                config.dbname(&d);
            }
        }
        Ok((config, tls))
    }

    /// The libpq environment that makes a client program (`pg_dump`, `psql`) reach
    /// this database exactly as belt does: hosts, ports, user, database, TLS mode and
    /// certificates, application name, connect timeout. The password is not in it
    /// (see [`crate::pg::connect::child_env`]); nothing goes on a command line, where
    /// other users of the machine could read it.
    pub fn libpq_env(&self) -> Result<Vec<(&'static str, String)>, DbSpecError> {
        let (config, tls) = self.settings()?;
        let join = |items: Vec<String>| items.join(",");
        let mut env = vec![
            ("PGHOST", join(config.get_hosts().iter().map(host_text).collect())),
            ("PGSSLMODE", tls.mode.as_libpq().to_string()),
            (
                "PGAPPNAME",
                config.get_application_name().unwrap_or("belt").to_string(),
            ),
            (
                "PGCONNECT_TIMEOUT",
                config
                    .get_connect_timeout()
                    .map_or(10, |t| t.as_secs().max(1))
                    .to_string(),
            ),
        ];
        if !config.get_ports().is_empty() {
            env.push((
                "PGPORT",
                join(config.get_ports().iter().map(u16::to_string).collect()),
            ));
        }
        if let Some(user) = config.get_user() {
            env.push(("PGUSER", user.to_string()));
        }
        if let Some(db) = config.get_dbname() {
            env.push(("PGDATABASE", db.to_string()));
        }
        if let Some(options) = config.get_options() {
            env.push(("PGOPTIONS", options.to_string()));
        }
        for (var, path) in [
            ("PGSSLROOTCERT", &tls.root_cert),
            ("PGSSLCERT", &tls.cert),
            ("PGSSLKEY", &tls.key),
        ] {
            if let Some(path) = path {
                env.push((var, path.display().to_string()));
            }
        }
        Ok(env)
    }

    /// `host=… port=… dbname=… user=…` for messages: what, never the secret.
    pub fn describe(&self) -> String {
        match self.config() {
            Ok(c) => describe_config(&c),
            Err(_) => "invalid settings".into(),
        }
    }
}

/// The first host and port of `config`, as the pgpass file matches them.
pub fn pgpass_host_port(config: &tokio_postgres::Config) -> (String, u16) {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "localhost".to_string(),
    };
    (host, config.get_ports().first().copied().unwrap_or(5432))
}

fn host_text(h: &tokio_postgres::config::Host) -> String {
    match h {
        tokio_postgres::config::Host::Tcp(s) => s.clone(),
        tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
    }
}

/// The non-secret parts of a configuration, for error messages and logs.
pub fn describe_config(c: &tokio_postgres::Config) -> String {
    let host = c.get_hosts().first().map(host_text).unwrap_or_else(|| "?".into());
    let port = c.get_ports().first().copied().unwrap_or(5432);
    format!(
        "host={host} port={port} dbname={} user={}",
        c.get_dbname().unwrap_or("?"),
        c.get_user().unwrap_or("?")
    )
}

fn quote_value(v: &str) -> String {
    if !v.is_empty() && !v.contains([' ', '\'', '\\']) {
        return v.to_string();
    }
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn keeps_keys_and_password_source() {
        let s = DbSpec::parse(
            "src",
            &args(&[
                "host=127.0.0.1",
                "port=5433",
                "dbname=my app",
                "user=bob",
                "password_env=PW",
            ]),
        )
        .unwrap();
        assert_eq!(s.password_env.as_deref(), Some("PW"));
        let c = s.config().unwrap();
        assert_eq!(c.get_dbname(), Some("my app"));
        assert!(!s.conninfo.contains("PW"));
    }

    #[test]
    fn refuses_inline_passwords() {
        let e = DbSpec::parse("src", &args(&["host=h", "password=hunter2"])).unwrap_err();
        assert!(e.to_string().contains("password_env"));
        assert!(!e.to_string().contains("hunter2"));
        let e = DbSpec::parse("src", &args(&["postgres://u:hunter2@h/db"])).unwrap_err();
        assert!(matches!(e, DbSpecError::InlinePassword { .. }));
    }

    #[test]
    fn child_programs_get_every_setting_but_the_password() {
        let s = DbSpec::parse(
            "src",
            &args(&[
                "host=db.example",
                "port=6432",
                "dbname=app",
                "user=belt",
                "sslmode=verify-full",
                "sslrootcert=/etc/ca.pem",
                "sslcert=/etc/c.pem",
                "sslkey=/etc/c.key",
                "password_env=PW",
            ]),
        )
        .unwrap();
        let env: std::collections::HashMap<_, _> = s.libpq_env().unwrap().into_iter().collect();
        assert_eq!(env["PGHOST"], "db.example");
        assert_eq!(env["PGPORT"], "6432");
        assert_eq!(env["PGDATABASE"], "app");
        assert_eq!(env["PGUSER"], "belt");
        assert_eq!(env["PGSSLMODE"], "verify-full");
        assert_eq!(env["PGSSLROOTCERT"], "/etc/ca.pem");
        assert_eq!(env["PGSSLCERT"], "/etc/c.pem");
        assert_eq!(env["PGSSLKEY"], "/etc/c.key");
        assert!(!env.contains_key("PGPASSWORD"));
    }

    #[test]
    fn names_the_bad_argument() {
        let e = DbSpec::parse("src", &args(&["hostlocalhost"])).unwrap_err();
        assert!(e.to_string().contains("'hostlocalhost'"), "{e}");
    }
}
