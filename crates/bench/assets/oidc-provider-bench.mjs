// node-oidc-provider for `spaceport-bench auth`: the client-credentials
// reference. One static confidential client (client_secret_basic), EdDSA
// (Ed25519) JWT access tokens for one resource server, on 127.0.0.1.
// `spaceport-bench` copies this file next to its node_modules and runs it
// with BENCH_PORT, BENCH_WORKERS (processes: node:cluster, one per core),
// BENCH_CLIENT_ID, BENCH_CLIENT_SECRET and BENCH_SCOPE.
import cluster from 'node:cluster';
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

// The bench finds these processes by this name (/proc/<pid>/comm).
process.title = 'oidc-bench';

const port = Number(process.env.BENCH_PORT);
const workers = Number(process.env.BENCH_WORKERS || 1);
const scope = process.env.BENCH_SCOPE;
const resource = 'urn:spaceport:bench';

const newJwk = () => generateKeyPairSync('ed25519').privateKey.export({ format: 'jwk' });

if (cluster.isPrimary && workers > 1) {
  // One signing key for every worker, as one deployment would have.
  process.env.BENCH_JWK = JSON.stringify(newJwk());
  for (let i = 0; i < workers; i += 1) cluster.fork();
  cluster.on('exit', (worker, code) => {
    console.error(`worker ${worker.process.pid} exited (${code})`);
    process.exit(1);
  });
} else {
  const jwk = process.env.BENCH_JWK ? JSON.parse(process.env.BENCH_JWK) : newJwk();
  const provider = new Provider(`http://127.0.0.1:${port}`, {
    clients: [{
      client_id: process.env.BENCH_CLIENT_ID,
      client_secret: process.env.BENCH_CLIENT_SECRET,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      scope,
    }],
    // No RSA key here: everything this provider signs is EdDSA.
    clientDefaults: { id_token_signed_response_alg: 'EdDSA' },
    jwks: { keys: [{ ...jwk, alg: 'EdDSA', use: 'sig', kid: 'bench' }] },
    scopes: scope.split(' '),
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      // JWT access tokens are issued for a resource server (RFC 8707); a
      // client-credentials request without `resource` gets this one.
      resourceIndicators: {
        enabled: true,
        defaultResource: () => resource,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope,
          audience: resource,
          accessTokenTTL: 3600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'EdDSA' } },
        }),
      },
    },
  });
  provider.listen(port, '127.0.0.1', () => console.log(`listening on 127.0.0.1:${port}`));
}
