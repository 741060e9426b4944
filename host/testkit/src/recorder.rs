//! An HTTP endpoint that records what it is sent and answers with a configured response.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;

use crate::Running;

/// One request as the recorder received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone)]
struct Shared {
    status: u16,
    body: serde_json::Value,
    seen: Arc<Mutex<Vec<Recorded>>>,
}

/// Answers every request with `status` and the JSON `body`.
pub struct Recorder {
    pub server: Running,
    seen: Arc<Mutex<Vec<Recorded>>>,
}

impl Recorder {
    pub async fn start(status: u16, body: serde_json::Value) -> anyhow::Result<Recorder> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared {
            status,
            body,
            seen: seen.clone(),
        };
        let router = axum::Router::new().fallback(record).with_state(shared);
        Ok(Recorder {
            server: Running::serve(router).await?,
            seen,
        })
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

async fn record(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    shared
        .seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Recorded {
            method: method.to_string(),
            path: uri
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            headers: headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: body.to_vec(),
        });
    let status = StatusCode::from_u16(shared.status).unwrap_or(StatusCode::OK);
    (status, axum::Json(shared.body.clone()))
}
