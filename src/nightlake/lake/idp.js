// The lake's identity provider: oauth2-mock-server over TLS on loopback, issuing WLCG-profile JWTs.
//
// usage: node idp.js PORT HOST_CERT HOST_KEY JWK_FILE
//
// A token is asked for with the client_credentials grant: `client_id` becomes the token's `sub`
// (the identity Rucio maps to an account), `scope` and `aud` are taken as asked, or the lake's
// defaults (what Rucio and the storage expect; the scope from NIGHTLAKE_IDP_SCOPE), and `expires_in` (seconds) sets its lifetime, so
// a test can ask for a token that expires during a run. The signing key is kept in JWK_FILE: a
// restarted provider still vouches for the tokens it issued.
'use strict';
const fs = require('node:fs');
const { OAuth2Server } = require('oauth2-mock-server');

const DEFAULT_AUD = ['rucio', 'nightlake-storage'];
const DEFAULT_SCOPE = process.env.NIGHTLAKE_IDP_SCOPE;

async function main() {
  const [port, cert, key, jwkFile] = process.argv.slice(2);
  const server = new OAuth2Server(key, cert);
  if (fs.existsSync(jwkFile)) {
    await server.issuer.keys.add(JSON.parse(fs.readFileSync(jwkFile, 'utf8')));
  } else {
    await server.issuer.keys.generate('RS256');
    fs.writeFileSync(jwkFile, JSON.stringify(server.issuer.keys.toJSON(true)[0]), { mode: 0o600 });
  }
  server.issuer.url = `https://127.0.0.1:${port}`;
  server.service.on('beforeTokenSigning', (token, req) => {
    const body = req.body || {};
    const lifetime = Number(body.expires_in);
    token.payload.sub = body.client_id || token.payload.sub || 'nightlake';
    token.payload.aud = body.aud ? String(body.aud).split(' ') : DEFAULT_AUD;
    token.payload.scope = body.scope || DEFAULT_SCOPE;
    token.payload['wlcg.ver'] = '1.0';
    if (lifetime > 0) token.payload.exp = token.payload.iat + lifetime;
  });
  server.service.on('beforeResponse', (response, req) => {
    const body = req.body || {};
    const lifetime = Number(body.expires_in);
    if (lifetime > 0) response.body.expires_in = lifetime;
    if (!response.body.scope) response.body.scope = body.scope || DEFAULT_SCOPE;
  });
  await server.start(Number(port), '127.0.0.1');
  console.log(`identity provider listening on ${server.issuer.url}`);
  const stop = () => server.stop().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((error) => { console.error(error); process.exit(1); });
