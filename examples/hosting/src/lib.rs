//! # Course exercises 11-13: hosting a silo, and calling it from outside
//!
//! **The originals** show the three ways an Orleans application is put
//! together. The silo can be hosted inside an ASP.NET web app: the web
//! host starts the silo, and its controllers call grains through the
//! silo's `IGrainFactory`. The silo can also run alone in a console app
//! (a generic host with only the silo). Finally, a web app that is not a
//! silo can connect to the cluster as a client (`UseOrleansClient`) and
//! call grains through a gateway. The lesson: grains do not care where
//! they are hosted or who calls them. Hosting is a deployment choice, and
//! a client outside the cluster calls grains with the same interfaces as
//! code inside it.
//!
//! **The grain version** puts the three side by side, in one cluster:
//!
//! - [`start_web`] embeds a silo in an axum app. The app's handlers get the
//!   silo as axum state and call [`HelloGrain`]s through it
//!   (`GET /hello/{name}`). The silo is a full cluster member, so a grain
//!   may run in this process or in any other silo.
//! - [`start_standalone`] is a silo with no web front. The binary runs it
//!   alone with `--standalone --table <file>` (a console silo), and it
//!   serves until Ctrl-C or SIGTERM, then leaves the cluster and exits.
//! - [`ClusterClient`] is the external client. It hosts no grains,
//!   connects to any silo's gateway endpoint, learns the others, and calls
//!   grains with the same typed references (`client.get_grain::<HelloGrain>(name).say_hello(..)`).
//!
//! Every [`Hello`] says which silo and process produced it. The count in
//! it shows that a call over HTTP and a call through the client reach the
//! same single activation of a grain. [`play`] runs the scenario: HTTP
//! requests to the axum app over 127.0.0.1, then calls through a
//! `ClusterClient`, for names the cluster placed on each of the two silos.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actor_cluster::{ClusterConfig, ClusterSilo, MembershipTable, SqlMembership};
use actor_core::prelude::*;
use anyhow::{Context as _, bail};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use actor_cluster::ClusterClient;

/// The cluster id in the membership table.
pub const CLUSTER_ID: &str = "hosting";
/// The name of the silo embedded in the web app.
pub const WEB: &str = "web";
/// The name of the standalone silo.
pub const STANDALONE: &str = "standalone";
/// The line a standalone silo prints once it serves:
/// `STANDALONE <pid> <endpoint>`.
pub const READY: &str = "STANDALONE";

/// A grain that greets one person (type name `hello`, keyed by the name)
/// and counts the greetings.
#[derive(Debug, Default)]
pub struct HelloGrain {
    greeted: u32,
}

impl Grain for HelloGrain {
    const TYPE_NAME: &'static str = "hello";
}

/// A greeting, and where it was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The greeting text.
    pub text: String,
    /// How many greetings this grain has made, this one included.
    pub count: u32,
    /// The silo the grain runs on.
    pub silo: String,
    /// The process id of that silo's process.
    pub pid: u32,
}

#[grain_methods]
impl HelloGrain {
    /// Greets the grain's person on behalf of `from`.
    pub async fn say_hello(&mut self, from: String, ctx: &GrainContext<Self>) -> Hello {
        self.greeted += 1;
        Hello {
            text: format!("Hello, {}! (asked by {from})", ctx.key()),
            count: self.greeted,
            silo: ctx.silo().name().to_owned(),
            pid: std::process::id(),
        }
    }
}

/// The silo every host starts: named `name`, hosting [`HelloGrain`].
pub fn silo_builder(name: &str) -> actor_core::SiloBuilder {
    Silo::builder().name(name).grain::<HelloGrain>()
}

/// Opens the membership table in the SQLite file at `path` (created if
/// missing), shared by every silo process of the cluster.
pub async fn sqlite_table(path: &Path) -> anyhow::Result<Arc<dyn MembershipTable>> {
    let url = format!("sqlite://{}", path.display());
    let table = SqlMembership::connect(&url, CLUSTER_ID, Duration::from_secs(5))
        .await
        .with_context(|| format!("opening the membership table {}", path.display()))?;
    Ok(Arc::new(table))
}

async fn start_member(
    name: &str,
    table: Arc<dyn MembershipTable>,
    config: ClusterConfig,
) -> anyhow::Result<ClusterSilo> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let member = ClusterSilo::start(silo_builder(name), listener, table, config).await?;
    Ok(member)
}

/// Starts the standalone silo ([`STANDALONE`]) as a member of the cluster
/// of `table`, on a free port of 127.0.0.1.
pub async fn start_standalone(
    table: Arc<dyn MembershipTable>,
    config: ClusterConfig,
) -> anyhow::Result<ClusterSilo> {
    start_member(STANDALONE, table, config).await
}

/// Starts the silo embedded in the web app ([`WEB`]) as a member of the
/// cluster of `table`, and builds the app around it. Serve the router
/// with [`serve`]; the silo stays the caller's, to stop when the app
/// stops.
pub async fn start_web(
    table: Arc<dyn MembershipTable>,
    config: ClusterConfig,
) -> anyhow::Result<(ClusterSilo, Router)> {
    let member = start_member(WEB, table, config).await?;
    let app = app(member.silo().clone());
    Ok((member, app))
}

/// The web app around a silo: `GET /hello/{name}` greets through the
/// name's [`HelloGrain`], wherever it runs; `GET /health` answers `ok`.
/// `HEAD /hello/{name}` greets no one: it answers 200 with the content
/// type a GET would have, and no body.
pub fn app(silo: Silo) -> Router {
    Router::new()
        // A HEAD must not change state, and a greeting counts: axum's
        // `get` alone would serve HEAD by running `hello` and dropping
        // the body.
        .route("/hello/{name}", get(hello).head(hello_head))
        .route("/health", get(|| async { "ok" }))
        .with_state(silo)
}

/// What a GET of a greeting would say in its headers, without calling
/// the grain.
async fn hello_head() -> impl IntoResponse {
    // No `content-length`: only the greeting knows it. axum empties a
    // HEAD's body after setting the length from the body's size, and an
    // empty body would claim `content-length: 0`, which a GET never
    // sends; a body streamed from nothing has no known size.
    let unknown_length = Body::from_stream(Body::empty().into_data_stream());
    ([(header::CONTENT_TYPE, "application/json")], unknown_length)
}

async fn hello(
    State(silo): State<Silo>,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<Hello>, (StatusCode, String)> {
    silo.get_grain::<HelloGrain>(name)
        .say_hello("the web app".to_owned())
        .await
        .map(Json)
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))
}

/// An axum app being served.
#[derive(Debug)]
pub struct Server {
    /// The address it listens on.
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

/// Serves `app` on `listener` until [`Server::stop`].
pub fn serve(app: Router, listener: TcpListener) -> anyhow::Result<Server> {
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    Ok(Server { addr, stop, task })
}

impl Server {
    /// Stops accepting, lets requests in flight finish, and returns.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await??;
        Ok(())
    }
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

const NAMES: [&str; 16] = [
    "ada", "grace", "alan", "barbara", "edsger", "frances", "donald", "margaret", "ken", "radia",
    "tony", "leslie", "niklaus", "shafi", "john", "sophie",
];

/// `n` names whose [`HelloGrain`] the cluster places on the silo at
/// `owner`, in `member`'s view (placement is by hashing; the scenario
/// looks up where names land so that both silos answer).
pub fn names_owned_by(member: &ClusterSilo, owner: &str, n: usize) -> Vec<String> {
    let extra = (0..).map(|i| format!("friend-{i}"));
    NAMES
        .iter()
        .map(|s| s.to_string())
        .chain(extra)
        .filter(|name| {
            member.owner_of(&GrainId::new(HelloGrain::TYPE_NAME, name.as_str())) == owner
        })
        .take(n)
        .collect()
}

/// How a greeting was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `GET /hello/{name}` on the web app, whose embedded silo calls the
    /// grain.
    Http,
    /// A [`ClusterClient`] outside the cluster.
    Client,
}

/// One greeting of the scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// How it was asked for.
    pub via: Via,
    /// The name greeted.
    pub name: String,
    /// The grain's reply.
    pub hello: Hello,
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let via = match self.via {
            Via::Http => "HTTP  ",
            Via::Client => "client",
        };
        write!(
            f,
            "{via} {:<9} -> \"{}\" #{} from silo {} (pid {})",
            self.name, self.hello.text, self.hello.count, self.hello.silo, self.hello.pid
        )
    }
}

/// The scenario: greets two names placed on each silo, first over HTTP
/// through the web app at `web_addr` (whose embedded silo is `web`), then
/// through a [`ClusterClient`] connected to `gateway`. The client's
/// greetings are each grain's second: the same activations.
pub async fn play(
    web: &ClusterSilo,
    web_addr: SocketAddr,
    gateway: &str,
) -> anyhow::Result<Vec<Answer>> {
    let mut names = Vec::new();
    for owner in web.active_members() {
        names.extend(names_owned_by(web, &owner, 2));
    }
    let mut answers = Vec::new();
    for name in &names {
        let response = reqwest::get(format!("http://{web_addr}/hello/{name}")).await?;
        let status = response.status();
        let body = response.text().await?;
        if status != 200 {
            bail!("GET /hello/{name}: {status} {body}");
        }
        answers.push(Answer {
            via: Via::Http,
            name: name.clone(),
            hello: serde_json::from_str(&body)?,
        });
    }
    let client = ClusterClient::connect(vec![gateway.to_owned()], Duration::from_secs(1)).await?;
    for name in &names {
        let hello = client
            .get_grain::<HelloGrain>(name.as_str())
            .say_hello("a cluster client".to_owned())
            .await?;
        answers.push(Answer {
            via: Via::Client,
            name: name.clone(),
            hello,
        });
    }
    Ok(answers)
}

/// Command-line options of the binary.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Options {
    /// `--serve`: keep the web app serving (with an in-process standalone
    /// silo, unless `--table` names a shared table).
    pub serve: bool,
    /// `--standalone`: run only a standalone silo (needs `--table`).
    pub standalone: bool,
    /// `--client <gateway>`: call grains through a cluster client.
    pub client: Option<String>,
    /// `--table <file>`: the SQLite membership table shared by silo
    /// processes.
    pub table: Option<std::path::PathBuf>,
    /// `--port <n>`: the web app's port with `--serve` (default 3000).
    pub port: u16,
    /// `--fast`: test timings ([`ClusterConfig::fast`]).
    pub fast: bool,
    /// `--exit-on-eof`: a standalone silo also stops when its stdin
    /// closes (for supervisors and tests).
    pub exit_on_eof: bool,
    /// Names to greet with `--client`.
    pub names: Vec<String>,
}

/// How to run the binary.
pub const USAGE: &str = "usage: example-hosting [--serve [--port N] [--table FILE]] \
    | --standalone --table FILE [--exit-on-eof] | --client HOST:PORT [NAME...]  (plus --fast)";

impl Options {
    /// Parses the arguments (without the program name).
    pub fn parse(args: impl IntoIterator<Item = String>) -> anyhow::Result<Options> {
        let mut o = Options {
            port: 3000,
            ..Options::default()
        };
        let mut args = args.into_iter();
        while let Some(a) = args.next() {
            match a.as_str() {
                "--serve" => o.serve = true,
                "--standalone" => o.standalone = true,
                "--client" => o.client = Some(args.next().context("--client needs HOST:PORT")?),
                "--table" => o.table = Some(args.next().context("--table needs a file")?.into()),
                "--port" => o.port = args.next().context("--port needs a number")?.parse()?,
                "--fast" => o.fast = true,
                "--exit-on-eof" => o.exit_on_eof = true,
                name if !name.starts_with('-') && o.client.is_some() => {
                    o.names.push(name.to_owned())
                }
                other => bail!("unknown argument {other}; {USAGE}"),
            }
        }
        if o.standalone && o.table.is_none() {
            bail!("--standalone needs --table FILE, the membership table other silos share");
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
