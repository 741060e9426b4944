//! One attempt of one delivery: a POST of the CloudEvent with the Standard Webhooks
//! headers, through a client built by `coda_capabilities::outbound` with the tenant's
//! allowed address ranges, bounded in time (connect, then the answer) and in what is read
//! of the answer.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use coda_capabilities::outbound;
use coda_store::ClaimedDelivery;
use ipnet::IpNet;
use url::Url;

use crate::signing;

/// The most of a receiver's answer read (for the delivery log); the rest is never read.
pub const RESPONSE_BYTES_READ: usize = 1024;

/// How an attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// 2xx.
    pub delivered: bool,
    /// The receiver's status, if it answered.
    pub status: Option<u16>,
    /// Why it was not delivered.
    pub error: Option<String>,
}

impl Attempt {
    fn failed(error: String) -> Attempt {
        Attempt {
            delivered: false,
            status: None,
            error: Some(error),
        }
    }
}

/// The clients, one per set of allowed ranges (most tenants share the empty one).
pub struct Sender {
    connect_timeout: Duration,
    response_timeout: Duration,
    clients: Mutex<HashMap<Vec<IpNet>, reqwest::Client>>,
}

impl Sender {
    pub fn new(connect_timeout: Duration, response_timeout: Duration) -> Sender {
        Sender {
            connect_timeout,
            response_timeout,
            clients: Mutex::default(),
        }
    }

    fn client(&self, allowed: &[IpNet]) -> Result<reqwest::Client, String> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = clients.get(allowed) {
            return Ok(client.clone());
        }
        let client = outbound::guarded_client(allowed, &BTreeMap::new(), self.connect_timeout)
            .map_err(|e| format!("cannot start the HTTP client: {e}"))?;
        clients.insert(allowed.to_vec(), client.clone());
        Ok(client)
    }

    /// Sends `delivery` once, signed at `now_s` (seconds since the epoch): the whole attempt
    /// (connecting, at most the connect timeout of it; sending; the answer and the little
    /// of a refusal's body that is read) within the two timeouts together.
    pub async fn send(&self, delivery: &ClaimedDelivery, allowed: &[IpNet], now_s: i64) -> Attempt {
        match tokio::time::timeout(
            self.connect_timeout + self.response_timeout,
            self.send_within(delivery, allowed, now_s),
        )
        .await
        {
            Ok(attempt) => attempt,
            Err(_) => Attempt::failed(format!(
                "no answer within {} ms",
                (self.connect_timeout + self.response_timeout).as_millis()
            )),
        }
    }

    async fn send_within(
        &self,
        delivery: &ClaimedDelivery,
        allowed: &[IpNet],
        now_s: i64,
    ) -> Attempt {
        let url = match Url::parse(&delivery.url) {
            Ok(url) => url,
            Err(e) => return Attempt::failed(format!("the URL does not parse: {e}")),
        };
        if let Err(why) = outbound::check_literal(&url, allowed) {
            return Attempt::failed(why);
        }
        let signature = match signing::signature_header(
            &delivery.secrets,
            &delivery.id,
            now_s,
            delivery.body.as_bytes(),
        ) {
            Ok(signature) => signature,
            Err(why) => return Attempt::failed(why),
        };
        let client = match self.client(allowed) {
            Ok(client) => client,
            Err(why) => return Attempt::failed(why),
        };
        let sent = client
            .post(url)
            .header(
                "content-type",
                "application/cloudevents+json; charset=utf-8",
            )
            .header("webhook-id", &delivery.id)
            .header("webhook-timestamp", now_s.to_string())
            .header("webhook-signature", signature)
            .body(delivery.body.clone())
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(e) => return Attempt::failed(send_error(&e)),
        };
        let status = response.status();
        if status.is_success() {
            return Attempt {
                delivered: true,
                status: Some(status.as_u16()),
                error: None,
            };
        }
        // A little of the answer, for the log: the receiver's words on why it refused.
        let mut said = Vec::new();
        while said.len() < RESPONSE_BYTES_READ {
            match response.chunk().await {
                Ok(Some(chunk)) => said.extend_from_slice(&chunk),
                _ => break,
            }
        }
        said.truncate(RESPONSE_BYTES_READ);
        let said = String::from_utf8_lossy(&said).trim().to_owned();
        Attempt {
            delivered: false,
            status: Some(status.as_u16()),
            error: Some(if said.is_empty() {
                format!("answered {status}")
            } else {
                format!("answered {status}: {said}")
            }),
        }
    }
}

/// Why a request failed, without its URL (which may carry a token in its path or query).
fn send_error(error: &reqwest::Error) -> String {
    if let Some(refused) = outbound::refused_address(error) {
        return refused;
    }
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    let mut text = format!("the request {what}");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
