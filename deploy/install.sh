#!/usr/bin/env bash
# Install flamed as a hardened systemd service on a Debian, Ubuntu or Fedora host.
#
#   sudo deploy/install.sh                  install or upgrade, enable and (re)start
#   sudo deploy/install.sh --uninstall      stop, disable, remove; keep config and state
#   sudo deploy/install.sh --uninstall --purge   ... and delete /etc/flamed,
#                                           /var/lib/flamed and the flamed user
#   deploy/install.sh --root DIR            stage the files under DIR (or DESTDIR=DIR)
#                                           for inspection or packaging: no package
#                                           manager, no systemctl, no user
#
# Run it again at any time: it is idempotent.  It never overwrites
# /etc/flamed/flamed.toml once that exists.
set -euo pipefail
umask 022

PROG=${0##*/}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)

ROOT=${DESTDIR:-}
PREFIX=/opt/flamed
SOURCE=$REPO
PYTHON=/usr/bin/python3  # the system's: the unit's ProtectHome=yes hides /root and /home
PIP_ARGS=()
ACTION=install
PURGE=0
WITH_VENV=1
WITH_PERF=1
START=1

UNIT_DST=/etc/systemd/system/flamed.service
SYSUSERS_DST=/etc/sysusers.d/flamed.conf
CONF_DIR=/etc/flamed
CONF_DST=$CONF_DIR/flamed.toml
STATE_DIR=/var/lib/flamed
LINK_DST=/usr/local/bin/flamed

usage() {
    cat <<EOF
usage: $PROG [--root DIR] [--prefix DIR] [--source PATH|SPEC] [--python PY]
       [--pip-arg ARG]... [--no-venv] [--no-perf] [--no-start]
       $PROG --uninstall [--purge] [--root DIR] [--prefix DIR]

Installs perf (if missing), a virtual environment in PREFIX/venv (default
$PREFIX/venv) holding flamed from SOURCE (default: this repository), the
example config $CONF_DST (only if absent), the unit $UNIT_DST, the
sysusers file $SYSUSERS_DST and the command $LINK_DST;
then creates the flamed user, runs systemctl daemon-reload, enable and restart.

  --root DIR     stage into DIR instead of / (same as DESTDIR=DIR),
                 for inspection or packaging: only files are written; no
                 package manager, user, or systemctl is run. A venv staged
                 there is tied to this machine's interpreter and to DIR:
                 create it on the target (run this script there, or stage
                 with --no-venv).
  --prefix DIR   where the venv goes (default $PREFIX); the unit is rewritten
                 to match.
  --source X     what pip installs: a source tree, a wheel, or a requirement
                 such as flamed==0.1.0.
  --python PY    interpreter for the venv (Python >= 3.11; default /usr/bin/python3,
                 not one under /root or /home, which the unit cannot see).
  --pip-arg ARG  extra argument for pip install (repeatable), e.g. --no-index.
  --no-venv      do not create the venv or install the package.
  --no-perf      do not install perf.
  --no-start     enable the service but do not (re)start it.
  --uninstall    stop and disable the service, remove the unit, sysusers file,
                 command and venv; keep $CONF_DIR and $STATE_DIR.
  --purge        with --uninstall: also remove $CONF_DIR, $STATE_DIR and
                 the flamed user.
EOF
}

say() { printf '%s: %s\n' "$PROG" "$*"; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

need_value() {  # need_value OPTION ARGS...: the option is followed by its value
    [ $# -ge 2 ] || die "$1 needs a value (see $PROG --help)"
}

parse_args() {
    while [ $# -gt 0 ]; do
        case $1 in
            --root|--prefix|--source|--python|--pip-arg) need_value "$@" ;;
        esac
        case $1 in
            --root) ROOT=$2; shift ;;
            --root=*) ROOT=${1#*=} ;;
            --prefix) PREFIX=$2; shift ;;
            --prefix=*) PREFIX=${1#*=} ;;
            --source) SOURCE=$2; shift ;;
            --source=*) SOURCE=${1#*=} ;;
            --python) PYTHON=$2; shift ;;
            --python=*) PYTHON=${1#*=} ;;
            --pip-arg) PIP_ARGS+=("$2"); shift ;;
            --pip-arg=*) PIP_ARGS+=("${1#*=}") ;;
            --no-venv) WITH_VENV=0 ;;
            --no-perf) WITH_PERF=0 ;;
            --no-start) START=0 ;;
            --uninstall) ACTION=uninstall ;;
            --purge) PURGE=1 ;;
            -h|--help) usage; exit 0 ;;
            *) usage >&2; die "unknown argument: $1" ;;
        esac
        shift
    done
    [ "$PURGE" = 0 ] || [ "$ACTION" = uninstall ] || die "--purge goes with --uninstall"
    case $PREFIX in /*) ;; *) die "--prefix must be an absolute path" ;; esac
    if [ -n "$ROOT" ]; then
        mkdir -p "$ROOT"
        ROOT=$(cd "$ROOT" && pwd)
        [ "$ROOT" != / ] || ROOT=
    fi
}

staged() { [ -n "$ROOT" ]; }
venv_dir() { printf '%s/venv' "$PREFIX"; }

# -- install ---------------------------------------------------------------------

os_family() {
    local id="" like=""
    if [ -r /etc/os-release ]; then
        # shellcheck disable=SC1091
        id=$(. /etc/os-release && printf '%s' "${ID:-}")
        # shellcheck disable=SC1091
        like=$(. /etc/os-release && printf '%s' "${ID_LIKE:-}")
    fi
    case " $id $like " in
        *" ubuntu "*) echo ubuntu ;;
        *" debian "*) echo debian ;;
        *" fedora "*|*" rhel "*|*" centos "*) echo fedora ;;
        *) echo unknown ;;
    esac
}

install_packages() {
    local family
    family=$(os_family)
    case $family in
        debian|ubuntu)
            export DEBIAN_FRONTEND=noninteractive
            apt-get update -q
            apt-get install -y -q --no-install-recommends "$@" ;;
        fedora) dnf install -y -q "$@" ;;
        *) die "do not know how to install $* on this system; install it and run again" ;;
    esac
}

ensure_perf() {
    [ "$WITH_PERF" = 1 ] || return 0
    if command -v perf >/dev/null 2>&1 && perf --version >/dev/null 2>&1; then
        return 0
    fi
    say "installing perf"
    case $(os_family) in
        debian) install_packages linux-perf ;;
        ubuntu)
            install_packages linux-tools-common linux-tools-generic
            install_packages "linux-tools-$(uname -r)" ||
                say "warning: no linux-tools-$(uname -r); perf may not match this kernel" ;;
        fedora) install_packages perf ;;
        *) die "perf is missing and this system is not Debian, Ubuntu or Fedora" ;;
    esac
}

ensure_python() {
    command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (flamed needs Python >= 3.11)"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        die "$PYTHON is $("$PYTHON" -V 2>&1); flamed needs Python >= 3.11 (use --python)"
    if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        staged && die "$PYTHON cannot create virtual environments (install python3-venv)"
        say "installing python3-venv"
        case $(os_family) in
            debian|ubuntu) install_packages python3-venv ;;
            *) die "$PYTHON cannot create virtual environments" ;;
        esac
    fi
}

install_venv() {
    [ "$WITH_VENV" = 1 ] || return 0
    ensure_python
    local venv
    venv="$ROOT$(venv_dir)"
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c '' 2>/dev/null; then
        say "creating the virtual environment $venv"
        rm -rf "$venv"
        "$PYTHON" -m venv "$venv"
    fi
    say "installing flamed from $SOURCE into $venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade \
        ${PIP_ARGS[@]+"${PIP_ARGS[@]}"} "$SOURCE"
    chmod -R go-w "$venv"
}

put_file() {  # put_file MODE SOURCE DEST: copy only when different (idempotent)
    local mode=$1 src=$2 dst=$ROOT$3
    if [ -f "$dst" ] && cmp -s "$src" "$dst"; then
        chmod "$mode" "$dst"
        return 0
    fi
    install -D -m "$mode" "$src" "$dst"
    say "wrote $dst"
}

install_files() {
    local unit
    unit=$(mktemp)
    sed "s#/opt/flamed/venv#$(venv_dir)#g" "$REPO/systemd/flamed.service" >"$unit"
    put_file 0644 "$unit" "$UNIT_DST"
    rm -f "$unit"
    put_file 0644 "$REPO/systemd/flamed.sysusers" "$SYSUSERS_DST"
    install -d -m 0755 "$ROOT$CONF_DIR"
    if [ -e "$ROOT$CONF_DST" ]; then
        say "kept $ROOT$CONF_DST (the example is $REPO/deploy/flamed.toml)"
    else
        put_file 0644 "$REPO/deploy/flamed.toml" "$CONF_DST"
    fi
    # The command on PATH is a convenience: a read-only /usr must not stop the install.
    if ! { install -d -m 0755 "$ROOT${LINK_DST%/*}" &&
        ln -sfn "$(venv_dir)/bin/flamed" "$ROOT$LINK_DST"; } 2>/dev/null; then
        say "warning: could not link $LINK_DST; the command is $(venv_dir)/bin/flamed"
    fi
}

create_user() {
    if command -v systemd-sysusers >/dev/null 2>&1; then
        systemd-sysusers "$SYSUSERS_DST"
    elif ! getent passwd flamed >/dev/null; then
        useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home \
            --shell /usr/sbin/nologin --comment "flamed continuous profiler" flamed
    fi
}

check_kernel() {
    local major minor
    IFS=. read -r major minor _ <<<"$(uname -r)"
    if [ "${major:-0}" -lt 5 ] || { [ "$major" -eq 5 ] && [ "${minor%%[!0-9]*}" -lt 8 ]; }; then
        say "warning: kernel $(uname -r) has no CAP_PERFMON; see the comment at the top of"
        say "  $UNIT_DST for what to grant instead (CAP_SYS_ADMIN via systemctl edit flamed)"
    fi
}

start_service() {
    "$(venv_dir)/bin/flamed" check-config "$CONF_DST" ||
        die "$CONF_DST does not validate; fix it and run again"
    systemctl daemon-reload
    if [ "$START" = 1 ]; then
        systemctl enable flamed.service
        systemctl restart flamed.service
        say "flamed is running: curl -s 'http://127.0.0.1:9797/api/v1/flamegraph?target=system&window=5m' > now.svg"
    else
        systemctl enable flamed.service
        say "flamed is enabled; start it with: systemctl start flamed"
    fi
}

do_install() {
    if staged; then
        install_venv
        install_files
        say "staged into $ROOT (no user created, systemctl not run)"
        if [ "$WITH_VENV" = 1 ]; then
            say "note: the venv $ROOT$(venv_dir) uses $PYTHON and paths under $ROOT:"
            say "  create it on the target (run $PROG there) to run flamed"
        fi
        return 0
    fi
    [ "$(id -u)" = 0 ] || die "run as root (or with sudo: sudo $0), or stage with --root DIR"
    ensure_perf
    install_venv
    install_files
    create_user
    check_kernel
    start_service
}

# -- uninstall -------------------------------------------------------------------

remove() {  # remove PATH...: delete files and symlinks under ROOT, saying so
    local path
    for path in "$@"; do
        if [ -e "$ROOT$path" ] || [ -L "$ROOT$path" ]; then
            rm -rf -- "$ROOT$path"
            say "removed $ROOT$path"
        fi
    done
}

do_uninstall() {
    if ! staged; then
        [ "$(id -u)" = 0 ] || die "run as root (or with sudo: sudo $0 --uninstall)"
        if command -v systemctl >/dev/null 2>&1; then
            systemctl disable --now flamed.service 2>/dev/null || true
        fi
    fi
    if [ "$(readlink "$ROOT$LINK_DST" 2>/dev/null)" = "$(venv_dir)/bin/flamed" ]; then
        remove "$LINK_DST"
    fi
    remove "$UNIT_DST" "$SYSUSERS_DST" "$(venv_dir)"
    rmdir "$ROOT$PREFIX" 2>/dev/null || true
    if [ "$PURGE" = 1 ]; then
        remove "$CONF_DIR" "$STATE_DIR"
        if ! staged && getent passwd flamed >/dev/null; then
            userdel flamed && say "removed the user flamed"
        fi
    else
        say "kept $CONF_DIR and $STATE_DIR (--purge removes them)"
    fi
    if ! staged && command -v systemctl >/dev/null 2>&1; then
        systemctl daemon-reload
    fi
}

main() {
    parse_args "$@"
    case $ACTION in
        install) do_install ;;
        uninstall) do_uninstall ;;
    esac
}

main "$@"
