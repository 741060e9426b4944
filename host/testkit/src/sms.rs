//! A gateway speaking the Twilio Messages API on loopback.
//!
//! `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded `To`, `From`, `Body`,
//! HTTP basic auth with the account SID and auth token. It answers as Twilio does: 201 with
//! the message resource (`sid`, `status: queued`, ...), 401 code 20003 on bad credentials,
//! 400 code 21604 without `To`, 400 code 21211 for a `To` that is not E.164. A request
//! carrying an idempotency token (`I-Twilio-Idempotency-Token` or `Idempotency-Key`) that it
//! has seen gets the first answer again and creates no message: that is how a downstream
//! honours keys, and what the crash test counts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::json;

use crate::Running;

/// How the gateway behaves.
#[derive(Debug, Clone)]
pub struct SmsGatewayConfig {
    pub account_sid: String,
    pub auth_token: String,
    /// Answer the first N requests with 500 (a gateway having a bad minute).
    pub fail_first: u32,
    /// Answer the next N requests with 429 and `Retry-After: 1`.
    pub throttle_first: u32,
    /// Wait this long before answering each request.
    pub delay_ms: u64,
    /// How to answer the first requests, one entry each, in order of arrival (before
    /// `fail_first` and `throttle_first` are counted): a gateway misbehaving on demand.
    /// Requests past the script are answered normally.
    pub script: Vec<GatewayAnswer>,
}

/// One scripted answer of the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayAnswer {
    /// As a healthy gateway would (a message, or the first answer to a known token).
    Normal,
    /// This status (500, 502, 503 ...) with a Twilio error body and no message.
    Error(u16),
    /// 429 with `Retry-After: secs`.
    Throttle { retry_after_secs: u64 },
    /// Wait this long, then answer normally: a slow gateway. The request is processed to
    /// the end even when the client gave up waiting.
    Slow { millis: u64 },
}

impl Default for SmsGatewayConfig {
    fn default() -> Self {
        SmsGatewayConfig {
            account_sid: "AC00000000000000000000000000000001".into(),
            auth_token: "test-auth-token".into(),
            fail_first: 0,
            throttle_first: 0,
            delay_ms: 0,
            script: Vec::new(),
        }
    }
}

/// One request that reached the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Its number among all requests, from 1; also sent back as the `X-Delivery` header.
    pub number: u32,
    /// The idempotency token it carried, if any.
    pub token: Option<String>,
    pub to: String,
    pub from: String,
    pub body: String,
    /// The HTTP status answered.
    pub status: u16,
    /// The message it created or was answered with (none for errors).
    pub message_sid: Option<String>,
    /// True when the token had been seen and no new message was created.
    pub replayed: bool,
}

#[derive(Default)]
struct Log {
    /// Requests arrived (counted before any delay), which picks the scripted answer.
    arrived: u32,
    requests: u32,
    deliveries: Vec<Delivery>,
    /// token → the first answer (status, body)
    answered: HashMap<String, (u16, serde_json::Value)>,
    messages: u32,
}

#[derive(Clone)]
struct Shared {
    config: Arc<SmsGatewayConfig>,
    log: Arc<Mutex<Log>>,
    in_flight: Arc<std::sync::atomic::AtomicU32>,
}

/// Counts a request as in flight from its arrival until its answer is written.
struct InFlight(Arc<std::sync::atomic::AtomicU32>);

impl InFlight {
    fn enter(count: &Arc<std::sync::atomic::AtomicU32>) -> Self {
        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        InFlight(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

pub struct SmsGateway {
    pub server: Running,
    log: Arc<Mutex<Log>>,
    config: Arc<SmsGatewayConfig>,
    in_flight: Arc<std::sync::atomic::AtomicU32>,
}

impl SmsGateway {
    pub async fn start(config: SmsGatewayConfig) -> anyhow::Result<SmsGateway> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        SmsGateway::start_on(listener, config)
    }

    pub fn start_on(
        listener: tokio::net::TcpListener,
        config: SmsGatewayConfig,
    ) -> anyhow::Result<SmsGateway> {
        let config = Arc::new(config);
        let log = Arc::new(Mutex::new(Log::default()));
        let in_flight = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let router = axum::Router::new()
            .route(
                "/2010-04-01/Accounts/{sid}/Messages.json",
                axum::routing::post(create_message),
            )
            .with_state(Shared {
                config: config.clone(),
                log: log.clone(),
                in_flight: in_flight.clone(),
            });
        Ok(SmsGateway {
            server: Running::serve_on(listener, router)?,
            log,
            config,
            in_flight,
        })
    }

    /// `http://127.0.0.1:PORT`, the `base_url` for the sms applet.
    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn config(&self) -> &SmsGatewayConfig {
        &self.config
    }

    /// Every request that reached it, in order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.lock().deliveries.clone()
    }

    /// Requests received and not yet answered.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Messages created (a replayed token creates none).
    pub fn messages_created(&self) -> u32 {
        self.lock().messages
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn twilio_error(status: StatusCode, code: u32, message: &str) -> (StatusCode, serde_json::Value) {
    (
        status,
        json!({ "code": code, "message": message, "status": status.as_u16(),
                "more_info": format!("https://www.twilio.com/docs/errors/{code}") }),
    )
}

fn authorized(headers: &HeaderMap, config: &SmsGatewayConfig) -> bool {
    let Some(basic) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    else {
        return false;
    };
    let expected = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", config.account_sid, config.auth_token));
    basic.trim() == expected
}

fn is_e164(number: &str) -> bool {
    number
        .strip_prefix('+')
        .is_some_and(|d| (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}

async fn create_message(
    State(shared): State<Shared>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<HashMap<String, String>>,
) -> Response {
    // Processed to the end even if the client goes away mid-request (a host killed during
    // the call), as a real gateway would: the message goes out, the answer is lost.
    let in_flight = InFlight::enter(&shared.in_flight);
    let work = tokio::spawn(async move {
        let _in_flight = in_flight;
        process(shared, sid, headers, form).await
    });
    work.await
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn process(
    shared: Shared,
    sid: String,
    headers: HeaderMap,
    form: HashMap<String, String>,
) -> Response {
    if shared.config.delay_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(shared.config.delay_ms)).await;
    }
    // Which scripted answer this request gets: the next in order of arrival.
    let scripted = {
        let mut log = shared.log.lock().unwrap_or_else(|p| p.into_inner());
        let nth = log.arrived as usize;
        log.arrived += 1;
        shared
            .config
            .script
            .get(nth)
            .copied()
            .unwrap_or(GatewayAnswer::Normal)
    };
    if let GatewayAnswer::Slow { millis } = scripted {
        tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
    }
    let token = ["i-twilio-idempotency-token", "idempotency-key"]
        .iter()
        .find_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()))
        .map(str::to_owned);
    let field = |name: &str| form.get(name).cloned().unwrap_or_default();
    let (to, from, body) = (field("To"), field("From"), field("Body"));

    let mut log = shared.log.lock().unwrap_or_else(|p| p.into_inner());
    log.requests += 1;
    let nth = log.requests;
    let record = |log: &mut Log, status: u16, sid: Option<String>, replayed: bool| {
        log.deliveries.push(Delivery {
            number: nth,
            token: token.clone(),
            to: to.clone(),
            from: from.clone(),
            body: body.clone(),
            status,
            message_sid: sid,
            replayed,
        });
    };

    // Which delivery this is, overall: a test reads it back from the effect journal to tell
    // which delivery's answer the host kept.
    let delivery = [("x-delivery", nth.to_string())];
    match scripted {
        GatewayAnswer::Error(code) => {
            record(&mut log, code, None, false);
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let (status, body) = twilio_error(status, 20500, "Scripted gateway error");
            return (status, delivery, axum::Json(body)).into_response();
        }
        GatewayAnswer::Throttle { retry_after_secs } => {
            record(&mut log, 429, None, false);
            let (status, body) =
                twilio_error(StatusCode::TOO_MANY_REQUESTS, 20429, "Too Many Requests");
            return (
                status,
                [("retry-after", retry_after_secs.to_string())],
                delivery,
                axum::Json(body),
            )
                .into_response();
        }
        GatewayAnswer::Normal | GatewayAnswer::Slow { .. } => {}
    }
    if let Some((status, answer)) = token.as_ref().and_then(|t| log.answered.get(t)).cloned() {
        let sid = answer["sid"].as_str().map(str::to_owned);
        record(&mut log, status, sid, true);
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
        return (status, delivery, axum::Json(answer)).into_response();
    }
    if nth <= shared.config.fail_first {
        record(&mut log, 500, None, false);
        let (status, body) = twilio_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            20500,
            "Internal Server Error",
        );
        return (status, delivery, axum::Json(body)).into_response();
    }
    if nth <= shared.config.fail_first + shared.config.throttle_first {
        record(&mut log, 429, None, false);
        let (status, body) =
            twilio_error(StatusCode::TOO_MANY_REQUESTS, 20429, "Too Many Requests");
        return (
            status,
            [("retry-after", "1".to_owned())],
            delivery,
            axum::Json(body),
        )
            .into_response();
    }
    let (status, answer) =
        if sid != shared.config.account_sid || !authorized(&headers, &shared.config) {
            twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate")
        } else if to.is_empty() {
            twilio_error(
                StatusCode::BAD_REQUEST,
                21604,
                "A 'To' phone number is required.",
            )
        } else if !is_e164(&to) {
            twilio_error(
                StatusCode::BAD_REQUEST,
                21211,
                &format!("The 'To' number {to} is not a valid phone number."),
            )
        } else if body.is_empty() {
            twilio_error(StatusCode::BAD_REQUEST, 21602, "Message body is required.")
        } else {
            log.messages += 1;
            let message_sid = format!(
                "SM{:032x}",
                u128::from(log.messages) << 64 | u128::from(nth)
            );
            (
                StatusCode::CREATED,
                json!({
                    "sid": message_sid,
                    "account_sid": sid,
                    "to": to,
                    "from": from,
                    "body": body,
                    "status": "queued",
                    "num_segments": "1",
                    "direction": "outbound-api",
                    "api_version": "2010-04-01",
                    "uri": format!("/2010-04-01/Accounts/{sid}/Messages/{message_sid}.json"),
                }),
            )
        };
    let message_sid = answer["sid"].as_str().map(str::to_owned);
    record(&mut log, status.as_u16(), message_sid, false);
    if let Some(token) = &token {
        log.answered
            .insert(token.clone(), (status.as_u16(), answer.clone()));
    }
    (status, delivery, axum::Json(answer)).into_response()
}
