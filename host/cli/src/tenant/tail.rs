//! The live tail of a run (`coda runs tail`): its steps as they commit, read from the
//! service's server-sent events.

use futures_util::StreamExt;
use serde_json::{Value as Json, json};

use super::runs::{is_final, step_cells};
use crate::client::{Client, Failure, cell};

/// Follows `GET /v1/runs/{id}/tail` (server-sent events): each step as it commits; ends when
/// an event says the run ended, or when the stream closes and the run has ended.
pub(super) async fn tail(client: &Client, id: &str) -> Result<(), Failure> {
    use eventsource_stream::Eventsource;
    let response = client.open_stream(&["v1", "runs", id, "tail"]).await?;
    // The response's chunks as a stream (reqwest's own needs its `stream` feature, which
    // would compile more for the capabilities' client as well).
    let chunks = futures_util::stream::unfold(Some(response), |response| async move {
        let mut response = response?;
        match response.chunk().await {
            Ok(Some(bytes)) => Some((Ok(bytes), Some(response))),
            Ok(None) => None,
            Err(e) => Some((Err(e), None)),
        }
    });
    let mut events = std::pin::pin!(chunks.eventsource());
    if !client.json {
        println!(
            "{:>4}  {:<16} {:<24} {:<8} {:<16} note",
            "SEQ", "NODE", "APPLET", "ATTEMPT", "RESULT"
        );
    }
    let mut ended: Option<String> = None;
    while let Some(event) = events.next().await {
        let event = event.map_err(|e| match e {
            eventsource_stream::EventStreamError::Transport(e) => client.transport(e),
            other => Failure::new(
                1,
                "invalid-response",
                format!("the run's event stream is malformed: {other}"),
            ),
        })?;
        let data: Json =
            serde_json::from_str(&event.data).unwrap_or_else(|_| Json::String(event.data.clone()));
        if client.json {
            println!(
                "{}",
                json!({ "event": event.event, "id": event.id, "data": data })
            );
        } else if data.get("node").is_some() && data.get("seq").is_some() {
            let cells = step_cells(&data);
            println!(
                "{:>4}  {:<16} {:<24} {:<8} {:<16} {}",
                cells[0], cells[1], cells[2], cells[3], cells[4], cells[5]
            );
        }
        if event.event == "error" {
            // The server failed mid-tail and said so in the stream.
            return Err(Failure::new(
                1,
                data.get("kind").and_then(Json::as_str).unwrap_or("error"),
                cell("", data.get("message").or(Some(&data))),
            ));
        }
        let status = data.get("status").and_then(Json::as_str);
        let final_event = matches!(
            event.event.as_str(),
            "end" | "ended" | "done" | "finished" | "run-ended"
        );
        if final_event || (data.get("seq").is_none() && status.is_some_and(is_final)) {
            ended = Some(status.unwrap_or("ended").to_owned());
            break;
        }
    }
    // The stream closed without saying how the run ended (or said it in no known way): the
    // run itself says.
    let status = match ended {
        Some(status) if is_final(&status) => status,
        _ => {
            let run = client.get(&["v1", "runs", id], &[]).await?;
            let status = run
                .get("status")
                .and_then(Json::as_str)
                .unwrap_or("")
                .to_owned();
            if !is_final(&status) {
                return Err(Failure::new(
                    1,
                    "stream-ended",
                    format!("the stream ended while run {id} is still {status}"),
                ));
            }
            status
        }
    };
    if !client.json {
        println!("run {id}: {status}");
    }
    if status == "failed" {
        return Err(Failure::new(1, "run-failed", format!("run {id} failed")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ClientArgs;

    /// A loopback server whose tail sends `events` (name, JSON) and whose run answers
    /// `status`; the client pointed at it.
    async fn tail_server(
        events: Vec<(&'static str, Json)>,
        status: &'static str,
    ) -> (Client, tokio::task::JoinHandle<()>) {
        use axum::response::sse::{Event, Sse};
        use axum::routing::get;
        let router = axum::Router::new()
            .route(
                "/v1/runs/{id}/tail",
                get(move || {
                    let events = events.clone();
                    async move {
                        Sse::new(futures_util::stream::iter(events.into_iter().map(
                            |(name, data)| {
                                Ok::<_, std::convert::Infallible>(
                                    Event::default().event(name).data(data.to_string()),
                                )
                            },
                        )))
                    }
                }),
            )
            .route(
                "/v1/runs/{id}",
                get(move || async move { axum::Json(json!({ "status": status })) }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let client = Client::new(&ClientArgs {
            server: Some(format!("http://{address}")),
            token: Some("t".into()),
            json: false,
        })
        .unwrap();
        (client, server)
    }

    #[tokio::test]
    async fn tail_prints_steps_until_the_run_ends() {
        let step = |seq: u64, node: &str| {
            json!({"seq": seq, "node": node, "applet": "set-data@0.1.0", "attempt": 1,
                   "result": {"exit": "next"}, "note": "", "fuel_used": 1, "duration_us": 10})
        };
        // Ended by an event that says so.
        let (client, server) = tail_server(
            vec![
                ("step", step(0, "a")),
                ("step", step(1, "b")),
                ("end", json!({"status": "done"})),
            ],
            "running",
        )
        .await;
        tail(&client, "r1").await.unwrap();
        server.abort();
        // A failed run: exit 1.
        let (client, server) =
            tail_server(vec![("end", json!({"status": "failed"}))], "failed").await;
        assert_eq!(tail(&client, "r1").await.unwrap_err().kind, "run-failed");
        server.abort();
        // The stream closes without a word: the run says it ended, or that it did not.
        let (client, server) = tail_server(vec![("step", step(0, "a"))], "done").await;
        tail(&client, "r1").await.unwrap();
        server.abort();
        let (client, server) = tail_server(vec![("step", step(0, "a"))], "waiting").await;
        assert_eq!(tail(&client, "r1").await.unwrap_err().kind, "stream-ended");
        server.abort();
    }
}
