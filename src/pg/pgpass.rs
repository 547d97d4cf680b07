//! Password lookup in a libpq password file (`PGPASSFILE` or `~/.pgpass`).
//!
//! tokio-postgres does not read the file itself; operators keep their passwords there
//! so that neither the catalog nor a command line ever holds one.

use std::path::{Path, PathBuf};

/// The password file libpq would read: `$PGPASSFILE`, else `$HOME/.pgpass`.
pub fn default_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PGPASSFILE") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".pgpass"))
}

/// The password of the first line matching host, port, database and user, as libpq
/// matches them (`*` matches anything, `\:` and `\\` are escapes).
pub fn lookup(contents: &str, host: &str, port: u16, dbname: &str, user: &str) -> Option<String> {
    let port = port.to_string();
    let wanted = [host, port.as_str(), dbname, user];
    contents
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .find_map(|line| {
            let fields = split_fields(line);
            if fields.len() < 5 {
                return None;
            }
            let matches = wanted.iter().zip(&fields).all(|(w, f)| f == "*" || f == w);
            matches.then(|| fields[4].clone())
        })
}

fn split_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    fields.last_mut().expect("one field").push(next);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            _ => fields.last_mut().expect("one field").push(c),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::lookup;

    #[test]
    fn matches_like_libpq() {
        let file = "# comment\nother:5432:*:*:nope\nlocalhost:5433:app:bob:s\\:ecret\n*:*:*:*:fallback\n";
        assert_eq!(
            lookup(file, "localhost", 5433, "app", "bob").as_deref(),
            Some("s:ecret")
        );
        assert_eq!(lookup(file, "db1", 5432, "x", "y").as_deref(), Some("fallback"));
        assert_eq!(lookup("a:1:b:c\n", "a", 1, "b", "c"), None);
    }
}
