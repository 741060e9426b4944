//! Servers on loopback that coda's tests, benchmarks and demo talk to for real, over TCP:
//!
//! - [`SmsGateway`]: speaks the Twilio Messages API (`POST
//!   /2010-04-01/Accounts/{sid}/Messages.json`, form-encoded, basic auth), honours
//!   idempotency tokens as Twilio does, and counts every delivery by token, so a test can
//!   tell an effect made once from one made twice. A carrier's gateway cannot run here; this
//!   one speaks its API.
//! - [`Recorder`]: answers every request with a configured JSON body and records it.
//! - [`SmtpServer`]: real SMTP (the `mailin` state machine), keeping each message it accepts.
//! - [`PostgresCluster`]: a PostgreSQL server of the test's own, which it can stop and start.
//!
//! Each server stops when its handle is dropped.

mod postgres;
mod recorder;
mod sms;
mod smtp;

pub use postgres::{PostgresCluster, postgres_bin};
pub use recorder::{Recorded, Recorder};
pub use sms::{Delivery, GatewayAnswer, SmsGateway, SmsGatewayConfig};
pub use smtp::{Mail, SmtpAttempt, SmtpMode, SmtpServer};

use std::net::SocketAddr;

/// A server task on a loopback port, stopped when dropped.
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    async fn serve(router: axum::Router) -> anyhow::Result<Running> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        Running::serve_on(listener, router)
    }

    fn serve_on(
        listener: tokio::net::TcpListener,
        router: axum::Router,
    ) -> anyhow::Result<Running> {
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Running {
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server and waits until it has.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
