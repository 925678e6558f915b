"""cosign's key and signature formats, written independently of hoist with
the `cryptography` and PyNaCl (libsodium) packages, to cross-check
`hoist key generate`, `hoist sign` and `hoist verify` (no cosign binary
exists here). The formats follow cosign's pkg/cosign/keys.go and
go-securesystemslib's encrypted package:

  PEM "ENCRYPTED SIGSTORE PRIVATE KEY" around the JSON envelope
  {"kdf": {"name": "scrypt", "params": {"N", "r", "p"}, "salt"},
   "cipher": {"name": "nacl/secretbox", "nonce"}, "ciphertext"}
  whose plaintext is the PKCS#8 DER of an ECDSA P-256 key; the public key
  a PKIX "PUBLIC KEY" PEM; a signature the base64 of an ASN.1 DER ECDSA
  signature over SHA-256 of the payload.

Usage:
  cosign_formats.py decrypt KEY PUB        (password from COSIGN_PASSWORD)
  cosign_formats.py generate PREFIX        (writes PREFIX.key, PREFIX.pub)
  cosign_formats.py verify PUB PAYLOAD_FILE SIGNATURE_BASE64
"""
import base64
import hashlib
import json
import os
import sys

import nacl.secret
import nacl.utils
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

LABEL = "ENCRYPTED SIGSTORE PRIVATE KEY"


def pem_body(text, label):
    begin, end = f"-----BEGIN {label}-----", f"-----END {label}-----"
    start = text.index(begin) + len(begin)
    return base64.b64decode("".join(text[start:text.index(end)].split()))


def pem(label, data):
    b = base64.b64encode(data).decode()
    lines = [b[i:i + 64] for i in range(0, len(b), 64)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"


def derive(password, salt, n, r, p):
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, maxmem=256 << 20, dklen=32)


def decrypt(key_path, pub_path):
    envelope = json.loads(pem_body(open(key_path).read(), LABEL))
    assert envelope["kdf"]["name"] == "scrypt", envelope["kdf"]
    assert envelope["cipher"]["name"] == "nacl/secretbox", envelope["cipher"]
    params = envelope["kdf"]["params"]
    assert (params["N"], params["r"], params["p"]) == (32768, 8, 1), params
    key = derive(os.environ["COSIGN_PASSWORD"].encode(), base64.b64decode(envelope["kdf"]["salt"]),
                 params["N"], params["r"], params["p"])
    der = nacl.secret.SecretBox(key).decrypt(base64.b64decode(envelope["ciphertext"]),
                                            base64.b64decode(envelope["cipher"]["nonce"]))
    private = serialization.load_der_private_key(der, password=None)
    assert isinstance(private.curve, ec.SECP256R1), private.curve.name
    public = serialization.load_pem_public_key(open(pub_path, "rb").read())
    assert public.public_numbers() == private.public_key().public_numbers(), "the .pub is not the key's"
    print("decrypted: P-256, matches the public key")


def generate(prefix):
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    salt = nacl.utils.random(32)
    nonce = nacl.utils.random(nacl.secret.SecretBox.NONCE_SIZE)
    key = derive(os.environ["COSIGN_PASSWORD"].encode(), salt, 32768, 8, 1)
    sealed = nacl.secret.SecretBox(key).encrypt(der, nonce).ciphertext
    envelope = {
        "kdf": {"name": "scrypt", "params": {"N": 32768, "r": 8, "p": 1},
                "salt": base64.b64encode(salt).decode()},
        "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
        "ciphertext": base64.b64encode(sealed).decode(),
    }
    with open(prefix + ".key", "w") as f:
        f.write(pem(LABEL, json.dumps(envelope).encode()))
    with open(prefix + ".pub", "wb") as f:
        f.write(private.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    print("generated")


def verify(pub_path, payload_path, signature):
    public = serialization.load_pem_public_key(open(pub_path, "rb").read())
    payload = open(payload_path, "rb").read()
    try:
        public.verify(base64.b64decode(signature), payload, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        print("signature does not verify")
        sys.exit(1)
    print("verified")


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"decrypt": decrypt, "generate": generate, "verify": verify}[command](*args)
