// The ltijs side of the lmsbridge load benchmark (bench/run.sh, docs/BENCHMARKS.md).
//
// ltijs 5 with its PostgreSQL plugin (ltijs-sequelize), set up as its documentation shows:
// login at /login, the app route (which receives the id_token form post) at /. ltijs checks
// the state cookie, verifies the id_token against the platform's JWKS URL, records the nonce
// (refusing a replay), stores the id token and context token rows, and answers with a
// redirect carrying its own signed launch token (?ltik=), which is its handoff.
//
// One setting differs from the defaults: tokenMaxAge is 60 s instead of 10 s, because the
// generator signs a round of id_tokens before posting them and a round can take longer than
// 10 s at ltijs's rate. The check itself stays on.
//
// Configuration comes from the environment (bench/run.sh sets it): BENCH_PORT, BENCH_ISSUER,
// BENCH_CLIENT_ID, BENCH_AUTH_URL, BENCH_TOKEN_URL, BENCH_JWKS_URL, BENCH_PG_DATABASE,
// BENCH_PG_HOST, BENCH_PG_PORT, BENCH_PG_USER.
'use strict'

const lti = require('ltijs').Provider
const Database = require('ltijs-sequelize')

const env = process.env
const db = new Database(env.BENCH_PG_DATABASE, env.BENCH_PG_USER || 'postgres', '', {
  host: env.BENCH_PG_HOST || '127.0.0.1',
  port: Number(env.BENCH_PG_PORT || 5432),
  dialect: 'postgres',
  logging: false
})

lti.setup(env.BENCH_ENCRYPTION_KEY || require('crypto').randomBytes(32).toString('hex'),
  { plugin: db },
  {
    appRoute: '/',
    loginRoute: '/login',
    cookies: { secure: false, sameSite: 'Lax' },
    devMode: false,
    tokenMaxAge: 60
  })

let ready = false
lti.whitelist('/health')
lti.app.get('/health', (req, res) => {
  if (ready) return res.send({ status: 'ok' })
  return res.status(503).send({ status: 'starting' })
})

lti.onConnect((token, req, res) => res.send({ user: token.user }))

async function main () {
  await lti.deploy({ port: Number(env.BENCH_PORT), silent: true })
  await lti.registerPlatform({
    url: env.BENCH_ISSUER,
    name: 'lmsbridge-loadtest',
    clientId: env.BENCH_CLIENT_ID || 'bench',
    authenticationEndpoint: env.BENCH_AUTH_URL,
    accesstokenEndpoint: env.BENCH_TOKEN_URL,
    authConfig: { method: 'JWK_SET', key: env.BENCH_JWKS_URL }
  })
  ready = true
  console.log('ltijs ready on port ' + env.BENCH_PORT)
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, async () => {
    try { await lti.close() } catch (e) {}
    process.exit(0)
  })
}
