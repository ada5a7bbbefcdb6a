//! The transport seam: how a silo link reaches another silo and how a silo
//! serves its link. The link's gRPC code is the same over every transport;
//! only the byte streams under it change.
//!
//! The default is TCP ([`TcpConnector`], and a `TcpListener` turned into a
//! [`LinkListener`]). Tests plug in other byte streams (in-memory duplex
//! pipes, a network simulator's TCP, streams that a fault injector can cut)
//! by implementing [`Connector`] and building a [`LinkListener`] from a
//! stream of accepted connections.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::error::{Error, Result};

/// A byte stream a silo link can run over.
pub trait LinkIo: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> LinkIo for T {}

/// A boxed [`LinkIo`].
pub type BoxedIo = Box<dyn LinkIo>;

/// Opens byte streams to silo endpoints (`host:port`): the client half of
/// a transport.
pub trait Connector: Send + Sync + 'static {
    /// Connects to the silo serving at `endpoint`.
    fn connect(&self, endpoint: &str) -> BoxFuture<'static, io::Result<BoxedIo>>;
}

/// The default connector: TCP with `TCP_NODELAY`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpConnector;

impl Connector for TcpConnector {
    fn connect(&self, endpoint: &str) -> BoxFuture<'static, io::Result<BoxedIo>> {
        let endpoint = endpoint.to_owned();
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(&endpoint).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as BoxedIo)
        })
    }
}

/// The server half of a transport: the endpoint other silos reach this
/// silo at, and the connections they open to it.
pub struct LinkListener {
    endpoint: String,
    incoming: BoxStream<'static, io::Result<BoxedIo>>,
}

impl std::fmt::Debug for LinkListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkListener")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl LinkListener {
    /// A listener reachable at `endpoint` that serves the connections
    /// `incoming` yields.
    pub fn new(
        endpoint: impl Into<String>,
        incoming: impl futures::Stream<Item = io::Result<BoxedIo>> + Send + 'static,
    ) -> Self {
        LinkListener {
            endpoint: endpoint.into(),
            incoming: Box::pin(incoming),
        }
    }

    /// Serves on a bound TCP listener (its local address is the endpoint).
    pub fn tcp(listener: tokio::net::TcpListener) -> Result<Self> {
        let endpoint = listener
            .local_addr()
            .map_err(|e| Error::Config(format!("listener has no address: {e}")))?
            .to_string();
        let incoming = futures::stream::unfold(listener, |l| async move {
            let accepted = l.accept().await.map(|(s, _)| {
                let _ = s.set_nodelay(true);
                Box::new(s) as BoxedIo
            });
            Some((accepted, l))
        });
        Ok(LinkListener::new(endpoint, incoming))
    }

    /// The endpoint other silos connect to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub(crate) fn into_incoming(
        self,
    ) -> impl futures::Stream<Item = io::Result<ServedIo>> + Send + 'static {
        futures::StreamExt::map(self.incoming, |r| r.map(ServedIo))
    }
}

/// An accepted connection as tonic's server wants it.
pub(crate) struct ServedIo(BoxedIo);

impl tonic::transport::server::Connected for ServedIo {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for ServedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ServedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

/// How often an idle link pings its peer, and how long it waits for the
/// answer before it drops the connection. Without pings, a connection
/// whose bytes were lost (a partition that healed, a peer that vanished
/// without a reset) looks alive forever and every call on it times out;
/// the simulator found this.
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// See [`KEEPALIVE_INTERVAL`].
pub(crate) const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(2);

fn endpoint_for(endpoint: &str, timeout: Duration) -> Result<Endpoint> {
    Ok(Endpoint::from_shared(format!("http://{endpoint}"))
        .map_err(|e| Error::Config(format!("bad silo endpoint `{endpoint}`: {e}")))?
        .connect_timeout(timeout)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true))
}

fn service(
    connector: Arc<dyn Connector>,
    endpoint: String,
) -> impl tower::Service<
    Uri,
    Response = hyper_util::rt::TokioIo<BoxedIo>,
    Error = io::Error,
    Future = BoxFuture<'static, io::Result<hyper_util::rt::TokioIo<BoxedIo>>>,
> + Send
+ Clone
+ 'static {
    tower::service_fn(move |_: Uri| {
        let connect = connector.connect(&endpoint);
        Box::pin(async move { connect.await.map(hyper_util::rt::TokioIo::new) })
            as BoxFuture<'static, _>
    })
}

/// A gRPC channel to `endpoint` over `connector`, connected now.
pub(crate) async fn channel(
    connector: &Arc<dyn Connector>,
    endpoint: &str,
    timeout: Duration,
    request_timeout: Option<Duration>,
) -> Result<Channel> {
    let mut e = endpoint_for(endpoint, timeout)?;
    if let Some(t) = request_timeout {
        e = e.timeout(t);
    }
    e.connect_with_connector(service(connector.clone(), endpoint.to_owned()))
        .await
        .map_err(|err| Error::SiloUnavailable {
            endpoint: endpoint.to_owned(),
            reason: err.to_string(),
        })
}

/// A gRPC channel to `endpoint` over `connector` that connects on first
/// use (and reconnects after a failure).
pub(crate) fn lazy_channel(
    connector: &Arc<dyn Connector>,
    endpoint: &str,
    timeout: Duration,
) -> Result<Channel> {
    Ok(endpoint_for(endpoint, timeout)?
        .timeout(timeout)
        .connect_with_connector_lazy(service(connector.clone(), endpoint.to_owned())))
}

/// The TCP connector, shared.
pub(crate) fn tcp() -> Arc<dyn Connector> {
    Arc::new(TcpConnector)
}
