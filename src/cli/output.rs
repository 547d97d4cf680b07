//! Printing: a comfy-table for people, JSON for scripts, from the same rows.

use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use serde::Serialize;

/// Prints `rows` as JSON when asked, else as a table with `header`.
pub fn print_rows<T: Serialize>(json: bool, rows: &[T], header: &[&str], cells: impl Fn(&T) -> Vec<String>) {
    if json {
        println!("{}", serde_json::to_string_pretty(rows).expect("rows serialize"));
        return;
    }
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY).set_header(header.to_vec());
    for row in rows {
        table.add_row(cells(row));
    }
    println!("{table}");
}
