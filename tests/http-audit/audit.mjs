// graphql-http server audits with a bearer token and the CSRF header on every request (GETs
// run only with `x-leadgate-csrf`, as a browser page's would after a CORS preflight).
// Usage: node audit.mjs URL TOKEN
import { serverAudits } from 'graphql-http';
const url = process.argv[2];
const token = process.argv[3];
const origFetch = globalThis.fetch;
const fetchWithAuth = (input, init = {}) => {
  const headers = new Headers(init.headers || {});
  if (token) headers.set('authorization', 'Bearer ' + token);
  headers.set('x-leadgate-csrf', '1');
  return origFetch(input, { ...init, headers });
};
// Prints one line per failed or warned audit, then a summary line.
let pass = 0, warn = 0, err = 0;
for (const audit of serverAudits({ url, fetchFn: fetchWithAuth })) {
  const result = await audit.fn();
  if (result.status === 'ok') pass++;
  else {
    if (result.status === 'warn') warn++; else err++;
    console.log(`${result.status.toUpperCase()} ${audit.name}: ${result.reason}`);
  }
}
console.log(`audits: ${pass} ok, ${warn} warn, ${err} error`);
