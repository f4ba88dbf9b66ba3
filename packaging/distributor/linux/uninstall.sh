#!/bin/sh
# SSM Agent (Distributor) runs `sh uninstall.sh` in the unpacked package directory, as root.
exec bash "$(dirname "$0")/ssmdiag-package.sh" uninstall
