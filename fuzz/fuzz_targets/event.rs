//! What arrives with an interaction: the event bodies `POST /v1/interactions/events` takes
//! (parsed exactly as the API parses them), and the CEL expressions a post-flow action's
//! invocation data is written in, evaluated over data sources. The first byte chooses.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if let Ok(event) = serde_json::from_slice::<coda_flow::InteractionEvent>(rest) {
            // Every event names its interaction.
            let _ = event.interaction().len();
        }
        return;
    }
    let Ok(expression) = std::str::from_utf8(rest) else {
        return;
    };
    let mut sources = coda_types::Values::new();
    sources.insert("CLID".into(), coda_types::Value::Text("+15550100".into()));
    sources.insert("Visits".into(), coda_types::Value::Integer(3));
    sources.insert(
        "Order".into(),
        coda_types::Value::Json(r#"{"id": "A-1", "items": [1, 2, 3]}"#.into()),
    );
    let _ = coda_flow::evaluate_expression(expression, &sources);
});
