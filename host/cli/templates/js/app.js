// {{name}}: greets the customer named in a data source.
//
// A coda applet in JavaScript, built with ComponentizeJS against wit/world.wit (world
// `this-applet`): the exported `handler` interface is this module's `handler` object (`describe`,
// `run`), and the coda interfaces it calls are ES modules named by interface and version
// ('coda:applet/data@0.1.0', 'coda:applet/http@0.1.0', ...). WIT types as ComponentizeJS
// gives them: records are objects with camelCase fields, variants `{tag, val}`, enums
// strings, s64/u64 BigInts, list<u8> Uint8Arrays; an import's `result` error is thrown (the
// host-error in its `payload`), and `run` returns an outcome or throws a failure record.

import { get, set } from 'coda:applet/data@0.1.0';
import { log } from 'coda:applet/log@0.1.0';

const VERSION = '0.1.0';

// The node's configuration in a plan: the host checks it against this JSON Schema.
const CONFIG_SCHEMA = {
  type: 'object',
  properties: {
    greeting: { type: 'string', description: 'The greeting to put before the name' },
  },
  additionalProperties: false,
};

function failure(code, message, retryable = false) {
  return { code, message, retryable, retryAfterMillis: undefined };
}

export const handler = {
  describe() {
    return {
      name: '{{name}}',
      version: VERSION,
      description: 'Greets the customer named in the CustomerName data source',
      exits: ['greeted', 'anonymous'],
      configSchema: JSON.stringify(CONFIG_SCHEMA),
      needsLiveParty: false,
      // What a tenant is asked to grant, e.g. ['http'].
      capabilities: [],
    };
  },

  run(invocation) {
    const config = JSON.parse(invocation.config || '{}');
    const greeting = config.greeting ?? 'Hello';

    const name = get('CustomerName');
    if (name?.tag !== 'text' || !name.val.trim()) {
      log('info', 'no CustomerName: nobody to greet');
      return { tag: 'exit', val: 'anonymous' };
    }

    const text = `${greeting}, ${name.val}!`;
    log('info', text);
    try {
      set('Greeting', { tag: 'text', val: text });
    } catch (e) {
      // A host error, e.g. the step's data limit reached.
      throw failure('data', `cannot set Greeting: ${JSON.stringify(e.payload ?? String(e))}`);
    }
    return { tag: 'exit', val: 'greeted' };
  },
};
