//! The test cluster's network: silo links over in-memory pipes or loopback
//! TCP, with partitions, crashes and per-link delay rules injected under
//! the link's gRPC code (which runs unchanged).
//!
//! Faults are keyed by silo *name*, so they survive a restart on another
//! port. A connection is cut (reads and writes fail) as soon as a fault
//! blocks it; new connections across a blocked pair are refused.

use std::collections::{HashMap, HashSet};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use actor_cluster::{BoxedIo, Connector, LinkListener};
use futures::future::BoxFuture;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;

/// Which byte streams silo links run over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// In-memory pipes (`tokio::io::duplex`): no sockets, fast.
    #[default]
    Memory,
    /// Real TCP on 127.0.0.1: what production runs.
    Loopback,
}

/// What a [`LinkRule`] does to the links it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkAction {
    /// Every write on the link waits this long first.
    Delay(Duration),
    /// Messages are lost: open links are cut, new ones refused.
    Drop,
}

/// A rule applied to links from silo `from` to silo `to` (`None` matches
/// any silo, the external client included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRule {
    /// The silo that opened the link (`None`: any).
    pub from: Option<String>,
    /// The silo the link goes to (`None`: any).
    pub to: Option<String>,
    /// What happens to its messages.
    pub action: LinkAction,
}

impl LinkRule {
    fn matches(&self, from: Option<&str>, to: &str) -> bool {
        self.from.as_deref().is_none_or(|f| Some(f) == from)
            && self.to.as_deref().is_none_or(|t| t == to)
    }
}

#[derive(Default)]
struct Faults {
    /// (from, to): links opened by `from` to `to` are blocked.
    blocked: HashSet<(String, String)>,
    crashed: HashSet<String>,
    rules: Vec<LinkRule>,
}

impl Faults {
    fn cut(&self, from: Option<&str>, to: &str) -> bool {
        self.crashed.contains(to)
            || from.is_some_and(|f| {
                self.crashed.contains(f) || self.blocked.contains(&(f.to_owned(), to.to_owned()))
            })
            || self
                .rules
                .iter()
                .any(|r| r.action == LinkAction::Drop && r.matches(from, to))
    }

    fn delay(&self, from: Option<&str>, to: &str) -> Option<Duration> {
        self.rules.iter().find_map(|r| match r.action {
            LinkAction::Delay(d) if r.matches(from, to) => Some(d),
            _ => None,
        })
    }
}

struct Inner {
    transport: Transport,
    /// endpoint -> (silo name, where its accepted pipes go).
    listeners: Mutex<HashMap<String, (String, mpsc::UnboundedSender<BoxedIo>)>>,
    faults: Mutex<Faults>,
    /// The reader/writer wakers of live streams, woken when faults change.
    wakers: Mutex<Vec<Weak<Mutex<Option<Waker>>>>>,
    next_port: Mutex<u16>,
}

/// The network of one test cluster. Cloning shares it.
#[derive(Clone)]
pub struct Network {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("transport", &self.inner.transport)
            .finish_non_exhaustive()
    }
}

impl Network {
    /// A network over `transport`, with no faults.
    pub fn new(transport: Transport) -> Self {
        Network {
            inner: Arc::new(Inner {
                transport,
                listeners: Mutex::new(HashMap::new()),
                faults: Mutex::new(Faults::default()),
                wakers: Mutex::new(Vec::new()),
                next_port: Mutex::new(11_111),
            }),
        }
    }

    /// The transport links run over.
    pub fn transport(&self) -> Transport {
        self.inner.transport
    }

    /// A listener for silo `name`. `endpoint` reuses a previous endpoint
    /// (a restart); `None` picks a new one.
    pub async fn listen(&self, name: &str, endpoint: Option<&str>) -> io::Result<LinkListener> {
        match self.inner.transport {
            Transport::Memory => {
                let endpoint = match endpoint {
                    Some(e) => e.to_owned(),
                    None => {
                        let mut p = self.inner.next_port.lock();
                        *p += 1;
                        format!("{name}.memory:{}", *p)
                    }
                };
                let (tx, rx) = mpsc::unbounded_channel::<BoxedIo>();
                self.inner
                    .listeners
                    .lock()
                    .insert(endpoint.clone(), (name.to_owned(), tx));
                let incoming = futures::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|io| (Ok(io), rx))
                });
                Ok(LinkListener::new(endpoint, incoming))
            }
            Transport::Loopback => {
                let bind = endpoint.unwrap_or("127.0.0.1:0");
                let listener = match tokio::net::TcpListener::bind(bind).await {
                    Ok(l) => l,
                    // The old port is taken: a restart on a new port is
                    // as good (the new generation is what matters).
                    Err(_) => tokio::net::TcpListener::bind("127.0.0.1:0").await?,
                };
                let endpoint = listener.local_addr()?.to_string();
                let (tx, _) = mpsc::unbounded_channel();
                self.inner
                    .listeners
                    .lock()
                    .insert(endpoint.clone(), (name.to_owned(), tx));
                let net = self.clone();
                let to = name.to_owned();
                let incoming = futures::stream::unfold(listener, move |l| {
                    let (net, to) = (net.clone(), to.clone());
                    async move {
                        let accepted = l.accept().await.map(|(s, _)| {
                            let _ = s.set_nodelay(true);
                            Box::new(net.wrap(None, &to, s)) as BoxedIo
                        });
                        Some((accepted, l))
                    }
                });
                Ok(LinkListener::new(endpoint, incoming))
            }
        }
    }

    /// The connector silo `name` (or the client) reaches others through.
    pub fn connector(&self, name: &str) -> Arc<dyn Connector> {
        Arc::new(NetConnector {
            net: self.clone(),
            from: name.to_owned(),
        })
    }

    /// Blocks links opened by `from` to `to` (one way: `to` still reaches
    /// `from`).
    pub fn partition_oneway(&self, from: &str, to: &str) {
        self.inner
            .faults
            .lock()
            .blocked
            .insert((from.to_owned(), to.to_owned()));
        self.wake();
    }

    /// Blocks links both ways between every silo of `a` and every silo
    /// of `b`.
    pub fn partition(&self, a: &[&str], b: &[&str]) {
        {
            let mut f = self.inner.faults.lock();
            for x in a {
                for y in b {
                    f.blocked.insert(((*x).to_owned(), (*y).to_owned()));
                    f.blocked.insert(((*y).to_owned(), (*x).to_owned()));
                }
            }
        }
        self.wake();
    }

    /// Lifts every partition (rules and crashes stay).
    pub fn heal(&self) {
        self.inner.faults.lock().blocked.clear();
    }

    /// Lifts the partition between `a` and `b`, both ways.
    pub fn heal_between(&self, a: &str, b: &str) {
        let mut f = self.inner.faults.lock();
        f.blocked.remove(&(a.to_owned(), b.to_owned()));
        f.blocked.remove(&(b.to_owned(), a.to_owned()));
    }

    /// Adds a delay or drop rule.
    pub fn add_rule(&self, rule: LinkRule) {
        self.inner.faults.lock().rules.push(rule);
        self.wake();
    }

    /// Removes every rule.
    pub fn clear_rules(&self) {
        self.inner.faults.lock().rules.clear();
    }

    /// Cuts every link to and from `name`, as a crash closes its sockets.
    pub fn crash(&self, name: &str) {
        self.inner.faults.lock().crashed.insert(name.to_owned());
        self.inner.listeners.lock().retain(|_, (n, _)| n != name);
        self.wake();
    }

    /// `name` runs again (after a restart).
    pub fn revive(&self, name: &str) {
        self.inner.faults.lock().crashed.remove(name);
    }

    /// Whether links from `from` to `to` are cut now.
    pub fn is_cut(&self, from: &str, to: &str) -> bool {
        self.inner.faults.lock().cut(Some(from), to)
    }

    fn wake(&self) {
        let slots: Vec<_> = self.inner.wakers.lock().clone();
        for slot in slots.iter().filter_map(Weak::upgrade) {
            if let Some(w) = slot.lock().take() {
                w.wake();
            }
        }
    }

    fn name_of(&self, endpoint: &str) -> Option<String> {
        self.inner
            .listeners
            .lock()
            .get(endpoint)
            .map(|(n, _)| n.clone())
    }

    fn wrap<T: AsyncRead + AsyncWrite + Send + Unpin + 'static>(
        &self,
        from: Option<&str>,
        to: &str,
        io: T,
    ) -> FaultyIo<T> {
        let slot = Arc::new(Mutex::new(None));
        {
            let mut wakers = self.inner.wakers.lock();
            wakers.retain(|w| w.strong_count() > 0);
            wakers.push(Arc::downgrade(&slot));
        }
        FaultyIo {
            io,
            slot,
            net: self.clone(),
            from: from.map(str::to_owned),
            to: to.to_owned(),
            sleep: None,
            delayed: false,
        }
    }
}

struct NetConnector {
    net: Network,
    from: String,
}

impl Connector for NetConnector {
    fn connect(&self, endpoint: &str) -> BoxFuture<'static, io::Result<BoxedIo>> {
        let net = self.net.clone();
        let from = self.from.clone();
        let endpoint = endpoint.to_owned();
        Box::pin(async move {
            let refused = || io::Error::new(io::ErrorKind::ConnectionRefused, "no silo there");
            let to = net.name_of(&endpoint).ok_or_else(refused)?;
            if net.inner.faults.lock().cut(Some(&from), &to) {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{from} cannot reach {to} (fault injected)"),
                ));
            }
            match net.inner.transport {
                Transport::Memory => {
                    let (client, server) = tokio::io::duplex(256 * 1024);
                    let tx = net
                        .inner
                        .listeners
                        .lock()
                        .get(&endpoint)
                        .map(|(_, tx)| tx.clone())
                        .ok_or_else(refused)?;
                    tx.send(Box::new(net.wrap(Some(&from), &to, server)))
                        .map_err(|_| refused())?;
                    Ok(Box::new(net.wrap(Some(&from), &to, client)) as BoxedIo)
                }
                Transport::Loopback => {
                    let s = tokio::net::TcpStream::connect(&endpoint).await?;
                    s.set_nodelay(true)?;
                    Ok(Box::new(net.wrap(Some(&from), &to, s)) as BoxedIo)
                }
            }
        })
    }
}

/// A byte stream that fails once a fault cuts its link, and waits before
/// writes while a delay rule matches.
struct FaultyIo<T> {
    io: T,
    slot: Arc<Mutex<Option<Waker>>>,
    net: Network,
    from: Option<String>,
    to: String,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    delayed: bool,
}

impl<T> FaultyIo<T> {
    fn check(&self, cx: &mut Context<'_>) -> io::Result<()> {
        let faults = self.net.inner.faults.lock();
        if faults.cut(self.from.as_deref(), &self.to) {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "link cut (fault injected)",
            ));
        }
        drop(faults);
        let mut slot = self.slot.lock();
        if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *slot = Some(cx.waker().clone());
        }
        Ok(())
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for FaultyIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Err(e) = self.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FaultyIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Err(e) = self.check(cx) {
            return Poll::Ready(Err(e));
        }
        if !self.delayed {
            let delay = self
                .net
                .inner
                .faults
                .lock()
                .delay(self.from.as_deref(), &self.to);
            if let Some(d) = delay {
                let sleep = self
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(d)));
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.sleep = None;
            }
            self.delayed = true;
        }
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if r.is_ready() {
            self.delayed = false;
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Err(e) = self.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

use std::future::Future as _;
