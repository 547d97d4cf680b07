//! Reads the source's schema with `pg_dump --schema-only` and splits it into the
//! entries pg_dump announces (`-- Name: …; Type: …`), so each can be applied on its
//! own, at the right time, and named when it fails.

use std::process::Command;

use super::SchemaError;
use crate::pg::binaries::find_program;
use crate::pg::DbSpec;

/// One object of the dump and the SQL that creates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// pg_dump's name for it, e.g. `child child_pkey`.
    pub name: String,
    /// pg_dump's type, e.g. `TABLE`, `INDEX`, `FK CONSTRAINT`.
    pub kind: String,
    pub sql: String,
}

impl Entry {
    /// Built after the copy: indexes, triggers and foreign keys. Primary keys and
    /// unique constraints come before it, since apply and copy work by key.
    pub fn is_post_copy(&self) -> bool {
        matches!(self.kind.as_str(), "INDEX" | "TRIGGER" | "FK CONSTRAINT")
    }

    /// belt's own capture triggers on the source: never copied.
    pub fn is_belt_capture(&self) -> bool {
        self.kind == "TRIGGER"
            && self
                .name
                .split_whitespace()
                .nth(1)
                .is_some_and(|t| t.starts_with("belt_capture_"))
    }
}

/// The SET statements before the first entry, and the entries in dump order.
#[derive(Debug, Clone, Default)]
pub struct Dump {
    pub preamble: String,
    pub entries: Vec<Entry>,
}

/// Splits pg_dump's plain output. psql meta-commands (`\restrict`) are dropped.
pub fn parse(text: &str) -> Dump {
    let mut dump = Dump::default();
    let mut current: Option<Entry> = None;
    for line in text.lines().filter(|l| !l.starts_with('\\')) {
        if let Some(rest) = line.strip_prefix("-- Name: ") {
            let mut parts = rest.split("; ");
            let name = parts.next().unwrap_or_default().to_string();
            let kind = parts
                .next()
                .and_then(|p| p.strip_prefix("Type: "))
                .unwrap_or_default()
                .to_string();
            if let Some(done) = current.take() {
                dump.entries.push(done);
            }
            current = Some(Entry {
                name,
                kind,
                sql: String::new(),
            });
            continue;
        }
        if line.starts_with("--") {
            continue;
        }
        let target = match current.as_mut() {
            Some(e) => &mut e.sql,
            None => &mut dump.preamble,
        };
        target.push_str(line);
        target.push('\n');
    }
    if let Some(done) = current {
        dump.entries.push(done);
    }
    for e in &mut dump.entries {
        e.sql = e.sql.trim().to_string();
    }
    dump
}

/// Runs `pg_dump --schema-only` against `spec` (password through the environment,
/// never the command line) and parses its output.
pub fn dump_schema(spec: &DbSpec, password: Option<Vec<u8>>) -> Result<Dump, SchemaError> {
    let program = find_program("pg_dump").ok_or(SchemaError::NoPgDump)?;
    let config = spec.config().map_err(|e| SchemaError::Dump {
        db: spec.name.clone(),
        message: e.to_string(),
    })?;
    let mut cmd = Command::new(&program);
    cmd.args([
        "--schema-only",
        "--no-owner",
        "--no-privileges",
        "--exclude-schema=belt",
    ]);
    if let Some(host) = config.get_hosts().first() {
        let host = match host {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        };
        cmd.env("PGHOST", host);
    }
    if let Some(port) = config.get_ports().first() {
        cmd.env("PGPORT", port.to_string());
    }
    if let Some(user) = config.get_user() {
        cmd.env("PGUSER", user);
    }
    if let Some(db) = config.get_dbname() {
        cmd.env("PGDATABASE", db);
    }
    if let Some(pw) = password {
        cmd.env("PGPASSWORD", String::from_utf8_lossy(&pw).to_string());
    }
    let out = cmd.output().map_err(|e| SchemaError::Dump {
        db: spec.name.clone(),
        message: format!("cannot run {}: {e}", program.display()),
    })?;
    if !out.status.success() {
        return Err(SchemaError::Dump {
            db: spec.name.clone(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(parse(&String::from_utf8_lossy(&out.stdout)))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn splits_entries_and_drops_meta_commands() {
        let text = "--\n-- dump\n--\n\n\\restrict abc\nSET x = 0;\n\n--\n-- Name: t; Type: TABLE; Schema: public; Owner: -\n--\n\nCREATE TABLE public.t (id integer);\n\n\n--\n-- Name: t t_pkey; Type: CONSTRAINT; Schema: public; Owner: -\n--\n\nALTER TABLE ONLY public.t\n    ADD CONSTRAINT t_pkey PRIMARY KEY (id);\n\n--\n-- Name: t belt_capture_ins; Type: TRIGGER; Schema: public; Owner: -\n--\n\nCREATE TRIGGER belt_capture_ins AFTER INSERT ON public.t FOR EACH STATEMENT EXECUTE FUNCTION belt.f();\n\\unrestrict abc\n";
        let dump = parse(text);
        assert_eq!(dump.preamble.trim(), "SET x = 0;");
        let kinds: Vec<_> = dump.entries.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["TABLE", "CONSTRAINT", "TRIGGER"]);
        assert_eq!(dump.entries[1].name, "t t_pkey");
        assert!(dump.entries[1].sql.ends_with("PRIMARY KEY (id);"));
        assert!(dump.entries[2].is_belt_capture());
        assert!(!dump.entries[2].sql.contains("unrestrict"));
    }
}
