#!/usr/bin/env bash
# t_docs.sh: the documentation stays true of the tree. Each check is one TAP line:
#   - README.md has at most 200 lines and names both commands (`make demo`, `make check`);
#   - every relative link in README.md and docs/*.md points to a file that exists (the
#     #anchor is not checked);
#   - every docs/*.md page is linked from README.md's "## Documentation" index;
#   - every folder that git tracks source files in is named in README.md's "## Layout";
#   - the table under "## All knobs" in docs/knobs.md lists exactly the environment variables
#     the code reads, by the rule written on that page (below: knob_rule).
# Needs no build; reads the source with grep and sed, so it takes well under a second.
# timeout: 120
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."

# section FILE HEADING: the lines of FILE from the line that is exactly HEADING up to the next
# heading of the same or a higher level.
section() {
    awk -v h="$2" '
        BEGIN { lvl = index(h, " ") - 1 }
        $0 == h { on = 1; next }
        on && /^#+ / { l = index($0, " ") - 1; if (l <= lvl) exit }
        on { print }' "$1"
}
# first_col: the backticked ENV-like names in the first column of the markdown table rows read
# from stdin (the first table only).
first_col() {
    awk -F'|' '/^\|/ { seen = 1; print $2; next } seen { exit }' |
        grep -oE '`[A-Z][A-Za-z0-9_]*[A-Za-z0-9]`' | tr -d '`' | sort -u
}
# in_list NAME LIST: LIST is newline-separated.
in_list() { grep -qxF -- "$1" <<<"$2"; }

# ---- README: size and the two commands ----
lines=$(wc -l <README.md)
if [ "$lines" -le 200 ]; then t_ok "README.md has at most 200 lines ($lines)"
else t_fail "README.md has at most 200 lines" "it has $lines"; fi
missing=""
for c in "make demo" "make check"; do grep -qF -- "$c" README.md || missing+=" '$c'"; done
if [ -z "$missing" ]; then t_ok "README.md names make demo and make check"
else t_fail "README.md names make demo and make check" "missing:$missing"; fi

# ---- relative links resolve ----
bad=""
for f in README.md docs/*.md; do
    [ -f "$f" ] || continue
    dir=$(dirname "$f")
    while IFS= read -r target; do
        target=${target%%#*}
        case "$target" in "" | http://* | https://* | mailto:*) continue ;; esac
        [ -e "$dir/$target" ] || bad+=" $f->$target"
    done < <(grep -oE '\]\([^) ]+\)' "$f" | sed -E 's/^\]\((.*)\)$/\1/')
done
if [ -z "$bad" ]; then t_ok "every relative link in README.md and docs/*.md resolves"
else t_fail "every relative link in README.md and docs/*.md resolves" "broken:$bad"; fi

# ---- every docs page is in the README's index ----
index=$(section README.md "## Documentation")
bad=""
for f in docs/*.md; do
    [ -f "$f" ] || continue
    grep -qF "(docs/$(basename "$f"))" <<<"$index" || bad+=" $f"
done
if [ -z "$(ls docs/*.md 2>/dev/null)" ]; then t_fail "every docs page is in README.md's index" "no docs/*.md"
elif [ -z "$bad" ]; then t_ok "every docs/*.md page is linked from README.md's ## Documentation"
else t_fail "every docs/*.md page is linked from README.md's ## Documentation" "not linked:$bad"; fi

# ---- every source folder is in the README's layout ----
# A source file is a tracked file with a source extension, a Makefile or Dockerfile, or an
# executable (so .ci/run counts); the root folder is the README's own and is not listed.
if files=$(git ls-files -s 2>/dev/null) && [ -n "$files" ]; then
    layout=$(section README.md "## Layout")
    folders=$(awk '{ m = $1; $1 = $2 = $3 = ""; sub(/^ +/, ""); p = $0
                     if (m == "100755" || p ~ /\.(c|h|sh|py|yaml|yml|xml|json|in)$/ ||
                         p ~ /(^|\/)(Makefile|Dockerfile)$/) print p }' <<<"$files" |
        grep / | sed 's|/[^/]*$||' | sort -u)
    bad=""
    for d in $folders; do
        grep -qE "^[[:space:]\`-]*${d//./\\.}/([[:space:]\`]|$)" <<<"$layout" || bad+=" $d/"
    done
    if [ -z "$bad" ]; then t_ok "every source folder is named in README.md's ## Layout ($(wc -w <<<"$folders") folders)"
    else t_fail "every source folder is named in README.md's ## Layout" "missing:$bad"; fi
else
    t_skip "every source folder is named in README.md's ## Layout" "not a git checkout"
fi

# ---- the knob table against the code ----
# knob_rule (docs/knobs.md, "What is in the table"): every name the code reads is in the knob
# table, or in the worker env table of docs/launcher.md (what `baton run` sets), or in the
# cluster-spec source table of docs/specs.md (what an orchestrator injects), or is PATH/HOME;
# and every name in the knob table is read by the code.
SRC_DIRS="common rendezvous collectives launcher k8s examples include python"
if src=$(git ls-files -- $SRC_DIRS 2>/dev/null) && [ -n "$src" ]; then :; else
    src=$(find $SRC_DIRS -type f 2>/dev/null); fi
src=$(grep -E '\.(c|h|cpp|py)$' <<<"$src")
NAME='"[A-Za-z_][A-Za-z0-9_]*"'
# Each file as one line, so a call split over lines is still seen. The ways code reads env:
#   BT_PARAM_INT/DBL/STR(name, "ENV", default)   common/param.h's typed knobs
#   bt__env_int/dbl/str("ENV", ...), getenv("ENV"); Python's os.environ.get("ENV")
#   env_int("ENV", ...)                          collectives/comm.c's reader of the worker env
#   bt__spec_env/_use/_env_int(c, "ENV", ...)    launcher/spec*.c's readers of the cluster env
code=$(for f in $src; do tr '\n' ' ' <"$f"; echo; done |
    grep -oE "BT_PARAM_(INT|DBL|STR)\([^,()]*,[[:space:]]*$NAME|(\<getenv|\<secure_getenv|\<os\.environ\.get|\<bt__env_(int|dbl|str)|\<env_int)\([[:space:]]*$NAME|\<bt__spec_(env|use|env_int)\([^,()]*,[[:space:]]*$NAME" |
    grep -oE "$NAME\$" | tr -d '"' | sort -u)
# Names that launcher/spec*.c reads through a variable (a table it loops over, or a name chosen
# by a ?: before the read), so no pattern above sees them. Each must still be a string literal
# in launcher/spec*.c, so this list cannot outlive the code. Other reads built at run time are
# not of one name: getenv(name) inside the helpers above, and `baton k8s local` passing the
# caller's BATON_*, ASAN_*, UBSAN_*, LSAN_* variables through to its pods by prefix.
VIA_VARIABLE="OMPI_COMM_WORLD_SIZE PMI_SIZE SLURM_NTASKS SLURM_JOB_NUM_NODES
SLURM_STEP_NODELIST SLURM_JOB_NODELIST SLURM_NODELIST"
stale=""
for n in $VIA_VARIABLE; do
    cat launcher/spec*.c 2>/dev/null | grep -qF "\"$n\"" || stale+=" $n"
done
if [ -z "$stale" ]; then t_ok "t_docs.sh's list of env names read through a variable is in launcher/spec*.c"
else t_fail "t_docs.sh's list of env names read through a variable is in launcher/spec*.c" "gone from the code:$stale"; fi
code=$(printf '%s\n' $code $VIA_VARIABLE | sort -u)

knobs=$(section docs/knobs.md "## All knobs" | first_col)
worker=$(section docs/launcher.md "## Env given to each worker" | first_col)
spec=$(awk '/^\|/ { seen = 1; print; next } seen { exit }' docs/specs.md |
    grep -oE '`[A-Z][A-Za-z0-9_]*[A-Za-z0-9](=[^`]*)?`' | sed -E 's/^`//; s/(=.*)?`$//' | sort -u)
system="PATH
HOME"
if [ -z "$code" ] || [ -z "$knobs" ] || [ -z "$worker" ] || [ -z "$spec" ]; then
    t_fail "the knob table lists exactly the env names the code reads" \
        "found nothing to compare (code: $(wc -w <<<"$code"), knobs: $(wc -w <<<"$knobs"), worker env: $(wc -w <<<"$worker"), spec env: $(wc -w <<<"$spec") names)"
else
    bad=""
    for n in $code; do
        in_list "$n" "$knobs" || in_list "$n" "$worker" || in_list "$n" "$spec" ||
            in_list "$n" "$system" || bad+=" $n"
    done
    if [ -z "$bad" ]; then t_ok "every env name the code reads is documented ($(wc -w <<<"$code") names)"
    else t_fail "every env name the code reads is documented" \
        "read by the code but in no table of docs/knobs.md, docs/launcher.md or docs/specs.md:$bad"; fi
    bad=""
    for n in $knobs; do in_list "$n" "$code" || bad+=" $n"; done
    if [ -z "$bad" ]; then t_ok "every name in docs/knobs.md's table is read by the code ($(wc -w <<<"$knobs") knobs)"
    else t_fail "every name in docs/knobs.md's table is read by the code" "not read anywhere:$bad"; fi
fi
t_done
