# SSM Agent (Distributor) runs .\install.ps1 in the unpacked package directory as LocalSystem.
& (Join-Path $PSScriptRoot 'ssmdiag-package.ps1') -Action install
exit $LASTEXITCODE
