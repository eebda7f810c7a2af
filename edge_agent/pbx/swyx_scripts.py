"""The fixed PowerShell scripts the Swyx adapter runs (module `IpPbx` of SwyxWare).

Each script is constant text: values come only through `$ParamsJson`, a JSON
string that the script decodes with `ConvertFrom-Json` and reads as data
(`$P.name`), so a name like ``O'Brien; Remove-Item`` stays a name. Each prints
exactly one JSON document: ``{"ok": true, "data": …}`` or ``{"ok": false,
"kind": …, "message": …}`` with kind `module`, `connect`, `not_found`,
`conflict`, `refused` or `error` (`swyx.py` maps them to `PbxError`s). Whatever a
cmdlet writes goes to `Out-Null`, so that document is the only output.

Which cmdlet comes from where, and what is assumed: docs/swyx.md. Objects are
cut down to the SwyxWare property names the adapter reads (`UserID`, `Name`,
`Comment`, `GroupID`, the group's description, internal numbers, members).

A user or group that a script looked up by its id is then handed to cmdlets as that
entry (`-UserEntry`, `-GroupEntry`), never again by its name: a second user of the
same name, or a name with `*`, `?` or `[`, which a cmdlet may read as a pattern,
must never be hit instead. Only `New-IpPbxUser`/`New-IpPbxGroup` get a name, and a
new entry is found again by exact comparison with every entry's name.
"""

from __future__ import annotations

import re

PRELUDE = r"""param([string]$ParamsJson)
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
# Windows PowerShell 5.1 writes some arrays as {"value": [...], "Count": n} without this.
Remove-TypeData -TypeName System.Array -ErrorAction SilentlyContinue
$P = $ParamsJson | ConvertFrom-Json
# JSON in ASCII only: anything else as \uXXXX, whatever the code page of stdout.
function ConvertTo-AsciiJson($Value) {
    $json = ConvertTo-Json -InputObject $Value -Depth 8 -Compress
    [regex]::Replace($json, '[^\u0000-\u007F]', { param($m) '\u{0:x4}' -f [int][char]$m.Value })
}
function Out-Result($Data) { ConvertTo-AsciiJson ([ordered]@{ ok = $true; data = $Data }) }
function Out-Refusal([string]$Kind, [string]$Message) {
    ConvertTo-AsciiJson ([ordered]@{ ok = $false; kind = $Kind; message = $Message })
}
# Our own refusals carry their kind in front of the message; the catch below reads it.
function Stop-NotFound([string]$Message) { throw ('RUNDRUF:not_found:' + $Message) }
function Stop-Conflict([string]$Message) { throw ('RUNDRUF:conflict:' + $Message) }
function Stop-Refused([string]$Message) { throw ('RUNDRUF:refused:' + $Message) }
function Get-Numbers($User) {
    # The user's own entry lists its numbers: no look-up by name, which might find another.
    @($User.InternalNumberEntryCollection | Where-Object { $null -ne $_ -and -not $_.IsFaxNumber } |
        ForEach-Object { [string]$_.Number })
}
# A group's description: `Description` as the group list shows it, else `Comment`.
function Get-Description($Entry) {
    foreach ($name in 'Description', 'Comment') {
        if ($null -ne $Entry.PSObject.Properties[$name]) { return [string]$Entry.$name }
    }
    ''
}
function Set-Description($Entry, [string]$Text) {
    foreach ($name in 'Description', 'Comment') {
        if ($null -ne $Entry.PSObject.Properties[$name]) { $Entry.$name = $Text; return }
    }
    throw 'the group entry has neither Description nor Comment'
}
function Get-RundrufUser($User) {
    [ordered]@{
        UserID = [string]$User.UserID; Name = [string]$User.Name
        Comment = [string]$User.Comment; InternalNumbers = @(Get-Numbers $User)
    }
}
function Get-RundrufGroup($Group) {
    [ordered]@{
        GroupID = [string]$Group.GroupID; Name = [string]$Group.Name
        Description = Get-Description $Group
        Members = @(Get-IpPbxGroupMember -GroupEntry $Group -ErrorAction SilentlyContinue |
            ForEach-Object { [string]$_.UserID })
    }
}
function Find-User([string]$Id) {
    $found = Get-IpPbxUser | Where-Object { [string]$_.UserID -eq $Id } | Select-Object -First 1
    if ($null -eq $found) { Stop-NotFound "The user with id $Id does not exist" }
    $found
}
function Find-Group([string]$Id) {
    $found = Get-IpPbxGroup | Where-Object { [string]$_.GroupID -eq $Id } | Select-Object -First 1
    if ($null -eq $found) { Stop-NotFound "The group with id $Id does not exist" }
    $found
}
# Entries whose name is $Name, trimmed, without case: -ieq compares text, never a pattern.
function Select-Named($Entries, [string]$Name) {
    @($Entries | Where-Object { ([string]$_.Name).Trim() -ieq $Name })
}
# The entry just added under $Name, which no entry had before: exactly one, or a failure.
function Find-Added($Entries, [string]$Name) {
    $found = Select-Named $Entries $Name
    if ($found.Count -ne 1) { throw "After adding '$Name', $($found.Count) entries have that name" }
    $found[0]
}
function Assert-NumberFree([string]$Number, [string]$OwnerId) {
    $taken = Get-IpPbxInternalNumber -InternalNumber $Number -ErrorAction SilentlyContinue
    if ($null -eq $taken) { return }
    # Taken: name the owner (one pass over the users, only in this case).
    foreach ($user in Get-IpPbxUser) {
        if ([string]$user.UserID -ne $OwnerId -and (Get-Numbers $user) -contains $Number) {
            Stop-Conflict "The internal number $Number is already assigned to user '$($user.Name)'"
        }
    }
    if ($OwnerId -eq '') { Stop-Conflict "The internal number $Number is already in use" }
}
function Test-Agent($User) {
    $comment = [string]$User.Comment
    $comment -eq $P.tag -or $comment.EndsWith(' ' + $P.tag)
}
# The call-routing script of an agent reads its PIN, number and name from this file
# (swyx_jobservice/callrouting/README.md): digits, digits, hex - nothing to escape.
function Write-AgentFile($User, $Pin) {
    $path = Join-Path $P.agentDir ('rundruf_agent_' + [string]$User.UserID + '.txt')
    if ($null -eq $Pin) {
        if (-not (Test-Path -LiteralPath $path)) { return }
        $line = Get-Content -LiteralPath $path | Where-Object { $_ -like 'pin=*' } |
            Select-Object -First 1
        if ($null -eq $line) { return }
        $Pin = $line.Substring(4)
    }
    $number = @(Get-Numbers $User) | Select-Object -First 1
    $bytes = [System.Text.Encoding]::UTF8.GetBytes([string]$User.Name)
    $hex = -join ($bytes | ForEach-Object { $_.ToString('x2') })
    New-Item -ItemType Directory -Force -Path $P.agentDir | Out-Null
    $tmp = $path + '.tmp'
    $lines = @("pin=$Pin", "number=$number", "name=$hex")
    Set-Content -LiteralPath $tmp -Encoding Ascii -Value $lines
    Move-Item -LiteralPath $tmp -Destination $path -Force
}
try { Import-Module IpPbx } catch {
    Out-Refusal 'module' ('The PowerShell module IpPbx cannot be loaded: ' + $_.Exception.Message)
    return
}
try { Connect-IpPbx -ServerName $P.server | Out-Null } catch {
    Out-Refusal 'connect' ('Connect-IpPbx failed: ' + $_.Exception.Message)
    return
}
try {
"""

EPILOGUE = r"""
} catch {
    $message = [string]$_.Exception.Message
    if ($message -match '(?s)^RUNDRUF:([a-z_]+):(.*)$') {
        Out-Refusal $Matches[1] $Matches[2]
    } else {
        Out-Refusal 'error' $message
    }
} finally {
    Disconnect-IpPbx -ErrorAction SilentlyContinue | Out-Null
}
"""

BODIES: dict[str, str] = {
    "login": r"""
    Out-Result ([ordered]@{ Identity = [Security.Principal.WindowsIdentity]::GetCurrent().Name })
""",
    "directory": r"""
    $users = @(Get-IpPbxUser | ForEach-Object { Get-RundrufUser $_ })
    $groups = @(Get-IpPbxGroup | ForEach-Object { Get-RundrufGroup $_ })
    Out-Result ([ordered]@{ Users = $users; Groups = $groups })
""",
    "next_free_number": r"""
    Out-Result ([string](Get-IpPbxNextFreeInternalNumber -BeginSearchFromNumber $P.from))
""",
    "create_user": r"""
    $name = ([string]$P.name).Trim()
    $taken = Select-Named (Get-IpPbxUser) $name
    if ($taken.Count) { Stop-Conflict "A user with the name '$($taken[0].Name)' already exists" }
    $number = [string]$P.number
    if (-not $number) {
        $number = [string](Get-IpPbxNextFreeInternalNumber -BeginSearchFromNumber $P.from)
    }
    Assert-NumberFree $number ''
    $entry = New-IpPbxUser -UserName $name -Comment ([string]$P.comment)
    Add-IpPbxUser -UserEntry $entry | Out-Null
    $user = Find-Added (Get-IpPbxUser) $name
    New-IpPbxInternalNumber -InternalNumber $number |
        Add-IpPbxInternalNumberToUser -UserEntry $user | Out-Null
    Out-Result (Get-RundrufUser (Find-User ([string]$user.UserID)))
""",
    "update_user": r"""
    $user = Find-User ([string]$P.id)
    if ($null -ne $P.comment) {
        $comment = [string]$P.comment
        if (Test-Agent $user) { $comment = ($comment + ' ' + $P.tag).TrimStart() }
        $user.Comment = $comment
        Update-IpPbxUser -UserEntry $user | Out-Null
    }
    if ($null -ne $P.number) {
        $number = [string]$P.number
        if ((Get-Numbers $user) -notcontains $number) {
            Assert-NumberFree $number ([string]$user.UserID)
            # Each old number by itself (a number is one entry), never by the user's name.
            foreach ($old in @(Get-Numbers $user)) {
                Get-IpPbxInternalNumber -InternalNumber $old | Remove-IpPbxInternalNumber | Out-Null
            }
            New-IpPbxInternalNumber -InternalNumber $number |
                Add-IpPbxInternalNumberToUser -UserEntry $user | Out-Null
            $user = Find-User ([string]$P.id)  # the entry again, with its new number
            if (Test-Agent $user) { Write-AgentFile $user $null }
        }
    }
    Out-Result (Get-RundrufUser (Find-User ([string]$P.id)))
""",
    "delete_user": r"""
    $user = Find-User ([string]$P.id)
    Remove-IpPbxUser -UserEntry $user -Confirm:$false | Out-Null
    $path = Join-Path $P.agentDir ('rundruf_agent_' + [string]$user.UserID + '.txt')
    Remove-Item -LiteralPath $path -ErrorAction SilentlyContinue
    Out-Result $null
""",
    "create_group": r"""
    $name = ([string]$P.name).Trim()
    $taken = Select-Named (Get-IpPbxGroup) $name
    if ($taken.Count) { Stop-Conflict "A group with the name '$($taken[0].Name)' already exists" }
    New-IpPbxGroup -GroupName $name | Add-IpPbxGroup | Out-Null
    $group = Find-Added (Get-IpPbxGroup) $name
    # The description afterwards, on the stored entry; the group stands even if this fails.
    $problem = $null
    if ([string]$P.comment) {
        try {
            Set-Description $group ([string]$P.comment)
            Update-IpPbxGroup -GroupEntry $group | Out-Null
            $group = Find-Group ([string]$group.GroupID)
        } catch { $problem = [string]$_.Exception.Message }
    }
    $result = Get-RundrufGroup $group
    $result.DescriptionError = $problem
    Out-Result $result
""",
    "add_members": r"""
    $group = Find-Group ([string]$P.group)
    # All first: either every named user is added or none.
    $users = @($P.users | ForEach-Object { Find-User ([string]$_) })
    $members = @(Get-IpPbxGroupMember -GroupEntry $group | ForEach-Object { [string]$_.UserID })
    foreach ($user in $users) {
        if ($members -notcontains [string]$user.UserID) {
            Add-IpPbxGroupMember -GroupEntry $group -UserEntry $user | Out-Null
            $members += [string]$user.UserID
        }
    }
    Out-Result (Get-RundrufGroup (Find-Group ([string]$P.group)))
""",
    "remove_members": r"""
    $group = Find-Group ([string]$P.group)
    $users = @($P.users | ForEach-Object { Find-User ([string]$_) })
    $members = @(Get-IpPbxGroupMember -GroupEntry $group | ForEach-Object { [string]$_.UserID })
    foreach ($user in $users) {
        if ($members -contains [string]$user.UserID) {
            Remove-IpPbxGroupMember -GroupEntry $group -UserEntry $user -Confirm:$false | Out-Null
        }
    }
    Out-Result (Get-RundrufGroup (Find-Group ([string]$P.group)))
""",
    "set_agent_pin": r"""
    $user = Find-User ([string]$P.id)
    if (-not (Test-Agent $user)) {
        Stop-Refused ("The user '$($user.Name)' is a licensed user; " +
            'only call-routing-only users get an agent PIN')
    }
    if ([string]$P.pin -notmatch '^[0-9]{1,32}$') { Stop-Refused 'The PIN may contain digits only' }
    Write-AgentFile $user ([string]$P.pin)
    Out-Result $null
""",
    "set_user_login": r"""
    $user = Find-User ([string]$P.id)
    Set-IpPbxUserLogin -UserEntry $user -LoginName ([string]$P.login) `
        -Password ([string]$P.password) -EnableLogin | Out-Null
    Out-Result $null
""",
}

HEADER = "# rundruf-script: {name}\n"


def script(name: str) -> str:
    """The whole text of one script, exactly as the runner receives it."""
    return HEADER.format(name=name) + PRELUDE + BODIES[name] + EPILOGUE


SCRIPTS: dict[str, str] = {name: script(name) for name in BODIES}
_NAME = re.compile(r"\A# rundruf-script: ([a-z_]+)\n")


def script_name(text: str) -> str | None:
    """The name of one of `SCRIPTS` if `text` is exactly that script, else None."""
    found = _NAME.match(text)
    if found is None or SCRIPTS.get(found.group(1)) != text:
        return None
    return found.group(1)


# Every IpPbx cmdlet the scripts use; docs/swyx.md gives the source of each.
CMDLETS = (
    "Connect-IpPbx",
    "Disconnect-IpPbx",
    "Get-IpPbxUser",
    "New-IpPbxUser",
    "Add-IpPbxUser",
    "Update-IpPbxUser",
    "Remove-IpPbxUser",
    "Get-IpPbxGroup",
    "New-IpPbxGroup",
    "Add-IpPbxGroup",
    "Update-IpPbxGroup",
    "Get-IpPbxGroupMember",
    "Add-IpPbxGroupMember",
    "Remove-IpPbxGroupMember",
    "Get-IpPbxInternalNumber",
    "Get-IpPbxNextFreeInternalNumber",
    "New-IpPbxInternalNumber",
    "Add-IpPbxInternalNumberToUser",
    "Remove-IpPbxInternalNumber",
    "Set-IpPbxUserLogin",
)
