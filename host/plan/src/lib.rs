//! Interaction plans: the graphs of applet nodes a flow runs, parsed and validated.
//!
//! A plan is written in YAML or JSON (the stored, canonical form is JSON):
//!
//! ```yaml
//! name: post-call
//! type: unattended          # default | message | unattended
//! start: outcome
//! nodes:
//!   outcome:
//!     applet: data-router@0.1.0
//!     config: { source: InteractionOutcome, rules: [{ equals: Sale }] }
//!     exits: { rule-1: thank }   # unwired exits (here `default`) end the run
//!   thank:
//!     applet: send-email@0.1.0
//!     config: { to: "{{CustomerEmail}}", subject: Thank you }
//!     error: log-failure    # where a failure of this step goes
//!   log-failure:
//!     applet: db-log@0.1.0
//! ```
//!
//! Each node runs one applet at an exact version and follows the exit the applet takes; an
//! exit left unwired ends the run, and a failure goes to the node's `error` target or ends
//! the run failed.
//!
//! # Design
//!
//! - **Two stages, as ripgrep parses its flags.** [`parse`] turns text into a [`Plan`] and
//!   stops at the first error of shape, since nothing after a syntax error can be trusted.
//!   [`validate`] then checks meaning and reports *every* problem at once, each located by a
//!   field path (`nodes.greet.exits.nxt`), because a plan author fixing a plan wants the
//!   whole list, not one error per round trip.
//! - **The outside world behind a trait.** What validation needs to know about installed
//!   applets and other plans is the [`Catalog`] trait; the store implements it over a
//!   tenant's data, and [`MemoryCatalog`] is the in-memory one the CLI and tests use.
//! - **Exact applet versions.** A node names `NAME@VERSION`, never a range, so installing a
//!   new version of an applet never changes a plan that was validated against the old one.
//! - **Bounded everywhere.** Input size, nesting depth, node count and config size are
//!   named constants below, so no plan, however hostile, makes parsing or validation
//!   panic, overflow the stack or run for long. A config's JSON Schema comes from an applet
//!   (code the host does not trust) and is compiled offline: a `$ref` never reaches the
//!   network or the file system.
//! - **Cycles must be broken.** A plan may loop (retry after a pause, say), but every cycle
//!   must pass through one of the [`CYCLE_BREAKERS`], so that no run spins forever.
//!
//! **Architecture Invariant:** this crate depends on no wasmtime crate. The flow side sees
//! applets only as [`coda_types::AppletInfo`], what their `describe` said.

mod catalog;
mod parse;
mod plan;
mod problem;
mod validate;

pub use catalog::{Catalog, MemoryCatalog, compare_versions};
pub use parse::{Format, parse, parse_as};
pub use plan::{AppletRef, AppletRefError, Node, Plan, PlanType, is_valid_node_id};
pub use problem::Problem;
pub use validate::validate;

/// The most nodes a plan may have (Amazon Connect's cap on blocks in a flow).
pub const MAX_NODES: usize = 250;

/// The most bytes a node's config may take as compact JSON.
pub const MAX_CONFIG_BYTES: usize = 64 * 1024;

/// The most bytes of plan text [`parse`] accepts; longer input is refused before parsing.
pub const MAX_PLAN_BYTES: usize = 1024 * 1024;

/// The deepest nesting of arrays and objects a plan may have. serde_json and serde_yaml_ng
/// stop at this depth on their own; [`parse`] also checks YAML for it before handing the
/// text to libyaml, whose scanner slows down with depth (the check every YAML reader of the
/// host makes: [`coda_types::yaml`]).
pub use coda_types::yaml::MAX_NESTING;

/// The longest plan or applet name, in bytes; see [`is_valid_name`].
pub use coda_types::names::MAX_NAME_LEN;

/// The longest node id, in bytes; see [`is_valid_node_id`].
pub const MAX_NODE_ID_LEN: usize = 64;

/// The most schema errors [`validate`] reports for one node's config; the rest are counted
/// in one further problem.
pub const MAX_CONFIG_PROBLEMS: usize = 32;

/// The built-in applets that may sit on a cycle, by name: each bounds how often or how fast a
/// run goes round.
///
/// - `loop-counter` takes its `exhausted` exit after a configured number of passes;
/// - `pause` parks the run for a configured time before going on;
/// - `wait-for-event` parks the run until an event arrives or a timeout passes.
///
/// A cycle with none of them on it could spin as fast as the host can run it, forever, so
/// [`validate`] refuses it. Names are matched whatever the version, so whoever installs
/// applets must keep these names for the built-ins: a tenant's own applet called `pause`
/// would otherwise pass as a breaker.
pub const CYCLE_BREAKERS: [&str; 3] = ["loop-counter", "pause", "wait-for-event"];

pub use coda_types::names::{is_exact_version, is_valid_name};
