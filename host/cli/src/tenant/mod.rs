//! The tenant CLI: `coda applet push|list|show|retire`, `coda plan push|validate|list|show|
//! diff`, `coda runs …`, `coda interaction …`, `coda grant …`, `coda secret …`, each a thin
//! mapping of its arguments onto one endpoint of a running service (README: "The service"),
//! printing a table, or the API's JSON with `--json`.
//!
//! One module per resource (`applets`, `plans`, `runs`, `interactions`, `grants`,
//! `secrets`), each holding its commands' arguments and their mapping; `tail` is the live
//! tail, `edit` the JSON patch `coda interaction edit` sends, `output` how an answer is
//! printed. Tables are `crate::client`'s.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::client::{Client, ClientArgs, Failure, report};

mod applets;
mod edit;
mod grants;
mod interactions;
mod output;
mod plans;
mod runs;
mod secrets;
mod tail;

pub use applets::AppletCommand;
pub use grants::GrantCommand;
pub use interactions::InteractionCommand;
pub use plans::PlanCommand;
pub use runs::RunsCommand;
pub use secrets::SecretCommand;

use applets::applet;
use grants::grant;
use interactions::interaction;
use plans::{plan, validate};
use runs::runs;
use secrets::secret;

/// A tenant command, whichever group it came from.
pub enum TenantCommand {
    Applet(AppletCommand),
    Plan(PlanCommand),
    /// `coda plan validate FILE` against the service.
    Validate {
        file: PathBuf,
        client: ClientArgs,
    },
    Runs(RunsCommand),
    Interaction(InteractionCommand),
    Grant(GrantCommand),
    Secret(SecretCommand),
}

impl TenantCommand {
    fn client_args(&self) -> &ClientArgs {
        use AppletCommand as A;
        use GrantCommand as G;
        use InteractionCommand as I;
        use PlanCommand as P;
        use RunsCommand as R;
        use SecretCommand as S;
        match self {
            TenantCommand::Applet(
                A::Push { client, .. }
                | A::List { client }
                | A::Show { client, .. }
                | A::Retire { client, .. },
            )
            | TenantCommand::Plan(
                P::Push { client, .. }
                | P::List { client }
                | P::Show { client, .. }
                | P::Versions { client, .. }
                | P::Diff { client, .. },
            )
            | TenantCommand::Validate { client, .. }
            | TenantCommand::Runs(
                R::List { client, .. }
                | R::Show { client, .. }
                | R::Tail { client, .. }
                | R::Cancel { client, .. }
                | R::Retry { client, .. },
            )
            | TenantCommand::Interaction(
                I::Event { client, .. }
                | I::Show { client, .. }
                | I::Edit { client, .. }
                | I::Audit { client, .. }
                | I::Clone { client, .. }
                | I::Disposition { client, .. },
            )
            | TenantCommand::Grant(
                G::Set { client, .. } | G::List { client } | G::Delete { client, .. },
            )
            | TenantCommand::Secret(
                S::Set { client, .. } | S::List { client } | S::Delete { client, .. },
            ) => client,
        }
    }
}

/// Runs a tenant command: prints its answer, or its failure, and gives the exit status.
pub async fn run(command: TenantCommand) -> ExitCode {
    let json_mode = command.client_args().json;
    let result = async {
        let client = Client::new(command.client_args())?;
        dispatch(&client, command).await
    }
    .await;
    report(json_mode, result)
}

async fn dispatch(client: &Client, command: TenantCommand) -> Result<(), Failure> {
    match command {
        TenantCommand::Applet(command) => applet(client, command).await,
        TenantCommand::Plan(command) => plan(client, command).await,
        TenantCommand::Validate { file, .. } => validate(client, &file).await,
        TenantCommand::Runs(command) => runs(client, command).await,
        TenantCommand::Interaction(command) => interaction(client, command).await,
        TenantCommand::Grant(command) => grant(client, command).await,
        TenantCommand::Secret(command) => secret(client, command).await,
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure::io(path, e))
}

/// A text file sent as a request body (a plan, a config, a secret's value): one larger than
/// the API takes (`coda_server::MAX_BODY_BYTES`) is refused before it is read whole.
fn read_text(path: &Path) -> Result<String, Failure> {
    coda_types::files::read_text_capped(path, coda_server::MAX_BODY_BYTES as u64).map_err(|e| {
        match e {
            coda_types::files::ReadError::Io { source, .. } => Failure::io(path, source),
            other => Failure::usage(other.to_string()),
        }
    })
}
