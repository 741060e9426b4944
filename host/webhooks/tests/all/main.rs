//! coda-webhooks' tests: the projection and the delivery loop against a real store and a
//! loopback receiver.

mod delivery;
mod projection;
