//! Reads the source's schema with `pg_dump --schema-only` and splits it into the
//! entries pg_dump announces (`-- Name: …; Type: …`), so each can be applied on its
//! own, at the right time, and named when it fails.

use std::process::Command;

use super::SchemaError;
use crate::pg::binaries::find_program;
use crate::pg::introspect::TableName;
use crate::pg::DbSpec;

/// One object of the dump and the SQL that creates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// pg_dump's name for it, e.g. `child child_pkey`.
    pub name: String,
    /// pg_dump's type, e.g. `TABLE`, `INDEX`, `FK CONSTRAINT`.
    pub kind: String,
    pub sql: String,
    /// Built after the copy (see [`Entry::is_post_copy`]).
    post_copy: bool,
}

impl Entry {
    /// Built after the copy: indexes, triggers and foreign keys, and the comments on
    /// them (pg_dump puts an object's comment right after it). Primary keys and
    /// unique constraints come before it, since apply and copy work by key.
    pub fn is_post_copy(&self) -> bool {
        self.post_copy
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
            let post_copy = match kind.as_str() {
                "INDEX" | "TRIGGER" | "FK CONSTRAINT" => true,
                "COMMENT" => dump.entries.last().is_some_and(|e| e.post_copy),
                _ => false,
            };
            current = Some(Entry {
                name,
                kind,
                sql: String::new(),
                post_copy,
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

/// Runs `pg_dump --schema-only` against `spec`, owners and privileges included, and
/// parses its output. `env` is the child's libpq environment
/// ([`crate::pg::connect::child_env`]): settings and password never go on argv.
/// `only` limits the dump to one table (with what belongs to it: its sequences,
/// indexes, constraints, triggers, grants, policies and comments).
pub fn dump_schema(
    spec: &DbSpec,
    env: &[(&'static str, String)],
    only: Option<&TableName>,
) -> Result<Dump, SchemaError> {
    let program = find_program("pg_dump").ok_or(SchemaError::NoPgDump)?;
    let mut cmd = Command::new(&program);
    cmd.args(["--schema-only", "--exclude-schema=belt"]);
    if let Some(t) = only {
        cmd.arg(format!(
            "--table={}",
            crate::pg::quote::qualified(&t.schema, &t.name)
        ));
    }
    cmd.envs(env.iter().map(|(k, v)| (*k, v)));
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
