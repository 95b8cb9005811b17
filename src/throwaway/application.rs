//! A database in the shape of the application chronicle replaces
//! (../shared/seed-app/schema.sql, read from where the project's shared
//! folder keeps it), with Supabase's roles and default grants and the rows
//! a test schedule needs: its owner, AMC account and instance, and saved
//! workflow. For the tests and benchmarks only.
//!
//! Owns the seed rows; the schema is the application's.

use tokio_postgres::Client;
use uuid::Uuid;

/// Where the application's schema is kept, beside the project's root.
pub const SCHEMA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/seed-app/schema.sql");

/// The AMC ids the seeded rows carry (what a test schedule names).
pub const INSTANCE_ID: &str = "amctest01";
pub const WORKFLOW_ID: &str = "campaign_performance";

/// The application's rows of the seeded user, instance and workflow.
#[derive(Debug, Clone)]
pub struct Application {
    pub user_id: Uuid,
    pub instance_uuid: Uuid,
    pub workflow_uuid: Uuid,
}

/// Supabase's roles, cluster-wide: make them once per cluster.
pub const ROLES: &str = "
DO $$ BEGIN CREATE ROLE anon NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE ROLE authenticated NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE ROLE service_role NOLOGIN BYPASSRLS; EXCEPTION WHEN duplicate_object THEN NULL; END $$;";

/// Supabase's default grants in a database, as a Supabase project has
/// them: `anon`, `authenticated` and `service_role` may use `public`, and
/// every table made there is theirs too.
const GRANTS: &str = "
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
GRANT ALL ON ALL TABLES IN SCHEMA public TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON SEQUENCES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON FUNCTIONS TO anon, authenticated, service_role;";

/// Gives a fresh database Supabase's grants (`ROLES` must exist) and, with
/// `application`, the application's schema and seeded rows.
pub async fn prepare(
    client: &Client,
    application: bool,
) -> Result<Option<Application>, Box<dyn std::error::Error + Send + Sync>> {
    client.batch_execute(GRANTS).await?;
    if !application {
        return Ok(None);
    }
    let schema = std::fs::read_to_string(SCHEMA)
        .map_err(|e| format!("cannot read the application's schema at {SCHEMA}: {e}"))?;
    client.batch_execute(&schema).await?;
    // Tables the schema made existed before the default grants applied.
    client
        .batch_execute(
            "GRANT ALL ON ALL TABLES IN SCHEMA public TO anon, authenticated, service_role",
        )
        .await?;
    let user_id: Uuid = client
        .query_one(
            "INSERT INTO users (email, name) VALUES ('analyst@example.com', 'Analyst') RETURNING id",
            &[],
        )
        .await?
        .get(0);
    let account: Uuid = client
        .query_one(
            "INSERT INTO amc_accounts (account_id, account_name, marketplace_id, region, user_id)
             VALUES ('ENTITY1', 'Brand', 'ATVPDKIKX0DER', 'na', $1) RETURNING id",
            &[&user_id],
        )
        .await?
        .get(0);
    let instance_uuid: Uuid = client
        .query_one(
            "INSERT INTO amc_instances (instance_id, instance_name, region, account_id)
             VALUES ($1, 'Test instance', 'na', $2) RETURNING id",
            &[&INSTANCE_ID, &account],
        )
        .await?
        .get(0);
    let workflow_uuid: Uuid = client
        .query_one(
            "INSERT INTO workflows (workflow_id, name, instance_id, sql_query, user_id, amc_workflow_id)
             VALUES ('wf_campaign', 'Campaign performance', $1, 'SELECT 1', $2, $3)
             RETURNING id",
            &[&instance_uuid, &user_id, &WORKFLOW_ID],
        )
        .await?
        .get(0);
    Ok(Some(Application {
        user_id,
        instance_uuid,
        workflow_uuid,
    }))
}
