//! `tenantctl healthcheck`: asks a running process's health endpoint whether it is ready (or
//! alive), for a container's health check, where the image has no curl and `/bin/sh` has no
//! `/dev/tcp`. Exit status 0 when it is, 1 when it is not or does not answer.

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs as _};
use std::process::ExitCode;
use std::time::Duration;

use crate::out::outln;

pub const EXAMPLES: &str = "Examples:
  tenantctl healthcheck                          # /readyz at $HEALTH_ADDR, else 127.0.0.1:8080
  tenantctl healthcheck --live                   # /healthz: the process answers
  tenantctl healthcheck --addr 127.0.0.1:8081    # another process's port
  HEALTHCHECK CMD [\"tenantctl\", \"healthcheck\"]   # in a Dockerfile";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The health port to ask, `host:port`; an unspecified address (0.0.0.0, [::]) means this
    /// host [default: $HEALTH_ADDR, else 127.0.0.1:8080]
    #[arg(long)]
    addr: Option<String>,
    /// Ask /healthz (the process answers) instead of /readyz (every component ready).
    #[arg(long)]
    live: bool,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 3)]
    timeout: u64,
}

pub fn run(args: &Args) -> ExitCode {
    let configured = args
        .addr
        .clone()
        .or_else(|| {
            std::env::var("HEALTH_ADDR")
                .ok()
                .filter(|a| !a.trim().is_empty())
        })
        .unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let path = if args.live { "/healthz" } else { "/readyz" };
    match ask(&configured, path, Duration::from_secs(args.timeout.max(1))) {
        Ok(Answer { status: 200, body }) => {
            outln!("healthy: {path} at {configured}: {body}");
            ExitCode::SUCCESS
        }
        Ok(Answer { status, body }) => {
            outln!("unhealthy: {path} at {configured} answered {status}: {body}");
            ExitCode::FAILURE
        }
        Err(reason) => {
            outln!("unhealthy: {path} at {configured}: {reason}");
            ExitCode::FAILURE
        }
    }
}

struct Answer {
    status: u16,
    body: String,
}

fn ask(configured: &str, path: &str, timeout: Duration) -> Result<Answer, String> {
    let address = resolve(configured)?;
    let mut stream = TcpStream::connect_timeout(&address, timeout)
        .map_err(|e| format!("no answer from {address} ({e}); is the process running?"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .map_err(|e| format!("sending the request: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("reading the answer: {e}"))?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| {
            format!(
                "not an HTTP answer: {:?}",
                response.lines().next().unwrap_or("")
            )
        })?;
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .trim()
        .to_owned();
    Ok(Answer { status, body })
}

/// `host:port` to one address; the unspecified address (where a server listens on every
/// interface) is asked on loopback.
fn resolve(configured: &str) -> Result<SocketAddr, String> {
    let mut address = configured
        .to_socket_addrs()
        .map_err(|e| format!("`{configured}` is not a host:port ({e})"))?
        .next()
        .ok_or_else(|| format!("`{configured}` resolves to no address"))?;
    if address.ip().is_unspecified() {
        address.set_ip(match address.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    Ok(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_address_is_asked_on_loopback() {
        assert_eq!(resolve("0.0.0.0:8080").ok(), "127.0.0.1:8080".parse().ok());
        assert_eq!(resolve("[::]:9000").ok(), "[::1]:9000".parse().ok());
        assert_eq!(resolve("127.0.0.1:81").ok(), "127.0.0.1:81".parse().ok());
        assert!(resolve("no-port").is_err());
    }
}
