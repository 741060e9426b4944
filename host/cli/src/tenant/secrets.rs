//! `coda secret set|list|delete` against a service: a value is read from a file or
//! stdin, never from the arguments.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value as Json, json};

use super::output::{done, print_list, show};
use super::read_text;
use crate::client::{Body, Client, ClientArgs, Failure, cell, items};

#[derive(Subcommand)]
pub enum SecretCommand {
    /// Set a secret: the value from stdin, or --value-file (never an argument: other users
    /// can read a process's arguments)
    Set {
        name: String,
        /// Read the value from this file instead of stdin
        #[arg(long)]
        value_file: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The names of the tenant's secrets (values are never shown)
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    Delete {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// A secret's value: from the file, else stdin; one trailing newline (as `echo` adds) is
/// not part of it.
fn secret_value(value_file: Option<&Path>) -> Result<String, Failure> {
    let mut value = match value_file {
        Some(file) => read_text(file)?,
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprintln!("reading the secret's value from stdin (end with Ctrl-D):");
            }
            let mut value = String::new();
            stdin
                .lock()
                .read_to_string(&mut value)
                .map_err(|e| Failure::new(2, "io", format!("cannot read stdin: {e}")))?;
            value
        }
    };
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    if value.is_empty() {
        return Err(Failure::usage("the secret's value is empty"));
    }
    Ok(value)
}

pub(super) async fn secret(client: &Client, command: SecretCommand) -> Result<(), Failure> {
    match command {
        SecretCommand::Set {
            name, value_file, ..
        } => {
            let value = secret_value(value_file.as_deref())?;
            let answer = client
                .call(
                    Method::PUT,
                    &["v1", "secrets", &name],
                    &[],
                    Body::Json(json!({ "value": value })),
                )
                .await?;
            done(client, &answer, &format!("secret {name} set"));
        }
        SecretCommand::List { .. } => {
            let answer = client.get(&["v1", "secrets"], &[]).await?;
            show(client, &answer, |a| {
                let secrets = items(a, "secrets");
                if secrets.iter().all(Json::is_string) {
                    if secrets.is_empty() {
                        println!("no secrets");
                    }
                    for name in secrets {
                        println!("{}", cell("", Some(name)));
                    }
                } else {
                    print_list(
                        secrets,
                        &["name", "created_at_ms", "updated_at_ms"],
                        "no secrets",
                    );
                }
            });
        }
        SecretCommand::Delete { name, .. } => {
            let answer = client
                .call(Method::DELETE, &["v1", "secrets", &name], &[], Body::None)
                .await?;
            done(client, &answer, &format!("secret {name} deleted"));
        }
    }
    Ok(())
}
