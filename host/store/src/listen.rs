//! New work from other nodes, on PostgreSQL: LISTEN/NOTIFY instead of polling.
//!
//! A write that makes a run due which another node may take (a new run, a run woken by an
//! event or retried, a released claim, a step's commit that leaves its run queued) notes it
//! ([`crate::db::Conn::made_work`]), and its transaction sends [`notice`] before its
//! `COMMIT`, in the same round trip. PostgreSQL delivers a notice when, and only if, the
//! transaction commits, and folds a transaction's identical notices into one.
//!
//! Each store listens on a connection of its own ([`listen`]), and wakes whoever waits on
//! [`crate::Store::work_elsewhere`] (the flow engine's scheduler) for a notice from another
//! store; its own are passed over, since the node that wrote wakes itself. When the
//! listening connection breaks it is made again, and since a notice sent meanwhile is lost,
//! the waiter is woken once after each (re)connection to look. The scheduler's poll stays
//! as the fallback (a claim whose lease runs out sends nothing).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::Notify;
use tokio_postgres::AsyncMessage;

/// The channel of the notices.
const CHANNEL: &str = "coda_work";

/// The application name of the listening connection (`pg_stat_activity`).
pub(crate) const LISTENER_NAME: &str = "coda-work-listener";

/// How long to wait before connecting again after the listening connection broke, doubled
/// at each failure up to the most.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MOST_RETRY: Duration = Duration::from_secs(5);

/// The statement a transaction that made work sends: the store `id` as payload.
pub(crate) fn notice(id: &str) -> String {
    // The id is a hexadecimal uuid: nothing to quote.
    format!("NOTIFY {CHANNEL}, '{id}'")
}

/// Listens for other stores' notices on the database at `url` until the store's runtime
/// stops, waking `work` for each.
pub(crate) async fn listen(url: String, id: String, work: Arc<Notify>) {
    let mut retry = FIRST_RETRY;
    loop {
        match listen_once(&url, &id, &work).await {
            // It listened: the next break is a new episode.
            Ok(()) => retry = FIRST_RETRY,
            Err(e) => {
                tracing::warn!(
                    "listening for new work on PostgreSQL failed ({e}); trying again in {retry:?}"
                );
                retry = (retry * 2).min(MOST_RETRY);
            }
        }
        tokio::time::sleep(retry).await;
    }
}

/// One listening connection, until it breaks: `Ok` if it was listening.
async fn listen_once(url: &str, id: &str, work: &Arc<Notify>) -> Result<(), tokio_postgres::Error> {
    let mut config: tokio_postgres::Config = url.parse()?;
    config.application_name(LISTENER_NAME);
    let (client, mut connection) = config.connect(tokio_postgres::NoTls).await?;
    let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
    let own = id.to_owned();
    let waiter = work.clone();
    // Drives the connection (the LISTEN below waits on it) and hands on the notices.
    let driver = async move {
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) if n.payload() != own => waiter.notify_one(),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    };
    tokio::pin!(driver);
    let listen = format!("LISTEN {CHANNEL}");
    let listening = client.batch_execute(&listen);
    tokio::select! {
        ended = &mut driver => return ended,
        listened = listening => listened?,
    }
    tracing::debug!("listening for new work on PostgreSQL");
    // A notice sent while nobody listened is lost: look once.
    work.notify_one();
    let ended = driver.await;
    drop(client);
    match ended {
        Ok(()) => tracing::warn!("the connection listening for new work closed; connecting again"),
        Err(e) => {
            tracing::warn!("the connection listening for new work broke ({e}); connecting again")
        }
    }
    Ok(())
}
