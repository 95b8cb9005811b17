//! `chronicle backup` of a live journal (issue 17): copies taken while the
//! real daemon writes (every-second firings, submissions, outcomes) are
//! consistent, private, self-contained, and a journal restored from one
//! audits clean and opens for the next runner.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use chronicle::throwaway::ConfigFile;

use crate::daemon::start;
use crate::helpers::{eventually, quick_sim, run_chronicle, spawn_app, text};
use crate::operations::query;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_the_daemon_writes_restores_and_audits_clean() {
    let every_second = crate::helpers::schedule(6, 1).replace("0 0 6 * * Mon", "* * * * * *");
    let app = spawn_app(quick_sim(), &every_second).await;
    let journal = app.journal_path();
    let (mut daemon, _lines) = start(&app, &[]);
    eventually("the daemon writing", Duration::from_secs(30), || async {
        // Not before it exists: opening would create it.
        journal.exists()
            && rusqlite::Connection::open(&journal)
                .and_then(|c| c.query_row("SELECT count(*) FROM events", [], |row| row.get(0)))
                .is_ok_and(|events: i64| events > 20)
    })
    .await;

    let backups = tempfile::tempdir().unwrap();
    let mut heads = Vec::new();
    for round in 0..3 {
        let file = backups.path().join(format!("copy-{round}.db"));
        let output = app
            .chronicle(&["backup", &file.display().to_string(), "--json"])
            .await;
        assert_eq!(output.status.code(), Some(0), "{}", text(&output));
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        heads.push(report["head_seq"].as_i64().unwrap());
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the copy holds the history: owner only");
        assert!(
            !backups.path().join(format!("copy-{round}.db-wal")).exists(),
            "one self-contained file"
        );
        // The daemon goes on writing before the next copy.
        let head = heads[round];
        eventually("more events", Duration::from_secs(30), || async {
            query::<i64>(&journal, "SELECT max(seq) FROM events") > head
        })
        .await;
    }
    assert!(
        heads.windows(2).all(|w| w[0] < w[1]),
        "taken while it wrote: {heads:?}"
    );
    daemon.start_kill().unwrap();
    daemon.wait().await.unwrap();

    // Restore: the copy becomes the journal of a fresh folder.
    for (round, head) in heads.iter().enumerate() {
        let restored = tempfile::tempdir().unwrap();
        std::fs::copy(
            backups.path().join(format!("copy-{round}.db")),
            restored.path().join("journal.db"),
        )
        .unwrap();
        std::fs::create_dir(restored.path().join("schedules")).unwrap();
        let config = ConfigFile::for_simulator(&app.sim)
            .write(restored.path())
            .unwrap();
        let audit = run_chronicle(&config, &["audit", "--json"]).await;
        assert_eq!(audit.status.code(), Some(0), "{}", text(&audit));
        let report: serde_json::Value = serde_json::from_slice(&audit.stdout).unwrap();
        assert_eq!(report["head"]["seq"].as_i64(), Some(*head), "{report}");
        let status = run_chronicle(&config, &["status"]).await;
        assert_eq!(status.status.code(), Some(0), "{}", text(&status));
        // A runner takes the restored journal up: WAL again, migrated.
        let migrate = run_chronicle(&config, &["migrate"]).await;
        assert_eq!(migrate.status.code(), Some(0), "{}", text(&migrate));
        let mode: String = query(&restored.path().join("journal.db"), "PRAGMA journal_mode");
        assert_eq!(mode, "wal");
    }

    let over = app
        .chronicle(&["backup", &journal.display().to_string()])
        .await;
    assert_eq!(over.status.code(), Some(1), "{}", text(&over));
    assert!(
        text(&over).contains("over the journal itself"),
        "{}",
        text(&over)
    );
}
