//! TLS to Postgres (`postgres.tls`, `postgres.ca_file`) against a throwaway
//! cluster with `ssl=on` and a certificate for `localhost` signed by a CA made
//! here with the `openssl` command. One such cluster serves every test in
//! this file (each test has its own database); it never uses
//! `CHRONICLE_TEST_DATABASE_URL`, whose server may have no TLS.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use chronicle::throwaway::Cluster;
use chronicle::warehouse::tls::{TlsMode, TlsOptions};
use chronicle::warehouse::{Warehouse, WarehouseError};

use crate::helpers::{
    completed_weeks, config, connect, fresh_database, quick_sim, run_chronicle, schedule,
    spawn_app_with_database, text,
};

/// The TLS cluster and its certificates, for the whole test binary.
static SERVER: OnceLock<Mutex<Option<TlsServer>>> = OnceLock::new();

struct TlsServer {
    /// Declared first so it stops before the certificates go.
    cluster: Cluster,
    /// Holds `ca.crt` (the server's CA) and `other-ca.crt` (a CA that signed nothing).
    certs: tempfile::TempDir,
}

extern "C" fn stop_server() {
    if let Some(server) = SERVER.get() {
        drop(server.lock().unwrap_or_else(|p| p.into_inner()).take());
    }
}

/// Where the TLS cluster is and which files to trust.
struct Server {
    port: u16,
    ca_file: PathBuf,
    other_ca_file: PathBuf,
}

fn server() -> Server {
    let server = SERVER.get_or_init(|| {
        let certs = tempfile::tempdir().unwrap();
        make_certificates(certs.path());
        let cert = std::fs::read(certs.path().join("server.crt")).unwrap();
        let key = std::fs::read(certs.path().join("server.key")).unwrap();
        let cluster = Cluster::start_with(
            &[
                ("ssl", "on"),
                ("ssl_cert_file", "server.crt"),
                ("ssl_key_file", "server.key"),
            ],
            &[("server.crt", &cert), ("server.key", &key)],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        // Statics are never dropped: stop the server when the tests exit.
        unsafe { libc::atexit(stop_server) };
        Mutex::new(Some(TlsServer { cluster, certs }))
    });
    let server = server.lock().unwrap_or_else(|p| p.into_inner());
    let server = server
        .as_ref()
        .expect("the server lives until the tests exit");
    Server {
        port: server.cluster.port(),
        ca_file: server.certs.path().join("ca.crt"),
        other_ca_file: server.certs.path().join("other-ca.crt"),
    }
}

/// A CA, a server certificate it signs for `localhost` only (so reaching the
/// server as 127.0.0.1 shows a name mismatch), and a second, unrelated CA.
fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| {
                panic!("the TLS tests need the `openssl` command (Debian package openssl): {e}")
            });
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let p256 = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    for (name, subject) in [
        ("ca", "/CN=chronicle test CA"),
        ("other-ca", "/CN=chronicle other CA"),
    ] {
        let key = format!("{name}.key");
        let cert = format!("{name}.crt");
        let mut args = vec!["req", "-x509", "-nodes", "-days", "2", "-subj", subject];
        args.extend(p256);
        args.extend(["-keyout", &key, "-out", &cert]);
        args.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
        args.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
        openssl(&args);
    }
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost\n",
    )
    .unwrap();
    let mut request = vec!["req", "-nodes", "-subj", "/CN=localhost"];
    request.extend(p256);
    request.extend(["-keyout", "server.key", "-out", "server.csr"]);
    openssl(&request);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-set_serial",
        "2",
        "-days",
        "2",
        "-sha256",
        "-extfile",
        "server.ext",
        "-out",
        "server.crt",
    ]);
}

impl Server {
    fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A fresh database; its URL names the host 127.0.0.1.
    async fn database(&self) -> String {
        fresh_database(&self.admin_url()).await
    }

    /// Whether each open connection to `url`'s database is encrypted, seen
    /// from the server side, so the product needs no test-only query.
    async fn encrypted(&self, url: &str) -> Vec<bool> {
        let database = url.rsplit('/').next().unwrap();
        let admin = connect(&self.admin_url()).await;
        admin
            .query(
                "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
                 WHERE a.datname = $1",
                &[&database],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect()
    }
}

fn on_localhost(url: &str) -> String {
    url.replacen("@127.0.0.1:", "@localhost:", 1)
}

fn options(mode: Option<TlsMode>, ca_file: Option<&Path>) -> TlsOptions {
    TlsOptions {
        mode,
        ca_file: ca_file.map(Path::to_owned),
    }
}

async fn refusal(url: &str, tls: &TlsOptions) -> WarehouseError {
    match Warehouse::connect(url, tls).await {
        Ok(_) => panic!("connected with {tls:?}"),
        Err(error) => error,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_with_the_ca_file_connects_encrypted_and_syncs() {
    let server = server();
    let url = on_localhost(&server.database().await);

    let warehouse = Warehouse::connect(
        &url,
        &options(Some(TlsMode::VerifyFull), Some(&server.ca_file)),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(server.encrypted(&url).await, [true]);
    drop(warehouse);

    // The binary, with a relative ca_file taken from the config's folder.
    let app = spawn_app_with_database(quick_sim(), &schedule(2, 0), url.clone()).await;
    std::fs::copy(&server.ca_file, app.dir.path().join("supabase-ca.crt")).unwrap();
    app.set_config(&config(&app.sim, &url).replace(
        "[postgres]\n",
        "[postgres]\ntls = \"verify-full\"\nca_file = \"supabase-ca.crt\"\n",
    ));
    let output = app.chronicle(&["backfill", "weekly"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let synced = app.chronicle(&["sync"]).await;
    assert_eq!(synced.status.code(), Some(0), "{}", text(&synced));
    assert!(
        String::from_utf8_lossy(&synced.stdout).contains("0 updates pending sync"),
        "{}",
        text(&synced)
    );
    assert_eq!(completed_weeks(&url).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_without_a_ca_file_says_the_certificate_is_not_trusted() {
    let server = server();
    let url = on_localhost(&server.database().await);
    let error = refusal(&url, &options(Some(TlsMode::VerifyFull), None)).await;
    let message = error.to_string();
    assert!(matches!(error, WarehouseError::Tls { .. }), "{message}");
    assert!(
        message.starts_with(&format!("TLS to localhost:{} failed: ", server.port)),
        "{message}"
    );
    assert!(message.contains("certificate is not trusted"), "{message}");
    assert!(message.contains("UnknownIssuer"), "{message}");
    assert!(
        !message.contains("postgres://"),
        "the URL leaked: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_refuses_a_certificate_that_does_not_name_the_host() {
    let server = server();
    // The certificate names localhost only.
    let url = server.database().await;
    let error = refusal(
        &url,
        &options(Some(TlsMode::VerifyFull), Some(&server.ca_file)),
    )
    .await;
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("TLS to 127.0.0.1:{} failed: ", server.port)),
        "{message}"
    );
    assert!(
        message.contains("certificate does not name this host"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_without_a_ca_file_connects_encrypted_to_any_certificate() {
    let server = server();
    let url = server.database().await;
    let _warehouse = Warehouse::connect(&url, &options(Some(TlsMode::Require), None))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(server.encrypted(&url).await, [true]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_with_a_ca_file_refuses_a_server_that_ca_did_not_sign() {
    let server = server();
    let url = on_localhost(&server.database().await);
    let error = refusal(
        &url,
        &options(Some(TlsMode::Require), Some(&server.other_ca_file)),
    )
    .await;
    let message = error.to_string();
    assert!(message.contains("certificate is not trusted"), "{message}");

    let _warehouse = Warehouse::connect(&url, &options(None, Some(&server.ca_file)))
        .await
        .unwrap_or_else(|e| panic!("a CA file alone means require, verified: {e}"));
    assert_eq!(server.encrypted(&url).await, [true]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_and_the_default_for_127_0_0_1_connect_plain_to_a_tls_server() {
    let server = server();
    let url = server.database().await;
    let disabled = Warehouse::connect(&url, &options(Some(TlsMode::Disable), None))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(server.encrypted(&url).await, [false]);
    drop(disabled);

    // tls wins over the URL's sslmode.
    let with_sslmode = format!("{url}?sslmode=require");
    let disabled = Warehouse::connect(&with_sslmode, &options(Some(TlsMode::Disable), None))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    drop(disabled);

    let url = server.database().await;
    let _default = Warehouse::connect(&url, &TlsOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(server.encrypted(&url).await, [false]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_ca_file_is_an_error_naming_the_key_and_the_path() {
    let server = server();
    let url = on_localhost(&server.database().await);
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "this is no certificate\n").unwrap();

    let error = refusal(&url, &options(Some(TlsMode::VerifyFull), Some(&garbage))).await;
    let message = error.to_string();
    assert!(matches!(error, WarehouseError::CaFile(_)), "{message}");
    assert!(message.contains("postgres.ca_file"), "{message}");
    assert!(
        message.contains(&garbage.display().to_string()),
        "{message}"
    );

    // The binary stops at the configuration, exit 2, before any work.
    let config_path = dir.path().join("config.toml");
    std::fs::write(
        &config_path,
        format!("[postgres]\nurl = \"{url}\"\ntls = \"verify-full\"\nca_file = \"garbage.pem\"\n"),
    )
    .unwrap();
    let output = run_chronicle(&config_path, &["sync"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("postgres.ca_file"), "{}", text(&output));
    assert!(stderr.contains("garbage.pem"), "{}", text(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_tls_mode_stops_the_command_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("config.toml");
    std::fs::write(
        &config_path,
        "[postgres]\nurl = \"postgres://u@db.example.com/postgres\"\ntls = \"verify-ca\"\n",
    )
    .unwrap();
    let output = run_chronicle(&config_path, &["sync"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("postgres.tls"), "{}", text(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_against_a_server_without_tls_says_so() {
    // A cluster of its own, without ssl.
    let cluster = tokio::task::spawn_blocking(Cluster::start)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    let url = fresh_database(&cluster.url("postgres")).await;
    let error = refusal(&url, &options(Some(TlsMode::Require), None)).await;
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("TLS to 127.0.0.1:{} failed: ", cluster.port())),
        "{message}"
    );
    assert!(
        message.contains("the server does not accept TLS"),
        "{message}"
    );
}
