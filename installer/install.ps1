<#
.SYNOPSIS
    Installs lcowsnap as a Windows service without MSI tooling (zip package).

.DESCRIPTION
    Run from the unpacked lcowsnap-<version>-x64 folder, in an elevated PowerShell
    (Windows PowerShell 5.1 or PowerShell 7):
      1. copies lcowsnap.exe, lcowsnapctl.exe, lcowsnap-tar2ext4.exe, README.md and
         LICENSE into
         -InstallDir (default: Program Files\lcowsnap);
      2. registers the service with `lcowsnap.exe --register-service`, passing -Root
         and -Address through as --root / --address (the service stores them in its
         SCM command line, and sets description, delayed auto-start, preshutdown
         timeout and failure actions itself);
      3. starts it and waits for RUNNING;
      4. checks it answers with `lcowsnapctl.exe version` over the named pipe.
    The state directory (default C:\ProgramData\lcowsnap) is created by the service.

.EXAMPLE
    .\install.ps1
.EXAMPLE
    .\install.ps1 -Root D:\lcowsnap -Address \\.\pipe\lcowsnap-test
#>
[CmdletBinding()]
param(
    # State directory (--root). Empty: the service default, C:\ProgramData\lcowsnap.
    [string]$Root = '',
    # Named pipe (--address). Empty: the service default, \\.\pipe\lcowsnap.
    [string]$Address = '',
    [string]$InstallDir = (Join-Path $env:ProgramFiles 'lcowsnap'),
    # Replace an existing script-installed service (its state directory is kept).
    [switch]$Force
)

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'
$ServiceName = 'lcowsnap'

function Test-Administrator {
    $identity = [Security.Principal.WindowsIdentity]::GetCurrent()
    $principal = New-Object Security.Principal.WindowsPrincipal($identity)
    return $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)
}

# A stopped service's process can run for a moment after reaching Stopped (it
# closes its store and exits); until then its exe is mapped and cannot be
# overwritten. Wait until the file opens for writing (or is absent), at most
# $Seconds; the MSI does the same with lcowsnap-msi-wait.exe.
function Wait-FileReleased([string]$Path, [int]$Seconds = 30) {
    for ($i = 0; $i -lt $Seconds * 10; $i++) {
        if (-not (Test-Path -LiteralPath $Path)) { return }
        try {
            $stream = [System.IO.File]::Open($Path, 'Open', 'Write', 'ReadWrite, Delete')
            $stream.Close()
            return
        } catch [System.IO.IOException] {
            Start-Sleep -Milliseconds 100
        }
    }
    Write-Host "install.ps1: $Path is still in use after $Seconds s; copying over it may fail." -ForegroundColor Yellow
}

if (-not (Test-Administrator)) {
    Write-Host 'install.ps1: administrator rights are required to install a service.' -ForegroundColor Red
    Write-Host 'Open PowerShell with "Run as administrator" and run this script again.' -ForegroundColor Red
    exit 1
}

$sourceDir = $PSScriptRoot
$payload = @('lcowsnap.exe', 'lcowsnapctl.exe', 'lcowsnap-tar2ext4.exe', 'README.md', 'LICENSE')
foreach ($name in $payload) {
    if (-not (Test-Path -LiteralPath (Join-Path $sourceDir $name) -PathType Leaf)) {
        Write-Host "install.ps1: $name is missing next to this script ($sourceDir)." -ForegroundColor Red
        Write-Host 'Run the script from the unpacked lcowsnap-<version>-x64 folder.' -ForegroundColor Red
        exit 1
    }
}
if ($Root -ne '' -and -not [IO.Path]::IsPathRooted($Root)) {
    Write-Host "install.ps1: -Root must be an absolute path, got '$Root'." -ForegroundColor Red
    exit 1
}

$uninstallKeys = @('HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall\*')
$msiProduct = Get-ItemProperty -Path $uninstallKeys -ErrorAction SilentlyContinue |
    Where-Object { ($_.PSObject.Properties.Name -contains 'DisplayName') -and $_.DisplayName -eq 'lcowsnap' }
if ($null -ne $msiProduct) {
    Write-Host 'install.ps1: lcowsnap is already installed with the MSI. Upgrade it with a newer MSI,' -ForegroundColor Red
    Write-Host 'or remove it first with: msiexec /x <lcowsnap msi> /qn  (the state directory is kept).' -ForegroundColor Red
    exit 1
}

$existing = Get-Service -Name $ServiceName -ErrorAction SilentlyContinue
if ($null -ne $existing) {
    if (-not $Force) {
        Write-Host "install.ps1: a service named '$ServiceName' already exists." -ForegroundColor Red
        Write-Host 'Run uninstall.ps1 first (it keeps the state directory), or pass -Force to replace it.' -ForegroundColor Red
        exit 1
    }
    Write-Host "Replacing the existing '$ServiceName' service (state directory kept)."
    if ($existing.Status -ne 'Stopped') {
        Stop-Service -Name $ServiceName -Force
        $existing.WaitForStatus('Stopped', [TimeSpan]::FromSeconds(60))
    }
    $oldExe = Join-Path $InstallDir 'lcowsnap.exe'
    if (Test-Path -LiteralPath $oldExe) {
        & $oldExe --unregister-service --service-name $ServiceName
    } else {
        & sc.exe delete $ServiceName | Out-Null
    }
    for ($i = 0; $i -lt 30 -and $null -ne (Get-Service -Name $ServiceName -ErrorAction SilentlyContinue); $i++) {
        Start-Sleep -Seconds 1
    }
}

Wait-FileReleased (Join-Path $InstallDir 'lcowsnap.exe')
Write-Host "Copying binaries to $InstallDir"
New-Item -ItemType Directory -Force -Path $InstallDir | Out-Null
foreach ($name in $payload) {
    Copy-Item -LiteralPath (Join-Path $sourceDir $name) -Destination $InstallDir -Force
}
$serviceExe = Join-Path $InstallDir 'lcowsnap.exe'
$ctlExe = Join-Path $InstallDir 'lcowsnapctl.exe'

$registerArgs = @('--register-service')
if ($Root -ne '') { $registerArgs += @('--root', $Root) }
if ($Address -ne '') { $registerArgs += @('--address', $Address) }
Write-Host "Registering: `"$serviceExe`" $($registerArgs -join ' ')"
& $serviceExe @registerArgs
if ($LASTEXITCODE -ne 0) {
    Write-Host "install.ps1: lcowsnap.exe --register-service failed (exit code $LASTEXITCODE)." -ForegroundColor Red
    exit 1
}

Write-Host "Starting $ServiceName"
try {
    Start-Service -Name $ServiceName
    (Get-Service -Name $ServiceName).WaitForStatus('Running', [TimeSpan]::FromSeconds(60))
} catch {
    Write-Host "install.ps1: $ServiceName did not reach RUNNING within 60 s: $($_.Exception.Message)" -ForegroundColor Red
    & sc.exe query $ServiceName
    Write-Host 'See the Application event log (source lcowsnap) for the reason.' -ForegroundColor Red
    exit 1
}

$ctlArgs = @()
if ($Address -ne '') { $ctlArgs += @('--address', $Address) }
$ctlArgs += 'version'
$version = & $ctlExe @ctlArgs
if ($LASTEXITCODE -ne 0) {
    Write-Host "install.ps1: the service is running but 'lcowsnapctl version' failed (exit code $LASTEXITCODE)." -ForegroundColor Red
    exit 1
}
Write-Host "lcowsnap is installed and answering: $version"
Write-Host "Client: `"$ctlExe`"  (add $InstallDir to PATH to call lcowsnapctl directly)"
exit 0
