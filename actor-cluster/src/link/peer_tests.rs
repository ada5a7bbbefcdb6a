//! What a peer can and cannot do to calls through what it puts in its
//! envelopes: the numbers that pair replies with requests, and the call
//! ids of chains. These speak the link's protocol by hand, as a buggy or
//! hostile peer (or several clients with the same counters) would.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex as StdMutex;
use std::time::Duration;

use actor_core::{CallId, EncodedCall, GrainId};
use actor_core::{Grain, GrainContext, Handler, Message, Silo as CoreSilo};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tonic::{Request, Response, Status, Streaming};

use super::batch_stream::BatchStream;
use super::envelope::encode_request;
use super::pb::silo_link_client::SiloLinkClient;
use super::pb::silo_link_server::{SiloLink, SiloLinkServer};
use super::pb::{Batch, ChainFrame, Envelope, Kind};
use super::*;
use crate::{ClusterConfig, ClusterSilo, InMemoryMembership, MembershipTable};

const BOUND: Duration = Duration::from_secs(30);

async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(BOUND, f)
        .await
        .expect("test timed out")
}

/// Answers `Echo(text)` with the grain's key, the text and its count.
#[derive(Default)]
struct EchoGrain {
    calls: u32,
}

#[derive(Serialize, Deserialize)]
struct Echo(String);

impl Message for Echo {
    type Reply = (String, String, u32);
    const NAME: &'static str = "echo";
}

impl Handler<Echo> for EchoGrain {
    async fn handle(
        &mut self,
        Echo(text): Echo,
        ctx: &GrainContext<Self>,
    ) -> (String, String, u32) {
        self.calls += 1;
        (ctx.key().to_string(), text, self.calls)
    }
}

/// Holds its turn until released, having published the turn's call id.
#[derive(Serialize, Deserialize)]
struct Hold;

impl Message for Hold {
    type Reply = ();
    const NAME: &'static str = "hold";
}

/// Answers at once.
#[derive(Serialize, Deserialize)]
struct Ping;

impl Message for Ping {
    type Reply = String;
    const NAME: &'static str = "ping";
}

impl Handler<Hold> for EchoGrain {
    async fn handle(&mut self, _: Hold, _ctx: &GrainContext<Self>) {
        let id = actor_core::__private::current_call_id().expect("a turn has a call id");
        let release = {
            let mut held = HELD.lock().unwrap();
            let (tx, rx) = oneshot::channel::<()>();
            held.push((id, tx));
            rx
        };
        let _ = release.await;
    }
}

impl Handler<Ping> for EchoGrain {
    async fn handle(&mut self, _: Ping, _ctx: &GrainContext<Self>) -> String {
        "pong".to_owned()
    }
}

impl Grain for EchoGrain {
    const TYPE_NAME: &'static str = "echo";
}

impl actor_core::GrainMethods for EchoGrain {
    fn register(m: &mut actor_core::Methods<Self>) {
        m.add::<Echo, _>().add::<Hold, _>().add::<Ping, _>();
    }
}

/// Turns holding in `Hold`: their call ids and their releases.
static HELD: StdMutex<Vec<(CallId, oneshot::Sender<()>)>> = StdMutex::new(Vec::new());

async fn member(name: &str, table: &Arc<dyn MembershipTable>) -> ClusterSilo {
    ClusterSilo::start(
        CoreSilo::builder().name(name).grain::<EchoGrain>(),
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        table.clone(),
        ClusterConfig::fast(),
    )
    .await
    .unwrap()
}

/// A raw stream to the silo at `endpoint`: the requests to send, and the
/// replies as they come.
async fn raw_stream(endpoint: &str) -> (mpsc::Sender<Envelope>, Streaming<Batch>) {
    let channel = crate::transport::channel(&crate::transport::tcp(), endpoint, BOUND, None)
        .await
        .unwrap();
    let (tx, rx) = mpsc::channel(QUEUE);
    let replies = SiloLinkClient::new(channel)
        .open(Request::new(BatchStream::new(rx)))
        .await
        .unwrap()
        .into_inner();
    (tx, replies)
}

/// A request envelope numbered `number` for `target` with message `msg`.
fn request<M: Message>(number: u64, target: &GrainId, msg: &M) -> Envelope {
    let call = EncodedCall::new(
        target.clone(),
        M::NAME,
        actor_core::__private::codec::encode(msg).unwrap(),
        BOUND,
    );
    let mut env = encode_request(&call, call.payload.clone()).unwrap();
    env.call_id = number;
    env
}

fn reply_of<T: serde::de::DeserializeOwned>(env: &Envelope) -> std::result::Result<T, String> {
    match env.kind() {
        Kind::Reply => Ok(actor_core::__private::codec::decode(&env.payload).unwrap()),
        Kind::Error => Err(
            actor_core::__private::codec::decode::<actor_core::Error>(&env.payload)
                .unwrap()
                .to_string(),
        ),
        other => panic!("not a reply: {other:?}"),
    }
}

/// Two clients whose request numbers (and call ids) are the same, calling
/// grains on another silo through one gateway at once: every reply goes
/// to the call that asked for it. Each raw stream is a client with its own
/// counter starting where the other's does, which is what separate client
/// processes are (see tests/gateway_clients.rs for real processes); the
/// gateway forwards both clients' calls on its one link to the owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_with_equal_numbers_through_one_gateway_get_their_own_replies() {
    let table: Arc<dyn MembershipTable> = Arc::new(InMemoryMembership::new());
    let gateway = member("gateway", &table).await;
    let owner = member("owner", &table).await;
    bounded(async {
        while gateway.active_members().len() != 2 || owner.active_members().len() != 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let owned: Vec<String> = (0..)
        .map(|i| format!("k{i}"))
        .filter(|k| {
            gateway.owner_of(&GrainId::new(EchoGrain::TYPE_NAME, k.as_str()))
                == owner.address().endpoint
        })
        .take(8)
        .collect();

    const CALLS: u64 = 400;
    let endpoint = gateway.address().endpoint.clone();
    let client = |name: &'static str| {
        let (endpoint, owned) = (endpoint.clone(), owned.clone());
        tokio::spawn(async move {
            let (tx, mut replies) = raw_stream(&endpoint).await;
            let mut asked = HashMap::new();
            for number in 1..=CALLS {
                let key = &owned[number as usize % owned.len()];
                let text = format!("{name}-{number}");
                let target = GrainId::new(EchoGrain::TYPE_NAME, key.as_str());
                tx.send(request(number, &target, &Echo(text.clone())))
                    .await
                    .unwrap();
                asked.insert(number, (key.clone(), text));
            }
            let mut wrong = Vec::new();
            let mut answered = 0;
            while answered < CALLS {
                let batch = replies.message().await.unwrap().expect("stream ended");
                for env in batch.envelopes {
                    answered += 1;
                    let (key, text) = asked.remove(&env.call_id).expect("a reply per request");
                    match reply_of::<(String, String, u32)>(&env) {
                        Ok((k, t, _))
                            if (k.as_str(), t.as_str()) == (key.as_str(), text.as_str()) => {}
                        got => {
                            wrong.push(format!("#{} asked {key} {text}, got {got:?}", env.call_id))
                        }
                    }
                }
            }
            wrong
        })
    };
    let (a, b) = (client("a"), client("b"));
    let (a, b) = bounded(async { (a.await.unwrap(), b.await.unwrap()) }).await;
    assert!(
        a.is_empty() && b.is_empty(),
        "{} and {} wrong replies, first: {:?} {:?}",
        a.len(),
        b.len(),
        &a[..a.len().min(3)],
        &b[..b.len().min(3)]
    );
    // Every call ran exactly once: the counts add up.
    let mut total = 0;
    for key in &owned {
        let r = owner
            .silo()
            .get_grain::<EchoGrain>(key.as_str())
            .ask(Echo(String::new()))
            .await
            .unwrap();
        total += r.2 - 1;
    }
    assert_eq!(u64::from(total), 2 * CALLS);
    gateway.leave().await.unwrap();
    owner.leave().await.unwrap();
}

/// A callee that answers each request late, after sending what a buggy or
/// hostile peer might: replies for numbers it was never sent, and a
/// request envelope carrying the caller's own number.
#[derive(Clone)]
struct Liar;

#[tonic::async_trait]
impl SiloLink for Liar {
    type OpenStream =
        futures::stream::Map<BatchStream, fn(Batch) -> std::result::Result<Batch, Status>>;

    async fn open(
        &self,
        request: Request<Streaming<Batch>>,
    ) -> std::result::Result<Response<Self::OpenStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel::<Envelope>(QUEUE);
        tokio::spawn(async move {
            while let Ok(Some(batch)) = inbound.message().await {
                for env in batch.envelopes {
                    let n = env.call_id;
                    let lies = [0, n + (1 << 40), u64::MAX]
                        .into_iter()
                        .map(|call_id| Envelope {
                            call_id,
                            kind: Kind::Reply as i32,
                            payload: actor_core::__private::codec::encode(&"a lie").unwrap(),
                            ..Default::default()
                        })
                        .chain([Envelope {
                            call_id: n,
                            kind: Kind::Request as i32,
                            ..env.clone()
                        }]);
                    for lie in lies {
                        let _ = tx.send(lie).await;
                    }
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        let _ = tx
                            .send(Envelope {
                                call_id: n,
                                kind: Kind::Reply as i32,
                                payload: env.payload,
                                ..Default::default()
                            })
                            .await;
                    });
                }
            }
        });
        let replies: fn(Batch) -> std::result::Result<Batch, Status> = Ok;
        Ok(Response::new(futures::StreamExt::map(
            BatchStream::new(rx),
            replies,
        )))
    }

    async fn ping(
        &self,
        _: Request<pb::PingRequest>,
    ) -> std::result::Result<Response<pb::PingReply>, Status> {
        Err(Status::unimplemented("a liar"))
    }

    async fn gateways(
        &self,
        _: Request<pb::GatewaysRequest>,
    ) -> std::result::Result<Response<pb::GatewaysReply>, Status> {
        Err(Status::unimplemented("a liar"))
    }
}

/// Replies for numbers the link never sent, and envelopes that are not
/// replies, complete no call: each call gets its own answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_cannot_complete_calls_it_was_not_asked() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = listener.local_addr().unwrap().to_string();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(SiloLinkServer::new(Liar))
            .serve_with_incoming(incoming),
    );
    let link = Arc::new(
        bounded(Link::connect(
            &endpoint,
            LinkOptions {
                timeout: BOUND,
                ..LinkOptions::default()
            },
        ))
        .await
        .unwrap(),
    );
    let calls: Vec<_> = (0..64u32)
        .map(|i| {
            let link = link.clone();
            tokio::spawn(async move {
                let payload = actor_core::__private::codec::encode(&i).unwrap();
                let call =
                    EncodedCall::new(GrainId::new("t", i64::from(i)), "m", payload.clone(), BOUND);
                (payload, link.call(call).await)
            })
        })
        .collect();
    for c in calls {
        let (payload, reply) = bounded(c).await.unwrap();
        assert_eq!(
            reply.as_deref(),
            Ok(&payload[..]),
            "a call completed by a lie"
        );
    }
    assert!(link.is_alive());
    server.abort();
}

/// A chain frame naming a grain's running turn by its sequence number
/// alone, as a peer whose counter collides with this process's would,
/// is no cycle: the call waits its turn. The turn's full id, origin
/// included, is one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chains_from_a_process_with_a_colliding_counter_are_no_deadlock() {
    let table: Arc<dyn MembershipTable> = Arc::new(InMemoryMembership::new());
    let silo = member("alone", &table).await;
    let endpoint = silo.address().endpoint.clone();
    let target = GrainId::new(EchoGrain::TYPE_NAME, "held");
    let (tx, mut replies) = raw_stream(&endpoint).await;
    tx.send(request(1, &target, &Hold)).await.unwrap();
    let running = bounded(async {
        loop {
            if let Some((id, _)) = HELD.lock().unwrap().first() {
                return *id;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;

    // The same sequence number from another process (another origin).
    let other = CallId::from_parts(running.origin() ^ 0x5a5a, running.seq());
    let mut colliding = request(2, &target, &Ping);
    colliding.chain = vec![ChainFrame {
        grain: actor_core::__private::codec::encode(&target).unwrap(),
        call_id: other.seq(),
        call_origin: other.origin(),
    }];
    tx.send(colliding).await.unwrap();
    // The turn's own id: a real cycle, refused at once.
    let mut cycle = request(3, &target, &Ping);
    cycle.chain = vec![ChainFrame {
        grain: actor_core::__private::codec::encode(&target).unwrap(),
        call_id: running.seq(),
        call_origin: running.origin(),
    }];
    tx.send(cycle).await.unwrap();

    let mut got = HashMap::new();
    while got.len() < 3 {
        if got.len() == 1 {
            // The deadlock came back; the colliding call waits for the
            // held turn: release it.
            assert!(got.contains_key(&3), "{got:?}");
            for (_, release) in HELD.lock().unwrap().drain(..) {
                let _ = release.send(());
            }
        }
        let batch = bounded(replies.message())
            .await
            .unwrap()
            .expect("stream ended");
        for env in batch.envelopes {
            let outcome = if env.call_id == 1 {
                reply_of::<()>(&env).map(|()| String::new())
            } else {
                reply_of::<String>(&env)
            };
            got.insert(env.call_id, outcome);
        }
    }
    let deadlock = got[&3].clone().unwrap_err();
    assert!(deadlock.contains("deadlock"), "{deadlock}");
    assert_eq!(got[&2], Ok("pong".to_owned()), "{got:?}");
    assert_eq!(got[&1], Ok(String::new()));
    silo.leave().await.unwrap();
}
