//! `verify` walks both sides a page at a time: the same drift is named
//! whatever the page size, at the first and last rows, on both sides of a
//! page boundary, in executions no week names any more, and on the
//! application's schema as on chronicle's own tables.

use chronicle::journal::{Entity, Journal};
use chronicle::sync::drift::{self, DriftReport, Problem};
use chronicle::warehouse::Warehouse;
use chronicle::warehouse::tls::TlsOptions;

use crate::helpers::{
    TestApp, connect, quick_sim, schedule, spawn_app, spawn_app_on_application, text,
};

const FIRST: &str = "00000000-0000-0000-0000-000000000001";
const LAST: &str = "ffffffff-ffff-ffff-ffff-ffffffffffff";

fn named(report: &DriftReport) -> Vec<(Entity, String, Problem)> {
    let mut found: Vec<_> = report
        .findings
        .iter()
        .map(|f| (f.entity, f.id.clone(), f.problem))
        .collect();
    found.sort_by(|a, b| (a.0.as_str(), &a.1).cmp(&(b.0.as_str(), &b.1)));
    found
}

/// Seven completed weeks, then drift made by hand at chosen places of the
/// weeks' id order; returns what verify must name.
async fn drift_at_the_edges(app: &TestApp, application: bool) -> Vec<(Entity, String, Problem)> {
    let output = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let pg = connect(&app.database_url).await;
    let weeks: Vec<(String, String)> = pg
        .query(
            "SELECT id::text, execution_id::text FROM report_data_weeks ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(weeks.len(), 7, "seven weeks synced");
    let w = |i: usize| weeks[i].0.clone();
    let collection: String = pg
        .query_one("SELECT id::text FROM report_data_collections", &[])
        .await
        .unwrap()
        .get(0);
    // The application's trigger copies the legacy column back into a
    // nulled execution_id: both go.
    let unlink = if application {
        "execution_id = NULL, workflow_execution_id = NULL"
    } else {
        "execution_id = NULL"
    };
    pg.batch_execute(&format!(
        "UPDATE report_data_weeks SET record_count = record_count + 1 WHERE id = '{w0}';
         DELETE FROM report_data_weeks WHERE id = '{w1}';
         UPDATE report_data_weeks SET data_checksum = 'by hand' WHERE id = '{w2}';
         UPDATE report_data_weeks SET {unlink} WHERE id = '{w3}';
         UPDATE report_data_weeks SET record_count = 0 WHERE id = '{w4}';
         UPDATE report_data_weeks SET {unlink} WHERE id = '{w5}';
         DELETE FROM workflow_executions WHERE id = '{e5}';
         DELETE FROM report_data_weeks WHERE id = '{w6}';
         INSERT INTO report_data_weeks (id, collection_id, week_start_date, week_end_date, status)
         VALUES ('{FIRST}', '{collection}', '1990-01-01', '1990-01-07', 'pending'),
                ('{LAST}', '{collection}', '1990-01-08', '1990-01-14', 'pending');",
        w0 = w(0),
        w1 = w(1),
        w2 = w(2),
        w3 = w(3),
        w4 = w(4),
        w5 = w(5),
        e5 = weeks[5].1,
        w6 = w(6),
    ))
    .await
    .unwrap();
    // Week 4 has a change on its way: not there yet, so not drift.
    let journal = Journal::open(&app.journal_path()).unwrap();
    journal.requeue(&[(Entity::Week, w(4))]).unwrap();

    // Weeks 1 and 3 leave their executions in Postgres named by no week:
    // found by id, they are no finding.
    let mut expected = vec![
        (Entity::Week, w(0), Problem::Differs),
        (Entity::Week, w(1), Problem::MissingInPostgres),
        (Entity::Week, w(2), Problem::Differs),
        (Entity::Week, w(3), Problem::Differs),
        (
            Entity::Execution,
            weeks[5].1.clone(),
            Problem::MissingInPostgres,
        ),
        (Entity::Week, w(5), Problem::Differs),
        (Entity::Week, w(6), Problem::MissingInPostgres),
        (Entity::Week, FIRST.to_owned(), Problem::MissingInJournal),
        (Entity::Week, LAST.to_owned(), Problem::MissingInJournal),
    ];
    expected.sort_by(|a, b| (a.0.as_str(), &a.1).cmp(&(b.0.as_str(), &b.1)));
    expected
}

async fn same_drift_whatever_the_page_size(app: &TestApp, application: bool) {
    let expected = drift_at_the_edges(app, application).await;
    let journal = Journal::open(&app.journal_path()).unwrap();
    let warehouse = Warehouse::connect(&app.database_url, &TlsOptions::default())
        .await
        .unwrap();
    let mut others = Vec::new();
    for page in [1, 2, 3, drift::PAGE] {
        let report = drift::check_in_pages(&journal, &warehouse, page)
            .await
            .unwrap();
        assert_eq!(named(&report), expected, "page size {page}");
        assert_eq!(report.unsynced, 1, "page size {page}: week 4 waits");
        let population = &report.population;
        assert_eq!(population.len(), 1, "{population:?}");
        // Five of the seven weeks are left, plus the two added by hand;
        // weeks 3 and 5 lost their execution.
        assert_eq!(
            (
                population[0].weeks,
                population[0].with_execution_id,
                population[0].completed_without_execution_id
            ),
            (7, 3, 2),
            "page size {page}"
        );
        others.push(report.other_rows);
    }
    assert!(others.windows(2).all(|w| w[0] == w[1]), "{others:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_the_same_drift_at_the_edges_of_its_pages_whatever_their_size() {
    let app = spawn_app(quick_sim(), &schedule(7, 0)).await;
    same_drift_whatever_the_page_size(&app, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_walks_the_applications_schema_in_pages_the_same_way() {
    let (app, _) = spawn_app_on_application(quick_sim(), &schedule(7, 0)).await;
    same_drift_whatever_the_page_size(&app, true).await;
}
