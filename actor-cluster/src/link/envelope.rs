//! Calls to and from the link's protobuf envelopes: a request carries the
//! target, method, time left, call chain, request context, trace context,
//! sender and the bincode payload; replies and errors carry the payload.

use std::time::Duration;

use actor_core::{
    CallId, EncodedCall, GrainId, RequestContext, Silo, SpanId, TraceContext, TraceId,
};

use super::pb::{ChainFrame, ContextEntry, Envelope, Kind};

/// The most time left a request from the network is taken to have: a
/// deadline further out (up to `u64::MAX` microseconds on the wire) would
/// overflow the clock of a platform that counts in nanoseconds (584
/// years) when added to now; no call needs more than a month.
pub(super) const MAX_TIMEOUT: Duration = Duration::from_secs(30 * 24 * 3600);

pub(super) fn error_envelope(call_id: u64, e: &actor_core::Error) -> Envelope {
    Envelope {
        call_id,
        kind: Kind::Error as i32,
        payload: actor_core::__private::codec::encode(e).unwrap_or_default(),
        ..Default::default()
    }
}

/// `silo`: the silo the call is for; grain ids decoded through it reuse
/// its registered type names instead of allocating them.
pub(super) fn decode_request(
    env: Envelope,
    silo: Option<&Silo>,
) -> actor_core::Result<EncodedCall> {
    let grain = |bytes: &[u8]| -> actor_core::Result<GrainId> {
        match silo {
            Some(silo) => silo.decode(bytes),
            None => actor_core::__private::codec::decode(bytes),
        }
    };
    let kind = env.kind();
    if kind != Kind::Request && kind != Kind::OneWay {
        return Err(actor_core::Error::Serialization(format!(
            "expected a request envelope, got {kind:?}"
        )));
    }
    let target = grain(&env.target)?;
    // A request context from the network is untrusted input: bounded.
    crate::request_limits::check_context(
        &target,
        &env.method,
        env.context
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str())),
    )?;
    let trace = trace_from_envelope(&env);
    let sender = env.sender;
    let mut call = EncodedCall::new(
        target,
        env.method,
        env.payload,
        Duration::from_micros(env.timeout_micros).min(MAX_TIMEOUT),
    );
    // `call.call_id` stays the fresh one `EncodedCall::new` made: the
    // envelope's number only pairs the reply with this request.
    call.one_way = kind == Kind::OneWay;
    call.chain = env
        .chain
        .into_iter()
        .map(|f| {
            Ok((
                grain(&f.grain)?,
                CallId::from_parts(f.call_origin, f.call_id),
            ))
        })
        .collect::<actor_core::Result<_>>()?;
    let mut context = RequestContext::new();
    for e in env.context {
        context.insert(e.key, e.value);
    }
    call.context = context;
    call.trace = trace;
    if !sender.is_empty() {
        call.sender = Some(grain(&sender)?);
    }
    Ok(call)
}

/// The caller's trace context of a request envelope; zero ids (invalid in
/// W3C) mean none.
fn trace_from_envelope(env: &Envelope) -> Option<TraceContext> {
    let trace_id = u128::from(env.trace_id_high) << 64 | u128::from(env.trace_id_low);
    (trace_id != 0 && env.parent_span_id != 0).then_some(TraceContext {
        trace_id: TraceId(trace_id),
        span_id: SpanId(env.parent_span_id),
        flags: env.trace_flags as u8,
    })
}

/// The request envelope of `call`, carrying `payload` (the call's, moved
/// or copied by the caller).
pub(super) fn encode_request(call: &EncodedCall, payload: Vec<u8>) -> actor_core::Result<Envelope> {
    Ok(Envelope {
        // Numbered by the link when it is sent (see `Link::start`).
        call_id: 0,
        kind: if call.one_way {
            Kind::OneWay
        } else {
            Kind::Request
        } as i32,
        target: actor_core::__private::codec::encode(&call.target)?,
        method: call.method.clone(),
        timeout_micros: u64::try_from(call.timeout.as_micros()).unwrap_or(u64::MAX),
        chain: call
            .chain
            .iter()
            .map(|(g, c)| {
                Ok(ChainFrame {
                    grain: actor_core::__private::codec::encode(g)?,
                    call_id: c.seq(),
                    call_origin: c.origin(),
                })
            })
            .collect::<actor_core::Result<_>>()?,
        context: call
            .context
            .iter()
            .map(|(k, v)| ContextEntry {
                key: k.to_owned(),
                value: v.to_owned(),
            })
            .collect(),
        payload,
        trace_id_high: call.trace.map_or(0, |t| (t.trace_id.0 >> 64) as u64),
        trace_id_low: call.trace.map_or(0, |t| t.trace_id.0 as u64),
        parent_span_id: call.trace.map_or(0, |t| t.span_id.0),
        trace_flags: call.trace.map_or(0, |t| u32::from(t.flags)),
        sender: match &call.sender {
            Some(g) => actor_core::__private::codec::encode(g)?,
            None => Vec::new(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::super::fuzz;
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Requests survive the trip through the protobuf envelope.
        #[test]
        fn request_envelopes_round_trip(
            key in ".*", method in "[a-z_]{1,12}", micros in 0u64..10_000_000_000,
            ctx in proptest::collection::vec(("[a-z]{1,5}", ".*"), 0..4),
            chain in proptest::collection::vec((any::<i64>(), any::<u64>(), any::<u64>()), 0..4),
            payload in proptest::collection::vec(any::<u8>(), 0..64), one_way in any::<bool>(),
            sender in proptest::option::of(any::<i64>()),
        ) {
            let mut call = EncodedCall::new(GrainId::new("t", key), method, payload, Duration::from_micros(micros));
            call.one_way = one_way;
            call.sender = sender.map(|k| GrainId::new("s", k));
            call.chain = chain.iter().map(|(k, o, c)| (GrainId::new("c", *k), CallId::from_parts(*o, *c))).collect();
            let mut context = RequestContext::new();
            for (k, v) in &ctx { context.insert(k.clone(), v.clone()); }
            call.context = context;
            let env = encode_request(&call, call.payload.clone()).unwrap();
            let bytes = prost::Message::encode_to_vec(&env);
            let back = decode_request(<Envelope as prost::Message>::decode(&bytes[..]).unwrap(), None).unwrap();
            prop_assert_eq!(back.target, call.target);
            prop_assert_eq!(back.method, call.method);
            prop_assert_eq!(back.timeout, call.timeout);
            prop_assert_eq!(back.chain, call.chain);
            prop_assert_eq!(back.context, call.context);
            prop_assert_eq!(back.payload, call.payload);
            prop_assert_eq!(back.one_way, call.one_way);
            prop_assert_eq!(back.sender, call.sender);
            // The callee runs the call under an id of its own.
            prop_assert_ne!(back.call_id, call.call_id);
        }

        /// The caller's trace context crosses the link unchanged; zero ids
        /// (which W3C forbids) arrive as "no parent".
        #[test]
        fn trace_context_round_trips(trace: u128, span: u64, flags: u8, present: bool) {
            let mut call = EncodedCall::new(GrainId::new("t", 1), "m", Vec::new(), Duration::from_secs(1));
            call.trace = present.then_some(TraceContext { trace_id: TraceId(trace), span_id: SpanId(span), flags });
            let env = encode_request(&call, call.payload.clone()).unwrap();
            let bytes = prost::Message::encode_to_vec(&env);
            let back = decode_request(<Envelope as prost::Message>::decode(&bytes[..]).unwrap(), None).unwrap();
            let valid = present && trace != 0 && span != 0;
            prop_assert_eq!(back.trace, if valid { call.trace } else { None });
        }

        /// Garbage is a clear error, never a panic.
        #[test]
        fn garbage_envelopes_are_errors(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(env) = <Envelope as prost::Message>::decode(&bytes[..]) {
                let _ = decode_request(env, None);
            }
        }

        /// Random bytes as a frame of the link (a batch of envelopes) and
        /// as each of its other messages: an error or a value, never a
        /// panic.
        #[test]
        fn random_frames_never_panic(bytes in fuzz::random_bytes()) {
            decode_frame(&bytes);
            decode_other_messages(&bytes);
        }

        /// Valid frames (requests with chains, contexts, senders and trace
        /// contexts, replies, errors) with bits flipped, cut short, bytes
        /// overwritten or length fields made to announce gigabytes: an
        /// error or a value, never a panic.
        #[test]
        fn mutated_frames_never_panic(frame in valid_frame(), mutations in fuzz::mutations()) {
            let bytes = fuzz::apply(&frame, &mutations);
            decode_frame(&bytes);
            decode_other_messages(&bytes);
        }
    }

    /// A silo to decode grain ids through, as the callee's link does.
    fn test_silo() -> &'static (tokio::runtime::Runtime, Silo) {
        static SILO: std::sync::OnceLock<(tokio::runtime::Runtime, Silo)> =
            std::sync::OnceLock::new();
        SILO.get_or_init(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let silo = rt.block_on(Silo::builder().name("fuzz").start()).unwrap();
            (rt, silo)
        })
    }

    /// A request announcing the most time left the wire can say is
    /// queued like any other (its deadline is capped), not a panic of the
    /// silo's clock.
    #[test]
    fn the_longest_timeout_on_the_wire_is_capped() {
        let call = EncodedCall::new(
            GrainId::new("t", 1),
            "m",
            Vec::new(),
            Duration::from_secs(1),
        );
        let mut env = encode_request(&call, Vec::new()).unwrap();
        env.timeout_micros = u64::MAX;
        let (rt, silo) = test_silo();
        let back = decode_request(env, Some(silo)).unwrap();
        assert_eq!(back.timeout, MAX_TIMEOUT);
        let _guard = rt.enter();
        // No grain type `t` here: an error, after the deadline is made.
        assert!(matches!(
            silo.queue_encoded(back),
            Err(actor_core::Error::UnknownGrainType { .. })
        ));
    }

    /// What either side of a link does with a frame's bytes: the batch,
    /// then each envelope as a request (the callee, with its silo and
    /// without), as an error reply (the caller), and the target of a
    /// request a stopping silo refuses.
    fn decode_frame(bytes: &[u8]) {
        let Ok(batch) = <super::super::pb::Batch as prost::Message>::decode(bytes) else {
            return;
        };
        let (rt, silo) = test_silo();
        let _guard = rt.enter();
        for env in batch.envelopes {
            let _ = actor_core::__private::codec::decode::<actor_core::Error>(&env.payload);
            let _ = actor_core::__private::codec::decode::<GrainId>(&env.target);
            let _ = decode_request(env.clone(), None);
            // And on into the silo, as the callee does (it hosts no grain
            // type, so nothing runs).
            if let Ok(call) = decode_request(env, Some(silo)) {
                let _ = silo.queue_encoded(call);
            }
        }
    }

    /// The link's other messages: probes and gateway lists.
    fn decode_other_messages(bytes: &[u8]) {
        use super::super::pb;
        let _ = <pb::PingRequest as prost::Message>::decode(bytes);
        let _ = <pb::PingReply as prost::Message>::decode(bytes);
        let _ = <pb::GatewaysRequest as prost::Message>::decode(bytes);
        let _ = <pb::GatewaysReply as prost::Message>::decode(bytes);
    }

    /// A valid frame: one to four requests, a reply and an error.
    fn valid_frame() -> impl Strategy<Value = Vec<u8>> {
        let request = (
            any::<i64>(),
            "[a-z_]{1,12}",
            proptest::collection::vec(("[a-z]{1,5}", "[a-z0-9]{0,8}"), 0..3),
            proptest::collection::vec((any::<i64>(), any::<u64>(), any::<u64>()), 0..3),
            proptest::collection::vec(any::<u8>(), 0..32),
            proptest::option::of(any::<i64>()),
            any::<(u128, u64, u8)>(),
        )
            .prop_map(
                |(key, method, ctx, chain, payload, sender, (trace, span, flags))| {
                    let mut call = EncodedCall::new(
                        GrainId::new("t", key),
                        method,
                        payload,
                        Duration::from_secs(5),
                    );
                    call.sender = sender.map(|k| GrainId::new("s", k));
                    call.chain = chain
                        .iter()
                        .map(|(k, o, c)| (GrainId::new("c", *k), CallId::from_parts(*o, *c)))
                        .collect();
                    let mut context = RequestContext::new();
                    for (k, v) in ctx {
                        context.insert(k, v);
                    }
                    call.context = context;
                    call.trace = Some(TraceContext {
                        trace_id: TraceId(trace),
                        span_id: SpanId(span),
                        flags,
                    });
                    encode_request(&call, call.payload.clone()).unwrap()
                },
            );
        proptest::collection::vec(request, 1..4).prop_map(|mut envelopes| {
            envelopes.push(Envelope {
                call_id: 7,
                kind: Kind::Reply as i32,
                payload: actor_core::__private::codec::encode(&42u64).unwrap(),
                ..Default::default()
            });
            envelopes.push(error_envelope(
                8,
                &actor_core::Error::Deadlock {
                    cycle: vec![GrainId::new("a", 1), GrainId::new("b", 2)],
                    method: "m".into(),
                },
            ));
            prost::Message::encode_to_vec(&super::super::pb::Batch { envelopes })
        })
    }
}
