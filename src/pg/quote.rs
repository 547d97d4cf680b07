//! Quoting of identifiers and literals for SQL that belt builds itself.
//!
//! COPY takes no bind parameters, so the statements that stream rows carry their
//! values inline. Every name and value goes through these two functions; the
//! sessions run with `standard_conforming_strings = on`, so doubling quotes is enough.

/// Quotes an identifier, always, so mixed case, unicode and reserved words survive.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `"schema"."name"`.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", ident(schema), ident(name))
}

/// Quotes a string literal (standard_conforming_strings on).
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// `"a", "b"` for a list of column names.
pub fn ident_list<S: AsRef<str>>(names: &[S]) -> String {
    names
        .iter()
        .map(|n| ident(n.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `p."a", p."b"` for a list of column names with a table alias.
pub fn prefixed_list<S: AsRef<str>>(prefix: &str, names: &[S]) -> String {
    names
        .iter()
        .map(|n| format!("{prefix}.{}", ident(n.as_ref())))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_what_needs_quoting() {
        assert_eq!(ident("Order"), "\"Order\"");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(qualified("s", "select"), "\"s\".\"select\"");
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(literal("back\\slash"), "'back\\slash'");
        assert_eq!(prefixed_list("t", &["a", "B"]), "t.\"a\", t.\"B\"");
    }
}
