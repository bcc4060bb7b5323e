// node-postgres (pg) through pgward: parameterized queries (extended protocol), a named
// prepared statement reused, and a transaction. Reads the connection from the environment
// (PGWARD_HOST, PGWARD_PORT, PGWARD_DB, PGWARD_USER, PGWARD_TOKEN, PGWARD_TABLE) and prints one
// JSON object on stdout; exits non-zero on any error.
'use strict';

const { Client } = require('pg');

async function main() {
  const env = process.env;
  const table = env.PGWARD_TABLE;
  const client = new Client({
    host: env.PGWARD_HOST,
    port: Number(env.PGWARD_PORT),
    database: env.PGWARD_DB,
    user: env.PGWARD_USER,
    password: env.PGWARD_TOKEN,
    // pgward's gateway has a self-signed certificate in the tests: TLS without verification
    // (what libpq's sslmode=require does).
    ssl: { rejectUnauthorized: false },
    application_name: 'node-pg-test',
  });
  // An error the server sends outside a query (e.g. after Terminate) arrives as an 'error'
  // event: record it and fail at the end instead of crashing before printing results.
  let asyncError = null;
  client.on('error', (err) => { asyncError = err; });
  await client.connect();
  const out = {};
  const byId = await client.query('SELECT name, country FROM customers WHERE id = $1', [2]);
  out.customer = byId.rows[0];
  const sum = await client.query('SELECT $1::int + $2::int AS total', [40, 2]);
  out.sum = sum.rows[0].total;
  const named = [];
  for (let i = 1; i <= 3; i++) {
    const r = await client.query({ name: 'pgward_node_by_id', text: 'SELECT id, name FROM customers WHERE id = $1', values: [i] });
    named.push(r.rows[0].name);
  }
  out.named = named;
  await client.query('BEGIN');
  await client.query(`INSERT INTO ${table} (v) VALUES ($1), ($2)`, ['rolled', 'back']);
  await client.query('ROLLBACK');
  await client.query('BEGIN');
  const ins = await client.query(`INSERT INTO ${table} (v) VALUES ($1)`, ['kept']);
  await client.query('COMMIT');
  out.inserted = ins.rowCount;
  const principal = await client.query("SELECT current_setting('pgward.principal') AS p");
  out.principal = principal.rows[0].p;
  process.stdout.write(JSON.stringify(out) + '\n');
  await client.end();
  if (asyncError) {
    process.stderr.write(`node-pg: error outside a query (during end/Terminate): ${asyncError.code || ''} ${asyncError.message}\n`);
    process.exit(3);
  }
}

main().catch((err) => {
  process.stderr.write(`node-pg: ${err.code || ''} ${err.message}\n`);
  process.exit(1);
});
