//! Interaction events and what they start: the post-flow action on the matching
//! disconnect, and the post-interaction process when the interaction ends.
//!
//! A run started by an event is keyed by interaction and trigger (`int-1/ended`,
//! `int-1/post-flow`), a unique insert in the store: the same event delivered twice, even to
//! two nodes at once, starts one run.
//!
//! Platforms deliver at least once and out of order: an event for an interaction that has
//! not started (an `ended` before its `started`) is held by the store (`events.rs`), once
//! per body, and applied after the interaction's start, in arrival order, each in the
//! write that releases it. A start whose held events were not all applied (the host
//! stopped between the writes, the tenant's queue was full) leaves them for the
//! scheduler's pass ([`Engine::tend_events`]), which applies them the same way.

use coda_store::{
    Channel, Delivery, EventsFull, Hold, InteractionChange, InteractionRecord, InteractionStatus,
    NamedEvent, NewRun, Party, PostFlowAction, PostFlowTarget, StartedRun, StoreError,
};
use std::sync::Arc;

use coda_types::{InvokeError, Value, Values};
use serde::{Deserialize, Serialize};

use crate::{Engine, Result, Start};

/// An event about an interaction, as a contact center sends it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum InteractionEvent {
    Started {
        interaction: String,
        channel: Channel,
        /// The live plan; its `post_interaction` plan starts when the interaction ends.
        #[serde(default)]
        plan: Option<String>,
        /// Data sources: CLID, DialedNumber, Language and custom ones.
        #[serde(default)]
        data: serde_json::Map<String, serde_json::Value>,
        /// The skill it was routed by: its post-contact work follows the interaction.
        #[serde(default)]
        skill: Option<String>,
    },
    PartyJoined {
        interaction: String,
        party: Party,
        /// Which agent joined (an agent party): who completes it, whose post-contact work
        /// follows.
        #[serde(default)]
        agent: Option<String>,
    },
    PartyDisconnected {
        interaction: String,
        party: Party,
    },
    Ended {
        interaction: String,
        #[serde(default)]
        outcome: Option<String>,
    },
}

impl InteractionEvent {
    pub fn interaction(&self) -> &str {
        match self {
            InteractionEvent::Started { interaction, .. }
            | InteractionEvent::PartyJoined { interaction, .. }
            | InteractionEvent::PartyDisconnected { interaction, .. }
            | InteractionEvent::Ended { interaction, .. } => interaction,
        }
    }

    /// Checks every id and name the event would store (the interaction's id, its skill, an
    /// agent's id) by its kind's rule: the API and the CLI both come through here.
    pub fn check_names(&self) -> std::result::Result<(), coda_types::names::NameError> {
        use coda_types::names::{NameKind, check_name};
        check_name(NameKind::Interaction, self.interaction())?;
        match self {
            InteractionEvent::Started {
                skill: Some(skill), ..
            } => check_name(NameKind::Skill, skill),
            InteractionEvent::PartyJoined {
                agent: Some(agent), ..
            } => check_name(NameKind::Agent, agent),
            _ => Ok(()),
        }
    }
}

/// What an event applied to its interaction did.
#[derive(Debug, Clone)]
pub struct EventOutcome {
    pub interaction: InteractionRecord,
    /// Runs the event started (or found already started by the same trigger), and for a
    /// start, those its held events started.
    pub runs: Vec<StartedRun>,
    /// For a start: how many events held for the interaction were applied after it.
    pub reconciled: usize,
}

/// An event held until its interaction starts (the API answers 202).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldOutcome {
    pub interaction: String,
    /// Its place among the interaction's held events (arrival order).
    pub seq: u64,
    /// The same event was held already: nothing more was kept.
    pub duplicate: bool,
    /// When it is dropped if the interaction has not started by then (ms).
    pub expires_at_ms: i64,
}

/// What an accepted interaction event did: applied, or held until its interaction starts.
#[derive(Debug, Clone)]
pub enum EventAccepted {
    /// Boxed: an interaction record is large beside a held event's answer.
    Applied(Box<EventOutcome>),
    Held(HeldOutcome),
}

impl EventAccepted {
    /// The outcome of an applied event; none for a held one.
    pub fn applied(self) -> Option<EventOutcome> {
        match self {
            EventAccepted::Applied(outcome) => Some(*outcome),
            EventAccepted::Held(_) => None,
        }
    }

    /// The runs it started: none for a held event.
    pub fn runs(&self) -> &[StartedRun] {
        match self {
            EventAccepted::Applied(outcome) => &outcome.runs,
            EventAccepted::Held(_) => &[],
        }
    }
}

/// How often [`Engine::set_post_flow_with`] evaluates an expression again when the
/// interaction's data sources changed while it was evaluated, before giving up.
pub const EXPRESSION_TRIES: usize = 3;

/// Why a post-flow write did not happen: the event's error, or data sources that changed
/// since the expression read them.
enum Refused {
    Event(EventError),
    Changed,
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("interaction `{0}` was never started")]
    Unknown(String),
    #[error("interaction `{0}` has ended; it takes no more party events")]
    Completed(String),
    #[error("interaction `{0}` was started already as a {1:?} interaction")]
    Conflict(String, Channel),
    #[error("the post-flow action's invocation data: {0}")]
    InvocationData(String),
    /// An id or name in the event breaks the naming rule of its kind (`coda_types::names`).
    #[error(transparent)]
    InvalidName(#[from] coda_types::names::NameError),
    /// The event would start a run and the tenant's queue is full: nothing was applied.
    #[error(transparent)]
    QueueFull(#[from] crate::QueueFull),
    /// The event would be kept (untaken, or held) past a bound of its tenant or
    /// interaction: nothing was stored.
    #[error(transparent)]
    EventsFull(#[from] EventsFull),
}

/// A post-flow action's invocation data: JSON as given, or a CEL expression evaluated over
/// the interaction's data sources when the action is set (so the run sees the values of
/// that moment, as the live flow that set it did).
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InvocationData {
    Json(serde_json::Value),
    Expression(String),
}

/// A post-flow action to set on a live interaction.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SetPostFlow {
    pub target: PostFlowTarget,
    pub action: String,
    pub plan: String,
    pub invocation_data: InvocationData,
}

fn json_values(map: &serde_json::Map<String, serde_json::Value>) -> Values {
    map.iter()
        .map(|(k, v)| (k.clone(), Value::from_json(v)))
        .collect()
}

/// Applies an event to the interaction (none if it does not exist yet).
fn apply(
    current: Option<InteractionRecord>,
    event: &InteractionEvent,
    now_ms: i64,
) -> std::result::Result<InteractionRecord, EventError> {
    let id = event.interaction().to_owned();
    let mut record = match (current, event) {
        (
            None,
            InteractionEvent::Started {
                channel,
                plan,
                data,
                skill,
                ..
            },
        ) => {
            let mut data = json_values(data);
            data.insert("InteractionId".into(), Value::Text(id.clone()));
            InteractionRecord {
                id: id.clone(),
                channel: *channel,
                plan: plan.clone(),
                status: InteractionStatus::Active,
                present: vec![Party::Caller],
                agent_reached: false,
                data,
                post_flow: None,
                post_flow_fired: false,
                follow_up: None,
                updated_at_ms: now_ms,
                skill: skill.clone(),
                agent: None,
                completed_by: None,
                completed_at_ms: None,
                details: Default::default(),
                post_contact: None,
                disposition: None,
            }
        }
        // Started twice: the same interaction, unchanged (a redelivery).
        (Some(existing), InteractionEvent::Started { channel, .. }) => {
            if existing.channel != *channel {
                return Err(EventError::Conflict(id, existing.channel));
            }
            return Ok(existing);
        }
        (None, _) => return Err(EventError::Unknown(id)),
        (Some(existing), _) => existing,
    };
    let was_active = record.status == InteractionStatus::Active;
    match event {
        InteractionEvent::Started { .. } => {}
        InteractionEvent::PartyJoined { party, agent, .. } => {
            if record.status == InteractionStatus::Completed {
                return Err(EventError::Completed(id));
            }
            if !record.present.contains(party) {
                record.present.push(*party);
                record.present.sort();
            }
            if *party == Party::Agent {
                record.agent_reached = true;
                if let Some(agent) = agent {
                    record.agent = Some(agent.clone());
                }
            }
        }
        InteractionEvent::PartyDisconnected { party, .. } => {
            if let Some(action) = &record.post_flow
                && fires(action, *party, record.agent_reached)
            {
                record.post_flow_fired = true;
            }
            record.present.retain(|p| p != party);
            if record.present.is_empty() {
                record.status = InteractionStatus::Completed;
            }
        }
        InteractionEvent::Ended { outcome, .. } => {
            record.present.clear();
            record.status = InteractionStatus::Completed;
            if let Some(outcome) = outcome {
                record
                    .data
                    .insert("InteractionOutcome".into(), Value::Text(outcome.clone()));
            }
        }
    }
    if was_active && record.status == InteractionStatus::Completed {
        // Who completed it is fixed now: edits never change it.
        record.completed_by = record.agent.clone();
        record.completed_at_ms = Some(now_ms);
    }
    record.updated_at_ms = now_ms;
    Ok(record)
}

/// Whether a disconnect of `party` fires the action: an agent target needs an agent who was
/// reached.
fn fires(action: &PostFlowAction, party: Party, agent_reached: bool) -> bool {
    match action.target {
        PostFlowTarget::Agent => party == Party::Agent && agent_reached,
        PostFlowTarget::Caller => party == Party::Caller,
        PostFlowTarget::Any => true,
    }
}

impl Engine {
    /// Applies an interaction event and starts what it triggers. Every run it starts is on
    /// disk when this returns.
    ///
    /// An event for an interaction that has not started (other than its start) is held
    /// until it starts ([`EventAccepted::Held`]), and applied after the start in arrival
    /// order; a start answers with what its held events did too.
    pub async fn on_event(
        &self,
        tenant: &str,
        event: InteractionEvent,
    ) -> Result<std::result::Result<EventAccepted, EventError>> {
        self.apply_event(tenant, event, None).await
    }

    /// [`Engine::on_event`] for a local run (`coda run PLAN`), which has no live plan: the
    /// interaction's completion starts `process` as its post-interaction process, in place
    /// of the one its live plan would name. Everything else is the service's path, so there
    /// is one meaning of "the interaction ended": the same completed interaction, the same
    /// data sources, the same trigger key.
    pub async fn on_event_with_process(
        &self,
        tenant: &str,
        event: InteractionEvent,
        process: &str,
    ) -> Result<std::result::Result<EventAccepted, EventError>> {
        self.apply_event(tenant, event, Some(process)).await
    }

    async fn apply_event(
        &self,
        tenant: &str,
        event: InteractionEvent,
        process: Option<&str>,
    ) -> Result<std::result::Result<EventAccepted, EventError>> {
        if let Err(e) = event.check_names() {
            return Ok(Err(e.into()));
        }
        let starts = matches!(event, InteractionEvent::Started { .. });
        // Twice at most: an event found early whose interaction starts before it is held
        // is applied after all.
        for _ in 0..2 {
            match self.apply_one(tenant, &event, process, None).await? {
                Ok(mut outcome) => {
                    if starts {
                        let (runs, reconciled) = self
                            .apply_held(tenant, &outcome.interaction.id, process)
                            .await?;
                        if reconciled > 0 {
                            outcome.runs.extend(runs);
                            outcome.reconciled = reconciled;
                            if let Some(now) =
                                self.store.interaction(tenant, &outcome.interaction.id)?
                            {
                                outcome.interaction = now;
                            }
                        }
                    }
                    return Ok(Ok(EventAccepted::Applied(Box::new(outcome))));
                }
                Err(EventError::Unknown(_)) if !starts => match self.hold(tenant, &event).await? {
                    Ok(Some(held)) => return Ok(Ok(EventAccepted::Held(held))),
                    Ok(None) => continue,
                    Err(refused) => return Ok(Err(refused)),
                },
                Err(refused) => return Ok(Err(refused)),
            }
        }
        Ok(Err(EventError::Unknown(event.interaction().to_owned())))
    }

    /// Holds an event whose interaction has not started; none when it has started by the
    /// time of the store's write (the caller applies it then).
    async fn hold(
        &self,
        tenant: &str,
        event: &InteractionEvent,
    ) -> Result<std::result::Result<Option<HeldOutcome>, EventError>> {
        let body = serde_json::to_string(event).map_err(StoreError::from)?;
        let interaction = event.interaction().to_owned();
        let held = self
            .store
            .hold_event(
                tenant,
                &interaction,
                body,
                self.limits.event_limits(),
                self.clock.now_ms(),
            )
            .await;
        Ok(Ok(match held {
            Ok(Hold::Held { seq, expires_at_ms }) => Some(HeldOutcome {
                interaction,
                seq,
                duplicate: false,
                expires_at_ms,
            }),
            Ok(Hold::Duplicate { seq, expires_at_ms }) => Some(HeldOutcome {
                interaction,
                seq,
                duplicate: true,
                expires_at_ms,
            }),
            Ok(Hold::Started) => None,
            Err(StoreError::EventsFull(full)) => return Ok(Err(full.into())),
            Err(e) => return Err(e.into()),
        }))
    }

    /// Applies the events held for a started interaction, in arrival order, each released
    /// in the write that applies it. One its interaction refuses (a join after the end) is
    /// dropped with a warning; a full queue leaves the rest held for the scheduler's pass.
    /// Returns the runs they started and how many were applied.
    pub(crate) async fn apply_held(
        &self,
        tenant: &str,
        interaction: &str,
        process: Option<&str>,
    ) -> Result<(Vec<StartedRun>, usize)> {
        let mut runs = Vec::new();
        let mut applied = 0;
        for held in self.store.held_events(tenant, interaction)? {
            let event = match serde_json::from_str::<InteractionEvent>(&held.body) {
                Ok(event) if event.interaction() == interaction => event,
                _ => {
                    tracing::warn!(%tenant, %interaction, seq = held.seq, "a held event does not read as this interaction's: dropped");
                    self.store
                        .release_held(tenant, interaction, held.seq)
                        .await?;
                    continue;
                }
            };
            match self
                .apply_one(tenant, &event, process, Some(held.seq))
                .await?
            {
                Ok(outcome) => {
                    runs.extend(outcome.runs);
                    applied += 1;
                }
                Err(EventError::QueueFull(_)) => break,
                Err(refused) => {
                    tracing::warn!(%tenant, %interaction, seq = held.seq, "a held event was refused once its interaction started ({refused}): dropped");
                    self.store
                        .release_held(tenant, interaction, held.seq)
                        .await?;
                }
            }
        }
        Ok((runs, applied))
    }

    /// Applies one event to its interaction (refused as unknown when it has not started),
    /// releasing the held event `release` in the same write.
    async fn apply_one(
        &self,
        tenant: &str,
        event: &InteractionEvent,
        process: Option<&str>,
        release: Option<u64>,
    ) -> Result<std::result::Result<EventOutcome, EventError>> {
        let event = event.clone();
        let now = self.clock.now_ms();
        let before = self.store.interaction(tenant, event.interaction())?;
        // The run the interaction's completion would start, resolved before the write so that
        // the write can start it: the interaction's end and its run are one commit. Only for
        // an event that leaves the interaction completed: any other event is applied whether
        // or not its post-interaction plan can be found.
        // The event applied to the interaction as read, once: what it would start is
        // decided on this (the write applies it again, to the record it reads itself).
        let after = before
            .as_ref()
            .and_then(|record| apply(Some(record.clone()), &event, now).ok());
        let completes = after.as_ref().is_some_and(|after| {
            after.status == InteractionStatus::Completed && !after.post_flow_fired
        });
        let ending = match &before {
            Some(record) if completes => self.ending_start(tenant, record, process)?,
            _ => None,
        };
        // Backpressure, checked before anything is written: an event that would start a
        // run while the tenant's queue is full is refused whole, to be sent again later.
        if would_start_run(before.as_ref(), after.as_ref(), &event, ending.is_some())
            && let Err(full) = self.admit(tenant)?
        {
            return Ok(Err(full.into()));
        }
        // An event that may complete the interaction brings its skill's post-contact work,
        // read first (a skill is set when the interaction starts and never changes).
        let post_contact = match (&event, &before) {
            (
                InteractionEvent::PartyDisconnected { .. } | InteractionEvent::Ended { .. },
                Some(InteractionRecord {
                    skill: Some(skill),
                    status: InteractionStatus::Active,
                    ..
                }),
            ) => self.store.post_contact(tenant, skill)?,
            _ => None,
        };
        let applied = event.clone();
        let (tenant_owned, planned_from) = (tenant.to_owned(), before.and_then(|r| r.plan));
        let changed = match self
            .store
            .change_interaction(
                tenant,
                event.interaction(),
                move |current| -> std::result::Result<InteractionChange, EventError> {
                    let was_active = current
                        .as_ref()
                        .is_some_and(|r| r.status == InteractionStatus::Active);
                    let record = apply(current, &applied, now)?;
                    let mut change = InteractionChange::record(record);
                    change.release_held = release;
                    if was_active
                        && change.record.status == InteractionStatus::Completed
                        && let Some(config) = &post_contact
                    {
                        crate::completed::begin_post_contact(&mut change, config, now);
                    }
                    // Started with the completion, unless the live plan changed since it
                    // was resolved (then it is started after, from the plan as it is now).
                    let record = &change.record;
                    if record.status == InteractionStatus::Completed
                        && !record.post_flow_fired
                        && record.plan == planned_from
                        && let Some(ending) = ending
                    {
                        change.start = Some(ending.new_run(&tenant_owned, record, now));
                    }
                    Ok(change)
                },
            )
            .await?
        {
            Ok(changed) => changed,
            Err(refused) => return Ok(Err(refused)),
        };
        let record = changed.change.record;
        let mut runs = Vec::new();
        // Started by its trigger key: a redelivered disconnect finds the run it started.
        if let (InteractionEvent::PartyDisconnected { party, .. }, Some(action)) =
            (&event, &record.post_flow)
            && fires(action, *party, record.agent_reached)
        {
            let mut data = record.data.clone();
            data.insert(
                "InvocationData".into(),
                Value::from_json(&action.invocation_data),
            );
            runs.push(
                self.start_triggered(tenant, &record, &action.plan, "post-flow", data)
                    .await?,
            );
        }
        if let Some(started) = changed.started {
            self.wake();
            runs.push(started);
        } else if record.status == InteractionStatus::Completed
            && !record.post_flow_fired
            && let Some(process) = self.ending_process(tenant, &record, process)?
        {
            runs.push(
                self.start_triggered(tenant, &record, &process, "ended", record.data.clone())
                    .await?,
            );
        }
        Ok(Ok(EventOutcome {
            interaction: record,
            runs,
            reconciled: 0,
        }))
    }

    /// The run `record`'s completion would start, resolved to its plan's version and first
    /// node; none when it has no post-interaction process (see [`Engine::ending_process`]).
    fn ending_start(
        &self,
        tenant: &str,
        record: &InteractionRecord,
        process: Option<&str>,
    ) -> Result<Option<EndingStart>> {
        let Some(plan) = self.ending_process(tenant, record, process)? else {
            return Ok(None);
        };
        let (version, resolved) = self.plan(tenant, &plan, None)?;
        Ok(Some(EndingStart {
            plan,
            version,
            start_node: resolved.start.clone(),
        }))
    }

    /// The plan that `record`'s completion starts: `process` when the caller names one (a
    /// local run), else the post-interaction process of its live plan, if it has both.
    fn ending_process(
        &self,
        tenant: &str,
        record: &InteractionRecord,
        process: Option<&str>,
    ) -> Result<Option<String>> {
        if let Some(process) = process {
            return Ok(Some(process.to_owned()));
        }
        let Some(live) = &record.plan else {
            return Ok(None);
        };
        let (_, plan) = self.plan(tenant, live, None)?;
        Ok(plan.post_interaction.clone())
    }

    async fn start_triggered(
        &self,
        tenant: &str,
        record: &InteractionRecord,
        plan: &str,
        trigger: &str,
        data: Values,
    ) -> Result<StartedRun> {
        self.start(Start {
            tenant: tenant.into(),
            plan: plan.into(),
            version: None,
            interaction: Some(record.id.clone()),
            trigger_key: Some(format!("{}/{trigger}", record.id)),
            data,
        })
        .await
    }

    /// Sets, replaces (`Some`) or clears (`None`) the post-flow action of a live interaction.
    pub async fn set_post_flow(
        &self,
        tenant: &str,
        interaction: &str,
        action: Option<PostFlowAction>,
    ) -> Result<std::result::Result<InteractionRecord, EventError>> {
        self.set_post_flow_with(
            tenant,
            interaction,
            action.map(|a| SetPostFlow {
                target: a.target,
                action: a.action,
                plan: a.plan,
                invocation_data: InvocationData::Json(a.invocation_data),
            }),
        )
        .await
    }

    /// [`Engine::set_post_flow`], with invocation data that may be an expression: it is
    /// evaluated against the interaction's data sources as they are when the action is set,
    /// and a bad expression leaves the interaction untouched.
    ///
    /// The expression is the tenant's code, so it runs in the sandbox (the built-in
    /// [`crate::EXPRESSION_APPLET`], under the tenant's fuel, memory and deadline), and
    /// before the store's writer is taken: other tenants' events never wait for it. The
    /// write then checks that the data sources are still those the expression saw; if an
    /// event changed them meanwhile, the expression is evaluated again over the new ones
    /// (at most [`EXPRESSION_TRIES`] times), so the stored result always belongs to the data
    /// it was stored with.
    pub async fn set_post_flow_with(
        &self,
        tenant: &str,
        interaction: &str,
        request: Option<SetPostFlow>,
    ) -> Result<std::result::Result<InteractionRecord, EventError>> {
        if let Some(request) = &request {
            // The plan must exist now, not when the disconnect comes.
            self.plan(tenant, &request.plan, None)?;
        }
        for _ in 0..EXPRESSION_TRIES {
            let (action, seen) = match &request {
                None => (None, None),
                Some(request) => {
                    let action = |invocation_data| PostFlowAction {
                        target: request.target,
                        action: request.action.clone(),
                        plan: request.plan.clone(),
                        invocation_data,
                    };
                    match &request.invocation_data {
                        InvocationData::Json(json) => (Some(action(json.clone())), None),
                        InvocationData::Expression(expression) => {
                            let record = match self.store.interaction(tenant, interaction)? {
                                None => return Ok(Err(EventError::Unknown(interaction.into()))),
                                Some(r) if r.status == InteractionStatus::Completed => {
                                    return Ok(Err(EventError::Completed(interaction.into())));
                                }
                                Some(record) => record,
                            };
                            let value = match self
                                .evaluate(tenant, interaction, expression, &record.data)
                                .await
                            {
                                Ok(value) => value,
                                Err(e) => return Ok(Err(EventError::InvocationData(e))),
                            };
                            (Some(action(value)), Some(record.data))
                        }
                    }
                }
            };
            let now = self.clock.now_ms();
            let id = interaction.to_owned();
            let written = self
                .store
                .update_interaction(tenant, interaction, move |current| {
                    let Some(mut record) = current else {
                        return Err(Refused::Event(EventError::Unknown(id)));
                    };
                    if record.status == InteractionStatus::Completed {
                        return Err(Refused::Event(EventError::Completed(id)));
                    }
                    if seen.is_some_and(|seen| seen != record.data) {
                        return Err(Refused::Changed);
                    }
                    record.post_flow = action;
                    record.updated_at_ms = now;
                    Ok(record)
                })
                .await?;
            match written {
                Ok(record) => return Ok(Ok(record)),
                Err(Refused::Event(e)) => return Ok(Err(e)),
                Err(Refused::Changed) => continue,
            }
        }
        Ok(Err(EventError::InvocationData(format!(
            "the interaction's data sources changed {EXPRESSION_TRIES} times while the expression was evaluated; set the action again"
        ))))
    }

    /// Evaluates a tenant's CEL expression over `data` in the sandbox: the built-in
    /// [`crate::EXPRESSION_APPLET`] sets one data source to it, as a plan's step would, with
    /// no capability granted. Its limits (fuel, memory, wall clock) are those of any step of
    /// the tenant, and hitting one is an error naming it. The host never evaluates a
    /// tenant's expression natively: it could not bound the work.
    async fn evaluate(
        &self,
        tenant: &str,
        interaction: &str,
        expression: &str,
        data: &Values,
    ) -> std::result::Result<serde_json::Value, String> {
        const RESULT: &str = "InvocationData";
        let applet = self.applets.expression_applet().ok_or_else(|| {
            format!(
                "expressions cannot be evaluated here: the built-in {} applet is not installed",
                crate::EXPRESSION_APPLET
            )
        })?;
        let input = crate::StepInput {
            context: coda_types::InvocationContext {
                tenant: tenant.to_owned(),
                interaction: Some(interaction.to_owned()),
                run: String::new(),
                plan: String::new(),
                node: "post-flow".into(),
                idempotency_key: format!("{interaction}/post-flow"),
                attempt: 1,
                // No capability is granted, so no secret can be read.
                scrubber: Default::default(),
            },
            config: serde_json::json!({ "set": [{ "name": RESULT, "expression": expression }] }),
            data: data.clone(),
            state: Values::new(),
            now_ms: self.clock.now_ms(),
            capabilities: Arc::new(crate::DenyAll),
        };
        let report = self.applets.invoke(tenant, &applet, input).await?;
        match report.result {
            Ok(_) => report
                .data_changes
                .get(RESULT)
                .map(Value::to_json)
                .ok_or_else(|| format!("{applet} gave no result for the expression")),
            Err(InvokeError::Failure(failure)) => Err(failure.message),
            Err(e) => Err(format!("the expression was stopped: {e}")),
        }
    }

    /// Delivers a named event (an agent's disposition, a survey reply): stored with the
    /// interaction and, in the same write, taken by every run of the interaction waiting
    /// for it; when none waits, kept until a run's wait for it takes it (the oldest untaken
    /// first, one event per wait) or it expires ([`FlowLimits::event_keep_ms`]).
    ///
    /// [`FlowLimits::event_keep_ms`]: crate::FlowLimits::event_keep_ms
    pub async fn deliver(
        &self,
        tenant: &str,
        interaction: &str,
        event: &str,
        payload: serde_json::Value,
    ) -> Result<std::result::Result<Delivery, EventError>> {
        self.deliver_with(tenant, interaction, event, payload, Values::new())
            .await
    }

    /// [`Engine::deliver`], also setting the data sources `data` on the run that takes it.
    pub async fn deliver_with(
        &self,
        tenant: &str,
        interaction: &str,
        event: &str,
        payload: serde_json::Value,
        data: Values,
    ) -> Result<std::result::Result<Delivery, EventError>> {
        let event = NamedEvent {
            tenant: tenant.to_owned(),
            interaction: interaction.to_owned(),
            name: event.to_owned(),
            payload: Value::from_json(&payload),
            data,
        };
        match self
            .store
            .deliver_event(event, self.limits.event_limits(), self.clock.now_ms())
            .await
        {
            Ok(delivery) => {
                if !delivery.woken.is_empty() {
                    self.wake();
                }
                Ok(Ok(delivery))
            }
            Err(StoreError::EventsFull(full)) => Ok(Err(full.into())),
            Err(e) => Err(e.into()),
        }
    }

    /// The scheduler's upkeep of kept events: deletes the expired ones, a batch at a time,
    /// and applies the held events of interactions that have started (left by a start
    /// that stopped half-way, or by a full queue). A failure is logged; the next pass
    /// tries again.
    pub async fn tend_events(&self) {
        let now = self.clock.now_ms();
        loop {
            match self
                .store
                .prune_events(now, coda_store::EVENT_PRUNE_BATCH)
                .await
            {
                Ok(n) if n >= u64::from(coda_store::EVENT_PRUNE_BATCH) => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!("pruning expired events failed ({e}); trying again later");
                    break;
                }
            }
        }
        let started = match self.store.started_with_held(HELD_PER_PASS) {
            Ok(started) => started,
            Err(e) => {
                tracing::warn!("reading held events failed ({e}); trying again later");
                return;
            }
        };
        for (tenant, interaction) in started {
            if let Err(e) = self.apply_held(&tenant, &interaction, None).await {
                tracing::warn!(%tenant, %interaction, "applying held events failed ({e}); trying again later");
            }
        }
    }
}

/// How many started interactions with held events one pass of [`Engine::tend_events`]
/// applies.
const HELD_PER_PASS: u32 = 100;

/// The post-interaction run an interaction's completion starts, resolved before the write.
struct EndingStart {
    plan: String,
    version: u32,
    start_node: String,
}

impl EndingStart {
    /// The run, keyed by the interaction's `ended` trigger: the same key
    /// [`Engine::start_triggered`] gives it, so a redelivered event finds it.
    fn new_run(self, tenant: &str, record: &InteractionRecord, now_ms: i64) -> NewRun {
        NewRun {
            tenant: tenant.to_owned(),
            plan: self.plan,
            plan_version: self.version,
            interaction: Some(record.id.clone()),
            trigger_key: Some(format!("{}/ended", record.id)),
            start_node: self.start_node,
            data: record.data.clone(),
            now_ms,
        }
    }
}

/// Whether `event`, taking the interaction from `before` to `after`, would start a run that
/// does not exist yet: it fires the post-flow action, or completes an interaction whose
/// completion starts a run. A redelivered event, which finds its run started, starts
/// nothing.
fn would_start_run(
    before: Option<&InteractionRecord>,
    after: Option<&InteractionRecord>,
    event: &InteractionEvent,
    completion_starts_run: bool,
) -> bool {
    if matches!(
        event,
        InteractionEvent::Started { .. } | InteractionEvent::PartyJoined { .. }
    ) {
        return false;
    }
    // No interaction, or the event refused: nothing is started.
    let (Some(before), Some(after)) = (before, after) else {
        return false;
    };
    if after.post_flow_fired && !before.post_flow_fired {
        return true;
    }
    after.status == InteractionStatus::Completed
        && before.status != InteractionStatus::Completed
        && !after.post_flow_fired
        && completion_starts_run
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started() -> InteractionRecord {
        let event: InteractionEvent = serde_json::from_value(serde_json::json!({
            "type": "started", "interaction": "i1", "channel": "voice", "plan": "live",
            "data": { "CLID": "+15550100" }
        }))
        .unwrap();
        apply(None, &event, 1).unwrap()
    }

    fn event(json: serde_json::Value) -> InteractionEvent {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn all_parties_gone_completes_the_interaction() {
        let r = started();
        let r = apply(
            Some(r),
            &event(
                serde_json::json!({"type": "party-joined", "interaction": "i1", "party": "agent"}),
            ),
            2,
        )
        .unwrap();
        assert!(r.agent_reached);
        let r = apply(Some(r), &event(serde_json::json!({"type": "party-disconnected", "interaction": "i1", "party": "agent"})), 3).unwrap();
        assert_eq!(r.status, InteractionStatus::Active);
        let r = apply(Some(r), &event(serde_json::json!({"type": "party-disconnected", "interaction": "i1", "party": "caller"})), 4).unwrap();
        assert_eq!(r.status, InteractionStatus::Completed);
        let refused = apply(
            Some(r),
            &event(
                serde_json::json!({"type": "party-joined", "interaction": "i1", "party": "agent"}),
            ),
            5,
        );
        assert!(matches!(refused, Err(EventError::Completed(_))));
    }

    #[test]
    fn an_agent_target_needs_an_agent_reached() {
        let action = PostFlowAction {
            target: PostFlowTarget::Agent,
            action: "voice-survey-flow".into(),
            plan: "survey".into(),
            invocation_data: serde_json::json!({}),
        };
        assert!(!fires(&action, Party::Agent, false));
        assert!(fires(&action, Party::Agent, true));
        assert!(!fires(&action, Party::Caller, true));
        let any = PostFlowAction {
            target: PostFlowTarget::Any,
            ..action
        };
        assert!(fires(&any, Party::Caller, false));
    }

    #[test]
    fn events_for_unknown_interactions_are_refused() {
        let refused = apply(
            None,
            &event(serde_json::json!({"type": "ended", "interaction": "nope"})),
            1,
        );
        assert!(matches!(refused, Err(EventError::Unknown(id)) if id == "nope"));
        let bad: std::result::Result<InteractionEvent, _> =
            serde_json::from_value(serde_json::json!({"type": "exploded", "interaction": "i1"}));
        assert!(bad.is_err());
    }
}
