//! A gateway speaking the Twilio Messages API on loopback, for the demo and for trying the
//! sms applet by hand: prints each message it receives.
//!
//! `coda-fake-twilio [ADDR]` (default 127.0.0.1:8025); account SID and token are the
//! testkit's defaults, or `CODA_FAKE_TWILIO_SID` / `CODA_FAKE_TWILIO_TOKEN`.

use coda_testkit::{SmsGateway, SmsGatewayConfig};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8025".into());
    let mut config = SmsGatewayConfig::default();
    if let Ok(sid) = std::env::var("CODA_FAKE_TWILIO_SID") {
        config.account_sid = sid;
    }
    if let Ok(token) = std::env::var("CODA_FAKE_TWILIO_TOKEN") {
        config.auth_token = token;
    }
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let gateway = SmsGateway::start_on(listener, config)?;
    eprintln!("fake Twilio gateway on {}", gateway.url());
    let mut printed = 0;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
        }
        let deliveries = gateway.deliveries();
        for d in &deliveries[printed..] {
            println!(
                "{} to {} from {}: {:?}{}",
                d.status,
                d.to,
                d.from,
                d.body,
                if d.replayed {
                    " (replayed token: no new message)"
                } else {
                    ""
                }
            );
        }
        printed = deliveries.len();
    }
    gateway.server.stop().await;
    Ok(())
}
