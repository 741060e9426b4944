// webhook-notify: POSTs a run's data sources as JSON to a webhook, through coda's `http`
// capability, with the step's idempotency key as the `Idempotency-Key` header.
//
// Built with ComponentizeJS against `coda:applet@0.1.0` (wit/v0.1.0, world `applet`): the
// `handler` export is this module's `handler` object; the imports are ES modules named by
// their interface. WIT types as ComponentizeJS gives them: records are objects with
// camelCase fields, variants `{tag, val}`, enums strings, s64/u64 BigInts, list<u8>
// Uint8Arrays; an import's `result` error is thrown, and so is an export's.

import { get, set } from 'coda:applet/data@0.1.0';
import { log } from 'coda:applet/log@0.1.0';
import { send } from 'coda:applet/http@0.1.0';

const NAME = 'webhook-notify';
const VERSION = '0.1.0';
const CONFIG_SCHEMA = {
  type: 'object',
  required: ['url'],
  properties: {
    url: { type: 'string' },
    fields: { type: 'array', items: { type: 'string' } },
  },
  additionalProperties: false,
};

/** The `failure` record of the WIT, thrown from `run` as its `result`'s error. */
function failure(code, message, retryable = false) {
  return { code, message, retryable, retryAfterMillis: undefined };
}

/** A data-source value as JSON. */
function toJson(value) {
  switch (value.tag) {
    case 'null':
      return null;
    case 'integer':
      // s64 arrives as a BigInt: a Number when it is exact, else its decimal text.
      return Number.isSafeInteger(Number(value.val)) ? Number(value.val) : value.val.toString();
    case 'json':
      return JSON.parse(value.val);
    default: // boolean, number, text
      return value.val;
  }
}

/** The host-error an import threw: `{tag, val}`, whichever way it is wrapped. */
function hostError(e) {
  const error = e && typeof e === 'object' && 'payload' in e ? e.payload : e;
  if (error && typeof error === 'object' && typeof error.tag === 'string') return error;
  return { tag: 'invalid', val: String(e) };
}

export const handler = {
  describe() {
    return {
      name: NAME,
      version: VERSION,
      description:
        'POSTs {interaction, run, data} (the data sources named in fields) to a webhook url ' +
        'with the step\'s Idempotency-Key; sets WebhookStatus; exits sent on 2xx, failed otherwise.',
      exits: ['sent', 'failed'],
      configSchema: JSON.stringify(CONFIG_SCHEMA),
      needsLiveParty: false,
      capabilities: ['http'],
    };
  },

  run(invocation) {
    try {
      return notify(invocation);
    } catch (e) {
      // A failure record goes to the host as it is; anything else thrown is a bug here.
      if (e && typeof e === 'object' && typeof e.code === 'string' && 'retryable' in e) throw e;
      throw failure('internal', `webhook-notify: ${e}`);
    }
  },
};

/** One POST; see describe(). */
function notify(invocation) {
  let config;
  try {
    config = JSON.parse(invocation.config || '{}');
  } catch (e) {
    throw failure('bad-config', `the config is not JSON: ${e.message}`);
  }
  const fields = config.fields ?? [];
  if (typeof config.url !== 'string' || !Array.isArray(fields) ||
      !fields.every((f) => typeof f === 'string')) {
    throw failure('bad-config', 'url must be a string and fields a list of strings');
  }

  const context = invocation.context;
  const data = {};
  for (const name of fields) {
    const value = get(name);
    if (value !== undefined && value !== null) data[name] = toJson(value);
  }
  const body = JSON.stringify({ interaction: context.interaction ?? null, run: context.run, data });

  let response;
  try {
    response = send({
      method: 'POST',
      url: config.url,
      headers: [
        { name: 'Content-Type', value: 'application/json' },
        { name: 'Idempotency-Key', value: context.idempotencyKey },
      ],
      body: new TextEncoder().encode(body),
      timeoutMillis: undefined,
    });
  } catch (e) {
    const error = hostError(e);
    log('warn', `POST ${config.url}: ${error.tag}: ${error.val}`);
    throw failure(error.tag, `POST ${config.url}: ${error.val}`, error.tag === 'unavailable');
  }

  const status = response.status;
  try {
    set('WebhookStatus', { tag: 'integer', val: BigInt(status) });
  } catch (e) {
    const error = hostError(e);
    throw failure(error.tag, `cannot set WebhookStatus: ${error.val}`);
  }
  const sent = status >= 200 && status < 300;
  log(sent ? 'info' : 'warn', `POST ${config.url}: ${status}`);
  return { tag: 'exit', val: sent ? 'sent' : 'failed' };
}
