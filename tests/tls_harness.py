"""A test CA, a broker certificate signed by it, and a broker with a SASL_SSL listener.

Everything is made with the openssl command line in a temp dir: a CA (the file clients trust,
``CXPULSE_KAFKA__SSL_CAFILE``), a broker key and certificate for 127.0.0.1/localhost signed
by it, packed as a PKCS12 keystore for the broker (deploy/kafka/kafka.sh --ssl-keystore).
A second, unrelated CA lets tests check what a client with the wrong CA file sees.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.kafka_harness import LocalKafka, free_port_block

KEYSTORE_PASSWORD = "broker-keystore-pw"


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(
        ["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=60
    )
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {result.stderr[-2000:]}")


def make_ca(dir: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA: (certificate, key)."""
    dir.mkdir(parents=True, exist_ok=True)
    cert, key = dir / f"{name}.crt", dir / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", f"/CN={name}", "-keyout", key.name, "-out", cert.name,
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=dir,
    )  # fmt: skip
    return cert, key


def make_broker_keystore(dir: Path, ca_cert: Path, ca_key: Path) -> Path:
    """A PKCS12 keystore with a broker key and a certificate for 127.0.0.1 signed by the CA."""
    ext = dir / "broker.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "extendedKeyUsage=serverAuth\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
    )
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
        "-keyout", "broker.key", "-out", "broker.csr",
        cwd=dir,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", "broker.csr", "-CA", str(ca_cert), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-extfile", ext.name, "-out", "broker.crt",
        cwd=dir,
    )  # fmt: skip
    _openssl(
        "pkcs12", "-export", "-in", "broker.crt", "-inkey", "broker.key",
        "-certfile", str(ca_cert), "-name", "broker", "-out", "broker.p12",
        "-passout", f"pass:{KEYSTORE_PASSWORD}",
        cwd=dir,
    )  # fmt: skip
    return dir / "broker.p12"


@dataclass(frozen=True)
class SecureBroker:
    """A running broker: PLAINTEXT (for setup) plus SASL_SSL with SCRAM-SHA-512."""

    kafka: LocalKafka
    plaintext: str  # bootstrap of the PLAINTEXT listener
    sasl_ssl: str  # bootstrap of the SASL_SSL listener
    ca_file: Path  # the CA that signed the broker certificate
    other_ca_file: Path  # a CA that did not
    users: dict[str, str]  # SCRAM-SHA-512 user -> password


def start_secure_broker(workdir: Path, users: dict[str, str]) -> SecureBroker:
    """Make the CAs and the keystore, and start a dedicated broker on free ports.

    The caller stops it (``broker.kafka.stop()``).
    """
    certs = workdir / "certs"
    ca_cert, ca_key = make_ca(certs, "cxpulse-test-ca")
    other_ca, _ = make_ca(certs, "unrelated-ca")
    keystore = make_broker_keystore(certs, ca_cert, ca_key)
    base = free_port_block(3)
    kafka = LocalKafka(workdir / "kafka", base, 1, controller_port=base + 1)
    extra = ["--sasl-ssl-port", str(base + 2), "--ssl-keystore", str(keystore)]
    extra += ["--ssl-keystore-password", KEYSTORE_PASSWORD]
    for name, password in users.items():
        extra += ["--scram-user", f"{name}:{password}"]
    kafka.extra_start_args = tuple(extra)
    try:
        kafka.start()
    except BaseException:
        kafka.stop()
        raise
    return SecureBroker(
        kafka=kafka,
        plaintext=kafka.bootstrap_servers,
        sasl_ssl=f"127.0.0.1:{base + 2}",
        ca_file=ca_cert,
        other_ca_file=other_ca,
        users=dict(users),
    )
