//! `coda plan push|validate|list|show|versions|diff` against a service.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use reqwest::Method;
use serde_json::Value as Json;

use super::output::{print_list, show};
use super::read_text;
use crate::client::{Body, Client, ClientArgs, Failure, cell, items, print_json};

/// The plan commands that talk to a service (beside `validate`, local or remote).
#[derive(Subcommand)]
pub enum PlanCommand {
    /// Validate and publish a plan as a new version
    Push {
        /// The plan (.yaml, .yml or .json)
        file: PathBuf,
        /// The name to publish under [default: the plan's own `name`]
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The tenant's plans (latest versions)
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A plan's latest version, or the one given
    Show {
        name: String,
        #[arg(long)]
        version: Option<u32>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A plan's versions
    Versions {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// What changed between two versions of a plan
    Diff {
        name: String,
        from: u32,
        to: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
}

// ---- plans ----

/// A plan file's text, the Content-Type it is sent with, and its own `name`.
fn plan_file(path: &Path) -> Result<(String, &'static str, Option<String>), Failure> {
    let text = read_text(path)?;
    let (content_type, parsed) = match coda_plan::Format::detect(&text) {
        coda_plan::Format::Json => ("application/json", serde_json::from_str::<Json>(&text).ok()),
        coda_plan::Format::Yaml => (
            "application/yaml",
            coda_types::yaml::from_str::<Json>(&text).ok(),
        ),
    };
    // The server reports a plan that does not parse, with every problem; here the name is
    // all that is wanted.
    let name = parsed
        .as_ref()
        .and_then(|p| p.get("name"))
        .and_then(Json::as_str)
        .map(str::to_owned);
    Ok((text, content_type, name))
}

pub(super) async fn validate(client: &Client, file: &Path) -> Result<(), Failure> {
    let (text, content_type, _) = plan_file(file)?;
    let answer = client
        .call(
            Method::POST,
            &["v1", "plans", "validate"],
            &[],
            Body::Bytes(text.into_bytes(), content_type),
        )
        .await
        .map_err(|mut failure| {
            if failure.kind == "invalid-plan" {
                failure.message = format!("{}: {}", file.display(), failure.message);
            }
            failure
        })?;
    show(client, &answer, |_| println!("{}: valid", file.display()));
    Ok(())
}

pub(super) async fn plan(client: &Client, command: PlanCommand) -> Result<(), Failure> {
    match command {
        PlanCommand::Push { file, name, .. } => {
            let (text, content_type, own_name) = plan_file(&file)?;
            let Some(name) = name.or(own_name) else {
                return Err(Failure::usage(format!(
                    "{} has no `name`: give one with --name",
                    file.display()
                )));
            };
            let answer = client
                .call(
                    Method::PUT,
                    &["v1", "plans", &name],
                    &[],
                    Body::Bytes(text.into_bytes(), content_type),
                )
                .await
                .map_err(|mut failure| {
                    if failure.kind == "invalid-plan" {
                        failure.message = format!("{}: {}", file.display(), failure.message);
                    }
                    failure
                })?;
            show(client, &answer, |a| {
                println!(
                    "published {} version {}",
                    cell("plan", a.get("plan")),
                    cell("version", a.get("version"))
                );
            });
        }
        PlanCommand::List { .. } => {
            let answer = client.get(&["v1", "plans"], &[]).await?;
            show(client, &answer, |a| {
                print_list(
                    items(a, "plans"),
                    &["name", "version", "type", "created_at_ms"],
                    "no plans",
                )
            });
        }
        PlanCommand::Show { name, version, .. } => {
            let answer = match version {
                Some(v) => {
                    client
                        .get(&["v1", "plans", &name, "versions", &v.to_string()], &[])
                        .await?
                }
                None => client.get(&["v1", "plans", &name], &[]).await?,
            };
            show(client, &answer, |a| {
                println!(
                    "# plan {} version {}",
                    cell("plan", a.get("plan")),
                    cell("version", a.get("version"))
                );
                let body = a.get("body").unwrap_or(a);
                match serde_yaml_ng::to_string(body) {
                    Ok(yaml) => print!("{yaml}"),
                    Err(_) => print_json(body),
                }
            });
        }
        PlanCommand::Versions { name, .. } => {
            let answer = client.get(&["v1", "plans", &name, "versions"], &[]).await?;
            show(client, &answer, |a| {
                print_list(
                    items(a, "versions"),
                    &["version", "created_at_ms", "digest"],
                    "no versions",
                )
            });
        }
        PlanCommand::Diff { name, from, to, .. } => {
            let answer = client
                .get(
                    &["v1", "plans", &name, "diff"],
                    &[("from", from.to_string()), ("to", to.to_string())],
                )
                .await?;
            show(client, &answer, print_diff);
        }
    }
    Ok(())
}

/// A diff: what changed, node by node, then the unified diff of the two versions.
fn print_diff(answer: &Json) {
    let (from, to) = (cell("", answer.get("from")), cell("", answer.get("to")));
    if answer.get("identical") == Some(&Json::Bool(true)) {
        println!("versions {from} and {to} are identical");
        return;
    }
    let summary = answer.get("summary").unwrap_or(&Json::Null);
    let names = |key: &str| {
        items(summary, key)
            .iter()
            .map(|n| cell("", Some(n)))
            .collect::<Vec<_>>()
    };
    for node in names("nodes_added") {
        println!("+ node {node}");
    }
    for node in names("nodes_removed") {
        println!("- node {node}");
    }
    for node in items(summary, "nodes_changed") {
        println!(
            "~ node {}: {}",
            cell("", node.get("node")),
            cell("", node.get("changed"))
        );
    }
    for field in ["start", "type", "post_interaction", "description"] {
        if let Some(change) = summary.get(field).filter(|c| c.is_object()) {
            println!(
                "~ {field}: {} -> {}",
                cell("", change.get("from")),
                cell("", change.get("to"))
            );
        }
    }
    match answer.get("unified").and_then(Json::as_str) {
        Some(text) => {
            println!();
            print!("{text}");
        }
        None if summary.is_null() => print_json(answer),
        None => {}
    }
}
