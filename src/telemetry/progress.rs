//! Progress bars on stderr for long commands (a backfill's weeks, an
//! audit's or evidence export's events). Drawn only on a terminal:
//! indicatif hides a bar whose target is not one, so pipes and logs never
//! see it.
//!
//! Owns the bar's look; what it counts is the caller's.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar labelled `label` counting `unit`s (`weeks`, `events`).
pub fn bar(label: &str, unit: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    let template = format!("{{prefix}} [{{bar:30}}] {{pos}}/{{len}} {unit} ({{elapsed}})");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(label.to_owned());
    bar
}
