//! HTTPS for the dashboard: a certificate and key, from PEM files or in
//! memory, served with rustls on the ring provider (the workspace's one
//! crypto provider). Server authentication only: who may read the
//! figures is still the access rule's (token or basic auth), which TLS
//! keeps out of sight of the network.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Result};

/// The dashboard's certificate chain and private key (see
/// [`DashboardConfig::tls`](crate::DashboardConfig::tls)). Its `Debug`
/// never shows the key.
#[derive(Clone)]
pub struct DashboardTls {
    config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for DashboardTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DashboardTls").finish_non_exhaustive()
    }
}

impl DashboardTls {
    /// From DER: the certificate chain (the dashboard's own certificate
    /// first) and its private key (PKCS#8, PKCS#1 or SEC1).
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self> {
        if chain.is_empty() {
            return Err(Error::Config(
                "dashboard TLS: no certificate given; give the dashboard's certificate chain"
                    .into(),
            ));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config(format!("dashboard TLS: {e}")))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| {
                Error::Config(format!(
                    "dashboard TLS: the certificate and key do not go together: {e}"
                ))
            })?;
        // The dashboard speaks HTTP/1.1 (its refusals are rewritten as
        // JSON on that protocol).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(DashboardTls {
            config: Arc::new(config),
        })
    }

    /// From PEM text: the certificate chain and the private key.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self> {
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| {
                Error::Config(format!(
                    "dashboard TLS: the certificate PEM is not valid: {e}"
                ))
            })?;
        if chain.is_empty() {
            return Err(Error::Config(
                "dashboard TLS: the certificate PEM holds no certificate (a `BEGIN CERTIFICATE` block)"
                    .into(),
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
            Error::Config(format!(
                "dashboard TLS: no private key in the key PEM ({e}); give a PKCS#8, PKCS#1 or SEC1 key"
            ))
        })?;
        DashboardTls::from_der(chain, key)
    }

    /// From PEM files. The key file is refused when other users may read
    /// it (as [`actor_cluster::read_private_file`] says).
    pub fn from_pem_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self> {
        let cert = cert.as_ref();
        let cert_pem = std::fs::read(cert).map_err(|e| {
            Error::Config(format!(
                "dashboard TLS: cannot read {}: {e}",
                cert.display()
            ))
        })?;
        let key = actor_cluster::read_private_file(key.as_ref())
            .map_err(|e| Error::Config(format!("dashboard TLS: {e}")))?;
        DashboardTls::from_pem(&cert_pem, key.expose().as_bytes())
    }

    pub(crate) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }
}
