"""survey-score: a post-call survey's 0-10 answer, sorted into an NPS category.

Built with componentize-py against `coda:applet@0.1.0` (wit/v0.1.0, world `applet`): this
module's `Handler` class implements the exported `handler` interface; `data` and `log` are
the imports it uses. Build: `./dev test` (or the command in README.md).
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import data, log, types

NAME = "survey-score"
VERSION = "0.1.0"
DEFAULT_SOURCE = "SurveyScore"
EXITS = ["promoter", "passive", "detractor", "missing"]
CONFIG_SCHEMA = {
    "type": "object",
    "properties": {"score_from": {"type": "string"}},
    "additionalProperties": False,
}


class BadScore(Exception):
    """The source holds something that is not a score from 0 to 10."""


def failure(code: str, message: str) -> Err:
    return Err(types.Failure(code=code, message=message, retryable=False, retry_after_millis=None))


def score_of(value: types.Value) -> int | None:
    """The score a data-source value holds; None when it holds none (null, empty text)."""
    if isinstance(value, types.Value_Null):
        return None
    if isinstance(value, types.Value_Integer):
        score = value.value
    elif isinstance(value, types.Value_Number):
        if not float(value.value).is_integer():
            raise BadScore(f"{value.value} is not a whole number")
        score = int(value.value)
    elif isinstance(value, types.Value_Text):
        text = value.value.strip()
        if not text:
            return None
        try:
            score = int(text)
        except ValueError:
            raise BadScore(f"{value.value!r} is not a number") from None
    else:
        raise BadScore(f"a {type(value).__name__.removeprefix('Value_').lower()} is not a score")
    if not 0 <= score <= 10:
        raise BadScore(f"{score} is not between 0 and 10")
    return score


def category(score: int) -> str:
    if score >= 9:
        return "promoter"
    if score >= 7:
        return "passive"
    return "detractor"


class Handler(exports.Handler):
    def describe(self) -> types.AppletInfo:
        return types.AppletInfo(
            name=NAME,
            version=VERSION,
            description="Sorts a survey's 0-10 score (config score_from, default SurveyScore) "
            "into an NPS category: sets NpsCategory and exits promoter, passive or detractor; "
            "missing when there is no score.",
            exits=EXITS,
            config_schema=json.dumps(CONFIG_SCHEMA),
            needs_live_party=False,
            capabilities=[],
        )

    def run(self, invocation: types.Invocation) -> types.Outcome:
        try:
            config = json.loads(invocation.config or "{}")
        except ValueError as e:
            raise failure("bad-config", f"the config is not JSON: {e}")
        if not isinstance(config, dict) or not isinstance(config.get("score_from", ""), str):
            raise failure("bad-config", "score_from must be a string")
        source = config.get("score_from") or DEFAULT_SOURCE

        value = data.get(source)
        try:
            score = None if value is None else score_of(value)
        except BadScore as e:
            log.log(log.Level.WARN, f"{source}: {e}")
            raise failure("bad-score", f"{source}: {e}")
        if score is None:
            log.log(log.Level.INFO, f"no score in {source}")
            return types.Outcome_Exit("missing")

        nps = category(score)
        try:
            data.set("NpsCategory", types.Value_Text(nps))
        except Err as e:
            raise failure("data", f"cannot set NpsCategory: {e.value}")
        log.log(log.Level.INFO, f"{source} = {score}: {nps}")
        return types.Outcome_Exit(nps)
