<#
.SYNOPSIS
    Removes a script-installed lcowsnap service (see install.ps1).

.DESCRIPTION
    Run in an elevated PowerShell:
      1. stops the service and removes its SCM entry with
         `lcowsnap.exe --unregister-service` (sc.exe delete if the exe is gone);
      2. removes the files install.ps1 copied into -InstallDir, and the folder
         when nothing else is left in it;
      3. keeps the state directory (snapshots, scratch disks, LevelDB metadata)
         unless -PurgeData is given. Its location is read from the service's
         --root flag before the service is removed; -Root overrides it.
    An MSI installation is removed with `msiexec /x` instead; this script refuses it.

.EXAMPLE
    .\uninstall.ps1
.EXAMPLE
    .\uninstall.ps1 -PurgeData
#>
[CmdletBinding()]
param(
    [string]$InstallDir = (Join-Path $env:ProgramFiles 'lcowsnap'),
    # State directory to delete with -PurgeData. Empty: the service's --root, else the default.
    [string]$Root = '',
    # Also delete the state directory. Without it the data stays for a later install.
    [switch]$PurgeData
)

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'
$ServiceName = 'lcowsnap'
$DefaultRoot = Join-Path $env:ProgramData 'lcowsnap'

function Test-Administrator {
    $identity = [Security.Principal.WindowsIdentity]::GetCurrent()
    $principal = New-Object Security.Principal.WindowsPrincipal($identity)
    return $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)
}

# The --root value of a service command line such as
#   "C:\Program Files\lcowsnap\lcowsnap.exe" --run-service --root "D:\lcow data"
function Get-RootFromImagePath([string]$imagePath) {
    $match = [regex]::Match($imagePath, '--root\s+(?:"([^"]+)"|(\S+))')
    if (-not $match.Success) { return '' }
    if ($match.Groups[1].Success) { return $match.Groups[1].Value }
    return $match.Groups[2].Value
}

if (-not (Test-Administrator)) {
    Write-Host 'uninstall.ps1: administrator rights are required to remove a service.' -ForegroundColor Red
    Write-Host 'Open PowerShell with "Run as administrator" and run this script again.' -ForegroundColor Red
    exit 1
}

$uninstallKeys = @('HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall\*')
$msiProduct = Get-ItemProperty -Path $uninstallKeys -ErrorAction SilentlyContinue |
    Where-Object { ($_.PSObject.Properties.Name -contains 'DisplayName') -and $_.DisplayName -eq 'lcowsnap' }
if ($null -ne $msiProduct) {
    Write-Host 'uninstall.ps1: lcowsnap was installed with the MSI; remove it with' -ForegroundColor Red
    Write-Host '  msiexec /x <lcowsnap msi> /qn   (or Settings > Apps). The state directory is kept either way.' -ForegroundColor Red
    exit 1
}

$serviceKey = "HKLM:\SYSTEM\CurrentControlSet\Services\$ServiceName"
$stateDir = $Root
if ($stateDir -eq '' -and (Test-Path -LiteralPath $serviceKey)) {
    $stateDir = Get-RootFromImagePath ((Get-ItemProperty -LiteralPath $serviceKey).ImagePath)
}
if ($stateDir -eq '') { $stateDir = $DefaultRoot }

$service = Get-Service -Name $ServiceName -ErrorAction SilentlyContinue
if ($null -ne $service) {
    if ($service.Status -ne 'Stopped') {
        Write-Host "Stopping $ServiceName"
        Stop-Service -Name $ServiceName -Force
        $service.WaitForStatus('Stopped', [TimeSpan]::FromSeconds(60))
    }
    $serviceExe = Join-Path $InstallDir 'lcowsnap.exe'
    Write-Host "Removing the $ServiceName service"
    if (Test-Path -LiteralPath $serviceExe) {
        & $serviceExe --unregister-service --service-name $ServiceName
    } else {
        & sc.exe delete $ServiceName | Out-Null
    }
    if ($LASTEXITCODE -ne 0) {
        Write-Host "uninstall.ps1: removing the service failed (exit code $LASTEXITCODE)." -ForegroundColor Red
        exit 1
    }
    for ($i = 0; $i -lt 30 -and $null -ne (Get-Service -Name $ServiceName -ErrorAction SilentlyContinue); $i++) {
        Start-Sleep -Seconds 1
    }
} else {
    Write-Host "No service named $ServiceName is registered."
}

if (Test-Path -LiteralPath $InstallDir) {
    Write-Host "Removing binaries from $InstallDir"
    foreach ($name in @('lcowsnap.exe', 'lcowsnapctl.exe', 'lcowsnap-tar2ext4.exe', 'README.md', 'LICENSE')) {
        $path = Join-Path $InstallDir $name
        if (Test-Path -LiteralPath $path) { Remove-Item -LiteralPath $path -Force }
    }
    if ($null -eq (Get-ChildItem -LiteralPath $InstallDir -Force)) {
        Remove-Item -LiteralPath $InstallDir -Force
    } else {
        Write-Host "Left $InstallDir in place: it holds files install.ps1 did not put there."
    }
}

if ($PurgeData) {
    if (Test-Path -LiteralPath $stateDir) {
        Write-Host "Deleting the state directory $stateDir (-PurgeData)"
        Remove-Item -LiteralPath $stateDir -Recurse -Force
    }
} elseif (Test-Path -LiteralPath $stateDir) {
    Write-Host "Kept the state directory $stateDir (snapshots and metadata); -PurgeData deletes it."
}
Write-Host 'lcowsnap is uninstalled.'
exit 0
