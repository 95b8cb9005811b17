//! `chronicle run` as users run it: the real binary as a daemon with an
//! every-second cron, stopped with SIGTERM.

use std::time::Duration;

use chronicle::journal::Journal;

use crate::helpers::{command, connect, eventually, quick_sim, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_fires_the_cron_syncs_and_stops_cleanly_on_sigterm() {
    let body = crate::helpers::schedule(3, 0).replace("0 0 6 * * Mon", "* * * * * *");
    let app = spawn_app(quick_sim(), &body).await;
    let mut daemon = command(&app.config_path, &["run"]).spawn().unwrap();

    let pg = connect(&app.database_url).await;
    eventually(
        "three completed weeks in Postgres",
        Duration::from_secs(60),
        || async {
            pg.query_one(
                "SELECT count(*) FROM report_data_weeks WHERE status = 'completed'",
                &[],
            )
            .await
            .map(|row| row.get::<_, i64>(0) == 3)
            .unwrap_or(false)
        },
    )
    .await;

    let pid = daemon.id().expect("running") as i32;
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(30), daemon.wait())
        .await
        .expect("the daemon stops within 30 s of SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(0));

    // Firings every second did not submit any week twice.
    assert_eq!(app.ledger().len(), 3);
    let journal = Journal::open(&app.journal_path()).unwrap();
    assert_eq!(journal.pending_count().unwrap(), 0);
    let triggers: Vec<String> = rusqlite::Connection::open(app.journal_path())
        .unwrap()
        .prepare("SELECT DISTINCT triggered_by FROM attempts")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(triggers, vec!["schedule".to_owned()]);
}
