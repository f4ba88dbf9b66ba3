#!/usr/bin/env bash
# ssmdiag's Distributor package, Linux side: ssmdiag-package.sh install|update|uninstall
#
# SSM Agent unpacks the package's zip and runs `sh install.sh` (or update.sh, uninstall.sh)
# in that directory, as root; those three call this script. It installs the one ssmdiag
# RPM or deb next to it with the system's package manager, so the package's own scripts
# create the ssmdiag user and enable and start the daemon:
#   deb: apt-get install ./ssmdiag_*.deb (dependencies from the node's repositories; on a
#        miss the package lists are refreshed once); uninstall: apt-get remove (the
#        configuration in /etc/ssmdiag stays, as it does for an upgrade).
#   rpm: dnf (or yum) install ./ssmdiag-*.noarch.rpm; uninstall: dnf remove.
# update is install: both managers upgrade in place, keeping /etc/ssmdiag/ssmdiag.toml and
# the daemon's state. Exit 0 when done (uninstalling what is not installed is done too).
set -euo pipefail

action=${1:-}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

say() { printf 'ssmdiag %s: %s\n' "$action" "$*"; }
die() {
    printf 'ssmdiag %s: error: %s\n' "$action" "$*" >&2
    exit 1
}

case "$action" in
    install | update | uninstall) ;;
    *) die "usage: $0 install|update|uninstall" ;;
esac
[ "$(id -u)" -eq 0 ] || die "must run as root (SSM Agent runs package scripts as root)"

shopt -s nullglob
debs=("$here"/ssmdiag_*_all.deb)
rpms=("$here"/ssmdiag-*.noarch.rpm)
if [ ${#debs[@]} -eq 1 ] && [ ${#rpms[@]} -eq 0 ]; then
    kind=deb
    pkg=${debs[0]}
elif [ ${#rpms[@]} -eq 1 ] && [ ${#debs[@]} -eq 0 ]; then
    kind=rpm
    pkg=${rpms[0]}
else
    die "expected exactly one ssmdiag .deb or .rpm in $here"
fi

deb_installed() {
    [ "$(dpkg-query -W -f='${db:Status-Abbrev}' ssmdiag 2>/dev/null || true)" = "ii " ]
}

apt_get() {
    # Waits for a dpkg lock held by cloud-init or unattended-upgrades instead of failing.
    DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=300 -o Dpkg::Use-Pty=0 \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"
}

rpm_manager() {
    if command -v dnf >/dev/null 2>&1; then
        echo dnf
    elif command -v yum >/dev/null 2>&1; then
        echo yum
    else
        die "neither dnf nor yum found: this zip is for Amazon Linux 2023 and the RHEL 9 family"
    fi
}

case "$kind:$action" in
    deb:install | deb:update)
        command -v apt-get >/dev/null 2>&1 || die "apt-get not found: this zip is for Debian and Ubuntu"
        say "installing $(basename "$pkg") with apt-get"
        if ! apt_get install "$pkg"; then
            say "apt-get install failed; refreshing the package lists once and retrying"
            apt_get update
            apt_get install "$pkg"
        fi
        ;;
    deb:uninstall)
        if deb_installed; then
            say "removing ssmdiag with apt-get (its configuration stays)"
            apt_get remove ssmdiag
        else
            say "ssmdiag is not installed: nothing to remove"
        fi
        ;;
    rpm:install | rpm:update)
        manager=$(rpm_manager)
        say "installing $(basename "$pkg") with $manager"
        "$manager" install -y "$pkg"
        ;;
    rpm:uninstall)
        if rpm -q --quiet ssmdiag; then
            manager=$(rpm_manager)
            say "removing ssmdiag with $manager"
            "$manager" remove -y ssmdiag
        else
            say "ssmdiag is not installed: nothing to remove"
        fi
        ;;
esac

if [ "$action" != uninstall ]; then
    command -v ssmdiag >/dev/null 2>&1 || die "the package installed, but no ssmdiag command is on PATH"
    say "done: $(ssmdiag version)"
else
    say "done"
fi
