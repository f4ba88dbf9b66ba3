#!/bin/sh
# SSM Agent (Distributor) runs `sh install.sh` in the unpacked package directory, as root.
exec bash "$(dirname "$0")/ssmdiag-package.sh" install
