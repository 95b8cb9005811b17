//! Postgres migrations: the `chronicle` schema for chronicle's own tables
//! (chain heads, migration history), which no role but its owner may use,
//! then the embedded migrations (`migrations/postgres`), which create the
//! tracking tables where absent and add missing columns, never dropping,
//! retyping or constraining what a database already holds.
//!
//! Owns the schema's version. A failure carries Postgres's own message.

use refinery::error::Kind;
use tokio_postgres::Client;

use super::{WarehouseError, error_text};

mod embedded {
    refinery::embed_migrations!("migrations/postgres");
}

/// Where refinery records which migrations ran: in chronicle's own schema,
/// not `public`, where Supabase lets `anon` read and delete it.
const HISTORY: &str = "chronicle.schema_history";

/// Before refinery runs: chronicle's schema, closed to everyone but its
/// owner, and the history an older chronicle kept in `public` moved into
/// it (as a record; refinery starts afresh, every migration being
/// idempotent over what the older one made).
const BOOTSTRAP: &str = "
CREATE SCHEMA IF NOT EXISTS chronicle;
REVOKE ALL ON SCHEMA chronicle FROM PUBLIC;
DO $$
BEGIN
    IF to_regclass('public.refinery_schema_history') IS NOT NULL
       AND to_regclass('chronicle.legacy_schema_history') IS NULL THEN
        IF EXISTS (SELECT 1 FROM public.refinery_schema_history
                   WHERE version = 1 AND name = 'tracking') THEN
            ALTER TABLE public.refinery_schema_history SET SCHEMA chronicle;
            ALTER TABLE chronicle.refinery_schema_history RENAME TO legacy_schema_history;
        END IF;
    END IF;
END $$;";

pub(super) async fn run(client: &mut Client) -> Result<(), WarehouseError> {
    client
        .batch_execute(BOOTSTRAP)
        .await
        .map_err(|e| WarehouseError::Migration(error_text(&e)))?;
    embedded::migrations::runner()
        .set_migration_table_name(HISTORY)
        .run_async(client)
        .await
        .map_err(|e| WarehouseError::Migration(refinery_text(&e)))?;
    Ok(())
}

/// refinery says which migration failed; Postgres says why. Both, so an
/// operator never has to guess ("db error" alone hides the reason).
fn refinery_text(error: &refinery::Error) -> String {
    let Kind::Connection(what, cause) = error.kind() else {
        return error.to_string();
    };
    match cause.downcast_ref::<tokio_postgres::Error>() {
        Some(pg) => format!("{what}: {}", error_text(pg)),
        None => format!("{what}: {cause}"),
    }
}
