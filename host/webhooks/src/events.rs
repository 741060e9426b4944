//! The run events a tenant can subscribe to, and each as the CloudEvent sent for it
//! (CloudEvents 1.0, structured JSON). An event is made from the journal: a step that was
//! committed is an event that will be sent.

use coda_store::{NewDelivery, RunNews, StepRecord, WebhookTarget};
use serde_json::{Value as Json, json};

/// What a subscription can ask for. Its wire name is [`EventKind::as_str`]; the CloudEvents
/// type is `coda.` and that name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The run's first step was committed.
    RunStarted,
    /// A step was committed (an applet's, or one the host took: a wait's timeout, a cancel).
    StepFinished,
    /// A step was stopped by a sandbox limit (fuel, memory, deadline, ...).
    LimitHit,
    RunDone,
    RunFailed,
    RunCancelled,
}

impl EventKind {
    pub const ALL: [EventKind; 6] = [
        EventKind::RunStarted,
        EventKind::StepFinished,
        EventKind::LimitHit,
        EventKind::RunDone,
        EventKind::RunFailed,
        EventKind::RunCancelled,
    ];

    /// The name a subscription lists it by.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::RunStarted => "run.started",
            EventKind::StepFinished => "step.finished",
            EventKind::LimitHit => "step.limit_hit",
            EventKind::RunDone => "run.done",
            EventKind::RunFailed => "run.failed",
            EventKind::RunCancelled => "run.cancelled",
        }
    }

    pub fn parse(name: &str) -> Option<EventKind> {
        EventKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }

    /// The CloudEvents `type`.
    pub fn event_type(self) -> String {
        format!("coda.{}", self.as_str())
    }

    /// Its place among the events one step makes: started, the step, its limit, the end.
    fn slot(self) -> u64 {
        match self {
            EventKind::RunStarted => 0,
            EventKind::StepFinished => 1,
            EventKind::LimitHit => 2,
            EventKind::RunDone | EventKind::RunFailed | EventKind::RunCancelled => 3,
        }
    }
}

/// Events per step: [`EventKind::slot`] goes from 0 to 3.
const SLOTS: u64 = 4;

/// An event's place in its run: deliveries of a run leave in this order.
fn position(seq: u64, kind: EventKind) -> u64 {
    seq * SLOTS + kind.slot()
}

/// The events `step` of the run in `news` makes, in order.
fn kinds_of(news: &RunNews, step: &StepRecord) -> Vec<EventKind> {
    let mut kinds = Vec::new();
    if step.seq == 0 {
        kinds.push(EventKind::RunStarted);
    }
    kinds.push(EventKind::StepFinished);
    if step.result["error"].get("limit").is_some() {
        kinds.push(EventKind::LimitHit);
    }
    // The run's status is the one after its latest step: it says how this step left the
    // run only when this step is the latest.
    if step.seq + 1 == news.step_seq {
        match news.status {
            coda_store::RunStatus::Done => kinds.push(EventKind::RunDone),
            coda_store::RunStatus::Failed => kinds.push(EventKind::RunFailed),
            coda_store::RunStatus::Cancelled => kinds.push(EventKind::RunCancelled),
            _ => {}
        }
    }
    kinds
}

/// The CloudEvent for `kind` made by `step`.
fn cloud_event(news: &RunNews, step: &StepRecord, kind: EventKind) -> Json {
    let run = json!({
        "run": news.run_id,
        "plan": step.plan,
        "plan_version": step.plan_version,
        "interaction": news.interaction,
    });
    let data = match kind {
        EventKind::RunStarted => run,
        EventKind::StepFinished | EventKind::LimitHit => {
            let mut data = run;
            data["seq"] = step.seq.into();
            data["node"] = step.node.clone().into();
            data["applet"] = step.applet.clone().into();
            data["attempt"] = step.attempt.into();
            data["result"] = step.result.clone();
            data["note"] = step.note.clone().into();
            data["fuel_used"] = step.fuel_used.into();
            data["duration_us"] = step.duration_us.into();
            data
        }
        EventKind::RunDone | EventKind::RunFailed | EventKind::RunCancelled => {
            let mut data = run;
            data["status"] = news.status.as_str().into();
            data["steps"] = (step.seq + 1).into();
            data
        }
    };
    json!({
        "specversion": "1.0",
        "id": format!("{}:{}", news.run_id, position(step.seq, kind)),
        "source": format!("/tenants/{}/plans/{}", news.tenant, step.plan),
        "type": kind.event_type(),
        "time": rfc3339(step.at_ms),
        "subject": news.run_id,
        "datacontenttype": "application/json",
        "data": data,
    })
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| ms.to_string(), |t| t.to_string())
}

/// Whether `target` asked for `kind` of `step`: its kind, its plan, and made since the
/// subscription was (a new subscription gets no history).
fn wants(target: &WebhookTarget, kind: EventKind, step: &StepRecord) -> bool {
    target.events.iter().any(|e| e == kind.as_str())
        && target.plan.as_deref().is_none_or(|p| p == step.plan)
        && step.at_ms >= target.created_at_ms
}

/// The deliveries the steps in `news` make for `targets`, each with a new message id.
pub fn deliveries(news: &RunNews, targets: &[WebhookTarget]) -> Vec<NewDelivery> {
    let mut out = Vec::new();
    for step in &news.steps {
        for kind in kinds_of(news, step) {
            let mut body = None;
            for target in targets.iter().filter(|t| wants(t, kind, step)) {
                let body = body
                    .get_or_insert_with(|| cloud_event(news, step, kind).to_string())
                    .clone();
                out.push(NewDelivery {
                    id: format!("msg_{}", uuid::Uuid::now_v7().simple()),
                    subscription: target.id.clone(),
                    position: position(step.seq, kind),
                    event_type: kind.event_type(),
                    body,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use coda_store::RunStatus;

    fn step(seq: u64, result: Json) -> StepRecord {
        StepRecord {
            seq,
            plan: "after".into(),
            plan_version: 1,
            node: format!("n{seq}"),
            applet: "set-data@0.1.0".into(),
            attempt: 1,
            result,
            note: String::new(),
            fuel_used: 1,
            duration_us: 1,
            data_changes: Default::default(),
            at_ms: 1_765_000_000_000,
            logs: Vec::new(),
        }
    }

    fn news(status: RunStatus, step_seq: u64, steps: Vec<StepRecord>) -> RunNews {
        RunNews {
            tenant: "acme".into(),
            run_id: "r1".into(),
            interaction: Some("call-1".into()),
            status,
            step_seq,
            next_seq: steps.first().map_or(0, |s| s.seq),
            steps,
        }
    }

    fn all() -> WebhookTarget {
        WebhookTarget {
            id: "hook".into(),
            events: EventKind::ALL
                .iter()
                .map(|k| k.as_str().to_owned())
                .collect(),
            plan: None,
            created_at_ms: 0,
        }
    }

    #[test]
    fn a_run_makes_started_each_step_its_limit_and_its_end_in_order() {
        let steps = vec![
            step(0, json!({"exit": "next"})),
            step(
                1,
                json!({"error": {"kind": "fuel", "limit": 10, "used": 11}}),
            ),
        ];
        let made = deliveries(&news(RunStatus::Failed, 2, steps), &[all()]);
        let types: Vec<&str> = made.iter().map(|d| d.event_type.as_str()).collect();
        assert_eq!(
            types,
            [
                "coda.run.started",
                "coda.step.finished",
                "coda.step.finished",
                "coda.step.limit_hit",
                "coda.run.failed"
            ]
        );
        let positions: Vec<u64> = made.iter().map(|d| d.position).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
        let end: Json = serde_json::from_str(&made[4].body).unwrap();
        assert_eq!(end["specversion"], "1.0");
        assert_eq!(end["subject"], "r1");
        assert_eq!(end["data"]["status"], "failed");
        assert_eq!(end["time"], "2025-12-06T05:46:40Z");
    }

    #[test]
    fn a_subscription_gets_only_its_kinds_its_plan_and_what_came_after_it() {
        let steps = vec![step(0, json!({"exit": "next"}))];
        let done_only = WebhookTarget {
            id: "done".into(),
            events: vec!["run.done".into()],
            plan: None,
            created_at_ms: 0,
        };
        let too_new = WebhookTarget {
            id: "new".into(),
            created_at_ms: 1_765_000_000_001,
            ..all()
        };
        let other_plan = WebhookTarget {
            plan: Some("other".into()),
            ..all()
        };
        let made = deliveries(
            &news(RunStatus::Done, 1, steps),
            &[done_only, other_plan, too_new],
        );
        assert_eq!(made.len(), 1);
        assert_eq!(made[0].subscription, "done");
        assert_eq!(made[0].event_type, "coda.run.done");
    }

    #[test]
    fn an_earlier_step_of_a_finished_run_makes_no_end() {
        let made = deliveries(
            &news(RunStatus::Done, 3, vec![step(1, json!({"exit": "next"}))]),
            &[all()],
        );
        assert_eq!(made.len(), 1);
        assert_eq!(made[0].event_type, "coda.step.finished");
    }
}
