//! `coda runs list|show|tail|cancel|retry`: a run's record, journal and effects as tables.

use clap::Subcommand;
use reqwest::Method;
use serde_json::Value as Json;

use super::output::{done, print_list, show};
use super::tail::tail;
use crate::client::{Body, Client, ClientArgs, Failure, cell, items, record_table, table};

#[derive(Subcommand)]
pub enum RunsCommand {
    /// Runs, newest first, filtered
    List {
        /// Only runs of this plan
        #[arg(long)]
        plan: Option<String>,
        /// Only runs in this state (ready, parked, waiting, done, failed, cancelled)
        #[arg(long)]
        status: Option<String>,
        /// Only runs of this interaction
        #[arg(long)]
        interaction: Option<String>,
        /// Only runs created since: an RFC 3339 time, a date, ms since the epoch or a
        /// duration ago (30m, 2h, 7d)
        #[arg(long, value_parser = parse_since)]
        since: Option<String>,
        /// Only runs created before: the same forms as --since
        #[arg(long, value_parser = parse_until)]
        until: Option<String>,
        /// The page after this run id (the `next` of the previous page)
        #[arg(long)]
        after: Option<String>,
        /// At most this many runs
        #[arg(long)]
        limit: Option<u32>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A run, its data and its journal as a table of steps
    Show {
        id: String,
        /// Print one applet step as a test fixture (YAML) for `coda applet test` instead:
        /// the step's config, data, state and recorded calls, and what it did
        #[arg(long)]
        as_fixture: bool,
        /// With --as-fixture: the step's sequence number [default: the last failed applet
        /// step, else the last applet step]
        #[arg(long, requires = "as_fixture")]
        step: Option<u64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Follow a run's steps as they commit; ends when the run does (exit 1 if it failed)
    Tail {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Cancel a run that has not ended
    Cancel {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Run a failed run again from its failed step
    Retry {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `--since` for the API, read by the host's one time parser (so a bad time is refused
/// here, with the same words the server would use) and sent as ms since the epoch: a
/// duration counts back from this machine's clock, not the server's.
pub(super) fn parse_since(text: &str) -> Result<String, String> {
    parse_time("since", text)
}

/// `--until`, read as `--since` is.
pub(super) fn parse_until(text: &str) -> Result<String, String> {
    parse_time("until", text)
}

fn parse_time(parameter: &str, text: &str) -> Result<String, String> {
    coda_types::time::parse_time(parameter, text, coda_types::time::now_ms())
        .map(|ms| ms.to_string())
        .map_err(|e| e.to_string())
}

const RUN_COLUMNS: &[&str] = &[
    "id",
    "plan",
    "plan_version",
    "interaction",
    "status",
    "node",
    "created_at_ms",
    "updated_at_ms",
];

/// Where a run ends.
pub(super) fn is_final(status: &str) -> bool {
    matches!(status, "done" | "failed" | "cancelled" | "canceled")
}

pub(super) async fn runs(client: &Client, command: RunsCommand) -> Result<(), Failure> {
    match command {
        RunsCommand::List {
            plan,
            status,
            interaction,
            since,
            until,
            after,
            limit,
            ..
        } => {
            let query: Vec<(&str, String)> = [
                ("plan", plan),
                ("status", status),
                ("interaction", interaction),
                ("since", since),
                ("until", until),
                ("after", after),
                ("limit", limit.map(|n| n.to_string())),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
            let answer = client.get(&["v1", "runs"], &query).await?;
            show(client, &answer, |a| {
                print_list(items(a, "runs"), RUN_COLUMNS, "no runs");
                if let Some(next) = a.get("next").and_then(Json::as_str) {
                    println!("(more: --after {next})");
                }
            });
        }
        RunsCommand::Show {
            id,
            as_fixture: true,
            step,
            ..
        } => {
            let query: Vec<(&str, String)> =
                step.map(|s| ("step", s.to_string())).into_iter().collect();
            let answer = client.get(&["v1", "runs", &id, "fixture"], &query).await?;
            // Read back as the harness reads fixtures: what is printed is sure to run.
            let fixture = coda_harness::Fixture::parse(&answer.to_string()).map_err(|e| {
                Failure::usage(format!("the service's fixture does not parse: {e}"))
            })?;
            if client.json {
                println!("{answer:#}");
            } else {
                print!("{}", fixture.to_yaml());
            }
        }
        RunsCommand::Show { id, .. } => {
            let answer = client.get(&["v1", "runs", &id], &[]).await?;
            show(client, &answer, print_run);
        }
        RunsCommand::Tail { id, .. } => tail(client, &id).await?,
        RunsCommand::Cancel { id, .. } => {
            let answer = client
                .call(
                    Method::POST,
                    &["v1", "runs", &id, "cancel"],
                    &[],
                    Body::None,
                )
                .await?;
            done(client, &answer, &format!("cancelled {id}"));
        }
        RunsCommand::Retry { id, .. } => {
            let answer = client
                .call(Method::POST, &["v1", "runs", &id, "retry"], &[], Body::None)
                .await?;
            done(client, &answer, &format!("retrying {id}"));
        }
    }
    Ok(())
}

fn print_run(run: &Json) {
    let mut order = RUN_COLUMNS.to_vec();
    order.extend(["attempt", "due_at_ms", "wait"]);
    println!(
        "{}",
        record_table(run, &order, &["journal", "effects", "data"])
    );
    if let Some(data) = run.get("data").and_then(Json::as_object)
        && !data.is_empty()
    {
        println!("\ndata:");
        println!("{}", record_table(&Json::Object(data.clone()), &[], &[]));
    }
    let journal = items(run, "journal");
    println!("\njournal:");
    if journal.is_empty() {
        println!("no steps yet");
    } else {
        let mut steps = table(&[
            "seq", "node", "applet", "attempt", "result", "note", "fuel", "ms",
        ]);
        for step in journal {
            steps.add_row(step_cells(step));
        }
        println!("{steps}");
    }
    // What the applets logged, step by step.
    let logged: Vec<String> = journal
        .iter()
        .flat_map(|step| {
            let seq = cell("", step.get("seq"));
            items(step, "logs").iter().map(move |line| {
                format!(
                    "  {seq:>4} {:<5} {}",
                    line.get("level").and_then(Json::as_str).unwrap_or("?"),
                    line.get("message").and_then(Json::as_str).unwrap_or("")
                )
            })
        })
        .collect();
    if !logged.is_empty() {
        println!(
            "
logs:"
        );
        for line in logged {
            println!("{line}");
        }
    }
    let effects = items(run, "effects");
    if !effects.is_empty() {
        println!("\neffects:");
        let mut table = table(&["step", "call", "kind", "result", "at"]);
        for effect in effects {
            let result = effect.get("result");
            let summary = match result.and_then(|r| r.get("error")) {
                Some(error) => format!("error {}", cell("", error.get("kind").or(Some(error)))),
                None => "ok".into(),
            };
            table.add_row(vec![
                cell("", effect.get("step_seq")),
                cell("", effect.get("call_seq")),
                cell("", effect.get("kind")),
                summary,
                cell("at_ms", effect.get("at_ms")),
            ]);
        }
        println!("{table}");
    }
}

/// A journal step as the cells of a row.
pub(super) fn step_cells(step: &Json) -> Vec<String> {
    let ms = step
        .get("duration_us")
        .and_then(Json::as_u64)
        .map(|us| format!("{:.1}", us as f64 / 1000.0))
        .unwrap_or_else(|| "-".into());
    vec![
        cell("", step.get("seq")),
        cell("", step.get("node")),
        cell("", step.get("applet")),
        cell("", step.get("attempt")),
        result_summary(step.get("result")),
        cell("", step.get("note")),
        cell("", step.get("fuel_used")),
        ms,
    ]
}

/// A step's result in a word or two: `exit next`, `pause`, `error fuel`.
pub(super) fn result_summary(result: Option<&Json>) -> String {
    let Some(Json::Object(result)) = result else {
        return cell("", result);
    };
    if let Some(exit) = result.get("exit").and_then(Json::as_str) {
        return format!("exit {exit}");
    }
    if let Some(error) = result.get("error") {
        let kind = error.get("kind").and_then(Json::as_str).unwrap_or("?");
        return format!("error {kind}");
    }
    result.keys().next().cloned().unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn times_are_read_by_the_hosts_one_parser() {
        assert_eq!(
            parse_since("2026-01-31T09:00:00+01:00").unwrap(),
            "1769846400000"
        );
        let ms = |t: &str| parse_since(t).unwrap().parse::<i64>().unwrap();
        assert!((ms("1m") - ms("1h") - 3_540_000).abs() < 5_000);
        let refused = parse_until("yesterday-ish").unwrap_err();
        assert!(
            refused.contains("`until`") && refused.contains("30m"),
            "{refused}"
        );
    }

    #[test]
    fn step_results_read_in_a_word() {
        assert_eq!(result_summary(Some(&json!({"exit": "next"}))), "exit next");
        assert_eq!(
            result_summary(Some(&json!({"error": {"kind": "fuel"}}))),
            "error fuel"
        );
        assert_eq!(result_summary(Some(&json!({"pause": {"ms": 5}}))), "pause");
    }
}
