"""What of the Nix side can be checked without nixpkgs (none is on this
project's machines): every .nix file parses, the user's style rules hold,
the flake has its one pinned input, and flake.lock is the pinned nixos-26.05.
The VM tests themselves run on NixOS with `nix flake check`."""
import json
import re
import subprocess

import pytest

from harness import ROOT

NIX_FILES = subprocess.run(["git", "ls-files", "*.nix"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()

PINNED = {
    "owner": "NixOS",
    "repo": "nixpkgs",
    "rev": "5e2305d577ca00acbba631b05cb1094d172b29f3",
    "narHash": "sha256-/eLCD/X9kaWJqPR47+fDozEC87Hjmm3i8gJbYmDAD7g=",
    "lastModified": 1790450978,
    "type": "github",
}


def nix(*args):
    return subprocess.run(["nix-instantiate", *args], cwd=ROOT, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "NIX_PATH": "", "HOME": "/tmp"})


def test_there_are_nix_files():
    assert {"flake.nix", "nixos-module/default.nix", "nixos-module/options.nix"} <= set(NIX_FILES)


@pytest.mark.parametrize("path", NIX_FILES)
def test_nix_file_parses(path):
    result = nix("--parse", path)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("path", NIX_FILES)
def test_nix_file_follows_the_style_rules(path):
    text = (ROOT / path).read_text()
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    assert not re.search(r"(^|[\s(;=])with\s+[\w.]+\s*;", code), "no `with` (nixos-development-standards.md)"
    assert "<<" not in code, "no heredocs in .nix files"
    assert "\t" not in text and not re.search(r"[ \t]+$", text, re.M), "nixpkgs-fmt: no tabs, no trailing blanks"


SERVER_URLS = {"nats://127.0.0.1:4222": True, "tls://[::1]:65535": True, "nats://h:1": True, "nats://h:0": False,
               "nats://a:99999": False, "nats://h:65536": False, "http://h:4222": False}


@pytest.mark.parametrize("url,valid", SERVER_URLS.items(), ids=list(SERVER_URLS))
def test_server_url_pattern_in_nix(url, valid):
    """The strMatching of nats.servers as Nix's own builtins.match reads it."""
    schema = json.loads((ROOT / "proto" / "config.schema.json").read_text())
    pattern = schema["properties"]["nats"]["properties"]["servers"]["items"]["pattern"]
    result = nix("--eval", "--argstr", "p", pattern, "--argstr", "s", url, "-E", "{ p, s }: builtins.match p s != null")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("true" if valid else "false")


NAMES = {("name", "cim-leaf"): True, ("name", "a]b[c"): True, ("name", "~!#$%&'()*+,./:;<=>?@^_`{|}"): True,
         ("name", 'a"b'): False, ("name", "a\\b"): False, ("name", "a b"): False, ("name", "a\tb"): False,
         ("user", "the leaf"): True, ("user", "a]b"): True, ("user", 'a"b'): False, ("user", "a\\b"): False,
         ("user", "a\nb"): False, ("user", "b\u00e4r"): False}


@pytest.mark.parametrize("key,value,valid", [(*k, v) for k, v in NAMES.items()], ids=[repr(k) for k in NAMES])
def test_name_patterns_in_nix(key, value, valid):
    """nats.name and nats.user, which nats.c writes into CONNECT unescaped, as Nix's builtins.match reads them."""
    schema = json.loads((ROOT / "proto" / "config.schema.json").read_text())
    pattern = schema["properties"]["nats"]["properties"][key]["pattern"]
    result = nix("--eval", "--argstr", "p", pattern, "--argstr", "s", value, "-E", "{ p, s }: builtins.match p s != null")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("true" if valid else "false")


def test_flake_has_exactly_the_pinned_nixpkgs_input():
    result = nix("--eval", "--strict", "--json", "-E", "(import ./flake.nix).inputs")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"nixpkgs": {"url": "github:NixOS/nixpkgs/nixos-26.05"}}


def test_flake_lock_pins_nixos_26_05():
    lock = json.loads((ROOT / "flake.lock").read_text())
    assert lock["version"] == 7
    assert lock["root"] == "root"
    assert lock["nodes"]["root"] == {"inputs": {"nixpkgs": "nixpkgs"}}
    nixpkgs = lock["nodes"]["nixpkgs"]
    assert nixpkgs["locked"] == PINNED
    assert nixpkgs["original"] == {"owner": "NixOS", "repo": "nixpkgs", "ref": "nixos-26.05", "type": "github"}
    assert set(lock["nodes"]) == {"root", "nixpkgs"}


def test_envrc_loads_the_flake():
    assert (ROOT / ".envrc").read_text().strip() == "use flake"
