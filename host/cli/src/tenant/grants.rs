//! `coda grant set|list|delete` against a service.

use std::path::PathBuf;

use clap::Subcommand;
use reqwest::Method;
use serde_json::{Map, Value as Json, json};

use super::output::{done, print_list, show};
use super::read_text;
use crate::client::{Body, Client, ClientArgs, Failure, items};

#[derive(Subcommand)]
pub enum GrantCommand {
    /// Grant an applet capabilities: from FILE (YAML or JSON), or from the flags
    Set {
        applet: String,
        /// The grant as a file, e.g. `{http: [api.twilio.com], secrets: [twilio-auth-token]}`
        #[arg(conflicts_with_all = ["http", "email", "sql", "secret", "interactions", "kv"])]
        file: Option<PathBuf>,
        /// An outbound host pattern the applet may call (repeatable)
        #[arg(long, value_name = "PATTERN")]
        http: Vec<String>,
        /// The applet may send email
        #[arg(long)]
        email: bool,
        /// A database the applet may query (repeatable)
        #[arg(long, value_name = "DATABASE")]
        sql: Vec<String>,
        /// A secret the applet may read (repeatable)
        #[arg(long, value_name = "NAME")]
        secret: Vec<String>,
        /// The applet may create follow-up interactions
        #[arg(long)]
        interactions: bool,
        /// A key prefix of the tenant's key-value store the applet may use (repeatable;
        /// `""` for every key)
        #[arg(long, value_name = "PREFIX")]
        kv: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The grants of every applet
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Take every grant from an applet
    Delete {
        applet: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// A grant from the flags: only what was given, so the server's defaults (nothing) hold
/// for the rest.
pub(super) fn grant_from_flags(
    http: Vec<String>,
    email: bool,
    sql: Vec<String>,
    secret: Vec<String>,
    interactions: bool,
    kv: Vec<String>,
) -> Json {
    let mut grant = Map::new();
    if !http.is_empty() {
        grant.insert("http".into(), json!(http));
    }
    if email {
        grant.insert("email".into(), json!(true));
    }
    if !sql.is_empty() {
        grant.insert("sql".into(), json!(sql));
    }
    if !secret.is_empty() {
        grant.insert("secrets".into(), json!(secret));
    }
    if interactions {
        grant.insert("interactions".into(), json!(true));
    }
    if !kv.is_empty() {
        grant.insert("kv".into(), json!(kv));
    }
    Json::Object(grant)
}

pub(super) async fn grant(client: &Client, command: GrantCommand) -> Result<(), Failure> {
    match command {
        GrantCommand::Set {
            applet,
            file,
            http,
            email,
            sql,
            secret,
            interactions,
            kv,
            ..
        } => {
            let body = match file {
                Some(file) => {
                    let text = read_text(&file)?;
                    // YAML reads JSON as well; the server names any field it refuses.
                    coda_types::yaml::from_str::<Json>(&text).map_err(|e| match e {
                        coda_types::yaml::Error::Refused(refused) => {
                            Failure::usage(format!("{}: the file {refused}", file.display()))
                        }
                        e => Failure::usage(format!("{}: not YAML or JSON: {e}", file.display())),
                    })?
                }
                None => grant_from_flags(http, email, sql, secret, interactions, kv),
            };
            let answer = client
                .call(
                    Method::PUT,
                    &["v1", "grants", &applet],
                    &[],
                    Body::Json(body),
                )
                .await?;
            done(client, &answer, &format!("granted {applet}"));
        }
        GrantCommand::List { .. } => {
            let answer = client.get(&["v1", "grants"], &[]).await?;
            show(client, &answer, print_grants);
        }
        GrantCommand::Delete { applet, .. } => {
            let answer = client
                .call(Method::DELETE, &["v1", "grants", &applet], &[], Body::None)
                .await?;
            done(client, &answer, &format!("revoked the grants of {applet}"));
        }
    }
    Ok(())
}

/// Grants as a table, whether the server lists them or maps applets to them.
fn print_grants(answer: &Json) {
    let columns = [
        "applet",
        "http",
        "email",
        "sql",
        "secrets",
        "interactions",
        "kv",
    ];
    let grants = answer.get("grants").unwrap_or(answer);
    match grants {
        Json::Object(by_applet) => {
            let rows: Vec<Json> = by_applet
                .iter()
                .map(|(applet, grant)| {
                    let mut row = grant.clone();
                    if let Some(object) = row.as_object_mut() {
                        object.insert("applet".into(), json!(applet));
                    }
                    row
                })
                .collect();
            print_list(&rows, &columns, "no grants");
        }
        // `[{applet, grant: {...}, updated_at_ms}]`: the grant's fields as columns.
        _ => {
            let rows: Vec<Json> = items(answer, "grants")
                .iter()
                .map(|item| {
                    let mut row = item.clone();
                    if let (Some(row), Some(grant)) = (
                        row.as_object_mut(),
                        item.get("grant").and_then(Json::as_object),
                    ) {
                        row.remove("grant");
                        row.extend(grant.clone());
                    }
                    row
                })
                .collect();
            print_list(&rows, &columns, "no grants")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_from_flags_carry_only_what_was_given() {
        assert_eq!(
            grant_from_flags(
                vec!["api.twilio.com".into()],
                false,
                vec![],
                vec!["t".into()],
                true,
                vec![]
            ),
            json!({"http": ["api.twilio.com"], "secrets": ["t"], "interactions": true})
        );
        assert_eq!(
            grant_from_flags(
                vec![],
                false,
                vec![],
                vec![],
                false,
                vec!["contact/".into()]
            ),
            json!({"kv": ["contact/"]})
        );
    }
}
