use super::*;

/// The gRPC face of a silo's directory partition: silent (unavailable)
/// while the silo does not serve, like its link.
#[derive(Debug, Clone)]
pub(super) struct DirectoryService(pub(super) Arc<Directory>);

impl DirectoryService {
    fn check(&self) -> Result<(), Status> {
        if self.0.serving.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(Status::unavailable("this silo has stopped serving"))
        }
    }
}

fn decode_grain(bytes: &[u8]) -> Result<GrainId, Status> {
    actor_core::__private::codec::decode(bytes).map_err(|e| Status::invalid_argument(e.to_string()))
}

fn reply(answer: Answer) -> Result<Response<pb::DirectoryReply>, Status> {
    Ok(Response::new(match answer {
        Ok(address) => pb::DirectoryReply {
            address: address.map(|a| a.to_pb()),
            retry: String::new(),
        },
        Err(retry) => pb::DirectoryReply {
            address: None,
            retry: if retry.is_empty() {
                "retry".into()
            } else {
                retry
            },
        },
    }))
}

#[tonic::async_trait]
impl GrainDirectory for DirectoryService {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::DirectoryReply>, Status> {
        self.check()?;
        let r = request.into_inner();
        let id = decode_grain(&r.grain)?;
        let addr = r
            .address
            .map(ActivationAddress::from_pb)
            .ok_or_else(|| Status::invalid_argument("a registration needs an address"))?;
        reply(self.0.register_local(&id, addr, r.view, r.claim))
    }

    async fn lookup(
        &self,
        request: Request<pb::LookupRequest>,
    ) -> Result<Response<pb::DirectoryReply>, Status> {
        self.check()?;
        let id = decode_grain(&request.into_inner().grain)?;
        reply(self.0.lookup_local(&id))
    }

    async fn unregister(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::DirectoryReply>, Status> {
        self.check()?;
        let r = request.into_inner();
        let id = decode_grain(&r.grain)?;
        let addr = r
            .address
            .map(ActivationAddress::from_pb)
            .ok_or_else(|| Status::invalid_argument("an unregistration needs an address"))?;
        reply(self.0.unregister_local(&id, &addr))
    }

    async fn place(
        &self,
        request: Request<pb::LookupRequest>,
    ) -> Result<Response<pb::DirectoryReply>, Status> {
        self.check()?;
        let id = decode_grain(&request.into_inner().grain)?;
        reply(self.0.place_here(&id).await)
    }

    async fn load(
        &self,
        _request: Request<pb::LoadRequest>,
    ) -> Result<Response<pb::LoadReply>, Status> {
        self.check()?;
        Ok(Response::new(pb::LoadReply {
            activations: self.0.load_of(&self.0.me.endpoint),
            generation: self.0.me.generation,
        }))
    }
}

/// Serves a silo's link, its directory partition and its stats service
/// on `listener`.
pub(crate) fn serve_member(
    link: LinkService,
    directory: Arc<Directory>,
    stats: crate::stats::StatsService,
    listener: LinkListener,
) -> tokio::task::JoinHandle<()> {
    let incoming = listener.into_incoming();
    let link = link.into_server();
    let directory = GrainDirectoryServer::new(DirectoryService(directory))
        .max_decoding_message_size(super::protocol::MAX_MESSAGE);
    tokio::spawn(async move {
        if let Err(e) = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(crate::transport::KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(crate::transport::KEEPALIVE_TIMEOUT))
            .add_service(link)
            .add_service(directory)
            .add_service(stats.into_server())
            .serve_with_incoming(incoming)
            .await
        {
            tracing::error!(error = %e, "silo server stopped");
        }
    })
}
