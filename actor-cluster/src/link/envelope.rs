//! Calls to and from the link's protobuf envelopes: a request carries the
//! target, method, time left, call chain, request context, trace context,
//! sender and the bincode payload; replies and errors carry the payload.

use std::time::Duration;

use actor_core::{
    CallId, EncodedCall, GrainId, RequestContext, Silo, SpanId, TraceContext, TraceId,
};

use super::pb::{ChainFrame, ContextEntry, Envelope, Kind};

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
        Duration::from_micros(env.timeout_micros),
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
    }
}
