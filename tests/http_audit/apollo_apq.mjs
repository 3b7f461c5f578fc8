// Sends one query and one mutation twice each through Apollo Client's own
// persisted-queries link and HttpLink, unchanged, against a GraphQL URL, and prints
// one JSON line per result: {"operation", "round", "data"} or {"operation", "round",
// "error"}. The server's side of the exchange (a miss, a registration, then hits) is
// what the calling test checks.
// Usage: node apollo_apq.mjs GRAPHQL_URL TOKEN ROOM_ID TAG get|post
import { ApolloClient, HttpLink, InMemoryCache, gql } from '@apollo/client/core/index.js';
import { createPersistedQueryLink } from '@apollo/client/link/persisted-queries/index.js';
import { createHash } from 'node:crypto';

const [url, token, roomId, tag, method] = process.argv.slice(2);
if (!url || !token || !roomId || !tag || !['get', 'post'].includes(method)) {
  console.error('usage: node apollo_apq.mjs GRAPHQL_URL TOKEN ROOM_ID TAG get|post');
  process.exit(2);
}

const persisted = createPersistedQueryLink({
  sha256: (text) => createHash('sha256').update(text).digest('hex'),
  useGETForHashedQueries: method === 'get',
});
const http = new HttpLink({ uri: url, headers: { authorization: `Bearer ${token}` } });
const client = new ApolloClient({ link: persisted.concat(http), cache: new InMemoryCache() });

// The tag makes both documents new to the server, so that the first round misses.
const query = gql(`query Me_${tag} { me { id username } }`);
const mutation = gql(`mutation Send_${tag}($roomId: ID!, $text: String!) {
  sendMessage(roomId: $roomId, text: $text) { seq text }
}`);

for (const round of [1, 2]) {
  try {
    const result = await client.query({ query, fetchPolicy: 'network-only' });
    console.log(JSON.stringify({ operation: 'query', round, data: result.data }));
  } catch (error) {
    console.log(JSON.stringify({ operation: 'query', round, error: String(error) }));
  }
  try {
    const variables = { roomId, text: `apollo ${round}` };
    const result = await client.mutate({ mutation, variables });
    console.log(JSON.stringify({ operation: 'mutation', round, data: result.data }));
  } catch (error) {
    console.log(JSON.stringify({ operation: 'mutation', round, error: String(error) }));
  }
}
await client.stop();
