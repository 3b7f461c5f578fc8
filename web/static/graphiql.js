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

ReactDOM.createRoot(document.getElementById("graphiql")).render(
  React.createElement(GraphiQL, {
    fetcher,
    plugins: [explorer],
    defaultQuery: WELCOME,
    defaultEditorToolsVisibility: true,
    isHeadersEditorEnabled: true,
    shouldPersistHeaders: true,
    inputValueDeprecation: true,
  }),
);
