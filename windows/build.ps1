<#
.SYNOPSIS
    Build the ssmdiag MSI (x64) on a Windows build host.

.DESCRIPTION
    The real Windows build; windows/build-msi is its Linux twin for CI (same .wxs, a
    placeholder payload). Steps:
      1. a fresh venv; pip install the project with the `windows` extra (pywin32) and
         PyInstaller 6;
      2. freeze ssmdiag with PyInstaller: onedir, console program ssmdiag.exe, its runtime
         in _internal\ (pywin32's extensions in _internal\win32\);
      3. check the frozen program: `ssmdiag.exe version` and pywin32's win32evtlog.pyd
         (the Event Log sink's ReportEvent); the Event Log message file is .NET's
         EventLogMessages.dll, which ssmdiag.wxs registers and Windows provides;
      4. harvest _internal\ into the component group FrozenApp (heat.exe, or wixl-heat);
      5. compile and link windows\ssmdiag.wxs with WiX v3 (candle -arch x64, light), or with
         wixl -a x64 when wixl is on PATH (then windows\wixl-compat.py completes the tables,
         as in windows/build-msi).
    The version comes from __version__ in ssmdiag\__init__.py, the project's single source.
    Output: <OutDir>\ssmdiag-<version>-x64.msi (default: dist\ at the repository root).

    Needs: 64-bit CPython >= 3.9, and WiX Toolset v3.11+ (candle, light, heat; the
    installer sets %WIX%) or msitools' wixl. Internet access to PyPI for pip.

.PARAMETER Python
    The Python used to create the build venv (must be 64-bit). Default: python.

.PARAMETER OutDir
    Where the MSI goes. Default: <repository>\dist.

.PARAMETER WixBin
    Folder holding candle.exe, light.exe and heat.exe. Default: %WIX%\bin, then PATH.

.PARAMETER SkipValidation
    Pass -sval to light (skip ICE validation, e.g. on build agents without the
    Windows Installer service).

.EXAMPLE
    powershell -ExecutionPolicy Bypass -File windows\build.ps1 -Python C:\Python312\python.exe
#>
[CmdletBinding()]
param(
    [string]$Python = "python",
    [string]$OutDir = "",
    [string]$WixBin = "",
    [switch]$SkipValidation
)

$ErrorActionPreference = "Stop"
Set-StrictMode -Version Latest

# Native programs do not throw on failure (before PowerShell 7.3): check every exit code.
function Invoke-Native {
    param([Parameter(Mandatory)][string]$Exe, [string[]]$Arguments = @())
    Write-Host "> $Exe $($Arguments -join ' ')"
    & $Exe @Arguments
    if ($LASTEXITCODE -ne 0) {
        throw "$Exe failed with exit code $LASTEXITCODE"
    }
}

# Native output captured by PowerShell, written as UTF-8 without a BOM (Set-Content -Encoding
# UTF8 adds one in Windows PowerShell 5.1).
function Write-Lines {
    param([Parameter(Mandatory)][string]$Path, [string[]]$Lines = @())
    [System.IO.File]::WriteAllLines((Join-Path (Get-Location).Path $Path), $Lines)
}

$Repo = Split-Path -Parent $PSScriptRoot
if (-not $OutDir) { $OutDir = Join-Path $Repo "dist" }
$Build = Join-Path $Repo "build\msi"             # scratch: venv, PyInstaller work, objects
$Venv = Join-Path $Build "venv"
$VenvPython = Join-Path $Venv "Scripts\python.exe"
$App = Join-Path $Build "ssmdiag"                # PyInstaller's onedir output

# --- the version: ssmdiag\__init__.py --------------------------------------------------
$VersionMatch = Select-String -Path (Join-Path $Repo "ssmdiag\__init__.py") `
    -Pattern '^__version__ = "([^"]+)"$'
if (-not $VersionMatch) { throw "no __version__ in ssmdiag\__init__.py" }
$Version = $VersionMatch.Matches[0].Groups[1].Value
# MSI ProductVersion: major.minor.build[.revision], numeric (<= 255.255.65535).
if ($Version -notmatch '^\d+\.\d+\.\d+(\.\d+)?$') {
    throw "__version__ '$Version' is not an MSI version (N.N.N[.N])"
}
Write-Host "ssmdiag $Version"

if (Test-Path $Build) { Remove-Item -Recurse -Force $Build }
New-Item -ItemType Directory -Force -Path $Build, $OutDir | Out-Null

# --- 1. venv with the project, pywin32 and PyInstaller ------------------------------------
Invoke-Native $Python @("-m", "venv", $Venv)
Invoke-Native $VenvPython @("-c", "import struct, sys; sys.exit(struct.calcsize('P') != 8)")
Invoke-Native $VenvPython @("-m", "pip", "install", "--upgrade", "pip")
Push-Location $Repo
try {
    # The `windows` extra is pywin32 (service framework, Event Log, SCM queries).
    Invoke-Native $VenvPython @("-m", "pip", "install", ".[windows]", "pyinstaller>=6,<7")
} finally {
    Pop-Location
}

# --- 2. freeze ------------------------------------------------------------------------------
# Hidden imports: a pywin32 service needs servicemanager and win32timezone (imported from C
# by pywin32, invisible to PyInstaller's analysis); the win32* modules ssmdiag imports only
# under `sys.platform == "win32"` are listed to be sure. --collect-data ssmdiag brings the
# report schema (ssmdiag\schema\*.json, read with importlib.resources).
$HiddenImports = @("servicemanager", "win32timezone", "win32serviceutil", "win32service",
    "win32event", "win32evtlog", "win32evtlogutil", "win32api", "win32con", "win32net",
    "win32security", "pywintypes")
$PyInstallerArgs = @("-m", "PyInstaller", "--noconfirm", "--clean",
    "--onedir", "--console", "--name", "ssmdiag",
    "--contents-directory", "_internal",
    "--distpath", $Build, "--workpath", (Join-Path $Build "pyinstaller"),
    "--specpath", $Build,
    "--collect-data", "ssmdiag")
foreach ($module in $HiddenImports) { $PyInstallerArgs += @("--hidden-import", $module) }
$PyInstallerArgs += (Join-Path $PSScriptRoot "ssmdiag-entry.py")
Invoke-Native $VenvPython $PyInstallerArgs

# --- 3. check what the .wxs relies on ---------------------------------------------------------
$Exe = Join-Path $App "ssmdiag.exe"
$Said = (& $Exe version) -join "`n"
if ($LASTEXITCODE -ne 0 -or $Said -ne "ssmdiag $Version") {
    throw "frozen ssmdiag.exe version said '$Said' (exit $LASTEXITCODE), expected 'ssmdiag $Version'"
}
# The Event Log sink needs pywin32's win32evtlog.pyd; PyInstaller >= 6 keeps pywin32's
# win32\ sub-directory.
$MessageFile = Join-Path $App "_internal\win32\win32evtlog.pyd"
if (-not (Test-Path $MessageFile)) {
    throw "$MessageFile is missing: the layout no longer matches windows\ssmdiag.wxs"
}

# The .wxs reads the default config and the CloudWatch fragment from PackagingDir. All
# sources are given relative to $Build (wixl 0.101 resolves only relative paths).
Copy-Item -Recurse -Force (Join-Path $Repo "packaging") (Join-Path $Build "packaging")
$Defines = @("Version=$Version", "Win64=yes", "SourceDir=ssmdiag",
    "InternalDir=ssmdiag/_internal", "PackagingDir=packaging")
$Msi = Join-Path $OutDir "ssmdiag-$Version-x64.msi"
$Wxs = Join-Path $PSScriptRoot "ssmdiag.wxs"

Push-Location $Build
try {
    $Wixl = Get-Command wixl -ErrorAction SilentlyContinue
    if ($Wixl) {
        # --- 4+5 with wixl (msitools) -------------------------------------------------------
        # wixl-heat reads the file list on stdin, like `find | wixl-heat` in build-msi.
        $Root = (Resolve-Path "ssmdiag\_internal").Path
        $Files = Get-ChildItem -Recurse -File $Root | Sort-Object FullName |
            ForEach-Object { "ssmdiag/_internal/" + $_.FullName.Substring($Root.Length + 1).Replace("\", "/") }
        $Fragment = $Files | & wixl-heat --prefix "ssmdiag/_internal/" `
            --directory-ref INTERNALDIR --component-group FrozenApp --var var.InternalDir --win64
        if ($LASTEXITCODE -ne 0) { throw "wixl-heat failed" }
        Write-Lines "frozen.wxs" $Fragment
        $D = @(); foreach ($d in $Defines) { $D += @("-D", $d) }
        Invoke-Native "wixl" (@("-a", "x64") + $D + @("-o", $Msi, $Wxs, "frozen.wxs"))
        # wixl-compat.py completes what an older wixl drops (see windows/build-msi).
        $Pre = & wixl -E -a x64 @D $Wxs
        if ($LASTEXITCODE -ne 0) { throw "wixl -E failed" }
        Write-Lines "main.pre.wxs" $Pre
        $Pre = & wixl -E -a x64 @D frozen.wxs
        if ($LASTEXITCODE -ne 0) { throw "wixl -E failed" }
        Write-Lines "frozen.pre.wxs" $Pre
        Invoke-Native $VenvPython @((Join-Path $PSScriptRoot "wixl-compat.py"), $Msi,
            "main.pre.wxs", "frozen.pre.wxs")
    } else {
        # --- 4+5 with WiX v3 ----------------------------------------------------------------
        if (-not $WixBin) {
            if ($env:WIX) { $WixBin = Join-Path $env:WIX "bin" }
        }
        function Find-WixTool([string]$Name) {
            if ($WixBin) { return (Join-Path $WixBin "$Name.exe") }
            return (Get-Command "$Name.exe").Source
        }
        $Heat = Find-WixTool "heat"; $Candle = Find-WixTool "candle"; $Light = Find-WixTool "light"
        # heat: -srd no element for _internal itself (it is INTERNALDIR), -ag Guid="*"
        # (stable, computed from the install path), -sreg/-scom no self-registration.
        Invoke-Native $Heat @("dir", "ssmdiag\_internal", "-nologo", "-srd", "-ag",
            "-sreg", "-scom", "-cg", "FrozenApp", "-dr", "INTERNALDIR",
            "-var", "var.InternalDir", "-out", "frozen.wxs")
        # candle -arch x64: Package Platform and Win64 components by default.
        $D = @(); foreach ($d in $Defines) { $D += "-d$d" }
        New-Item -ItemType Directory -Force -Path obj | Out-Null
        Invoke-Native $Candle (@("-nologo", "-arch", "x64") + $D +
            @("-out", "obj\", $Wxs, "frozen.wxs"))
        $LightArgs = @("-nologo", "-out", $Msi, "obj\ssmdiag.wixobj", "obj\frozen.wixobj")
        if ($SkipValidation) { $LightArgs += "-sval" }
        Invoke-Native $Light $LightArgs
    }
} finally {
    Pop-Location
}

Write-Host "built $Msi"
$Msi
