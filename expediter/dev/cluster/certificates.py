"""Making the local cluster's certificates and keys with openssl, and its kubeconfig.

Everything the control plane needs to run with TLS and RBAC on loopback:

- a cluster CA, which also signs the clients (``--client-ca-file``);
- the API server's serving certificate, for 127.0.0.1, the first service IP and the
  ``kubernetes.default.svc`` names;
- an admin client certificate in ``system:masters``, used by the kubeconfig, the controllers,
  the scheduler and KEDA;
- a front-proxy CA and its ``front-proxy-client`` certificate, which the aggregator presents to
  KEDA's metrics adapter;
- a service-account key pair;
- for KEDA's operator <-> adapter gRPC, a ``keda/`` folder of ``ca.crt``, ``tls.crt`` and
  ``tls.key``, usable for both sides.

Keys are ECDSA P-256: quick to make, and accepted everywhere here. Called by
:mod:`~expediter.dev.cluster.running` when a cluster starts fresh.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

from expediter.dev.cluster.errors import ClusterError
from expediter.errors import ToolMissingError

__all__ = ["make_pki", "write_kubeconfig"]

_DAYS = "3650"
_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def make_pki(root: Path, *, service_ip: str, adapter_ip: str) -> Path:
    """Make every certificate and key in ``root``, named as above; return ``root``."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise ToolMissingError(
            "`openssl` not found on PATH: install it (Debian: apt-get install openssl); the "
            "local cluster makes its certificates with it"
        )
    root.mkdir(parents=True, exist_ok=True)
    tool = _OpenSsl(openssl, root)
    tool.authority("ca", "expediter-dev-ca")
    tool.authority("front-proxy-ca", "expediter-dev-front-proxy-ca")
    server_names = [
        "IP:127.0.0.1",
        f"IP:{service_ip}",
        "DNS:localhost",
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster.local",
    ]
    tool.leaf("apiserver", "ca", "/CN=kube-apiserver", "serverAuth", server_names)
    tool.leaf("admin", "ca", "/O=system:masters/CN=expediter-admin", "clientAuth", [])
    tool.leaf("front-proxy-client", "front-proxy-ca", "/CN=front-proxy-client", "clientAuth", [])
    keda_names = ["IP:127.0.0.1", f"IP:{adapter_ip}", "DNS:localhost"]
    tool.leaf("keda-tls", "ca", "/CN=keda", "serverAuth,clientAuth", keda_names)
    tool.run(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
              "-out", "sa.key"])  # fmt: skip
    tool.run(["pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub"])
    # KEDA reads fixed names from one folder, for the gRPC server and its client alike.
    keda = root / "keda"
    keda.mkdir(exist_ok=True)
    shutil.copyfile(root / "ca.crt", keda / "ca.crt")
    shutil.copyfile(root / "keda-tls.crt", keda / "tls.crt")
    shutil.copyfile(root / "keda-tls.key", keda / "tls.key")
    return root


def write_kubeconfig(path: Path, *, server: str, pki: Path, name: str = "expediter-dev") -> Path:
    """A kubeconfig for ``server`` as the admin, with its certificates embedded.

    Embedded rather than referenced, so that the file still works when copied elsewhere.
    kubectl reads JSON kubeconfigs as well as YAML ones.
    """

    def data(file: Path) -> str:
        return base64.b64encode(file.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": name,
                "cluster": {"server": server, "certificate-authority-data": data(pki / "ca.crt")},
            }
        ],
        "users": [
            {
                "name": f"{name}-admin",
                "user": {
                    "client-certificate-data": data(pki / "admin.crt"),
                    "client-key-data": data(pki / "admin.key"),
                },
            }
        ],
        "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-admin"}}],
        "current-context": name,
    }
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)
    return path


class _OpenSsl:
    def __init__(self, openssl: str, root: Path) -> None:
        self.openssl = openssl
        self.root = root

    def run(self, args: list[str]) -> None:
        result = subprocess.run(
            [self.openssl, *args], cwd=self.root, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise ClusterError(
                f"`openssl {' '.join(args)}` failed in {self.root}: "
                f"{(result.stderr or result.stdout).strip()}"
            )

    def authority(self, name: str, common_name: str) -> None:
        self.run(["req", "-x509", *_EC, "-keyout", f"{name}.key", "-out", f"{name}.crt",
                  "-days", _DAYS, "-subj", f"/CN={common_name}",
                  "-addext", "basicConstraints=critical,CA:TRUE",
                  "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"])  # fmt: skip

    def leaf(self, name: str, ca: str, subject: str, usage: str, names: list[str]) -> None:
        extensions = [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            f"extendedKeyUsage={usage}",
        ]
        if names:
            extensions.append(f"subjectAltName={','.join(names)}")
        (self.root / f"{name}.ext").write_text("\n".join(extensions) + "\n")
        self.run(["req", "-new", *_EC, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                  "-subj", subject])  # fmt: skip
        self.run(["x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt",
                  "-CAkey", f"{ca}.key", "-CAcreateserial", "-days", _DAYS,
                  "-extfile", f"{name}.ext", "-out", f"{name}.crt"])  # fmt: skip
