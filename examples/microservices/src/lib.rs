//! # Course exercise 05: two services, two processes, one cluster
//!
//! **The original** (MicroserviceA / MicroserviceB, and its gRPC variant)
//! runs two services as two processes. Service A answers its own clients
//! by calling service B over HTTP (or gRPC) and waiting for the answer. A
//! has to know B's address, pick a protocol, and serialize the request and
//! the response by hand. The lesson: a call to another process is still a
//! call and waits for its reply, but the caller has to know where the
//! callee lives and how to reach it.
//!
//! **The grain version** runs two silos, `a` and `b`, as two processes in
//! one cluster. They find each other through a membership table in a
//! SQLite file that both open ([`start_silo`]). Service A is the
//! [`OrderGrain`] and service B is the [`StockGrain`]. An order grain
//! reserves stock with `ctx.get_grain::<StockGrain>(product).reserve(qty)`,
//! the same typed call it would make to a grain in its own silo. It names
//! no address, no protocol and no serializer. The cluster places each grain
//! on one silo by hashing its id over the live silos, and the call crosses
//! to the other process when the stock grain lives there. That is location
//! transparency: where a grain runs is the runtime's business, and the
//! code does not change when it moves.
//!
//! Every reply carries the [`Origin`] of the grain that produced it: the
//! silo's name and the process id. The scenario ([`play`]) picks keys
//! whose grains the cluster placed on the other silo
//! ([`keys_owned_by`]). That makes the crossing visible: an order grain
//! in process `a` gets its answer from a stock grain in process `b`, and
//! the other way round.
//!
//! The binary is both processes. Run without arguments, it is silo `a`:
//! it starts silo `b` as a child process of itself ([`ChildSilo`], the
//! same executable with `--silo b --table <file>`), waits until both silos
//! see each other, plays the calls, then closes the child's stdin. The
//! child leaves the cluster gracefully and exits 0.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use actor_cluster::{ClusterConfig, ClusterSilo, MembershipTable, SqlMembership};
use actor_core::prelude::*;
use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

/// The cluster id both processes use in the membership table.
pub const CLUSTER_ID: &str = "microservices";
/// Units of each product a stock grain starts with.
pub const INITIAL_STOCK: u32 = 10;
/// The line the child prints once it sees both silos:
/// `READY <pid> <endpoint>`.
pub const READY: &str = "READY";

/// Where a reply was produced: the silo and the operating-system process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The silo's name (`a` or `b`).
    pub silo: String,
    /// The process id of the silo's process.
    pub pid: u32,
}

impl Origin {
    /// The origin of a turn running on `silo` in this process.
    pub fn here(silo: &Silo) -> Self {
        Origin {
            silo: silo.name().to_owned(),
            pid: std::process::id(),
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "silo {} (pid {})", self.silo, self.pid)
    }
}

/// Service B: the stock of one product (type name `stock`, keyed by
/// product). Starts with [`INITIAL_STOCK`] units.
#[derive(Debug)]
pub struct StockGrain {
    available: u32,
}

impl Default for StockGrain {
    fn default() -> Self {
        StockGrain {
            available: INITIAL_STOCK,
        }
    }
}

impl Grain for StockGrain {
    const TYPE_NAME: &'static str = "stock";
}

/// The answer of service B.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// Whether the units were reserved (false: not enough left).
    pub granted: bool,
    /// Units left after this reservation.
    pub left: u32,
    /// Where the stock grain ran.
    pub by: Origin,
}

#[grain_methods]
impl StockGrain {
    /// Reserves `qty` units if that many are left.
    pub async fn reserve(&mut self, qty: u32, ctx: &GrainContext<Self>) -> Reservation {
        let granted = qty <= self.available;
        if granted {
            self.available -= qty;
        }
        Reservation {
            granted,
            left: self.available,
            by: Origin::here(ctx.silo()),
        }
    }
}

/// Service A: an order (type name `order`, keyed by order id). Placing a
/// line reserves the stock from service B and waits for its answer.
#[derive(Debug, Default)]
pub struct OrderGrain {
    lines: u32,
}

impl Grain for OrderGrain {
    const TYPE_NAME: &'static str = "order";
}

/// The answer of service A, with the answer it got from service B.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placed {
    /// Lines placed on this order so far.
    pub lines: u32,
    /// Where the order grain ran.
    pub by: Origin,
    /// What the stock grain answered.
    pub stock: Reservation,
}

#[grain_methods]
impl OrderGrain {
    /// Adds a line of `qty` units of `product`: asks the product's stock
    /// grain, wherever it lives, and waits for its reply.
    pub async fn place(
        &mut self,
        product: String,
        qty: u32,
        ctx: &GrainContext<Self>,
    ) -> Result<Placed, actor_core::Error> {
        // No address, no protocol: the same call as to a local grain.
        let stock = ctx.get_grain::<StockGrain>(product).reserve(qty).await?;
        if stock.granted {
            self.lines += 1;
        }
        Ok(Placed {
            lines: self.lines,
            by: Origin::here(ctx.silo()),
            stock,
        })
    }
}

/// Opens the membership table in the SQLite file at `path` (created if
/// missing). Both processes open the same file.
pub async fn open_table(path: &Path) -> anyhow::Result<Arc<dyn MembershipTable>> {
    let url = format!("sqlite://{}", path.display());
    let table = SqlMembership::connect(&url, CLUSTER_ID, Duration::from_secs(5))
        .await
        .with_context(|| format!("opening the membership table {}", path.display()))?;
    Ok(Arc::new(table))
}

/// Starts silo `name` hosting both services, listening on a free port of
/// 127.0.0.1, as a member of the cluster whose table is the SQLite file
/// at `table`.
pub async fn start_silo(
    name: &str,
    table: &Path,
    config: ClusterConfig,
) -> anyhow::Result<ClusterSilo> {
    let table = open_table(table).await?;
    let builder = Silo::builder()
        .name(name)
        .grain::<OrderGrain>()
        .grain::<StockGrain>();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let member = ClusterSilo::start(builder, listener, table, config).await?;
    Ok(member)
}

/// Waits until `member` places grains over `n` active silos.
pub async fn wait_for_members(
    member: &ClusterSilo,
    n: usize,
    within: Duration,
) -> anyhow::Result<()> {
    let until = tokio::time::Instant::now() + within;
    while member.active_members().len() != n {
        if tokio::time::Instant::now() >= until {
            bail!(
                "silo {} sees {:?} after {within:?}, not {n} silos",
                member.silo().name(),
                member.active_members()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// The first `n` keys `{prefix}-0`, `{prefix}-1`, ... whose grain of type
/// `G` the cluster places on the silo at `owner`, in `member`'s current
/// view. (Placement is by hashing: the example looks up where keys land
/// instead of pinning grains, so that the calls visibly cross.)
pub fn keys_owned_by<G: Grain>(
    member: &ClusterSilo,
    owner: &str,
    prefix: &str,
    n: usize,
) -> Vec<String> {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .filter(|key| member.owner_of(&GrainId::new(G::TYPE_NAME, key.as_str())) == owner)
        .take(n)
        .collect()
}

/// One call of the scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The order called.
    pub order: String,
    /// The product reserved.
    pub product: String,
    /// The units asked for.
    pub qty: u32,
    /// The order grain's answer (with the stock grain's inside).
    pub placed: Placed,
}

impl std::fmt::Display for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = &self.placed;
        write!(
            f,
            "{} on {} reserves {} x {} on {}: {}, {} left",
            self.order,
            p.by,
            self.qty,
            self.product,
            p.stock.by,
            if p.stock.granted {
                "granted"
            } else {
                "refused"
            },
            p.stock.left
        )
    }
}

/// The scenario, called from the silo `member` (at endpoint `here`) with
/// the other silo at `there`:
///
/// 1. order grains placed on this silo reserve stock whose grains live on
///    the other silo (A here calls B there);
/// 2. order grains placed on the other silo reserve stock whose grains live
///    on this one (the order grain there calls back into this process);
/// 3. one product is reserved until it runs out, from orders on both
///    silos: the stock grain has one activation, wherever it is called
///    from.
pub async fn play(member: &ClusterSilo, there: &str) -> anyhow::Result<Vec<Exchange>> {
    let here = member.address().endpoint.clone();
    let mut plan = Vec::new();
    let orders_here = keys_owned_by::<OrderGrain>(member, &here, "order", 2);
    let stock_there = keys_owned_by::<StockGrain>(member, there, "product", 2);
    for (o, p) in orders_here.iter().zip(&stock_there) {
        plan.push((o.clone(), p.clone(), 3));
    }
    let orders_there = keys_owned_by::<OrderGrain>(member, there, "order", 2);
    let stock_here = keys_owned_by::<StockGrain>(member, &here, "product", 2);
    for (o, p) in orders_there.iter().zip(&stock_here) {
        plan.push((o.clone(), p.clone(), 3));
    }
    // The first product on the other silo, until it runs out: 3 of its 10
    // units went above, 4 + 3 more from orders on both silos leave none,
    // and the last line is refused.
    let contended = stock_there[0].clone();
    for (o, qty) in [
        (&orders_here[0], 4),
        (&orders_there[0], 3),
        (&orders_here[1], 1),
    ] {
        plan.push((o.clone(), contended.clone(), qty));
    }

    let mut exchanges = Vec::with_capacity(plan.len());
    for (order, product, qty) in plan {
        let placed = member
            .silo()
            .get_grain::<OrderGrain>(order.as_str())
            .place(product.clone(), qty)
            .await
            .with_context(|| format!("calling order {order}"))??;
        exchanges.push(Exchange {
            order,
            product,
            qty,
            placed,
        });
    }
    Ok(exchanges)
}

/// Silo `b` running as a child process of this one.
#[derive(Debug)]
pub struct ChildSilo {
    child: Child,
    stdin: Option<ChildStdin>,
    /// The child's process id.
    pub pid: u32,
    /// The child silo's link endpoint.
    pub endpoint: String,
    lines: mpsc::UnboundedReceiver<String>,
}

impl ChildSilo {
    /// Starts `exe --silo <name> --table <table>` (and `--fast` for test
    /// timings) and waits until it reports that it sees `members` silos.
    /// The child's later output lines are returned by
    /// [`stop`](ChildSilo::stop).
    pub async fn spawn(
        exe: &Path,
        name: &str,
        table: &Path,
        fast: bool,
        members: usize,
        within: Duration,
    ) -> anyhow::Result<ChildSilo> {
        let mut cmd = Command::new(exe);
        cmd.arg("--silo")
            .arg(name)
            .arg("--table")
            .arg(table)
            .arg("--members")
            .arg(members.to_string());
        if fast {
            cmd.arg("--fast");
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // If this process dies, so does the child.
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("child has no stdout")?;
        let (tx, mut lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let ready = tokio::time::timeout(within, async {
            while let Some(line) = lines.recv().await {
                let mut words = line.split_whitespace();
                if words.next() == Some(READY) {
                    let pid = words.next().and_then(|p| p.parse().ok());
                    let endpoint = words.next().map(str::to_owned);
                    if let (Some(pid), Some(endpoint)) = (pid, endpoint) {
                        return Some((pid, endpoint));
                    }
                }
            }
            None
        })
        .await;
        let (pid, endpoint) = match ready {
            Ok(Some(ready)) => ready,
            Ok(None) => bail!("the child silo exited before it was ready"),
            Err(_) => bail!("the child silo was not ready within {within:?}"),
        };
        Ok(ChildSilo {
            child,
            stdin,
            pid,
            endpoint,
            lines,
        })
    }

    /// Stops the child cleanly: closes its stdin, upon which it leaves the
    /// cluster and exits. Returns its exit status and the lines it printed
    /// after it was ready. Kills it if it has not exited within `within`.
    pub async fn stop(mut self, within: Duration) -> anyhow::Result<(ExitStatus, Vec<String>)> {
        drop(self.stdin.take());
        let status = match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status?,
            Err(_) => {
                self.child.kill().await?;
                bail!("the child silo did not exit within {within:?} of its stdin closing");
            }
        };
        let mut rest = Vec::new();
        while let Ok(line) = self.lines.try_recv() {
            rest.push(line);
        }
        Ok((status, rest))
    }
}

/// Command-line options of the binary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// `--silo <name>`: run as that child silo (else: the parent, silo `a`).
    pub silo: Option<String>,
    /// `--table <file>`: the SQLite membership file (child mode).
    pub table: Option<PathBuf>,
    /// `--members <n>`: the child reports ready once it sees `n` silos.
    pub members: usize,
    /// `--fast`: test timings ([`ClusterConfig::fast`]), passed on to the
    /// child.
    pub fast: bool,
}

impl Options {
    /// Parses the arguments (without the program name).
    pub fn parse(args: impl IntoIterator<Item = String>) -> anyhow::Result<Options> {
        let mut o = Options {
            members: 2,
            ..Options::default()
        };
        let mut args = args.into_iter();
        while let Some(a) = args.next() {
            match a.as_str() {
                "--silo" => o.silo = Some(args.next().context("--silo needs a name")?),
                "--table" => o.table = Some(args.next().context("--table needs a path")?.into()),
                "--members" => {
                    o.members = args.next().context("--members needs a number")?.parse()?
                }
                "--fast" => o.fast = true,
                other => bail!(
                    "unknown argument {other}; usage: example-microservices [--fast] | --silo <name> --table <file> [--members <n>] [--fast]"
                ),
            }
        }
        Ok(o)
    }

    /// The cluster timings these options ask for.
    pub fn config(&self) -> ClusterConfig {
        if self.fast {
            ClusterConfig::fast()
        } else {
            ClusterConfig::default()
        }
    }
}

/// The child's whole life: joins the cluster as silo `name`, prints
/// `READY <pid> <endpoint>` once it sees `members` silos, serves until its
/// stdin closes, then leaves the cluster gracefully.
pub async fn run_child(
    name: &str,
    table: &Path,
    members: usize,
    config: ClusterConfig,
) -> anyhow::Result<()> {
    let member = start_silo(name, table, config).await?;
    wait_for_members(&member, members, Duration::from_secs(30)).await?;
    println!(
        "{READY} {} {}",
        std::process::id(),
        member.address().endpoint
    );
    // Serve until the parent closes our stdin (or dies).
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while stdin.read(&mut buf).await.unwrap_or(0) > 0 {}
    let served = member.silo().activation_count();
    member.leave().await?;
    println!("silo {name} left the cluster after hosting {served} grains");
    Ok(())
}
