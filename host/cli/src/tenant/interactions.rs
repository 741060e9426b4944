//! `coda interaction event|show|edit|audit|clone|disposition` against a service.

use std::io::Read;
use std::path::Path;

use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value as Json, json};

use super::edit::edit_body;
use super::output::{done, print_list, show};
use super::read_text;
use crate::client::{Body, Client, ClientArgs, Failure, cell, items, print_json, record_table};

#[derive(Subcommand)]
pub enum InteractionCommand {
    /// Send interaction events (started, party-joined, party-disconnected, ended): a JSON
    /// object or an array of them, from FILE or `-` (stdin)
    Event {
        file: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// An interaction: status, parties, data, post-flow action
    Show {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Edit a completed interaction's details (kept in its audit trail)
    Edit {
        id: String,
        /// FIELD=TEXT (repeatable); a dotted field sets inside an object
        /// (custom_fields.tier=gold)
        #[arg(long = "set", value_name = "FIELD=TEXT")]
        set: Vec<String>,
        /// FIELD=JSON (repeatable), for values that are not text (numbers, null, lists)
        #[arg(long = "set-json", value_name = "FIELD=JSON")]
        set_json: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The audit trail of an interaction's edits
    Audit {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Clone a completed interaction into a new active outbound one, assigned to you
    Clone {
        id: String,
        /// voice, chat, sms, email or task
        #[arg(long)]
        channel: String,
        #[arg(long)]
        queue: String,
        /// The new interaction's subject [default: the original's]
        #[arg(long)]
        subject: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Submit an agent's disposition for an interaction
    Disposition {
        id: String,
        code: String,
        /// An amount with the disposition (a sale's value, say)
        #[arg(long)]
        amount: Option<String>,
        /// The agent's notes with it
        #[arg(long)]
        notes: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Reads FILE, or stdin for `-`.
fn read_input(file: &str) -> Result<String, Failure> {
    if file == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Failure::new(2, "io", format!("cannot read stdin: {e}")))?;
        Ok(text)
    } else {
        read_text(Path::new(file))
    }
}

pub(super) async fn interaction(
    client: &Client,
    command: InteractionCommand,
) -> Result<(), Failure> {
    match command {
        InteractionCommand::Event { file, .. } => {
            let text = read_input(&file)?;
            let parsed: Json = serde_json::from_str(&text)
                .map_err(|e| Failure::usage(format!("{file}: not JSON: {e}")))?;
            // One event, or several sent in order (started, then ended).
            let events = match parsed {
                Json::Array(events) => events,
                event => vec![event],
            };
            let mut answers = Vec::new();
            for event in events {
                let answer = client
                    .call(
                        Method::POST,
                        &["v1", "interactions", "events"],
                        &[],
                        Body::Json(event),
                    )
                    .await?;
                if !client.json {
                    println!(
                        "interaction {}: {}; runs started: {}",
                        cell("", answer.get("interaction")),
                        cell("", answer.get("status")),
                        cell("", answer.get("runs")),
                    );
                }
                answers.push(answer);
            }
            if client.json {
                print_json(&match <[Json; 1]>::try_from(answers) {
                    Ok([one]) => one,
                    Err(answers) => Json::Array(answers),
                });
            }
        }
        InteractionCommand::Show { id, .. } => {
            let answer = client.get(&["v1", "interactions", &id], &[]).await?;
            show(client, &answer, |a| {
                println!(
                    "{}",
                    record_table(a, &["id", "channel", "status", "plan"], &["data"])
                );
                if let Some(data) = a.get("data").and_then(Json::as_object)
                    && !data.is_empty()
                {
                    println!("\ndata:");
                    println!("{}", record_table(&Json::Object(data.clone()), &[], &[]));
                }
            });
        }
        InteractionCommand::Edit {
            id, set, set_json, ..
        } => {
            let body = edit_body(&set, &set_json)?;
            let answer = client
                .call(
                    Method::PATCH,
                    &["v1", "interactions", &id],
                    &[],
                    Body::Json(body),
                )
                .await?;
            done(client, &answer, &format!("edited {id}"));
        }
        InteractionCommand::Audit { id, .. } => {
            let answer = client
                .get(&["v1", "interactions", &id, "audit"], &[])
                .await?;
            show(client, &answer, |a| {
                print_list(
                    items(a, "audit"),
                    &["seq", "at_ms", "by", "field", "before", "after"],
                    "no edits",
                )
            });
        }
        InteractionCommand::Clone {
            id,
            channel,
            queue,
            subject,
            ..
        } => {
            let mut body = json!({ "channel": channel, "queue": queue });
            if let Some(subject) = subject {
                body["subject"] = json!(subject);
            }
            let answer = client
                .call(
                    Method::POST,
                    &["v1", "interactions", &id, "clone"],
                    &[],
                    Body::Json(body),
                )
                .await?;
            done(client, &answer, &format!("cloned {id}"));
        }
        InteractionCommand::Disposition {
            id,
            code,
            amount,
            notes,
            ..
        } => {
            let mut body = json!({ "code": code });
            if let Some(notes) = notes {
                body["notes"] = json!(notes);
            }
            if let Some(amount) = amount {
                // A number as written (19.99), so no float formatting changes it on the way.
                let number: serde_json::Number = amount
                    .trim()
                    .parse()
                    .map_err(|_| Failure::usage(format!("--amount `{amount}` is not a number")))?;
                body["amount"] = Json::Number(number);
            }
            let answer = client
                .call(
                    Method::POST,
                    &["v1", "interactions", &id, "disposition"],
                    &[],
                    Body::Json(body),
                )
                .await?;
            done(
                client,
                &answer,
                &format!("disposition {code} submitted for {id}"),
            );
        }
    }
    Ok(())
}
