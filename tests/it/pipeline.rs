//! The pipelined reconciler: two batches on the wire at once lose nothing
//! when the connection dies under them (I3, I4), and the application's
//! AFTER UPDATE trigger hears of each completed execution exactly once.

use std::time::Duration;

use chronicle::journal::{Entity, Journal};
use chronicle::sync::reconciler;
use chronicle::warehouse::Warehouse;
use chronicle::warehouse::tls::TlsOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::helpers::{
    completed_weeks, connect, quick_sim, schedule, spawn_app, spawn_app_on_application, text,
};

/// Every row of the journal queued again at its current state.
fn requeue_everything(journal: &Journal, pg_ids: &[(Entity, String)]) -> i64 {
    journal.requeue(pg_ids).unwrap();
    journal.pending_count().unwrap()
}

/// `(entity, id)` of every tracking row Postgres holds.
async fn tracked_rows(url: &str) -> Vec<(Entity, String)> {
    let pg = connect(url).await;
    let mut rows = Vec::new();
    for (entity, table) in [
        (Entity::Collection, "report_data_collections"),
        (Entity::Execution, "workflow_executions"),
        (Entity::Week, "report_data_weeks"),
    ] {
        for row in pg
            .query(&format!("SELECT id::text FROM {table} ORDER BY id"), &[])
            .await
            .unwrap()
        {
            rows.push((entity, row.get(0)));
        }
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_while_two_batches_are_in_flight_acknowledges_nothing_and_the_next_drain_converges()
 {
    let app = spawn_app(quick_sim(), &schedule(6, 0)).await;
    let output = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let journal = Journal::open(&app.journal_path()).unwrap();
    let rows = tracked_rows(&app.database_url).await;
    assert_eq!(
        rows.len(),
        1 + 6 + 6,
        "one collection, six executions and weeks"
    );
    // Postgres holds older states of every row, as after an outage.
    connect(&app.database_url)
        .await
        .batch_execute(
            "UPDATE report_data_weeks SET status = 'pending', journal_seq = journal_seq - 1;
             UPDATE workflow_executions SET status = 'PENDING', journal_seq = journal_seq - 1;",
        )
        .await
        .unwrap();
    let queued = requeue_everything(&journal, &rows);

    let (proxy_port, cut) = start_cutting_proxy(&app.database_url).await;
    let through_proxy = on_port(&app.database_url, proxy_port);
    let mut warehouse = Warehouse::connect(&through_proxy, &TlsOptions::default())
        .await
        .unwrap();
    let drained = tokio::time::timeout(
        Duration::from_secs(60),
        reconciler::drain(&journal, &mut warehouse, 3),
    )
    .await
    .expect("the drain ends once its connection is gone");
    let error = drained
        .expect_err("a drain whose connection was cut fails")
        .to_string();
    assert!(error.contains("cannot reach Postgres"), "{error}");
    cut.await
        .expect("the proxy saw a second batch's COMMIT before any answer to the first");
    assert_eq!(
        journal.pending_count().unwrap(),
        queued,
        "no answer came back, so nothing may be acknowledged"
    );

    // Whatever the server committed before the cut, the next drain lands
    // the journal's state and regresses nothing.
    let mut warehouse = Warehouse::connect(&app.database_url, &TlsOptions::default())
        .await
        .unwrap();
    let report = reconciler::drain(&journal, &mut warehouse, 3)
        .await
        .unwrap();
    assert_eq!(report.pending_after, 0);
    assert_eq!(report.quarantined, 0);
    let verify = app.chronicle(&["verify"]).await;
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    assert_eq!(completed_weeks(&app.database_url).await, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_applications_export_trigger_hears_of_each_completed_execution_once_inserted_or_updated()
 {
    let (app, _) = spawn_app_on_application(quick_sim(), &schedule(3, 0)).await;
    let pg = connect(&app.database_url).await;
    let migrate = app.chronicle(&["migrate"]).await;
    assert_eq!(migrate.status.code(), Some(0), "{}", text(&migrate));
    // Beside the application's own AFTER UPDATE trigger, one that notes
    // each update and whether the statement was an upsert or the touch.
    pg.batch_execute(
        "CREATE TABLE updates_seen (execution uuid, status text, statement text);
         CREATE FUNCTION count_update() RETURNS trigger AS $$
         BEGIN
             INSERT INTO updates_seen VALUES (NEW.id, NEW.status, left(current_query(), 6));
             RETURN NEW;
         END;
         $$ LANGUAGE plpgsql;
         CREATE TRIGGER count_updates AFTER UPDATE ON workflow_executions
             FOR EACH ROW EXECUTE FUNCTION count_update();",
    )
    .await
    .unwrap();

    // With Postgres away for the backfill, the next sync inserts each
    // execution already completed: the touch is its one update.
    let config = std::fs::read_to_string(&app.config_path).unwrap();
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let away = on_port(&app.database_url, closed.local_addr().unwrap().port());
    drop(closed);
    app.set_config(&config.replace(&app.database_url, &away));
    let output = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    app.set_config(&config);
    let synced = app.chronicle(&["sync"]).await;
    assert_eq!(synced.status.code(), Some(0), "{}", text(&synced));
    assert_eq!(
        touches(&pg).await,
        (3, 3),
        "each inserted execution touched once"
    );

    // Sent again (as after a lost acknowledgement), each row is updated
    // by the upsert itself, which the trigger hears: no touch.
    let journal = Journal::open(&app.journal_path()).unwrap();
    requeue_everything(&journal, &tracked_rows(&app.database_url).await);
    drop(journal);
    let synced = app.chronicle(&["sync"]).await;
    assert_eq!(synced.status.code(), Some(0), "{}", text(&synced));
    assert_eq!(
        touches(&pg).await,
        (3, 3),
        "an execution Postgres held is not touched again"
    );
    let upserted: i64 = pg
        .query_one(
            "SELECT count(*) FROM updates_seen WHERE statement = 'INSERT'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        upserted >= 3,
        "the upsert itself updated each one ({upserted})"
    );
    let queued: i64 = pg
        .query_one("SELECT count(*) FROM snowflake_sync_queue", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(queued, 3, "the export queue holds each execution once");
}

/// `(updates, executions)` made by the touch to a completed execution.
async fn touches(pg: &tokio_postgres::Client) -> (i64, i64) {
    let row = pg
        .query_one(
            "SELECT count(*), count(DISTINCT execution) FROM updates_seen
             WHERE statement = 'UPDATE' AND status = 'completed'",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// `url` with its port replaced by `port`.
fn on_port(url: &str, port: u16) -> String {
    url.replacen(&format!(":{}/", port_of(url)), &format!(":{port}/"), 1)
}

fn port_of(url: &str) -> u16 {
    let after_host = url.rsplit_once(':').expect("URL has a port").1;
    after_host
        .split('/')
        .next()
        .and_then(|port| port.parse().ok())
        .expect("URL has a numeric port")
}

/// A proxy in front of `url`'s server for one connection. It passes
/// everything through until the first batch's BEGIN; from then on it holds
/// every answer back, and when the client has sent a second COMMIT (two
/// batches on the wire, neither answered) it cuts both sides and resolves
/// the returned receiver. If no second COMMIT comes, the receiver fails.
async fn start_cutting_proxy(url: &str) -> (u16, oneshot::Receiver<()>) {
    let upstream = format!("127.0.0.1:{}", port_of(url));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (cut, was_cut) = oneshot::channel();
    tokio::spawn(async move {
        let (mut client, _) = listener.accept().await.unwrap();
        let mut server = TcpStream::connect(&upstream).await.unwrap();
        let mut armed = false;
        let mut since_begin: Vec<u8> = Vec::new();
        let (mut from_client, mut from_server) = (vec![0; 64 * 1024], vec![0; 64 * 1024]);
        loop {
            tokio::select! {
                read = client.read(&mut from_client) => {
                    let n = read.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    let chunk = &from_client[..n];
                    if !armed && contains(chunk, b"BEGIN; SET LOCAL") {
                        armed = true;
                    }
                    if armed {
                        since_begin.extend_from_slice(chunk);
                        if occurrences(&since_begin, b"COMMIT") >= 2 {
                            // Both sockets drop here, unanswered.
                            let _ = cut.send(());
                            return;
                        }
                    }
                    if server.write_all(chunk).await.is_err() {
                        return;
                    }
                }
                read = server.read(&mut from_server), if !armed => {
                    let n = read.unwrap_or(0);
                    if n == 0 || client.write_all(&from_server[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    (port, was_cut)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    occurrences(haystack, needle) > 0
}

fn occurrences(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|window| *window == needle)
        .count()
}
