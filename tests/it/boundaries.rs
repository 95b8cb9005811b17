//! The boundaries ARCHITECTURE.md states as absences, checked on the
//! source itself: a module that starts using a crate it must not is a test
//! failure, not a reviewer's catch.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/`, with its path relative to the crate, up
/// to its unit tests.
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    walk(&root.join("src"), &mut files);
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            // Unit tests may reach past a boundary on purpose (to tamper
            // with a journal, say): only product code is checked.
            let text = match text.find("#[cfg(test)]") {
                Some(at) => text[..at].to_owned(),
                None => text,
            };
            let relative = path.strip_prefix(root).unwrap().display().to_string();
            (relative, text)
        })
        .collect()
}

/// Files that mention `needle` outside the `allowed` path prefixes.
fn offenders(needle: &str, allowed: &[&str]) -> Vec<String> {
    sources()
        .into_iter()
        .filter(|(path, text)| {
            text.contains(needle) && !allowed.iter().any(|prefix| path.starts_with(prefix))
        })
        .map(|(path, _)| path)
        .collect()
}

#[test]
fn only_the_journal_touches_sqlite() {
    assert_eq!(
        offenders("rusqlite", &["src/journal/"]),
        Vec::<String>::new()
    );
}

#[test]
fn only_the_warehouse_and_the_throwaway_setups_touch_postgres() {
    assert_eq!(
        offenders("tokio_postgres", &["src/warehouse/", "src/throwaway/"]),
        Vec::<String>::new()
    );
}

#[test]
fn only_the_amc_client_and_simulator_name_the_api_headers() {
    assert_eq!(
        offenders("Amazon-Advertising-API", &["src/amc/"]),
        Vec::<String>::new()
    );
}

#[test]
fn only_the_command_line_prints_to_stdout() {
    let printing: Vec<String> = sources()
        .into_iter()
        .filter(|(path, text)| {
            let prints = text.lines().any(|l| {
                l.contains("println!") && !l.contains("eprintln!") || l.contains(" print!(")
            });
            prints && !path.starts_with("src/cli/") && path != "src/main.rs"
        })
        .map(|(path, _)| path)
        .collect();
    assert_eq!(printing, Vec::<String>::new());
}
