"""{{name}}: greets the customer named in a data source.

A coda applet in Python, built with componentize-py against wit/world.wit (world `this-applet`):
the `Handler` class implements the exported `handler` interface (`describe`, `run`), and the
coda interfaces it calls (`data`, `state`, `log`; add `http`, `secrets`, ... to the world
first) are imported from `wit_world.imports`. WIT types as componentize-py gives them: records are dataclasses with
snake_case fields, a variant's cases are classes (`types.Value_Text("x")`), an import's
`result` error is raised as `Err(...)`, and `run` returns an outcome or raises
`Err(types.Failure(...))`.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import data, log, types

VERSION = "0.1.0"

# The node's configuration in a plan: the host checks it against this JSON Schema.
CONFIG_SCHEMA = {
    "type": "object",
    "properties": {
        "greeting": {"type": "string", "description": "The greeting to put before the name"}
    },
    "additionalProperties": False,
}


def failure(code: str, message: str, retryable: bool = False) -> Err:
    return Err(
        types.Failure(code=code, message=message, retryable=retryable, retry_after_millis=None)
    )


class Handler(exports.Handler):
    def describe(self) -> types.AppletInfo:
        return types.AppletInfo(
            name="{{name}}",
            version=VERSION,
            description="Greets the customer named in the CustomerName data source",
            exits=["greeted", "anonymous"],
            config_schema=json.dumps(CONFIG_SCHEMA),
            needs_live_party=False,
            # What a tenant is asked to grant, e.g. [types.Capability.HTTP].
            capabilities=[],
        )

    def run(self, invocation: types.Invocation) -> types.Outcome:
        config = json.loads(invocation.config or "{}")
        greeting = config.get("greeting", "Hello")

        name = data.get("CustomerName")
        if not isinstance(name, types.Value_Text) or not name.value.strip():
            log.log(log.Level.INFO, "no CustomerName: nobody to greet")
            return types.Outcome_Exit("anonymous")

        text = f"{greeting}, {name.value}!"
        log.log(log.Level.INFO, text)
        try:
            data.set("Greeting", types.Value_Text(text))
        except Err as e:  # a host error, e.g. the step's data limit reached
            raise failure("data", f"cannot set Greeting: {e.value}")
        return types.Outcome_Exit("greeted")
