//! An SMTP server on loopback for the demo and for trying send-email by hand: accepts every
//! message and prints its envelope and subject. `coda-fake-smtp [PORT]` (default 2525).

use coda_testkit::{SmtpMode, SmtpServer};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(2525);
    let server = SmtpServer::start_on(port, SmtpMode::Accept, None)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    eprintln!("fake SMTP server on {}", server.addr);
    let mut printed = 0;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
        }
        let mails = server.mails();
        for mail in &mails[printed..] {
            println!(
                "from {} to {:?}: {}",
                mail.from,
                mail.to,
                mail.header("Subject").unwrap_or_default()
            );
        }
        printed = mails.len();
    }
}
