//! Events kept until something takes them (migration 20): nothing a platform sends is
//! dropped because it came early.
//!
//! A **named event** (a disposition, a survey reply) is stored per interaction when it
//! arrives ([`Store::deliver_event`]); in the same write it wakes every run of the
//! interaction already waiting for it (which take it: `taken_by`), so no crash can fall
//! between "stored" and "woken". An event no run was waiting for stays untaken, and the
//! first run whose step commit parks it on a wait for that name takes it in that very
//! commit (`journal.rs` calls [`take_on_park`]): the oldest untaken one by arrival, one
//! event per wait, journaled as the wake is. Only a commit that parks a run on a wait pays
//! that lookup (one range of the partial index `named_events_untaken`).
//!
//! An **interaction event that came early** (an `ended`, a party's join or disconnect for an
//! interaction not started yet) is held ([`Store::hold_event`]) as its JSON body, once per
//! body, and applied by the engine in arrival order when the interaction starts.
//!
//! Both are kept until they expire ([`EventLimits::keep_ms`] from arrival, taken or not) and
//! pruned by the scheduler's pass ([`Store::prune_events`], [`EVENT_PRUNE_BATCH`] at a time).
//! A tenant may keep at most [`EventLimits::per_tenant`] untaken named events and as many
//! held events, and an interaction at most [`EventLimits::per_interaction`] of each; past a
//! bound the event is refused ([`StoreError::EventsFull`]) and nothing is written, so the
//! sender sees it and may send it again.
//!
//! On PostgreSQL several nodes write at once: each of these writes first takes an advisory
//! lock on a hash of tenant and interaction for its transaction, in a statement of its own
//! (under READ COMMITTED each later statement then sees what the lock's previous holder
//! committed). So a delivery and a run parking on the same interaction are ordered: either
//! the delivery sees the run waiting, or the parking commit sees the event stored.

use coda_types::Values;

use crate::db::{Conn, OptionalExtension, params};
use crate::interactions::read_interaction;
use crate::runs::RunRecord;
use crate::waits::{Arrival, Woken, waiting_for, wake_run};
use crate::{Result, Store, StoreError};

/// How many expired events one pass of pruning deletes at most, of each kind (one write).
pub const EVENT_PRUNE_BATCH: u32 = 500;

/// How long events are kept and how many: the operator's `scheduler.event_keep_ms`,
/// `scheduler.max_events_per_interaction` and `scheduler.max_events_per_tenant`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventLimits {
    /// From arrival until the event is pruned (ms), taken or not.
    pub keep_ms: i64,
    /// Untaken named events (and, apart, held events) one interaction may keep.
    pub per_interaction: u64,
    /// Untaken named events (and, apart, held events) one tenant may keep.
    pub per_tenant: u64,
}

impl Default for EventLimits {
    fn default() -> Self {
        EventLimits {
            keep_ms: 7 * 24 * 3_600_000,
            per_interaction: 100,
            per_tenant: 100_000,
        }
    }
}

/// The bound an event would pass: nothing was stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{scope} keeps {limit} {what} already: the event was not stored; send it again later")]
pub struct EventsFull {
    /// `interaction `i-1`` or `the tenant`.
    pub scope: String,
    pub what: &'static str,
    pub limit: u64,
}

/// A named event to deliver.
#[derive(Debug, Clone)]
pub struct NamedEvent {
    pub tenant: String,
    pub interaction: String,
    pub name: String,
    /// The data source `Event` of the run that takes it.
    pub payload: coda_types::Value,
    /// Further data sources it sets on that run.
    pub data: Values,
}

/// What a delivery did: the runs it woke (which took it), or that it was kept for a later
/// wait. Its place in the interaction's events is `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub seq: u64,
    pub woken: Vec<String>,
    /// Kept untaken until [`Delivery::expires_at_ms`]: no run was waiting for it.
    pub kept: bool,
    pub expires_at_ms: i64,
}

/// A delivery inside a write, before its notices are sent.
pub(crate) struct Delivered {
    seq: u64,
    woken: Vec<Woken>,
    expires_at_ms: i64,
}

impl Delivered {
    pub(crate) fn announce(self, store: &Store) -> Delivery {
        let kept = self.woken.is_empty();
        Delivery {
            seq: self.seq,
            woken: store.announce(self.woken),
            kept,
            expires_at_ms: self.expires_at_ms,
        }
    }
}

/// A stored named event, as [`Store::named_events`] lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub seq: u64,
    pub name: String,
    pub payload: coda_types::Value,
    pub received_at_ms: i64,
    pub expires_at_ms: i64,
    /// The runs it woke, none while untaken.
    pub taken_by: Vec<String>,
    pub taken_at_ms: Option<i64>,
}

/// What holding an early interaction event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// Held at `seq` until the interaction starts, or until `expires_at_ms`.
    Held { seq: u64, expires_at_ms: i64 },
    /// The same body was held already: nothing more is kept.
    Duplicate { seq: u64, expires_at_ms: i64 },
    /// The interaction has started meanwhile: apply the event instead.
    Started,
}

/// An interaction event held until its interaction starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldEvent {
    pub seq: u64,
    /// The event's JSON, as it was received.
    pub body: String,
    pub received_at_ms: i64,
}

impl Store {
    /// Stores a named event and, in the same write, wakes the interaction's runs waiting for
    /// it (each journals a step with the event's payload in `Event` and its data sources);
    /// kept untaken for a later wait when none waits. Refused whole
    /// ([`StoreError::EventsFull`]) when it would be kept past a bound.
    pub async fn deliver_event(
        &self,
        event: NamedEvent,
        limits: EventLimits,
        now_ms: i64,
    ) -> Result<Delivery> {
        let mut tries = 0;
        let delivered = loop {
            let event = event.clone();
            match self
                .writer
                .write(move |tx| deliver_in(tx, &event, &limits, now_ms))
                .await
            {
                Err(e) if e.is_deadlock() && tries + 1 < crate::DEADLOCK_TRIES => tries += 1,
                done => break done?,
            }
        };
        Ok(delivered.announce(self))
    }

    /// An interaction's named events, oldest first (another tenant's interaction has none).
    pub fn named_events(&self, tenant: &str, interaction: &str) -> Result<Vec<StoredEvent>> {
        self.read(|conn| {
            let rows = conn.query(
                "SELECT seq, name, payload, received_at, expires_at, taken_by, taken_at
                 FROM named_events WHERE tenant = ?1 AND interaction = ?2 ORDER BY seq",
                params![tenant, interaction],
            )?;
            rows.iter()
                .map(|r| {
                    let payload: String = r.get(2)?;
                    let taken_by: Option<String> = r.get(5)?;
                    Ok(StoredEvent {
                        seq: r.get(0)?,
                        name: r.get(1)?,
                        payload: serde_json::from_str(&payload)?,
                        received_at_ms: r.get(3)?,
                        expires_at_ms: r.get(4)?,
                        taken_by: taken_by
                            .map(|t| serde_json::from_str(&t))
                            .transpose()?
                            .unwrap_or_default(),
                        taken_at_ms: r.get(6)?,
                    })
                })
                .collect()
        })
    }

    /// Holds an interaction event that came before its interaction started: kept once per
    /// body (`digest`, a redelivery is a [`Hold::Duplicate`]), in arrival order, until the
    /// start applies it or it expires. [`Hold::Started`] when the interaction exists by the
    /// time of the write (it started meanwhile): nothing is held, the caller applies it.
    pub async fn hold_event(
        &self,
        tenant: &str,
        interaction: &str,
        body: String,
        limits: EventLimits,
        now_ms: i64,
    ) -> Result<Hold> {
        let mut tries = 0;
        loop {
            match self
                .hold_once(tenant, interaction, body.clone(), limits, now_ms)
                .await
            {
                Err(e) if e.is_deadlock() && tries + 1 < crate::DEADLOCK_TRIES => tries += 1,
                done => return done,
            }
        }
    }

    async fn hold_once(
        &self,
        tenant: &str,
        interaction: &str,
        body: String,
        limits: EventLimits,
        now_ms: i64,
    ) -> Result<Hold> {
        let (tenant, interaction) = (tenant.to_owned(), interaction.to_owned());
        self.writer
            .write(move |tx| {
                lock_interaction(tx, &tenant, &interaction)?;
                if read_interaction(tx, &tenant, &interaction)?.is_some() {
                    return Ok(Hold::Started);
                }
                let digest = digest(&body);
                let found: Option<(u64, i64)> = tx
                    .prepare_cached(
                        "SELECT seq, expires_at FROM held_events
                         WHERE tenant = ?1 AND interaction = ?2 AND digest = ?3",
                    )?
                    .query_row(params![tenant, interaction, digest], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()?;
                if let Some((seq, expires_at_ms)) = found {
                    return Ok(Hold::Duplicate { seq, expires_at_ms });
                }
                check_room(tx, Kept::Held, &tenant, &interaction, &limits, now_ms)?;
                let seq: u64 = tx
                    .prepare_cached(
                        "SELECT COALESCE(MAX(seq), 0) + 1 FROM held_events
                         WHERE tenant = ?1 AND interaction = ?2",
                    )?
                    .query_row(params![tenant, interaction], |r| r.get(0))?;
                let expires_at_ms = now_ms.saturating_add(limits.keep_ms);
                tx.prepare_cached(
                    "INSERT INTO held_events (tenant, interaction, seq, digest, body, received_at, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![tenant, interaction, seq, digest, body, now_ms, expires_at_ms])?;
                add_counts(tx, &tenant, 0, 1)?;
                Ok(Hold::Held { seq, expires_at_ms })
            })
            .await
    }

    /// The events held for an interaction of this tenant, in arrival order.
    pub fn held_events(&self, tenant: &str, interaction: &str) -> Result<Vec<HeldEvent>> {
        self.read(|conn| {
            conn.query(
                "SELECT seq, body, received_at FROM held_events
                 WHERE tenant = ?1 AND interaction = ?2 ORDER BY seq",
                params![tenant, interaction],
            )?
            .iter()
            .map(|r| {
                Ok(HeldEvent {
                    seq: r.get(0)?,
                    body: r.get(1)?,
                    received_at_ms: r.get(2)?,
                })
            })
            .collect()
        })
    }

    /// Drops a held event the engine could not apply (its interaction refused it): the
    /// applied ones are released in their own write ([`crate::InteractionChange::release_held`]).
    pub async fn release_held(&self, tenant: &str, interaction: &str, seq: u64) -> Result<()> {
        let (tenant, interaction) = (tenant.to_owned(), interaction.to_owned());
        self.writer
            .write(move |tx| release_held_in(tx, &tenant, &interaction, seq).map(drop))
            .await
    }

    /// Up to `max` interactions (tenant, id) that have started and still hold early events:
    /// their start was applied but the held events were not, or not all (the host stopped
    /// in between, the tenant's queue was full). The scheduler's pass applies them.
    pub fn started_with_held(&self, max: u32) -> Result<Vec<(String, String)>> {
        self.read(|conn| {
            conn.query(
                "SELECT DISTINCT h.tenant, h.interaction FROM held_events h
                 JOIN interactions i ON i.tenant = h.tenant AND i.id = h.interaction
                 LIMIT ?1",
                params![max],
            )?
            .iter()
            .map(|r| Ok((r.get(0)?, r.get(1)?)))
            .collect()
        })
    }

    /// Deletes up to `max` expired named events and as many expired held events, across
    /// tenants; returns how many.
    pub async fn prune_events(&self, now_ms: i64, max: u32) -> Result<u64> {
        self.writer
            .write(move |tx| prune(tx, None, now_ms, max))
            .await
    }

    /// A tenant's untaken named events and held events, as counted for its bound (expired
    /// ones not yet pruned included).
    pub fn event_counts(&self, tenant: &str) -> Result<(u64, u64)> {
        self.read(|conn| counts(conn, tenant))
    }
}

/// Which early events a bound counts: named events no wait took yet, or interaction events
/// held until their interaction starts.
#[derive(Clone, Copy)]
enum Kept {
    Untaken,
    Held,
}

impl Kept {
    /// The interaction's live ones (expired ones, not yet pruned, take no room).
    fn count_here(self) -> &'static str {
        match self {
            Kept::Untaken => {
                "SELECT COUNT(*) FROM named_events
                 WHERE tenant = ?1 AND interaction = ?2 AND taken_at IS NULL AND expires_at > ?3"
            }
            Kept::Held => {
                "SELECT COUNT(*) FROM held_events
                 WHERE tenant = ?1 AND interaction = ?2 AND expires_at > ?3"
            }
        }
    }

    fn what(self) -> &'static str {
        match self {
            Kept::Untaken => "untaken events",
            Kept::Held => "held events",
        }
    }

    /// Its part of the tenant's counts (untaken, held).
    fn of(self, (untaken, held): (u64, u64)) -> u64 {
        match self {
            Kept::Untaken => untaken,
            Kept::Held => held,
        }
    }
}

/// Whether one more early event of this kind fits the interaction's and the tenant's
/// bounds; the tenant's expired ones are pruned first when its count is at the bound.
fn check_room(
    tx: &Conn<'_>,
    kept: Kept,
    tenant: &str,
    interaction: &str,
    limits: &EventLimits,
    now_ms: i64,
) -> Result<()> {
    let here: u64 = tx
        .prepare_cached(kept.count_here())?
        .query_row(params![tenant, interaction, now_ms], |r| r.get(0))?;
    if here >= limits.per_interaction {
        return Err(full_interaction(interaction, kept.what(), limits));
    }
    if kept.of(counts(tx, tenant)?) >= limits.per_tenant {
        prune_tenant(tx, tenant, now_ms)?;
        if kept.of(counts(tx, tenant)?) >= limits.per_tenant {
            return Err(full_tenant(kept.what(), limits));
        }
    }
    Ok(())
}

/// [`Store::deliver_event`] inside a write (also the disposition's, `audit.rs`).
pub(crate) fn deliver_in(
    tx: &Conn<'_>,
    event: &NamedEvent,
    limits: &EventLimits,
    now_ms: i64,
) -> Result<Delivered> {
    let (tenant, interaction) = (&event.tenant, &event.interaction);
    lock_interaction(tx, tenant, interaction)?;
    let waiting = waiting_for(tx, tenant, interaction, &event.name)?;
    let seq: u64 = tx
        .prepare_cached(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM named_events
             WHERE tenant = ?1 AND interaction = ?2",
        )?
        .query_row(params![tenant, interaction], |r| r.get(0))?;
    let arrival = Arrival {
        event: &event.name,
        payload: &event.payload,
        extra: &event.data,
    };
    let mut woken = Vec::with_capacity(waiting.len());
    for run in &waiting {
        woken.extend(wake_run(tx, run, arrival, now_ms)?);
    }
    // Kept untaken (no run took it, whether none waited or their wakes found them moved on):
    // within the bounds, or the whole write is refused, the wakes with it.
    if woken.is_empty() {
        check_room(tx, Kept::Untaken, tenant, interaction, limits, now_ms)?;
    }
    let taken_by = (!woken.is_empty())
        .then(|| serde_json::to_string(&woken.iter().map(|(id, ..)| id).collect::<Vec<_>>()))
        .transpose()?;
    let expires_at_ms = now_ms.saturating_add(limits.keep_ms);
    tx.prepare_cached(
        "INSERT INTO named_events (tenant, interaction, seq, name, payload, data, received_at,
            expires_at, taken_by, taken_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        tenant,
        interaction,
        seq,
        event.name,
        serde_json::to_string(&event.payload)?,
        serde_json::to_string(&event.data)?,
        now_ms,
        expires_at_ms,
        taken_by,
        (!woken.is_empty()).then_some(now_ms)
    ])?;
    if woken.is_empty() {
        add_counts(tx, tenant, 1, 0)?;
    }
    Ok(Delivered {
        seq,
        woken,
        expires_at_ms,
    })
}

/// Inside the commit that parked `run` (as committed) on a wait: takes the interaction's
/// oldest untaken, unexpired event of the wait's name, if there is one, and wakes the run
/// with it (journaled as the step after the commit's). None when nothing was there to take.
pub(crate) fn take_on_park(tx: &Conn<'_>, run: &RunRecord, now_ms: i64) -> Result<Option<Woken>> {
    let (Some(interaction), Some(wait)) = (&run.interaction, &run.wait) else {
        return Ok(None);
    };
    lock_interaction(tx, &run.tenant, interaction)?;
    let found: Option<(u64, String, String)> = tx
        .prepare_cached(
            "SELECT seq, payload, data FROM named_events
             WHERE tenant = ?1 AND interaction = ?2 AND name = ?3 AND taken_at IS NULL
                 AND expires_at > ?4
             ORDER BY seq LIMIT 1",
        )?
        .query_row(params![run.tenant, interaction, wait.event, now_ms], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let Some((seq, payload, data)) = found else {
        return Ok(None);
    };
    let payload: coda_types::Value = serde_json::from_str(&payload)?;
    let extra: Values = serde_json::from_str(&data)?;
    let arrival = Arrival {
        event: &wait.event,
        payload: &payload,
        extra: &extra,
    };
    let Some(woken) = wake_run(tx, run, arrival, now_ms)? else {
        return Ok(None);
    };
    tx.prepare_cached(
        "UPDATE named_events SET taken_by = ?1, taken_at = ?2
         WHERE tenant = ?3 AND interaction = ?4 AND seq = ?5",
    )?
    .execute(params![
        serde_json::to_string(&[&run.id])?,
        now_ms,
        run.tenant,
        interaction,
        seq
    ])?;
    add_counts(tx, &run.tenant, -1, 0)?;
    Ok(Some(woken))
}

/// Deletes a held event (applied, or refused by its interaction), uncounting it; whether it
/// was there to delete.
pub(crate) fn release_held_in(
    tx: &Conn<'_>,
    tenant: &str,
    interaction: &str,
    seq: u64,
) -> Result<bool> {
    let deleted = tx
        .prepare_cached(
            "DELETE FROM held_events WHERE tenant = ?1 AND interaction = ?2 AND seq = ?3",
        )?
        .execute(params![tenant, interaction, seq])?;
    if deleted > 0 {
        add_counts(tx, tenant, 0, -1)?;
    }
    Ok(deleted > 0)
}

/// The interaction's lock for the rest of the transaction (see the module's note and
/// `Conn::lock_name`).
pub(crate) fn lock_interaction(tx: &Conn<'_>, tenant: &str, interaction: &str) -> Result<()> {
    tx.lock_name("events", tenant, interaction)
}

fn digest(body: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(body.as_bytes()))
}

fn full_interaction(interaction: &str, what: &'static str, limits: &EventLimits) -> StoreError {
    StoreError::EventsFull(EventsFull {
        scope: format!("interaction `{interaction}`"),
        what,
        limit: limits.per_interaction,
    })
}

fn full_tenant(what: &'static str, limits: &EventLimits) -> StoreError {
    StoreError::EventsFull(EventsFull {
        scope: "the tenant".into(),
        what,
        limit: limits.per_tenant,
    })
}

/// The tenant's (untaken named, held) events as counted.
fn counts(conn: &Conn<'_>, tenant: &str) -> Result<(u64, u64)> {
    Ok(conn
        .prepare_cached("SELECT untaken, held FROM event_counts WHERE tenant = ?1")?
        .query_row(params![tenant], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .unwrap_or((0, 0)))
}

fn add_counts(tx: &Conn<'_>, tenant: &str, untaken: i64, held: i64) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO event_counts (tenant, untaken, held) VALUES (?1, ?2, ?3)
         ON CONFLICT (tenant) DO UPDATE SET untaken = event_counts.untaken + excluded.untaken,
             held = event_counts.held + excluded.held",
    )?
    .execute(params![tenant, untaken, held])?;
    Ok(())
}

/// Frees a tenant at its bound of what has expired already, before refusing.
fn prune_tenant(tx: &Conn<'_>, tenant: &str, now_ms: i64) -> Result<u64> {
    prune(tx, Some(tenant), now_ms, EVENT_PRUNE_BATCH)
}

/// Deletes up to `max` expired named events and `max` expired held events (of `tenant`
/// only, when given), uncounting the untaken and held ones.
fn prune(tx: &Conn<'_>, tenant: Option<&str>, now_ms: i64, max: u32) -> Result<u64> {
    let mut deleted = 0;
    let named: Vec<(String, String, u64, Option<i64>)> = tx
        .prepare_cached(
            "SELECT tenant, interaction, seq, taken_at FROM named_events
             WHERE expires_at <= ?1 AND (CAST(?2 AS TEXT) IS NULL OR tenant = ?2)
             ORDER BY expires_at LIMIT ?3",
        )?
        .query_map(params![now_ms, tenant, max], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<Result<_>>()?;
    for (tenant, interaction, seq, taken_at) in &named {
        let gone = tx
            .prepare_cached(
                "DELETE FROM named_events WHERE tenant = ?1 AND interaction = ?2 AND seq = ?3",
            )?
            .execute(params![tenant, interaction, seq])?;
        deleted += gone;
        // Uncounted only if this write deleted it (another node's pass may have, first).
        if gone > 0 && taken_at.is_none() {
            add_counts(tx, tenant, -1, 0)?;
        }
    }
    let held: Vec<(String, String, u64)> = tx
        .prepare_cached(
            "SELECT tenant, interaction, seq FROM held_events
             WHERE expires_at <= ?1 AND (CAST(?2 AS TEXT) IS NULL OR tenant = ?2)
             ORDER BY expires_at LIMIT ?3",
        )?
        .query_map(params![now_ms, tenant, max], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<Result<_>>()?;
    for (tenant, interaction, seq) in &held {
        deleted += u64::from(release_held_in(tx, tenant, interaction, *seq)?);
    }
    Ok(deleted)
}
