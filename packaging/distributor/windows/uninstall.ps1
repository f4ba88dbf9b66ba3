# SSM Agent (Distributor) runs .\uninstall.ps1 in the unpacked package directory as LocalSystem.
& (Join-Path $PSScriptRoot 'ssmdiag-package.ps1') -Action uninstall
exit $LASTEXITCODE
