<#
RedFlag agent installer for Windows, served by the appliance at /install.ps1. Run it as
the appliance prints it, in an elevated PowerShell: that command checks this file's
SHA-256 (Get-FileHash) before it runs it.

    powershell -File redflag-install.ps1 -Server URL -Token rf_reg_...

A FIRST STEP, not an installer yet. It does what Windows can check with what it ships:
the appliance's root key must have the fingerprint the registration token carries. Then
it stops, with nothing installed: the release manifest's signature is Ed25519, which
PowerShell and .NET Framework cannot verify by themselves, and there is no Windows agent
build yet. docs/design-notes.md ("The Windows installer") says how both will be done;
meanwhile the agent installs with pip (docs/agent.md).
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)][string]$Server,
    [string]$Token = '',
    [string]$Channel = 'stable'
)
Set-StrictMode -Version 3.0
$ErrorActionPreference = 'Stop'

function Stop-Install([string]$Message) {
    [Console]::Error.WriteLine("redflag-install: $Message")
    exit 1
}

function Write-Step([string]$Message) {
    Write-Output "redflag-install: $Message"
}

function ConvertFrom-Base64Url([string]$Text) {
    # base64url without padding, as the appliance writes it
    $standard = $Text.Replace('-', '+').Replace('_', '/')
    switch ($standard.Length % 4) {
        2 { $standard += '==' }
        3 { $standard += '=' }
    }
    return [Convert]::FromBase64String($standard)
}

function Get-KeyFingerprint([byte[]]$PublicKey) {
    # As the appliance and the agent make it: the first 20 bytes of
    # SHA-256("redflag-key:" + key), base32 in lower case (32 letters, no padding).
    $prefix = [Text.Encoding]::ASCII.GetBytes('redflag-key:')
    $sha256 = [Security.Cryptography.SHA256]::Create()
    $digest = $sha256.ComputeHash([byte[]]($prefix + $PublicKey))
    $alphabet = 'abcdefghijklmnopqrstuvwxyz234567'
    $text = New-Object Text.StringBuilder
    $value = 0
    $bits = 0
    foreach ($byte in $digest[0..19]) {
        $value = (($value -shl 8) -bor $byte) -band 0xFFFF
        $bits += 8
        while ($bits -ge 5) {
            $bits -= 5
            [void]$text.Append($alphabet[($value -shr $bits) -band 31])
        }
    }
    return $text.ToString()
}

$identity = [Security.Principal.WindowsIdentity]::GetCurrent()
$principal = New-Object Security.Principal.WindowsPrincipal($identity)
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
    Stop-Install 'run it in an elevated PowerShell (Run as administrator): it installs a service'
}
$Server = $Server.TrimEnd('/')
if ($Server -notmatch '^https?://') {
    Stop-Install '-Server must start with http:// or https://'
}
if ($Token -eq '') {
    Stop-Install '-Token is needed: make one with ''redflag-appliance token create'' or on the Tokens page'
}
$expected = if ($Token.Contains('.')) { $Token.Substring($Token.LastIndexOf('.') + 1) } else { '' }
if ($expected -notmatch '^[a-z2-7]{32}$') {
    Stop-Install 'the token does not look like rf_reg_<secret>.<fingerprint>; copy it whole'
}

Write-Step "checking the appliance at $Server"
$url = "$Server/api/v1/releases/manifest?channel=$([Uri]::EscapeDataString($Channel))"
try {
    $answer = Invoke-WebRequest -UseBasicParsing -Uri $url -TimeoutSec 30
    $signed = $answer.Content | ConvertFrom-Json
    $rootKey = ConvertFrom-Base64Url $signed.root_public_key
} catch {
    Stop-Install "cannot read the release manifest at ${url}: $($_.Exception.Message)"
}
if ((Get-KeyFingerprint $rootKey) -cne $expected) {
    Stop-Install ('the appliance''s root key does not match the token''s fingerprint: this is ' +
        'not the appliance the token came from, or someone is in between. Nothing was installed')
}
Write-Step 'the appliance''s root key matches the token''s fingerprint'

# Not done yet (docs/design-notes.md): verify $signed.manifest.signature (Ed25519 over
# $signed.manifest.document) with that key, pick the windows-amd64 build, check its
# length and SHA-256, install it, register, and run the agent as a service.
Stop-Install ('the Windows installer cannot check the release signature yet, and there is ' +
    'no Windows agent build: nothing was installed. Install the agent with pip meanwhile ' +
    '(docs/agent.md, "Install")')
