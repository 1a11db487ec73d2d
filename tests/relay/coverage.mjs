// Checks that every connection field of a schema (every field whose type is a `…Connection`)
// is used under `@connection` by at least one document.
// Usage: node coverage.mjs SCHEMA.graphql DOCUMENT_FILE...
import { readFileSync } from 'node:fs';
import {
  buildSchema, getNamedType, isObjectType, parse, TypeInfo, visit, visitWithTypeInfo,
} from 'graphql';

const [schemaPath, ...documentPaths] = process.argv.slice(2);
const schema = buildSchema(readFileSync(schemaPath, 'utf8'));

const fields = [];
for (const type of Object.values(schema.getTypeMap())) {
  if (!isObjectType(type) || type.name.startsWith('__')) continue;
  for (const field of Object.values(type.getFields())) {
    if (getNamedType(field.type).name.endsWith('Connection')) fields.push(`${type.name}.${field.name}`);
  }
}

const used = new Set();
for (const path of documentPaths) {
  const text = readFileSync(path, 'utf8');
  for (const [, body] of text.matchAll(/graphql`([^`]*)`/g)) {
    const typeInfo = new TypeInfo(schema);
    visit(parse(body), visitWithTypeInfo(typeInfo, {
      Field(node) {
        if (!node.directives?.some((d) => d.name.value === 'connection')) return;
        const parent = typeInfo.getParentType();
        if (parent) used.add(`${parent.name}.${node.name.value}`);
      },
    }));
  }
}

let missing = 0;
for (const field of fields.sort()) {
  const ok = used.has(field);
  if (!ok) missing++;
  console.log(`${ok ? 'ok     ' : 'MISSING'} ${field}`);
}
console.log(`connection fields: ${fields.length}, under @connection: ${fields.length - missing}, missing: ${missing}`);
process.exit(missing === 0 && fields.length > 0 ? 0 : 1);
