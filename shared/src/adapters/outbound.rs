//! Outgoing HTTP for alerts and webhooks: clients that never follow a redirect or go through a
//! proxy, and a resolver that screens the addresses a name resolves to when a delivery connects.

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use thiserror::Error;

use crate::domain::Reach;

/// A host whose name resolved to an address its webhook may not reach.
#[derive(Debug, Error)]
#[error("{host} resolves to {ip}, a private, loopback, link-local or metadata address")]
pub struct Refused {
    pub host: String,
    pub ip: IpAddr,
}

/// The addresses a delivery may connect to: all of them, or none when any is out of reach (an
/// answer mixing public and private addresses is not to be trusted).
pub fn screen(host: &str, addresses: Vec<SocketAddr>, reach: Reach) -> Result<Vec<SocketAddr>, Refused> {
    match addresses.iter().find(|a| !reach.permits(a.ip())) {
        Some(bad) => Err(Refused { host: host.to_string(), ip: bad.ip() }),
        None => Ok(addresses),
    }
}

/// The resolver of the webhook clients: it screens the addresses at connect time, so the address
/// checked is the address connected to, whatever the DNS answers between a check and a connect.
#[derive(Debug, Clone, Copy)]
pub struct ScreeningResolver(pub Reach);

impl Resolve for ScreeningResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let reach = self.0;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let addresses = screen(&host, found, reach)?;
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

/// The HTTP clients deliveries go out through, one per reach, each built on first use: they
/// never follow a redirect (a receiver must not send a signed delivery elsewhere), never go
/// through a proxy (the address screened must be the one connected to), and screen every
/// address they resolve.
#[derive(Debug, Default)]
pub struct Senders {
    clients: [OnceLock<Result<reqwest::Client, String>>; 3],
}

impl Senders {
    pub fn client(&self, reach: Reach) -> Result<&reqwest::Client, String> {
        let built = self.clients[reach as usize].get_or_init(|| {
            reqwest::Client::builder()
                .timeout(TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .dns_resolver(ScreeningResolver(reach))
                .build()
                .map_err(|e| format!("no HTTP client: {}", chain(&e)))
        });
        built.as_ref().map_err(Clone::clone)
    }
}

/// How long one delivery attempt (and one Slack post) may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// An error and its causes in one line (reqwest's own text says only "error sending request").
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 443)
    }

    #[test]
    fn the_resolver_refuses_answers_out_of_reach() {
        for bad in [
            "169.254.169.254",
            "10.1.2.3",
            "172.16.0.9",
            "192.168.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::",
            "fd00:ec2::254",
            "fe80::1",
        ] {
            for reach in [Reach::Public, Reach::Loopback] {
                let refused = screen("hooks.example.com", vec![at(bad)], reach).unwrap_err();
                assert_eq!(refused.ip, bad.parse::<IpAddr>().unwrap(), "{bad}");
                assert!(refused.to_string().starts_with("hooks.example.com resolves to"), "{refused}");
            }
            assert!(screen("hooks.example.com", vec![at(bad)], Reach::Private).is_ok(), "{bad} with allow_private");
        }
        for loopback in ["127.0.0.1", "::1", "::ffff:127.0.0.1"] {
            assert!(screen("h", vec![at(loopback)], Reach::Public).is_err(), "{loopback}");
            assert!(screen("h", vec![at(loopback)], Reach::Loopback).is_ok(), "{loopback}");
        }
        let public = vec![at("93.184.215.14"), at("2606:2800:21f:cb07:6820:80da:af6b:8b2c")];
        assert_eq!(screen("h", public.clone(), Reach::Public).unwrap(), public);
        let mixed = vec![at("93.184.215.14"), at("169.254.169.254")];
        assert!(screen("h", mixed, Reach::Public).is_err(), "one private answer refuses them all");
    }

    #[tokio::test]
    async fn names_are_screened_when_they_resolve() {
        let name = |host: &str| host.parse::<Name>().unwrap();
        let refused = ScreeningResolver(Reach::Public).resolve(name("localhost")).await.err().unwrap();
        assert!(refused.to_string().starts_with("localhost resolves to"), "{refused}");
        let found: Vec<SocketAddr> =
            ScreeningResolver(Reach::Loopback).resolve(name("localhost")).await.unwrap().collect();
        assert!(!found.is_empty() && found.iter().all(|a| a.ip().is_loopback()), "{found:?}");
    }

    #[tokio::test]
    async fn a_delivery_client_never_connects_to_a_refused_address() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let senders = Senders::default();
        let err =
            senders.client(Reach::Public).unwrap().get(format!("http://localhost:{port}/")).send().await.unwrap_err();
        assert!(chain(&err).contains("localhost resolves to 127.0.0.1"), "{}", chain(&err));
        let nothing = listener.accept().map(|_| ()).map_err(|e| e.kind());
        assert_eq!(nothing, Err(std::io::ErrorKind::WouldBlock), "no connection was made");
    }
}
