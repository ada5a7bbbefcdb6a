//! Stopping a silo process on a signal: SIGINT (Ctrl-C at a terminal) and
//! SIGTERM (what `kill`, systemd, Docker and Kubernetes send) alike, so
//! that a process manager's stop is a graceful leave, not a crash the
//! others must detect.
//!
//! A binary that hosts a silo creates [`ShutdownSignals`] once, early
//! (before it tells anyone it is ready: from then on the signals no longer
//! end the process on the spot), waits on [`ShutdownSignals::recv`], leaves
//! the cluster, and returns from `main`.

use std::fmt;
use std::io;

/// The signal that asked the process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// SIGINT: Ctrl-C at a terminal (on Windows, Ctrl-C).
    Interrupt,
    /// SIGTERM: a process manager or `kill` asks the process to stop.
    Terminate,
}

impl Signal {
    /// The signal's usual name: `SIGINT` or `SIGTERM`.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The signals that ask a process to stop, caught: SIGINT and SIGTERM on
/// Unix, Ctrl-C elsewhere.
///
/// Creating it installs the handlers at once (it needs a tokio runtime):
/// a signal that arrives after [`ShutdownSignals::new`] returns is kept
/// until [`recv`](ShutdownSignals::recv) takes it, even if nobody was
/// waiting at that moment. Create it before the process announces that it
/// serves, so that a stop sent right after the announcement is not lost
/// (or, before the handlers are installed, fatal). The handlers stay
/// installed for the rest of the process (a tokio property), so a signal
/// never again ends the process by its default action: after the first
/// one, the process must leave and exit by itself.
///
/// ```no_run
/// use actor_cluster::ShutdownSignals;
///
/// # async fn serve() -> std::io::Result<()> {
/// let mut signals = ShutdownSignals::new()?;
/// println!("serving");
/// let signal = signals.recv().await;
/// println!("{signal}: leaving the cluster");
/// // member.leave().await?; then return from main
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ShutdownSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    /// Installs the handlers. Fails only if the runtime cannot deliver
    /// signals (say, it was built without its I/O driver).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn new() -> io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(ShutdownSignals {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(ShutdownSignals {})
        }
    }

    /// Waits for the next stop signal and says which it was. Cancel-safe:
    /// a signal that arrives while no `recv` is pending is returned by the
    /// next one. Never resolves once the runtime is shutting down.
    pub async fn recv(&mut self) -> Signal {
        #[cfg(unix)]
        {
            tokio::select! {
                Some(()) = self.interrupt.recv() => Signal::Interrupt,
                Some(()) = self.terminate.recv() => Signal::Terminate,
                else => std::future::pending().await,
            }
        }
        #[cfg(not(unix))]
        {
            match tokio::signal::ctrl_c().await {
                Ok(()) => Signal::Interrupt,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for Ctrl-C");
                    std::future::pending().await
                }
            }
        }
    }
}

/// Resolves on the first SIGINT or SIGTERM (Ctrl-C outside Unix) and says
/// which: [`ShutdownSignals::new`] then [`recv`](ShutdownSignals::recv) in
/// one call.
///
/// The handlers are installed when this is called, not when it is first
/// polled; a process that announces it is ready should still create
/// [`ShutdownSignals`] itself before announcing, if it awaits the signal
/// only later.
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// let signal = actor_cluster::shutdown_signal()?.await;
/// println!("stopping on {signal}");
/// # Ok(()) }
/// ```
pub fn shutdown_signal() -> io::Result<impl Future<Output = Signal> + Send + 'static> {
    let mut signals = ShutdownSignals::new()?;
    Ok(async move { signals.recv().await })
}

/// Resolves when this process's stdin closes (or cannot be read); what is
/// written to it is ignored. For a silo run by a supervisor that ends it by
/// closing its pipe (a launcher, a test), beside [`ShutdownSignals`].
///
/// It reads on a thread of its own rather than through `tokio::io::stdin`:
/// tokio reads stdin on its blocking pool, and a runtime waits for its
/// blocking reads when it shuts down, so a process stopped by a signal
/// would hang on its open stdin after leaving the cluster. A plain thread
/// ends with the process.
pub fn stdin_closed() -> tokio::sync::oneshot::Receiver<()> {
    let (closed, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 64];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = closed.send(());
    });
    rx
}

#[cfg(all(test, unix))]
mod tests {
    use std::time::Duration;

    use super::*;

    fn send(signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &std::process::id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill {signal}");
    }

    // The signals go to this whole test process. Sent only once the
    // handlers are installed, they are caught (the process lives on), and
    // the other tests of the binary, which do not listen, see nothing.
    #[tokio::test]
    async fn sigterm_and_sigint_are_caught_and_told_apart_even_unawaited() {
        let mut signals = ShutdownSignals::new().unwrap();
        // Sent while nobody waits: kept for the next recv.
        send("-TERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let got = tokio::time::timeout(Duration::from_secs(10), signals.recv()).await;
        assert_eq!(got, Ok(Signal::Terminate));
        send("-INT");
        let got = tokio::time::timeout(Duration::from_secs(10), signals.recv()).await;
        assert_eq!(got, Ok(Signal::Interrupt));
        assert_eq!(Signal::Terminate.to_string(), "SIGTERM");

        let one = shutdown_signal().unwrap();
        send("-TERM");
        let got = tokio::time::timeout(Duration::from_secs(10), one).await;
        assert_eq!(got, Ok(Signal::Terminate));
    }
}
