//! An HTTP endpoint on loopback answering every request with `{"ok": true}`, for the
//! benchmarks' capability call: `coda-loopback-http [ADDR]` (default 127.0.0.1:8026).
//! Prints how many requests it answered when stopped (Ctrl-C).

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8026".into());
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = count.clone();
    let router = axum::Router::new().fallback(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        async { axum::Json(serde_json::json!({ "ok": true })) }
    });
    eprintln!("answering on http://{addr}");
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    eprintln!(
        "{} requests answered",
        count.load(std::sync::atomic::Ordering::Relaxed)
    );
    Ok(())
}
