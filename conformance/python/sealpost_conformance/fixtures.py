"""Key material and signed structures, built as the schema's comments specify; the same
functions as conformance/src/runner/fixtures.ts."""
import hashlib
import os
import time

from .curves import ed25519_public_key, ed25519_sign, x25519_public_key

LABELS = {
    "identity": b"sealpost.identity.v1",
    "device_list": b"sealpost.device-list.v1",
    "signed_prekey": b"sealpost.signed-prekey.v1",
    "kem_prekey": b"sealpost.kem-prekey.v1",
    "auth": b"sealpost.auth.v1",
}


def u32be(n):
    return int(n).to_bytes(4, "big")


def random_bytes(n):
    return os.urandom(int(n))


def x25519_key():
    return x25519_public_key(random_bytes(32))


def mlkem768_public_key():
    """A well-formed ML-KEM-768 encapsulation key (FIPS 203 section 7.2 input check: every
    12-bit coefficient below q = 3329) from random coefficients; servers store it opaquely."""
    q = 3329
    out = bytearray()
    coeffs = [int.from_bytes(os.urandom(2), "little") % q for _ in range(768)]
    for i in range(0, 768, 2):
        a, b = coeffs[i], coeffs[i + 1]
        out += bytes([a & 0xFF, (a >> 8) | ((b & 0x0F) << 4), b >> 4])
    return bytes(out) + random_bytes(32)


class Identity(dict):
    """A device's private and public material (a dict so paths like a1.signed_prekey work)."""
    kind = "identity"


class Account(dict):
    kind = "account"


def sign(identity, message):
    return ed25519_sign(identity["signing_seed"], message)


def signed_prekey(identity, key_id):
    pk = x25519_key()
    return {"key_id": int(key_id), "public_key": pk, "signature": sign(identity, LABELS["signed_prekey"] + u32be(key_id) + pk)}


def kem_prekey(identity, key_id):
    pk = mlkem768_public_key()
    return {"key_id": int(key_id), "public_key": pk, "signature": sign(identity, LABELS["kem_prekey"] + u32be(key_id) + pk)}


def one_time_prekeys(count, start_id=1):
    return [{"key_id": int(start_id) + i, "public_key": x25519_key()} for i in range(int(count))]


def new_identity(one_time=5):
    seed = random_bytes(32)
    ident = Identity(signing_seed=seed, signing_key=ed25519_public_key(seed), dh_key=x25519_key())
    ident["dh_key_signature"] = sign(ident, LABELS["identity"] + ident["dh_key"])
    ident["signed_prekey"] = signed_prekey(ident, 1)
    ident["kem_prekey"] = kem_prekey(ident, 1)
    ident["one_time_prekeys"] = one_time_prekeys(one_time, 1)
    return ident


def auth_signature(identity, account_id, device_id, nonce):
    acct = account_id.encode()
    return sign(identity, LABELS["auth"] + bytes([len(acct)]) + acct + u32be(device_id) + nonce)


def flip_byte(b):
    b = bytearray(b)
    b[len(b) >> 1] ^= 1
    return bytes(b)


def device_list_change(DeviceList, frm=None, account_id=None, add=(), remove=(), signer=None, signer_device_id=None,
                       version=None, previous_hash=None, next_device_id=None, bad_signature=False):
    """The next version of a device list (or the first), serialized with the generated
    DeviceList class and signed."""
    account_id = account_id or (frm and frm["account_id"])
    if not account_id:
        raise ValueError("device list: account_id is required for the first version")
    now = int(time.time() * 1000)
    next_id = frm["next_device_id"] if frm else 1
    devices = [dict(x) for x in (frm["devices"] if frm else []) if x["device_id"] not in remove]
    added = None
    for a in add:
        did = a.get("device_id") or next_id
        added = did
        next_id = max(next_id, did + 1)
        devices.append({"device_id": did, "identity": a["identity"], "name": a.get("name") or "device-%d" % did, "added_at_ms": now})
    devices.sort(key=lambda x: x["device_id"])
    version = version if version is not None else (frm["version"] if frm else 0) + 1
    prev = previous_hash if previous_hash is not None else (hashlib.sha256(frm["list_bytes"]).digest() if frm else b"")
    msg = DeviceList(
        account_id=account_id,
        version=version,
        previous_hash=prev,
        next_device_id=next_device_id if next_device_id is not None else next_id,
        created_at_ms=now,
    )
    for x in devices:
        ident = x["identity"]
        msg.devices.add(device_id=x["device_id"], signing_key=ident["signing_key"], dh_key=ident["dh_key"],
                        dh_key_signature=ident["dh_key_signature"], name=x["name"], added_at_ms=x["added_at_ms"])
    list_bytes = msg.SerializeToString()
    all_devices = (frm["devices"] if frm else []) + devices
    if signer is not None:
        signer_dev = next((x for x in all_devices if x["identity"] is signer), None)
    else:
        signer_dev = frm["devices"][0] if frm and frm["devices"] else (devices[0] if devices else None)
        signer = signer_dev and signer_dev["identity"]
    if signer is None:
        raise ValueError("device list: no signer")
    sig = sign(signer, LABELS["device_list"] + list_bytes)
    if bad_signature:
        sig = flip_byte(sig)
    sid = signer_device_id if signer_device_id is not None else (signer_dev["device_id"] if signer_dev else 1)
    return Account(
        account_id=account_id, version=version, next_device_id=msg.next_device_id, devices=devices, list_bytes=list_bytes,
        signed={"device_list": list_bytes, "signer_device_id": sid, "signature": sig}, added_device_id=added,
    )
