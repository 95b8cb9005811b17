//! `requests` and `alerts` as tables.
//!
//! Owns wording only; the rows are the journal's.

use super::table;
use crate::journal::{Alert, Request};

pub fn requests(requests: &[Request]) -> String {
    if requests.is_empty() {
        return "no requests\n".to_owned();
    }
    let mut table = table(&[
        "id", "command", "by", "state", "outcome", "made", "finished",
    ]);
    for r in requests {
        table.add_row(vec![
            r.id.to_string(),
            r.operation.command(),
            r.made_by.clone().unwrap_or_else(|| "-".into()),
            r.state.as_str().to_owned(),
            r.outcome.map_or("-".into(), |o| o.as_str().to_owned()),
            r.made_at.clone(),
            r.finished_at.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    let mut out = format!("{table}\n");
    for r in requests {
        if let Some(message) = &r.message {
            out.push_str(&format!("request {}: {message}\n", r.id));
        }
    }
    out
}

/// `receivers`: those configured now, to say where each alert waits.
pub fn alerts(alerts: &[Alert], receivers: &[&str]) -> String {
    if alerts.is_empty() {
        return "no alerts\n".to_owned();
    }
    let mut table = table(&["raised", "kind", "summary", "delivery", "id"]);
    for a in alerts {
        let delivery = if a.delivered_at.is_some() {
            let to: Vec<String> = a
                .deliveries
                .iter()
                .filter(|d| d.delivered_at.is_some())
                .map(|d| d.receiver.clone())
                .collect();
            format!("delivered ({})", to.join(", "))
        } else if receivers.is_empty() {
            "waiting: no receiver configured ([alerts] webhook_url)".to_owned()
        } else {
            let waits: Vec<String> = receivers
                .iter()
                .map(
                    |receiver| match a.deliveries.iter().find(|d| d.receiver == *receiver) {
                        Some(d) if d.delivered_at.is_some() => format!("{receiver}: delivered"),
                        Some(d) => format!(
                            "{receiver}: {} tries, {}",
                            d.tries,
                            d.last_error.as_deref().unwrap_or("-")
                        ),
                        None => format!("{receiver}: not tried yet"),
                    },
                )
                .collect();
            format!("waiting ({})", waits.join("; "))
        };
        table.add_row(vec![
            a.raised_at.clone(),
            a.kind.clone(),
            a.summary.clone(),
            delivery,
            a.id.to_string(),
        ]);
    }
    format!("{table}\n")
}
