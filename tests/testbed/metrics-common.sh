# Shared by the testbed's shell tests (run-metrics-*, run-burst-*, run-ctrl-bounds,
# run-request-timeout; sourced, bash).
# A scheduler with --metrics on 127.0.0.1 ephemeral ports, optionally two
# agents and a short replay; every process started is stopped by PID on exit
# (trap), every wait has a deadline. Callers set NETKV (the binary) first.

SKIP=77
TOKEN=metrics-test-token
WORK=$(mktemp -d /tmp/netkv-metrics.XXXXXX)
PIDS=()
KEEP_WORK=0

# stop_all: SIGTERM every process started, SIGKILL what is left after 15 s;
# records each exit status in EXIT_OF[pid].
declare -A EXIT_OF
declare -A AGENT_PID # instance name -> agent PID (start_agents)
stop_all() {
	local pid rc end=$((SECONDS + 15)) # an ASan build on a loaded 2-core box took over 5 s to exit
	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
		kill -CONT "$pid" 2>/dev/null || true # one a test stopped takes the TERM now
	done
	for pid in "${PIDS[@]}"; do
		while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
		rc=0
		wait "$pid" 2>/dev/null || rc=$?
		EXIT_OF[$pid]=$rc
	done
	PIDS=()
}

cleanup() {
	local rc=$?
	stop_all
	if [ $rc -ne 0 ] && [ $rc -ne $SKIP ]; then
		echo "logs kept in $WORK:" >&2
		for f in "$WORK"/*.log; do
			[ -f "$f" ] && { echo "--- $f (last 20 lines)" >&2; tail -n 20 "$f" >&2; }
		done
	elif [ $KEEP_WORK -eq 0 ]; then
		rm -rf "$WORK"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

skip() {
	echo "SKIP: $*" >&2
	exit $SKIP
}

# stop_checked: SIGTERM every process started (15 s, then SIGKILL), then fail unless the
# scheduler exited 0 and no log holds a sanitizer report (ASan/UBSan builds).
stop_checked() {
	stop_all
	if [ -n "${SCHED_PID:-}" ] && [ "${EXIT_OF[$SCHED_PID]:-0}" -ne 0 ]; then
		fail "the scheduler exited with status ${EXIT_OF[$SCHED_PID]}"
	fi
	if grep -l -E 'Sanitizer|runtime error:' "$WORK"/*.log >/dev/null 2>&1; then
		fail "sanitizer report in $(grep -l -E 'Sanitizer|runtime error:' "$WORK"/*.log | tr '\n' ' ')"
	fi
	return 0
}

# http_get URL: the body on stdout, 2 s per try; non-zero on an HTTP error or no answer.
http_get() {
	curl -fsS --max-time 2 "$1"
}

# start_scheduler: topology, scheduler on 127.0.0.1:0 with metrics on 127.0.0.1:0 (plus the
# options in $SCHED_EXTRA, unquoted); sets SCHED (control address), METRICS (host:port) and SCHED_PID.
start_scheduler() {
	"$NETKV" topo gen --preset fat-tree --gpus 16 --gpus-per-host 2 --nics-per-host 2 --hosts-per-leaf 2 \
		--leaves-per-pod 2 -o "$WORK/topo.json" >"$WORK/topo.log" 2>&1 || fail "netkv topo gen"
	"$NETKV" scheduler --listen 127.0.0.1:0 --metrics 127.0.0.1:0 --topo "$WORK/topo.json" \
		--prefill h0g0,h0g1 --decode h1g0,h2g0 --token "$TOKEN" --time-scale 0.05 ${SCHED_EXTRA:-} \
		>"$WORK/scheduler.log" 2>&1 &
	SCHED_PID=$!
	PIDS+=("$SCHED_PID")
	local end=$((SECONDS + 15)) line=""
	while [ $SECONDS -lt $end ]; do
		line=$(grep -m1 'listening on' "$WORK/scheduler.log" || true)
		[ -n "$line" ] && break
		kill -0 "$SCHED_PID" 2>/dev/null || fail "the scheduler exited during start-up"
		sleep 0.1
	done
	[ -n "$line" ] || fail "the scheduler did not log its ports within 15 s"
	SCHED=$(sed -n 's/.*listening on \([^,]*\),.*/\1/p' <<<"$line")
	METRICS=$(sed -n 's/.*metrics on \([^ ,]*\).*/\1/p' <<<"$line")
	[[ "$SCHED" =~ ^127\.0\.0\.1:[1-9][0-9]*$ && "$METRICS" =~ ^127\.0\.0\.1:[1-9][0-9]*$ ]] ||
		fail "no bound ports in the scheduler's log line: $line"
}

# start_agents: one prefill (h0g0) and one decode (h1g0) agent with a tiny KV model (decodes:
# $AGENT_DECODES, a space-separated subset of "h1g0 h2g0"; extra agent options: $AGENT_EXTRA,
# unquoted); waits (15 s) until the scrape shows them all registered.
start_agents() {
	echo '{"name": "tiny", "layers": 2, "kv_heads": 1, "head_dim": 32}' >"$WORK/tiny-model.json"
	local role name decodes=(${AGENT_DECODES:-h1g0})
	for a in prefill:h0g0 "${decodes[@]/#/decode:}"; do
		role=${a%%:*} name=${a#*:}
		"$NETKV" agent --role "$role" --scheduler "$SCHED" --token "$TOKEN" --name "$name" \
			--model "$WORK/tiny-model.json" --blocks "${AGENT_BLOCKS:-256}" --time-scale 0.05 ${AGENT_EXTRA:-} \
			>"$WORK/agent-$name.log" 2>&1 &
		PIDS+=($!)
		AGENT_PID[$name]=$!
	done
	local end=$((SECONDS + 15)) text=""
	while [ $SECONDS -lt $end ]; do
		text=$(http_get "http://$METRICS/metrics" || true)
		if grep -qx 'netkv_agents_up{role="prefill"} 1' <<<"$text" &&
			grep -qx "netkv_agents_up{role=\"decode\"} ${#decodes[@]}" <<<"$text"; then
			return 0
		fi
		sleep 0.2
	done
	fail "the agents did not register within 15 s (last scrape: $(grep '^netkv_agents_up' <<<"$text" | tr '\n' ' '))"
}
