// Checks an OTLP/HTTP JSON ExportTraceServiceRequest against the opentelemetry-proto definitions that
// @opentelemetry/otlp-transformer ships (compiled for protobufjs).
//
//   node otlp_check.js request.json
//
// OTLP's JSON differs from protobuf's canonical JSON only in the ids, which are hex instead of base64: they are
// converted to bytes first (and must be lower-case hex of the right length). The message is then built with
// fromObject, verified, encoded to the protobuf wire format, decoded again and turned back into an object.
// Every field of the input must survive that round trip with its value: a misspelt field name, a wrong type or
// an enum given by name would not. Exit status 0 and one summary line per span on stdout when the request is
// valid; exit status 1 and the reason on stderr otherwise.
'use strict';

const fs = require('fs');
const path = require('path');

const transformerDir = path.dirname(require.resolve('@opentelemetry/otlp-transformer/package.json'));
const root = require(path.join(transformerDir, 'build/src/generated/root.js'));
const Request = root.opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest;

function fail(message) {
  process.stderr.write(`otlp_check: ${message}\n`);
  process.exit(1);
}

const ID_LENGTHS = { traceId: 32, spanId: 16, parentSpanId: 16 };

// Replaces hex ids by bytes, in place; checks their spelling.
function idsToBytes(node, where) {
  if (Array.isArray(node)) {
    node.forEach((item, i) => idsToBytes(item, `${where}[${i}]`));
    return;
  }
  if (node === null || typeof node !== 'object') return;
  for (const [key, value] of Object.entries(node)) {
    if (key in ID_LENGTHS && typeof value === 'string') {
      if (!new RegExp(`^[0-9a-f]{${ID_LENGTHS[key]}}$`).test(value)) {
        fail(`${where}.${key}: expected ${ID_LENGTHS[key]} lower-case hex characters, got ${JSON.stringify(value)}`);
      }
      node[key] = Buffer.from(value, 'hex');
    } else {
      idsToBytes(value, `${where}.${key}`);
    }
  }
}

function isDefault(value) {
  return value === 0 || value === '0' || value === '' || value === false ||
    (Array.isArray(value) && value.length === 0);
}

// Every leaf of `input` must be in `output` with the same value (proto3 drops default values, so those may be absent).
function compare(input, output, where) {
  if (Buffer.isBuffer(input)) {
    const out = output === undefined ? '' : Buffer.from(output, 'base64').toString('hex');
    if (input.toString('hex') !== out) fail(`${where}: ${input.toString('hex')} came back as ${out}`);
    return;
  }
  if (Array.isArray(input)) {
    if (!Array.isArray(output) || output.length !== input.length) fail(`${where}: array length changed`);
    input.forEach((item, i) => compare(item, output[i], `${where}[${i}]`));
    return;
  }
  if (input !== null && typeof input === 'object') {
    if (output === undefined && Object.keys(input).length === 0) return;
    if (output === null || typeof output !== 'object') fail(`${where}: object lost`);
    for (const [key, value] of Object.entries(input)) {
      if (!(key in output)) {
        if (isDefault(value)) continue;
        fail(`${where}.${key}: not a field of the OTLP message (lost in the protobuf round trip)`);
      }
      compare(value, output[key], `${where}.${key}`);
    }
    return;
  }
  if (String(input) !== String(output)) {
    fail(`${where}: ${JSON.stringify(input)} came back as ${JSON.stringify(output)}`);
  }
  if (typeof input !== typeof output && !(typeof input === 'string' && typeof output === 'string')) {
    fail(`${where}: ${typeof input} came back as ${typeof output}`);
  }
}

function attributesText(attributes) {
  return (attributes || []).map((a) => `${a.key}=${JSON.stringify(a.value)}`).join(';');
}

const file = process.argv[2];
if (!file) fail('usage: node otlp_check.js request.json');
let input;
try {
  input = JSON.parse(fs.readFileSync(file, 'utf8'));
} catch (e) {
  fail(`not JSON: ${e.message}`);
}
const original = JSON.parse(JSON.stringify(input));
idsToBytes(input, '$');
// verify() checks a message's field types (int64 fields as Long objects, as fromObject makes them from the
// decimal strings that OTLP JSON uses).
const message = Request.fromObject(input);
const problem = Request.verify(message);
if (problem) fail(`verify: ${problem}`);
const wire = Request.encode(message).finish();
const decoded = Request.decode(wire);
const output = Request.toObject(decoded, { longs: String, enums: Number, bytes: String });
compare(input, output, '$');

// The summary, from the decoded message (ids back to hex), so the caller can check values.
const hex = (b64) => Buffer.from(b64 || '', 'base64').toString('hex');
for (const rs of output.resourceSpans || []) {
  console.log(`resource ${attributesText(rs.resource && rs.resource.attributes)}`);
  for (const ss of rs.scopeSpans || []) {
    for (const s of ss.spans || []) {
      console.log(`span ${hex(s.traceId)} ${hex(s.spanId)} parent=${hex(s.parentSpanId)} name=${s.name} ` +
        `kind=${s.kind || 0} start=${s.startTimeUnixNano} end=${s.endTimeUnixNano} flags=${s.flags || 0} ` +
        `status=${(s.status && s.status.code) || 0}:${(s.status && s.status.message) || ''} ` +
        `attrs=${attributesText(s.attributes)} dropped_links=${s.droppedLinksCount || 0}`);
      for (const l of s.links || []) {
        console.log(`link ${hex(l.traceId)} ${hex(l.spanId)} flags=${l.flags || 0} attrs=${attributesText(l.attributes)}`);
      }
    }
  }
}
