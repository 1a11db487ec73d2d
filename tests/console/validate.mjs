// Checks the console's GraphQL documents against the schema.
// Usage: node validate.mjs SCHEMA.graphql APP.js   (graphql must be importable)
//
// Every document in app.js is a tagged template gql`…` without interpolation, each one
// complete named operation. Each is parsed and validated with graphql-js; names must be
// unique. The enum values app.js offers in its forms (the JSON object between the
// `schema-enums` markers) must be exactly the schema's.
import { readFileSync } from 'node:fs';
import { buildSchema, parse, validate, Kind, GraphQLEnumType } from 'graphql';

const [schemaPath, appPath] = process.argv.slice(2);
if (!schemaPath || !appPath) {
  console.error('usage: node validate.mjs SCHEMA.graphql APP.js');
  process.exit(2);
}

const schema = buildSchema(readFileSync(schemaPath, 'utf8'));
const source = readFileSync(appPath, 'utf8');

let passed = 0;
let failed = 0;
const fail = (what, message) => {
  failed += 1;
  console.log(`FAIL ${what}: ${message}`);
};

// every gql`…` (a template without `${`)
const tagged = [...source.matchAll(/\bgql`([^`]*)`/g)];
const mentions = (source.match(/\bgql`/g) || []).length;
if (tagged.length === 0) fail('app.js', 'no gql`…` document found');
if (tagged.length !== mentions) fail('app.js', `${mentions} gql\` tags but ${tagged.length} complete templates`);

const names = new Map();
for (const [index, match] of tagged.entries()) {
  const text = match[1];
  const line = source.slice(0, match.index).split('\n').length;
  const head = /^\s*(?:query|mutation|subscription)\s+([_A-Za-z][_0-9A-Za-z]*)/.exec(text);
  const label = head ? head[1] : `document #${index + 1} (line ${line})`;
  if (text.includes('${')) {
    fail(label, 'has a ${…} interpolation');
    continue;
  }
  let doc;
  try {
    doc = parse(text);
  } catch (e) {
    fail(label, `does not parse: ${e.message}`);
    continue;
  }
  const operations = doc.definitions.filter((d) => d.kind === Kind.OPERATION_DEFINITION);
  if (operations.length !== 1) {
    fail(label, `has ${operations.length} operations; one is expected`);
    continue;
  }
  const name = operations[0].name && operations[0].name.value;
  if (!name) {
    fail(label, 'the operation has no name');
    continue;
  }
  if (names.has(name)) {
    fail(name, `the name is used twice (lines ${names.get(name)} and ${line})`);
    continue;
  }
  names.set(name, line);
  const errors = validate(schema, doc);
  if (errors.length) {
    for (const e of errors) fail(name, e.message);
    continue;
  }
  passed += 1;
  console.log(`ok   ${operations[0].operation} ${name}`);
}

// the enum values offered in forms
const enumBlock = /\/\*\s*schema-enums\s*\*\/([\s\S]*?)\/\*\s*\/schema-enums\s*\*\//.exec(source);
if (!enumBlock) {
  fail('app.js', 'no /* schema-enums */ … /* /schema-enums */ block');
} else {
  let enums = null;
  try {
    enums = JSON.parse(enumBlock[1]);
  } catch (e) {
    fail('schema-enums', `is not JSON: ${e.message}`);
  }
  for (const [typeName, values] of Object.entries(enums || {})) {
    const type = schema.getType(typeName);
    if (!(type instanceof GraphQLEnumType)) {
      fail(`enum ${typeName}`, 'is not an enum of the schema');
      continue;
    }
    const want = type.getValues().map((v) => v.name).sort();
    const have = [...values].sort();
    if (want.join() !== have.join()) {
      fail(`enum ${typeName}`, `app.js offers [${have}] but the schema has [${want}]`);
      continue;
    }
    passed += 1;
    console.log(`ok   enum ${typeName}`);
  }
}

console.log(`console: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
