# Prints the name of every crates.io package in a Cargo.lock, one a line (unsorted, repeated
# for each version): the crates whose advisories the audit needs (scripts/check-deps.sh,
# scripts/update-advisory-db.sh). Workspace members have no `source` line and are left out.
/^\[\[package\]\]/ { name = "" }
/^name = "/ { name = $3; gsub(/"/, "", name) }
/^source = "registry\+/ { if (name != "") print name }
