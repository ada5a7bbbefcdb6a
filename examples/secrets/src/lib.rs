//! Course exercise 19: a silo's secrets come from a [`SecretProvider`],
//! never from the source tree or the command line.
//!
//! The silo's configuration ([`SiloConfig`]) names where things are: the
//! membership table's URL *without* a password, the CA and the silo's
//! certificate. The two secrets, the PostgreSQL password
//! ([`DB_PASSWORD`]) and the TLS private key ([`TLS_KEY`]), come from a
//! provider: files only their owner may read ([`FileSecrets`]), the
//! environment ([`EnvSecrets`]) or a password manager's CLI
//! ([`CommandSecrets`]). [`start_silo`] joins the table and serves under
//! mutual TLS; what it logs shows the URL through
//! [`redact_url`](actor_core::redact_url), and its errors name secrets,
//! never their values.
//!
//! [`FileSecrets`]: actor_cluster::FileSecrets
//! [`EnvSecrets`]: actor_cluster::EnvSecrets
//! [`CommandSecrets`]: actor_cluster::CommandSecrets

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actor_cluster::{
    ClusterConfig, ClusterSilo, MembershipTable, SecretProvider, SqlMembership, TlsConfig,
    url_with_password,
};
use actor_core::prelude::*;
use anyhow::Context as _;
use tokio::net::TcpListener;

/// The name of the PostgreSQL password in the provider.
pub const DB_PASSWORD: &str = "db_password";
/// The name of the silo's TLS private key (PEM) in the provider.
pub const TLS_KEY: &str = "tls_key";
/// The name every silo certificate of the demo cluster carries.
pub const SILO_NAME: &str = "silo.secrets.example";
/// The name of the demo cluster's client certificates.
pub const CLIENT_NAME: &str = "client.secrets.example";

/// Where a silo's table and certificates are: no secret in here.
#[derive(Debug, Clone)]
pub struct SiloConfig {
    /// The membership table, `postgres://user@host:port/db`, with no
    /// password (one given here is replaced by the provider's).
    pub table_url: String,
    /// The cluster's id in the table.
    pub cluster_id: String,
    /// The CA certificate (PEM).
    pub ca: PathBuf,
    /// The silo's certificate (PEM).
    pub cert: PathBuf,
}

/// A grain that greets.
#[derive(Default)]
pub struct Greeter {
    greeted: u64,
}

impl Grain for Greeter {
    const TYPE_NAME: &'static str = "secrets.greeter";
}

#[grain_methods]
impl Greeter {
    /// Greets `name`, counting.
    pub async fn hello(&mut self, name: String) -> String {
        self.greeted += 1;
        format!("hello {name} (#{})", self.greeted)
    }
}

/// The membership table at `config.table_url`, with the password from
/// `secrets`.
pub async fn table(
    config: &SiloConfig,
    secrets: &dyn SecretProvider,
) -> anyhow::Result<Arc<dyn MembershipTable>> {
    let password = secrets.secret(DB_PASSWORD)?;
    let url = url_with_password(&config.table_url, &password)?;
    let table = SqlMembership::connect(url.expose(), &config.cluster_id, Duration::from_secs(5))
        .await
        .with_context(|| format!("cannot open the membership table of {}", config.cluster_id))?;
    tracing::info!(
        url = %actor_core::redact_url(url.expose()),
        "membership table connected"
    );
    Ok(Arc::new(table))
}

/// The silo's TLS configuration: its certificate from `config`, its key
/// from `secrets`.
pub fn silo_tls(config: &SiloConfig, secrets: &dyn SecretProvider) -> anyhow::Result<TlsConfig> {
    let key = secrets.secret(TLS_KEY)?;
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    let tls = TlsConfig::from_pem(
        &read(&config.ca)?,
        &read(&config.cert)?,
        key.expose().as_bytes(),
    )?
    .with_server_name(SILO_NAME)
    .accept_peer_name(CLIENT_NAME);
    Ok(tls)
}

/// Starts a silo hosting [`Greeter`] on `listener`, in the cluster whose
/// table and certificates `config` names, with its secrets from `secrets`.
pub async fn start_silo(
    config: &SiloConfig,
    secrets: &dyn SecretProvider,
    listener: TcpListener,
) -> anyhow::Result<ClusterSilo> {
    let tls = silo_tls(config, secrets)?;
    let table = table(config, secrets).await?;
    let silo = ClusterSilo::start(
        Silo::builder().name("secrets-silo").grain::<Greeter>(),
        listener,
        table,
        ClusterConfig::default().with_tls(tls),
    )
    .await?;
    tracing::info!(endpoint = %silo.address().endpoint, "silo started under mutual TLS");
    Ok(silo)
}

/// A throwaway CA with a silo and a client certificate, written to
/// files, for the demo and the tests. The silo's key goes into the
/// secrets directory (mode 0600), never beside the certificates.
#[derive(Debug)]
pub struct DemoPki {
    /// The CA certificate.
    pub ca: PathBuf,
    /// The silo's certificate.
    pub silo_cert: PathBuf,
    /// The client's TLS configuration.
    pub client: TlsConfig,
}

impl DemoPki {
    /// Makes the certificates: public ones in `dir`, the silo's key as
    /// the secret [`TLS_KEY`] in `secrets_dir`.
    pub fn create(dir: &Path, secrets_dir: &Path) -> anyhow::Result<DemoPki> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "example-secrets demo CA");
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf = |name: &str| -> anyhow::Result<(String, String)> {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(vec![name.to_owned()])?;
            params.distinguished_name.push(DnType::CommonName, name);
            Ok((params.signed_by(&key, &issuer)?.pem(), key.serialize_pem()))
        };
        let (silo_cert, silo_key) = leaf(SILO_NAME)?;
        let (client_cert, client_key) = leaf(CLIENT_NAME)?;
        let ca = dir.join("ca.pem");
        let silo_cert_path = dir.join("silo.pem");
        std::fs::write(&ca, ca_cert.pem())?;
        std::fs::write(&silo_cert_path, silo_cert)?;
        write_private(&secrets_dir.join(TLS_KEY), &silo_key)?;
        let client = TlsConfig::from_pem(
            ca_cert.pem().as_bytes(),
            client_cert.as_bytes(),
            client_key.as_bytes(),
        )?
        .with_server_name(SILO_NAME);
        Ok(DemoPki {
            ca,
            silo_cert: silo_cert_path,
            client,
        })
    }
}

/// Writes `text` to a file only its owner may read and write.
pub fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}
