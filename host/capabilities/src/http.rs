//! Outbound HTTP for applets, defended against SSRF:
//!
//! - only `http` and `https`; the host and port must be granted ([`crate::grants::check`]);
//! - addresses are checked after DNS resolution by [`GuardedResolver`], the only resolver
//!   the client has, so a granted name resolving to a private address is refused at connect
//!   time (no gap between a check and the connect); IP-literal URLs, which never reach a
//!   resolver, are checked here directly;
//! - redirects are followed here, not by reqwest, so every hop is checked like the first;
//! - no proxy: one would connect on our behalf and bypass the address rules;
//! - one deadline covers the whole call, redirects and body included; the body is capped
//!   while it streams, so a large response never sits in memory;
//! - an error names the URL's origin only (`https://api.example.com:8443`): the host is
//!   granted, so the tenant knows it, but user info, path and query may carry a secret, and
//!   reqwest's own texts (which print the whole URL) are taken without it.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use coda_types::HostError;
use coda_types::capabilities::{HttpRequest, HttpResponse};
use ipnet::IpNet;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use url::Url;

use crate::grants::check_address;
use crate::grants::{Access, Scheme};
use crate::settings::HttpSettings;

/// Headers an applet may not set: the host computes them, and a forged `Host` or framing
/// header would let a request say something other than what was checked.
const RESERVED_HEADERS: [&str; 7] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "proxy-authorization",
];

/// Headers dropped when a redirect leaves the origin, as browsers and curl do: credentials
/// for one host must not be replayed to another.
const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "cookie", "proxy-authorization"];

pub(crate) struct Http {
    settings: HttpSettings,
    /// One client per tenant: the resolver carries the tenant's allowed private ranges.
    clients: Mutex<HashMap<String, reqwest::Client>>,
}

/// The check the caller makes for each URL (the first and every redirect).
pub(crate) type Check<'a> = dyn Fn(&Access<'_>) -> Result<(), HostError> + Sync + 'a;

impl Http {
    pub(crate) fn new(settings: &HttpSettings) -> Self {
        Http {
            settings: settings.clone(),
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn client(&self, tenant: &str, allowed: &[IpNet]) -> Result<reqwest::Client, HostError> {
        // A poisoned lock only means another call panicked while inserting; the map is fine.
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(tenant) {
            return Ok(client.clone());
        }
        let client = crate::outbound::guarded_client(
            allowed,
            &self.settings.resolve,
            Duration::from_millis(self.settings.max_timeout_ms),
        )
        .map_err(|e| {
            HostError::Unavailable(format!("cannot start the HTTP client: {}", chain(&e)))
        })?;
        clients.insert(tenant.to_string(), client.clone());
        Ok(client)
    }

    pub(crate) async fn send(
        &self,
        check: &Check<'_>,
        tenant: &str,
        allowed: &[IpNet],
        idempotency_key: &str,
        request: HttpRequest,
    ) -> Result<HttpResponse, HostError> {
        let max = Duration::from_millis(self.settings.max_timeout_ms);
        let timeout = request.timeout.map_or(max, |t| t.min(max));
        let url = request.url.clone();
        match tokio::time::timeout(
            timeout,
            self.send_within(check, tenant, allowed, idempotency_key, request),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(HostError::Unavailable(format!(
                "the request to {} did not complete within {} ms",
                origin_of(&url),
                timeout.as_millis()
            ))),
        }
    }

    async fn send_within(
        &self,
        check: &Check<'_>,
        tenant: &str,
        allowed: &[IpNet],
        idempotency_key: &str,
        request: HttpRequest,
    ) -> Result<HttpResponse, HostError> {
        let mut method = Method::from_bytes(request.method.as_bytes()).map_err(|_| {
            HostError::Invalid(format!("'{}' is not an HTTP method", request.method))
        })?;
        if request.body.len() as u64 > self.settings.max_request_bytes {
            return Err(HostError::LimitExceeded(format!(
                "the request body is {} bytes, more than the limit of {} bytes",
                request.body.len(),
                self.settings.max_request_bytes
            )));
        }
        let mut headers = request_headers(&request.headers, idempotency_key)?;
        let mut body = Some(request.body);
        // Not the text itself: it may hold a secret.
        let mut url = Url::parse(&request.url)
            .map_err(|e| HostError::Invalid(format!("the URL does not parse: {e}")))?;
        let client = self.client(tenant, allowed)?;
        let mut redirects = 0;
        loop {
            check_url(check, allowed, &url)?;
            let mut builder = client
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            if let Some(body) = &body {
                builder = builder.body(body.clone());
            }
            let mut response = builder.send().await.map_err(|e| send_error(&url, e))?;
            let status = response.status();
            let location = response.headers().get(reqwest::header::LOCATION);
            let next = match (status.is_redirection(), location) {
                (true, Some(location)) if status != StatusCode::NOT_MODIFIED => {
                    Some(redirect_target(&url, location)?)
                }
                _ => None,
            };
            let Some(next) = next else {
                let headers = response_headers(response.headers());
                let body = self.read_body(&url, &mut response).await?;
                return Ok(HttpResponse {
                    status: status.as_u16(),
                    headers,
                    body,
                });
            };
            redirects += 1;
            if redirects > self.settings.max_redirects {
                return Err(HostError::LimitExceeded(format!(
                    "more than {} redirects, the last to {}",
                    self.settings.max_redirects,
                    origin(&next)
                )));
            }
            // 303 always, and 301/302 after a POST, turn into a GET without a body (what
            // every client does); 307 and 308 repeat the request as it was.
            let to_get = status == StatusCode::SEE_OTHER && method != Method::HEAD
                || (status == StatusCode::MOVED_PERMANENTLY || status == StatusCode::FOUND)
                    && method == Method::POST;
            if to_get {
                method = Method::GET;
                body = None;
                headers.remove(reqwest::header::CONTENT_TYPE);
            }
            if next.origin() != url.origin() {
                for name in CREDENTIAL_HEADERS {
                    headers.remove(name);
                }
            }
            url = next;
        }
    }

    async fn read_body(
        &self,
        url: &Url,
        response: &mut reqwest::Response,
    ) -> Result<Vec<u8>, HostError> {
        let cap = self.settings.max_response_bytes;
        let too_large = || {
            HostError::LimitExceeded(format!(
                "the response from {} is larger than the limit of {cap} bytes",
                origin(url)
            ))
        };
        if response.content_length().is_some_and(|len| len > cap) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| send_error(url, e))? {
            if (body.len() + chunk.len()) as u64 > cap {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// Checks a URL before any connection: scheme, grant, and the address rules for IP literals
/// (which reqwest connects to without asking the resolver).
fn check_url(check: &Check<'_>, allowed: &[IpNet], url: &Url) -> Result<(), HostError> {
    let scheme = match url.scheme() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => {
            return Err(HostError::Invalid(format!(
                "'{other}' URLs are not allowed: only http and https"
            )));
        }
    };
    let (host, literal) = match url.host() {
        Some(url::Host::Domain(name)) => (name.to_ascii_lowercase(), None),
        Some(url::Host::Ipv4(ip)) => (ip.to_string(), Some(IpAddr::V4(ip))),
        Some(url::Host::Ipv6(ip)) => (ip.to_string(), Some(IpAddr::V6(ip))),
        None => {
            return Err(HostError::Invalid(format!(
                "a {} URL needs a host",
                url.scheme()
            )));
        }
    };
    let port = url.port_or_known_default().unwrap_or(scheme.default_port());
    check(&Access::Http {
        scheme,
        host: &host,
        port,
    })?;
    if let Some(ip) = literal {
        check_address(ip, allowed).map_err(HostError::NotGranted)?;
    }
    Ok(())
}

fn request_headers(
    headers: &[(String, String)],
    idempotency_key: &str,
) -> Result<HeaderMap, HostError> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| HostError::Invalid(format!("'{name}' is not a valid header name")))?;
        if RESERVED_HEADERS.contains(&header.as_str()) {
            return Err(HostError::Invalid(format!(
                "the {name} header is set by the host, not by the applet"
            )));
        }
        // The value may be a credential: name the header, never echo the value.
        let value = HeaderValue::from_str(value).map_err(|_| {
            HostError::Invalid(format!(
                "the value of header '{name}' has characters a header cannot carry"
            ))
        })?;
        map.append(header, value);
    }
    // The call's key (`{step key}/{call position}`), stable across retries and re-executions
    // of the step, lets a downstream that honours it do the work once; an applet that set
    // its own keeps it.
    if !idempotency_key.is_empty()
        && !map.contains_key("idempotency-key")
        && let Ok(value) = HeaderValue::from_str(idempotency_key)
    {
        map.insert(HeaderName::from_static("idempotency-key"), value);
    }
    Ok(map)
}

fn response_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

fn redirect_target(from: &Url, location: &HeaderValue) -> Result<Url, HostError> {
    let text = String::from_utf8_lossy(location.as_bytes());
    // The Location is the server's text and may echo a secret: named, not quoted.
    from.join(&text).map_err(|e| {
        HostError::Unavailable(format!(
            "{} redirected to a Location that is not a URL: {e}",
            origin(from)
        ))
    })
}

/// Maps a failed send: a refused address is a grant matter, the rest are the network's.
/// reqwest prints the whole URL in its text; the error is taken without it.
fn send_error(url: &Url, error: reqwest::Error) -> HostError {
    let error = error.without_url();
    let error = &error;
    let target = origin(url);
    if let Some(refused) = crate::outbound::refused_address(error) {
        return HostError::NotGranted(refused);
    }
    if error.is_timeout() {
        HostError::Unavailable(format!("the request to {target} timed out"))
    } else if error.is_builder() {
        HostError::Invalid(format!(
            "cannot make a request to {target}: {}",
            chain(error)
        ))
    } else if error.is_connect() {
        HostError::Unavailable(format!("cannot connect to {target}: {}", chain(error)))
    } else {
        HostError::Unavailable(format!("the request to {target} failed: {}", chain(error)))
    }
}

/// An error and its causes on one line: reqwest's own message alone ("error sending
/// request") does not say what went wrong.
fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = e.source();
    }
    text
}

/// A URL for a message: its origin only (`https://api.example.com:8443`). User info, path,
/// query and fragment may each carry a secret (`/v1/keys/{token}`, `?api_key=`).
fn origin(url: &Url) -> String {
    match url.origin() {
        origin @ url::Origin::Tuple(..) => origin.ascii_serialization(),
        url::Origin::Opaque(_) => format!("a {} URL", url.scheme()),
    }
}

/// [`origin`] of a URL not parsed yet.
fn origin_of(url: &str) -> String {
    Url::parse(url).map_or_else(|_| "the URL".into(), |url| origin(&url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_origin_only() {
        assert_eq!(
            origin_of("https://user:pw@api.example.com/send/tok123?token=abc#x"),
            "https://api.example.com"
        );
        assert_eq!(
            origin_of("http://API.example.com:8080/k/tok123"),
            "http://api.example.com:8080"
        );
        assert_eq!(origin_of("not a url tok123"), "the URL");
    }

    #[test]
    fn idempotency_key_is_added_unless_set() {
        let map = request_headers(&[], "run-1/3").unwrap();
        assert_eq!(map["idempotency-key"], "run-1/3");
        let own = vec![("Idempotency-Key".to_string(), "mine".to_string())];
        let map = request_headers(&own, "run-1/3").unwrap();
        assert_eq!(map.get_all("idempotency-key").iter().count(), 1);
        assert_eq!(map["idempotency-key"], "mine");
    }

    #[test]
    fn reserved_and_malformed_headers_are_invalid() {
        for (name, value) in [("Host", "x"), ("bad name", "x"), ("x-token", "a\nb")] {
            let e = request_headers(&[(name.into(), value.into())], "").unwrap_err();
            assert!(matches!(e, HostError::Invalid(_)), "{name}: {e:?}");
        }
        let e = request_headers(&[("x-token".into(), "sec\nret".into())], "").unwrap_err();
        assert!(!e.to_string().contains("sec"), "{e}");
    }
}
