#!/usr/bin/env bash
# The README's test command runs this: set up what is missing, run every package's tests through
# turbo, then print one summary line summed over all packages.
set -uo pipefail
cd "$(dirname "$0")/../.."
bash tooling/scripts/ensure-machine.sh
find packages apps bench tooling -name test-report.json -not -path '*/node_modules/*' -delete 2>/dev/null
pnpm exec turbo run test --concurrency=2 --continue "$@"
turbo_status=$?
node tooling/scripts/test-summary.mjs
summary_status=$?
if [ $turbo_status -ne 0 ] || [ $summary_status -ne 0 ]; then exit 1; fi
