//! `coda run PLAN --event E --dry-run`: the flow runs for real (every applet, every
//! decision, on a throwaway database and the virtual clock), but no capability call is
//! performed. The calls are answered by the harness's fixture layer
//! ([`coda_harness::dry_run`]); this module reads the `--fixture` and `--grants` files and
//! hands the layer to the engine.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use coda_capabilities::Settings;
use coda_flow::CapabilitySource;
use coda_harness::Fixture;
use coda_harness::dry_run::{self, GrantCheck, WouldBe};
use coda_plan::AppletRef;
use coda_runtime::capabilities::Capabilities;

use crate::Exit;

/// The capability source of a dry run.
pub struct DryRun {
    calls: dry_run::DryRun,
    /// Secrets from `--grants`, grant-checked, when the fixtures do not give them.
    real: Arc<dyn CapabilitySource>,
    /// The grants of `--grants`: a call they refuse is answered `not-granted`, as it
    /// would be for real. Without them every call is answered.
    grants: Option<Arc<Settings>>,
}

impl DryRun {
    /// Reads the fixtures: each answers for the node its `context.node` names.
    /// `is_node` says whether a node name is one of the plans' (the plan run and those it
    /// may route to): a fixture for no node would answer nothing, silently, so it is refused.
    pub fn new(
        fixtures: &[PathBuf],
        real: Arc<dyn CapabilitySource>,
        grants: Option<&std::path::Path>,
        is_node: impl Fn(&str) -> bool,
    ) -> Result<Self, Exit> {
        let grants = grants
            .map(|file| {
                Settings::from_file(file)
                    .map(Arc::new)
                    .map_err(|e| Exit::usage("invalid-grants", format!("{}: {e}", file.display())))
            })
            .transpose()?;
        let mut answers = Vec::new();
        for path in fixtures {
            let fixture = Fixture::from_file(path)
                .map_err(|e| Exit::usage("invalid-fixture", e.to_string()))?;
            let Some(node) = fixture.context.node.clone() else {
                return Err(Exit::usage(
                    "invalid-fixture",
                    format!(
                        "{}: a dry run's fixture names the node it answers for in \
                         `context.node` (as `coda runs show ID --as-fixture` writes it)",
                        path.display()
                    ),
                ));
            };
            if !is_node(&node) {
                return Err(Exit::usage(
                    "invalid-fixture",
                    format!(
                        "{}: `context.node` is `{node}`, which is no node of the plans given",
                        path.display()
                    ),
                ));
            }
            answers.push((node, fixture));
        }
        Ok(DryRun {
            calls: dry_run::DryRun::new(answers),
            real,
            grants,
        })
    }

    /// The effects that would have happened, in the order they were asked for.
    pub fn effects(&self) -> Vec<WouldBe> {
        self.calls.effects()
    }

    /// Recorded answers no call used, by node.
    pub fn unused(&self) -> BTreeMap<String, usize> {
        self.calls.unused()
    }
}

impl CapabilitySource for DryRun {
    fn for_applet(&self, tenant: &str, applet: &AppletRef) -> Arc<dyn Capabilities> {
        let grants = self.grants.clone().map(|settings| {
            let (tenant, name, version) = (
                tenant.to_owned(),
                applet.name().to_owned(),
                applet.version().to_owned(),
            );
            let check: GrantCheck = Arc::new(move |call| {
                coda_capabilities::grants::check_call(&settings, &tenant, &name, &version, call)
            });
            check
        });
        self.calls
            .for_applet(self.real.for_applet(tenant, applet), grants)
    }
}
