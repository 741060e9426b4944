//! `coda applet push|list|show|retire` against a service.

use std::path::PathBuf;

use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value as Json, json};

use super::output::{done, print_list, show};
use super::read_file;
use crate::client::{Body, Client, ClientArgs, Failure, cell, items, list_table, record_table};

/// The applet commands that talk to a service (beside the local `describe` and `invoke`).
#[derive(Subcommand)]
pub enum AppletCommand {
    /// Upload a component, or a signed vendor package, to the service; prints what it
    /// declares it needs
    Push {
        /// The component (.wasm) or vendor package (.codapkg)
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The tenant's applets on the service
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// One applet and its versions, or one version
    Show {
        name: String,
        version: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Retire a version: no new plan may use it
    Retire {
        name: String,
        version: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub(super) async fn applet(client: &Client, command: AppletCommand) -> Result<(), Failure> {
    match command {
        AppletCommand::Push { file, .. } => {
            let bytes = read_file(&file)?;
            // A package by its name or its bytes; the service checks which it is either way.
            let content_type = if coda_package::is_package(&bytes)
                || file
                    .extension()
                    .is_some_and(|e| e == coda_package::EXTENSION)
            {
                coda_package::CONTENT_TYPE
            } else {
                "application/wasm"
            };
            let answer = client
                .call(
                    Method::POST,
                    &["v1", "applets"],
                    &[],
                    Body::Bytes(bytes, content_type),
                )
                .await?;
            show(client, &answer, |a| {
                println!(
                    "{}",
                    record_table(
                        a,
                        &[
                            "name",
                            "version",
                            "vendor",
                            "digest",
                            "capabilities",
                            "coda_imports"
                        ],
                        &["config_schema", "package"]
                    )
                );
                print_needs(a);
            });
        }
        AppletCommand::List { .. } => {
            let answer = client.get(&["v1", "applets"], &[]).await?;
            show(client, &answer, |a| {
                let rows: Vec<Json> = items(a, "applets").iter().map(applet_row).collect();
                print_list(
                    &rows,
                    &["name", "versions", "origins", "description"],
                    "no applets",
                )
            });
        }
        AppletCommand::Show { name, version, .. } => {
            let answer = match &version {
                Some(v) => {
                    client
                        .get(&["v1", "applets", &name, "versions", v], &[])
                        .await?
                }
                None => client.get(&["v1", "applets", &name], &[]).await?,
            };
            show(client, &answer, |a| {
                println!(
                    "{}",
                    record_table(
                        a,
                        &["name", "version", "vendor", "description"],
                        &["versions", "config_schema", "package"]
                    )
                );
                print_needs(a);
                if let Some(versions) = a.get("versions").and_then(Json::as_array)
                    && versions.iter().any(Json::is_object)
                {
                    println!("\nversions:");
                    println!(
                        "{}",
                        list_table(
                            versions,
                            &[
                                "version",
                                "origin",
                                "retired",
                                "digest",
                                "capabilities",
                                "uploaded_at_ms",
                                "created_at_ms"
                            ]
                        )
                    );
                }
            });
        }
        AppletCommand::Retire { name, version, .. } => {
            let answer = client
                .call(
                    Method::DELETE,
                    &["v1", "applets", &name, "versions", &version],
                    &[],
                    Body::None,
                )
                .await?;
            done(client, &answer, &format!("retired {name} {version}"));
        }
    }
    Ok(())
}

/// A vendor package's declared needs, each with why, as the vendor signed them.
fn print_needs(applet: &Json) {
    let Some(needs) = applet
        .pointer("/package/manifest/capabilities")
        .and_then(Json::as_array)
    else {
        return;
    };
    let signer = applet.pointer("/package/signed_by").and_then(Json::as_str);
    println!(
        "\nsigned by {} ({})",
        cell("", applet.get("vendor")),
        signer.unwrap_or("?")
    );
    if !needs.is_empty() {
        println!("{}", list_table(needs, &["name", "why"]));
    }
}

/// An applet of the list as a row: its versions on one line, a retired one marked.
fn applet_row(applet: &Json) -> Json {
    let mut row = applet.clone();
    if let Some(versions) = applet.get("versions").and_then(Json::as_array) {
        let versions: Vec<String> = versions
            .iter()
            .map(|v| match v.get("version") {
                Some(version) if v.get("retired") == Some(&Json::Bool(true)) => {
                    format!("{} (retired)", cell("", Some(version)))
                }
                Some(version) => cell("", Some(version)),
                None => cell("", Some(v)),
            })
            .collect();
        row["versions"] = json!(versions);
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_applet_row_lists_its_versions_and_marks_the_retired() {
        let row = applet_row(
            &json!({"name": "sms", "origins": ["uploaded"], "versions": [
            {"version": "0.1.0", "retired": true}, {"version": "0.2.0", "retired": false}]}),
        );
        assert_eq!(
            cell("versions", row.get("versions")),
            "0.1.0 (retired), 0.2.0"
        );
    }
}
