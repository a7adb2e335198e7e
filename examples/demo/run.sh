#!/usr/bin/env bash
# The Roster demo: three local SCIM apps, a 200-person directory, a sync, an offboarding.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${VENV:-.venv}
PORT=8088
export ROSTER_HOME="$PWD/.demo"
export ROSTER_CONFIG="$PWD/examples/demo/roster.yaml"
export ROSTER_DATABASE_URL="sqlite:///$ROSTER_HOME/roster.db"
TOKEN="demo-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
export CHAT_TOKEN=$TOKEN WIKI_TOKEN=$TOKEN CRM_TOKEN=$TOKEN
roster="$VENV/bin/roster"

rm -rf "$ROSTER_HOME/roster.db" && mkdir -p "$ROSTER_HOME"
if (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null; then
  echo "port $PORT is in use; stop what runs there and try again" >&2; exit 1
fi
"$VENV/bin/scim2-server" --hostname 127.0.0.1 --port $PORT \
  --tenant chat --tenant wiki --tenant crm --bearer-token "$TOKEN" >"$ROSTER_HOME/scim.log" 2>&1 &
SCIM_PID=$!
trap 'kill $SCIM_PID 2>/dev/null; wait $SCIM_PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1
done

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. Three SCIM apps are up: chat, wiki, crm (scim2-server on 127.0.0.1:$PORT)"
step "2. Import the directory: directory/sample/people.csv"
"$roster" directory import directory/sample/people.csv

step "3. Sync every app (Prefect local mode)"
"$roster" sync

step "4. Someone edits accounts by hand: a title in chat, a disabled account in wiki"
"$VENV/bin/python" examples/demo/tamper.py "http://127.0.0.1:$PORT" "$TOKEN"

step "5. The next sync reports the drift (old → new) and repairs it"
"$roster" sync

step "6. Another sync finds nothing to do: zero writes"
"$roster" sync

# someone with the most apps who is not the CEO
LEAVER=$("$roster" directory users --active --json | "$VENV/bin/python" -c \
  'import json,sys; u=[u for u in json.load(sys.stdin) if u["manager"]]; print(max(u, key=lambda u: len(u["apps"]))["user_name"])')
step "7. Offboard $LEAVER: deactivated in the directory, deprovisioned in every app at once"
"$roster" offboard "$LEAVER"

step "8. Done. The apps stop now; the directory stays in $ROSTER_HOME/roster.db"
