//! gRPC probes (upstream's pkg/probe/grpc): a `grpc.health.v1.Health/Check` call over plain-text HTTP/2 to the
//! pod's IP and the probe's port, with the probe's `service` as the request, within `timeoutSeconds`. SERVING
//! succeeds; any other answer, error or timeout fails with upstream's output.

use std::time::Duration;

use tokio::time::Instant;
use tonic::transport::Endpoint;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::pods::go_duration;

/// How long to wait between connection attempts: Go's gRPC dialer keeps trying (`WithBlock`) until the deadline.
const REDIAL: Duration = Duration::from_millis(100);

/// A gRPC status code as grpc-go spells it (`Unavailable`, `Canceled`...).
fn code_name(code: tonic::Code) -> String {
    match code {
        tonic::Code::Ok => "OK".into(),
        tonic::Code::Cancelled => "Canceled".into(),
        other => format!("{other:?}"),
    }
}

/// Probes `host:port` once. Ok is the output of a healthy service, Err the failure as upstream words it.
pub async fn probe(host: &str, service: &str, port: u16, timeout: Duration) -> Result<String, String> {
    let addr = super::join_host_port(host, port);
    let deadline = Instant::now() + timeout;
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .and_then(|e| e.user_agent("kube-probe/1.33"))
        .map_err(|e| format!("error: failed to connect service at \"{addr}\": {e}"))?;
    let timed_out = || {
        format!(
            "timeout: failed to connect service \"{addr}\" within {}: context deadline exceeded",
            go_duration(timeout)
        )
    };
    // Connect, retrying refused or reset connections until the deadline (grpc-go's blocking dial).
    let channel = loop {
        match tokio::time::timeout_at(deadline, endpoint.connect()).await {
            Ok(Ok(channel)) => break channel,
            Ok(Err(e)) => {
                tracing::trace!(%addr, error = %e, "gRPC probe connection failed; retrying");
                if Instant::now() + REDIAL >= deadline {
                    tokio::time::sleep_until(deadline).await;
                    return Err(timed_out());
                }
                tokio::time::sleep(REDIAL).await;
            }
            Err(_) => return Err(timed_out()),
        }
    };
    let mut client = HealthClient::new(channel);
    let request = HealthCheckRequest { service: service.to_string() };
    let response = match tokio::time::timeout_at(deadline, client.check(request)).await {
        Err(_) => return Err(format!("timeout: health rpc did not complete within {}", go_duration(timeout))),
        Ok(Err(status)) => {
            return Err(match status.code() {
                tonic::Code::Unimplemented => format!(
                    "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): {}",
                    status.message()
                ),
                tonic::Code::DeadlineExceeded => {
                    format!("timeout: health rpc did not complete within {}", go_duration(timeout))
                }
                code => format!(
                    "error: health rpc probe failed: rpc error: code = {} desc = {}",
                    code_name(code),
                    status.message()
                ),
            });
        }
        Ok(Ok(response)) => response.into_inner(),
    };
    let status = ServingStatus::try_from(response.status).unwrap_or(ServingStatus::Unknown);
    if status == ServingStatus::Serving {
        Ok("service healthy".into())
    } else {
        Err(format!("service unhealthy (responded with \"{}\")", status.as_str_name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_health::server::health_reporter;

    /// A health server on a loopback port: "" and "db" serving, "cache" not.
    async fn health_server() -> u16 {
        use tonic_health::ServingStatus;
        let (reporter, service) = health_reporter();
        reporter.set_service_status("db", ServingStatus::Serving).await;
        reporter.set_service_status("cache", ServingStatus::NotServing).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        tokio::spawn(async move {
            // The reporter lives as long as the server.
            let _reporter = reporter;
            tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming).await
        });
        port
    }

    /// A gRPC server without the health service.
    async fn other_server() -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        tokio::spawn(async move {
            let routes = tonic::service::Routes::default();
            tonic::transport::Server::builder().add_routes(routes).serve_with_incoming(incoming).await
        });
        port
    }

    #[tokio::test]
    async fn serving_succeeds_anything_else_fails_with_upstreams_output() {
        let port = health_server().await;
        let second = Duration::from_secs(1);
        assert_eq!(probe("127.0.0.1", "", port, second).await, Ok("service healthy".into()));
        assert_eq!(probe("127.0.0.1", "db", port, second).await, Ok("service healthy".into()));
        assert_eq!(
            probe("127.0.0.1", "cache", port, second).await,
            Err("service unhealthy (responded with \"NOT_SERVING\")".into())
        );
        assert_eq!(
            probe("127.0.0.1", "nope", port, second).await,
            Err("error: health rpc probe failed: rpc error: code = NotFound desc = service not registered".into())
        );
        let other = other_server().await;
        let unimplemented = probe("127.0.0.1", "", other, second).await.unwrap_err();
        assert!(
            unimplemented.starts_with(
                "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): "
            ),
            "{unimplemented}"
        );
    }

    #[tokio::test]
    async fn nothing_listening_times_out_connecting() {
        // Bind and drop: a loopback port with nothing behind it.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let started = std::time::Instant::now();
        assert_eq!(
            probe("127.0.0.1", "", port, Duration::from_secs(1)).await,
            Err(format!(
                "timeout: failed to connect service \"127.0.0.1:{port}\" within 1s: context deadline exceeded"
            ))
        );
        assert!(started.elapsed() >= Duration::from_millis(900), "retried until the deadline");
    }

    /// A server that accepts and never answers: the call runs out of time.
    #[tokio::test]
    async fn a_silent_server_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let out = probe("127.0.0.1", "", port, Duration::from_secs(1)).await.unwrap_err();
        assert!(out.starts_with("timeout: "), "{out}");
    }
}
