//! Outbound webhooks (migration 21): a tenant's subscriptions, the deliveries made for
//! them, and where the projection of the journal into deliveries stands.
//!
//! Deliveries are a projection of the journal, not written by a step's commit: the steps
//! table is durable and ordered by run and sequence, so the delivery loop (`coda-webhooks`)
//! reads what a run committed since its cursor (`webhook_runs`), writes one delivery row per
//! event and subscription with the cursor moved on in the same transaction, and sends the
//! rows. A commit pays nothing for webhooks, and a commit on disk is an event that will be
//! projected, whatever happens to the process after it. The projection is idempotent (a
//! delivery is unique per subscription, run and position), so two nodes projecting the same
//! run at once write each delivery once.
//!
//! A delivery is sent by one node at a time: it is claimed (`claim_owner`, `claim_until`,
//! `claim_seq + 1`) in one write, and its result is written only under that claim's
//! `claim_seq`, so a node paused past the claim that wakes up writes nothing over the node
//! that took it. A delivery waits while an earlier one of its run and subscription is
//! pending: each run's events leave in order.
//!
//! The signing secrets are sealed with the operator's key like the tenants' secrets
//! (`grants.rs`), under the associated data `webhook/{id}`: a copy of the database signs
//! nothing.

use serde::Serialize;

use crate::db::{Conn, OptionalExtension, Row, params};
use crate::grants::SecretsKey;
use crate::journal::StepRecord;
use crate::runs::RunStatus;
use crate::{Result, Store, StoreError};

/// A delivery's state: sent and answered 2xx, waiting (for its turn, its time, or an
/// answer), or given up after the retry window.
pub const DELIVERY_PENDING: &str = "pending";
pub const DELIVERY_DELIVERED: &str = "delivered";
pub const DELIVERY_FAILED: &str = "failed";

/// What a redelivery sets (`?4`: now): pending at once, with a new retry window counted
/// afresh, and a new claim number, so an attempt still in flight under the old claim
/// writes nothing over it (`Store::finish_webhook_attempt` is fenced by the number).
const REQUEUE: &str = "status = 'pending', next_at = ?4, first_at = ?4, updated_at = ?4,
    attempts = 0, claim_seq = claim_seq + 1, claim_owner = NULL, claim_until = NULL";

/// A subscription as the API shows it: never its secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookSubscription {
    pub id: String,
    pub url: String,
    /// The event kinds it receives (`run.done`, ...).
    pub events: Vec<String>,
    /// Only runs of this plan; none: every plan.
    pub plan: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// Until when the secret replaced by the last rotation still signs too; none when no
    /// rotation is in its window.
    pub previous_secret_until_ms: Option<i64>,
}

/// A subscription to create.
#[derive(Debug, Clone)]
pub struct NewSubscription {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub plan: Option<String>,
    /// Its signing secret (`whsec_…`), sealed before it is stored.
    pub secret: String,
}

/// What an update changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionPatch {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    /// `Some(None)` removes the plan filter.
    pub plan: Option<Option<String>>,
}

/// The answer to a creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionWrite {
    Created(WebhookSubscription),
    /// The tenant has `max` subscriptions already.
    TooMany {
        max: u32,
    },
}

/// What the projection needs of a tenant's subscription.
#[derive(Debug, Clone)]
pub struct WebhookTarget {
    pub id: String,
    pub events: Vec<String>,
    pub plan: Option<String>,
    /// Events of steps stamped before it are not its.
    pub created_at_ms: i64,
}

/// One delivery as its log shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryRecord {
    /// The `webhook-id` it is sent with, the same on every attempt.
    pub id: String,
    pub subscription: String,
    pub run_id: String,
    /// Its place among its run's events: deliveries of a run leave in this order.
    pub position: u64,
    /// The CloudEvents type (`coda.run.done`, ...).
    pub event_type: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: u32,
    /// When it is next sent, while pending.
    pub next_at_ms: Option<i64>,
    /// The receiver's last HTTP status, if it answered.
    pub last_status: Option<u16>,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub delivered_at_ms: Option<i64>,
}

/// A delivery the projection writes.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: String,
    pub subscription: String,
    pub position: u64,
    pub event_type: String,
    /// The CloudEvent, as sent.
    pub body: String,
}

/// What a run committed since the projection last read it.
#[derive(Debug, Clone)]
pub struct RunNews {
    pub tenant: String,
    pub run_id: String,
    pub interaction: Option<String>,
    pub status: RunStatus,
    /// Steps committed so far (the run's `step_seq`).
    pub step_seq: u64,
    /// The first step not projected yet.
    pub next_seq: u64,
    /// Steps from `next_seq` on, in order (a page of them).
    pub steps: Vec<StepRecord>,
}

/// A delivery claimed for sending by this node.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub id: String,
    pub tenant: String,
    pub subscription: String,
    pub url: String,
    pub body: String,
    pub attempts: u32,
    /// When its retry window began: its first attempt (not its projection: a delivery
    /// waiting behind its run's earlier ones has not begun), or its last redelivery.
    pub first_at_ms: i64,
    /// The claim its result is fenced by.
    pub claim_seq: u64,
    /// The secrets to sign with: the current one, and the one before the last rotation
    /// while its window lasts.
    pub secrets: Vec<String>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered,
    /// Not delivered; sent again at `next_at_ms`.
    Retry {
        next_at_ms: i64,
    },
    /// Not delivered, and the retry window is over.
    Failed,
}

/// One attempt's result, written under the claim it was made with.
#[derive(Debug, Clone)]
pub struct AttemptResult {
    pub outcome: AttemptOutcome,
    pub status: Option<u16>,
    pub error: Option<String>,
}

const SUBSCRIPTION_COLUMNS: &str = "id, url, events, plan, created_at, updated_at, previous_until";

fn subscription_from_row(r: &Row, now_ms: i64) -> Result<WebhookSubscription> {
    let events: String = r.get(2)?;
    let previous_until: Option<i64> = r.get(6)?;
    Ok(WebhookSubscription {
        id: r.get(0)?,
        url: r.get(1)?,
        events: serde_json::from_str(&events)?,
        plan: r.get(3)?,
        created_at_ms: r.get(4)?,
        updated_at_ms: r.get(5)?,
        previous_secret_until_ms: previous_until.filter(|until| *until > now_ms),
    })
}

const DELIVERY_COLUMNS: &str = "id, subscription, run_id, position, event_type, status, attempts,
    next_at, last_status, last_error, created_at, updated_at, delivered_at";

fn delivery_from_row(r: &Row) -> Result<DeliveryRecord> {
    Ok(DeliveryRecord {
        id: r.get(0)?,
        subscription: r.get(1)?,
        run_id: r.get(2)?,
        position: r.get(3)?,
        event_type: r.get(4)?,
        status: r.get(5)?,
        attempts: r.get(6)?,
        next_at_ms: r.get(7)?,
        last_status: r.get(8)?,
        last_error: r.get(9)?,
        created_at_ms: r.get(10)?,
        updated_at_ms: r.get(11)?,
        delivered_at_ms: r.get(12)?,
    })
}

/// The associated data a subscription's secrets are sealed under.
fn sealed_name(id: &str) -> String {
    format!("webhook/{id}")
}

fn read_subscription(
    conn: &Conn<'_>,
    tenant: &str,
    id: &str,
    now_ms: i64,
) -> Result<Option<WebhookSubscription>> {
    conn.prepare_cached(&format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions WHERE tenant = ?1 AND id = ?2"
    ))?
    .query_row(params![tenant, id], |r| {
        Ok(subscription_from_row(r, now_ms))
    })
    .optional()?
    .transpose()
}

impl Store {
    /// Creates a subscription, refused past `max` per tenant (counted in the same
    /// transaction, so two creations at once cannot both pass it).
    pub async fn create_webhook(
        &self,
        tenant: &str,
        new: NewSubscription,
        key: &SecretsKey,
        max: u32,
        now_ms: i64,
    ) -> Result<SubscriptionWrite> {
        let (nonce, sealed) = key.seal(tenant, &sealed_name(&new.id), new.secret.as_bytes())?;
        let tenant = tenant.to_owned();
        let events = serde_json::to_string(&new.events)?;
        self.writer
            .write(move |tx| {
                let count: i64 = tx
                    .prepare_cached("SELECT COUNT(*) FROM webhook_subscriptions WHERE tenant = ?1")?
                    .query_row(params![tenant], |r| r.get(0))?;
                if count >= i64::from(max) {
                    return Ok(SubscriptionWrite::TooMany { max });
                }
                tx.prepare_cached(
                    "INSERT INTO webhook_subscriptions
                     (tenant, id, url, events, plan, secret_nonce, secret, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
                )?
                .execute(params![
                    tenant, new.id, new.url, events, new.plan, nonce, sealed, now_ms
                ])?;
                let created =
                    read_subscription(tx, &tenant, &new.id, now_ms)?.ok_or(StoreError::NoRow)?;
                Ok(SubscriptionWrite::Created(created))
            })
            .await
    }

    /// A subscription of `tenant`; none for an id it does not have (another tenant's
    /// included).
    pub fn webhook(
        &self,
        tenant: &str,
        id: &str,
        now_ms: i64,
    ) -> Result<Option<WebhookSubscription>> {
        self.read(|conn| read_subscription(conn, tenant, id, now_ms))
    }

    /// The tenant's subscriptions by id, a page at a time after `after`.
    pub fn webhooks(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: usize,
        now_ms: i64,
    ) -> Result<Vec<WebhookSubscription>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|conn| {
            let rows = conn.query(
                &format!(
                    "SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions
                     WHERE tenant = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
                ),
                params![tenant, after.unwrap_or(""), limit],
            )?;
            rows.iter()
                .map(|r| subscription_from_row(r, now_ms))
                .collect()
        })
    }

    /// Changes a subscription; none when the tenant has no such subscription.
    pub async fn update_webhook(
        &self,
        tenant: &str,
        id: &str,
        patch: SubscriptionPatch,
        now_ms: i64,
    ) -> Result<Option<WebhookSubscription>> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        let events = patch
            .events
            .as_ref()
            .map(serde_json::to_string)
            .transpose()?;
        self.writer
            .write(move |tx| {
                let Some(mut current) = read_subscription(tx, &tenant, &id, now_ms)? else {
                    return Ok(None);
                };
                if let Some(url) = patch.url {
                    current.url = url;
                }
                if let Some(plan) = patch.plan {
                    current.plan = plan;
                }
                let events = events.unwrap_or(serde_json::to_string(&current.events)?);
                tx.prepare_cached(
                    "UPDATE webhook_subscriptions SET url = ?3, events = ?4, plan = ?5, updated_at = ?6
                     WHERE tenant = ?1 AND id = ?2",
                )?
                .execute(params![tenant, id, current.url, events, current.plan, now_ms])?;
                read_subscription(tx, &tenant, &id, now_ms)
            })
            .await
    }

    /// Deletes a subscription and its deliveries (sent or not); `false` when the tenant has
    /// no such subscription.
    pub async fn delete_webhook(&self, tenant: &str, id: &str) -> Result<bool> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.writer
            .write(move |tx| {
                let deleted = tx
                    .prepare_cached(
                        "DELETE FROM webhook_subscriptions WHERE tenant = ?1 AND id = ?2",
                    )?
                    .execute(params![tenant, id])?;
                tx.prepare_cached(
                    "DELETE FROM webhook_deliveries WHERE tenant = ?1 AND subscription = ?2",
                )?
                .execute(params![tenant, id])?;
                Ok(deleted > 0)
            })
            .await
    }

    /// Replaces a subscription's secret with `secret`; the one it replaces still signs
    /// until `previous_until_ms` (receivers move to the new one meanwhile). None when the
    /// tenant has no such subscription.
    pub async fn rotate_webhook_secret(
        &self,
        tenant: &str,
        id: &str,
        secret: &str,
        key: &SecretsKey,
        previous_until_ms: i64,
        now_ms: i64,
    ) -> Result<Option<WebhookSubscription>> {
        let (nonce, sealed) = key.seal(tenant, &sealed_name(id), secret.as_bytes())?;
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.writer
            .write(move |tx| {
                let rotated = tx
                    .prepare_cached(
                        "UPDATE webhook_subscriptions
                         SET previous_nonce = secret_nonce, previous = secret, previous_until = ?3,
                             secret_nonce = ?4, secret = ?5, updated_at = ?6
                         WHERE tenant = ?1 AND id = ?2",
                    )?
                    .execute(params![
                        tenant,
                        id,
                        previous_until_ms,
                        nonce,
                        sealed,
                        now_ms
                    ])?;
                if rotated == 0 {
                    return Ok(None);
                }
                read_subscription(tx, &tenant, &id, now_ms)
            })
            .await
    }

    /// A subscription's deliveries, newest first, a page at a time after the delivery
    /// `after`; none when the tenant has no such subscription.
    pub fn webhook_deliveries(
        &self,
        tenant: &str,
        subscription: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Option<Vec<DeliveryRecord>>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|conn| {
            if read_subscription(conn, tenant, subscription, 0)?.is_none() {
                return Ok(None);
            }
            // Delivery ids are UUIDv7s: their order is the order they were made in.
            let rows = conn.query(
                &format!(
                    "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
                     WHERE tenant = ?1 AND subscription = ?2 AND id < ?3
                     ORDER BY id DESC LIMIT ?4"
                ),
                params![tenant, subscription, after.unwrap_or("~"), limit],
            )?;
            rows.iter()
                .map(delivery_from_row)
                .collect::<Result<_>>()
                .map(Some)
        })
    }

    /// One delivery of a subscription of the tenant's.
    pub fn webhook_delivery(
        &self,
        tenant: &str,
        subscription: &str,
        id: &str,
    ) -> Result<Option<DeliveryRecord>> {
        self.read(|conn| read_delivery(conn, tenant, subscription, id))
    }

    /// Sends a delivery again, now, with a new retry window, whatever became of it; none
    /// when the tenant's subscription has no such delivery.
    pub async fn redeliver(
        &self,
        tenant: &str,
        subscription: &str,
        id: &str,
        now_ms: i64,
    ) -> Result<Option<DeliveryRecord>> {
        let (tenant, subscription, id) =
            (tenant.to_owned(), subscription.to_owned(), id.to_owned());
        self.writer
            .write(move |tx| {
                tx.prepare_cached(&format!(
                    "UPDATE webhook_deliveries SET {REQUEUE}
                     WHERE tenant = ?1 AND subscription = ?2 AND id = ?3"
                ))?
                .execute(params![tenant, subscription, id, now_ms])?;
                read_delivery(tx, &tenant, &subscription, &id)
            })
            .await
    }

    /// Sends again every failed delivery of the subscription made at or after `since_ms`;
    /// the number queued, or none when the tenant has no such subscription.
    pub async fn redeliver_failed(
        &self,
        tenant: &str,
        subscription: &str,
        since_ms: i64,
        now_ms: i64,
    ) -> Result<Option<u64>> {
        let (tenant, subscription) = (tenant.to_owned(), subscription.to_owned());
        self.writer
            .write(move |tx| {
                if read_subscription(tx, &tenant, &subscription, now_ms)?.is_none() {
                    return Ok(None);
                }
                let queued = tx
                    .prepare_cached(&format!(
                        "UPDATE webhook_deliveries SET {REQUEUE}
                         WHERE tenant = ?1 AND subscription = ?2 AND status = 'failed'
                           AND created_at >= ?3"
                    ))?
                    .execute(params![tenant, subscription, since_ms, now_ms])?;
                Ok(Some(queued))
            })
            .await
    }

    // The projection's side.

    /// Whether any tenant has a subscription: without one, the delivery loop reads nothing.
    pub fn any_webhooks(&self) -> Result<bool> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached("SELECT 1 FROM webhook_subscriptions LIMIT 1")?
                .query_row(params![], |_| Ok(()))
                .optional()?
                .is_some())
        })
    }

    /// Runs of tenants with a subscription that committed steps stamped in `(from_ms,
    /// to_ms]` not projected yet, with the latest stamp seen: through the `steps_at` index,
    /// at most `limit` steps looked at.
    pub fn webhook_unprojected(
        &self,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, i64)>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|conn| {
            let rows = conn.query(
                "SELECT s.run_id, s.at FROM steps s
                 JOIN runs r ON r.id = s.run_id
                 LEFT JOIN webhook_runs w ON w.run_id = s.run_id
                 WHERE s.at > ?1 AND s.at <= ?2
                   AND r.tenant IN (SELECT tenant FROM webhook_subscriptions)
                   AND (w.next_seq IS NULL OR s.seq >= w.next_seq)
                 ORDER BY s.at LIMIT ?3",
                params![from_ms, to_ms, limit],
            )?;
            rows.iter()
                .map(|r| Ok((r.get::<String>(0)?, r.get::<i64>(1)?)))
                .collect()
        })
    }

    /// Where the projection's scan of the journal stands (ms; 0 at first).
    pub fn webhook_scan_cursor(&self) -> Result<i64> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached("SELECT at FROM webhook_cursor WHERE id = 1")?
                .query_row(params![], |r| r.get::<i64>(0))
                .optional()?
                .unwrap_or(0))
        })
    }

    /// Moves the scan's cursor on to `at_ms` (never back: nodes scanning at once).
    pub async fn set_webhook_scan_cursor(&self, at_ms: i64) -> Result<()> {
        self.writer
            .write(move |tx| {
                tx.prepare_cached(
                    "INSERT INTO webhook_cursor (id, at) VALUES (1, ?1)
                     ON CONFLICT (id) DO UPDATE SET at = ?1 WHERE webhook_cursor.at < ?1",
                )?
                .execute(params![at_ms])?;
                Ok(())
            })
            .await
    }

    /// What run `run_id` committed since its projection's cursor, at most `limit` steps;
    /// none for a run that is gone.
    pub fn webhook_run_news(&self, run_id: &str, limit: usize) -> Result<Option<RunNews>> {
        let found = self.read(|conn| {
            conn.prepare_cached(
                "SELECT r.tenant, r.interaction, r.status, r.step_seq, w.next_seq
                 FROM runs r LEFT JOIN webhook_runs w ON w.run_id = r.id WHERE r.id = ?1",
            )?
            .query_row(params![run_id], |r| {
                Ok((
                    r.get::<String>(0)?,
                    r.get::<Option<String>>(1)?,
                    r.get::<String>(2)?,
                    r.get::<u64>(3)?,
                    // A run never projected starts from its first step.
                    r.get::<Option<u64>>(4)?.unwrap_or(0),
                ))
            })
            .optional()
        })?;
        let Some((tenant, interaction, status, step_seq, next_seq)) = found else {
            return Ok(None);
        };
        let steps = self.journal_page(&tenant, run_id, next_seq, limit)?;
        Ok(Some(RunNews {
            tenant,
            run_id: run_id.to_owned(),
            interaction,
            status: RunStatus::parse(&status)?,
            step_seq,
            next_seq,
            steps,
        }))
    }

    /// A tenant's subscriptions, as the projection matches events to them.
    pub fn webhook_targets(&self, tenant: &str) -> Result<Vec<WebhookTarget>> {
        self.read(|conn| {
            let rows = conn.query(
                "SELECT id, events, plan, created_at FROM webhook_subscriptions WHERE tenant = ?1",
                params![tenant],
            )?;
            rows.iter()
                .map(|r| {
                    let events: String = r.get(1)?;
                    Ok(WebhookTarget {
                        id: r.get(0)?,
                        events: serde_json::from_str(&events)?,
                        plan: r.get(2)?,
                        created_at_ms: r.get(3)?,
                    })
                })
                .collect()
        })
    }

    /// Writes a run's deliveries and moves its cursor on to `next_seq`, in one
    /// transaction: a crash leaves both or neither. A delivery already written (another
    /// node projected the run too) is left as it is; the cursor never moves back.
    pub async fn project_webhooks(
        &self,
        tenant: &str,
        run_id: &str,
        next_seq: u64,
        deliveries: Vec<NewDelivery>,
        now_ms: i64,
    ) -> Result<()> {
        let (tenant, run_id) = (tenant.to_owned(), run_id.to_owned());
        self.writer
            .write(move |tx| {
                for d in &deliveries {
                    tx.prepare_cached(
                        "INSERT INTO webhook_deliveries
                         (id, tenant, subscription, run_id, position, event_type, body, status,
                          attempts, first_at, next_at, created_at, updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', 0, ?8, ?8, ?8, ?8)
                         ON CONFLICT (subscription, run_id, position) DO NOTHING",
                    )?
                    .execute(params![
                        d.id,
                        tenant,
                        d.subscription,
                        run_id,
                        d.position,
                        d.event_type,
                        d.body,
                        now_ms
                    ])?;
                }
                tx.prepare_cached(
                    "INSERT INTO webhook_runs (run_id, next_seq) VALUES (?1, ?2)
                     ON CONFLICT (run_id) DO UPDATE SET next_seq = ?2
                     WHERE webhook_runs.next_seq < ?2",
                )?
                .execute(params![run_id, next_seq])?;
                Ok(())
            })
            .await
    }

    // The sender's side.

    /// Claims up to `limit` deliveries due now for `node` until `now_ms + lease_ms`: each
    /// the earliest pending one of its run and subscription, none of a tenant that has
    /// `per_tenant` claimed already. The secrets to sign with are opened with `key`.
    pub async fn claim_webhook_deliveries(
        &self,
        node: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
        per_tenant: usize,
        key: &SecretsKey,
    ) -> Result<Vec<ClaimedDelivery>> {
        let node = node.to_owned();
        let until = now_ms + lease_ms;
        let rows = self
            .writer
            .write(move |tx| claim_due(tx, &node, now_ms, until, limit, per_tenant))
            .await?;
        rows.into_iter()
            .map(|(mut claimed, sealed)| {
                let name = sealed_name(&claimed.subscription);
                for (nonce, ciphertext) in sealed {
                    claimed
                        .secrets
                        .push(key.open(&claimed.tenant, &name, &nonce, &ciphertext)?);
                }
                Ok(claimed)
            })
            .collect()
    }

    /// Whether some delivery may be due at `now_ms` (pending and past its time): one read of
    /// the `webhook_deliveries_due` index, so an idle loop writes nothing.
    pub fn webhook_deliveries_due(&self, now_ms: i64) -> Result<bool> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT 1 FROM webhook_deliveries
                     WHERE status = 'pending' AND next_at <= ?1 LIMIT 1",
                )?
                .query_row(params![now_ms], |_| Ok(()))
                .optional()?
                .is_some())
        })
    }

    /// Writes an attempt's result under the claim it was made with; `false` (nothing
    /// written) when the claim was lost meanwhile (another node took the delivery over, or
    /// it was redelivered or deleted).
    pub async fn finish_webhook_attempt(
        &self,
        id: &str,
        claim_seq: u64,
        result: AttemptResult,
        now_ms: i64,
    ) -> Result<bool> {
        let id = id.to_owned();
        let (status, next_at, delivered_at) = match result.outcome {
            AttemptOutcome::Delivered => (DELIVERY_DELIVERED, None, Some(now_ms)),
            AttemptOutcome::Retry { next_at_ms } => (DELIVERY_PENDING, Some(next_at_ms), None),
            AttemptOutcome::Failed => (DELIVERY_FAILED, None, None),
        };
        self.writer
            .write(move |tx| {
                let written = tx
                    .prepare_cached(
                        "UPDATE webhook_deliveries
                         SET status = ?3, attempts = attempts + 1, next_at = ?4, delivered_at = ?5,
                             last_status = ?6, last_error = ?7, updated_at = ?8,
                             claim_owner = NULL, claim_until = NULL
                         WHERE id = ?1 AND claim_seq = ?2 AND status = 'pending'",
                    )?
                    .execute(params![
                        id,
                        claim_seq,
                        status,
                        next_at,
                        delivered_at,
                        result.status,
                        result.error,
                        now_ms
                    ])?;
                Ok(written == 1)
            })
            .await
    }
}

/// Sealed secrets: (nonce, ciphertext) of the current one, then the previous one's while
/// its window lasts.
type Sealed = Vec<(Vec<u8>, Vec<u8>)>;

/// The claim itself, inside the writer: the candidates (due, not claimed or claimed past
/// their time, and the earliest pending of their run and subscription), taken in due order
/// within each tenant's allowance of claims, each by an update that re-checks it is free.
/// A tenant's deliveries in flight across the nodes, or none when another node is claiming
/// for the tenant now. On PostgreSQL the tenant's lock (held to the commit, as
/// `Store::claim_due_runs` holds it for runs) keeps two nodes from both counting the same
/// free place and taking it; it is tried, not waited for, so two nodes' claims meeting
/// tenants in different orders cannot deadlock.
fn tenant_in_flight(tx: &Conn<'_>, tenant: &str, now_ms: i64) -> Result<Option<usize>> {
    if tx.is_postgres() {
        let locked: bool = tx
            .prepare_cached("SELECT pg_try_advisory_xact_lock(7270618, hashtext(?1))")?
            .query_row(params![tenant], |r| r.get(0))?;
        if !locked {
            return Ok(None);
        }
    }
    let count: i64 = tx
        .prepare_cached(
            "SELECT COUNT(*) FROM webhook_deliveries
             WHERE tenant = ?1 AND claim_owner IS NOT NULL AND claim_until >= ?2
               AND status = 'pending'",
        )?
        .query_row(params![tenant, now_ms], |r| r.get(0))?;
    Ok(Some(count as usize))
}

fn claim_due(
    tx: &Conn<'_>,
    node: &str,
    now_ms: i64,
    until_ms: i64,
    limit: usize,
    per_tenant: usize,
) -> Result<Vec<(ClaimedDelivery, Sealed)>> {
    // Each tenant's deliveries in flight across the nodes, counted when the tenant is first
    // met; none when another node is claiming for it this moment (skipped this round).
    let mut in_flight: std::collections::HashMap<String, Option<usize>> = Default::default();
    let scan = i64::try_from(limit.saturating_mul(4)).unwrap_or(i64::MAX);
    let candidates = tx.query(
        "SELECT d.id, d.tenant FROM webhook_deliveries d
         WHERE d.status = 'pending' AND d.next_at <= ?1
           AND (d.claim_owner IS NULL OR d.claim_until < ?1)
           AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e
                           WHERE e.status = 'pending' AND e.tenant = d.tenant
                             AND e.subscription = d.subscription AND e.run_id = d.run_id
                             AND e.position < d.position)
         ORDER BY d.next_at LIMIT ?2",
        params![now_ms, scan],
    )?;
    let mut claimed = Vec::new();
    for row in &candidates {
        if claimed.len() >= limit {
            break;
        }
        let (id, tenant): (String, String) = (row.get(0)?, row.get(1)?);
        let taken = match in_flight.entry(tenant) {
            std::collections::hash_map::Entry::Occupied(known) => known.into_mut(),
            std::collections::hash_map::Entry::Vacant(new) => {
                let count = tenant_in_flight(tx, new.key(), now_ms)?;
                new.insert(count)
            }
        };
        let Some(taken) = taken.as_mut() else {
            continue;
        };
        if *taken >= per_tenant {
            continue;
        }
        let rows = tx.query(
            "UPDATE webhook_deliveries
             SET claim_owner = ?2, claim_until = ?3, claim_seq = claim_seq + 1,
                 first_at = CASE WHEN attempts = 0 THEN ?4 ELSE first_at END
             WHERE id = ?1 AND status = 'pending' AND (claim_owner IS NULL OR claim_until < ?4)
             RETURNING tenant, subscription, body, attempts, first_at, claim_seq",
            params![id, node, until_ms, now_ms],
        )?;
        let Some(row) = rows.first() else {
            continue; // another node took it first
        };
        *taken += 1;
        let (tenant, subscription): (String, String) = (row.get(0)?, row.get(1)?);
        let target = tx
            .prepare_cached(
                "SELECT url, secret_nonce, secret, previous_nonce, previous, previous_until
                 FROM webhook_subscriptions WHERE tenant = ?1 AND id = ?2",
            )?
            .query_row(params![tenant, subscription], |r| {
                Ok((
                    r.get::<String>(0)?,
                    (r.get::<Vec<u8>>(1)?, r.get::<Vec<u8>>(2)?),
                    r.get::<Option<Vec<u8>>>(3)?,
                    r.get::<Option<Vec<u8>>>(4)?,
                    r.get::<Option<i64>>(5)?,
                ))
            })
            .optional()?;
        let Some((url, current, previous_nonce, previous, previous_until)) = target else {
            continue; // deleted meanwhile: its deliveries go with it
        };
        let mut sealed = vec![current];
        if let (Some(nonce), Some(ciphertext), Some(until)) =
            (previous_nonce, previous, previous_until)
            && until > now_ms
        {
            sealed.push((nonce, ciphertext));
        }
        claimed.push((
            ClaimedDelivery {
                id,
                tenant,
                subscription,
                url,
                body: row.get(2)?,
                attempts: row.get(3)?,
                first_at_ms: row.get(4)?,
                claim_seq: row.get(5)?,
                secrets: Vec::new(),
            },
            sealed,
        ));
    }
    Ok(claimed)
}

/// One delivery of a tenant's subscription.
fn read_delivery(
    conn: &Conn<'_>,
    tenant: &str,
    subscription: &str,
    id: &str,
) -> Result<Option<DeliveryRecord>> {
    conn.prepare_cached(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
         WHERE tenant = ?1 AND subscription = ?2 AND id = ?3"
    ))?
    .query_row(params![tenant, subscription, id], |r| {
        Ok(delivery_from_row(r))
    })
    .optional()?
    .transpose()
}
