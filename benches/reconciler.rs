//! Reconciler benchmark: 100,000 weeks, each with its completed execution
//! (200,001 pending rows with the collection), landed in a throwaway
//! PostgreSQL on both shapes chronicle writes (its own tables on an empty
//! database, and the application's schema from ../shared/seed-app), with
//! and without ~20 ms of round-trip latency, against the floor: a binary
//! `COPY` into a temp table plus one `UPDATE ... FROM` per table. On
//! chronicle's own tables it also times one autocommitted UPDATE per week,
//! as the service chronicle replaces did.
//!
//! Prints one line per figure with its baseline or target and the ratio.
//! Method and figures are written up in BENCHMARKS.md. Run:
//! `cargo bench --bench reconciler`.

mod common;

use std::io::Cursor;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use chronicle::amc::result::{ColumnType, ResultColumn, Summary};
use chronicle::journal::{Entity, Journal, WorkItem};
use chronicle::schedule::Schedule;
use chronicle::sync::reconciler;
use chronicle::throwaway::{Cluster, application};
use chronicle::warehouse::Warehouse;
use chronicle::warehouse::rows::WeekRow;
use chrono::NaiveDate;
use common::{ratio, secs, thousands, verdict};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::Instant;
use tokio_postgres::{Client, NoTls};

/// Weeks per way and condition; each comes with its execution.
const WEEKS: usize = 100_000;
/// The daemon's batch size (outbox entries), and a small one to show what
/// batching buys.
const BATCH: usize = 5_000;
const SMALL_BATCH: usize = 500;
/// Each direction through the proxy, so one round trip is ~20 ms: a client
/// in one region talking to Supabase in the next.
const ONE_WAY_DELAY: Duration = Duration::from_millis(10);
/// 100,000 per-row round trips at ~20 ms would take over half an hour, so
/// with latency per-row runs this many rows and is extrapolated.
const LATENT_PER_ROW_SAMPLE: usize = 1_000;
/// Threads journaling the weeks' attempts, as the runner's week tasks do.
const SUBMITTERS: usize = 4;
/// The targets: issue 16's on both shapes (issue 12 asked for 1.5 on the
/// application's), and the old per-row service's speed-up.
const FLOOR_RATIO_TARGET: f64 = 1.2;
const PER_ROW_SPEEDUP_TARGET: f64 = 50.0;

fn main() -> Result<()> {
    if common::skipped_outside_cargo_bench("reconciler") {
        return Ok(());
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> Result<()> {
    let started = Instant::now();
    let cluster = Cluster::start()?;
    connect(&cluster.url("postgres"))
        .await?
        .batch_execute(application::ROLES)
        .await?;
    let work = tempfile::tempdir()?;

    let journal = build_journal(work.path())?;
    println!(
        "journal plan, {} weeks in one transaction: {}; {:.1} µs per week (no target)",
        thousands(WEEKS as u64),
        secs(journal.plan_time),
        journal.plan_time.as_secs_f64() * 1e6 / WEEKS as f64
    );
    println!(
        "journal, {} weeks' attempts (intent, submitted, succeeded), {SUBMITTERS} submitters: {}; {:.0} commits/s (no target)",
        thousands(WEEKS as u64),
        secs(journal.record_time),
        (3 * WEEKS) as f64 / journal.record_time.as_secs_f64()
    );

    let direct = Condition {
        name: "no latency",
        port: cluster.port(),
        latent: false,
        per_row_rows: WEEKS,
    };
    let proxy_port = start_latency_proxy(
        SocketAddr::from(([127, 0, 0, 1], cluster.port())),
        ONE_WAY_DELAY,
    )?;
    let latent = Condition {
        name: "20 ms latency",
        port: proxy_port,
        latent: true,
        per_row_rows: LATENT_PER_ROW_SAMPLE,
    };

    let mut bench = Bench {
        cluster: &cluster,
        journal: &journal,
        scratch: work.path().to_path_buf(),
        runs: 0,
    };
    println!(
        "loopback round trip (SELECT 1, mean of 20): {} (no target)",
        common::ms(bench.round_trip(&direct).await?)
    );
    let proxy_rtt = bench.round_trip(&latent).await?;
    println!(
        "proxy round trip (SELECT 1, mean of 20): {}; intended {}; ratio {:.2}",
        common::ms(proxy_rtt),
        common::ms(ONE_WAY_DELAY * 2),
        ratio(proxy_rtt, ONE_WAY_DELAY * 2)
    );

    for shape in shapes()? {
        let templates = bench.templates(shape).await?;
        for condition in [&direct, &latent] {
            let figures = bench.measure(shape, &templates, condition).await?;
            report(shape, condition, &figures);
        }
    }
    println!("whole benchmark: {}", secs(started.elapsed()));
    Ok(())
}

/// The shapes to measure: both, or only those `RECONCILER_BENCH_SHAPES`
/// names (`own`, `app`, comma-separated), so one shape can be iterated on
/// without the other's five minutes.
fn shapes() -> Result<Vec<Shape>> {
    let Ok(names) = std::env::var("RECONCILER_BENCH_SHAPES") else {
        return Ok(vec![Shape::Own, Shape::Application]);
    };
    names
        .split(',')
        .map(|name| match name.trim() {
            "own" => Ok(Shape::Own),
            "app" => Ok(Shape::Application),
            other => bail!("RECONCILER_BENCH_SHAPES: unknown shape {other:?} (own or app)"),
        })
        .collect()
}

/// The two database shapes chronicle writes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// An empty database: chronicle creates the tracking tables.
    Own,
    /// The application's production schema, with its triggers and indexes,
    /// and its user, instance and workflow rows.
    Application,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Own => "chronicle's tables",
            Shape::Application => "application schema",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Shape::Own => "own",
            Shape::Application => "app",
        }
    }
}

/// The planned journal every run copies.
struct Built {
    /// Checkpointed; its outbox holds the collection, then each week's
    /// execution and week, once each.
    path: PathBuf,
    plan_time: Duration,
    record_time: Duration,
    /// What per-row sends: the weeks as the journal sends them.
    weeks: Vec<WeekRow>,
}

/// Plans 100,000 weeks and journals each week's attempt through the real
/// write path (intent, submitted, succeeded with a result), then leaves
/// exactly one outbox entry per row: what a reconciler catching up after a
/// long outage finds.
fn build_journal(dir: &Path) -> Result<Built> {
    // A fixed date so every run plans the same weeks (back to the year 109:
    // Postgres `date` and chrono both take that in their stride).
    let today = NaiveDate::from_ymd_opt(2026, 1, 5).expect("valid date");
    let schedule_path = dir.join("weekly.toml");
    std::fs::write(
        &schedule_path,
        format!(
            r#"cron = "0 0 6 * * Mon"
instance_id = "{}"
workflow_id = "{}"
week_start = "monday"
backfill_weeks = {WEEKS}
data_lag_days = 14

[parameters]
region = "eu"
"#,
            application::INSTANCE_ID,
            application::WORKFLOW_ID
        ),
    )?;
    let schedule = Schedule::from_file(&schedule_path, today)?;
    let path = dir.join("journal.db");
    let journal = Journal::open(&path)?;
    let started = Instant::now();
    let plan = journal.plan(&schedule, today)?;
    let plan_time = started.elapsed();
    ensure!(
        plan.weeks_added == WEEKS,
        "plan added {} weeks, expected {WEEKS}",
        plan.weeks_added
    );
    let collection = journal.pending(1)?.batch.collections[0].id;
    let started = Instant::now();
    let attempts = record_attempts(&journal, &schedule, plan.work)?;
    let record_time = started.elapsed();
    // Forget the outbox the writes left (several entries per row), then
    // queue every row once, each week's execution beside it.
    loop {
        let pending = journal.pending(50_000)?;
        if pending.is_empty() {
            break;
        }
        journal.acknowledge(&pending.entries)?;
    }
    let mut rows = vec![(Entity::Collection, collection.to_string())];
    for (week, attempt) in attempts {
        rows.push((Entity::Execution, attempt));
        rows.push((Entity::Week, week));
    }
    journal.requeue(&rows)?;
    let all = journal.pending(2 * WEEKS + 1)?;
    ensure!(
        all.entries.len() == 2 * WEEKS + 1
            && all.batch.weeks.len() == WEEKS
            && all.batch.executions.len() == WEEKS,
        "the journal holds {} pending entries, {} weeks and {} executions, expected {} and {WEEKS} each",
        all.entries.len(),
        all.batch.weeks.len(),
        all.batch.executions.len(),
        2 * WEEKS + 1
    );
    drop(journal);
    checkpoint(&path)?;
    Ok(Built {
        path,
        plan_time,
        record_time,
        weeks: all.batch.weeks,
    })
}

/// Each week's attempt through the runner's journal calls, split over
/// `SUBMITTERS` threads sharing the handle. Returns `(week, attempt)` ids.
fn record_attempts(
    journal: &Journal,
    schedule: &Schedule,
    work: Vec<WorkItem>,
) -> Result<Vec<(String, String)>> {
    let mut shares: Vec<Vec<WorkItem>> = vec![Vec::new(); SUBMITTERS];
    for (i, week) in work.into_iter().enumerate() {
        shares[i % SUBMITTERS].push(week);
    }
    let result = Summary {
        record_count: 1_000,
        checksum: "9f".repeat(32),
        result_columns: vec![ResultColumn {
            name: "impressions".into(),
            column_type: ColumnType::Integer,
        }],
        result_rows_json: r#"[{"impressions":"100"}]"#.into(),
        result_sample_size: 1,
        summary_stats: serde_json::json!({"total_impressions": 100_000, "avg_impressions": 100})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = shares
            .into_iter()
            .map(|share| {
                let journal = journal.clone();
                let result = &result;
                scope.spawn(move || -> Result<Vec<(String, String)>> {
                    let mut ids = Vec::with_capacity(share.len());
                    for week in share {
                        let request = schedule.request(week.week_start);
                        let mut attempt = journal.record_intent(week.week_id, &request, "bench")?;
                        let execution = common::created(&attempt, &request);
                        journal.record_submitted(&mut attempt, &execution, false)?;
                        journal.record_succeeded(&attempt, result)?;
                        ids.push((week.week_id.to_string(), attempt.id.to_string()));
                    }
                    Ok(ids)
                })
            })
            .collect();
        let mut all = Vec::new();
        for handle in handles {
            all.extend(handle.join().expect("submitter threads do not panic")?);
        }
        Ok(all)
    })
}

/// Folds the WAL back into the main file, since each run copies only it.
fn checkpoint(journal: &Path) -> Result<()> {
    rusqlite::Connection::open(journal)?.query_row(
        "PRAGMA wal_checkpoint(TRUNCATE)",
        [],
        |_| Ok(()),
    )?;
    Ok(())
}

/// A plain client for the floor, per-row, the seeding and the checks.
async fn connect(url: &str) -> Result<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        // Ends when the client is dropped; a torn-down connection is not a
        // benchmark result.
        let _ = connection.await;
    });
    Ok(client)
}

async fn open_warehouse(url: &str) -> Result<Warehouse> {
    Ok(Warehouse::connect(url, &chronicle::warehouse::tls::TlsOptions::default()).await?)
}

/// Where the ways connect: straight to the cluster or through the proxy.
struct Condition {
    name: &'static str,
    port: u16,
    /// Through the proxy: the per-row speed-up target applies.
    latent: bool,
    /// Rows per-row actually sends; fewer than WEEKS means extrapolated.
    per_row_rows: usize,
}

/// Databases each run is copied from (`CREATE DATABASE ... TEMPLATE`), so
/// every timed run starts from the same files.
struct Templates {
    /// Tracking tables made, no tracking rows.
    empty: String,
    /// Every row present in an older state (`journal_seq` 0), settled.
    seeded: String,
    /// The floor's input: per table, the columns the reconciler rewrites
    /// (`id` first) and those rows in COPY's binary format.
    floor: Vec<FloorTable>,
}

struct FloorTable {
    table: &'static str,
    columns: Vec<&'static str>,
    copy: Vec<u8>,
}

#[derive(Default)]
struct Figures {
    floor: Duration,
    /// Postgres's own time executing the floor's statements.
    floor_server: Duration,
    /// Batches of BATCH onto existing rows: the like-for-like figure.
    reconciler: Duration,
    /// Batches of SMALL_BATCH (chronicle's tables only).
    reconciler_small: Option<Duration>,
    /// Batches of BATCH into empty tables: inserts instead of updates.
    reconciler_empty: Duration,
    breakdown: Breakdown,
    /// Per-row UPDATEs of the weeks (chronicle's tables only).
    per_row: Option<Duration>,
    per_row_rows: usize,
}

/// Where the reconciler's time goes, from a run doing `drain`'s steps one
/// after the other (no pipelining).
#[derive(Default)]
struct Breakdown {
    total: Duration,
    read_outbox: Duration,
    apply: Duration,
    /// Of `apply`: building the batch's parameters (`Warehouse::prepare`),
    /// and its transaction on the wire (`Prepared::send`).
    prepare: Duration,
    send: Duration,
    /// Postgres's own time executing the run's statements
    /// (`pg_stat_database.active_time`).
    server: Duration,
    acknowledge: Duration,
    batches: usize,
}

struct Bench<'a> {
    cluster: &'a Cluster,
    journal: &'a Built,
    scratch: PathBuf,
    /// Names fresh databases and journal copies.
    runs: usize,
}

impl Bench<'_> {
    /// Runs every way once after a warm-up of each, all under `condition`.
    async fn measure(
        &mut self,
        shape: Shape,
        templates: &Templates,
        condition: &Condition,
    ) -> Result<Figures> {
        let tag = format!("{}, {}", shape.name(), condition.name);
        eprintln!("[{tag}] warm-up");
        self.floor(templates, condition).await?;
        self.reconciler(&templates.seeded, condition, BATCH).await?;

        let mut figures = Figures::default();
        eprintln!("[{tag}] floor");
        (figures.floor, figures.floor_server) = self.floor(templates, condition).await?;
        eprintln!("[{tag}] reconciler, batch {BATCH}");
        figures.reconciler = self.reconciler(&templates.seeded, condition, BATCH).await?;
        eprintln!("[{tag}] reconciler, empty tables");
        figures.reconciler_empty = self.reconciler(&templates.empty, condition, BATCH).await?;
        eprintln!("[{tag}] reconciler breakdown");
        figures.breakdown = self.breakdown(&templates.seeded, condition).await?;
        if shape == Shape::Own {
            eprintln!("[{tag}] reconciler, batch {SMALL_BATCH}");
            figures.reconciler_small = Some(
                self.reconciler(&templates.seeded, condition, SMALL_BATCH)
                    .await?,
            );
            eprintln!(
                "[{tag}] per-row, {} rows",
                thousands(condition.per_row_rows as u64)
            );
            figures.per_row = Some(
                self.per_row(&templates.seeded, condition, condition.per_row_rows)
                    .await?,
            );
            figures.per_row_rows = condition.per_row_rows;
        }
        Ok(figures)
    }

    /// Makes the shape's two templates: migrated by the warehouse itself
    /// (on the application's schema, with its rows), and for `seeded`
    /// every row landed by an untimed drain, set back to `journal_seq` 0
    /// and settled (VACUUM ANALYZE) so autovacuum has no reason to wake
    /// during a timed run. The floor's input is read from it before that.
    async fn templates(&mut self, shape: Shape) -> Result<Templates> {
        let mut names = Vec::new();
        for kind in ["empty", "seeded"] {
            let name = format!("template_{}_{kind}", shape.label());
            let url = self.cluster.create_database(&name).await?;
            let client = connect(&url).await?;
            application::prepare(&client, shape == Shape::Application)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            drop(open_warehouse(&url).await?);
            names.push((name, url, client));
        }
        let (seeded, url, client) = names.pop().context("two templates")?;
        let mut warehouse = open_warehouse(&url).await?;
        let journal = self.journal_copy()?;
        let report = reconciler::drain(&journal, &mut warehouse, BATCH).await?;
        ensure!(report.pending_after == 0, "seeding left rows pending");
        self.forget_journal(journal)?;
        let mut floor = Vec::new();
        for (table, rewritten) in warehouse.rewritten_columns() {
            let mut columns = vec!["id"];
            columns.extend(rewritten);
            let copy = copy_out(&client, table, &columns).await?;
            floor.push(FloorTable {
                table,
                columns,
                copy,
            });
            // Two calls: VACUUM cannot run in the transaction a
            // multi-statement query is.
            client
                .batch_execute(&format!("UPDATE {table} SET journal_seq = 0"))
                .await?;
            client
                .batch_execute(&format!("VACUUM ANALYZE {table}"))
                .await?;
        }
        drop((warehouse, client));
        let (empty, _, client) = names.pop().context("two templates")?;
        drop(client);
        Ok(Templates {
            empty,
            seeded,
            floor,
        })
    }

    /// A fresh copy of `template`; returns its name and its URL under
    /// `condition`.
    async fn fresh_database(&mut self, template: &str, condition: &Condition) -> Result<Target> {
        self.runs += 1;
        let name = format!("bench_{}", self.runs);
        let admin = connect(&self.cluster.url("postgres")).await?;
        admin
            .batch_execute(&format!(
                "CREATE DATABASE {name} TEMPLATE {template} STRATEGY FILE_COPY"
            ))
            .await?;
        // Nothing of the setup left to flush while the clock runs.
        admin.batch_execute("CHECKPOINT").await?;
        let url = self.via(condition, &self.cluster.url(&name))?;
        Ok(Target { name, url })
    }

    /// `direct` (a cluster URL) with the port `condition` connects to.
    fn via(&self, condition: &Condition, direct: &str) -> Result<String> {
        let from = format!(":{}/", self.cluster.port());
        ensure!(direct.contains(&from), "unexpected cluster URL {direct}");
        Ok(direct.replacen(&from, &format!(":{}/", condition.port), 1))
    }

    async fn drop_database(&self, target: Target) -> Result<()> {
        connect(&self.cluster.url("postgres"))
            .await?
            .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", target.name))
            .await?;
        Ok(())
    }

    /// A private copy of the built journal: every outbox entry pending.
    fn journal_copy(&mut self) -> Result<Journal> {
        self.runs += 1;
        let dir = self.scratch.join(format!("journal_{}", self.runs));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("journal.db");
        std::fs::copy(&self.journal.path, &path)?;
        Ok(Journal::open(&path)?)
    }

    fn forget_journal(&self, journal: Journal) -> Result<()> {
        let dir = journal
            .path()
            .parent()
            .context("journal copy has a folder")?
            .to_path_buf();
        drop(journal);
        std::fs::remove_dir_all(dir)?;
        Ok(())
    }

    /// Mean of 20 `SELECT 1` round trips (after one to settle the connection).
    async fn round_trip(&self, condition: &Condition) -> Result<Duration> {
        let client = connect(&self.via(condition, &self.cluster.url("postgres"))?).await?;
        client.simple_query("SELECT 1").await?;
        let started = Instant::now();
        for _ in 0..20 {
            client.simple_query("SELECT 1").await?;
        }
        Ok(started.elapsed() / 20)
    }

    /// `reconciler::drain` from a fresh journal copy into a copy of
    /// `template`, batches of `batch_size`.
    async fn reconciler(
        &mut self,
        template: &str,
        condition: &Condition,
        batch_size: usize,
    ) -> Result<Duration> {
        let target = self.fresh_database(template, condition).await?;
        let journal = self.journal_copy()?;
        let mut warehouse = open_warehouse(&target.url).await?;
        let started = Instant::now();
        let report = reconciler::drain(&journal, &mut warehouse, batch_size).await?;
        let elapsed = started.elapsed();
        drop(warehouse);
        ensure!(
            report.pending_after == 0 && report.quarantined == 0,
            "drain left {} outbox entries and quarantined {}",
            report.pending_after,
            report.quarantined
        );
        self.check(&target, &[WEEKS, WEEKS]).await?;
        self.forget_journal(journal)?;
        self.drop_database(target).await?;
        Ok(elapsed)
    }

    /// `drain`'s steps one after the other, with a clock around each: read
    /// a batch from the outbox, land it in one Postgres transaction,
    /// acknowledge it. The pipelined `drain` overlaps the first and last
    /// with the middle one; this shows what there is to overlap.
    async fn breakdown(&mut self, template: &str, condition: &Condition) -> Result<Breakdown> {
        let target = self.fresh_database(template, condition).await?;
        let journal = self.journal_copy()?;
        let mut warehouse = open_warehouse(&target.url).await?;
        let mut breakdown = Breakdown::default();
        let started = Instant::now();
        loop {
            let step = Instant::now();
            let pending = journal.pending(BATCH)?;
            breakdown.read_outbox += step.elapsed();
            if pending.is_empty() {
                break;
            }
            let step = Instant::now();
            let prepared = warehouse.prepare(&pending.batch).await?;
            let prepared_at = Instant::now();
            prepared.send().await?;
            breakdown.prepare += prepared_at - step;
            breakdown.send += prepared_at.elapsed();
            breakdown.apply += step.elapsed();
            let step = Instant::now();
            journal.acknowledge(&pending.entries)?;
            breakdown.acknowledge += step.elapsed();
            breakdown.batches += 1;
        }
        breakdown.total = started.elapsed();
        drop(warehouse);
        breakdown.server = self.server_time(&target).await?;
        self.check(&target, &[WEEKS, WEEKS]).await?;
        self.forget_journal(journal)?;
        self.drop_database(target).await?;
        Ok(breakdown)
    }

    /// The first `rows` weeks, one autocommitted UPDATE each, every one
    /// waiting for its answer before the next is sent, as the old service
    /// did (weeks only: it updated executions the same way, separately).
    /// The statement is prepared once beforehand (it did too).
    async fn per_row(
        &mut self,
        template: &str,
        condition: &Condition,
        rows: usize,
    ) -> Result<Duration> {
        let target = self.fresh_database(template, condition).await?;
        let client = connect(&target.url).await?;
        let update = client
            .prepare(
                "UPDATE report_data_weeks SET collection_id = $1, week_start_date = $2,
                     week_end_date = $3, status = $4, execution_id = $5, amc_execution_id = $6,
                     started_at = $7, completed_at = $8, record_count = $9, data_checksum = $10,
                     error_message = $11, updated_at = $12, journal_seq = $13
                 WHERE id = $14",
            )
            .await?;
        let started = Instant::now();
        for w in &self.journal.weeks[..rows] {
            let updated = client
                .execute(
                    &update,
                    &[
                        &w.collection_id,
                        &w.week_start_date,
                        &w.week_end_date,
                        &w.status,
                        &w.execution_id,
                        &w.amc_execution_id,
                        &w.started_at,
                        &w.completed_at,
                        &w.record_count,
                        &w.data_checksum,
                        &w.error_message,
                        &w.updated_at,
                        &w.journal_seq,
                        &w.id,
                    ],
                )
                .await?;
            ensure!(updated == 1, "week {} was not updated", w.id);
        }
        let elapsed = started.elapsed();
        drop(client);
        self.check(&target, &[0, rows]).await?;
        self.drop_database(target).await?;
        Ok(elapsed)
    }

    /// The floor, in one transaction: per table, a binary COPY of the rows
    /// the reconciler lands (the columns it rewrites, with the values it
    /// wrote) into a temp table, then one `UPDATE ... FROM` it onto the
    /// existing rows with the reconciler's `journal_seq` guard. The temp
    /// tables are made in one round trip and the UPDATEs and COMMIT sent
    /// in another; each COPY takes two.
    /// Returns the wall time and Postgres's own time.
    async fn floor(
        &mut self,
        templates: &Templates,
        condition: &Condition,
    ) -> Result<(Duration, Duration)> {
        let target = self.fresh_database(&templates.seeded, condition).await?;
        let client = connect(&target.url).await?;
        let mut create = String::from("BEGIN;");
        let mut update = String::new();
        for t in &templates.floor {
            let columns = t.columns.join(", ");
            let table = t.table;
            create.push_str(&format!(
                "CREATE TEMP TABLE stage_{table} ON COMMIT DROP AS
                 SELECT {columns} FROM {table} WITH NO DATA;"
            ));
            let sets: Vec<String> = t.columns[1..]
                .iter()
                .map(|c| format!("{c} = s.{c}"))
                .collect();
            update.push_str(&format!(
                "UPDATE {table} t SET {} FROM stage_{table} s
                 WHERE t.id = s.id AND (t.journal_seq IS NULL OR t.journal_seq < s.journal_seq);",
                sets.join(", ")
            ));
        }
        update.push_str("COMMIT");
        let copies: Vec<Cursor<Vec<u8>>> = templates
            .floor
            .iter()
            .map(|t| Cursor::new(t.copy.clone()))
            .collect();
        let started = Instant::now();
        client.batch_execute(&create).await?;
        for (t, copy) in templates.floor.iter().zip(copies) {
            let sink = client
                .copy_in::<_, Cursor<Vec<u8>>>(&format!(
                    "COPY stage_{} FROM STDIN (FORMAT binary)",
                    t.table
                ))
                .await?;
            let mut sink = std::pin::pin!(sink);
            sink.send(copy).await?;
            sink.as_mut().finish().await?;
        }
        client.batch_execute(&update).await?;
        let elapsed = started.elapsed();
        drop(client);
        let server = self.server_time(&target).await?;
        self.check(&target, &[WEEKS, WEEKS]).await?;
        self.drop_database(target).await?;
        Ok((elapsed, server))
    }

    /// Postgres's time executing statements in `target`'s database
    /// (`pg_stat_database.active_time`), read once every session of it
    /// has ended: a backend adds its time as it exits. Only the timed
    /// session has connected by then (`check` connects later).
    async fn server_time(&self, target: &Target) -> Result<Duration> {
        let admin = connect(&self.cluster.url("postgres")).await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let sessions: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
                    &[&target.name],
                )
                .await?
                .get(0);
            if sessions == 0 {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "{} still has {sessions} sessions after its run",
                target.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The exiting backend's counters reach the shared stats just
        // before it leaves pg_stat_activity; a fresh snapshot reads them.
        admin
            .batch_execute("SELECT pg_stat_clear_snapshot()")
            .await?;
        let active_ms: f64 = admin
            .query_one(
                "SELECT active_time FROM pg_stat_database WHERE datname = $1",
                &[&target.name],
            )
            .await?
            .get(0);
        Ok(Duration::from_secs_f64(active_ms / 1000.0))
    }

    /// A figure only counts if the rows really landed: the collection and
    /// `[executions, weeks]` rows now carry their journal sequence number
    /// (seeded rows carry 0).
    async fn check(&self, target: &Target, expected: &[usize; 2]) -> Result<()> {
        let client = connect(&self.cluster.url(&target.name)).await?;
        for (table, expected) in [
            ("workflow_executions", expected[0]),
            ("report_data_weeks", expected[1]),
        ] {
            let landed: i64 = client
                .query_one(
                    &format!("SELECT count(*) FROM {table} WHERE journal_seq > 0"),
                    &[],
                )
                .await?
                .get(0);
            if landed != expected as i64 {
                bail!(
                    "database {} holds {landed} updated rows in {table}, expected {expected}",
                    target.name
                );
            }
        }
        Ok(())
    }
}

struct Target {
    name: String,
    /// Through the proxy under latency.
    url: String,
}

/// `columns` of every row of `table`, in COPY's binary format.
async fn copy_out(client: &Client, table: &str, columns: &[&str]) -> Result<Vec<u8>> {
    let stream = client
        .copy_out(&format!(
            "COPY (SELECT {} FROM {table}) TO STDOUT (FORMAT binary)",
            columns.join(", ")
        ))
        .await?;
    let mut stream = std::pin::pin!(stream);
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk?);
    }
    Ok(bytes)
}

/// A TCP proxy on 127.0.0.1 that holds every chunk `one_way` before passing
/// it on, in each direction, keeping order: a round trip costs 2 x `one_way`
/// while bandwidth stays loopback's. It runs on its own thread and runtime
/// so the bench's blocking SQLite calls cannot hold up its timers. Returns
/// its port; it lives until the process exits.
fn start_latency_proxy(upstream: SocketAddr, one_way: Duration) -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("latency-proxy".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener =
                    tokio::net::TcpListener::from_std(listener).expect("listener registers");
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    tokio::spawn(async move {
                        // A connection's end (reset at teardown included)
                        // is not a result; the timed code sees its own errors.
                        let _ = relay(client, upstream, one_way).await;
                    });
                }
            })
        })?;
    Ok(port)
}

async fn relay(client: TcpStream, upstream: SocketAddr, one_way: Duration) -> std::io::Result<()> {
    let server = TcpStream::connect(upstream).await?;
    // Without NODELAY, Nagle and delayed ACKs would add their own ~40 ms.
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let upstream_pipe = tokio::spawn(delayed_pipe(client_read, server_write, one_way));
    let downstream = delayed_pipe(server_read, client_write, one_way).await;
    upstream_pipe.await??;
    downstream
}

/// Reads chunks as they come and writes each `delay` after it was read. The
/// reader never waits for the writer, so chunks in flight overlap as on a
/// long link instead of queueing behind each other's delay.
async fn delayed_pipe(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    delay: Duration,
) -> std::io::Result<()> {
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, chunk)) = receiver.recv().await {
            tokio::time::sleep_until(due).await;
            to.write_all(&chunk).await?;
        }
        to.shutdown().await
    });
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let read = from.read(&mut buffer).await?;
        if read == 0
            || sender
                .send((Instant::now() + delay, buffer[..read].to_vec()))
                .is_err()
        {
            break;
        }
    }
    drop(sender);
    writer.await?
}

/// Prints one line per figure: value, baseline or target, ratio.
fn report(shape: Shape, condition: &Condition, f: &Figures) {
    let c = format!("{}, {}", shape.name(), condition.name);
    println!("--- {c} ---");
    println!(
        "floor ({c}): COPY + one UPDATE ... FROM per table onto existing rows: {} (baseline); Postgres executing {}",
        secs(f.floor),
        secs(f.floor_server)
    );
    let mut batches = vec![(format!("batch {BATCH}"), f.reconciler)];
    if let Some(small) = f.reconciler_small {
        batches.push((format!("batch {SMALL_BATCH}"), small));
    }
    for (what, time) in batches {
        let ratio = ratio(time, f.floor);
        println!(
            "reconciler {what} ({c}): {}; floor {}; ratio {ratio:.2} (target <= {FLOOR_RATIO_TARGET} at batch {BATCH}) {}",
            secs(time),
            secs(f.floor),
            verdict(ratio <= FLOOR_RATIO_TARGET)
        );
    }
    println!(
        "reconciler batch {BATCH} into empty tables ({c}): {}; floor {}; ratio {:.2} (target <= {FLOOR_RATIO_TARGET}; inserts, not updates) {}",
        secs(f.reconciler_empty),
        secs(f.floor),
        ratio(f.reconciler_empty, f.floor),
        verdict(ratio(f.reconciler_empty, f.floor) <= FLOOR_RATIO_TARGET)
    );
    let b = &f.breakdown;
    println!(
        "reconciler steps one after the other ({c}, separate run, {} batches): total {}; pipelined drain {}; drain / steps {:.2} (no target)",
        b.batches,
        secs(b.total),
        secs(f.reconciler),
        ratio(f.reconciler, b.total)
    );
    for (step, time) in [
        ("read outbox (journal.pending)", b.read_outbox),
        ("Postgres apply (warehouse.apply)", b.apply),
        (
            "  of which prepare (parameters built in the client)",
            b.prepare,
        ),
        ("  of which send (the transaction on the wire)", b.send),
        ("Postgres executing (active_time, whole run)", b.server),
        ("acknowledge (journal.acknowledge)", b.acknowledge),
    ] {
        println!(
            "  {step} ({c}): {}; of total {}; share {:.2}",
            secs(time),
            secs(b.total),
            ratio(time, b.total)
        );
    }
    let Some(per_row) = f.per_row else {
        return;
    };
    let speedup_line = |per_row: Duration, label: &str| {
        let speedup = ratio(per_row, f.reconciler);
        let target = if condition.latent {
            format!(
                "(target >= {PER_ROW_SPEEDUP_TARGET}) {}",
                verdict(speedup >= PER_ROW_SPEEDUP_TARGET)
            )
        } else {
            format!("(no target without latency; >= {PER_ROW_SPEEDUP_TARGET} is with latency)")
        };
        println!(
            "per-row weeks ({c}): {label}; reconciler batch {BATCH} (weeks and executions) {}; speedup {speedup:.1}x {target}",
            secs(f.reconciler)
        );
    };
    if f.per_row_rows == WEEKS {
        speedup_line(
            per_row,
            &format!(
                "{} for all {} weeks (measured)",
                secs(per_row),
                thousands(WEEKS as u64)
            ),
        );
    } else {
        let extrapolated = per_row.mul_f64(WEEKS as f64 / f.per_row_rows as f64);
        println!(
            "per-row sample ({c}): {} for the first {} weeks (measured); {:.2} ms per row",
            secs(per_row),
            thousands(f.per_row_rows as u64),
            per_row.as_secs_f64() * 1e3 / f.per_row_rows as f64
        );
        speedup_line(
            extrapolated,
            &format!(
                "{} for {} weeks (EXTRAPOLATED from the {}-row sample, not measured)",
                secs(extrapolated),
                thousands(WEEKS as u64),
                thousands(f.per_row_rows as u64)
            ),
        );
    }
}
