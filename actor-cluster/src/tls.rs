//! Mutual TLS at the transport seam: a [`TlsConfig`] turns any
//! [`Connector`] into one that speaks TLS, and any [`LinkListener`] into
//! one whose connections complete a TLS handshake before the silo's gRPC
//! server sees a byte of them.
//!
//! Both sides present a certificate and both check the other's against
//! the cluster's CA (rustls on the ring provider, TLS 1.2 and 1.3). A
//! connection whose peer has no certificate, one the CA did not sign, an
//! expired one or one without the required name fails in the handshake:
//! it never reaches the link, directory or stats services, so it can
//! neither call a grain nor probe, vote or register anything. Without a
//! `TlsConfig` none of this code runs: plain TCP is unchanged.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

use crate::error::{Error, Result};
use crate::transport::{BoxedIo, Connector};

/// The certificates of one silo or client of a TLS cluster: the cluster's
/// CA, this process's own certificate chain and private key, and the names
/// to check.
///
/// - **Dialing** (a silo's links, probes and directory calls to its peers;
///   a client's calls to its gateways) checks that the peer's certificate
///   chains to the CA, is in its validity period, and carries the
///   [server name](Self::with_server_name) (by default: the host of the
///   endpoint dialed, an IP address or a DNS name).
/// - **Accepting** (a silo's port) checks that the peer's certificate
///   chains to the CA and is in its validity period, and, when a server
///   name or [peer names](Self::accept_peer_name) are set, that it carries
///   one of them. Without names any certificate the CA signed is accepted:
///   then the CA itself is the boundary of the cluster, so give each
///   cluster a CA of its own.
///
/// Set it on a silo with [`ClusterConfig::with_tls`](crate::ClusterConfig::with_tls)
/// and on a client with
/// [`ClusterClient::connect_with_tls`](crate::ClusterClient::connect_with_tls).
/// Its `Debug` never shows the key.
#[derive(Clone)]
pub struct TlsConfig {
    roots: Arc<RootCertStore>,
    chain: Arc<Vec<CertificateDer<'static>>>,
    key: Arc<PrivateKeyDer<'static>>,
    server_name: Option<String>,
    peer_names: Vec<String>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("roots", &self.roots.len())
            .field("chain", &self.chain.len())
            .field("key", &"***")
            .field("server_name", &self.server_name)
            .field("peer_names", &self.peer_names)
            .finish()
    }
}

impl TlsConfig {
    /// From certificates in memory: the CA certificates to trust, this
    /// process's chain (its own certificate first) and its private key
    /// (PKCS#8, PKCS#1 or SEC1).
    pub fn from_der(
        ca: Vec<CertificateDer<'static>>,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self> {
        let mut roots = RootCertStore::empty();
        for cert in ca {
            roots
                .add(cert)
                .map_err(|e| Error::Config(format!("TLS: a CA certificate is invalid: {e}")))?;
        }
        if roots.is_empty() {
            return Err(Error::Config(
                "TLS: no CA certificate given; give the cluster's CA certificate".into(),
            ));
        }
        if chain.is_empty() {
            return Err(Error::Config(
                "TLS: no certificate given for this process; give its certificate chain".into(),
            ));
        }
        Ok(TlsConfig {
            roots: Arc::new(roots),
            chain: Arc::new(chain),
            key: Arc::new(key),
            server_name: None,
            peer_names: Vec::new(),
        })
    }

    /// From PEM text: the CA certificate(s), this process's certificate
    /// chain and its private key.
    pub fn from_pem(ca_pem: &[u8], cert_pem: &[u8], key_pem: &[u8]) -> Result<Self> {
        let ca = certs("CA", ca_pem)?;
        let chain = certs("certificate", cert_pem)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
            Error::Config(format!(
                "TLS: no private key in the key PEM ({e}); give a PKCS#8, PKCS#1 or SEC1 key"
            ))
        })?;
        TlsConfig::from_der(ca, chain, key)
    }

    /// From PEM files. The key file is refused when other users may read
    /// it (see [`read_private_file`](crate::read_private_file)).
    pub fn from_pem_files(
        ca: impl AsRef<Path>,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self> {
        let read = |p: &Path| {
            std::fs::read(p)
                .map_err(|e| Error::Config(format!("TLS: cannot read {}: {e}", p.display())))
        };
        let key = crate::secrets::read_private_file(key.as_ref())?;
        TlsConfig::from_pem(
            &read(ca.as_ref())?,
            &read(cert.as_ref())?,
            key.expose().as_bytes(),
        )
    }

    /// The name every silo's certificate carries (a DNS name such as
    /// `silo.orders.internal`, or an IP address): checked by whoever dials
    /// a silo, and required of the peers a silo accepts. Without it a
    /// dialer checks the endpoint's host and a silo accepts any peer the
    /// CA signed.
    pub fn with_server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// Also accepts connecting peers whose certificate carries `name`
    /// (clients' certificates, say, which need not carry the silos'
    /// name). Once a server name or a peer name is set, a silo accepts only
    /// certificates that carry one of them.
    pub fn accept_peer_name(mut self, name: impl Into<String>) -> Self {
        self.peer_names.push(name.into());
        self
    }

    /// `inner` with TLS on top: every stream it opens completes a TLS
    /// handshake (presenting this process's certificate) before it is
    /// used.
    pub fn connector(&self, inner: Arc<dyn Connector>) -> Result<Arc<dyn Connector>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls_error)?
            .with_root_certificates(self.roots.clone())
            .with_client_auth_cert(self.chain.to_vec(), self.key.clone_key())
            .map_err(|e| {
                Error::Config(format!(
                    "TLS: this process's certificate and key do not go together: {e}"
                ))
            })?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        let name = match &self.server_name {
            Some(n) => Some(server_name(n)?),
            None => None,
        };
        Ok(Arc::new(TlsConnector {
            inner,
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            name,
        }))
    }

    /// The server side: what a [`LinkListener`](crate::LinkListener)
    /// needs to require TLS of its connections.
    pub(crate) fn acceptor(&self) -> Result<TlsAcceptor> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let webpki = rustls::server::WebPkiClientVerifier::builder_with_provider(
            self.roots.clone(),
            provider.clone(),
        )
        .build()
        .map_err(|e| Error::Config(format!("TLS: cannot check client certificates: {e}")))?;
        let mut names = Vec::new();
        for n in self.server_name.iter().chain(&self.peer_names) {
            names.push(server_name(n)?);
        }
        let verifier = Arc::new(NamedClientVerifier {
            inner: webpki,
            names,
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls_error)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.to_vec(), self.key.clone_key())
            .map_err(|e| {
                Error::Config(format!(
                    "TLS: this silo's certificate and key do not go together: {e}"
                ))
            })?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(TlsAcceptor(tokio_rustls::TlsAcceptor::from(Arc::new(
            config,
        ))))
    }
}

fn tls_error(e: rustls::Error) -> Error {
    Error::Config(format!("TLS: {e}"))
}

fn certs(what: &str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Config(format!("TLS: the {what} PEM is not valid: {e}")))?;
    if certs.is_empty() {
        return Err(Error::Config(format!(
            "TLS: the {what} PEM holds no certificate (a `BEGIN CERTIFICATE` block)"
        )));
    }
    Ok(certs)
}

fn server_name(name: &str) -> Result<ServerName<'static>> {
    ServerName::try_from(name.to_owned()).map_err(|e| {
        Error::Config(format!(
            "TLS: `{name}` is not a DNS name or an IP address: {e}"
        ))
    })
}

/// The host part of a `host:port` endpoint, as a TLS server name.
fn endpoint_host(endpoint: &str) -> io::Result<ServerName<'static>> {
    let host = match endpoint.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => endpoint,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("TLS: the host of `{endpoint}` is not a DNS name or an IP address: {e}"),
        )
    })
}

/// A [`Connector`] that runs a TLS handshake over its inner connector's
/// streams.
struct TlsConnector {
    inner: Arc<dyn Connector>,
    tls: tokio_rustls::TlsConnector,
    name: Option<ServerName<'static>>,
}

impl Connector for TlsConnector {
    fn connect(&self, endpoint: &str) -> BoxFuture<'static, io::Result<BoxedIo>> {
        let name = match &self.name {
            Some(n) => Ok(n.clone()),
            None => endpoint_host(endpoint),
        };
        let connect = self.inner.connect(endpoint);
        let tls = self.tls.clone();
        let endpoint = endpoint.to_owned();
        Box::pin(async move {
            let name = name?;
            let io = connect.await?;
            let stream = tls.connect(name, io).await.map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("TLS handshake with {endpoint} failed: {e}"),
                )
            })?;
            Ok(Box::new(stream) as BoxedIo)
        })
    }
}

/// Checks a client's chain with webpki, then its names.
#[derive(Debug)]
struct NamedClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    /// A peer's certificate must carry one of these (when not empty).
    names: Vec<ServerName<'static>>,
}

impl ClientCertVerifier for NamedClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if self.names.is_empty() {
            return Ok(verified);
        }
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        if self
            .names
            .iter()
            .any(|n| rustls::client::verify_server_name(&cert, n).is_ok())
        {
            Ok(verified)
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The server half of a TLS transport, held by a
/// [`LinkListener`](crate::LinkListener).
#[derive(Clone)]
pub(crate) struct TlsAcceptor(tokio_rustls::TlsAcceptor);

/// Handshakes still to finish at once; further accepted connections wait
/// (the per-address cap already bounds what one peer can hold).
const HANDSHAKE_QUEUE: usize = 64;

impl TlsAcceptor {
    /// The connections of `accepted` that complete a TLS handshake within
    /// `timeout`, as TLS streams (each with the value that came with it,
    /// its per-address slot). Handshakes run side by side, so a peer that
    /// stalls its handshake holds up no one else; one that fails is
    /// closed and logged (at most every 10 s, with a count). Accept
    /// errors pass through. The accept loop stops when the returned stream
    /// is dropped.
    pub(crate) fn handshakes<S: Send + 'static>(
        self,
        mut accepted: BoxStream<'static, io::Result<(BoxedIo, S)>>,
        timeout: Duration,
    ) -> BoxStream<'static, io::Result<(BoxedIo, S)>> {
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<(BoxedIo, S)>>(HANDSHAKE_QUEUE);
        // Refused handshakes: logged at most every 10 s, with a count.
        let refusals = Arc::new(crate::link::log_limit::LogLimit::default());
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    _ = tx.closed() => return,
                    next = accepted.next() => next,
                };
                match next {
                    None => return,
                    Some(Err(e)) => {
                        if tx.send(Err(e)).await.is_err() {
                            return;
                        }
                    }
                    Some(Ok((io, slot))) => {
                        let tx = tx.clone();
                        let acceptor = self.0.clone();
                        let refusals = refusals.clone();
                        tokio::spawn(async move {
                            let reason = match tokio::time::timeout(timeout, acceptor.accept(io))
                                .await
                            {
                                Ok(Ok(stream)) => {
                                    let _ = tx.send(Ok((Box::new(stream) as BoxedIo, slot))).await;
                                    return;
                                }
                                Ok(Err(e)) => e.to_string(),
                                Err(_) => format!("no TLS handshake within {timeout:?}"),
                            };
                            if let Some(refused) = refusals.note() {
                                tracing::warn!(
                                    reason,
                                    refused,
                                    "refused connections that did not complete a mutual TLS handshake"
                                );
                            }
                        });
                    }
                }
            }
        });
        Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }))
    }
}

/// What a trial handshake with a member found.
enum Trial {
    /// The member took this silo's certificate and spoke HTTP/2.
    Accepted,
    /// One side refused the other's certificate.
    Refused(String),
    /// Nothing to learn: the member is down or slow.
    Unreachable,
}

/// The HTTP/2 client preface and an empty SETTINGS frame: what makes the
/// member's server answer.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// Before a TLS silo writes its row: a trial handshake with each active
/// member. When one or more refuse it (or it refuses them) and none takes
/// it, the silo does not join, and says why; a misconfigured silo then
/// leaves no trace in the table. Members that cannot be reached at all
/// prove nothing (the cluster may be starting, or they may be dead), so
/// they do not stop a join.
pub(crate) async fn check_members(
    table: &dyn crate::MembershipTable,
    connector: &Arc<dyn Connector>,
    timeout: Duration,
) -> Result<()> {
    let snap = table.read_all().await?;
    let endpoints: Vec<String> = snap
        .with_status(crate::SiloStatus::Active)
        .map(|e| e.silo.endpoint.clone())
        .collect();
    let trials =
        futures::future::join_all(endpoints.iter().map(|e| trial(connector, e, timeout))).await;
    let mut refused = None;
    for (endpoint, trial) in endpoints.iter().zip(trials) {
        match trial {
            Trial::Accepted => return Ok(()),
            Trial::Refused(reason) => refused = Some(format!("{endpoint}: {reason}")),
            Trial::Unreachable => {}
        }
    }
    match refused {
        None => Ok(()),
        Some(reason) => Err(Error::Config(format!(
            "TLS: the cluster's active silos and this silo do not accept each other's certificates ({reason}); \
             check that its certificate is signed by the cluster's CA, has not expired and carries the names the \
             cluster requires, and that it trusts the cluster's CA. It did not join."
        ))),
    }
}

/// After a TLS client failed to reach any of `gateways`: the handshake
/// refusal that explains it, if a trial handshake finds one.
pub(crate) async fn explain_refusal(
    connector: &Arc<dyn Connector>,
    gateways: &[String],
    timeout: Duration,
) -> Option<Error> {
    for g in gateways {
        if let Trial::Refused(reason) = trial(connector, g, timeout).await {
            return Some(Error::SiloUnavailable {
                endpoint: g.clone(),
                reason: format!(
                    "the mutual TLS handshake failed ({reason}): the client's certificate must be signed by the \
                     cluster's CA, be valid now and carry a name the silos accept, and the client must trust the \
                     cluster's CA and use the silos' server name"
                ),
            });
        }
    }
    None
}

/// After a plain (non-TLS) client failed to reach any of `gateways`: an
/// error saying that the cluster requires TLS, if one of them answers a
/// TLS hello with a certificate. (In the clear, a TLS silo's answer to an
/// HTTP/2 preface is a closed connection, which tonic reports as an
/// unhelpful protocol error.)
pub(crate) async fn explain_plain(gateways: &[String], timeout: Duration) -> Option<Error> {
    for g in gateways {
        if speaks_tls(g, timeout).await {
            return Some(Error::SiloUnavailable {
                endpoint: g.clone(),
                reason: "this silo requires TLS: it answered a TLS hello, and closes connections in the clear; \
                         connect with `ClusterClient::connect_with_tls` and a certificate of the cluster's CA"
                    .into(),
            });
        }
    }
    None
}

/// Whether the server at `endpoint` answers a TLS hello with its
/// certificate. The hello's verifier notes the certificate and refuses
/// it, so the probe never completes a handshake.
async fn speaks_tls(endpoint: &str, timeout: Duration) -> bool {
    let seen = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(CertificateSeen {
        seen: seen.clone(),
        schemes: provider
            .signature_verification_algorithms
            .supported_schemes(),
    });
    let Ok(config) =
        rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions()
    else {
        return false;
    };
    let mut config = config
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let Ok(name) = ServerName::try_from("tls-probe.invalid") else {
        return false;
    };
    let probe = async {
        let tcp = tokio::net::TcpStream::connect(endpoint).await.ok()?;
        let _ = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await;
        Some(())
    };
    let _ = tokio::time::timeout(timeout, probe).await;
    seen.load(std::sync::atomic::Ordering::SeqCst)
}

/// Notes that the server presented a certificate, and refuses it.
#[derive(Debug)]
struct CertificateSeen {
    seen: Arc<std::sync::atomic::AtomicBool>,
    schemes: Vec<SignatureScheme>,
}

impl rustls::client::danger::ServerCertVerifier for CertificateSeen {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        self.seen.store(true, std::sync::atomic::Ordering::SeqCst);
        Err(rustls::Error::General(
            "a probe for TLS: it never trusts a certificate".into(),
        ))
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("a probe for TLS".into()))
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("a probe for TLS".into()))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.clone()
    }
}

async fn trial(connector: &Arc<dyn Connector>, endpoint: &str, timeout: Duration) -> Trial {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let refused_or_not = |e: io::Error| {
        // rustls' errors (a certificate refused here, an alert from the
        // peer) come as InvalidData; a connection refused or reset is the
        // network's.
        if e.kind() == io::ErrorKind::InvalidData {
            Trial::Refused(e.to_string())
        } else {
            Trial::Unreachable
        }
    };
    let run = async {
        let mut io = match connector.connect(endpoint).await {
            Ok(io) => io,
            Err(e) => return refused_or_not(e),
        };
        // Under TLS 1.3 the server checks the client's certificate after
        // the client has finished its handshake: only its answer tells.
        if let Err(e) = io.write_all(H2_PREFACE).await {
            return refused_or_not(e);
        }
        let mut byte = [0u8; 1];
        let answer = match io.read(&mut byte).await {
            Ok(0) => Trial::Refused("the silo closed the connection after the handshake".into()),
            Ok(_) => Trial::Accepted,
            Err(e) => refused_or_not(e),
        };
        let _ = io.shutdown().await;
        answer
    };
    tokio::time::timeout(timeout, run)
        .await
        .unwrap_or(Trial::Unreachable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_hosts_become_server_names() {
        assert_eq!(
            endpoint_host("127.0.0.1:4000").unwrap(),
            ServerName::try_from("127.0.0.1").unwrap()
        );
        assert_eq!(
            endpoint_host("[::1]:4000").unwrap(),
            ServerName::try_from("::1").unwrap()
        );
        assert_eq!(
            endpoint_host("silo-1.example:4000").unwrap(),
            ServerName::try_from("silo-1.example").unwrap()
        );
        assert!(endpoint_host("not a host:1").is_err());
    }

    proptest::proptest! {
        /// Whatever the bytes, parsing them as PEM and endpoints as
        /// server names returns an error or a value, never a panic.
        #[test]
        fn arbitrary_input_never_panics(
            ca in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            key in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            endpoint in ".{0,64}",
        ) {
            let mut pem = b"-----BEGIN CERTIFICATE-----\n".to_vec();
            pem.extend_from_slice(&ca);
            pem.extend_from_slice(b"\n-----END CERTIFICATE-----\n");
            let _ = TlsConfig::from_pem(&pem, &pem, &key);
            let _ = TlsConfig::from_pem(&ca, &ca, &key);
            let _ = endpoint_host(&endpoint);
        }
    }

    #[test]
    fn bad_pem_is_a_clear_error() {
        let err = TlsConfig::from_pem(b"nothing", b"", b"").unwrap_err();
        assert!(
            err.to_string().contains("CA PEM holds no certificate"),
            "{err}"
        );
    }
}
