#!/usr/bin/env bash
# The second half of `deno task test`: builds dist/galaxy and runs the tests that exercise the executable
# (e2e, the plugin table, install, compile, the DaemonSet image) against it, with GALAXY_BINARY pointing the
# test launchers at it. The rest of the suite runs from source only.
#
#   tools/test_compiled.sh [STATUS]   STATUS: the exit status of the source run, passed on as ours when non-zero
#
# The compile toolchain, in this order: DENO_COMPILE_CLI (+ DENORT_BIN) from the environment; else
# ../shared/tools/compile-toolchain.sh beside the checkout (machines without Deno's release server); else the
# run is skipped with the reason printed. GALAXY_BINARY already set: that executable is tested, nothing is built.
set -uo pipefail
cd "$(dirname "$0")/.."
source_status=${1:-0}
toolchain=../shared/tools/compile-toolchain.sh
# Under npm or deno task, deno is on PATH; run by hand, the checkout's pinned one.
command -v deno >/dev/null || PATH=$PWD/node_modules/.bin:$PATH

if [ -z "${GALAXY_BINARY:-}" ]; then
  if [ -z "${DENO_COMPILE_CLI:-}" ]; then
    if [ -x "$toolchain" ]; then
      if ! tc=$("$toolchain"); then
        echo "compiled run: $toolchain failed"
        exit 1
      fi
      eval "$tc"
      export DENO_COMPILE_CLI DENORT_BIN
    else
      echo "compiled run skipped: no compile toolchain ($toolchain is absent and DENO_COMPILE_CLI is not set;" \
        "with Deno's release server reachable, DENO_COMPILE_CLI=\$(command -v deno) builds with the pinned deno)"
      exit "$source_status"
    fi
  fi
  echo "compiled run: deno task compile with $DENO_COMPILE_CLI"
  if ! deno task -q compile; then
    echo "compiled run: deno task compile failed"
    exit 1
  fi
  export GALAXY_BINARY=dist/galaxy
fi

echo "compiled run: tests against $GALAXY_BINARY"
deno test --allow-all --frozen tests/e2e/ tests/netns/plugins_table_test.ts tests/unit/install_test.ts \
  tests/unit/compile_test.ts tests/image/
status=$?
[ "$source_status" -ne 0 ] && exit "$source_status"
exit "$status"
