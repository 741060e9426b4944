//! The one way the host connects out on a tenant's behalf: the http capability's clients
//! and the outbound webhooks (`coda-webhooks`) are both built here, so both go through the
//! same address rule ([`crate::grants::check_address`], asked after DNS for every address a
//! name resolves to, and for IP literals before anything connects) with the tenant's
//! allowed ranges ([`crate::grants::allowed_private`]). No proxy: one would connect on our
//! behalf and bypass the rule; no redirects followed by the client (the http capability
//! follows them by hand, each hop checked; a webhook follows none).

use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Once};
use std::time::Duration;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

use crate::grants::check_address;

/// A client that reaches only the addresses the rule lets `allowed`'s tenant reach,
/// resolving names through `overrides` first (the operator's `http.resolve`, like curl's
/// `--resolve`; the rule still applies to the address given there).
pub fn guarded_client(
    allowed: &[IpNet],
    overrides: &BTreeMap<String, IpAddr>,
    connect_timeout: Duration,
) -> Result<reqwest::Client, reqwest::Error> {
    install_crypto_provider();
    let resolver = GuardedResolver {
        allowed: Arc::new(allowed.to_vec()),
        overrides: Arc::new(
            overrides
                .iter()
                .map(|(host, ip)| (host.to_ascii_lowercase(), *ip))
                .collect(),
        ),
    };
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(resolver)
        .connect_timeout(connect_timeout)
        .build()
}

/// The address rule for a URL whose host is an IP literal, which a client connects to
/// without asking its resolver; a name is judged by the resolver when it connects.
pub fn check_literal(url: &Url, allowed: &[IpNet]) -> Result<(), String> {
    let literal = match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
        _ => return Ok(()),
    };
    check_address(literal, allowed)
}

/// Whether `error` (or one of its causes) is the rule refusing every address a name
/// resolved to; the text says which range refused it.
pub fn refused_address(error: &(dyn StdError + 'static)) -> Option<String> {
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<AddressRefused>() {
            return Some(refused.0.clone());
        }
        source = e.source();
    }
    None
}

/// rustls needs a process-wide crypto provider when reqwest is built without one; ring is
/// ours (no aws-lc to build). Installing fails only if one is already installed, which is
/// as good.
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The resolver of every outbound client: resolves (or takes the operator's static
/// override) and drops every address the rule refuses; none left is an error naming why.
#[derive(Clone)]
struct GuardedResolver {
    allowed: Arc<Vec<IpNet>>,
    overrides: Arc<BTreeMap<String, IpAddr>>,
}

#[derive(Debug)]
struct AddressRefused(String);

impl fmt::Display for AddressRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for AddressRefused {}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().trim_end_matches('.').to_ascii_lowercase();
        let this = self.clone();
        Box::pin(async move {
            let candidates: Vec<IpAddr> = match this.overrides.get(&host) {
                Some(ip) => vec![*ip],
                None => tokio::net::lookup_host((host.as_str(), 0))
                    .await?
                    .map(|addr| addr.ip())
                    .collect(),
            };
            let mut refusal = None;
            let mut usable = Vec::new();
            for ip in candidates {
                match check_address(ip, &this.allowed) {
                    Ok(()) => usable.push(SocketAddr::new(ip, 0)),
                    Err(why) => refusal = Some(why),
                }
            }
            if usable.is_empty() {
                let why = refusal.unwrap_or_else(|| "no address".to_string());
                return Err(
                    Box::new(AddressRefused(format!("{host} resolves to {why}")))
                        as Box<dyn StdError + Send + Sync>,
                );
            }
            Ok(Box::new(usable.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_judged_by_the_rule_and_names_left_to_the_resolver() {
        let url = |s: &str| Url::parse(s).unwrap();
        assert!(check_literal(&url("http://127.0.0.1:9/x"), &[]).is_err());
        assert!(check_literal(&url("http://[::1]/"), &[]).is_err());
        assert!(check_literal(&url("http://8.8.8.8/"), &[]).is_ok());
        assert!(check_literal(&url("http://localhost/"), &[]).is_ok());
        let loopback: IpNet = "127.0.0.0/8".parse().unwrap();
        assert!(check_literal(&url("http://127.0.0.1:9/x"), &[loopback]).is_ok());
    }
}
