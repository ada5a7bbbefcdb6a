//! The dashboard over HTTPS: with a certificate (made here with rcgen) it
//! serves the API over TLS, still asks for its token, and answers plain
//! HTTP on its port with nothing at all; a client that does not trust the
//! certificate gets no data either; key files other users may read are
//! refused, and a public address still needs access control with TLS.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actor_core::prelude::*;
use common::*;
use dashboard::{Dashboard, DashboardConfig, DashboardTls, SiloBuilderDashboardExt};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "tok-tls-1";

/// A certificate for `localhost` and its key, PEM.
fn certificate() -> (rcgen::Certificate, String) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    (made.cert, made.signing_key.serialize_pem())
}

async fn tls_silo() -> (Silo, SocketAddr, CertificateDer<'static>) {
    let (cert, key) = certificate();
    let tls = DashboardTls::from_pem(cert.pem().as_bytes(), key.as_bytes()).unwrap();
    let silo = Silo::builder()
        .name("tls")
        .grain::<Probe>()
        .with_dashboard(
            DashboardConfig::default()
                .bind("127.0.0.1:0".parse().unwrap())
                .token(TOKEN)
                .refresh(Duration::from_millis(100))
                .tls(tls),
        )
        .start()
        .await
        .expect("silo with an HTTPS dashboard starts");
    let addr = Dashboard::of(&silo).unwrap().local_addr();
    (silo, addr, cert.der().clone())
}

/// A TLS client that trusts `roots`.
fn client(roots: &[CertificateDer<'static>]) -> tokio_rustls::TlsConnector {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// `GET path` over TLS (with the token when `token`): status and body,
/// or the handshake's error.
async fn https_get(
    addr: SocketAddr,
    tls: &tokio_rustls::TlsConnector,
    path: &str,
    token: bool,
) -> Result<(u16, String), String> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut s = tls
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let auth = if token {
        format!("Authorization: Bearer {TOKEN}\r\n")
    } else {
        String::new()
    };
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut all = Vec::new();
    // A server may end TLS without close_notify after `Connection: close`.
    let _ = s.read_to_end(&mut all).await;
    let text = String::from_utf8_lossy(&all).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no HTTP response: {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_the_api_and_plain_http_gets_nothing() {
    let (silo, addr, cert) = tls_silo().await;
    let url = Dashboard::of(&silo).unwrap().url();
    assert!(url.starts_with("https://"), "{url}");
    let tls = client(std::slice::from_ref(&cert));

    // HTTPS with the token: the figures.
    let body = eventually("a snapshot over HTTPS", Duration::from_secs(15), || async {
        match https_get(addr, &tls, "/api/snapshot", true).await {
            Ok((200, body)) => Some(body),
            _ => None,
        }
    })
    .await;
    let snapshot: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(snapshot.get("silos").is_some(), "{snapshot}");

    // HTTPS without the token: refused, as over HTTP.
    let (status, _) = https_get(addr, &tls, "/api/snapshot", false).await.unwrap();
    assert_eq!(status, 401, "TLS does not replace the token");

    // Plain HTTP to the TLS port: closed without an HTTP answer.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(format!("GET /api/snapshot HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), plain.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the dashboard closes a plain connection on its TLS port"
    );
    let text = String::from_utf8_lossy(&answer);
    assert!(
        !text.contains("HTTP/1.1") && !text.contains("silos"),
        "plain HTTP gets no HTTP answer and no data: {text:?}"
    );

    // A client that does not trust the certificate: no data.
    let (other, _) = certificate();
    let stranger = client(&[other.der().clone()]);
    let err = https_get(addr, &stranger, "/api/snapshot", true)
        .await
        .unwrap_err();
    assert!(err.contains("certificate"), "{err}");

    // And the dashboard still serves the client that trusts it.
    let (status, _) = https_get(addr, &tls, "/api", true).await.unwrap();
    assert_eq!(status, 200);
    silo.shutdown().await;
}

#[test]
fn key_files_others_may_read_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let (cert, key) = certificate();
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("dashboard.pem");
    let key_path = dir.path().join("dashboard.key");
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key).unwrap();
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = DashboardTls::from_pem_files(&cert_path, &key_path).unwrap_err();
    assert!(err.to_string().contains("dashboard TLS"), "{err}");
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    DashboardTls::from_pem_files(&cert_path, &key_path).unwrap();
}

#[test]
fn bad_pem_and_open_public_tls_are_refused() {
    let err = DashboardTls::from_pem(b"nothing", b"").unwrap_err();
    assert!(err.to_string().contains("holds no certificate"), "{err}");
    let (cert, _) = certificate();
    let (_, other_key) = certificate();
    let err = DashboardTls::from_pem(cert.pem().as_bytes(), other_key.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("do not go together"), "{err}");

    // TLS is no access control: a public address still needs a token.
    let (cert, key) = certificate();
    let tls = DashboardTls::from_pem(cert.pem().as_bytes(), key.as_bytes()).unwrap();
    let public = DashboardConfig::default()
        .bind("0.0.0.0:8443".parse().unwrap())
        .tls(tls);
    let err = public.clone().validate().unwrap_err();
    assert!(err.to_string().contains("without access control"), "{err}");
    public.token("t").validate().unwrap();
}
