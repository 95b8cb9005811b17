//! What commands print as text for people (`--json` prints the views
//! themselves, through `output`): one file per family of commands.
//!
//! Owns formatting only; every figure comes from the journal's views or the
//! command's outcome.

mod audit;
mod collect;
mod inspect;
mod ops;
mod status;

use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};

pub use audit::{audit, evidence};
pub use collect::{backfill, sync_line};
pub use inspect::{event_line, executions, lineage, week_grid, weeks};
pub use ops::{alerts, requests};
pub use status::{drift, quarantine, schedules, status};

pub(super) fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_style(UTF8_BORDERS_ONLY);
    table.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
    table.set_header(header.iter().copied());
    table
}
