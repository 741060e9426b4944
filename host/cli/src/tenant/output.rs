//! How an answer is printed: its JSON with `--json`, else a table or a line.

use serde_json::Value as Json;

use crate::client::{Client, list_table, print_json, record_table};

/// Prints the answer: its JSON with `--json`, else what `human` makes of it.
pub(super) fn show(client: &Client, answer: &Json, human: impl FnOnce(&Json)) {
    if client.json {
        print_json(answer);
    } else {
        human(answer);
    }
}

/// A one-line acknowledgement, or the answer's fields if it has any.
pub(super) fn done(client: &Client, answer: &Json, what: &str) {
    show(client, answer, |answer| {
        if answer.is_object() {
            println!("{}", record_table(answer, &[], &[]));
        } else {
            println!("{what}");
        }
    });
}

pub(super) fn print_list(items: &[Json], columns: &[&str], none: &str) {
    if items.is_empty() {
        println!("{none}");
    } else {
        println!("{}", list_table(items, columns));
    }
}
