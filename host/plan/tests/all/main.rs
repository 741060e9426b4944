//! The integration tests of coda-plan, as one binary.

mod examples;
mod fixtures;
mod parse;
mod validate;
