//! `/metrics`, `/healthz` (the process runs) and `/readyz` (broker and database connected).

use std::{
    io,
    net::{Ipv4Addr, SocketAddr},
    sync::Arc,
};

use axum::{Router, extract::State, http::StatusCode, routing::get};

use crate::{telemetry::health::Health, telemetry::metrics::Metrics};

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

pub fn router(metrics: Arc<Metrics>, health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readiness))
        .with_state(AppState { metrics, health })
}

/// Binds `addr` and serves until the process ends; returns the bound address (port 0 allowed).
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) -> std::io::Result<SocketAddr> {
    let listener = bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router(metrics, health)).await {
            tracing::error!(%error, "metrics server stopped");
        }
    });
    Ok(bound)
}

/// Binds `addr`; `[::]` (the default) takes IPv4 clients too, and falls back to `0.0.0.0` on
/// the same port where the host has no IPv6 (a kernel without it, or `disable_ipv6`), so the
/// default works on every host.
pub async fn bind(addr: SocketAddr) -> io::Result<tokio::net::TcpListener> {
    let listener = bind_with_fallback(addr, listen)?;
    listener.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(listener)
}

/// A listening socket on `addr`. An IPv6 one is dual-stack (`IPV6_V6ONLY` off): left to the
/// host's default, `net.ipv6.bindv6only=1` would make `[::]` refuse IPv4 clients, and the
/// kubelet's probes with them.
fn listen(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

fn bind_with_fallback(
    addr: SocketAddr,
    bind: impl Fn(SocketAddr) -> io::Result<std::net::TcpListener>,
) -> io::Result<std::net::TcpListener> {
    match bind(addr) {
        Err(error) if is_any_ipv6(addr) && error.kind() != io::ErrorKind::AddrInUse => {
            let fallback = SocketAddr::from((Ipv4Addr::UNSPECIFIED, addr.port()));
            tracing::info!(%addr, %error, %fallback, "IPv6 is unavailable: listening on IPv4 only");
            bind(fallback)
        }
        bound => bound,
    }
}

fn is_any_ipv6(addr: SocketAddr) -> bool {
    addr.is_ipv6() && addr.ip().is_unspecified()
}

async fn render_metrics(
    State(state): State<AppState>,
) -> ([(&'static str, &'static str); 1], String) {
    state.metrics.set_health(&state.health);
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

async fn readiness(State(state): State<AppState>) -> (StatusCode, String) {
    let health = &state.health;
    let code = if health.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        format!(
            "broker={} database={} holding_bulk={}\n",
            health.broker(),
            health.database(),
            health.holding()
        ),
    )
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read, Write},
        net::TcpStream,
    };

    use super::*;

    /// A GET to `/healthz` at `addr` answers `ok`.
    fn healthy(addr: SocketAddr) -> bool {
        let Ok(mut stream) = TcpStream::connect(addr) else {
            return false;
        };
        let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response.starts_with("HTTP/1.1 200") && response.ends_with("ok")
    }

    async fn serve_on(addr: SocketAddr) -> u16 {
        let bound = serve(addr, Arc::new(Metrics::new()), Arc::new(Health::default()))
            .await
            .expect("binds");
        bound.port()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_default_address_takes_ipv4_and_ipv6_clients() {
        let port = serve_on("[::]:0".parse().unwrap()).await;
        let (v4, v6) = tokio::task::spawn_blocking(move || {
            (
                healthy(SocketAddr::from(([127, 0, 0, 1], port))),
                healthy(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port))),
            )
        })
        .await
        .unwrap();
        assert!(v4, "an IPv4 client is served on [::]");
        assert!(v6, "an IPv6 client is served on [::]");
    }

    /// Whatever `net.ipv6.bindv6only` says on this host, the `[::]` socket is dual-stack.
    #[tokio::test]
    async fn the_any_ipv6_socket_is_dual_stack_whatever_the_hosts_default() {
        assert_dual_stack().await;
    }

    async fn assert_dual_stack() {
        let listener = bind("[::]:0".parse().unwrap()).await.expect("binds");
        if listener.local_addr().unwrap().is_ipv6() {
            assert_eq!(
                socket2::SockRef::from(&listener).only_v6().ok(),
                Some(false)
            );
        }
        let port = listener.local_addr().unwrap().port();
        let v4 = tokio::net::TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).await;
        assert!(v4.is_ok(), "an IPv4 client connects to [::]");
    }

    /// The same on a host whose default is IPv6-only (`net.ipv6.bindv6only=1`): this test runs
    /// itself again in a network namespace of its own with that setting (root and `unshare`
    /// needed, as CI has; skipped elsewhere with a line saying so).
    #[test]
    fn with_bindv6only_set_the_any_address_still_takes_ipv4() {
        const INNER: &str = "BULK_RECORDER_TEST_BINDV6ONLY";
        if std::env::var_os(INNER).is_some() {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(assert_dual_stack());
            return;
        }
        let script =
            "ip link set lo up && sysctl -qw net.ipv6.bindv6only=1 && exec \"$0\" --exact \"$1\"";
        let name = "telemetry::http::tests::with_bindv6only_set_the_any_address_still_takes_ipv4";
        let inner = std::process::Command::new("unshare")
            .args(["-n", "sh", "-c", script])
            .arg(std::env::current_exe().unwrap())
            .arg(name)
            .env(INNER, "1")
            .output();
        match inner {
            Ok(out) if out.status.success() => {
                let text = String::from_utf8_lossy(&out.stdout);
                assert!(text.contains("1 passed"), "{text}");
            }
            Ok(out) if String::from_utf8_lossy(&out.stdout).contains("panicked") => {
                panic!("{}", String::from_utf8_lossy(&out.stdout))
            }
            other => eprintln!("skipped: no network namespace of our own here ({other:?})"),
        }
    }

    #[test]
    fn without_ipv6_the_any_address_falls_back_to_ipv4_on_the_same_port() {
        // The host's own sockets, except that IPv6 ones fail as on a kernel without IPv6.
        let no_ipv6 = |addr: SocketAddr| {
            if addr.is_ipv6() {
                Err(io::Error::from_raw_os_error(97)) // EAFNOSUPPORT
            } else {
                std::net::TcpListener::bind(addr)
            }
        };
        let listener = bind_with_fallback("[::]:0".parse().unwrap(), no_ipv6).unwrap();
        let local = listener.local_addr().unwrap();
        assert_eq!(local.ip(), Ipv4Addr::UNSPECIFIED);
        assert!(TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], local.port()))).is_ok());

        // An explicit IPv6 address, or a port in use, is not silently replaced.
        let explicit = bind_with_fallback("[::1]:0".parse().unwrap(), no_ipv6);
        assert!(explicit.is_err());
        let taken = std::net::TcpListener::bind("[::]:0").unwrap();
        let in_use = bind_with_fallback(taken.local_addr().unwrap(), std::net::TcpListener::bind);
        assert_eq!(in_use.unwrap_err().kind(), io::ErrorKind::AddrInUse);
    }
}
