"""TLS and mTLS on the gRPC port: without a client certificate the handshake fails."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sealgate._proto import attestation_pb2, attestation_pb2_grpc
from sealgate.service.config import ServiceConfig
from sealgate.service.server import create_server


def _pem_key(k: ec.EllipticCurvePrivateKey) -> bytes:
    return k.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    b = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        b = b.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return b.sign(issuer_key, hashes.SHA256())


def pem(c: x509.Certificate) -> bytes:
    return c.public_bytes(serialization.Encoding.PEM)


def test_mtls_required_when_client_ca_configured(tmp_path: Path) -> None:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test CA", ca_key, None, ca_key, ca=True)
    srv_key, cli_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    srv_cert = _cert("localhost", srv_key, ca, ca_key, server=True)
    cli_cert = _cert("node-1", cli_key, ca, ca_key)
    (tmp_path / "ca.pem").write_bytes(pem(ca))
    (tmp_path / "srv.pem").write_bytes(pem(srv_cert))
    (tmp_path / "srv.key").write_bytes(_pem_key(srv_key))
    cfg = ServiceConfig(
        listen="127.0.0.1:0",
        data_dir=tmp_path / "d",
        tls_cert=tmp_path / "srv.pem",
        tls_key=tmp_path / "srv.key",
        tls_client_ca=tmp_path / "ca.pem",
    )
    srv = create_server(cfg, http=False)
    target = f"localhost:{srv.port}"
    req = attestation_pb2.GetJwksRequest()
    try:
        good = grpc.ssl_channel_credentials(pem(ca), _pem_key(cli_key), pem(cli_cert))
        with grpc.secure_channel(target, good) as ch:
            jwks = attestation_pb2_grpc.AttestationStub(ch).GetJwks(req, timeout=10)
            assert "ES256" in jwks.jwks_json
        no_cert = grpc.ssl_channel_credentials(pem(ca))
        with grpc.secure_channel(target, no_cert) as ch, pytest.raises(grpc.RpcError) as e:
            attestation_pb2_grpc.AttestationStub(ch).GetJwks(req, timeout=10)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        with grpc.insecure_channel(target) as ch, pytest.raises(grpc.RpcError):
            attestation_pb2_grpc.AttestationStub(ch).GetJwks(req, timeout=5)
    finally:
        srv.stop(grace=1)
