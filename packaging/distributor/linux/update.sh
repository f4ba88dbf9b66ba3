#!/bin/sh
# SSM Agent (Distributor) runs `sh update.sh` in the unpacked package directory, as root.
exec bash "$(dirname "$0")/ssmdiag-package.sh" update
