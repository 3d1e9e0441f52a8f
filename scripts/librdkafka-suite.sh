#!/usr/bin/env bash
# librdkafka-suite.sh: build librdkafka's own regression test suite (the copy
# shipped inside the rdkafka-sys crate this project already depends on) and
# run selected broker tests against an already-running Kafka-compatible broker.
#
# Usage:
#   scripts/librdkafka-suite.sh --bootstrap HOST:PORT --tests "0001 0002 ..."
#       [--out FILE]            results table (default target/librdkafka-suite/results.md)
#       [--extra-args "-P"]     extra test-runner flags (e.g. -P = idempotent producer)
#       [--timeout-s N]         wall-clock limit per test in seconds (default 600)
#       [--quick]               pass -Q (quick mode): fewer messages, and every
#                               sub-test declared with SUB_TEST() (not _QUICK) is
#                               skipped, which empties e.g. 0018/0019/0026/0045/0137
#       [--kafka-version V]     TEST_KAFKA_VERSION (default $TEST_KAFKA_VERSION or 4.0.0)
#       [--conf KEY=VALUE]      extra line for the run's test.conf (repeatable), e.g.
#                               --conf test.timeout.multiplier=2
#       [--subtests STR]        SUBTESTS=STR: only sub-tests whose name contains STR
#       [--allow-skipped]       a test that only reports SKIPPED does not fail the run
#       [--retries N]           re-run a failed test up to N times (default 0); a test
#                               that passes on a retry is reported "PASSED (retry)" with
#                               its earlier failure in the details and log (<t>.try<k>.log)
#       [--build-only]          build (or verify the build) and exit
#       [--rebuild]             ignore the build stamp and rebuild from scratch
#
# Each test runs alone as
#   cd src/tests && TESTS=<t> TEST_KAFKA_VERSION=<v> ./test-runner -L -E -p1 [-Q] <extra>
# -L: skip local tests (broker-less / mock-cluster ones, flag TEST_F_LOCAL);
# -E: skip sockem (socket-emulation) tests; -p1: no parallelism (and no
# timeout-multiplier bump); -Q only with --quick. test.conf (next to --out)
# holds bootstrap.servers plus any --conf lines. The environment is passed
# through, so TEST_DEBUG=cgrp,fetch, TEST_LEVEL=3 or
# TEST_CONSUMER_GROUP_PROTOCOL=consumer work; note CI=true makes the runner
# add 2 to its timeout multiplier and turn timing asserts into warnings.
#
# Exit status: 0 only if every selected test PASSED (SKIPPED counts as a
# failure unless --allow-skipped); 2 for usage errors; build errors abort.
# The last line printed is "N passed, N failed, N skipped".
#
# Needs: bash, python3, gcc, g++ (tests and librdkafka++ are C++), make, perl,
# coreutils (timeout, stdbuf). No OpenSSL, SASL, curl, libzstd-dev, liblz4-dev
# or zlib1g-dev needed:
#   * lz4 is librdkafka's builtin copy (--disable-lz4-ext);
#   * zstd and zlib come from the system if their -dev packages are installed,
#     else they are compiled from the C sources bundled in the zstd-sys and
#     libz-sys crates (both already in this project's dependency graph), else
#     that codec is disabled (0017 then simply doesn't test it).
#     LIBRDKAFKA_SUITE_BUNDLED_DEPS=1 forces the crate-source path.
# The tests talk to the broker only through the Kafka protocol: with
# TEST_KAFKA_VERSION >= 0.10.2 topics are created/deleted with the Admin API
# (CreateTopics/DeleteTopics/CreatePartitions) or by broker auto-creation;
# nothing here needs ZooKeeper, kafka-topics.sh or KAFKA_PATH (the only users
# of those in the usual subsets are 0045's "noautocreate"-scenario sub-tests,
# which don't run in the default scenario, and 0113's o_java_interop, which
# runs only without --quick and then fails without KAFKA_PATH + Java).
#
# Layout (all under target/librdkafka-suite/, which is not committed):
#   src/            copy of rdkafka-sys's librdkafka tree, configured + built
#   deps/           zlib/zstd static libs built from crate sources (if needed)
#   build.stamp     what src/ was built from; a matching stamp skips the build
#   build.log       configure/make output and timings
#   logs/<t>.log    full test-runner output of test <t>; logs/<t>.json its report
#   results.md      | test | name | result | seconds | table (+ failure details)
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'
}

die() { echo "librdkafka-suite: error: $*" >&2; exit 2; }
log() { echo "librdkafka-suite: $*" >&2; }

BOOTSTRAP=""
TESTS_LIST=""
OUT=""
EXTRA_ARGS=""
TIMEOUT_S=600
QUICK=0
SUBTESTS_FILTER=""
KAFKA_VERSION="${TEST_KAFKA_VERSION:-4.0.0}"
ALLOW_SKIPPED=0
RETRIES=0
BUILD_ONLY=0
REBUILD=0
EXTRA_CONF=()
JOBS=2

while [[ $# -gt 0 ]]; do
    case "$1" in
        --bootstrap) [[ $# -ge 2 ]] || die "$1 needs a value"; BOOTSTRAP="$2"; shift 2 ;;
        --tests) [[ $# -ge 2 ]] || die "$1 needs a value"; TESTS_LIST="$2"; shift 2 ;;
        --out) [[ $# -ge 2 ]] || die "$1 needs a value"; OUT="$2"; shift 2 ;;
        --extra-args) [[ $# -ge 2 ]] || die "$1 needs a value"; EXTRA_ARGS="$2"; shift 2 ;;
        --timeout-s) [[ $# -ge 2 ]] || die "$1 needs a value"; TIMEOUT_S="$2"; shift 2 ;;
        --kafka-version) [[ $# -ge 2 ]] || die "$1 needs a value"; KAFKA_VERSION="$2"; shift 2 ;;
        --conf) [[ $# -ge 2 ]] || die "$1 needs a value"; EXTRA_CONF+=("$2"); shift 2 ;;
        --subtests) [[ $# -ge 2 ]] || die "$1 needs a value"; SUBTESTS_FILTER="$2"; shift 2 ;;
        --quick) QUICK=1; shift ;;
        --allow-skipped) ALLOW_SKIPPED=1; shift ;;
        --retries) [[ $# -ge 2 ]] || die "$1 needs a value"; RETRIES="$2"; shift 2 ;;
        --build-only) BUILD_ONLY=1; shift ;;
        --rebuild) REBUILD=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

[[ "$TIMEOUT_S" =~ ^[0-9]+$ && "$TIMEOUT_S" -gt 0 ]] || die "--timeout-s must be a positive integer"
for kv in ${EXTRA_CONF[@]+"${EXTRA_CONF[@]}"}; do
    [[ "$kv" == *=* ]] || die "--conf expects KEY=VALUE, got '$kv'"
done
if [[ $BUILD_ONLY -eq 0 ]]; then
    [[ -n "$BOOTSTRAP" ]] || { usage >&2; die "--bootstrap HOST:PORT is required"; }
    [[ -n "$TESTS_LIST" ]] || { usage >&2; die "--tests \"0001 0002 ...\" is required"; }
    # Accept spaces and/or commas as separators.
    read -r -a TESTS_ARR <<<"${TESTS_LIST//,/ }"
    for t in "${TESTS_ARR[@]}"; do
        [[ "$t" =~ ^[0-9]{4}$ ]] || die "test ids are 4 digits (e.g. 0001), got '$t'"
    done
fi

for tool in python3 gcc g++ make perl timeout cargo; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found in PATH"
done

ORIG_PWD="$(pwd)"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SUITE="$ROOT/target/librdkafka-suite"
SRC="$SUITE/src"
DEPS="$SUITE/deps"
STAMP="$SUITE/build.stamp"
BUILD_LOG="$SUITE/build.log"
if [[ -z "$OUT" ]]; then
    OUT="$SUITE/results.md"
elif [[ "$OUT" != /* ]]; then
    OUT="$ORIG_PWD/$OUT"
fi
mkdir -p "$SUITE"
# Runs may go in parallel (each against its own broker): only the build is shared, so
# only the build is serialised (fd 9 holds the lock until do_build returns). Each run
# keeps its test.conf and logs next to its --out file.
RUN_DIR="$(dirname "$OUT")/$(basename "$OUT" .md)"
LOGS="$RUN_DIR/logs"

# ---------------------------------------------------------------------------
# Locate crate sources through cargo metadata (never a hard-coded registry
# hash). cargo metadata downloads the crates if they are not there yet.
# ---------------------------------------------------------------------------
# Parallel runs each use their own metadata file (a shared one could be read while
# another run truncates it).
mkdir -p "$SUITE"
META_JSON="$(mktemp "$SUITE/cargo-metadata.XXXXXX")"
META_ERR="$META_JSON.err"
if ! (cd "$ROOT" && cargo metadata --format-version 1 >"$META_JSON" 2>"$META_ERR"); then
    log "cargo metadata failed, retrying --offline"
    (cd "$ROOT" && cargo metadata --format-version 1 --offline >"$META_JSON" 2>>"$META_ERR") ||
        { cat "$META_ERR" >&2; rm -f "$META_JSON" "$META_ERR"; die "cargo metadata failed"; }
fi
crate_dir() { # $1 = package name; prints the crate root dir (highest version) or nothing
    python3 - "$META_JSON" "$1" <<'EOF'
import json, os, sys
meta = json.load(open(sys.argv[1]))
def key(p):
    return [int(x) if x.isdigit() else 0 for x in p["version"].split("+")[0].split("-")[0].split(".")]
pkgs = sorted((p for p in meta["packages"] if p["name"] == sys.argv[2]), key=key)
if pkgs:
    print(os.path.dirname(pkgs[-1]["manifest_path"]))
EOF
}
RDKAFKA_SYS_DIR="$(crate_dir rdkafka-sys)"
ZSTD_SYS_DIR="$(crate_dir zstd-sys)"
LIBZ_SYS_DIR="$(crate_dir libz-sys)"
rm -f "$META_JSON" "$META_ERR"
[[ -n "$RDKAFKA_SYS_DIR" ]] || die "package rdkafka-sys not found in cargo metadata"
LIBRDKAFKA_DIR="$RDKAFKA_SYS_DIR/librdkafka"
[[ -x "$LIBRDKAFKA_DIR/configure" && -f "$LIBRDKAFKA_DIR/tests/test.c" ]] ||
    die "$LIBRDKAFKA_DIR does not look like a librdkafka source tree with tests"

# ---------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------
# Bump when the build recipe below changes, to invalidate old stamps.
RECIPE_VERSION=1
CONFIGURE_ARGS=(--disable-ssl --disable-gssapi --disable-curl --disable-lz4-ext
    --disable-valgrind --disable-devel)

have_syslib() { # $1 = header, $2 = -l flag, $3 = function call expression
    printf '#include <%s>\nint main(void){ return (int)(long)(%s); }\n' "$1" "$3" |
        gcc -x c - "$2" -o /dev/null >/dev/null 2>&1
}

compile_static_lib() { # $1 = lib name, $2 = out dir, $3 = cflags, rest = sources
    local name="$1" outdir="$2" cflags="$3"
    shift 3
    mkdir -p "$outdir/obj-$name"
    printf '%s\n' "$@" | xargs -P"$JOBS" -I{} sh -c \
        'gcc -O2 -fPIC '"$cflags"' -c "$1" -o "$2/$(basename "$1" .c).o"' _ {} "$outdir/obj-$name"
    ar rcs "$outdir/lib/lib$name.a" "$outdir/obj-$name"/*.o
}

# Decide how zlib and zstd are provided; sets DEP_DESC and appends to CONFIGURE_ARGS.
plan_deps() {
    DEP_DESC=""
    NEED_BUNDLED_ZLIB=0
    NEED_BUNDLED_ZSTD=0
    # LIBRDKAFKA_SUITE_BUNDLED_DEPS=1 ignores system zlib/zstd (to test the
    # fresh-machine path on a machine that has the -dev packages).
    local sys_ok=1
    [[ "${LIBRDKAFKA_SUITE_BUNDLED_DEPS:-0}" == 1 ]] && sys_ok=0
    if [[ $sys_ok -eq 1 ]] && have_syslib zlib.h -lz 'zlibVersion()'; then
        DEP_DESC+="zlib=system "
        CONFIGURE_ARGS+=(--enable-zlib)
    elif [[ -n "$LIBZ_SYS_DIR" && -f "$LIBZ_SYS_DIR/src/zlib/zlib.h" ]]; then
        DEP_DESC+="zlib=bundled($LIBZ_SYS_DIR) "
        NEED_BUNDLED_ZLIB=1
        CONFIGURE_ARGS+=(--enable-zlib)
    else
        DEP_DESC+="zlib=disabled "
        CONFIGURE_ARGS+=(--disable-zlib)
    fi
    if [[ $sys_ok -eq 1 ]] && have_syslib zstd.h -lzstd 'ZSTD_versionNumber()'; then
        DEP_DESC+="zstd=system"
        CONFIGURE_ARGS+=(--enable-zstd)
    elif [[ -n "$ZSTD_SYS_DIR" && -f "$ZSTD_SYS_DIR/zstd/lib/zstd.h" ]]; then
        DEP_DESC+="zstd=bundled($ZSTD_SYS_DIR)"
        NEED_BUNDLED_ZSTD=1
        CONFIGURE_ARGS+=(--enable-zstd)
    else
        DEP_DESC+="zstd=disabled"
        CONFIGURE_ARGS+=(--disable-zstd)
    fi
}

build_bundled_deps() {
    rm -rf "$DEPS"
    mkdir -p "$DEPS/include" "$DEPS/lib"
    if [[ $NEED_BUNDLED_ZLIB -eq 1 ]]; then
        local z="$LIBZ_SYS_DIR/src/zlib" f srcs=()
        for f in adler32 compress crc32 deflate gzclose gzlib gzread gzwrite infback \
            inffast inflate inftrees trees uncompr zutil; do srcs+=("$z/$f.c"); done
        compile_static_lib z "$DEPS" "-DSTDC -D_LARGEFILE64_SOURCE -DHAVE_UNISTD_H -DZ_HAVE_UNISTD_H" "${srcs[@]}"
        cp "$z/zlib.h" "$z/zconf.h" "$DEPS/include/"
    fi
    if [[ $NEED_BUNDLED_ZSTD -eq 1 ]]; then
        local zl="$ZSTD_SYS_DIR/zstd/lib"
        compile_static_lib zstd "$DEPS" "-DZSTD_DISABLE_ASM -DXXH_NAMESPACE=ZSTD_" \
            "$zl"/common/*.c "$zl"/compress/*.c "$zl"/decompress/*.c
        cp "$zl/zstd.h" "$zl/zstd_errors.h" "$zl/zdict.h" "$DEPS/include/"
    fi
}

now_s() { date +%s.%N; }
elapsed() { python3 -c 'import sys; print("%.1f" % (float(sys.argv[2]) - float(sys.argv[1])))' "$1" "$2"; }

do_build() {
    local t0 t1 t2 t3 t4
    plan_deps
    local stamp_content
    stamp_content="$(printf 'recipe=%s\nsource=%s\nconfigure=%s\ndeps=%s\n' \
        "$RECIPE_VERSION" "$LIBRDKAFKA_DIR" "${CONFIGURE_ARGS[*]}" "$DEP_DESC")"
    if [[ $REBUILD -eq 0 && -f "$STAMP" && -x "$SRC/tests/test-runner" ]] &&
        [[ "$(grep -v '^built_in=' "$STAMP")" == "$stamp_content" ]]; then
        log "build up to date ($STAMP), skipping copy+build"
        return 0
    fi
    rm -f "$STAMP"
    log "building librdkafka $(basename "$RDKAFKA_SYS_DIR") test suite into $SRC (log: $BUILD_LOG)"
    log "deps: $DEP_DESC"
    : >"$BUILD_LOG"
    t0="$(now_s)"
    rm -rf "$SRC"
    if command -v rsync >/dev/null 2>&1; then
        rsync -a "$LIBRDKAFKA_DIR/" "$SRC/"
    else
        cp -a "$LIBRDKAFKA_DIR" "$SRC"
    fi
    chmod -R u+w "$SRC"
    build_bundled_deps >>"$BUILD_LOG" 2>&1 || { tail -30 "$BUILD_LOG" >&2; die "building bundled zlib/zstd failed"; }
    t1="$(now_s)"
    local cfg=("${CONFIGURE_ARGS[@]}")
    if [[ $NEED_BUNDLED_ZLIB -eq 1 || $NEED_BUNDLED_ZSTD -eq 1 ]]; then
        cfg+=("--CPPFLAGS=-I$DEPS/include" "--LDFLAGS=-L$DEPS/lib")
    fi
    echo "### ./configure ${cfg[*]}" >>"$BUILD_LOG"
    (cd "$SRC" && ./configure "${cfg[@]}") >>"$BUILD_LOG" 2>&1 ||
        { tail -40 "$BUILD_LOG" >&2; die "configure failed (see $BUILD_LOG)"; }
    t2="$(now_s)"
    echo "### make -j$JOBS libs (src, src-cpp)" >>"$BUILD_LOG"
    make -C "$SRC" -j"$JOBS" libs >>"$BUILD_LOG" 2>&1 ||
        { tail -40 "$BUILD_LOG" >&2; die "building librdkafka failed (see $BUILD_LOG)"; }
    t3="$(now_s)"
    # 'build' = test-runner + interceptor_test plugin, without running tests.
    echo "### make -j$JOBS -C tests build" >>"$BUILD_LOG"
    make -C "$SRC/tests" -j"$JOBS" build >>"$BUILD_LOG" 2>&1 ||
        { tail -40 "$BUILD_LOG" >&2; die "building tests/test-runner failed (see $BUILD_LOG)"; }
    t4="$(now_s)"
    [[ -x "$SRC/tests/test-runner" ]] || die "tests/test-runner was not produced"
    local builtin
    builtin="$(grep -E '^ *BUILT_WITH' "$BUILD_LOG" | tail -1 | sed 's/^ *BUILT_WITH *//')"
    local timing
    timing="$(printf 'copy+deps %ss, configure %ss, make libs %ss, make tests %ss, total %ss' \
        "$(elapsed "$t0" "$t1")" "$(elapsed "$t1" "$t2")" "$(elapsed "$t2" "$t3")" \
        "$(elapsed "$t3" "$t4")" "$(elapsed "$t0" "$t4")")"
    echo "### build timings: $timing" >>"$BUILD_LOG"
    log "build done: $timing"
    log "built with: $builtin"
    { echo "$stamp_content"; echo "built_in=$timing | $builtin"; } >"$STAMP"
}

if command -v flock >/dev/null 2>&1; then
    exec 9>"$SUITE/.build.lock"
    flock 9
fi
do_build
if command -v flock >/dev/null 2>&1; then
    exec 9>&-
fi
if [[ $BUILD_ONLY -eq 1 ]]; then
    log "--build-only: test runner at $SRC/tests/test-runner"
    exit 0
fi

# ---------------------------------------------------------------------------
# Run
# ---------------------------------------------------------------------------
TESTS_DIR="$SRC/tests"
mkdir -p "$RUN_DIR"
TEST_CONF="$RUN_DIR/test.conf"
# test.conf as tests/README.md describes for "an existing cluster". Keys other
# than test.* are librdkafka client properties applied to every client.
{
    echo "# written by scripts/librdkafka-suite.sh"
    echo "bootstrap.servers=$BOOTSTRAP"
    for kv in ${EXTRA_CONF[@]+"${EXTRA_CONF[@]}"}; do echo "$kv"; done
} >"$TEST_CONF"

mkdir -p "$LOGS"
ROWS="$LOGS/.rows.jsonl"
: >"$ROWS"
# -L: don't run local (broker-less/mock-cluster) tests; -E: don't run sockem
# (socket emulation) tests; -p1: one test at a time (also keeps the runner
# from inflating its timeout multiplier); -Q: quick mode (--quick only).
read -r -a EXTRA_ARR <<<"$EXTRA_ARGS"
RUN_ARGS=(-L -E -p1)
if [[ $QUICK -eq 1 ]]; then RUN_ARGS+=(-Q); fi
RUN_ARGS+=(${EXTRA_ARR[@]+"${EXTRA_ARR[@]}"})
STDBUF=()
command -v stdbuf >/dev/null 2>&1 && STDBUF=(stdbuf -oL -eL)

log "running ${#TESTS_ARR[@]} test(s) against $BOOTSTRAP (TEST_KAFKA_VERSION=$KAFKA_VERSION, args: ${RUN_ARGS[*]}, timeout ${TIMEOUT_S}s each)"
for t in "${TESTS_ARR[@]}"; do
  for attempt in $(seq 1 $((RETRIES + 1))); do
    if [[ $attempt -gt 1 ]]; then
        # Keep the failed attempt's log and row; the row is re-added, annotated, below.
        mv -f "$LOGS/$t.log" "$LOGS/$t.try$((attempt - 1)).log"
        tail -1 "$ROWS" >"$LOGS/$t.try$((attempt - 1)).row"
        sed -i '$ d' "$ROWS"
    fi
    tlog="$LOGS/$t.log"
    tjson="$LOGS/$t.json"
    rm -f "$tlog" "$tjson"
    rm -rf "$LOGS/$t-stats"
    start="$(now_s)"
    rc=0
    { (
        cd "$TESTS_DIR"
        export LD_LIBRARY_PATH="../src:../src-cpp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        export TESTS="$t" TEST_KAFKA_VERSION="$KAFKA_VERSION" TEST_REPORT="$tjson"
        export RDKAFKA_TEST_CONF="$TEST_CONF"
        if [[ -n "$SUBTESTS_FILTER" ]]; then export SUBTESTS="$SUBTESTS_FILTER"; fi
        exec timeout -k 10 "$TIMEOUT_S" ${STDBUF[@]+"${STDBUF[@]}"} ./test-runner "${RUN_ARGS[@]}"
    ) >"$tlog" 2>&1 </dev/null; } 2>/dev/null || rc=$?
    end="$(now_s)"
    # Strip ANSI colour codes so the logs read well in any viewer.
    perl -pi -e 's/\e\[[0-9;]*m|\e\(B//g' "$tlog"
    # Per-test stats files (a few tests enable statistics) land in the shared tests
    # directory; parallel runs may pick up each other's, which only affects these copies.
    if compgen -G "$TESTS_DIR/stats_*.json" >/dev/null; then
        mkdir -p "$LOGS/$t-stats"
        mv "$TESTS_DIR"/stats_*.json "$LOGS/$t-stats/" 2>/dev/null || true
    fi
    python3 - "$t" "$rc" "$start" "$end" "$tlog" "$tjson" "$TIMEOUT_S" >>"$ROWS" <<'EOF'
import json, re, sys
t, rc, start, end, tlog, tjson, tmo = sys.argv[1:8]
rc = int(rc)
secs = float(end) - float(start)
log = open(tlog, errors="replace").read()
subs = {}  # sub-test name -> state
try:
    rep = json.load(open(tjson))
    for name, v in rep.get("tests", {}).items():
        if name.startswith(t + "_"):
            subs[name] = v.get("state", "?")
except Exception:
    pass
if not subs:  # no report (killed/crashed before the summary): use the log
    for m in re.finditer(r"=+ Running test (%s_\S+) =+" % t, log):
        subs[m.group(1)] = "RUNNING"
ran = [n for n, s in subs.items() if s in ("PASSED", "FAILED", "RUNNING")]
skipped = [n for n, s in subs.items() if s == "SKIPPED"]
failed_names = set(re.findall(r'### Test "(%s_[^" ]+)[^"]*" failed at' % t, log))
if rc in (124, 137):
    result = "TIMEOUT"
elif any(subs[n] in ("FAILED", "RUNNING") for n in ran) or failed_names:
    result = "FAILED"
elif rc != 0:
    result = "FAILED" if subs else "ERROR"
elif ran:
    result = "PASSED"
elif skipped:
    result = "SKIPPED"
else:
    result = "NOT FOUND"
details = []
fails = [(m.group(1).rstrip(":"), m.group(2).strip()) for m in
         re.finditer(r'### (Test "[^"]*" failed at [^\n]*?) ###\n([^\n]*)', log)]
if any(not f[0].startswith('Test "<MAIN>"') for f in fails):
    # <MAIN> failures ("N thread(s) still active") just follow a test failure.
    fails = [f for f in fails if not f[0].startswith('Test "<MAIN>"')]
details += ["%s: %s" % f for f in fails]
if rc > 128 and rc != 137 and not fails:
    details.append("test-runner killed by signal %d" % (rc - 128))
for m in re.finditer(r"\[(\S+)\s*/\s*[0-9.]+s\] WARN: SKIPPING TEST: ([^\n]*)", log):
    if m.group(1).startswith(t + "_"):
        reason = m.group(2).strip()
        if "negative test flags" in reason:
            reason += " (local/sockem/known-issue test: -L/-E/-K)"
        details.append("%s skipped: %s" % (m.group(1), reason))
if result == "TIMEOUT":
    details.append("killed after %ss wall-clock limit (--timeout-s)" % tmo)
elif result in ("ERROR", "NOT FOUND"):
    details.append("test-runner exit code %d; no %s_* test ran (unknown test id?)" % (rc, t))
elif result == "FAILED" and not [d for d in details if "failed at" in d]:
    tail = [l for l in log.splitlines() if l.strip()][-3:]
    details.append("test-runner exit code %d; last lines: %s" % (rc, " | ".join(tail)))
name = ", ".join(sorted(ran)) if ran else ", ".join(sorted(subs)) or "-"
if ran and skipped:
    name += " (skipped: %s)" % ", ".join(sorted(skipped))
print(json.dumps({"test": t, "name": name, "result": result, "seconds": round(secs, 1),
                  "rc": rc, "details": details}))
EOF
    if [[ $attempt -gt 1 ]]; then
        python3 - "$ROWS" "$LOGS" "$t" "$attempt" <<'RETRY'
import json, sys
rows_path, logs, t, attempt = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
lines = open(rows_path).read().splitlines()
row = json.loads(lines[-1])
earlier = []
for k in range(1, attempt):
    prev = json.loads(open("%s/%s.try%d.row" % (logs, t, k)).read())
    earlier.append("attempt %d: %s (log %s.try%d.log): %s" % (
        k, prev["result"], t, k, "; ".join(prev["details"][:2])))
if row["result"] == "PASSED":
    row["result"] = "PASSED (retry)"
row["details"] = earlier + row["details"]
lines[-1] = json.dumps(row)
open(rows_path, "w").write("\n".join(lines) + "\n")
RETRY
    fi
    tail -1 "$ROWS" | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print("librdkafka-suite: %-4s %-8s %6.1fs  %s" % (r["test"], r["result"], r["seconds"], r["name"]), file=sys.stderr)'
    last_result="$(tail -1 "$ROWS" | python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["result"])')"
    [[ "$last_result" == PASSED* ]] && break
  done
done

mkdir -p "$(dirname "$OUT")"
set +e
python3 - "$ROWS" "$OUT" "$BOOTSTRAP" "$KAFKA_VERSION" "${RUN_ARGS[*]}" "$LIBRDKAFKA_DIR" "$LOGS" "$ALLOW_SKIPPED" "$TIMEOUT_S" <<'EOF'
import datetime, json, sys
rows_path, out, bootstrap, kver, args, srcdir, logs, allow_skipped, tmo = sys.argv[1:10]
rows = [json.loads(l) for l in open(rows_path) if l.strip()]
counts = {}
for r in rows:
    counts[r["result"]] = counts.get(r["result"], 0) + 1
ok = {"PASSED", "PASSED (retry)"} | ({"SKIPPED"} if allow_skipped == "1" else set())
bad = [r for r in rows if r["result"] not in ok]
esc = lambda s: str(s).replace("|", "\\|")
L = []
L.append("# librdkafka test suite results\n")
L.append("- date: %s" % datetime.datetime.now().astimezone().isoformat(timespec="seconds"))
L.append("- bootstrap.servers: `%s`" % bootstrap)
L.append("- librdkafka source: `%s`" % srcdir)
L.append("- TEST_KAFKA_VERSION: `%s`; test-runner args: `%s`; per-test limit: %ss" % (kver, args, tmo))
L.append("- logs: `%s/<test>.log`\n" % logs)
table = ["| test | name | result | seconds |", "| --- | --- | --- | --- |"]
for r in rows:
    table.append("| %s | %s | %s | %.1f |" % (r["test"], esc(r["name"]), r["result"], r["seconds"]))
L += table
n_pass = counts.get("PASSED", 0) + counts.get("PASSED (retry)", 0)
n_skip = counts.get("SKIPPED", 0)
n_fail = len(rows) - n_pass - n_skip
summary = "%d passed, %d failed, %d skipped" % (n_pass, n_fail, n_skip)
L.append("\n%s\n" % summary)
det = [r for r in rows if r["details"]]
if det:
    L.append("## Details\n")
    for r in det:
        L.append("### %s (%s)\n" % (r["test"], r["result"]))
        for d in r["details"][:10]:
            L.append("- %s" % d.replace("\n", " "))
        L.append("")
open(out, "w").write("\n".join(L) + "\n")
print("\n".join(table))
print("results: %s" % out)
print(summary)
sys.exit(1 if bad or not rows else 0)
EOF
status=$?
set -e
exit "$status"
