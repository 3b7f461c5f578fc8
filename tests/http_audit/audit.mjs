// Runs graphql-http's server audits against one GraphQL URL and prints one JSON
// object per audit on stdout: {"id", "name", "status", "reason"?}.
// Usage: node audit.mjs http://127.0.0.1:8000/graphql
import { serverAudits } from 'graphql-http';

const url = process.argv[2];
if (!url) {
  console.error('usage: node audit.mjs GRAPHQL_URL');
  process.exit(2);
}

for (const audit of serverAudits({ url })) {
  const result = await audit.fn();
  const line = { id: result.id, name: result.name, status: result.status };
  if (result.status !== 'ok') {
    line.reason = result.reason;
    const response = result.response;
    line.responseStatus = response.status;
    line.responseType = response.headers.get('content-type');
    try {
      line.responseBody = (await response.clone().text()).slice(0, 500);
    } catch {
      line.responseBody = null; // the audit read the body already
    }
  }
  console.log(JSON.stringify(line));
}
