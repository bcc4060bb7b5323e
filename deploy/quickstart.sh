#!/usr/bin/env bash
# pgward quickstart: builds pgward, starts a throwaway Postgres with sample data, the test IdP,
# a gateway and one agent, gives two AI-agent principals their grants, runs a few statements
# as each through the gateway with psql, prints the attributed audit trail, then stops
# everything it started (or leaves it running with --keep).
set -euo pipefail

KEEP=0
for arg in "$@"; do
  case "$arg" in
    --keep) KEEP=1 ;;
    -h|--help) echo "usage: deploy/quickstart.sh [--keep]"; exit 0 ;;
    *) echo "quickstart: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done

REPO_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO_ROOT"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Installing dependencies (Debian packages, idempotent)"
bash deploy/install-deps.sh

say "Building pgward"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C build pgward-gateway pgward-agent pgwardctl

STACK_DIR="$(mktemp -d /tmp/pgward-quickstart.XXXXXX)"
chmod 755 "$STACK_DIR"
source deploy/lib/stack.sh
if [ "$KEEP" -eq 0 ]; then trap stop_stack EXIT; fi

say "Starting a throwaway PostgreSQL 15 with sample data"
start_postgres "$(free_port)"
DB_PASSWORD="$(openssl rand -hex 16)"
psql_admin -c "CREATE ROLE app LOGIN PASSWORD '$DB_PASSWORD'"
psql_admin -c "CREATE DATABASE shop OWNER app"
PGPASSWORD="$DB_PASSWORD" psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U app -d shop <<'SQL'
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, country text NOT NULL);
CREATE TABLE orders (id serial PRIMARY KEY, customer_id int REFERENCES customers, total numeric(10,2),
                     placed_at timestamptz DEFAULT now());
INSERT INTO customers VALUES (1, 'Ada', 'UK'), (2, 'Grace', 'US'), (3, 'Linus', 'FI');
INSERT INTO orders (customer_id, total) VALUES (1, 42.00), (2, 17.50), (2, 99.90), (3, 5.25);
SQL

say "Starting the test identity provider (oidc-provider, client-credentials)"
cat > "$STACK_DIR/clients.json" <<JSON
[{"client_id": "report-bot", "client_secret": "$(openssl rand -hex 12)", "groups": ["analysts"]},
 {"client_id": "ops-agent", "client_secret": "$(openssl rand -hex 12)", "groups": ["operators"]}]
JSON
secret_of() { python3 -c "import json,sys; print([c['client_secret'] for c in json.load(open('$STACK_DIR/clients.json')) if c['client_id']=='$1'][0])"; }
start_idp "$STACK_DIR/clients.json"
echo "issuer: $IDP_ISSUER"

say "Starting pgward-gateway"
start_gateway
echo "postgres endpoint 127.0.0.1:$GW_PG_PORT, gRPC 127.0.0.1:$GW_GRPC_PORT, data dir $GW_DIR"

say "Registering and starting one agent next to the database"
# start_agent allows exactly this database and this variable:
#   --allow-upstream 127.0.0.1:$PG_PORT --allow-credential agent-env:SHOP_DB_PASSWORD
start_agent db-agent SHOP_DB_PASSWORD="$DB_PASSWORD"
echo "agent allow-lists: --allow-upstream 127.0.0.1:$PG_PORT --allow-credential agent-env:SHOP_DB_PASSWORD"
pgwardctl connection create shop --agent db-agent --host 127.0.0.1 --port "$PG_PORT" --database shop \
  --user app --password-ref agent-env:SHOP_DB_PASSWORD --sslmode require
pgwardctl grant create --principal report-bot --connection shop --mode read-only
pgwardctl grant create --principal ops-agent --connection shop --mode read-write
pgwardctl agent list
pgwardctl grant list

run_as() {  # principal sql
  local token; token="$(fetch_token "$1" "$(secret_of "$1")")"
  echo "-- $1: $2"
  PGPASSWORD="$token" psql -X "host=127.0.0.1 port=$GW_PG_PORT dbname=shop user=$1 sslmode=require" \
    -v ON_ERROR_STOP=0 -c "$2" 2>&1 | sed 's/^/   /' || true  # refusals are part of the demo
}

say "report-bot (read-only) queries through the gateway"
run_as report-bot "SELECT c.name, sum(o.total) AS spent FROM customers c JOIN orders o ON o.customer_id = c.id GROUP BY c.name ORDER BY spent DESC"
run_as report-bot "SELECT current_setting('pgward.principal') AS principal, current_setting('application_name') AS app"
run_as report-bot "UPDATE orders SET total = 0 WHERE id = 1"

say "ops-agent (read-write) changes data through the gateway"
run_as ops-agent "INSERT INTO orders (customer_id, total) VALUES (1, 12.00)"
run_as ops-agent "UPDATE customers SET country = 'SE' WHERE id = 3"

say "The attributed audit trail (pgwardctl audit list)"
pgwardctl audit list --limit 20

if [ "$KEEP" -eq 1 ]; then
  say "Left running (--keep)"
  cat <<INFO
Connect as an AI agent (token from the test IdP as the password):
  TOKEN=\$(curl -s -u report-bot:$(secret_of report-bot) -d grant_type=client_credentials $IDP_ISSUER/token | jq -r .access_token)
  PGPASSWORD=\$TOKEN psql "host=127.0.0.1 port=$GW_PG_PORT dbname=shop user=report-bot sslmode=require"
Administer:
  export PGWARD_GATEWAY=$PGWARD_GATEWAY PGWARD_TOKEN_FILE=$PGWARD_TOKEN_FILE PGWARD_CA_FILE=$PGWARD_CA_FILE
  $BUILD_DIR/tools/pgwardctl/pgwardctl audit list
Logs: $STACK_DIR/*.log
Stop everything:
  bash -c 'STACK_DIR=$STACK_DIR PGDATA_DIR=$PGDATA_DIR; source $REPO_ROOT/deploy/lib/stack.sh; stop_stack'
INFO
else
  say "Stopping everything the quickstart started"
fi
