# ssmdiag's Distributor package, Windows side: ssmdiag-package.ps1 install|update|uninstall
#
# SSM Agent unpacks the package's zip and runs `.\install.ps1` (or update.ps1,
# uninstall.ps1) in that directory as LocalSystem; those three call this script with the
# one ssmdiag-*-x64.msi next to it. msiexec installs or upgrades it in place (the MSI's
# MajorUpgrade keeps %ProgramData%\ssmdiag) and the MSI starts the service; uninstall
# removes the product. The msiexec log goes to %TEMP%\ssmdiag-<action>.log.
param([Parameter(Mandatory = $true)][ValidateSet('install', 'update', 'uninstall')][string]$Action)
$ErrorActionPreference = 'Stop'

$msi = @(Get-ChildItem -LiteralPath $PSScriptRoot -Filter 'ssmdiag-*-x64.msi')
if ($msi.Count -ne 1) {
    Write-Output "ssmdiag ${Action}: error: expected exactly one ssmdiag-*-x64.msi in $PSScriptRoot"
    exit 1
}
$log = Join-Path $env:TEMP "ssmdiag-$Action.log"
$verb = if ($Action -eq 'uninstall') { '/x' } else { '/i' }
$arguments = @($verb, "`"$($msi[0].FullName)`"", '/qn', '/norestart', '/l*v', "`"$log`"")
$process = Start-Process -FilePath "$env:SystemRoot\System32\msiexec.exe" -ArgumentList $arguments -Wait -PassThru
$code = $process.ExitCode
# 3010: done, a reboot would finish replacing files in use. Exit 0, because SSM Agent
# reboots the node when a script exits 3010; ssmdiag never needs that.
if ($code -eq 0 -or $code -eq 3010) {
    Write-Output "ssmdiag ${Action}: done ($($msi[0].Name), msiexec exit $code)"
    exit 0
}
# 1605: this product is not installed, so there is nothing to uninstall.
if ($Action -eq 'uninstall' -and $code -eq 1605) {
    Write-Output "ssmdiag ${Action}: ssmdiag is not installed: nothing to remove"
    exit 0
}
Write-Output "ssmdiag ${Action}: msiexec failed with exit $code; the end of $log follows"
if (Test-Path -LiteralPath $log) { Get-Content -LiteralPath $log -Tail 40 }
exit $code
