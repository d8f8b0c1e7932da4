#!/usr/bin/env bash
# Set up a development or CI machine for webvirt.  Idempotent, and fast the second time.
#
#   bash scripts/setup.sh        (also: make setup)
#
# 1. Debian packages (libvirt + QEMU, build deps of libvirt-python and python-ldap, Chromium for
#    the browser tests, what tests/guest/build.sh needs, slapd for the LDAP tests, Redis, PostgreSQL
#    when no server is there, docker-compose 1.29 to validate docker-compose.yml).  Checked with dpkg-query on every run
#    (one call, a few milliseconds); installed with apt-get when root or when `sudo -n` works,
#    otherwise the exact apt-get command is printed and the script exits 1.
# 2. The virtualenv .venv from requirements.txt.
# 3. node_modules from package-lock.json (npm ci).
#
# Steps 2 and 3 are skipped when .state/stamps/<step> holds the sha256 of their inputs
# (requirements.txt + Python version, package.json + package-lock.json).  Delete .state/stamps
# (or run `make clean-state`) to force them.
#
# It writes nothing into the repository except .venv, node_modules and .state.
# Environment: PYTHON (interpreter for the venv, default python3), WEBVIRT_SKIP_APT=1 to skip
# the Debian package step (e.g. in a container image that has them already).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STAMPS="$ROOT/.state/stamps"
# .state will hold the secret keys, the database and decrypted host keys: nobody else may list or
# read it (0711: QEMU may still pass through to the test guest's image in .state/guest; every
# secret in it is 0600 or in a 0700 folder itself). A .state owned by someone else is theirs to set up.
(umask 077 && mkdir -p "$STAMPS")
if [[ -O "$ROOT/.state" ]]; then chmod 711 "$ROOT/.state"; fi

log() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }

# sha256 of the given files' contents plus any extra words, for a stamp.
fingerprint() {
    local extra="$1"; shift
    { printf '%s\n' "$extra"; cat "$@"; } | sha256sum | cut -d' ' -f1
}
stamp_ok() { [[ -f "$STAMPS/$1" && "$(cat "$STAMPS/$1")" == "$2" ]]; }
stamp_write() { printf '%s\n' "$2" >"$STAMPS/$1"; }

# ---------------------------------------------------------------------------------------------
# 1. Debian packages
# ---------------------------------------------------------------------------------------------
PYTHON="${PYTHON:-python3}"
command -v "$PYTHON" >/dev/null || die "$PYTHON not found (webvirt needs Python 3.11 or newer)"

wanted=(
    # libvirt and QEMU; dnsmasq-base makes the default NAT network work
    libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients
    qemu-system-x86 qemu-utils dnsmasq-base
    # to build libvirt-python from PyPI
    libvirt-dev pkg-config gcc
    # browser tests (Playwright drives the system Chromium)
    chromium
    # tests/guest/build.sh: a tiny bootable guest
    busybox-static mtools dosfstools syslinux syslinux-common cpio
    # tests/test_compose.py validates docker-compose.yml with it
    docker-compose
    # bench/clone.py compares clones with virt-clone
    virtinst
    # webvirt/virt/seal.py seals templates with virt-sysprep; libguestfs boots its appliance with a
    # kernel of the host's (the cloud one is the smallest). About 45 s and 260 MB the first time.
    libguestfs-tools linux-image-cloud-amd64
    # tests and bench/scale_out.py put the repository's nginx config in front of several web processes
    nginx-light
    # tests/consoles/test_ssh_tunnel.py: a private sshd on 127.0.0.1 stands in for a qemu+ssh host
    openssh-server openssh-client
    # python-ldap (LDAP sign-in, webvirt/directory) is built from source against OpenLDAP's and SASL's headers
    libldap2-dev libsasl2-dev
    # tests/directory: a private slapd on 127.0.0.1 per test session (installed unconfigured: see below)
    slapd ldap-utils
    # the Makefile
    make
    # scripts/soak.sh runs the suite with both cores kept busy
    stress-ng
)
# Redis: a private server is started by scripts/services.sh unless REDIS_URL is set.
command -v redis-server >/dev/null || wanted+=(redis-server)
# PostgreSQL (second test run): only when there is neither a local server nor one answering.
if ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null \
    && ! { command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432 -t 2; }; then
    wanted+=(postgresql)
fi
# Node.js for the front-end packages (CI images normally have node 20 already).
command -v npm >/dev/null || wanted+=(nodejs npm)
# Python headers: pyenv's Python has its own; only a Debian python3 needs python3-dev.
if ! "$PYTHON" - <<'EOF'
import os, sys, sysconfig
sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)
EOF
then
    wanted+=(python3-dev python3-venv)
fi

missing=()
if [[ "${WEBVIRT_SKIP_APT:-0}" != 1 ]]; then
    if ! command -v dpkg-query >/dev/null; then
        die "not a Debian system (no dpkg-query): install the equivalents of: ${wanted[*]}"
    fi
    # One dpkg-query for all; a package that dpkg has never heard of prints nothing.
    declare -A installed=()
    while read -r name status; do
        [[ "$status" == "install ok installed" ]] && installed[$name]=1
    done < <(dpkg-query -W -f='${Package} ${Status}\n' "${wanted[@]}" 2>/dev/null || true)
    for p in "${wanted[@]}"; do
        [[ -n "${installed[$p]:-}" ]] || missing+=("$p")
    done
fi

if ((${#missing[@]})); then
    cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
    if [[ $EUID -eq 0 ]]; then
        as_root=()
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        as_root=(sudo -n)
    else
        printf 'setup: these Debian packages are missing: %s\n' "${missing[*]}" >&2
        printf 'setup: run as root, then run this script again:\n\n    %s\n\n' "$cmd" >&2
        exit 1
    fi
    log "installing Debian packages: ${missing[*]}"
    if [[ " ${missing[*]} " == *" slapd "* ]]; then
        # Left to its defaults, slapd's package makes a directory for this machine's domain and starts a
        # system slapd; the tests start their own, so it is installed without any configuration (and no
        # configuration means nothing to start, now or at boot).
        echo "slapd slapd/no_configuration boolean true" | "${as_root[@]}" debconf-set-selections
    fi
    "${as_root[@]}" apt-get update
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "${missing[@]}"
fi

# ---------------------------------------------------------------------------------------------
# 2. Python virtualenv
# ---------------------------------------------------------------------------------------------
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$PYTHON is $("$PYTHON" -V 2>&1); webvirt needs Python 3.11 or newer"

VENV="$ROOT/.venv"
# A venv whose interpreter vanished (pyenv switched versions, say) is rebuilt from scratch.
if [[ -d "$VENV" ]] && ! "$VENV/bin/python" -c '' 2>/dev/null; then
    log "the virtualenv's Python is gone: recreating .venv"
    rm -rf "$VENV"
    rm -f "$STAMPS/pip"
fi
if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating .venv with $("$PYTHON" -V 2>&1)"
    "$PYTHON" -m venv "$VENV"
    rm -f "$STAMPS/pip"
fi

pip_fp="$(fingerprint "$("$VENV/bin/python" -VV 2>&1)" requirements.txt)"
if stamp_ok pip "$pip_fp"; then
    log "Python packages up to date"
else
    log "installing Python packages from requirements.txt"
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q --upgrade pip
    "$VENV/bin/python" -m pip install --disable-pip-version-check -r requirements.txt
    "$VENV/bin/python" -c 'import libvirt, django, channels, celery, psycopg, yaml, ldap' \
        || die "the virtualenv cannot import its packages"
    stamp_write pip "$pip_fp"
fi

# ---------------------------------------------------------------------------------------------
# 3. Front-end packages
# ---------------------------------------------------------------------------------------------
if [[ -f package.json ]]; then
    command -v npm >/dev/null || die "npm not found"
    npm_inputs=(package.json)
    [[ -f package-lock.json ]] && npm_inputs+=(package-lock.json)
    npm_fp="$(fingerprint "$(node --version)" "${npm_inputs[@]}")"
    if stamp_ok npm "$npm_fp" && [[ -d node_modules ]]; then
        log "front-end packages up to date"
    else
        if [[ -f package-lock.json ]]; then
            log "installing front-end packages (npm ci)"
            npm ci --no-audit --no-fund
        else
            log "installing front-end packages (npm install: no package-lock.json yet)"
            npm install --no-audit --no-fund
        fi
        stamp_write npm "$npm_fp"
    fi
fi

log "done"
