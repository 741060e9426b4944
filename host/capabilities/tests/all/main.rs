//! Integration tests of coda-capabilities against real servers on loopback, each started and
//! stopped by its test: an HTTP server (axum), an SMTP server (coda-testkit's,
//! mailin's protocol engine on a tokio listener), SQLite in a temporary directory, and PostgreSQL from `CODA_TEST_POSTGRES`
//! (`./dev test` starts one).

mod email;
mod http;
mod postgres;
mod secrets;
mod sqlite;
mod support;
