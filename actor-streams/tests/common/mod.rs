//! Helpers shared by the stream tests: a TCP proxy that plays broker
//! outages.

use std::sync::Arc;
use std::time::Duration;

/// A TCP proxy in front of a service, that a test can cut (every
/// connection dropped, new ones refused), freeze (connections stay open but
/// nothing gets through, as with a silent network) and restore, to play
/// outages.
pub(crate) struct Proxy {
    pub(crate) addr: std::net::SocketAddr,
    target: String,
    tasks: parking_lot::Mutex<Vec<tokio::task::AbortHandle>>,
    frozen: tokio::sync::watch::Sender<bool>,
}

impl Proxy {
    pub(crate) async fn start(target: &str) -> Arc<Proxy> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Arc::new(Proxy {
            addr: listener.local_addr().unwrap(),
            target: target.to_owned(),
            tasks: Default::default(),
            frozen: tokio::sync::watch::channel(false).0,
        });
        proxy.serve(listener);
        proxy
    }

    fn serve(self: &Arc<Self>, listener: tokio::net::TcpListener) {
        let me = self.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = me.target.clone();
                let mut frozen = me.frozen.subscribe();
                let conn = tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    if !*frozen.borrow_and_update() {
                        // Biased, the freeze first: once `freeze` has
                        // returned, the next poll of this task must not
                        // pass a byte (an unbiased select could copy a
                        // request sent after the freeze before it sees it).
                        tokio::select! {
                            biased;
                            _ = frozen.wait_for(|f| *f) => {}
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => return,
                        }
                    }
                    // Frozen: hold both ends open, pass nothing, until cut.
                    std::future::pending::<()>().await;
                });
                me.tasks.lock().push(conn.abort_handle());
            }
        });
        self.tasks.lock().push(accept.abort_handle());
    }

    /// Drops every connection and stops listening.
    pub(crate) fn cut(&self) {
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
    }

    /// Keeps connections open but lets nothing through.
    pub(crate) fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    /// Listens again on the same port (after a cut), passing traffic.
    pub(crate) async fn restore(self: &Arc<Self>) {
        self.frozen.send_replace(false);
        // An aborted accept task drops its listener on its next poll: retry
        // the bind briefly.
        let mut tries = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 100 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot listen on {} again: {e}", self.addr),
            }
        };
        self.serve(listener);
    }
}
