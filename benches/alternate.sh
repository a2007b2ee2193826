#!/usr/bin/env bash
# Compares gateway builds on a noisy machine: runs `openport-bench` for each binary in turn, ROUNDS
# times (A B A B …), so that a machine that speeds up or slows down during the comparison weighs on
# every build alike, and prints one line per run plus the median of each build.
#
#   benches/alternate.sh ROUNDS BIN_A BIN_B [BIN…] -- [openport-bench flags]
#
# e.g. (copy each build aside first; `cargo build --release` overwrites target/release/openport):
#   benches/alternate.sh 4 /tmp/openport-before /tmp/openport-after -- \
#     --db "postgres://postgres@127.0.0.1:5432/test?sslmode=disable" --scenarios onetime,again \
#     --concurrency 16 --duration 8
#
# Per run it prints the throughput and p99 of every scenario at every level, and the CPU the
# gateway and PostgreSQL spent per request (their cores divided by the throughput), which is less
# sensitive than throughput to what the rest of the machine does. With a PostgreSQL `--db` it runs
# `CHECKPOINT` before each run (psql, if installed), so no run starts in the middle of one.
set -euo pipefail

usage() {
	sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
}

[[ $# -ge 4 ]] || usage
rounds=$1
shift
[[ $rounds =~ ^[1-9][0-9]*$ ]] || usage
bins=()
while [[ $# -gt 0 && $1 != "--" ]]; do
	[[ -x $1 ]] || {
		echo "not an executable: $1" >&2
		exit 2
	}
	bins+=("$1")
	shift
done
[[ ${#bins[@]} -ge 2 ]] || usage
[[ $# -gt 0 ]] && shift # the `--`
flags=("$@")

root=$(cd "$(dirname "$0")/.." && pwd)
bench=${OPENPORT_BENCH:-$root/target/release/openport-bench}
[[ -x $bench ]] || {
	echo "$bench not found: cargo build --release -p openport-bench" >&2
	exit 2
}

db_url=""
for ((i = 0; i < ${#flags[@]}; i++)); do
	[[ ${flags[$i]} == "--db" && $((i + 1)) -lt ${#flags[@]} ]] && db_url=${flags[$((i + 1))]}
done

results=$(mktemp)
trap 'rm -f "$results"' EXIT

for ((r = 1; r <= rounds; r++)); do
	for bin in "${bins[@]}"; do
		if [[ $db_url == postgres* ]] && command -v psql >/dev/null; then
			psql "${db_url%%\?*}" -qc "CHECKPOINT" >/dev/null 2>&1 || true
		fi
		# The report's rows: | scenario | c | requests | errors | req/s | p50 | p99 | cpu |
		"$bench" --openport-bin "$bin" "${flags[@]}" 2>/dev/null |
			awk -F'|' -v bin="$bin" -v round="$r" '
				# The scheduler row: | schedules | executed | … | schedules/s | … | cpu |
				/^\| [0-9]+ \| / {
					split($13, cpu, "/")
					t = $7 + 0
					gw = t > 0 ? cpu[2] / t * 1e6 : 0
					pg = t > 0 ? cpu[3] / t * 1e6 : 0
					printf "%s\t%s\tscheduler\t-\t%d\t-\t%.0f\t%.0f\n", round, bin, t, gw, pg
					next
				}
				/^\| [a-z-]+ \| / && $3 ~ /[0-9]/ {
					split($9, cpu, "/")
					t = $6 + 0
					gw = t > 0 ? cpu[2] / t * 1e6 : 0
					pg = t > 0 ? cpu[3] / t * 1e6 : 0
					gsub(/ /, "", $2); gsub(/^ +| +$/, "", $3); gsub(/ /, "", $8)
					printf "%s\t%s\t%s\t%s\t%d\t%s\t%.0f\t%.0f\n", round, bin, $2, $3, t, $8, gw, pg
				}' | tee -a "$results" |
			awk -F'\t' '{ printf "round %s  %-28s %-14s c%-14s %7d/s  p99 %7s ms  gateway %5d µs  postgres %5d µs per request\n", $1, $2, $3, $4, $5, $6, $7, $8 }'
	done
done

echo
echo "median throughput per build, scenario and level:"
sort -t$'\t' -k2,2 -k3,3 -k4,4 -k5,5n "$results" |
	awk -F'\t' '
		{ key = $2 "\t" $3 "\t" $4; v[key] = v[key] " " $5; n[key]++ }
		END {
			for (k in v) {
				split(substr(v[k], 2), a, " ")
				m = n[k] % 2 ? a[(n[k] + 1) / 2] : (a[n[k] / 2] + a[n[k] / 2 + 1]) / 2
				split(k, parts, "\t")
				printf "  %-28s %-14s c%-14s %7.0f/s  (%d runs:%s)\n", parts[1], parts[2], parts[3], m, n[k], v[k]
			}
		}' | sort
