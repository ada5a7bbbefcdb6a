//! Hosts of their own: each silo in a Linux network namespace with its own
//! address on a bridge the harness makes, so that a silo announces a
//! non-loopback address and a partition is a real cut (the namespace's
//! link goes down). PostgreSQL (on 127.0.0.1 in the host's namespace) is
//! reached through a forwarder on the bridge's address.
//!
//! Where namespaces cannot be made (no `ip`, no privilege), the fallback
//! is loopback with one TCP proxy in front of each silo: the silo
//! advertises its proxy's port, and a partition stops the proxy (every
//! connection into the silo is cut; its own connections out still work,
//! so the cut is one-way). The report says which was used.

use std::net::SocketAddr;
use std::process::Command;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::error::{Error, Result};

/// How the silos are networked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    /// Namespaces if they can be made, loopback proxies otherwise.
    Auto,
    /// Namespaces, or fail.
    Namespaces,
    /// Loopback and proxies.
    Loopback,
}

/// Where one silo listens and what it announces.
#[derive(Debug, Clone)]
pub struct SiloNet {
    /// The namespace it runs in, if any.
    pub netns: Option<String>,
    /// `listen` of its configuration.
    pub listen: String,
    /// `advertise` of its configuration.
    pub advertise: String,
    /// Its health endpoints' address (reachable from the harness).
    pub health: String,
    /// The PostgreSQL URL as seen from the silo.
    pub database_url: String,
}

/// The network of one run; torn down on drop.
#[derive(Debug)]
pub struct Network {
    /// `namespaces` or `loopback-proxies`.
    pub kind: &'static str,
    /// Why the fallback was taken, if it was.
    pub fallback_reason: Option<String>,
    silos: Vec<SiloNet>,
    namespaces: Vec<String>,
    bridge: Option<String>,
    proxies: Vec<Proxy>,
    _db_forwarder: Option<Proxy>,
}

fn run(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| Error::Network {
            command: args.join(" "),
            message: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Network {
            command: args.join(" "),
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// Makes sure `ip` (iproute2) is there, installing it with apt-get if it
/// is missing and we are root. Returns why not, if it cannot be.
fn ensure_ip() -> std::result::Result<(), String> {
    if Command::new("ip").arg("-V").output().is_ok() {
        return Ok(());
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if !root {
        return Err("`ip` (iproute2) is missing and this is not root".into());
    }
    eprintln!("chaos: installing iproute2 for the network namespaces");
    let _ = Command::new("apt-get").args(["update", "-q"]).status();
    let ok = Command::new("apt-get")
        .args(["install", "-y", "-q", "iproute2"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok && Command::new("ip").arg("-V").output().is_ok() {
        Ok(())
    } else {
        Err("`ip` (iproute2) is missing and apt-get could not install it".into())
    }
}

impl Network {
    /// Sets up `n` silo hosts for run `tag` (a short unique word), the
    /// silos listening on `port` (namespaces) or on free loopback ports.
    pub async fn setup(mode: NetworkMode, tag: &str, n: usize, database: &str) -> Result<Network> {
        if mode != NetworkMode::Loopback {
            let made = match ensure_ip() {
                Ok(()) => Network::namespaces(tag, n, database).await,
                Err(why) => Err(Error::Network {
                    command: "ip".into(),
                    message: why,
                }),
            };
            match made {
                Ok(net) => return Ok(net),
                Err(e) if mode == NetworkMode::Namespaces => return Err(e),
                Err(e) => {
                    let mut net = Network::loopback(n, database).await?;
                    net.fallback_reason = Some(e.to_string());
                    eprintln!(
                        "chaos: network namespaces cannot be made ({e}); \
                         falling back to loopback with a TCP proxy per silo (one-way partitions)"
                    );
                    return Ok(net);
                }
            }
        }
        Network::loopback(n, database).await
    }

    async fn namespaces(tag: &str, n: usize, database: &str) -> Result<Network> {
        remove_stale();
        // A /24 per run that no other run's bridge has (two test binaries
        // may run at once); runs of one process pick theirs one at a time.
        static PICK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _pick = PICK.lock().await;
        let used = Command::new("ip")
            .args(["-o", "-4", "addr", "show"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let subnet = (20..=250)
            .find(|x| !used.contains(&format!("10.213.{x}.")))
            .ok_or_else(|| Error::Network {
                command: "ip addr".into(),
                message: "no free 10.213.X.0/24 subnet for the run".into(),
            })?;
        let bridge = format!("chb{tag}");
        let mut net = Network {
            kind: "namespaces",
            fallback_reason: None,
            silos: Vec::new(),
            namespaces: Vec::new(),
            bridge: None,
            proxies: Vec::new(),
            _db_forwarder: None,
        };
        run(&["ip", "link", "add", &bridge, "type", "bridge"])?;
        net.bridge = Some(bridge.clone());
        let gw = format!("10.213.{subnet}.1");
        run(&["ip", "addr", "add", &format!("{gw}/24"), "dev", &bridge])?;
        run(&["ip", "link", "set", &bridge, "up"])?;
        let db = database_target(database)?;
        let forwarder = Proxy::start(format!("{gw}:{}", db.port()).parse().unwrap(), db).await?;
        net._db_forwarder = Some(forwarder);
        for i in 0..n {
            let ns = format!("ch{tag}s{i}");
            let host = format!("chv{tag}s{i}");
            let peer = format!("chp{tag}s{i}");
            run(&["ip", "netns", "add", &ns])?;
            net.namespaces.push(ns.clone());
            run(&[
                "ip", "link", "add", &host, "type", "veth", "peer", "name", &peer,
            ])?;
            run(&["ip", "link", "set", &peer, "netns", &ns])?;
            run(&["ip", "link", "set", &host, "master", &bridge])?;
            run(&["ip", "link", "set", &host, "up"])?;
            let ip = format!("10.213.{subnet}.{}", i + 2);
            run(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                &peer,
            ])?;
            run(&["ip", "-n", &ns, "link", "set", &peer, "up"])?;
            run(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
            net.silos.push(SiloNet {
                netns: Some(ns),
                listen: format!("{ip}:11111"),
                advertise: format!("{ip}:11111"),
                health: format!("{ip}:8081"),
                database_url: rehost(database, &format!("{gw}:{}", db.port())),
            });
        }
        Ok(net)
    }

    async fn loopback(n: usize, database: &str) -> Result<Network> {
        let mut net = Network {
            kind: "loopback-proxies",
            fallback_reason: None,
            silos: Vec::new(),
            namespaces: Vec::new(),
            bridge: None,
            proxies: Vec::new(),
            _db_forwarder: None,
        };
        for _ in 0..n {
            let real = free_port()?;
            let front: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse().unwrap();
            let proxy = Proxy::start(front, format!("127.0.0.1:{real}").parse().unwrap()).await?;
            net.proxies.push(proxy);
            net.silos.push(SiloNet {
                netns: None,
                listen: format!("127.0.0.1:{real}"),
                advertise: front.to_string(),
                health: format!("127.0.0.1:{}", free_port()?),
                database_url: database.to_owned(),
            });
        }
        Ok(net)
    }

    /// Silo `i`'s addresses.
    pub fn silo(&self, i: usize) -> &SiloNet {
        &self.silos[i]
    }

    /// Cuts silo `i` off.
    pub fn cut(&self, i: usize) -> Result<()> {
        self.set_link(i, false)
    }

    /// Heals silo `i`'s cut.
    pub fn heal(&self, i: usize) -> Result<()> {
        self.set_link(i, true)
    }

    fn set_link(&self, i: usize, up: bool) -> Result<()> {
        match &self.silos[i].netns {
            Some(ns) => {
                let peer = ns.replacen("ch", "chp", 1);
                run(&[
                    "ip",
                    "-n",
                    ns,
                    "link",
                    "set",
                    &peer,
                    if up { "up" } else { "down" },
                ])
            }
            None => {
                self.proxies[i].set_open(up);
                Ok(())
            }
        }
    }
}

/// Removes the namespaces and bridges of runs whose process is gone (a
/// harness killed before it could clean up). Names carry the pid:
/// `ch<pid>x<run>s<i>`, `chb<pid>x<run>`.
fn remove_stale() {
    let gone = |name: &str, prefix: &str| -> bool {
        let Some(rest) = name.strip_prefix(prefix) else {
            return false;
        };
        let Some((pid, _)) = rest.split_once('x') else {
            return false;
        };
        pid.parse::<u32>()
            .is_ok_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
    };
    let list = |args: &[&str]| {
        Command::new("ip")
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    for line in list(&["netns", "list"]).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if !name.starts_with("chb") && gone(name, "ch") {
            let _ = run(&["ip", "netns", "del", name]);
        }
    }
    for line in list(&["-o", "link", "show", "type", "bridge"]).lines() {
        let name = line.split(": ").nth(1).unwrap_or("").trim();
        if gone(name, "chb") {
            let _ = run(&["ip", "link", "del", name]);
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = run(&["ip", "netns", "del", ns]);
        }
        if let Some(b) = &self.bridge {
            let _ = run(&["ip", "link", "del", b]);
        }
    }
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|source| Error::Io {
        path: "127.0.0.1:0".into(),
        source,
    })?;
    Ok(l.local_addr().map(|a| a.port()).unwrap_or(0))
}

/// The `host:port` of a `postgres://user@host:port/db` URL, resolved on
/// loopback.
fn database_target(url: &str) -> Result<SocketAddr> {
    let rest = url.split_once("://").map(|x| x.1).unwrap_or(url);
    let rest = rest.rsplit_once('@').map(|x| x.1).unwrap_or(rest);
    let hostport = rest.split(['/', '?']).next().unwrap_or("");
    let hostport = if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:5432")
    };
    let hostport = hostport.replace("localhost", "127.0.0.1");
    hostport.parse().map_err(|_| {
        Error::Usage(format!(
            "the database URL must name an IP address and port (such as 127.0.0.1:5432), not `{hostport}`"
        ))
    })
}

/// `url` with its host and port replaced by `hostport`.
fn rehost(url: &str, hostport: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let (user, rest) = match rest.rsplit_once('@') {
        Some((u, r)) => (format!("{u}@"), r),
        None => (String::new(), rest),
    };
    let tail = rest.find(['/', '?']).map(|i| &rest[i..]).unwrap_or("");
    format!("{scheme}://{user}{hostport}{tail}")
}

/// A TCP forwarder that can be closed (every connection cut, new ones
/// refused) and opened again.
#[derive(Debug)]
pub struct Proxy {
    open: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Forwards `listen` to `target`.
    pub async fn start(listen: SocketAddr, target: SocketAddr) -> Result<Proxy> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| Error::Io {
                path: listen.to_string().into(),
                source,
            })?;
        let (open, watcher) = watch::channel(true);
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                if !*watcher.borrow() {
                    drop(inbound);
                    continue;
                }
                let mut watcher = watcher.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let mut inbound = inbound;
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = watcher.wait_for(|open| !*open) => {}
                    }
                });
            }
        });
        Ok(Proxy { open, task })
    }

    /// Opens or closes it.
    pub fn set_open(&self, open: bool) {
        self.open.send_replace(open);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_are_rehosted_keeping_user_and_db() {
        assert_eq!(
            rehost("postgres://postgres@127.0.0.1:5432/test", "10.0.0.1:5432"),
            "postgres://postgres@10.0.0.1:5432/test"
        );
        assert_eq!(
            database_target("postgres://postgres@127.0.0.1:5432/test").unwrap(),
            "127.0.0.1:5432".parse().unwrap()
        );
        assert_eq!(
            database_target("postgres://u:p@localhost/test").unwrap(),
            "127.0.0.1:5432".parse().unwrap()
        );
        assert!(database_target("postgres://db.example:5432/x").is_err());
    }

    #[test]
    fn namespaces_of_a_dead_harness_are_removed() {
        // pid 4194305 is above Linux's pid_max: never a live process.
        let ns = "ch4194305x0s0";
        let bridge = "chb4194305x0";
        if run(&["ip", "netns", "add", ns]).is_err() {
            eprintln!("skipped: cannot make network namespaces here");
            return;
        }
        run(&["ip", "link", "add", bridge, "type", "bridge"]).unwrap();
        // A live one (this process) stays.
        let mine = format!("ch{}x99s0", std::process::id());
        run(&["ip", "netns", "add", &mine]).unwrap();
        remove_stale();
        let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
        let netns = String::from_utf8_lossy(&netns.stdout).into_owned();
        let links = Command::new("ip")
            .args(["-o", "link", "show"])
            .output()
            .unwrap();
        let links = String::from_utf8_lossy(&links.stdout).into_owned();
        let _ = run(&["ip", "netns", "del", &mine]);
        assert!(!netns.contains(ns), "{netns}");
        assert!(netns.contains(&mine), "{netns}");
        assert!(!links.contains(bridge), "{links}");
    }

    #[tokio::test]
    async fn a_closed_proxy_cuts_and_refuses_then_opens_again() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = echo.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = echo.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut b = [0u8; 16];
                    while let Ok(n) = s.read(&mut b).await {
                        if n == 0 || s.write_all(&b[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let front: SocketAddr = format!("127.0.0.1:{}", free_port().unwrap())
            .parse()
            .unwrap();
        let proxy = Proxy::start(front, target).await.unwrap();
        let mut c = TcpStream::connect(front).await.unwrap();
        c.write_all(b"hi").await.unwrap();
        let mut b = [0u8; 2];
        c.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"hi");
        proxy.set_open(false);
        // The open connection is cut: the read ends.
        let mut rest = Vec::new();
        let n = c.read_to_end(&mut rest).await.unwrap_or(0);
        assert_eq!(n, 0);
        proxy.set_open(true);
        let mut c = TcpStream::connect(front).await.unwrap();
        c.write_all(b"ok").await.unwrap();
        c.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"ok");
    }
}
