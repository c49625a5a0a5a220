"""Test certificates made with the ``openssl`` command: a CA, and server or client
certificates it signs (EC P-256, valid two days)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True,
                   timeout=60)


@dataclass(frozen=True)
class Issued:
    certificate: Path  # the certificate alone
    key: Path  # its private key alone
    combined: Path  # certificate then key in one file (Orthanc's SslCertificate)


@dataclass(frozen=True)
class Authority:
    folder: Path
    certificate: Path
    key: Path

    def issue(self, name: str, *, server: bool = True) -> Issued:
        """A certificate for ``name`` (server: CN and SAN localhost + 127.0.0.1)."""
        usage = "serverAuth" if server else "clientAuth"
        ext = self.folder / f"{name}.ext"
        ext.write_text("basicConstraints=CA:FALSE\n"
                       f"extendedKeyUsage={usage}\n"
                       "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        cert, key = self.folder / f"{name}.crt", self.folder / f"{name}.key"
        csr = self.folder / f"{name}.csr"
        _openssl("req", *_EC, "-keyout", key, "-out", csr, "-subj", f"/CN={name}",
                 cwd=self.folder)
        _openssl("x509", "-req", "-in", csr, "-CA", self.certificate, "-CAkey", self.key,
                 "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext,
                 cwd=self.folder)
        combined = self.folder / f"{name}.pem"
        combined.write_text(cert.read_text() + key.read_text())
        return Issued(cert, key, combined)


def authority(folder: Path, name: str = "Test CA") -> Authority:
    folder.mkdir(parents=True, exist_ok=True)
    slug = name.replace(" ", "-").lower()
    cert, key = folder / f"{slug}.crt", folder / f"{slug}.key"
    _openssl("req", "-x509", *_EC, "-keyout", key, "-out", cert, "-days", "2",
             "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)
    return Authority(folder, cert, key)
