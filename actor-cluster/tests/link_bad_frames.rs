//! A peer that breaks the protocol on a link stream (`SiloLink/Open`)
//! gets the stream ended with an error status, as Ping and the directory
//! calls do, not with OK; replies of calls it had already sent still
//! come first.
//!
//! The frames are written by hand (tonic's encoder cannot announce a
//! length it does not send), over a tonic channel; the replies are read
//! with tonic's decoder into this file's copy of the link's messages.

mod common;

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actor_cluster::{DEFAULT_MAX_FRAME, LinkListener, LinkService};
use actor_core::prelude::*;
use futures::StreamExt;
use futures::channel::mpsc;
use tonic::codec::{Codec, Streaming};
use tonic::codegen::Bytes;
use tonic::codegen::http;

const BOUND: Duration = Duration::from_secs(30);

async fn bounded<F: Future>(f: F) -> F::Output {
    common::bounded(BOUND, f).await
}

/// Naps.
#[derive(Default)]
pub struct Sleeper;

impl Grain for Sleeper {
    const TYPE_NAME: &'static str = "sleeper";
}

#[grain_methods]
impl Sleeper {
    /// Sleeps `ms` milliseconds.
    pub async fn nap(&mut self, ms: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        ms
    }
}

/// `grains.link.v1.Batch`, the fields this test uses.
#[derive(Clone, PartialEq, prost::Message)]
struct Batch {
    #[prost(message, repeated, tag = "1")]
    envelopes: Vec<Envelope>,
}

/// `grains.link.v1.Envelope`, the fields this test uses.
#[derive(Clone, PartialEq, prost::Message)]
struct Envelope {
    #[prost(uint64, tag = "1")]
    call_id: u64,
    #[prost(int32, tag = "2")]
    kind: i32,
    #[prost(bytes = "vec", tag = "3")]
    target: Vec<u8>,
    #[prost(string, tag = "4")]
    method: String,
    #[prost(uint64, tag = "5")]
    timeout_micros: u64,
    #[prost(bytes = "vec", tag = "8")]
    payload: Vec<u8>,
}

const KIND_REQUEST: i32 = 1;
const KIND_REPLY: i32 = 3;

/// A request body of whatever bytes the test sends.
struct RawBody(mpsc::UnboundedReceiver<Bytes>);

impl hyper::body::Body for RawBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        self.0
            .poll_next_unpin(cx)
            .map(|bytes| bytes.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

/// A gRPC message frame: uncompressed, its length, its bytes.
fn frame(message: &[u8]) -> Bytes {
    let mut out = vec![0];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out.into()
}

/// Opens `SiloLink/Open` on the silo at `endpoint`: the sender of the
/// request body's bytes and the stream of reply batches.
async fn open(endpoint: &str) -> (mpsc::UnboundedSender<Bytes>, Streaming<Batch>) {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{endpoint}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let (tx, rx) = mpsc::unbounded();
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{endpoint}/grains.link.v1.SiloLink/Open"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(RawBody(rx)))
        .unwrap();
    let response = tower::ServiceExt::oneshot(channel, request).await.unwrap();
    let status = response.status();
    let mut codec = tonic_prost::ProstCodec::<Batch, Batch>::default();
    let replies =
        Streaming::new_response(codec.decoder(), response.into_body(), status, None, None);
    (tx, replies)
}

/// A request to nap `ms` on grain `key`, numbered `number`.
fn nap(number: u64, key: i64, ms: u64) -> Vec<u8> {
    let envelope = Envelope {
        call_id: number,
        kind: KIND_REQUEST,
        target: actor_core::__private::codec::encode(&GrainId::new("sleeper", key)).unwrap(),
        method: "nap".into(),
        timeout_micros: 10_000_000,
        payload: actor_core::__private::codec::encode(&SleeperNap { ms }).unwrap(),
    };
    prost::Message::encode_to_vec(&Batch {
        envelopes: vec![envelope],
    })
}

async fn silo() -> (Silo, String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = listener.local_addr().unwrap().to_string();
    let silo = Silo::builder().grain::<Sleeper>().start().await.unwrap();
    let server = LinkService::new(silo.clone(), DEFAULT_MAX_FRAME)
        .serve(LinkListener::tcp(listener).unwrap());
    (silo, endpoint, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_announcing_2_gib_ends_the_link_stream_with_an_error_status() {
    bounded(async {
        let (silo, endpoint, _server) = silo().await;
        let (requests, mut replies) = open(&endpoint).await;
        // A call, then at once a frame header announcing 2 GiB.
        requests.unbounded_send(frame(&nap(1, 1, 300))).unwrap();
        requests
            .unbounded_send(Bytes::from_static(&[0, 0x80, 0, 0, 0, 1, 2, 3]))
            .unwrap();

        // The call already running still answers.
        let batch = replies.message().await.unwrap().expect("the nap's reply");
        let reply = &batch.envelopes[0];
        assert_eq!((reply.call_id, reply.kind), (1, KIND_REPLY), "{reply:?}");
        assert_eq!(
            actor_core::__private::codec::decode::<u64>(&reply.payload).unwrap(),
            300
        );
        // Then the stream ends, with the decoder's error, not OK.
        let end = replies.message().await;
        let status = end.expect_err("the stream ends with an error status");
        assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
        drop(requests);

        // The silo serves on.
        let (requests, mut replies) = open(&endpoint).await;
        requests.unbounded_send(frame(&nap(1, 2, 1))).unwrap();
        let batch = replies.message().await.unwrap().unwrap();
        assert_eq!(batch.envelopes[0].kind, KIND_REPLY);
        silo.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_that_is_no_batch_ends_the_link_stream_with_an_error_status() {
    bounded(async {
        let (silo, endpoint, _server) = silo().await;
        let (requests, mut replies) = open(&endpoint).await;
        // Field 1 announced as a 127-byte message, with 3 bytes to it.
        requests
            .unbounded_send(frame(&[0x0a, 0x7f, 1, 2, 3]))
            .unwrap();
        let status = replies
            .message()
            .await
            .expect_err("the stream ends with an error status");
        assert_eq!(status.code(), tonic::Code::Internal, "{status:?}");
        silo.shutdown().await;
    })
    .await;
}
