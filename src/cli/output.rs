//! The one way commands print: JSON for scripts (`--json`) or text for
//! people, to stdout, where a reader that went away (`| head`) ends the
//! output quietly instead of failing the command.
//!
//! Owns the choice and the stream; what the text says is `render`'s.

use std::io::Write;

use serde::Serialize;

/// Prints `value` as pretty JSON when `json`, else as `text` renders it.
pub fn emit<T: Serialize>(
    json: bool,
    value: &T,
    text: impl FnOnce(&T) -> String,
) -> anyhow::Result<()> {
    if json {
        print(&format!("{}\n", serde_json::to_string_pretty(value)?))
    } else {
        print(&text(value))
    }
}

/// Writes `text` to stdout.
pub fn print(text: &str) -> anyhow::Result<()> {
    quiet_on_closed_pipe(std::io::stdout().lock().write_all(text.as_bytes()))
}

/// A closed stdout is the reader's choice, not a failure.
pub fn quiet_on_closed_pipe(result: std::io::Result<()>) -> anyhow::Result<()> {
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
