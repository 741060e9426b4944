//! The delivery loop `coda serve` runs beside the engine: project the journal, claim what
//! is due, send it, write how it went, and again. Every node sharing a database runs one;
//! the claims keep a delivery to one node at a time.

use std::sync::Arc;
use std::time::Duration;

use coda_capabilities::Settings;
use coda_capabilities::settings::TenantSettings;
use coda_store::{AttemptOutcome, AttemptResult, ClaimedDelivery, SecretsKey, Store};
use ipnet::IpNet;
use tokio::task::JoinSet;

use crate::WebhookSettings;
use crate::project::Projector;
use crate::send::Sender;

/// How long a stopping loop waits for the attempts in flight before it drops them (their
/// claims run out and the deliveries are sent again: at least once).
pub const DRAIN: Duration = Duration::from_secs(5);

/// The delivery loop of one node.
pub struct Webhooks {
    store: Arc<Store>,
    key: SecretsKey,
    node: String,
    settings: WebhookSettings,
    sender: Sender,
}

impl Webhooks {
    /// `node` is this node's id in its claims, unique among the nodes sharing the database
    /// (the engine's).
    pub fn new(
        store: Arc<Store>,
        key: SecretsKey,
        node: &str,
        settings: WebhookSettings,
    ) -> Webhooks {
        Webhooks {
            sender: Sender::new(
                Duration::from_millis(settings.connect_timeout_ms),
                Duration::from_millis(settings.response_timeout_ms),
            ),
            store,
            key,
            node: node.to_owned(),
            settings,
        }
    }

    /// How long a claim lasts: past the longest an attempt can take (connect and answer
    /// bounded), so a live node never loses one mid-attempt.
    fn lease_ms(&self) -> i64 {
        let attempt = self.settings.connect_timeout_ms + self.settings.response_timeout_ms;
        i64::try_from(2 * attempt + 5_000).unwrap_or(i64::MAX)
    }

    /// Runs until `stop` resolves, then lets the attempts in flight end (up to [`DRAIN`]).
    pub async fn serve(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut projector = Projector::default();
        let mut in_flight = JoinSet::new();
        let poll = Duration::from_millis(self.settings.poll_ms);
        let mut failing = false;
        loop {
            while in_flight.try_join_next().is_some() {}
            let room = self.settings.max_in_flight.saturating_sub(in_flight.len());
            match self.round(&mut projector, room).await {
                Ok(claimed) => {
                    if failing {
                        tracing::info!("webhook deliveries go on: the database answers again");
                        failing = false;
                    }
                    for delivery in claimed {
                        in_flight.spawn(self.clone().attempt(delivery));
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!("webhook deliveries wait: {e}");
                        failing = true;
                    }
                }
            }
            tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::sleep(poll) => {}
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            }
        }
        let _ = tokio::time::timeout(DRAIN, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
        in_flight.abort_all();
    }

    /// One projection pass and one claim of up to `room` due deliveries.
    async fn round(
        &self,
        projector: &mut Projector,
        room: usize,
    ) -> Result<Vec<ClaimedDelivery>, coda_store::StoreError> {
        let now = coda_types::time::now_ms();
        projector.pass(&self.store, now).await?;
        // A claim is a write: made only when something is due, so an idle node (or one with
        // no subscription anywhere) adds nothing to the writer the step commits share.
        if room == 0 || !self.store.webhook_deliveries_due(now)? {
            return Ok(Vec::new());
        }
        self.store
            .claim_webhook_deliveries(
                &self.node,
                now,
                self.lease_ms(),
                room,
                self.settings.max_in_flight_per_tenant,
                &self.key,
            )
            .await
    }

    /// Sends one claimed delivery and writes how it went, under its claim.
    async fn attempt(self: Arc<Self>, delivery: ClaimedDelivery) {
        let allowed = self.allowed_ranges(&delivery.tenant);
        let now_s = coda_types::time::now_ms() / 1000;
        let attempt = self.sender.send(&delivery, &allowed, now_s).await;
        let now = coda_types::time::now_ms();
        let outcome = if attempt.delivered {
            AttemptOutcome::Delivered
        } else {
            self.settings
                .after_failure(delivery.attempts, delivery.first_at_ms, now)
        };
        let result = AttemptResult {
            outcome,
            status: attempt.status,
            error: attempt.error,
        };
        match self
            .store
            .finish_webhook_attempt(&delivery.id, delivery.claim_seq, result, now)
            .await
        {
            Ok(true) => {}
            Ok(false) => tracing::info!(
                delivery = delivery.id,
                "a webhook attempt's claim was lost meanwhile: its result is not written"
            ),
            // Not written: the claim runs out and the delivery is sent again.
            Err(e) => tracing::warn!(delivery = delivery.id, "a webhook attempt's result: {e}"),
        }
    }

    /// The tenant's allowed ranges ([`allowed_ranges`]) from its ceiling as stored; none
    /// when it cannot be read (deny by default).
    fn allowed_ranges(&self, tenant: &str) -> Vec<IpNet> {
        match self.store.ceiling(tenant) {
            Ok(Some(body)) => TenantSettings::from_ceiling_json(tenant, &body)
                .map(|ceiling| allowed_ranges(tenant, ceiling))
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}

/// The special address ranges (loopback, private, ...) a tenant's webhooks may reach: its
/// ceiling's, exactly as `coda_capabilities::grants::allowed_private` decides them for the
/// tenant's http capability.
pub fn allowed_ranges(tenant: &str, ceiling: TenantSettings) -> Vec<IpNet> {
    let mut settings = Settings::default();
    settings.tenants.insert(tenant.to_owned(), ceiling);
    coda_capabilities::grants::allowed_private(&settings, tenant).to_vec()
}
