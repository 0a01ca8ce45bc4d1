"""Finding the admin credential icsd writes on first start (admin.cred).

The file has `key=value` lines: host, port, principal, secret (and, for a
TLS credential, tls_ca / tls_cert / tls_key). Lookup order when no file is
named: $ICS_CRED, ./var/ics/admin.cred, <repo root>/var/ics/admin.cred,
~/.config/ics/admin.cred.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional


@dataclass
class Credential:
    host: str = "127.0.0.1"
    port: int = 11311
    principal: Optional[str] = None
    secret: Optional[str] = None
    tls_ca: Optional[str] = None
    tls_cert: Optional[str] = None
    tls_key: Optional[str] = None
    path: Optional[str] = None

    @classmethod
    def load(cls, path: str) -> "Credential":
        kv: Dict[str, str] = {}
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#") or "=" not in line:
                    continue
                k, v = line.split("=", 1)
                kv[k.strip()] = v.strip()
        return cls(host=kv.get("host", "127.0.0.1"), port=int(kv.get("port", "11311")),
                   principal=kv.get("principal"), secret=kv.get("secret"),
                   tls_ca=kv.get("tls_ca"), tls_cert=kv.get("tls_cert"),
                   tls_key=kv.get("tls_key"), path=path)


def candidate_paths(repo_root: Optional[str] = None) -> List[str]:
    out = []
    env = os.environ.get("ICS_CRED")
    if env:
        out.append(env)
    out.append(os.path.join("var", "ics", "admin.cred"))
    if repo_root:
        out.append(os.path.join(repo_root, "var", "ics", "admin.cred"))
    out.append(str(Path.home() / ".config" / "ics" / "admin.cred"))
    return out


def find_credential(path: Optional[str] = None, repo_root: Optional[str] = None) -> Optional[Credential]:
    """The credential at `path`, else the first found in candidate_paths()."""
    if path:
        return Credential.load(path)
    for p in candidate_paths(repo_root):
        if os.path.isfile(p):
            return Credential.load(p)
    return None
