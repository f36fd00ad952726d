//! CRI v1 (the Container Runtime Interface the kubelet drives containerd through): the generated types, clients and
//! servers from `k8s-cri`, a connection over the runtime's unix socket (`--container-runtime-endpoint`), and
//! [`fake::FakeCri`], an in-memory runtime and image service for tests and simulated (hollow) nodes.

pub mod fake;
pub mod spdy;
pub mod streaming;
pub mod testing;

use std::path::{Path, PathBuf};

use cri::image_service_client::ImageServiceClient;
use cri::runtime_service_client::RuntimeServiceClient;
use hyper_util::rt::TokioIo;
pub use k8s_cri::v1 as cri;
use tonic::transport::{Channel, Endpoint, Uri};
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

/// How the CRI clients reach the runtime: a gRPC channel over the runtime's unix socket, or (for hollow nodes) the
/// fake runtime's services called in process, requests and replies still encoded as protobuf but with no HTTP/2
/// connection in between.
pub type Transport =
    BoxCloneSyncService<http::Request<tonic::body::Body>, http::Response<tonic::body::Body>, TransportError>;

/// A transport failure (a named type: tonic's client bounds need one, not a boxed trait object).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct TransportError(#[from] tonic::transport::Error);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid container runtime endpoint {0:?}: only unix sockets are supported")]
    Endpoint(String),
    #[error("connecting to {path}: {source}")]
    Connect { path: PathBuf, source: tonic::transport::Error },
}

/// The upstream default `--container-runtime-endpoint`.
pub const DEFAULT_ENDPOINT: &str = "unix:///run/containerd/containerd.sock";

/// The socket path of an endpoint: `unix:///path` or a bare path.
pub fn socket_path(endpoint: &str) -> Result<PathBuf, Error> {
    let path = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    if !path.starts_with('/') {
        return Err(Error::Endpoint(endpoint.to_string()));
    }
    Ok(PathBuf::from(path))
}

/// A channel to a gRPC server on a unix socket.
pub async fn unix_channel(path: &Path) -> Result<Channel, Error> {
    let socket = path.to_path_buf();
    // The URI is required by tonic but unused: the connector dials the socket.
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { tokio::net::UnixStream::connect(socket).await.map(TokioIo::new) }
        }))
        .await
        .map_err(|source| Error::Connect { path: path.to_path_buf(), source })
}

/// The runtime and image services of one container runtime.
#[derive(Clone)]
pub struct Cri {
    pub runtime: RuntimeServiceClient<Transport>,
    pub image: ImageServiceClient<Transport>,
}

impl Cri {
    /// Connects to `unix:///run/containerd/containerd.sock` or another endpoint.
    pub async fn connect(endpoint: &str) -> Result<Self, Error> {
        let channel = unix_channel(&socket_path(endpoint)?).await?;
        Ok(Self::over(BoxCloneSyncService::new(channel.map_err(TransportError))))
    }

    /// The fake runtime's services called in process (hollow nodes).
    pub fn local(fake: fake::FakeCri) -> Self {
        let routes = tonic::service::Routes::new(cri::runtime_service_server::RuntimeServiceServer::new(fake.clone()))
            .add_service(cri::image_service_server::ImageServiceServer::new(fake));
        let routes = ServiceExt::<http::Request<tonic::body::Body>>::map_err(routes, |never| match never {});
        Self::over(BoxCloneSyncService::new(routes))
    }

    fn over(transport: Transport) -> Self {
        Cri {
            runtime: RuntimeServiceClient::new(transport.clone()).max_decoding_message_size(16 * 1024 * 1024),
            image: ImageServiceClient::new(transport).max_decoding_message_size(16 * 1024 * 1024),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(socket_path(DEFAULT_ENDPOINT).unwrap(), PathBuf::from("/run/containerd/containerd.sock"));
        assert_eq!(socket_path("/tmp/x.sock").unwrap(), PathBuf::from("/tmp/x.sock"));
        assert!(socket_path("tcp://1.2.3.4:1").is_err());
    }
}
