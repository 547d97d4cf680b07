//! Where PostgreSQL's programs are: `initdb` and `pg_ctl` for throwaway clusters,
//! `pg_dump` for the schema copy.

use std::path::PathBuf;
use std::process::Command;

/// Directories to search, in order: only `BELT_PG_BIN` when it is set, else
/// `pg_config --bindir`, `/usr/lib/postgresql/*/bin` (newest first), then PATH.
pub fn search_dirs() -> Vec<PathBuf> {
    if let Some(dir) = std::env::var_os("BELT_PG_BIN") {
        return vec![PathBuf::from(dir)];
    }
    let mut dirs = Vec::new();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        dirs.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    }
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<(u32, PathBuf)> = entries
            .flatten()
            .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
            .collect();
        versions.sort_by_key(|v| std::cmp::Reverse(v.0));
        dirs.extend(versions.into_iter().map(|(_, p)| p));
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs
}

/// The first directory holding every one of `programs`.
pub fn find_dir_with(programs: &[&str]) -> Option<PathBuf> {
    search_dirs()
        .into_iter()
        .find(|d| programs.iter().all(|p| d.join(p).is_file()))
}

/// A PostgreSQL program by name.
pub fn find_program(name: &str) -> Option<PathBuf> {
    find_dir_with(&[name]).map(|d| d.join(name))
}
