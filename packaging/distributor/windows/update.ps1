# SSM Agent (Distributor) runs .\update.ps1 in the unpacked package directory as LocalSystem.
& (Join-Path $PSScriptRoot 'ssmdiag-package.ps1') -Action update
exit $LASTEXITCODE
