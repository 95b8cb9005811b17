//! TLS for the Postgres connection: which mode applies (`postgres.tls`, or a
//! default by host), the rustls client configuration each mode needs, the CA
//! file (`postgres.ca_file`) and the wording of TLS failures.
//!
//! It does not connect, migrate or name the URL: `warehouse` connects with
//! what this module builds, and errors here carry file paths and host:port
//! only, never the URL (it may hold a password).

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
use rustls::{SignatureScheme, client::WantsClientCert};
use serde::{Deserialize, Serialize};
use tokio_postgres::Config;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres_rustls::MakeRustlsConnect;

/// `postgres.tls`: libpq's `sslmode` values that make sense for Supabase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Plain TCP: for a server on this machine or behind a tunnel.
    Disable,
    /// Encrypted; the certificate is only checked when `ca_file` is set.
    Require,
    /// Encrypted, and the certificate must chain to `ca_file` (or this
    /// machine's trusted roots) and name the host.
    VerifyFull,
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsMode::Disable => "disable",
            TlsMode::Require => "require",
            TlsMode::VerifyFull => "verify-full",
        })
    }
}

/// What a connection needs to know about TLS, taken from `[postgres]`.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// `postgres.tls`; `None` lets `mode_for` choose from the URL and host.
    pub mode: Option<TlsMode>,
    /// `postgres.ca_file`, already resolved against the config file's folder.
    pub ca_file: Option<PathBuf>,
}

impl TlsOptions {
    /// The mode for a connection to `config`: `postgres.tls` when set (it
    /// wins over an `sslmode` in the URL); else the URL's own
    /// `sslmode=disable` or `sslmode=require`; else `require` when a CA file
    /// is given (it only means something over TLS); else by host
    /// (`default_mode`).
    pub fn mode_for(&self, config: &Config) -> TlsMode {
        if let Some(mode) = self.mode {
            return mode;
        }
        // tokio-postgres reads `prefer` both when the URL says so and when it
        // says nothing, so only the two explicit words can be honoured.
        match config.get_ssl_mode() {
            SslMode::Disable => return TlsMode::Disable,
            SslMode::Require => return TlsMode::Require,
            _ => {}
        }
        if self.ca_file.is_some() {
            return TlsMode::Require;
        }
        default_mode(config)
    }
}

/// Without any setting: `disable` when every host is this machine
/// (localhost, a loopback address or a Unix socket), where there is no
/// network to protect and local servers rarely have certificates;
/// `require` otherwise, since a Supabase URL carries a password.
pub fn default_mode(config: &Config) -> TlsMode {
    let hosts = config.get_hosts();
    let local = if hosts.is_empty() {
        config.get_hostaddrs().iter().all(IpAddr::is_loopback)
    } else {
        hosts.iter().all(|host| match host {
            Host::Unix(_) => true,
            Host::Tcp(name) => is_local_name(name),
        })
    };
    if local {
        TlsMode::Disable
    } else {
        TlsMode::Require
    }
}

fn is_local_name(name: &str) -> bool {
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// What tokio-postgres should be told, so a `sslmode` in the URL never
/// contradicts the mode chosen here.
pub fn ssl_mode(mode: TlsMode) -> SslMode {
    match mode {
        TlsMode::Disable => SslMode::Disable,
        TlsMode::Require | TlsMode::VerifyFull => SslMode::Require,
    }
}

/// `postgres.ca_file` cannot be used; names the key and the path.
#[derive(Debug, thiserror::Error)]
#[error("key `postgres.ca_file`: cannot use {}: {why}", path.display())]
pub struct CaFileError {
    /// The file as resolved, so the user sees which file was read.
    pub path: PathBuf,
    /// What is wrong with it, in words.
    pub why: String,
}

/// Why no TLS connector could be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error(transparent)]
    CaFile(#[from] CaFileError),
    /// `verify-full` without a CA file and no usable system roots.
    #[error(
        "cannot load this machine's trusted certificates ({0}); set `postgres.ca_file` to the \
         server's CA certificate"
    )]
    SystemRoots(rustls::Error),
    #[error("cannot set up TLS: {0}")]
    Rustls(rustls::Error),
}

/// Reads every certificate of a PEM file into a root store. The file is
/// read again at each connection, so a replaced CA file is picked up by a
/// running daemon.
pub fn read_ca_file(path: &Path) -> Result<RootCertStore, CaFileError> {
    let fail = |why: String| CaFileError {
        path: path.to_owned(),
        why,
    };
    // Read whole first: io errors (not found, permission denied) then read
    // as themselves rather than as PEM trouble.
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert = cert.map_err(|e| fail(format!("not a PEM certificate file ({e})")))?;
        roots
            .add(cert)
            .map_err(|e| fail(format!("holds a certificate that cannot be used ({e})")))?;
    }
    if roots.is_empty() {
        return Err(fail(
            "holds no PEM certificate (a `-----BEGIN CERTIFICATE-----` block)".into(),
        ));
    }
    Ok(roots)
}

/// The rustls connector for `mode`, or `None` for `disable`.
pub fn connector(
    mode: TlsMode,
    ca_file: Option<&Path>,
) -> Result<Option<MakeRustlsConnect>, TlsSetupError> {
    if mode == TlsMode::Disable {
        return Ok(None);
    }
    // Our own provider rather than the process default, which may not be
    // installed yet (only the AMC client installs one).
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(TlsSetupError::Rustls)?;
    let builder: rustls::ConfigBuilder<ClientConfig, WantsClientCert> = match (mode, ca_file) {
        // With a CA file, `require` checks as much as `verify-full`: the
        // file is there to be trusted, and a check that is skipped when the
        // user gave what it needs would surprise.
        (_, Some(path)) => builder.with_root_certificates(read_ca_file(path)?),
        (TlsMode::Require, None) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly {
                algorithms: provider.signature_verification_algorithms,
            })),
        (_, None) => {
            let verifier = rustls_platform_verifier::Verifier::new(provider)
                .map_err(TlsSetupError::SystemRoots)?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
        }
    };
    Ok(Some(MakeRustlsConnect::new(builder.with_no_client_auth())))
}

/// `require` without a CA file: encryption against passive listening, as
/// libpq's `sslmode=require`. Any certificate is accepted, but the handshake
/// signatures are still checked, so the peer must hold the key of the
/// certificate it shows.
#[derive(Debug)]
struct EncryptOnly {
    /// The provider's algorithms, for the handshake signatures.
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The reason a connection failed in TLS, in words with rustls' own error
/// after them; `None` when the failure was not about TLS.
pub fn tls_failure(error: &tokio_postgres::Error) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(current) = cause {
        if let Some(tls) = as_rustls(current) {
            return Some(explain(tls));
        }
        cause = current.source();
    }
    // tokio-postgres keeps its error kinds private; this is the text of its
    // TLS kind, whose source is a plain message ("server does not support
    // TLS", "no hostname provided for TLS handshake").
    if error.to_string() != "error performing TLS handshake" {
        return None;
    }
    let detail = std::error::Error::source(error).map_or_else(String::new, |s| s.to_string());
    Some(if detail.contains("does not support TLS") {
        format!(
            "the server does not accept TLS ({detail}); set `postgres.tls = \"disable\"` only if \
             the network to it is trusted"
        )
    } else if detail.contains("no hostname") {
        format!("TLS needs a host name, and a Unix socket has none ({detail})")
    } else {
        detail
    })
}

/// tokio-rustls reports handshake failures as `io::Error`s wrapping the
/// rustls error, and `io::Error::source` skips over it: look inside.
fn as_rustls<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    error.downcast_ref::<rustls::Error>().or_else(|| {
        error
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    })
}

fn explain(error: &rustls::Error) -> String {
    use CertificateError as C;
    let what = match error {
        rustls::Error::InvalidCertificate(certificate) => match certificate {
            C::UnknownIssuer => "certificate is not trusted",
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "certificate does not name this host"
            }
            C::Expired | C::ExpiredContext { .. } => "certificate has expired",
            C::NotValidYet | C::NotValidYetContext { .. } => "certificate is not valid yet",
            C::Revoked => "certificate is revoked",
            _ => "certificate was refused",
        },
        rustls::Error::AlertReceived(_) => "the server ended the handshake",
        _ => "handshake failed",
    };
    format!("{what} ({error})")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chosen(url: &str) -> TlsMode {
        TlsOptions::default().mode_for(&url.parse().expect("test URL parses"))
    }

    #[test]
    fn local_hosts_and_unix_sockets_default_to_disable() {
        for url in [
            "postgres://u:p@localhost:5432/db",
            "postgres://u@LOCALHOST/db",
            "postgres://u@127.0.0.1:6543/db",
            "postgres://u@[::1]:5432/db",
            "host=::1 user=u",
            "host=/var/run/postgresql user=u",
            "postgresql://u@%2Fvar%2Frun%2Fpostgresql/db",
            "host=localhost,127.0.0.1 user=u",
        ] {
            assert_eq!(chosen(url), TlsMode::Disable, "{url}");
        }
    }

    #[test]
    fn other_hosts_default_to_require() {
        for url in [
            "postgres://u:p@db.example.supabase.co:5432/postgres",
            "postgres://u@aws-0-eu-central-1.pooler.supabase.com:6543/postgres",
            "postgres://u@10.0.0.5/db",
            "host=localhost,db.example.com user=u",
        ] {
            assert_eq!(chosen(url), TlsMode::Require, "{url}");
        }
    }

    #[test]
    fn the_tls_key_wins_over_the_url_and_the_host() {
        let options = TlsOptions {
            mode: Some(TlsMode::VerifyFull),
            ca_file: None,
        };
        let config = "postgres://u@localhost/db?sslmode=disable".parse().unwrap();
        assert_eq!(options.mode_for(&config), TlsMode::VerifyFull);
    }

    #[test]
    fn without_the_tls_key_an_explicit_sslmode_or_a_ca_file_decides() {
        assert_eq!(
            chosen("postgres://u@localhost/db?sslmode=require"),
            TlsMode::Require
        );
        assert_eq!(
            chosen("postgres://u@db.example.com/db?sslmode=disable"),
            TlsMode::Disable
        );
        let with_ca = TlsOptions {
            mode: None,
            ca_file: Some("ca.pem".into()),
        };
        let config = "postgres://u@localhost/db".parse().unwrap();
        assert_eq!(with_ca.mode_for(&config), TlsMode::Require);
    }

    #[test]
    fn tls_modes_read_as_libpq_spells_them() {
        #[derive(Deserialize)]
        struct Holder {
            tls: TlsMode,
        }
        for (text, mode) in [
            ("disable", TlsMode::Disable),
            ("require", TlsMode::Require),
            ("verify-full", TlsMode::VerifyFull),
        ] {
            let holder: Holder = toml::from_str(&format!("tls = \"{text}\"")).unwrap();
            assert_eq!(holder.tls, mode);
            assert_eq!(mode.to_string(), text);
        }
    }

    #[test]
    fn a_file_without_certificates_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let error = read_ca_file(&path).unwrap_err().to_string();
        assert!(error.contains("postgres.ca_file"), "{error}");
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(error.contains("no PEM certificate"), "{error}");

        std::fs::write(
            &path,
            "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let error = read_ca_file(&path).unwrap_err().to_string();
        assert!(error.contains("cannot be used"), "{error}");

        let missing = dir.path().join("missing.pem");
        let error = read_ca_file(&missing).unwrap_err().to_string();
        assert!(error.contains("missing.pem"), "{error}");
    }
}
