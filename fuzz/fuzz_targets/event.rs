//! What arrives from outside as text: the event bodies `POST /v1/interactions/events` takes
//! (parsed exactly as the API parses them), and YAML documents through the host's one
//! bounded YAML reader (`coda_types::yaml`). The first byte chooses. (A post-flow action's
//! CEL expressions are no longer evaluated by the host: the built-in `set-data` applet does,
//! in the sandbox.)
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
    // YAML as the host reads it everywhere (plans, fixtures, manifests, settings): bounded
    // in nesting and in what its aliases expand to before anything is built.
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let _ = coda_types::yaml::from_str::<serde_json::Value>(text);
});
