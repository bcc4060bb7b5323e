// The real test identity provider for pgward: oidc-provider with the client_credentials grant
// issuing RFC 9068 JWT access tokens (typ at+jwt) for the audience "pgward".
//
// Introspection (RFC 7662) and revocation (RFC 7009) are on; a client marked "opaque" gets opaque
// access tokens (oidc-provider can introspect only the tokens it stores, which JWTs are not).
//
// node server.js --port P --clients FILE [--ttl SECONDS] [--keys FILE]
//   FILE: [{"client_id": "...", "client_secret": "...", "groups": ["..."], "opaque": false}]
//   --port 0 picks a free port; the issuer is http://127.0.0.1:<port>.
//   --keys FILE: a JWKS with private keys; otherwise an RS256 key is generated at start.
// Prints "ready <issuer>" on stdout once listening.
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const { parseArgs } = require('node:util');

const Provider = require('oidc-provider').default ?? require('oidc-provider');

const RESOURCE = 'urn:pgward';
const AUDIENCE = 'pgward';

function fail(message) {
  process.stderr.write(`test-idp: ${message}\n`);
  process.exit(2);
}

function readJson(path, what) {
  try {
    return JSON.parse(fs.readFileSync(path, 'utf8'));
  } catch (err) {
    return fail(`cannot read ${what} ${path}: ${err.message}`);
  }
}

function generatedJwks() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { keys: [{ ...jwk, kid: crypto.randomBytes(8).toString('hex'), alg: 'RS256', use: 'sig' }] };
}

function main() {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '0' },
      clients: { type: 'string' },
      ttl: { type: 'string', default: '600' },
      keys: { type: 'string' },
    },
  });
  if (!values.clients) fail('--clients FILE is required');
  const port = Number(values.port);
  const ttl = Number(values.ttl);
  if (!Number.isInteger(port) || port < 0 || port > 65535) fail('--port must be 0..65535');
  if (!Number.isInteger(ttl) || ttl <= 0) fail('--ttl must be a positive number of seconds');

  const clients = readJson(values.clients, 'clients file');
  if (!Array.isArray(clients)) fail('clients file must hold a JSON array');
  const groupsByClient = new Map(clients.map((c) => [c.client_id, Array.isArray(c.groups) ? c.groups : []]));
  const opaqueClients = new Set(clients.filter((c) => c.opaque === true).map((c) => c.client_id));
  const jwks = values.keys ? readJson(values.keys, 'keys file') : generatedJwks();

  // Listen first so --port 0 works: the issuer URL must name the real port.
  const server = http.createServer();
  server.listen(port, '127.0.0.1', () => {
    const issuer = `http://127.0.0.1:${server.address().port}`;
    const provider = new Provider(issuer, {
      clients: clients.map((c) => ({
        client_id: c.client_id,
        client_secret: c.client_secret,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_basic',
      })),
      jwks,
      cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
      features: {
        devInteractions: { enabled: false },
        clientCredentials: { enabled: true },
        // Any authenticated client may introspect (the gateway does, with its own credentials);
        // a client may revoke only its own tokens (the default policy).
        introspection: { enabled: true, allowedPolicy: async () => true },
        revocation: { enabled: true },
        resourceIndicators: {
          enabled: true,
          // Callers need not send `resource`: every token is for pgward.
          defaultResource: () => RESOURCE,
          getResourceServerInfo: (ctx, resource, client) => ({
            scope: 'pgward',
            audience: AUDIENCE,
            accessTokenFormat: opaqueClients.has(client.clientId) ? 'opaque' : 'jwt',
            accessTokenTTL: ttl,
            jwt: { sign: { alg: 'RS256' } },
          }),
        },
      },
      // Group grants in pgward are tested with the client's groups in the access token.
      extraTokenClaims: (ctx, token) => {
        const groups = groupsByClient.get(token.clientId);
        return groups && groups.length > 0 ? { groups } : undefined;
      },
      ttl: { ClientCredentials: ttl },
    });
    provider.on('server_error', (ctx, err) => process.stderr.write(`test-idp: server_error ${err.message}\n`));
    server.on('request', provider.callback());
    process.stdout.write(`ready ${issuer}\n`);
  });
  server.on('error', (err) => fail(`listen failed: ${err.message}`));

  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main();
