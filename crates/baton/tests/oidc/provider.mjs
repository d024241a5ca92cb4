// A real OAuth2 authorization server for baton's tests: oidc-provider with the
// client-credentials grant, short-lived access tokens and token introspection.
//
// Usage: node provider.mjs TTL_SECONDS
// Prints `listening http://127.0.0.1:PORT` once it listens, and one `grant client_credentials`
// line for every token it issues (from the provider's own `grant.success` event).
import Provider from "oidc-provider";

const ttl = Number(process.argv[2] ?? 8);
const issuer = "http://127.0.0.1";

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: "fleet",
      client_secret: "fleet-secret-for-tests",
      grant_types: ["client_credentials"],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: "client_secret_basic",
      scope: "api:read",
    },
    {
      client_id: "fleet-post",
      client_secret: "fleet-post-secret-for-tests",
      grant_types: ["client_credentials"],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: "client_secret_post",
      scope: "api:read",
    },
  ],
  features: {
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    devInteractions: { enabled: false },
  },
  scopes: ["api:read"],
  ttl: { ClientCredentials: ttl },
});

provider.on("grant.success", (ctx) => {
  console.log(`grant ${ctx.oidc.params.grant_type}`);
});
provider.on("server_error", (_ctx, err) => console.error(`server_error ${err}`));

const server = provider.listen(0, "127.0.0.1", () => {
  console.log(`listening http://127.0.0.1:${server.address().port}`);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
