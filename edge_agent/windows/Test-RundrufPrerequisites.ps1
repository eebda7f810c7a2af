<#
.SYNOPSIS
    Checks what Rundruf needs on the Swyx server, before its services are installed.

.DESCRIPTION
    Prints one line per check (OK / WARN / FAIL) and ends with exit code 1 if any check
    failed. It changes nothing. Run it in Windows PowerShell 5.1 as an administrator,
    ideally as the account the agent service will run as:

        powershell -NoProfile -ExecutionPolicy Bypass -File Test-RundrufPrerequisites.ps1 `
            -ServerUrl https://rundruf-manager.example -JobServicePort 8080 -Transport local

    Written from Windows' and SwyxWare's documentation; not yet run on a real Swyx server.

.PARAMETER ServerUrl
    The central Rundruf service the agent connects to (outbound HTTPS, port 443).
.PARAMETER JobServicePort
    The port the job service will listen on (8080 by default, 80 as the original product).
.PARAMETER Transport
    local: the agent runs here and uses powershell.exe; winrm: it uses PowerShell Remoting.
.PARAMETER SwyxServer
    The name Connect-IpPbx is given (default: this computer).
.PARAMETER TryConnect
    Also run Import-Module IpPbx and Connect-IpPbx as the current account.
#>
param(
    [string]$ServerUrl = '',
    [int]$JobServicePort = 8080,
    [ValidateSet('local', 'winrm')][string]$Transport = 'local',
    [string]$SwyxServer = $env:COMPUTERNAME,
    [switch]$TryConnect
)

$ErrorActionPreference = 'Stop'
$script:Failed = 0

function Write-Check([string]$Status, [string]$What, [string]$Detail) {
    if ($Status -eq 'FAIL') { $script:Failed++ }
    $color = @{ OK = 'Green'; WARN = 'Yellow'; FAIL = 'Red' }[$Status]
    Write-Host ('{0,-5} {1,-34} {2}' -f $Status, $What, $Detail) -ForegroundColor $color
}

# --- Windows ------------------------------------------------------------------------
$os = Get-CimInstance -ClassName Win32_OperatingSystem
$build = [int]$os.BuildNumber
if (-not [Environment]::Is64BitOperatingSystem) {
    Write-Check 'FAIL' 'Windows 64-bit' $os.Caption
} elseif ($build -lt 14393) {
    # 14393 = Windows Server 2016 / Windows 10 1607, the oldest SwyxWare 13 supports.
    Write-Check 'FAIL' 'Windows version' "$($os.Caption) build $build (need build 14393 or later)"
} else {
    Write-Check 'OK' 'Windows version' "$($os.Caption) build $build"
}
if ($PSVersionTable.PSVersion.Major -ge 5) {
    Write-Check 'OK' 'Windows PowerShell' $PSVersionTable.PSVersion.ToString()
} else {
    Write-Check 'FAIL' 'Windows PowerShell' "$($PSVersionTable.PSVersion) (need 5.1)"
}

# --- SwyxWare -------------------------------------------------------------------------
$swyx = @(Get-Service -ErrorAction SilentlyContinue | Where-Object {
        $_.DisplayName -like '*Swyx*' -or $_.Name -like 'IpPbx*' })
if ($swyx.Count -gt 0) {
    $running = @($swyx | Where-Object Status -eq 'Running').Count
    Write-Check 'OK' 'SwyxWare services' "$($swyx.Count) found, $running running"
} else {
    Write-Check 'WARN' 'SwyxWare services' 'none found: is this the Swyx server?'
}
$module = Get-Module -ListAvailable -Name IpPbx | Select-Object -First 1
if ($null -eq $module) {
    $candidates = @(
        (Join-Path $env:ProgramFiles 'Swyx\SwyxWare Administration\Modules\IpPbx\IpPbx.psd1'),
        (Join-Path ${env:ProgramFiles(x86)} 'Swyx\SwyxWare Administration\Modules\IpPbx\IpPbx.psd1')
    )
    $found = $candidates | Where-Object { $_ -and (Test-Path -LiteralPath $_) } |
        Select-Object -First 1
    if ($found) {
        Write-Check 'WARN' 'PowerShell module IpPbx' "$found (not on PSModulePath: add its folder)"
    } else {
        Write-Check 'FAIL' 'PowerShell module IpPbx' 'not found: install the SwyxWare administration'
    }
} else {
    Write-Check 'OK' 'PowerShell module IpPbx' "$($module.Version) $($module.ModuleBase)"
}
if ($TryConnect) {
    try {
        Import-Module IpPbx
        Connect-IpPbx -ServerName $SwyxServer
        $count = @(Get-IpPbxUser).Count
        Disconnect-IpPbx
        Write-Check 'OK' 'Connect-IpPbx' "$SwyxServer as $env:USERDOMAIN\$env:USERNAME, $count users"
    } catch {
        Write-Check 'FAIL' 'Connect-IpPbx' $_.Exception.Message
    }
}

# --- Python ---------------------------------------------------------------------------
$python = Get-Command -Name py, python -ErrorAction SilentlyContinue | Select-Object -First 1
if ($null -eq $python) {
    Write-Check 'FAIL' 'Python 3.11+' 'not found (install Python 3.11 or later, 64-bit)'
} else {
    $version = & $python.Source -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>$null
    if ([version]"$version" -ge [version]'3.11') {
        Write-Check 'OK' 'Python 3.11+' "$version ($($python.Source))"
    } else {
        Write-Check 'FAIL' 'Python 3.11+' "$version ($($python.Source))"
    }
}

# --- Ports ----------------------------------------------------------------------------
foreach ($port in @($JobServicePort)) {
    $listener = Get-NetTCPConnection -State Listen -LocalPort $port -ErrorAction SilentlyContinue
    if ($listener) {
        $owner = (Get-Process -Id @($listener)[0].OwningProcess -ErrorAction SilentlyContinue).Name
        Write-Check 'FAIL' "port $port free (job service)" "in use by $owner"
    } else {
        Write-Check 'OK' "port $port free (job service)" ''
    }
}
if ($ServerUrl) {
    $target = ([Uri]$ServerUrl).Host
    $reach = Test-NetConnection -ComputerName $target -Port 443 -WarningAction SilentlyContinue
    if ($reach.TcpTestSucceeded) {
        Write-Check 'OK' 'outbound 443 to the server' $target
    } else {
        Write-Check 'FAIL' 'outbound 443 to the server' "$target not reachable"
    }
} else {
    Write-Check 'WARN' 'outbound 443 to the server' 'not checked (give -ServerUrl)'
}
# SIP: the dialer registers at SwyxServer on 5060 (UDP/TCP) from this host.
$sip = Get-NetUDPEndpoint -LocalPort 5060 -ErrorAction SilentlyContinue
if ($sip) {
    Write-Check 'OK' 'SwyxServer SIP 5060' 'a process listens on UDP 5060'
} else {
    Write-Check 'WARN' 'SwyxServer SIP 5060' 'nothing on UDP 5060 here: is SIP enabled?'
}
if ($Transport -eq 'winrm') {
    try {
        Test-WSMan -ComputerName $SwyxServer -UseSSL -ErrorAction Stop | Out-Null
        Write-Check 'OK' 'WinRM over HTTPS (5986)' $SwyxServer
    } catch {
        Write-Check 'FAIL' 'WinRM over HTTPS (5986)' $_.Exception.Message
    }
}

# --- Folders --------------------------------------------------------------------------
$data = Join-Path $env:ProgramData 'Rundruf'
foreach ($name in 'agent', 'jobservice', 'logs', 'agents', 'prompts', 'recordings', 'state') {
    $path = Join-Path $data $name
    if (Test-Path -LiteralPath $path) {
        Write-Check 'OK' "folder $name" $path
    } else {
        Write-Check 'WARN' "folder $name" "$path missing (the installation creates it)"
    }
}

if ($script:Failed -gt 0) {
    Write-Host "$($script:Failed) check(s) failed." -ForegroundColor Red
    exit 1
}
Write-Host 'All required checks passed.' -ForegroundColor Green
exit 0
