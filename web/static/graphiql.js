// Plop's GraphiQL: queries and mutations over HTTP POST, subscriptions over WebSocket
// (graphql-transport-ws). The Headers tab goes with every HTTP request and, for a
// subscription, as the connection_init payload, where the server reads Authorization.
"use strict";

const WELCOME = `# Plop's GraphQL API. First sign up (or logIn):
#
#   mutation { signUp(username: "alice", password: "correct horse") {
#     token user { id } } }
#
# then put the token in the Headers tab below:
#
#   {"Authorization": "Bearer <token>"}
#
# Subscriptions send the headers in connection_init, so they are
# authenticated too:
#
#   subscription { messageAdded(roomId: "<room id>", afterSeq: 0) {
#     seq text sender { username } } }
#
# Run: Ctrl-Enter. Complete: Ctrl-Space. Docs: the book icon.

query Me {
  me { id username displayName }
}
`;

const url = new URL(window.location.pathname, window.location.origin);
const subscriptionUrl = new URL(url);
subscriptionUrl.protocol = url.protocol === "https:" ? "wss:" : "ws:";

const fetcher = GraphiQL.createFetcher({
  url: url.toString(),
  subscriptionUrl: subscriptionUrl.toString(),
});

const explorer = GraphiQLPluginExplorer.explorerPlugin();

// GraphiQL's storage: localStorage, less the headers, which hold a Bearer token.
// shouldPersistHeaders (below) keeps the Headers tab in memory, but GraphiQL would still
// write each run's headers into its history, favourites and tabs: every value written
// loses them here. What an earlier version of this page stored is cleaned the same way.
const NAMESPACE = "graphiql:";
const HEADERS_KEY = `${NAMESPACE}headers`;
const WITH_HEADERS = new Set(["queries", "favorites", "tabState"].map((name) => NAMESPACE + name));

function withoutHeaders(key, value) {
  if (!WITH_HEADERS.has(key)) return value;
  try {
    return JSON.stringify(JSON.parse(value), (name, field) => (name === "headers" ? null : field));
  } catch {
    return null; // not what GraphiQL writes there: not kept
  }
}

const ownKeys = () => Object.keys(localStorage).filter((key) => key.startsWith(NAMESPACE));
const storage = {
  getItem: (key) => localStorage.getItem(key),
  setItem(key, value) {
    const kept = key === HEADERS_KEY ? null : withoutHeaders(key, value);
    if (kept === null) localStorage.removeItem(key);
    else localStorage.setItem(key, kept);
  },
  removeItem: (key) => localStorage.removeItem(key),
  get length() {
    return ownKeys().length;
  },
  clear() {
    for (const key of ownKeys()) localStorage.removeItem(key);
  },
};
for (const key of ownKeys()) storage.setItem(key, localStorage.getItem(key));

ReactDOM.createRoot(document.getElementById("graphiql")).render(
  React.createElement(GraphiQL, {
    fetcher,
    plugins: [explorer],
    storage,
    defaultQuery: WELCOME,
    defaultEditorToolsVisibility: true,
    isHeadersEditorEnabled: true,
    shouldPersistHeaders: false,
    inputValueDeprecation: true,
  }),
);
