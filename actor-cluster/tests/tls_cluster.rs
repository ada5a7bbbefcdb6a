//! Mutual TLS between silos and for clients: a cluster of three TLS silos
//! serves its members and a TLS client as before; peers whose certificate
//! comes from another CA, has expired or lacks the cluster's name, and
//! peers with no certificate at all, are refused in the handshake, get no
//! call through and leave the membership table as it was. Certificates
//! are made here with rcgen: nothing secret is committed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actor_cluster::{
    ClusterClient, ClusterConfig, ClusterSilo, Connector, InMemoryMembership, MembershipTable,
    TcpConnector, TlsConfig,
};
use actor_core::prelude::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The name every silo certificate of the test cluster carries.
const SILO_NAME: &str = "silo.grains.test";
/// The name of the test cluster's client certificates.
const CLIENT_NAME: &str = "client.grains.test";

/// A certificate authority made for one test run.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf certificate for `names`, and its key, as PEM.
    fn leaf(&self, names: &[&str], expired: bool) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A TLS configuration that trusts `trusted` and presents a
    /// certificate of this CA for `names`.
    fn config(&self, trusted: &Ca, names: &[&str], expired: bool) -> TlsConfig {
        let (cert, key) = self.leaf(names, expired);
        TlsConfig::from_pem(trusted.pem.as_bytes(), cert.as_bytes(), key.as_bytes())
            .unwrap()
            .with_server_name(SILO_NAME)
    }
}

/// A grain that counts its visits and says where it runs.
#[derive(Default)]
pub struct Visits {
    n: u64,
}

impl Grain for Visits {
    const TYPE_NAME: &'static str = "visits";
}

#[grain_methods]
impl Visits {
    /// Counts; answers the count and the silo.
    pub async fn visit(&mut self, ctx: &GrainContext<Self>) -> (u64, String) {
        self.n += 1;
        (self.n, ctx.silo().name().to_owned())
    }

    /// The count, without counting.
    pub async fn count(&mut self) -> u64 {
        self.n
    }
}

async fn start(
    name: &str,
    table: &Arc<dyn MembershipTable>,
    tls: TlsConfig,
) -> actor_cluster::Result<ClusterSilo> {
    ClusterSilo::start(
        Silo::builder().name(name).grain::<Visits>(),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        table.clone(),
        ClusterConfig::fast().with_tls(tls.accept_peer_name(CLIENT_NAME)),
    )
    .await
}

async fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < until, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The rows of the table, as (endpoint, generation, status) text.
async fn rows(table: &Arc<dyn MembershipTable>) -> (i64, Vec<String>) {
    let snap = table.read_all().await.unwrap();
    let mut rows: Vec<String> = snap
        .entries
        .iter()
        .map(|(e, _)| format!("{} {:?}", e.silo, e.status))
        .collect();
    rows.sort();
    (snap.version.0, rows)
}

/// A connector that speaks TLS but presents no client certificate.
struct NoCertificate(tokio_rustls::TlsConnector);

impl NoCertificate {
    fn new(ca: &Ca) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        use rustls::pki_types::pem::PemObject;
        roots
            .add(rustls::pki_types::CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        NoCertificate(tokio_rustls::TlsConnector::from(Arc::new(config)))
    }
}

impl Connector for NoCertificate {
    fn connect(
        &self,
        endpoint: &str,
    ) -> futures::future::BoxFuture<'static, std::io::Result<actor_cluster::BoxedIo>> {
        let tls = self.0.clone();
        let tcp = TcpConnector.connect(endpoint);
        Box::pin(async move {
            let io = tcp.await?;
            let name = rustls::pki_types::ServerName::try_from(SILO_NAME).unwrap();
            Ok(Box::new(tls.connect(name, io).await?) as actor_cluster::BoxedIo)
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_serves_members_and_clients_and_refuses_everyone_else() {
    let ca = Ca::new("grains test cluster CA");
    let other = Ca::new("another CA");
    let table: Arc<dyn MembershipTable> = Arc::new(InMemoryMembership::new());
    let mut silos = Vec::new();
    for name in ["a", "b", "c"] {
        let tls = ca.config(&ca, &[SILO_NAME], false);
        silos.push(start(name, &table, tls).await.unwrap());
    }
    eventually("all three see three", Duration::from_secs(20), || {
        silos.iter().all(|s| s.active_members().len() == 3)
    })
    .await;
    let gateway = silos[0].address().endpoint.clone();

    // A client with a certificate of the cluster's CA reaches grains on
    // every silo.
    let client_tls = ca.config(&ca, &[CLIENT_NAME], false);
    let client =
        ClusterClient::connect_with_tls(vec![gateway.clone()], Duration::from_secs(1), &client_tls)
            .await
            .unwrap();
    assert_eq!(client.gateways().len(), 3);
    let mut seen = std::collections::HashSet::new();
    for k in 0..60 {
        let (n, silo) = client.get_grain::<Visits>(k).visit().await.unwrap();
        assert_eq!(n, 1);
        seen.insert(silo);
    }
    assert_eq!(seen.len(), 3, "grains on all three silos: {seen:?}");
    // And calls between silos work: a grain reached from each silo.
    for s in &silos {
        let (n, _) = s.silo().get_grain::<Visits>(0).visit().await.unwrap();
        assert!(n >= 2);
    }
    // The stats service (the dashboard's peer reports) goes over TLS too.
    let view = actor_cluster::ClusterView::of(silos[0].silo()).unwrap();
    for peer in &silos[1..] {
        view.peer_report(&peer.address().endpoint, Duration::from_secs(10))
            .await
            .unwrap();
    }
    let before = rows(&table).await;
    assert_eq!(before.1.len(), 3, "{before:?}");

    // Silos the cluster must refuse: each fails to start with a clear
    // error and writes no row.
    let outsiders = [
        (
            "another CA",
            other.config(&ca, &[SILO_NAME], false),
            "UnknownIssuer",
        ),
        ("expired", ca.config(&ca, &[SILO_NAME], true), "Expired"),
        (
            "wrong name",
            ca.config(&ca, &["impostor.grains.test"], false),
            "NotValidForName",
        ),
        // Trusts another CA: it refuses the members' certificates itself.
        (
            "trusts another CA",
            ca.config(&other, &[SILO_NAME], false),
            "UnknownIssuer",
        ),
    ];
    for (what, tls, reason) in outsiders {
        let err = start(what, &table, tls).await.unwrap_err().to_string();
        assert!(err.contains("did not join"), "{what}: {err}");
        assert!(
            err.to_lowercase().contains(&reason.to_lowercase())
                || err.contains("BadCertificate")
                || err.contains("CertificateUnknown")
                || err.contains("UnknownCA")
                || err.contains("CertificateExpired"),
            "{what}: the error says why: {err}"
        );
        println!("{what}: {err}");
    }

    // Clients the cluster must refuse: no gateway list, no call.
    let bad_clients = [
        ("another CA", other.config(&ca, &[CLIENT_NAME], false)),
        ("expired", ca.config(&ca, &[CLIENT_NAME], true)),
        (
            "wrong name",
            ca.config(&ca, &["someone.grains.test"], false),
        ),
    ];
    for (what, tls) in bad_clients {
        let err =
            ClusterClient::connect_with_tls(vec![gateway.clone()], Duration::from_secs(1), &tls)
                .await
                .unwrap_err();
        println!("client, {what}: {err}");
        assert!(
            matches!(err, actor_cluster::Error::SiloUnavailable { .. }),
            "{what}: {err}"
        );
        assert!(
            err.to_string().contains("mutual TLS handshake failed"),
            "{what}: {err}"
        );
    }
    // With no certificate, over TLS or plain TCP.
    let err = ClusterClient::connect_via(
        Arc::new(NoCertificate::new(&ca)),
        vec![gateway.clone()],
        Duration::from_secs(1),
    )
    .await
    .unwrap_err();
    println!("client, no certificate: {err}");
    assert!(
        matches!(err, actor_cluster::Error::SiloUnavailable { .. }),
        "{err}"
    );
    let err = ClusterClient::connect(vec![gateway.clone()], Duration::from_secs(1))
        .await
        .unwrap_err();
    println!("client, plain TCP: {err}");
    assert!(
        matches!(err, actor_cluster::Error::SiloUnavailable { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("requires TLS") && err.to_string().contains("connect_with_tls"),
        "a plain client is told that the cluster requires TLS: {err}"
    );

    // Raw bytes: an HTTP/2 preface in the clear gets no HTTP/2 answer
    // (the TLS server answers garbage with an alert or nothing, then
    // closes).
    let mut raw = tokio::net::TcpStream::connect(&gateway).await.unwrap();
    raw.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), raw.read_to_end(&mut answer))
        .await
        .expect("the silo closes a connection that is not TLS");
    assert!(
        !answer.starts_with(&[0, 0]),
        "no HTTP/2 frame comes back in the clear: {answer:?}"
    );

    // None of that moved the table, and the members still serve.
    assert_eq!(
        rows(&table).await,
        before,
        "the table shows no trace of the outsiders"
    );
    for s in &silos {
        assert_eq!(s.active_members().len(), 3);
    }
    let (n, _) = client.get_grain::<Visits>(1).visit().await.unwrap();
    assert_eq!(n, 2, "no refused peer got a call through");
    for k in 2..60 {
        assert_eq!(client.get_grain::<Visits>(k).count().await.unwrap(), 1);
    }
}

/// A silo with no TLS at all, given the table (the one thing TLS cannot
/// guard: whoever can write the table can write a row), is probed, found
/// unable to speak TLS, voted dead, and gets no call through meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silo_without_tls_is_voted_out_and_gets_no_call_through() {
    let ca = Ca::new("grains test cluster CA");
    let table: Arc<dyn MembershipTable> = Arc::new(InMemoryMembership::new());
    let a = start("a", &table, ca.config(&ca, &[SILO_NAME], false))
        .await
        .unwrap();
    let b = start("b", &table, ca.config(&ca, &[SILO_NAME], false))
        .await
        .unwrap();
    eventually("both see two", Duration::from_secs(20), || {
        a.active_members().len() == 2 && b.active_members().len() == 2
    })
    .await;
    let plain = ClusterSilo::start(
        Silo::builder().name("plain").grain::<Visits>(),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        table.clone(),
        ClusterConfig::fast(),
    )
    .await
    .unwrap();
    let me = plain.address().clone();
    // Whatever the plain silo calls runs on itself or fails: nothing
    // reaches a TLS member.
    for k in 0..10 {
        let grain = plain.silo().get_grain::<Visits>(k);
        if let Ok(Ok((_, silo))) = tokio::time::timeout(Duration::from_secs(2), grain.visit()).await
        {
            assert_eq!(
                silo, "plain",
                "grain {k} ran on a TLS member for a plain silo"
            );
        }
    }
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let snap = table.read_all().await.unwrap();
        let (row, _) = snap.entry(&me).expect("its row").clone();
        if row.status == actor_cluster::SiloStatus::Dead {
            break;
        }
        assert!(
            Instant::now() < until,
            "the plain silo was never voted dead: {row:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eventually("the members are two again", Duration::from_secs(10), || {
        a.active_members().len() == 2 && b.active_members().len() == 2
    })
    .await;
    let (_, silo) = a.silo().get_grain::<Visits>(1).visit().await.unwrap();
    assert!(silo == "a" || silo == "b", "{silo}");
}

/// Handshakes run side by side: connections that never send a byte hold
/// up no one, and are closed at the handshake timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_handshakes_hold_up_no_one_and_are_closed() {
    let ca = Ca::new("grains test cluster CA");
    let table: Arc<dyn MembershipTable> = Arc::new(InMemoryMembership::new());
    let mut config = ClusterConfig::fast().with_tls(
        ca.config(&ca, &[SILO_NAME], false)
            .accept_peer_name(CLIENT_NAME),
    );
    config.connections.handshake_timeout = Duration::from_millis(500);
    let silo = ClusterSilo::start(
        Silo::builder().name("a").grain::<Visits>(),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        table,
        config,
    )
    .await
    .unwrap();
    let endpoint = silo.address().endpoint.clone();
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(tokio::net::TcpStream::connect(&endpoint).await.unwrap());
    }
    let client = ClusterClient::connect_with_tls(
        vec![endpoint.clone()],
        Duration::from_secs(1),
        &ca.config(&ca, &[CLIENT_NAME], false),
    )
    .await
    .unwrap();
    let (n, _) = client.get_grain::<Visits>(7).visit().await.unwrap();
    assert_eq!(n, 1);
    for mut stream in idle {
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("a connection that never started its handshake is closed");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
}
