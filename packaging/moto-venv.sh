#!/usr/bin/env bash
# Usage: bash packaging/moto-venv.sh DIR
#
# Prepares, with the network, the Python venv at DIR that the tests use for a real
# S3-compatible server (moto_server) and an independent S3 client (boto3); the tests
# themselves run offline (packaging/in-netns.sh) and find it through HOMEHUB_MOTO_VENV.
# Idempotent: a quick no-op when DIR already holds these exact versions.
# Needs python3 with venv (Debian: python3 python3-venv, see apt-packages.txt).
set -euo pipefail

MOTO=5.2.5
BOTO3=1.44.5

die() { echo "moto-venv: $*" >&2; exit 1; }

[ $# -eq 1 ] && [ -n "$1" ] || die "usage: bash packaging/moto-venv.sh DIR"
dir=$1
case $dir in /*) ;; *) dir=$PWD/$dir ;; esac
py=${PYTHON:-python3}
marker=$dir/.homehub-moto-venv
want="moto==$MOTO boto3==$BOTO3"

# Already there? (the marker is written last, so an interrupted install is redone)
if [ -x "$dir/bin/moto_server" ] && [ "$(cat "$marker" 2>/dev/null)" = "$want" ] &&
   "$dir/bin/python" -c 'import boto3, moto' 2>/dev/null; then
  echo "moto-venv: $dir ready ($want)"
  exit 0
fi

command -v "$py" >/dev/null || die "$py not found: install Debian's python3 and python3-venv (bash packaging/deps.sh)"
if [ -e "$dir" ]; then
  # Only ever remove what is recognisably a venv (or an empty directory).
  if [ -f "$dir/pyvenv.cfg" ] || { [ -d "$dir" ] && [ -z "$(ls -A "$dir")" ]; }; then
    rm -rf "$dir"
  else
    die "$dir exists and is not a Python venv; remove it or choose another DIR"
  fi
fi

echo "moto-venv: creating $dir ($want; about a minute, needs PyPI)"
start=$(date +%s)
mkdir -p "$(dirname "$dir")"
"$py" -m venv "$dir" >/dev/null 2>"$dir.err" || {
  msg=$(tail -n 1 "$dir.err"); rm -rf "$dir" "$dir.err"
  die "'$py -m venv' failed ($msg): on Debian install python3-venv (bash packaging/deps.sh)"
}
rm -f "$dir.err"

# Every transitive dependency pinned to the set verified with moto $MOTO / boto3 $BOTO3
# on Debian bookworm's Python 3.11, so a new upload to PyPI cannot change the test server.
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
cat >"$constraints" <<'EOF'
annotated-types==0.8.0
antlr4-python3-runtime==4.13.2
attrs==26.1.0
aws-xray-sdk==2.15.0
blinker==1.9.0
boto3==1.44.5
botocore==1.44.5
certifi==2026.10.18
cffi==2.1.1
cfn-lint==1.58.0
charset-normalizer==3.5.2
click==8.5.1
cryptography==50.0.2
docker==7.2.0
Flask==3.1.3
flask-cors==6.0.5
graphql-core==3.3.2
idna==3.20
itsdangerous==2.2.0
Jinja2==3.1.6
jmespath==1.1.0
joserfc==1.8.0
jsonpatch==1.47
jsonpath-ng==1.16.0
jsonpointer==3.12
jsonschema==4.26.0
jsonschema-path==0.5.0
jsonschema-specifications==2025.9.1
lazy-object-proxy==1.13.0
MarkupSafe==3.0.4
moto==5.2.5
mpmath==1.3.0
networkx==3.6.1
openapi-schema-validator==0.9.0
openapi-spec-validator==0.9.0
pathable==0.6.0
py-partiql-parser==0.6.3
pycparser==3.12
pydantic==2.14.3
pydantic-settings==2.16.3
pydantic_core==2.50.4
pyparsing==3.3.3
python-dateutil==2.9.0.post0
python-dotenv==1.2.4
PyYAML==6.0.3
referencing==0.37.0
regex==2026.11.15
requests==2.34.2
responses==0.26.3
rfc3339-validator==0.1.4
rpds-py==2026.9.1
s3transfer==0.19.3
six==1.17.0
sympy==1.14.0
typing-inspection==0.4.5
typing_extensions==4.16.0
urllib3==2.8.0
Werkzeug==3.1.9
wrapt==2.5.2
xmltodict==1.0.4
EOF

log=$dir/pip-install.log
if ! "$dir/bin/python" -m pip install --disable-pip-version-check --no-input --progress-bar off \
    -c "$constraints" "moto[server]==$MOTO" "boto3==$BOTO3" >"$log" 2>&1; then
  die "pip install failed (is PyPI reachable?); last line: $(grep -v '^\s*$' "$log" | tail -n 1); full log: $log"
fi
"$dir/bin/python" -c 'import boto3, moto' 2>>"$log" || die "installed, but 'import boto3, moto' fails; see $log"
[ -x "$dir/bin/moto_server" ] || die "installed, but $dir/bin/moto_server is missing; see $log"
echo "$want" >"$marker"
echo "moto-venv: $dir ready ($want) in $(( $(date +%s) - start )) s"
