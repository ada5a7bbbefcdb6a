//! How and where the dashboard is served. Bound to loopback by default;
//! a non-loopback address needs an access token or basic auth, so that
//! nobody publishes a cluster's figures by accident.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::error::{Error, Result};

/// The default address, as OrleansDashboard: `127.0.0.1:8080`.
pub const DEFAULT_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);

/// Who may read the dashboard.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Access {
    /// Anyone who can reach the address (loopback only, unless
    /// [`DashboardConfig::allow_open_public`] is set).
    Open,
    /// Requests carry `Authorization: Bearer <token>` or `?token=<token>`
    /// (the page passes the token from its own address on).
    Token(String),
    /// HTTP basic auth (the browser asks for it).
    Basic {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets into logs.
        match self {
            Access::Open => f.write_str("Open"),
            Access::Token(_) => f.write_str("Token(..)"),
            Access::Basic { user, .. } => write!(f, "Basic {{ user: {user:?}, .. }}"),
        }
    }
}

/// The dashboard's configuration: address, access, refresh and history.
#[derive(Debug, Clone)]
pub struct DashboardConfig {
    pub(crate) addr: SocketAddr,
    pub(crate) access: Access,
    pub(crate) allow_open_public: bool,
    pub(crate) refresh: Duration,
    pub(crate) history: Duration,
    pub(crate) peer_timeout: Duration,
    pub(crate) tls: Option<crate::DashboardTls>,
    pub(crate) idle_timeout: Duration,
}

impl Default for DashboardConfig {
    /// `127.0.0.1:8080`, open (loopback), refreshed every second, five
    /// minutes of history.
    fn default() -> Self {
        DashboardConfig {
            addr: DEFAULT_ADDR,
            access: Access::Open,
            allow_open_public: false,
            refresh: Duration::from_secs(1),
            history: Duration::from_secs(300),
            peer_timeout: Duration::from_millis(800),
            tls: None,
            idle_timeout: Duration::from_secs(30),
        }
    }
}

impl DashboardConfig {
    /// Serves on `addr` (port 0 picks a free port; see
    /// [`Dashboard::local_addr`](crate::Dashboard::local_addr)).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Requires an access token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.access = Access::Token(token.into());
        self
    }

    /// Requires HTTP basic auth.
    pub fn basic_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.access = Access::Basic {
            user: user.into(),
            password: password.into(),
        };
        self
    }

    /// Serves a non-loopback address without access control (behind a
    /// proxy that authenticates, say). Off by default.
    pub fn allow_open_public(mut self, allow: bool) -> Self {
        self.allow_open_public = allow;
        self
    }

    /// How often figures are gathered and pushed to pages (1 s unless set).
    pub fn refresh(mut self, every: Duration) -> Self {
        self.refresh = every;
        self
    }

    /// How much history the charts keep (5 min unless set).
    pub fn history(mut self, span: Duration) -> Self {
        self.history = span;
        self
    }

    /// How long to wait for a peer silo's report (800 ms unless set); a
    /// peer that does not answer is shown as unreachable.
    pub fn peer_timeout(mut self, timeout: Duration) -> Self {
        self.peer_timeout = timeout;
        self
    }

    /// Serves HTTPS with `tls`'s certificate instead of plain HTTP (which
    /// the port then does not answer). The access rule stays as set: off
    /// loopback a token or basic auth is still required, and TLS keeps it
    /// from being read on the network.
    pub fn tls(mut self, tls: crate::DashboardTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Closes a connection on which no byte has moved either way for
    /// `timeout` (30 s unless set): one that connects and says nothing, or
    /// a keep-alive connection left open. A page's event stream gets a
    /// snapshot every refresh, so it is not idle.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Whether the dashboard serves HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The address to serve on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The access rule.
    pub fn access(&self) -> &Access {
        &self.access
    }

    /// Checks that the configuration can be served safely.
    pub fn validate(&self) -> Result<()> {
        match &self.access {
            Access::Open if !self.addr.ip().is_loopback() && !self.allow_open_public => {
                return Err(Error::Config(format!(
                    "refusing to serve the dashboard on the non-loopback address {} without access control; \
                     set DashboardConfig::token or ::basic_auth (or allow_open_public(true) behind an authenticating proxy)",
                    self.addr
                )));
            }
            Access::Token(t) if t.trim().is_empty() => {
                return Err(Error::Config("the access token is empty".into()));
            }
            Access::Basic { user, password } if user.is_empty() || password.is_empty() => {
                return Err(Error::Config(
                    "basic auth needs a non-empty user and password".into(),
                ));
            }
            Access::Basic { user, .. } if user.contains(':') => {
                return Err(Error::Config(
                    "a basic-auth user name cannot contain `:`".into(),
                ));
            }
            _ => {}
        }
        if self.refresh < Duration::from_millis(10) {
            return Err(Error::Config(format!(
                "the refresh interval must be at least 10 ms, got {:?}",
                self.refresh
            )));
        }
        if self.history < self.refresh {
            return Err(Error::Config(
                "the history span must be at least one refresh interval".into(),
            ));
        }
        if self.peer_timeout.is_zero() {
            return Err(Error::Config("the peer timeout must be above zero".into()));
        }
        if self.idle_timeout <= self.refresh {
            return Err(Error::Config(format!(
                "the idle timeout ({:?}) must be longer than the refresh interval ({:?}), or pages' event streams would be closed",
                self.idle_timeout, self.refresh
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_may_be_open_public_may_not() {
        DashboardConfig::default().validate().unwrap();
        let public = DashboardConfig::default().bind("0.0.0.0:8080".parse().unwrap());
        let err = public.clone().validate().unwrap_err().to_string();
        assert!(err.contains("without access control"), "{err}");
        public.clone().token("s3cret").validate().unwrap();
        public.clone().basic_auth("ops", "pw").validate().unwrap();
        public.allow_open_public(true).validate().unwrap();
    }

    #[test]
    fn bad_settings_are_refused() {
        let d = DashboardConfig::default;
        assert!(d().token(" ").validate().is_err());
        assert!(d().basic_auth("", "x").validate().is_err());
        assert!(d().basic_auth("a:b", "x").validate().is_err());
        assert!(d().refresh(Duration::ZERO).validate().is_err());
        assert!(d().history(Duration::from_millis(10)).validate().is_err());
        assert!(d().peer_timeout(Duration::ZERO).validate().is_err());
        let idle_below_refresh = d().idle_timeout(Duration::from_millis(500));
        assert!(idle_below_refresh.validate().is_err());
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let s = format!(
            "{:?}",
            DashboardConfig::default().basic_auth("ops", "hunter2")
        );
        assert!(!s.contains("hunter2"), "{s}");
        let s = format!("{:?}", DashboardConfig::default().token("tok-123"));
        assert!(!s.contains("tok-123"), "{s}");
    }
}
